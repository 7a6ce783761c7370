"""Send: Planhat records → Pipedrive bodies. Plain functions over batches, no HTTP.

The product creates with them what was created in Planhat (`tasks.create`); it updates linked
records field by field through the merge (`mappings.merge.pipedrive_patch`). A license is never
created as a deal, so there is no license mapping here.

Every function takes a batch of Planhat records as Planhat returns them (`mappings.rows.Records`)
and the compiled `Mappings`, and returns a `MappedBatch` of Pipedrive bodies:

    company_to_organization(companies, mappings, current=…)            → v2 organization bodies
    enduser_to_person(endusers, mappings, org_ids=…, current=…)        → v2 person bodies
    conversation_to_note(conversations, mappings, org_ids=…, current=…) → v1 note bodies

A body with an `"id"` is an update (PATCH, or PUT for notes) of that record, one without is a
create. `current` (Pipedrive id → the record as it is now) drops every field that would not
change (compared by `field_hash`), so sending an unchanged record changes nothing. Only fields
whose direction allows sending are written.
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
    put_pipedrive,
    read_pipedrive,
    read_planhat,
    rows,
    skip,
)
from mappings.values import (
    ABSENT,
    Unconvertible,
    canonical_value,
    field_hash,
    field_id,
    receive_value,
    send_value,
)

__all__ = [
    "company_to_organization",
    "conversation_to_note",
    "enduser_to_person",
]


def _sent_fields(
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
            value = canonical_value(read_planhat(record, rule), rule.converter)
        except Unconvertible as exc:
            issues.append(Issue(record_id, rule.key, f"{rule.key}: {exc}"))
            continue
        if value is ABSENT:
            continue
        present: Any = ABSENT
        if current is not None:
            present = read_pipedrive(current, rule)
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
        put_pipedrive(body, rule, raw)
        values[rule.key] = value
    return body, values


def _to_pipedrive(
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
    for record in rows(records):
        planhat_id = record.get("_id")
        pd_id = field_id(record.get("sourceId"))
        now = current.get(pd_id) if pd_id is not None else None
        body, values = _sent_fields(record, rules, now, planhat_id, batch.issues)
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
            skip(
                issues,
                company.get("_id"),
                "a company without a name cannot be created in Pipedrive",
            )
            return None
        return {}

    return _to_pipedrive("company", companies, mappings, current, create)


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
                skip(issues, user.get("_id"), "an end user without a name or email")
                return None
            extra["name"] = name
        org_id = org_ids.get(str(user.get("companyId")))
        if org_id is not None:
            extra["org_id"] = org_id
        return extra

    return _to_pipedrive("enduser", endusers, mappings, current, create)


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
    notes = [c for c in rows(conversations) if c.get("type", "note") == "note"]

    def create(note: Mapping[str, Any], body: Record, issues: list[Issue]) -> Record | None:
        org_id = org_ids.get(str(note.get("companyId")))
        if org_id is None or not body.get("content"):
            skip(
                issues,
                note.get("_id"),
                "a Planhat note needs text and a company linked to a Pipedrive organization",
            )
            return None
        return {"org_id": org_id}

    return _to_pipedrive("note", notes, mappings, current, create)
