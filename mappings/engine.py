"""The mapping engine: plain functions over batches of records. No HTTP, no Prefect.

Every function takes a batch (a list of dicts, or a pandas DataFrame) and the compiled
`Mappings` (`mappings.resolve.compile_mappings`), and returns a `MappedBatch`: the records for
the other side, the source id of each, the canonical value of each written field (for the
"last synced values"), and the issues (records skipped, with why; values left empty, with why).

Receive (Pipedrive → Planhat), Pipedrive records in the v2 shape (notes: v1):

    organization_to_company(organizations, mappings)                       → companies
    person_to_enduser(persons, mappings, company_ids=…)                    → end users
    deal_to_license(deals, mappings, company_ids=…)                         → licenses
    note_to_conversation(notes, mappings, company_ids=…, deal_orgs=…, person_orgs=…) → notes

`company_ids` maps a Pipedrive organization id to its Planhat company `_id` (from the company
upsert's results or the state store). Only fields whose direction allows receiving are written.

Send (Planhat → Pipedrive), Planhat records as Planhat returns them:

    company_to_organization(companies, mappings, current=…)            → v2 organization bodies
    enduser_to_person(endusers, mappings, org_ids=…, current=…)        → v2 person bodies
    license_to_deal(licenses, mappings, current=…)                     → v2 deal bodies (updates)
    conversation_to_note(conversations, mappings, org_ids=…, current=…) → v1 note bodies

A body with an `"id"` is an update (PATCH, or PUT for notes) of that record, one without is a
create. `current` (Pipedrive id → the record as it is now) drops every field that would not
change, so sending an unchanged record changes nothing. Only fields whose direction allows
sending are written.

Webhooks (v1 bodies are normalised to the v2 shape first):

    normalize_webhook(body, mappings)               → WebhookEvent (either version, any entity)
    normalize_v1_webhook_deal(current, catalog)     → a v2 deal (and _person, _organization)

Echo suppression and the three-way merge (design §2.8-2.9). The pipeline stores, per linked
record pair and per field key (the Planhat-side key: `name`, `custom.Contract tier`), the hash of
the value last synced (`field_hash`). On the next run it calls

    result = three_way_merge(
        base,                                          # {key: hash} from the store ({} if new)
        pipedrive_values("company", organization, mappings),   # both sides, canonical values
        planhat_values("company", company, mappings),
        mappings.conflict_policy,
        rules=mappings.rules["company"],
        pipedrive_updated=organization["update_time"], planhat_updated=company["updatedAt"],
    )
    planhat_patch("company", result.to_planhat, source_id=organization["id"])   # Planhat body
    pipedrive_patch("company", result.to_pipedrive, mappings, current=organization)  # PATCH body
    # after both writes succeeded: store result.base (the new {key: hash}); report conflicts

A value unchanged since `base` is never written again (no echo); a field changed on one side only
goes to the other; changed on both → `policy`, reported in `result.conflicts`. The receive-only
functions above also return `values` per record: store `field_hashes(values)` after a successful
push, so the next run can tell what changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from mappings.resolve import FieldCatalog, Mappings, Rule

if TYPE_CHECKING:
    import pandas as pd
from mappings.schema import PAIRS, REQUIRED
from mappings.values import (
    ABSENT,
    Unconvertible,
    add_months,
    canonical_value,
    field_hash,
    parse_time,
    planhat_date,
    receive_value,
    rfc3339,
    send_value,
)

__all__ = [
    "Conflict",
    "Issue",
    "MappedBatch",
    "MergeResult",
    "WebhookEvent",
    "company_to_organization",
    "conversation_to_note",
    "deal_to_license",
    "enduser_to_person",
    "field_hashes",
    "license_to_deal",
    "normalize_v1_webhook_deal",
    "normalize_v1_webhook_organization",
    "normalize_v1_webhook_person",
    "normalize_v2_webhook_record",
    "normalize_webhook",
    "note_in_scope",
    "note_to_conversation",
    "organization_to_company",
    "person_to_enduser",
    "pipedrive_patch",
    "pipedrive_values",
    "planhat_patch",
    "planhat_values",
    "select_deals",
    "three_way_merge",
]

Record = dict[str, Any]
#: A batch: a list (any iterable) of records, or a pandas DataFrame of them.
Records: TypeAlias = "Iterable[Mapping[str, Any]] | pd.DataFrame"


@dataclass(frozen=True)
class Issue:
    """Something about one record a user should know: a record skipped (with why), or a value
    left empty (an owner with no Planhat team member, an option that does not exist)."""

    record_id: Any
    field: str | None
    message: str
    skipped: bool = False


@dataclass
class MappedBatch:
    """The other side's records for one batch, in input order (skipped records left out)."""

    records: list[Record] = field(default_factory=list)
    ids: list[Any] = field(default_factory=list)  # the source record's id, per output record
    values: list[dict[str, Any]] = field(default_factory=list)  # canonical written values
    issues: list[Issue] = field(default_factory=list)

    @property
    def skipped(self) -> list[Issue]:
        return [i for i in self.issues if i.skipped]

    def __len__(self) -> int:
        return len(self.records)


# --------------------------------------------------------------------------------------------
# Batches in: lists of dicts or DataFrames
# --------------------------------------------------------------------------------------------


