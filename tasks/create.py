"""Records created in Planhat become Pipedrive records, once (sections that send).

A Planhat company (or an end user or a note of a linked company) without a `sourceId` was
created in Planhat. When its section sends, the scan (`tasks.scan`) and the planhat-sync run
hand it here:

1. **Intent.** Before anything is written, the store keeps an intent under the Planhat `_id`
   (`create:<entity>:<_id>`, with the time and the name).
2. **Create.** One `POST` to Pipedrive with the fields the send rules allow
   (`mappings.send.company_to_organization`, `enduser_to_person`). A create is never retried
   by the HTTP layer once it may have landed.
3. **Link**, with the values both sides now hold, then **`sourceId` written back** to the
   Planhat record (`PUT` by `_id`, bulk), then the intent is dropped.

Whatever crashes in between, a retry never creates a second record: a record already linked
only gets its `sourceId` written back, and a record with an intent whose outcome is unknown is
first looked for in Pipedrive (records of that name added since the intent, with the same
email for a person) and adopted when found. Only when none is found is it created again.
Notes (Planhat conversations of type note) are created under their company's organization.
Deals are never created (a license that did not come from a deal is not sent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from clients import PipedriveClient, PlanhatClient
from clients.errors import BadRequestError, ForbiddenError
from mappings.kinds import Kind
from mappings.merge import unflatten
from mappings.resolve import Mappings
from mappings.rows import MappedBatch, Record
from mappings.send import company_to_organization, conversation_to_note, enduser_to_person
from mappings.values import Unconvertible, parse_time
from store import StateStore
from store.records import LinkRow, RunAction

log = logging.getLogger("tasks.steps")

#: how far before its intent a record found in Pipedrive may have been added (clock skew)
SKEW = timedelta(minutes=2)
#: the kinds created in Pipedrive, and their create method
CREATES = {
    "organization": "create_organization",
    "person": "create_person",
    "note": "create_note",
}


def intent_key(kind: Kind, planhat_id: str) -> str:
    return f"create:{kind.pipedrive}:{planhat_id}"


def _bodies(
    kind: Kind, records: Sequence[Record], mappings: Mappings, org_ids: Mapping[str, int]
) -> MappedBatch:
    if kind.pipedrive == "organization":
        return company_to_organization(records, mappings)
    if kind.pipedrive == "note":
        return conversation_to_note(records, mappings, org_ids=org_ids)
    return enduser_to_person(records, mappings, org_ids=org_ids)


def _identity(kind: Kind, record: Mapping[str, Any]) -> tuple[Any, ...]:
    """What tells a record an earlier attempt created: an organization's name, a person's
    name and email, a note's text and organization."""
    if kind.pipedrive == "note":
        return (str(record.get("content") or "").strip(), record.get("org_id"))
    name = str(record.get("name") or "").strip()
    return (name, _email(record)) if kind.pipedrive == "person" else (name,)


def _email(record: Mapping[str, Any]) -> str | None:
    emails = record.get("emails") or record.get("email")
    if isinstance(emails, list):
        for item in emails:
            value = item.get("value") if isinstance(item, Mapping) else item
            if isinstance(value, str) and value:
                return value.strip().casefold()
        return None
    return emails.strip().casefold() if isinstance(emails, str) and emails else None


