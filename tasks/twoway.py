"""Both ways, field by field (design §2.8-2.9): the merge of a linked pair and the Pipedrive
writes it implies.

A link keeps the Planhat body last synced (`store.records.Link.values`): per field, the value
both sides held after the last sync. Against it, every write is computed per field:

* **Receiving** (`tasks.push.push_mapped`): a linked record sends Planhat only the fields whose
  Pipedrive value changed since the last sync (`mappings.merge.changed_fields`), so a Planhat
  edit to another field is never reverted. In a section that also sends (`both`), a record
  whose change touches a field that may be sent is merged (`TwoWay`): Planhat's current record
  is read, in batch, and each field goes the way `mappings.merge.three_way_merge` says: changed
  on one side only → to the other; changed on both → `conflict_policy`, reported with both
  values. The fields Planhat wins are written to Pipedrive in the same run.
* **Sending** (`tasks.scan`): the scheduled scan of Planhat compares each linked record with
  the same state, and merges the ones Planhat changed.

Pipedrive writes go one record at a time (Pipedrive has no bulk update), only the fields that
change, through the send rules (`mappings.merge.pipedrive_patch`, which keeps a person's other
emails and a monetary field's currency). A record Pipedrive refuses is reported failed and its
fields keep their last synced value, so the next run tries again; nothing is marked synced that
is not. Each write is a run-log action of the object type `<entity>_sent`
(`mappings.kinds.Kind.sent_type`), each conflict a `conflict` action of the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clients import PipedriveClient, PlanhatClient
from clients.errors import BadRequestError, ForbiddenError, GoneError, NotFoundError
from mappings.kinds import BY_ENTITY, Kind
from mappings.merge import (
    MergeResult,
    field_hashes,
    flatten,
    pipedrive_patch,
    pipedrive_values,
    planhat_values,
    three_way_merge,
    unflatten,
)
from mappings.resolve import Mappings
from mappings.values import field_hash
from store.records import RunAction, clip

Record = dict[str, Any]

#: Planhat fields every merge reads beside the mapped ones
MERGE_KEYS = ("_id", "sourceId", "externalId", "companyId", "updatedAt")
#: up to this many companies are read one by one; more, in the whole (lean-selected) list
COMPANIES_ONE_BY_ONE = 10
#: companies per list call when reading company-owned records
COMPANIES_PER_CALL = 50
#: the kinds whose send half is built
SENDING_KINDS = ("organization", "person", "deal", "note")
#: Pipedrive's answers that concern one record (the run goes on); others stop the run
_RECORD_ERRORS = (BadRequestError, ForbiddenError, GoneError, NotFoundError)


def sends(mappings: Mappings, object_type: str) -> bool:
    """Whether this kind has a send half in these settings: its section sends and some rule
    may be written to Pipedrive."""
    kind = BY_ENTITY[object_type]
    return (
        object_type in SENDING_KINDS
        and mappings.sends(kind.section)
        and bool(mappings.send_rules(kind.planhat))
    )


def planhat_fields(mappings: Mappings, obj: str) -> list[str]:
    """The Planhat fields a merge of `obj` reads (`select=`)."""
    names = dict.fromkeys(MERGE_KEYS)
    for rule in mappings.rules[obj]:
        names["custom" if rule.planhat_custom else rule.planhat_field] = None
    return list(names)


def merge_pair(
    mappings: Mappings,
    obj: str,
    *,
    synced: Mapping[str, Any],
    pipedrive_record: Mapping[str, Any],
    planhat_record: Mapping[str, Any],
) -> MergeResult:
    """The field-level merge of one linked pair: `synced` is the Planhat body last synced (the
    link's values), the records are both sides as they are now."""
    base = field_hashes(planhat_values(obj, synced, mappings))
    return three_way_merge(
        base,
        pipedrive_values(obj, pipedrive_record, mappings),
        planhat_values(obj, planhat_record, mappings),
        mappings.conflict_policy,
        rules=mappings.rules[obj],
        pipedrive_updated=pipedrive_record.get("update_time"),
        planhat_updated=planhat_record.get("updatedAt"),
    )


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 80 else text[:79] + "…"


def conflict_actions(
    kind: Kind, pipedrive_id: int, planhat_id: str | None, result: MergeResult
) -> list[RunAction]:
    """One `conflict` action per field changed on both sides, with both values and the winner."""
    return [
        RunAction(
            kind.pipedrive,
            "conflict",
            pipedrive_id,
            planhat_id,
            reason=clip(
                f"{c.key} changed on both sides: Pipedrive {_show(c.pipedrive_value)}, Planhat "
                f"{_show(c.planhat_value)}; {c.winner.capitalize()} kept ({c.policy})"
            ),
        )
        for c in result.conflicts
    ]


def fold_conflicts(actions: list[RunAction]) -> list[RunAction]:
    """One line per record in the run log: a record with conflicts is logged as `conflict`
    (every field's conflict in its reason) in place of its created / updated / unchanged line;
    a failure stands as it is."""
    conflicts: dict[tuple[str, int | None], list[RunAction]] = {}
    for action in actions:
        if action.action == "conflict":
            conflicts.setdefault((action.object_type, action.pipedrive_id), []).append(action)
    if not conflicts:
        return actions
    out: list[RunAction] = []
    folded: set[tuple[str, int | None]] = set()
    for action in actions:
        key = (action.object_type, action.pipedrive_id)
        found = conflicts.get(key)
        if found is None or action.action == "failed":
            out.append(action)
            continue
        if key in folded:
            continue
        folded.add(key)
        planhat_id = next((a.planhat_id for a in actions if a.planhat_id and
                           (a.object_type, a.pipedrive_id) == key), None)  # fmt: skip
        reason = "; ".join(a.reason or "" for a in found)
        out.append(RunAction(action.object_type, "conflict", action.pipedrive_id, planhat_id,
                             reason=clip(reason)))  # fmt: skip
    return out


@dataclass
class PipedriveWrite:
    """Fields (canonical, keyed like the rules) to write to one Pipedrive record."""

    pipedrive_id: int
    planhat_id: str | None
    values: dict[str, Any]
    current: Mapping[str, Any] | None = None


@dataclass
class WriteOutcome:
    """What `write_pipedrive` did: actions, and the records whose write failed."""

    actions: list[RunAction] = field(default_factory=list)
    failed: set[int] = field(default_factory=set)
    requests: int = 0


def write_pipedrive(
    pipedrive: PipedriveClient,
    mappings: Mappings,
    kind: Kind,
    writes: Iterable[PipedriveWrite],
    *,
    dry_run: bool,
) -> WriteOutcome:
    """Write each record's fields to Pipedrive (PATCH; notes PUT), one call per record with a
    change. Pipedrive's refusal of one record is that record's failure; the rest go on."""
    outcome = WriteOutcome()
    update = getattr(pipedrive, kind.pipedrive_update)
    for write in writes:
        body = pipedrive_patch(kind.planhat, write.values, mappings, current=write.current)
        body.pop("id", None)
        if not body:
            continue
        fields = ", ".join(sorted(write.values))
        if dry_run:
            outcome.actions.append(
                RunAction(
                    kind.sent_type,
                    "updated",
                    write.pipedrive_id,
                    write.planhat_id,
                    reason=f"dry run: would write {fields}",
                )
            )
            continue
        outcome.requests += 1
        try:
            update(write.pipedrive_id, body)
        except _RECORD_ERRORS as exc:
            outcome.failed.add(write.pipedrive_id)
            outcome.actions.append(
                RunAction(
                    kind.sent_type,
                    "failed",
                    write.pipedrive_id,
                    write.planhat_id,
                    reason=f"Pipedrive refused {fields}: {exc}",
                )
            )
            continue
        outcome.actions.append(
            RunAction(
                kind.sent_type,
                "updated",
                write.pipedrive_id,
                write.planhat_id,
                reason=f"wrote {fields}",
            )
        )
    return outcome


def reads_whole_list(kind: Kind, wanted: Sequence[tuple[str, str | None]]) -> bool:
    """Whether `read_planhat_current` reads Planhat's whole list of the kind for these
    records (companies, more than `COMPANIES_ONE_BY_ONE`): a scan of that kind costs the same."""
    return (
        kind.planhat_model == "companies"
        and len({planhat_id for planhat_id, _ in wanted}) > COMPANIES_ONE_BY_ONE
    )


#: how a merge reads Planhat's current records: (kind, (`_id`, company `_id`) pairs) → by `_id`
CurrentReader = Callable[[Kind, Sequence[tuple[str, str | None]]], dict[str, Record]]


def read_planhat_current(
    planhat: PlanhatClient,
    mappings: Mappings,
    kind: Kind,
    wanted: Sequence[tuple[str, str | None]],
) -> dict[str, Record]:
    """Planhat's current records by `_id`, for `wanted` pairs of (`_id`, its company's `_id`),
    in the fewest calls: a few companies one by one, more in the company list; company-owned
    records in their companies' lists, 50 companies a call."""
    if not wanted:
        return {}
    ids = {planhat_id for planhat_id, _ in wanted}
    select = planhat_fields(mappings, kind.planhat)
    found: dict[str, Record] = {}
    if kind.planhat_model == "companies":
        if not reads_whole_list(kind, wanted):
            for planhat_id in sorted(ids):
                try:
                    found[planhat_id] = planhat.get("companies", planhat_id)
                except NotFoundError:
                    continue
            return found
        records: Iterable[Record] = planhat.iter_records("companies", select=select)
        return {r["_id"]: r for r in records if r.get("_id") in ids}
    companies = sorted({c for _, c in wanted if c})
    for planhat_id, company in wanted:  # no company named: one by one
        if not company:
            try:
                found[planhat_id] = planhat.get(kind.planhat_model, planhat_id)
            except NotFoundError:
                continue
    filters = {"type": "note"} if kind.planhat_model == "conversations" else None
    for start in range(0, len(companies), COMPANIES_PER_CALL):
        chunk = companies[start : start + COMPANIES_PER_CALL]
        for record in planhat.iter_records(
            kind.planhat_model, company_id=chunk, filters=filters, select=select
        ):
            if record.get("_id") in ids:
                found[record["_id"]] = record
    return found


# -- the receive push's side: a plan per record, merged where the section sends -----------------

#: the fields of a Planhat body that name the record, sent with every update
HEAD_FIELDS = ("sourceId", "externalId", "companyId", "type")


@dataclass
class Plan:
    """One record of a receive push, field by field (flat: `name`, `custom.<name>`)."""

    record: Record  # the record as Pipedrive has it, mapped for Planhat (a Planhat body)
    synced_values: dict[str, Any] | None  # what was last synced (None: not linked yet)
    for_planhat: dict[str, Any]  # the fields to write to Planhat (linked records)
    merged: bool = False
    #: fields both sides hold once this run's writes succeed (a merge's outcome)
    synced_by_merge: dict[str, Any] = field(default_factory=dict)
    _now: dict[str, Any] | None = None

    @property
    def now(self) -> dict[str, Any]:
        """`record`, flat (computed once, and only for linked records)."""
        if self._now is None:
            self._now = flatten(self.record)
        return self._now

    def body(self) -> Record:
        """The Planhat item to send: a new record whole; a linked one's keys and the fields
        that change."""
        if self.synced_values is None:
            return self.record
        head = {k: self.now[k] for k in HEAD_FIELDS if k in self.now}
        return unflatten({**head, **self.for_planhat})

    def after(self) -> dict[str, Any]:
        """What both sides hold once the writes succeeded, flat."""
        head = {k: self.now[k] for k in HEAD_FIELDS if k in self.now}
        return {**(self.synced_values or {}), **head, **self.for_planhat, **self.synced_by_merge}

    def link_values(self) -> Record:
        """The link's new values (a Planhat body): a new record's as sent."""
        if self.synced_values is None and not self.merged:
            return self.record
        return unflatten(self.after())


class TwoWay:
    """The send half of a receive push in a section that sends: linked records whose change
    touches a field that may be sent (every linked record on a resync) are merged with
    Planhat's current record, and what Planhat wins is written to Pipedrive."""

    def __init__(
        self,
        pipedrive: PipedriveClient,
        planhat: PlanhatClient,
        mappings: Mappings,
        object_type: str,
        records: Iterable[Mapping[str, Any]],
        read_current: CurrentReader | None = None,
    ) -> None:
        self.pipedrive = pipedrive
        self.planhat = planhat
        self.mappings = mappings
        self.kind = BY_ENTITY[object_type]
        rules = mappings.rules[self.kind.planhat]
        self.rule_keys = {r.key for r in rules}
        self.sent_keys = {r.key for r in rules if r.send}
        self.records = {
            r["id"]: r for r in records if isinstance(r.get("id"), int)
        }  # Pipedrive id → the raw record
        self.requests = 0
        #: Planhat's current records for a merge (default: `read_planhat_current`)
        self.read_current: CurrentReader = read_current or (
            lambda kind, wanted: read_planhat_current(planhat, mappings, kind, wanted)
        )

    @classmethod
    def for_push(
        cls,
        pipedrive: PipedriveClient,
        planhat: PlanhatClient,
        mappings: Mappings,
        object_type: str,
        records: Iterable[Mapping[str, Any]],
        read_current: CurrentReader | None = None,
    ) -> TwoWay | None:
        """A `TwoWay` when this kind sends in these settings, else None."""
        if not sends(mappings, object_type):
            return None
        return cls(pipedrive, planhat, mappings, object_type, records, read_current)

    def merge(
        self,
        ids: Sequence[Any],
        plans: Mapping[int, Plan],
        known: Mapping[int, str],
        *,
        force: bool,
        dry_run: bool,
    ) -> list[RunAction]:
        """Merge the plans that need it (amending what goes to Planhat), write Pipedrive's
        side, and return the conflicts and the Pipedrive writes as run-log actions."""
        chosen = [
            pos
            for pos, plan in plans.items()
            if plan.synced_values is not None
            and pos in known
            and ids[pos] in self.records
            and (force or any(k in self.sent_keys for k in plan.for_planhat))
        ]
        if not chosen:
            return []
        wanted = [(known[pos], plans[pos].now.get("companyId")) for pos in chosen]
        current = self.read_current(self.kind, wanted)
        obj = self.kind.planhat
        actions: list[RunAction] = []
        writes: list[PipedriveWrite] = []
        written_keys: dict[int, set[str]] = {}
        for pos in chosen:
            plan, planhat_id, pipedrive_id = plans[pos], known[pos], int(ids[pos])
            ph = current.get(planhat_id)
            if ph is None:
                continue  # gone from Planhat: the upsert by its keys decides
            raw = self.records[pipedrive_id]
            assert plan.synced_values is not None
            result = merge_pair(
                self.mappings,
                obj,
                synced=unflatten(plan.synced_values),
                pipedrive_record=raw,
                planhat_record=ph,
            )
            kept = {k: v for k, v in plan.for_planhat.items() if k not in self.rule_keys}
            plan.for_planhat = {**kept, **result.to_planhat}
            if force:  # a resync also repairs receive-only fields Planhat holds differently
                plan.for_planhat.update(self._drifted(obj, raw, ph))
            plan.synced_by_merge = dict(result.synced)
            plan.merged = True
            actions += conflict_actions(self.kind, pipedrive_id, planhat_id, result)
            if result.to_pipedrive:
                writes.append(PipedriveWrite(pipedrive_id, planhat_id, result.to_pipedrive, raw))
                written_keys[pipedrive_id] = set(result.to_pipedrive)
        outcome = write_pipedrive(self.pipedrive, self.mappings, self.kind, writes, dry_run=dry_run)
        self.requests += outcome.requests
        for pos in chosen:
            pipedrive_id = int(ids[pos])
            if pipedrive_id in outcome.failed:  # not synced: those fields keep their last value
                plan = plans[pos]
                for key in written_keys.get(pipedrive_id, ()):
                    plan.synced_by_merge.pop(key, None)
        return actions + outcome.actions

    def _drifted(
        self, obj: str, raw: Mapping[str, Any], planhat_record: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Receive-only fields whose Planhat value differs from Pipedrive's."""
        ours = pipedrive_values(obj, raw, self.mappings)
        theirs = planhat_values(obj, planhat_record, self.mappings)
        out: dict[str, Any] = {}
        for rule in self.mappings.rules[obj]:
            if not rule.receive or rule.send or rule.key not in ours:
                continue
            value = ours[rule.key]
            if rule.key not in theirs or field_hash(theirs[rule.key]) != field_hash(value):
                out[rule.key] = value
        return out


__all__ = [
    "COMPANIES_ONE_BY_ONE",
    "CurrentReader",
    "HEAD_FIELDS",
    "PipedriveWrite",
    "Plan",
    "TwoWay",
    "WriteOutcome",
    "conflict_actions",
    "fold_conflicts",
    "merge_pair",
    "planhat_fields",
    "read_planhat_current",
    "reads_whole_list",
    "sends",
    "write_pipedrive",
]