def _rows(records: Records) -> Iterator[Mapping[str, Any]]:
    """The records of a batch. A DataFrame's missing cells (None, NaN, NA, NaT) are explicit
    nulls: a column in the frame is a field every row has (drop columns you did not fetch)."""
    if type(records).__module__.startswith("pandas"):
        import pandas

        for row in records.to_dict("records"):
            clean = {}
            for key, value in row.items():
                if (
                    value is pandas.NA
                    or value is pandas.NaT
                    or (type(value) is float and value != value)
                ):
                    clean[str(key)] = None
                else:
                    clean[str(key)] = value
            yield clean
        return
    yield from records


def _as_id(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, Mapping):  # v1 REST objects: {"value": 12, "name": …}
        return _as_id(value.get("value", value.get("id")))
    return None


# --------------------------------------------------------------------------------------------
# Reading and writing one field
# --------------------------------------------------------------------------------------------


def _read_pipedrive(record: Mapping[str, Any], rule: Rule) -> Any:
    if rule.pipedrive_custom:
        custom = record.get("custom_fields")
        if not isinstance(custom, Mapping):
            return ABSENT
        raw = custom.get(rule.pipedrive_field, ABSENT)
    else:
        raw = record.get(rule.pipedrive_field, ABSENT)
    part = rule.pipedrive_part
    if part is not None and raw is not ABSENT and raw is not None:
        raw = raw.get(part, ABSENT) if isinstance(raw, Mapping) else ABSENT
    return raw


def _read_planhat(record: Mapping[str, Any], rule: Rule) -> Any:
    if rule.planhat_custom:
        custom = record.get("custom")
        if not isinstance(custom, Mapping):
            return ABSENT
        return custom.get(rule.planhat_field, ABSENT)
    return record.get(rule.planhat_field, ABSENT)


def _receive(
    record: Mapping[str, Any], rules: Sequence[Rule], record_id: Any, issues: list[Issue]
) -> dict[str, Any]:
    """The canonical values of the receive rules (absent and empty fields left out)."""
    values: dict[str, Any] = {}
    for rule in rules:
        try:
            value = receive_value(_read_pipedrive(record, rule), rule.converter)
        except Unconvertible as exc:
            issues.append(Issue(record_id, rule.key, f"{rule.pipedrive_label}: {exc}"))
            continue
        if value is not ABSENT:
            values[rule.key] = value
    return values


def _planhat_body(values: Mapping[str, Any], head: Record) -> Record:
    body = dict(head)
    custom: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith("custom."):
            custom[key[7:]] = value
        else:
            body[key] = value
    if custom:
        body["custom"] = custom
    return body


def _missing_required(obj: str, body: Mapping[str, Any]) -> list[str]:
    """Fields Planhat needs to create the record that the body lacks or nulls ("" never gets
    this far: `receive_value` turns it into ABSENT)."""
    return [name for name in REQUIRED[obj] if body.get(name) is None]


def _skip(issues: list[Issue], record_id: Any, why: str) -> None:
    issues.append(Issue(record_id, None, why, skipped=True))


def _finish(
    obj: str,
    batch: MappedBatch,
    record_id: Any,
    values: dict[str, Any],
    head: Record,
    rules: Sequence[Rule],
) -> None:
    body = _planhat_body(values, head)
    missing = _missing_required(obj, body)
    if missing:
        pair = PAIRS[obj]
        labels = {r.key: r.pipedrive_label for r in rules}
        what = ", ".join(f"{m} (from {labels[m]})" if m in labels else m for m in missing)
        _skip(
            batch.issues,
            record_id,
            f"{pair.pipedrive} {record_id} cannot become a Planhat {pair.planhat_title}: "
            f"it has no {what}",
        )
        return
    batch.records.append(body)
    batch.ids.append(record_id)
    batch.values.append(values)


# --------------------------------------------------------------------------------------------
# Receive: Pipedrive → Planhat
# --------------------------------------------------------------------------------------------


def organization_to_company(organizations: Records, mappings: Mappings) -> MappedBatch:
    """Pipedrive organizations (v2) → Planhat company upsert items keyed by `sourceId` = the
    organization id. Only the fields whose direction allows receiving."""
    rules = mappings.receive_rules("company")
    batch = MappedBatch()
    if not mappings.receives("organizations"):
        return batch  # the section does not receive: nothing is written to Planhat
    for org in _rows(organizations):
        org_id = _as_id(org.get("id"))
        if org_id is None:
            _skip(batch.issues, org.get("id"), "an organization without an id")
            continue
        values = _receive(org, rules, org_id, batch.issues)
        _finish("company", batch, org_id, values, {"sourceId": str(org_id)}, rules)
    return batch


def _company_of(
    org_id: int | None, company_ids: Mapping[int, str], record_id: Any, what: str
) -> tuple[str | None, str | None]:
    if org_id is None:
        return None, f"{what} {record_id} has no organization, so no Planhat company"
    company = company_ids.get(org_id)
    if not company:
        return None, f"{what} {record_id}: organization {org_id} is not a Planhat company (yet)"
    return company, None


def person_to_enduser(
    persons: Records, mappings: Mappings, *, company_ids: Mapping[int, str]
) -> MappedBatch:
    """Pipedrive persons (v2) → Planhat end-user upsert items: `sourceId` = the person id,
    `companyId` = the company of the person's organization. A person without an email or
    without a company is skipped and reported (Planhat would drop it silently)."""
    rules = mappings.receive_rules("enduser")
    batch = MappedBatch()
    if not mappings.receives("contacts"):
        return batch
    for person in _rows(persons):
        person_id = _as_id(person.get("id"))
        if person_id is None:
            _skip(batch.issues, person.get("id"), "a person without an id")
            continue
        company, why = _company_of(_as_id(person.get("org_id")), company_ids, person_id, "person")
        if company is None:
            _skip(batch.issues, person_id, str(why))
            continue
        values = _receive(person, rules, person_id, batch.issues)
        head = {"sourceId": str(person_id), "companyId": company}
        _finish("enduser", batch, person_id, values, head, rules)
    return batch


