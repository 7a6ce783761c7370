"""Receive: Pipedrive records → Planhat upsert items. Plain functions over batches, no HTTP.

Every function takes a batch (`mappings.rows.Records`: a list of dicts) and the compiled
`Mappings` (`mappings.resolve.compile_mappings`), and returns a `MappedBatch`: the Planhat
items, the Pipedrive id of each, the canonical value of each written field (for the "last
synced values", `mappings.merge.field_hashes`), and the issues (records skipped, with why;
values left empty, with why). Pipedrive records in the v2 shape (notes: v1):

    organization_to_company(organizations, mappings)                       → companies
    person_to_enduser(persons, mappings, company_ids=…)                    → end users
    deal_to_license(deals, mappings, company_ids=…)                         → licenses
    note_to_conversation(notes, mappings, company_ids=…, deal_orgs=…, person_orgs=…) → notes

`company_ids` maps a Pipedrive organization id to its Planhat company `_id` (from the company
upsert's results or the state store). Only fields whose direction allows receiving are written.
Which deals become licenses and which notes are in `notes.scope` is the select step's business
(`tasks.select`): these functions map what they are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mappings.resolve import Mappings, Rule
from mappings.rows import (
    Issue,
    MappedBatch,
    Record,
    Records,
    planhat_body,
    read_pipedrive,
    rows,
    skip,
)
from mappings.schema import PAIRS, REQUIRED
from mappings.values import (
    ABSENT,
    Unconvertible,
    add_months,
    field_id,
    parse_time,
    planhat_date,
    receive_value,
)

__all__ = [
    "deal_to_license",
    "note_to_conversation",
    "organization_to_company",
    "person_to_enduser",
]


def _received_values(
    record: Mapping[str, Any], rules: Sequence[Rule], record_id: Any, issues: list[Issue]
) -> dict[str, Any]:
    """The canonical values of the receive rules (absent and empty fields left out)."""
    values: dict[str, Any] = {}
    for rule in rules:
        try:
            value = receive_value(read_pipedrive(record, rule), rule.converter)
        except Unconvertible as exc:
            issues.append(Issue(record_id, rule.key, f"{rule.pipedrive_label}: {exc}"))
            continue
        if value is not ABSENT:
            values[rule.key] = value
    return values


def _missing_required(obj: str, body: Mapping[str, Any]) -> list[str]:
    """Fields Planhat needs to create the record that the body lacks or nulls ("" never gets
    this far: `receive_value` turns it into ABSENT)."""
    return [name for name in REQUIRED[obj] if body.get(name) is None]


def _add_item(
    obj: str,
    batch: MappedBatch,
    record_id: Any,
    values: dict[str, Any],
    head: Record,
    rules: Sequence[Rule],
) -> None:
    """Add the Planhat item made of `head` and `values` to the batch, or skip the record (with
    the fields it lacks) when Planhat could not create it."""
    body = planhat_body(values, head)
    missing = _missing_required(obj, body)
    if missing:
        pair = PAIRS[obj]
        labels = {r.key: r.pipedrive_label for r in rules}
        what = ", ".join(f"{m} (from {labels[m]})" if m in labels else m for m in missing)
        skip(
            batch.issues,
            record_id,
            f"{pair.pipedrive} {record_id} cannot become a Planhat {pair.planhat_title}: "
            f"it has no {what}",
        )
        return
    batch.records.append(body)
    batch.ids.append(record_id)
    batch.values.append(values)


def organization_to_company(organizations: Records, mappings: Mappings) -> MappedBatch:
    """Pipedrive organizations (v2) → Planhat company upsert items keyed by `sourceId` = the
    organization id. Only the fields whose direction allows receiving."""
    rules = mappings.receive_rules("company")
    batch = MappedBatch()
    if not mappings.receives("organizations"):
        return batch  # the section does not receive: nothing is written to Planhat
    for org in rows(organizations):
        org_id = field_id(org.get("id"))
        if org_id is None:
            skip(batch.issues, org.get("id"), "an organization without an id")
            continue
        values = _received_values(org, rules, org_id, batch.issues)
        _add_item("company", batch, org_id, values, {"sourceId": str(org_id)}, rules)
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
    for person in rows(persons):
        person_id = field_id(person.get("id"))
        if person_id is None:
            skip(batch.issues, person.get("id"), "a person without an id")
            continue
        company, why = _company_of(field_id(person.get("org_id")), company_ids, person_id, "person")
        if company is None:
            skip(batch.issues, person_id, str(why))
            continue
        values = _received_values(person, rules, person_id, batch.issues)
        head = {"sourceId": str(person_id), "companyId": company}
        _add_item("enduser", batch, person_id, values, head, rules)
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
            out.append(mappings.pipeline_names.get(field_id(deal.get("pipeline_id")) or -1, ""))
        else:
            rule = plan.placeholders[part.text]
            try:
                value = receive_value(read_pipedrive(deal, rule), rule.converter)
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
    """Pipedrive deals (v2; the select step picks them: `tasks.select.select_deals`) → Planhat
    license upsert items: `sourceId`/`externalId` = the deal id, `companyId` = the company of
    the deal's organization, `product` from the template, `value` and `_currency` from the deal,
    `fromDate` = the start date (won date by default), `toDate` = `fromDate` + the length,
    `fixedPeriod: true`, and the custom matches."""
    rules = mappings.receive_rules("license")
    plan = mappings.license
    batch = MappedBatch()
    if not mappings.receives("deals"):
        return batch
    for deal in rows(deals):
        deal_id = field_id(deal.get("id"))
        if deal_id is None:
            skip(batch.issues, deal.get("id"), "a deal without an id")
            continue
        company, why = _company_of(field_id(deal.get("org_id")), company_ids, deal_id, "deal")
        if company is None:
            skip(batch.issues, deal_id, f"{why}: a license needs a company")
            continue
        start = _start_date(deal, mappings)
        if start is None:
            skip(
                batch.issues,
                deal_id,
                f"deal {deal_id} has no {plan.start_label} and no won_time: a license needs a "
                "start date",
            )
            continue
        try:
            begin = parse_time(planhat_date(start))
        except Unconvertible as exc:
            skip(batch.issues, deal_id, f"deal {deal_id}: start date {exc}")
            continue
        values = _received_values(deal, rules, deal_id, batch.issues)
        product = _product(deal, mappings, batch.issues, deal_id)
        if product is not ABSENT:
            values["product"] = product
        values["fromDate"] = planhat_date(begin)
        values["toDate"] = planhat_date(add_months(begin, plan.length_months))
        values["fixedPeriod"] = True
        head = {"sourceId": str(deal_id), "externalId": str(deal_id), "companyId": company}
        _add_item("license", batch, deal_id, values, head, rules)
    return batch


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
    Notes with no company are skipped and reported. Pass only the notes in `notes.scope` (the
    select step keeps them: `tasks.select.note_in_scope`)."""
    rules = mappings.receive_rules("note")
    batch = MappedBatch()
    if not mappings.receives("notes"):
        return batch
    deal_orgs = deal_orgs or {}
    person_orgs = person_orgs or {}
    for note in rows(notes):
        note_id = field_id(note.get("id"))
        if note_id is None:
            skip(batch.issues, note.get("id"), "a note without an id")
            continue
        org_id = field_id(note.get("org_id"))
        if org_id is None or org_id not in company_ids:
            deal_id, person_id = field_id(note.get("deal_id")), field_id(note.get("person_id"))
            for candidate in (
                deal_orgs.get(deal_id) if deal_id is not None else None,
                person_orgs.get(person_id) if person_id is not None else None,
            ):
                if candidate is not None and candidate in company_ids:
                    org_id = candidate
                    break
        company, why = _company_of(org_id, company_ids, note_id, "note")
        if company is None:
            skip(batch.issues, note_id, str(why))
            continue
        values = _received_values(note, rules, note_id, batch.issues)
        head = {
            "sourceId": str(note_id),
            "externalId": str(note_id),
            "type": "note",
            "companyId": company,
        }
        _add_item("note", batch, note_id, values, head, rules)
    return batch