class Creator:
    """Creates one kind's Planhat-born records in Pipedrive (see the module docstring)."""

    def __init__(
        self,
        pipedrive: PipedriveClient,
        planhat: PlanhatClient,
        store: StateStore,
        mappings: Mappings,
        kind: Kind,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pipedrive = pipedrive
        self.planhat = planhat
        self.store = store
        self.mappings = mappings
        self.kind = kind
        self.clock = clock
        self.requests = 0

    def create(self, records: Sequence[Record]) -> list[RunAction]:
        """Create (or finish creating) these Planhat records in Pipedrive; their actions."""
        kind = self.kind
        if kind.pipedrive not in CREATES or not records:
            return []
        by_id = {r["_id"]: r for r in records if isinstance(r.get("_id"), str)}
        actions: list[RunAction] = []
        linked = self.store.links_by_planhat(kind.pipedrive, by_id)
        for planhat_id, link in linked.items():  # created and linked: only the write-back left
            actions += self._write_back(planhat_id, link.pipedrive_id, "linked earlier")
        todo = [r for i, r in by_id.items() if i not in linked]
        org_ids = self._org_ids(todo)
        if kind.pipedrive in ("person", "note"):  # only under companies paired with Pipedrive
            todo = [r for r in todo if str(r.get("companyId")) in org_ids]
        batch = _bodies(kind, todo, self.mappings, org_ids)
        for issue in batch.skipped:
            actions.append(
                RunAction(kind.sent_type, "skipped", None, issue.record_id, reason=issue.message)
            )
        for planhat_id, body, values in zip(batch.ids, batch.records, batch.values, strict=True):
            actions += self._create_one(str(planhat_id), body, values)
        return actions

    def _org_ids(self, records: Sequence[Record]) -> dict[str, int]:
        """Planhat company `_id` → its Pipedrive organization (a person's organization)."""
        companies = {str(r["companyId"]) for r in records if r.get("companyId")}
        if not companies:
            return {}
        links = self.store.links_by_planhat("organization", companies)
        return {planhat_id: link.pipedrive_id for planhat_id, link in links.items()}

    def _create_one(
        self, planhat_id: str, body: Record, values: Mapping[str, Any]
    ) -> list[RunAction]:
        kind = self.kind
        name = str(body.get("name") or body.get("content") or "")[:60]
        if self.mappings.dry_run:
            return [
                RunAction(
                    kind.sent_type,
                    "created",
                    None,
                    planhat_id,
                    reason=f"dry run: would create {kind.pipedrive_title} '{name}'",
                )
            ]
        key = intent_key(kind, planhat_id)
        intent = self.store.cache_get(key)
        found = self._find(body, intent[1]) if intent is not None else None
        if found is None:
            self.store.cache_put(key, {"name": name, "at": self.clock().isoformat()})
            self.requests += 1
            try:
                created = getattr(self.pipedrive, CREATES[kind.pipedrive])(body)
            except (BadRequestError, ForbiddenError) as exc:
                self.store.cache_delete(key)  # refused: nothing landed
                return [
                    RunAction(
                        kind.sent_type,
                        "failed",
                        None,
                        planhat_id,
                        reason=f"Pipedrive refused to create {kind.pipedrive_title} '{name}': "
                        f"{exc}",
                    )
                ]
            pipedrive_id = int(created["id"])
            how = f"created from Planhat {kind.planhat_title} {planhat_id}"
        else:
            pipedrive_id = int(found["id"])
            how = f"found in Pipedrive (an earlier run created it) for {planhat_id}"
        synced = {"sourceId": str(pipedrive_id), **dict(values)}
        written = self.store.upsert_links(
            kind.pipedrive, [LinkRow(pipedrive_id, planhat_id, unflatten(synced))]
        )
        if written.conflicts:
            return [
                RunAction(
                    kind.sent_type,
                    "failed",
                    pipedrive_id,
                    planhat_id,
                    reason=written.conflicts[0].reason,
                )
            ]
        actions = [RunAction(kind.sent_type, "created", pipedrive_id, planhat_id, reason=how)]
        return actions + self._write_back(planhat_id, pipedrive_id, how)

    def _find(self, body: Record, since: datetime) -> Record | None:
        """The record an earlier attempt may have created: the same identity (`_identity`),
        added since its intent."""
        wanted = _identity(self.kind, body)
        if not wanted[0]:
            return None
        after = since - SKEW
        listed = getattr(self.pipedrive, self.kind.pipedrive_list)(updated_since=after)
        self.requests += 1
        for record in listed:
            if _identity(self.kind, record) != wanted:
                continue
            try:
                added = parse_time(record.get("add_time"))
            except Unconvertible:
                added = None  # no usable add_time: not ours to adopt
            if added is not None and added >= after:
                return dict(record)
        return None

    def _write_back(self, planhat_id: str, pipedrive_id: int, how: str) -> list[RunAction]:
        """`sourceId` on the Planhat record (so the next scans pair it), then the intent goes."""
        kind = self.kind
        if self.mappings.dry_run:
            return []
        result = self.planhat.bulk_upsert(
            kind.planhat_model, [{"_id": planhat_id, "sourceId": str(pipedrive_id)}]
        )
        self.requests += result.requests
        outcome = result.items[0] if result.items else None
        if outcome is None or outcome.status == "failed":
            why = outcome.error if outcome is not None else "Planhat did not confirm it"
            return [
                RunAction(
                    kind.pipedrive,
                    "failed",
                    pipedrive_id,
                    planhat_id,
                    reason=f"{how}; its sourceId could not be written to Planhat ({why}): "
                    "written again next run",
                )
            ]
        self.store.cache_delete(intent_key(kind, planhat_id))
        return []


__all__ = ["CREATES", "Creator", "intent_key"]