def _template_text(value: Any) -> str:
    if value is ABSENT or value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, str) and value.endswith("T00:00:00.000Z"):
        return value[:10]
    return str(value)


def _product(deal: Mapping[str, Any], mappings: Mappings, issues: list[Issue], deal_id: int) -> Any:
    plan = mappings.license
    out = []
    for part in plan.template:
        if not part.placeholder:
            out.append(part.text)
        elif part.text == "pipeline":
            out.append(mappings.pipeline_names.get(_as_id(deal.get("pipeline_id")) or -1, ""))
        else:
            rule = plan.placeholders[part.text]
            try:
                value = receive_value(_read_pipedrive(deal, rule), rule.converter)
            except Unconvertible as exc:
                issues.append(Issue(deal_id, "product", f"{{{part.text}}}: {exc}"))
                value = ABSENT
            out.append(_template_text(value))
    text = " ".join("".join(out).split())
    return text or ABSENT


def _start_date(deal: Mapping[str, Any], mappings: Mappings) -> Any:
    plan = mappings.license
    if plan.start_custom:
        custom = deal.get("custom_fields")
        raw = custom.get(plan.start_field) if isinstance(custom, Mapping) else None
    else:
        raw = deal.get(plan.start_field)
    if isinstance(raw, Mapping):
        raw = raw.get("value")
    if raw is None or raw == "":
        raw = deal.get("won_time")
    return None if raw == "" else raw


def deal_to_license(
    deals: Records, mappings: Mappings, *, company_ids: Mapping[int, str]
) -> MappedBatch:
    """Pipedrive deals (v2; select them first with `select_deals`) → Planhat license upsert
    items: `sourceId`/`externalId` = the deal id, `companyId` = the company of the deal's
    organization, `product` from the template, `value` and `_currency` from the deal,
    `fromDate` = the start date (won date by default), `toDate` = `fromDate` + the length,
    `fixedPeriod: true`, and the custom matches."""
    rules = mappings.receive_rules("license")
    plan = mappings.license
    batch = MappedBatch()
    if not mappings.receives("deals"):
        return batch
    for deal in _rows(deals):
        deal_id = _as_id(deal.get("id"))
        if deal_id is None:
            _skip(batch.issues, deal.get("id"), "a deal without an id")
            continue
        company, why = _company_of(_as_id(deal.get("org_id")), company_ids, deal_id, "deal")
        if company is None:
            _skip(batch.issues, deal_id, f"{why}: a license needs a company")
            continue
        start = _start_date(deal, mappings)
        if start is None:
            _skip(
                batch.issues,
                deal_id,
                f"deal {deal_id} has no {plan.start_label} and no won_time: a license needs a "
                "start date",
            )
            continue
        try:
            begin = parse_time(planhat_date(start))
        except Unconvertible as exc:
            _skip(batch.issues, deal_id, f"deal {deal_id}: start date {exc}")
            continue
        values = _receive(deal, rules, deal_id, batch.issues)
        product = _product(deal, mappings, batch.issues, deal_id)
        if product is not ABSENT:
            values["product"] = product
        values["fromDate"] = planhat_date(begin)
        values["toDate"] = planhat_date(add_months(begin, plan.length_months))
        values["fixedPeriod"] = True
        head = {"sourceId": str(deal_id), "externalId": str(deal_id), "companyId": company}
        _finish("license", batch, deal_id, values, head, rules)
    return batch


def note_in_scope(note: Mapping[str, Any], mappings: Mappings) -> bool:
    """Whether a note belongs to the synced scope (`notes.scope`: deal, organization, person)."""
    scope = mappings.notes_scope
    return bool(
        ("deal" in scope and note.get("deal_id"))
        or ("organization" in scope and note.get("org_id"))
        or ("person" in scope and note.get("person_id"))
    )


def note_to_conversation(
    notes: Records,
    mappings: Mappings,
    *,
    company_ids: Mapping[int, str],
    deal_orgs: Mapping[int, int] | None = None,
    person_orgs: Mapping[int, int] | None = None,
) -> MappedBatch:
    """Pipedrive notes (v1; a v2 webhook's note too) → Planhat conversations of type `note`:
    `sourceId`/`externalId` = the note id, `companyId` = the company of the note's organization,
    else of its deal's (`deal_orgs`: deal id → org id), else of its person's (`person_orgs`).
    Notes outside `notes.scope` and notes with no company are skipped and reported."""
    rules = mappings.receive_rules("note")
    batch = MappedBatch()
    if not mappings.receives("notes"):
        return batch
    deal_orgs = deal_orgs or {}
    person_orgs = person_orgs or {}
    for note in _rows(notes):
        note_id = _as_id(note.get("id"))
        if note_id is None:
            _skip(batch.issues, note.get("id"), "a note without an id")
            continue
        if not note_in_scope(note, mappings):
            scope = ", ".join(sorted(mappings.notes_scope))
            _skip(batch.issues, note_id, f"note {note_id} is outside notes.scope ({scope})")
            continue
        org_id = _as_id(note.get("org_id"))
        if org_id is None or org_id not in company_ids:
            deal_id, person_id = _as_id(note.get("deal_id")), _as_id(note.get("person_id"))
            for candidate in (
                deal_orgs.get(deal_id) if deal_id is not None else None,
                person_orgs.get(person_id) if person_id is not None else None,
            ):
                if candidate is not None and candidate in company_ids:
                    org_id = candidate
                    break
        company, why = _company_of(org_id, company_ids, note_id, "note")
        if company is None:
            _skip(batch.issues, note_id, str(why))
            continue
        values = _receive(note, rules, note_id, batch.issues)
        head = {
            "sourceId": str(note_id),
            "externalId": str(note_id),
            "type": "note",
            "companyId": company,
        }
        _finish("note", batch, note_id, values, head, rules)
    return batch


def select_deals(deals: Records, mappings: Mappings) -> tuple[list[Record], list[Issue]]:
    """The deals that become licenses (won, in a selected pipeline, not deleted), and an issue
    naming the reason for each of the others (design §2.1)."""
    selected: list[Record] = []
    issues: list[Issue] = []
    for deal in _rows(deals):
        deal_id = _as_id(deal.get("id"))
        pipeline = _as_id(deal.get("pipeline_id"))
        if deal.get("is_deleted") or deal.get("status") == "deleted":
            _skip(issues, deal_id, f"deal {deal_id} is deleted in Pipedrive")
        elif deal.get("status") != "won":
            _skip(issues, deal_id, f"deal {deal_id} is {deal.get('status') or 'not won'}, not won")
        elif pipeline not in mappings.pipeline_ids:
            name = mappings.pipeline_names.get(pipeline or -1, str(pipeline))
            _skip(issues, deal_id, f"deal {deal_id} is in pipeline '{name}', which is not selected")
        else:
            selected.append(dict(deal))
    return selected, issues


# --------------------------------------------------------------------------------------------
# Send: Planhat → Pipedrive
# --------------------------------------------------------------------------------------------


def _send(
    record: Mapping[str, Any],
    rules: Sequence[Rule],
    current: Mapping[str, Any] | None,
    record_id: Any,
    issues: list[Issue],
) -> tuple[Record, dict[str, Any]]:
    """The Pipedrive fields of the send rules, and their canonical values. With `current`,
    fields whose value would not change are left out."""
    body: Record = {}
    values: dict[str, Any] = {}
    for rule in rules:
        try:
            value = canonical_value(_read_planhat(record, rule), rule.converter)
        except Unconvertible as exc:
            issues.append(Issue(record_id, rule.key, f"{rule.key}: {exc}"))
            continue
        if value is ABSENT:
            continue
        present: Any = ABSENT
        if current is not None:
            present = _read_pipedrive(current, rule)
            try:
                now = receive_value(present, rule.converter)
            except Unconvertible:
                now = ABSENT
            if now is not ABSENT and field_hash(now) == field_hash(value):
                continue
            if now is ABSENT and value is None and present in (ABSENT, None, "", []):
                continue  # clearing a field that is already empty
        try:
            raw = send_value(value, rule.converter, present)
        except Unconvertible as exc:
            issues.append(Issue(record_id, rule.key, f"{rule.pipedrive_label}: {exc}"))
            continue
        if raw is ABSENT:
            continue
        if rule.pipedrive_custom:
            body.setdefault("custom_fields", {})[rule.pipedrive_field] = raw
        else:
            body[rule.pipedrive_field] = raw
        values[rule.key] = value
    return body, values


def _reverse(
    obj: str,
    records: Records,
    mappings: Mappings,
    current: Mapping[int, Mapping[str, Any]] | None,
    create: Any,
) -> MappedBatch:
    """Planhat records → Pipedrive bodies: an update of the record named by `sourceId` (only
    the fields that change), or what `create` makes of a record Pipedrive does not have yet."""
    rules = mappings.send_rules(obj)
    batch = MappedBatch()
    if not rules:
        return batch  # nothing of this object may be sent
    current = current or {}
    for record in _rows(records):
        planhat_id = record.get("_id")
        pd_id = _as_id(record.get("sourceId"))
        now = current.get(pd_id) if pd_id is not None else None
        body, values = _send(record, rules, now, planhat_id, batch.issues)
        if pd_id is not None:
            if not body:
                continue  # nothing to change
            body = {"id": pd_id, **body}
        else:
            extra = create(record, body, batch.issues)
            if extra is None:
                continue
            body = {**body, **extra}
        batch.records.append(body)
        batch.ids.append(planhat_id)
        batch.values.append(values)
    return batch


def company_to_organization(
    companies: Records,
    mappings: Mappings,
    *,
    current: Mapping[int, Mapping[str, Any]] | None = None,
) -> MappedBatch:
    """Planhat companies → Pipedrive organization bodies (v2): an update (`id` = the company's
    `sourceId`) with only the fields that change, or a create for a company with no
    `sourceId` (it needs a name). Only fields whose direction allows sending."""

    def create(company: Mapping[str, Any], body: Record, issues: list[Issue]) -> Record | None:
        if not body.get("name"):
            _skip(
                issues,
                company.get("_id"),
                "a company without a name cannot be created in Pipedrive",
            )
            return None
        return {}

    return _reverse("company", companies, mappings, current, create)


def enduser_to_person(
    endusers: Records,
    mappings: Mappings,
    *,
    org_ids: Mapping[str, int] | None = None,
    current: Mapping[int, Mapping[str, Any]] | None = None,
) -> MappedBatch:
    """Planhat end users → Pipedrive person bodies (v2). A new person (no `sourceId`) gets the
    organization of its company (`org_ids`: Planhat company `_id` → Pipedrive org id) and a
    name made of its first and last name (or its email)."""
    org_ids = org_ids or {}

    def create(user: Mapping[str, Any], body: Record, issues: list[Issue]) -> Record | None:
        extra: Record = {}
        if not body.get("name"):
            name = " ".join(
                str(user[k]) for k in ("firstName", "lastName") if user.get(k)
            ) or user.get("email")
            if not name:
                _skip(issues, user.get("_id"), "an end user without a name or email")
                return None
            extra["name"] = name
        org_id = org_ids.get(str(user.get("companyId")))
        if org_id is not None:
            extra["org_id"] = org_id
        return extra

    return _reverse("enduser", endusers, mappings, current, create)


def license_to_deal(
    licenses: Records,
    mappings: Mappings,
    *,
    current: Mapping[int, Mapping[str, Any]] | None = None,
) -> MappedBatch:
    """Planhat licenses → Pipedrive deal updates (v2) for the fields whose direction allows
    sending. Only licenses that came from a deal (`sourceId`) are sent; none is created."""

    def create(lic: Mapping[str, Any], body: Record, issues: list[Issue]) -> Record | None:
        if body:
            _skip(issues, lic.get("_id"), "a license that did not come from a deal is not sent")
        return None

    return _reverse("license", licenses, mappings, current, create)


def conversation_to_note(
    conversations: Records,
    mappings: Mappings,
    *,
    org_ids: Mapping[str, int] | None = None,
    current: Mapping[int, Mapping[str, Any]] | None = None,
) -> MappedBatch:
    """Planhat notes (conversations of type `note`) → Pipedrive note bodies (v1). A new note
    needs its company's organization (`org_ids`: Planhat company `_id` → Pipedrive org id)."""
    org_ids = org_ids or {}
    notes = [c for c in _rows(conversations) if c.get("type", "note") == "note"]

    def create(note: Mapping[str, Any], body: Record, issues: list[Issue]) -> Record | None:
        org_id = org_ids.get(str(note.get("companyId")))
        if org_id is None or not body.get("content"):
            _skip(
                issues,
                note.get("_id"),
                "a Planhat note needs text and a company linked to a Pipedrive organization",
            )
            return None
        return {"org_id": org_id}

    return _reverse("note", notes, mappings, current, create)


# --------------------------------------------------------------------------------------------
# Values, hashes and the three-way merge
# --------------------------------------------------------------------------------------------


def field_hashes(values: Mapping[str, Any]) -> dict[str, str]:
    """`{key: field_hash(value)}`: what the state store keeps as the last synced values."""
    return {key: field_hash(value) for key, value in values.items() if value is not ABSENT}


def pipedrive_values(obj: str, record: Mapping[str, Any], mappings: Mappings) -> dict[str, Any]:
    """The canonical value of every mapped field of a Pipedrive record (whatever its
    direction), keyed like the Planhat side. Absent, empty and unconvertible fields are left out."""
    out: dict[str, Any] = {}
    for rule in mappings.rules[obj]:
        try:
            value = receive_value(_read_pipedrive(record, rule), rule.converter)
        except Unconvertible:
            continue
        if value is not ABSENT:
            out[rule.key] = value
    return out


def planhat_values(obj: str, record: Mapping[str, Any], mappings: Mappings) -> dict[str, Any]:
    """The canonical value of every mapped field of a Planhat record (whatever its direction).
    Absent, empty and unconvertible fields are left out."""
    out: dict[str, Any] = {}
    for rule in mappings.rules[obj]:
        try:
            value = canonical_value(_read_planhat(record, rule), rule.converter)
        except Unconvertible:
            continue
        if value is not ABSENT:
            out[rule.key] = value
    return out


def planhat_patch(obj: str, values: Mapping[str, Any], *, source_id: Any) -> Record:
    """A Planhat upsert item that writes `values` (canonical, keyed `name` / `custom.<name>`)
    to the record whose `sourceId` is `source_id`."""
    head: Record = {"sourceId": str(source_id)}
    if obj in ("license", "note"):
        head["externalId"] = str(source_id)
    return _planhat_body(values, head)


def pipedrive_patch(
    obj: str,
    values: Mapping[str, Any],
    mappings: Mappings,
    *,
    current: Mapping[str, Any] | None = None,
) -> Record:
    """A Pipedrive body (v2; notes v1) that writes `values` (canonical, keyed like the Planhat
    side) through the send rules; with `current`, the record's `id` and its present values (to
    keep a monetary field's currency and a person's other emails). Unconvertible values are
    left out (see `enduser_to_person` and friends for reported issues)."""
    body: Record = {}
    if current is not None and current.get("id") is not None:
        body["id"] = _as_id(current.get("id"))
    for rule in mappings.rules[obj]:
        if not rule.send or rule.key not in values:
            continue
        present = _read_pipedrive(current, rule) if current is not None else ABSENT
        try:
            raw = send_value(values[rule.key], rule.converter, present)
        except Unconvertible:
            continue
        if raw is ABSENT:
            continue
        if rule.pipedrive_custom:
            body.setdefault("custom_fields", {})[rule.pipedrive_field] = raw
        else:
            body[rule.pipedrive_field] = raw
    return body


ConflictPolicy = Literal["pipedrive_wins", "planhat_wins", "newest_wins"]


@dataclass(frozen=True)
class Conflict:
    """A field changed on both sides since the last sync, to different values."""

    key: str
    pipedrive_value: Any
    planhat_value: Any
    winner: Literal["pipedrive", "planhat"]
    policy: str


@dataclass
class MergeResult:
    """What to write where, and the new last-synced hashes to store once both writes succeed."""

    to_planhat: dict[str, Any] = field(default_factory=dict)
    to_pipedrive: dict[str, Any] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    base: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:  # values_for_planhat, values_for_pipedrive, conflicts
        return iter((self.to_planhat, self.to_pipedrive, self.conflicts))


def _newer(a: Any, b: Any) -> bool | None:
    """Whether time `a` is later than `b` (None when either is unknown or they are equal)."""
    try:
        ta, tb = parse_time(a), parse_time(b)
    except (Unconvertible, TypeError):
        return None
    return None if ta == tb else ta > tb


def three_way_merge(
    base: Mapping[str, str],
    pipedrive_side: Mapping[str, Any],
    planhat_side: Mapping[str, Any],
    policy: str,
    *,
    rules: Iterable[Rule] | None = None,
    pipedrive_updated: Any = None,
    planhat_updated: Any = None,
) -> MergeResult:
    """Field-level three-way merge against the last synced hashes (design §2.9).

    Per field key: a side whose value's hash differs from `base` has changed (a side without the
    field has not). Equal values on both sides → nothing to write. Changed on one side only →
    that side wins, if the field's direction allows writing the other way. Changed on both, to
    different values → `policy`: `pipedrive_wins`, `planhat_wins`, or `newest_wins` (by the
    records' update times; Pipedrive when unknown or equal), and a `Conflict` is reported.
    A field never synced (no base) with different values on both sides is such a conflict.
    `rules` gives each field's directions (default: every key both ways)."""
    if policy not in ("pipedrive_wins", "planhat_wins", "newest_wins"):
        raise ValueError(f"unknown conflict policy {policy!r}")
    ways: dict[str, tuple[bool, bool]]
    if rules is None:
        keys = dict.fromkeys([*pipedrive_side, *planhat_side, *base])
        ways = {k: (True, True) for k in keys}
    else:
        ways = {r.key: (r.receive, r.send) for r in rules}
    result = MergeResult()
    for key, (can_receive, can_send) in ways.items():
        pd_value = pipedrive_side.get(key, ABSENT)
        ph_value = planhat_side.get(key, ABSENT)
        before = base.get(key)
        pd_hash = field_hash(pd_value) if pd_value is not ABSENT else None
        ph_hash = field_hash(ph_value) if ph_value is not ABSENT else None
        if pd_hash is not None and pd_hash == ph_hash:
            result.base[key] = pd_hash
            continue
        pd_changed = pd_hash is not None and pd_hash != before
        ph_changed = ph_hash is not None and ph_hash != before
        winner: str | None = None
        if pd_changed and ph_changed and can_receive and can_send:
            if policy == "pipedrive_wins":
                winner = "pipedrive"
            elif policy == "planhat_wins":
                winner = "planhat"
            else:
                winner = "planhat" if _newer(planhat_updated, pipedrive_updated) else "pipedrive"
            result.conflicts.append(Conflict(key, pd_value, ph_value, winner, policy))  # type: ignore[arg-type]
        elif pd_changed and can_receive:
            winner = "pipedrive"
        elif ph_changed and can_send:
            winner = "planhat"
        if winner == "pipedrive":
            result.to_planhat[key] = pd_value
            result.base[key] = pd_hash  # type: ignore[assignment]
        elif winner == "planhat":
            result.to_pipedrive[key] = ph_value
            result.base[key] = ph_hash  # type: ignore[assignment]
        elif before is not None:
            result.base[key] = before
    return result


# --------------------------------------------------------------------------------------------
# Webhooks: v1 bodies → the v2 shape
# --------------------------------------------------------------------------------------------

_HASH_KEY = re.compile(r"^([0-9a-f]{40})(?:_(.+))?$")
_V1_TIME_KEYS = (
    "add_time", "update_time", "stage_change_time", "close_time", "won_time", "lost_time",
    "first_won_time", "archive_time", "last_activity_date_time",
)  # fmt: skip
_V2_DEAL_KEYS = (
    "id", "title", "creator_user_id", "owner_id", "person_id", "org_id", "pipeline_id",
    "stage_id", "value", "currency", "add_time", "update_time", "stage_change_time", "status",
    "is_deleted", "is_archived", "archive_time", "probability", "lost_reason", "visible_to",
    "close_time", "won_time", "lost_time", "first_won_time", "local_won_date", "local_lost_date",
    "local_close_date", "expected_close_date", "label_ids", "origin", "origin_id", "channel",
    "channel_id", "arr", "mrr", "acv", "source_lead_id",
)  # fmt: skip
_V2_PERSON_KEYS = (
    "id", "name", "first_name", "last_name", "owner_id", "org_id", "add_time", "update_time",
    "is_deleted", "visible_to", "label_ids", "picture_id", "emails", "phones", "im",
    "postal_address", "notes", "birthday", "job_title",
)  # fmt: skip
_V2_ORG_KEYS = (
    "id", "name", "owner_id", "add_time", "update_time", "is_deleted", "visible_to", "address",
    "label_ids", "website", "linkedin", "industry", "annual_revenue", "employee_count",
)  # fmt: skip
_ADDRESS_SUFFIXES = (
    "subpremise", "street_number", "route", "sublocality", "locality", "admin_area_level_1",
    "admin_area_level_2", "country", "postal_code", "formatted_address",
)  # fmt: skip


def _v2_time(value: Any) -> Any:
    if value is None or value == "":
        return None if value is None else value
    try:
        return rfc3339(value)
    except Unconvertible:
        return value


def _ids_list(value: Any) -> list[int]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [i for i in (_as_id(v) for v in value) if i is not None]
    return [i for i in (_as_id(v) for v in str(value).split(",")) if i is not None]


def _contacts(items: Any) -> list[Record]:
    """v1 `email`/`phone` lists → v2 `emails`/`phones` (empty placeholders dropped)."""
    if items is None:
        return []
    if isinstance(items, str):
        return [{"value": items, "primary": True, "label": "work"}] if items else []
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        value = item.get("value")
        if not isinstance(value, str) or not value.strip():
            continue
        out.append(
            {
                "value": value,
                "primary": bool(item.get("primary")),
                "label": item.get("label") or "work",
            }
        )
    return out


def _v1_custom_fields(record: Mapping[str, Any], catalog: FieldCatalog | None) -> Record:
    """Root hash keys in v1 formats → v2 `custom_fields` (enum "12" → 12, set "1,2" → [1, 2],
    monetary + `_currency` → {value, currency}, daterange + `_until`, address + parts)."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in record.items():
        match = _HASH_KEY.match(str(key))
        if match:
            groups.setdefault(match.group(1), {})[match.group(2) or ""] = value
    out: Record = {}
    for code, parts in groups.items():
        if catalog is not None and code not in catalog.by_key:
            continue  # a sibling-looking key of no known field, or a deleted field
        ftype = catalog.field_type(code) if catalog is not None else None
        value = parts.get("", None)
        if ftype is None:  # no catalog: infer from the sibling keys
            if "currency" in parts:
                ftype = "monetary"
            elif "until" in parts:
                ftype = "daterange"
            elif any(s in parts for s in _ADDRESS_SUFFIXES):
                ftype = "address"
        if ftype == "enum":
            out[code] = _as_id(value) if value not in (None, "") else value
        elif ftype == "set":
            out[code] = _ids_list(value) or (None if value in (None, "") else [])
        elif ftype == "monetary":
            out[code] = (
                None if value is None else {"value": value, "currency": parts.get("currency")}
            )
        elif ftype in ("daterange", "timerange"):
            out[code] = None if value is None else {"value": value, "until": parts.get("until")}
        elif ftype == "address":
            if value is None:
                out[code] = None
            else:
                address = {"value": value}
                for suffix in _ADDRESS_SUFFIXES:
                    if suffix in parts:
                        address[suffix] = parts[suffix]
                out[code] = address
        elif ftype in ("user", "org", "people", "double", "int") and isinstance(
            value, Mapping | str
        ):
            out[code] = _as_id(value) if ftype != "double" else value
            if ftype == "double" and isinstance(value, str):
                try:
                    out[code] = float(value)
                except ValueError:
                    out[code] = value
        else:
            out[code] = value
    return out


def _common_v1(record: Mapping[str, Any], keys: Sequence[str]) -> Record:
    out: Record = {}
    for key in keys:
        if key in record:
            out[key] = record[key]
    for key in _V1_TIME_KEYS:
        if key in out:
            out[key] = _v2_time(out[key])
    for key in ("owner_id", "person_id", "org_id", "creator_user_id", "picture_id"):
        if key in out and out[key] is not None:
            out[key] = _as_id(out[key])
    if "visible_to" in out and out["visible_to"] is not None:
        out["visible_to"] = _as_id(out["visible_to"])
    if "deleted" in record and "is_deleted" not in out:
        out["is_deleted"] = bool(record["deleted"])
    if "active_flag" in record and "is_deleted" not in out:
        out["is_deleted"] = not record["active_flag"]
    if "label_ids" in out:
        out["label_ids"] = _ids_list(out["label_ids"])
    elif "label" in record:
        out["label_ids"] = _ids_list(record["label"])
    return out


def normalize_v1_webhook_deal(
    current: Mapping[str, Any], catalog: FieldCatalog | None = None
) -> Record:
    """A deal from a v1 webhook (`current`/`previous`, or a legacy v1 REST deal) in the v2
    shape: `user_id` → `owner_id`, ids as ints (v1 REST objects' `.value`), RFC 3339 times,
    `deleted` → `is_deleted`, `visible_to` an int, `label` → `label_ids`, custom fields from the
    root into `custom_fields` in v2 formats (`catalog`: the account's deal fields; without it the
    formats are inferred). The v1-only keys (`*_name`, `formatted_value`, …) are dropped."""
    out = _common_v1(current, _V2_DEAL_KEYS)
    if "owner_id" not in out and "user_id" in current:
        out["owner_id"] = _as_id(current["user_id"])
    out["custom_fields"] = _v1_custom_fields(current, catalog)
    return out


def normalize_v1_webhook_person(
    current: Mapping[str, Any], catalog: FieldCatalog | None = None
) -> Record:
    """A person from a v1 webhook (or legacy v1 REST) in the v2 shape: `email`/`phone` →
    `emails`/`phones` (empty placeholders dropped), ids as ints, RFC 3339 times, custom fields
    into `custom_fields`."""
    out = _common_v1(current, _V2_PERSON_KEYS)
    if "emails" not in out and "email" in current:
        out["emails"] = _contacts(current["email"])
    if "phones" not in out and "phone" in current:
        out["phones"] = _contacts(current["phone"])
    out["custom_fields"] = _v1_custom_fields(current, catalog)
    return out


def normalize_v1_webhook_organization(
    current: Mapping[str, Any], catalog: FieldCatalog | None = None
) -> Record:
    """An organization from a v1 webhook (or legacy v1 REST) in the v2 shape: the address text
    and its `address_*` siblings → the `address` object, ids as ints, RFC 3339 times, custom
    fields into `custom_fields`."""
    out = _common_v1(current, _V2_ORG_KEYS)
    address = current.get("address")
    if isinstance(address, str) or address is None and "address" in current:
        if address in (None, ""):
            out["address"] = None
        else:
            obj: Record = {"value": address}
            for suffix in _ADDRESS_SUFFIXES:
                if f"address_{suffix}" in current:
                    obj[suffix] = current[f"address_{suffix}"]
            out["address"] = obj
    out["custom_fields"] = _v1_custom_fields(current, catalog)
    return out


def normalize_v2_webhook_record(entity: str, data: Mapping[str, Any]) -> Record:
    """A v2 webhook's `data`/`previous` with REST v2's types: ids and `visible_to` as ints
    (the webhook may carry strings), `label_ids` a list. Keys it lacks stay absent."""
    out = dict(data)
    for key in ("id", "owner_id", "person_id", "org_id", "creator_user_id", "pipeline_id",
                "stage_id", "deal_id", "user_id", "visible_to"):  # fmt: skip
        if key in out and isinstance(out[key], str) and out[key].strip().isdigit():
            out[key] = int(out[key])
    return out


@dataclass(frozen=True)
class WebhookEvent:
    """A Pipedrive webhook delivery of either version, in one shape."""

    version: int  # 1 or 2
    entity: str  # deal, person, organization, note, …
    action: str  # create | change | delete (v1's added/updated/merged/deleted mapped)
    entity_id: int | str | None
    event_id: str  # idempotency key: v2 meta.id; v1 object, id and timestamp_micro
    change_source: str | None  # "app" or "api" (our own writes come back as "api")
    timestamp: datetime | None
    current: Record | None  # the record now, in the engine's shape (None on delete)
    previous: Record | None  # v1: the whole prior record; v2: only the changed fields


_V1_ACTIONS = {"added": "create", "updated": "change", "merged": "change", "deleted": "delete"}


def _catalog(
    mappings: Mappings | Mapping[str, FieldCatalog] | None, entity: str
) -> FieldCatalog | None:
    if mappings is None:
        return None
    catalogs = mappings.catalogs if isinstance(mappings, Mappings) else mappings
    return catalogs.get(entity)


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
            return parse_time(float(value) * 1000)
        return parse_time(value)
    except (Unconvertible, ValueError, OverflowError):
        return None


def normalize_webhook(
    body: Mapping[str, Any], mappings: Mappings | Mapping[str, FieldCatalog] | None = None
) -> WebhookEvent:
    """Any Pipedrive webhook body (v1 `current`/`previous`/`meta.object`, or v2
    `data`/`previous`/`meta.entity`) → a `WebhookEvent` whose records are in the engine's shapes
    (v2 for deals, persons and organizations). `mappings` supplies the field lists v1 custom
    fields need. Raises `ValueError` for a body that is neither."""
    meta = body.get("meta")
    if not isinstance(meta, Mapping):
        raise ValueError("not a Pipedrive webhook body: no meta")
    if "entity" in meta or str(meta.get("version", "")).startswith("2"):
        entity = str(meta.get("entity") or "")
        raw_id = meta.get("entity_id")
        data, previous = body.get("data"), body.get("previous")
        return WebhookEvent(
            version=2,
            entity=entity,
            action=str(meta.get("action") or ""),
            entity_id=_as_id(raw_id) if _as_id(raw_id) is not None else raw_id,
            event_id=str(meta.get("id") or ""),
            change_source=meta.get("change_source"),
            timestamp=_when(meta.get("timestamp")),
            current=normalize_v2_webhook_record(entity, data)
            if isinstance(data, Mapping)
            else None,
            previous=(
                normalize_v2_webhook_record(entity, previous)
                if isinstance(previous, Mapping)
                else None
            ),
        )
    entity = str(meta.get("object") or str(body.get("event", ".")).split(".", 1)[-1])
    action = str(meta.get("action") or str(body.get("event", "")).split(".", 1)[0])
    catalog = _catalog(mappings, entity)

    def shape(record: Any) -> Record | None:
        if isinstance(record, list):  # v1 user events carry arrays
            record = record[0] if record else None
        if not isinstance(record, Mapping):
            return None
        if entity == "deal":
            return normalize_v1_webhook_deal(record, catalog)
        if entity == "person":
            return normalize_v1_webhook_person(record, catalog)
        if entity == "organization":
            return normalize_v1_webhook_organization(record, catalog)
        return {
            k: v for k, v in record.items() if k not in ("deal", "person", "organization", "user")
        }

    event_id = (
        f"v1:{entity}:{meta.get('id')}:{meta.get('timestamp_micro') or meta.get('timestamp')}"
    )
    return WebhookEvent(
        version=1,
        entity=entity,
        action=_V1_ACTIONS.get(action, action),
        entity_id=_as_id(meta.get("id")),
        event_id=event_id,
        change_source=meta.get("change_source"),
        timestamp=_when(meta.get("timestamp")),
        current=shape(body.get("current")),
        previous=shape(body.get("previous")),
    )
