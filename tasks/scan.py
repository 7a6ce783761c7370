"""The send direction's change detection: a scan of Planhat, compared field by field with what
was last synced (design §3: Planhat has no "changed since" filter, and its `updatedAt` moves on
every write, so the store's per-field state is the only judge).

For each kind that sends (`tasks.twoway.sends`: companies → organizations, end users → persons,
licenses → deals, notes → notes), in the order of writing:

1. Planhat's list is read in pages at its maximum (5,000 companies, 2,000 others), only the
   fields the rules name (`select=`).
2. Each record with a `sourceId` (the Pipedrive id) is compared with its link's last synced
   values, field by field, on the fields that may be sent. Unchanged records cost nothing more:
   a scan of N unchanged records is ceil(N/page) Planhat calls and no write.
   A record with a `sourceId` but no link (it came into Planhat another way, or the section
   only sends) is paired with that Pipedrive record, as never synced.
3. The changed ones' Pipedrive records are read fresh, 100 per call (notes, v1, one by one),
   and merged (`tasks.twoway.merge_pair`): Planhat's changes go to Pipedrive (one write each),
   Pipedrive's changes not received yet go to Planhat (one bulk upsert per page), conflicts
   follow `conflict_policy` and are reported with both values.
4. The links take the values both sides now hold; a field whose Pipedrive write failed keeps
   its last synced value, so the next scan tries again.

In an incremental run, the stream's merge of many changed companies reads Planhat's whole
company list (`tasks.twoway.read_planhat_current`); the companies' scan reads its pages then
(`scan_during_merge`): the merge's own records go to the merge, and what the scan finds in
the others waits for the scan's turn after the stream (`Waiting`). The list is read once.

Records Planhat holds without a `sourceId` (created in Planhat) become Pipedrive records, once
(`tasks.create`: companies, and end users and notes of companies paired with Pipedrive); a
`sourceId` that is not a Pipedrive id is another system's, and its record is left alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients import PipedriveClient, PlanhatClient
from clients.errors import NotFoundError
from clients.planhat import PAGE_MAX, PAGE_MAX_DEFAULT
from mappings.kinds import KINDS, Kind
from mappings.merge import flatten, planhat_patch, planhat_values, unflatten
from mappings.resolve import Mappings
from mappings.values import field_hash
from store import StateStore
from store.records import LinkRow, RunAction, as_pipedrive_id
from tasks.context import SyncContext
from tasks.create import CREATES, Creator
from tasks.twoway import (
    CurrentReader,
    PipedriveWrite,
    conflict_actions,
    fold_conflicts,
    merge_pair,
    planhat_fields,
    read_planhat_current,
    reads_whole_list,
    sends,
    write_pipedrive,
)

log = logging.getLogger("tasks.steps")

Record = dict[str, Any]


class ScanSummary:
    """What a scan did, per kind (Pipedrive entity), in counts; the actions are in the run log.
    (A plain class: see `tasks.fetch.Fetched`.)"""

    def __init__(self) -> None:
        self.scanned: Counter[str] = Counter()  # Planhat records read
        self.unsourced: Counter[str] = Counter()  # without a sourceId: created in Planhat
        self.foreign: Counter[str] = Counter()  # another system's sourceId: left alone
        self.created: Counter[str] = Counter()  # created in Pipedrive (from Planhat)
        self.changed: Counter[str] = Counter()  # changed on Planhat's side since the last sync
        self.to_pipedrive: Counter[str] = Counter()  # records written to Pipedrive
        self.to_planhat: Counter[str] = Counter()  # records written to Planhat
        self.conflicts: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.planhat_writes: Counter[str] = Counter()  # bulk upserts
        self.pipedrive_calls: Counter[str] = Counter()  # reads by id and writes
        self.done: set[str] = set()  # kinds scanned (a kind is scanned once a run)
        self.waiting: dict[str, Waiting] = {}  # kinds scanned in a merge's read: to act on


def _pages(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    page: list[Record] = []
    for record in records:
        page.append(record)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _changed_in_planhat(
    mappings: Mappings, obj: str, record: Mapping[str, Any], synced: Mapping[str, Any]
) -> bool:
    """Whether a field that may be sent holds, in Planhat, another value than last synced."""
    now = planhat_values(obj, record, mappings)
    before = planhat_values(obj, synced, mappings)
    for rule in mappings.send_rules(obj):
        if rule.key not in now:
            continue  # absent or empty: never a change (design §2.4)
        if rule.key not in before or field_hash(before[rule.key]) != field_hash(now[rule.key]):
            return True
    return False


class Waiting:
    """What a scan done in a merge's read (`scan_during_merge`) found, for after the stream:
    the records created in Planhat, and those changed there, each with its link's hash as it
    was read. Acted on then, not mid-stream, where records read from Pipedrive but not yet
    written would be merged again from a stale copy. Planhat's changes since the last sync
    only, so few: a bulk edit in Planhat would hold its records here (the fields the rules
    name) until the stream ends."""

    def __init__(self) -> None:
        self.born: list[Record] = []
        self.changed: dict[int, tuple[Record, str | None]] = {}


class PlanhatScan:
    """One scan's work for one kind, page by page (or, in a merge's read, for later:
    `waiting`)."""

    def __init__(
        self,
        pipedrive: PipedriveClient,
        planhat: PlanhatClient,
        store: StateStore,
        mappings: Mappings,
        kind: Kind,
        summary: ScanSummary,
        run_id: str,
        waiting: Waiting | None = None,
    ) -> None:
        self.pipedrive = pipedrive
        self.planhat = planhat
        self.store = store
        self.mappings = mappings
        self.kind = kind
        self.summary = summary
        self.run_id = run_id
        self.dry_run = mappings.dry_run
        #: set: the pages' findings wait there for `settle` (a scan in a merge's read)
        self.waiting = waiting

    def run(self, hand_over: Collection[str] = frozenset()) -> dict[str, Record]:
        """Scan the kind's whole list. The records whose `_id` is in `hand_over` are not
        compared here but handed back, as Planhat holds them: they are a merge's, under way in
        the same read (`scan_during_merge`)."""
        kind = self.kind
        size = PAGE_MAX.get(kind.planhat_model, PAGE_MAX_DEFAULT)
        records = self.planhat.iter_records(
            kind.planhat_model,
            select=planhat_fields(self.mappings, kind.planhat),
            filters={"type": "note"} if kind.planhat_model == "conversations" else None,
        )
        handed: dict[str, Record] = {}
        for page in _pages(records, size):
            if hand_over:
                mine = [r for r in page if r.get("_id") not in hand_over]
                handed.update((r["_id"], r) for r in page if r.get("_id") in hand_over)
                self.summary.scanned[kind.pipedrive] += len(page) - len(mine)
                page = mine
            self.page(page)
        self.summary.done.add(kind.pipedrive)
        return handed

    def page(self, page: list[Record]) -> None:
        kind, obj, summary = self.kind, self.kind.planhat, self.summary
        summary.scanned[kind.pipedrive] += len(page)
        by_source: dict[int, Record] = {}
        born: list[Record] = []  # created in Planhat: no sourceId
        for record in page:
            if not isinstance(record.get("_id"), str):
                continue
            source = record.get("sourceId")
            pipedrive_id = as_pipedrive_id(source)
            if pipedrive_id is None:
                if source in (None, ""):
                    born.append(record)
                else:
                    summary.foreign[kind.pipedrive] += 1  # another system's id: not ours
                continue
            by_source.setdefault(pipedrive_id, record)
        if born:
            summary.unsourced[kind.pipedrive] += len(born)
            if self.waiting is not None:
                self.waiting.born += born
            else:
                self.create(born)
        links = self.store.links_for(kind.pipedrive, sorted(by_source))
        candidates: dict[int, Record] = {}
        for pipedrive_id, record in by_source.items():
            link = links.get(pipedrive_id)
            if link is not None and link.planhat_id not in (None, record["_id"]):
                continue  # linked to another Planhat record: that one is the pair
            synced = link.values if link is not None else {}
            if link is None or _changed_in_planhat(self.mappings, obj, record, synced):
                candidates[pipedrive_id] = record
        if not candidates:
            return
        summary.changed[kind.pipedrive] += len(candidates)
        if self.waiting is not None:
            for pipedrive_id, record in candidates.items():
                link = links.get(pipedrive_id)
                digest = link.values_hash if link is not None else None
                self.waiting.changed[pipedrive_id] = (record, digest)
            return
        self.merge(candidates, links)

    def settle(self, waiting: Waiting) -> None:
        """Act on what a scan in a merge's read found, now that the stream is written: create
        the records born in Planhat, and merge the changed ones whose link is as it was when
        they were read (a link written since was merged by the stream, with Planhat's record
        read then: that one is newer)."""
        kind = self.kind
        if waiting.born:
            self.create(waiting.born)
        ids = sorted(waiting.changed)
        size = PAGE_MAX.get(kind.planhat_model, PAGE_MAX_DEFAULT)
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            links = self.store.links_for(kind.pipedrive, chunk)
            still: dict[int, Record] = {}
            for pipedrive_id in chunk:
                record, digest = waiting.changed[pipedrive_id]
                link = links.get(pipedrive_id)
                if (link.values_hash if link is not None else None) == digest:
                    still[pipedrive_id] = record
            if still:
                self.merge(still, links)

    def create(self, records: list[Record]) -> None:
        """Records created in Planhat become Pipedrive records, once (`tasks.create`)."""
        if self.kind.pipedrive not in CREATES:
            return
        creator = Creator(self.pipedrive, self.planhat, self.store, self.mappings, self.kind)
        actions = creator.create(records)
        self.summary.created[self.kind.pipedrive] += sum(
            1 for a in actions if a.action == "created"
        )
        self.summary.failed[self.kind.pipedrive] += sum(1 for a in actions if a.action == "failed")
        self.summary.pipedrive_calls[self.kind.pipedrive] += creator.requests
        if actions:
            self.store.log_actions(self.run_id, actions)

    def read_pipedrive(self, ids: Sequence[int]) -> dict[int, Record]:
        """The Pipedrive records, fresh: v2 lists by `ids`, 100 a call; notes (v1 has no
        such filter) one by one."""
        kind = self.kind
        if kind.pipedrive == "note":
            found: dict[int, Record] = {}
            for note_id in ids:
                self.summary.pipedrive_calls[kind.pipedrive] += 1
                try:
                    note = self.pipedrive.get_note(note_id)
                except NotFoundError:
                    continue
                if note.get("active_flag", True):
                    found[note_id] = note
            return found
        read = getattr(self.pipedrive, kind.pipedrive_list)
        self.summary.pipedrive_calls[kind.pipedrive] += -(-len(ids) // 100)
        return {r["id"]: r for r in read(ids=ids) if isinstance(r.get("id"), int)}

    def merge(self, candidates: Mapping[int, Record], links: Mapping[int, Any]) -> None:
        kind, obj, summary = self.kind, self.kind.planhat, self.summary
        ids = sorted(candidates)
        current = self.read_pipedrive(ids)
        actions: list[RunAction] = []
        writes: list[PipedriveWrite] = []
        upserts: list[tuple[int, Record]] = []
        after: dict[int, tuple[str, dict[str, Any]]] = {}
        for pipedrive_id, record in candidates.items():
            planhat_id = record["_id"]
            link = links.get(pipedrive_id)
            raw = current.get(pipedrive_id)
            if raw is None:
                if link is not None:
                    actions.append(
                        RunAction(
                            kind.sent_type,
                            "skipped",
                            pipedrive_id,
                            planhat_id,
                            reason=f"{kind.pipedrive_title} {pipedrive_id} is not in Pipedrive "
                            f"any more (deleted?): its {kind.planhat_title}'s changes are not sent",
                        )
                    )
                continue
            synced = link.values if link is not None else {}
            result = merge_pair(
                self.mappings, obj, synced=synced, pipedrive_record=raw, planhat_record=record
            )
            actions += conflict_actions(kind, pipedrive_id, planhat_id, result)
            summary.conflicts[kind.pipedrive] += len(result.conflicts)
            if result.to_pipedrive:
                writes.append(PipedriveWrite(pipedrive_id, planhat_id, result.to_pipedrive, raw))
            if result.to_planhat:
                item = planhat_patch(obj, result.to_planhat, source_id=pipedrive_id)
                if record.get("companyId"):
                    item["companyId"] = record["companyId"]
                if kind.planhat_model == "conversations":  # updated by `_id` only
                    keys = ("sourceId", "externalId")
                    item = {"_id": planhat_id, **{k: v for k, v in item.items() if k not in keys}}
                upserts.append((pipedrive_id, item))
            values = {**flatten(synced), **result.synced}
            after[pipedrive_id] = (planhat_id, values)
        outcome = write_pipedrive(self.pipedrive, self.mappings, kind, writes, dry_run=self.dry_run)
        actions += outcome.actions
        summary.pipedrive_calls[kind.pipedrive] += outcome.requests
        summary.to_pipedrive[kind.pipedrive] += sum(
            1 for a in outcome.actions if a.action == "updated"
        )
        for write in writes:  # a field Pipedrive refused keeps its last synced value
            if write.pipedrive_id in outcome.failed:
                planhat_id, values = after[write.pipedrive_id]
                old = (
                    flatten(links[write.pipedrive_id].values) if write.pipedrive_id in links else {}
                )
                for key in write.values:
                    if key in old:
                        values[key] = old[key]
                    else:
                        values.pop(key, None)
        refused = self.write_planhat(upserts, actions)
        summary.failed[kind.pipedrive] += len(outcome.failed) + len(refused)
        if actions:
            self.store.log_actions(self.run_id, fold_conflicts(actions))
        if self.dry_run:
            return
        rows = [
            LinkRow(pipedrive_id, planhat_id, unflatten(values))
            for pipedrive_id, (planhat_id, values) in after.items()
            if pipedrive_id not in refused
            and (pipedrive_id not in links or flatten(links[pipedrive_id].values) != values)
        ]
        if rows:
            self.store.upsert_links(kind.pipedrive, rows)

    def write_planhat(
        self, upserts: list[tuple[int, Record]], actions: list[RunAction]
    ) -> set[int]:
        """Pipedrive's side of the merged records to Planhat, in one bulk upsert; returns the
        records Planhat refused (their links stay as they were)."""
        kind = self.kind
        if not upserts:
            return set()
        if self.dry_run:
            for pipedrive_id, _ in upserts:
                actions.append(
                    RunAction(
                        kind.pipedrive, "updated", pipedrive_id, reason="dry run: would be updated"
                    )
                )
            return set()
        result = self.planhat.bulk_upsert(kind.planhat_model, [item for _, item in upserts])
        self.summary.planhat_writes[kind.pipedrive] += result.requests
        refused: set[int] = set()
        confirmed: set[int] = set()
        for outcome in result.items:
            pipedrive_id = upserts[outcome.index][0]
            if outcome.status in ("created", "updated", "unchanged"):
                confirmed.add(pipedrive_id)
                actions.append(RunAction(kind.pipedrive, outcome.status, pipedrive_id, outcome.id))
            else:
                refused.add(pipedrive_id)
                actions.append(
                    RunAction(
                        kind.pipedrive,
                        "failed",
                        pipedrive_id,
                        reason=outcome.error
                        or f"Planhat did not confirm this {kind.planhat_title}",
                    )
                )
        refused |= {pipedrive_id for pipedrive_id, _ in upserts} - confirmed - refused
        self.summary.to_planhat[kind.pipedrive] += len(confirmed)
        return refused


def scan_planhat(
    pipedrive: PipedriveClient,
    planhat: PlanhatClient,
    store: StateStore,
    mappings: Mappings,
    *,
    run_id: str,
    summary: ScanSummary | None = None,
) -> ScanSummary:
    """Scan Planhat for what changed there since the last sync, per kind that sends, and merge
    it into Pipedrive (see the module docstring). `summary`: the run's scan so far; the kinds
    it has done (`scan_during_merge`) are not read again."""
    summary = summary if summary is not None else ScanSummary()
    for kind in KINDS:
        if not sends(mappings, kind.pipedrive):
            continue
        scan = PlanhatScan(pipedrive, planhat, store, mappings, kind, summary, run_id)
        waiting = summary.waiting.pop(kind.pipedrive, None)
        if waiting is not None:
            scan.settle(waiting)
        elif kind.pipedrive not in summary.done:
            summary.scanned[kind.pipedrive] += 0  # scanned, even if Planhat holds none
            scan.run()
    return summary


def scan_during_merge(
    pipedrive: PipedriveClient,
    planhat: PlanhatClient,
    store: StateStore,
    mappings: Mappings,
    summary: ScanSummary,
    *,
    run_id: str,
) -> CurrentReader:
    """A merge's reader of Planhat's current records (`tasks.twoway.TwoWay`) for a run whose
    scan follows (`summary` is that scan's): when the merge would read Planhat's whole list of
    a kind the scan has still to read, the scan of that kind reads it in the same pages: the
    merge's records are handed to the merge, and what the scan finds in the others waits
    (`Waiting`) for the scan's turn after the stream (`scan_planhat`). The run then reads
    that list once, not twice."""

    def read_current(kind: Kind, wanted: Sequence[tuple[str, str | None]]) -> dict[str, Record]:
        if kind.pipedrive in summary.done or not reads_whole_list(kind, wanted):
            return read_planhat_current(planhat, mappings, kind, wanted)
        summary.scanned[kind.pipedrive] += 0
        waiting = summary.waiting[kind.pipedrive] = Waiting()
        scan = PlanhatScan(pipedrive, planhat, store, mappings, kind, summary, run_id, waiting)
        return scan.run(hand_over={planhat_id for planhat_id, _ in wanted})

    return read_current


def sync_notified(
    pipedrive: PipedriveClient,
    planhat: PlanhatClient,
    store: StateStore,
    mappings: Mappings,
    notified: Mapping[str, Sequence[tuple[str, str | None]]],
    *,
    run_id: str,
) -> ScanSummary:
    """The records Planhat's automation webhooks named (model → (`_id`, company `_id`)), read
    fresh from Planhat and merged into Pipedrive as the scan's pages are: only what changed
    since the last sync is written (a notification of our own write writes nothing)."""
    summary = ScanSummary()
    for kind in KINDS:
        wanted = notified.get(kind.planhat_model)
        if not wanted or not sends(mappings, kind.pipedrive):
            continue
        current = read_planhat_current(planhat, mappings, kind, wanted)
        scan = PlanhatScan(pipedrive, planhat, store, mappings, kind, summary, run_id)
        scan.page(list(current.values()))
    return summary


def scanned(summary: ScanSummary, *, dry_run: bool) -> None:
    """The scan's log line per kind."""
    for kind in KINDS:
        name = kind.pipedrive
        if name not in summary.scanned:
            continue
        log.info(
            "Planhat %s: %s read, %s changed since the last sync, %s without a sourceId "
            "(created in Planhat; %s %s in Pipedrive); %s %s to Pipedrive, %s to Planhat, "
            "%s conflicts, %s failed",
            kind.planhat_plural,
            f"{summary.scanned[name]:,}",
            f"{summary.changed[name]:,}",
            f"{summary.unsourced[name]:,}",
            f"{summary.created[name]:,}",
            "would be created" if dry_run else "created",
            "would write" if dry_run else "wrote",
            f"{summary.to_pipedrive[name]:,}",
            f"{summary.to_planhat[name]:,}",
            f"{summary.conflicts[name]:,}",
            f"{summary.failed[name]:,}",
        )


@task(name="scan Planhat and send its changes", cache_policy=NO_CACHE)
def scan_planhat_task(
    ctx: SyncContext, run_id: str, begun: ScanSummary | None = None
) -> ScanSummary:
    """Planhat's changes since the last sync, merged into Pipedrive, for the sections that
    send (nothing to do, and no call, when none does). `begun`: the scan the run's stream
    began (`scan_during_merge`), finished here."""
    summary = scan_planhat(
        ctx.pipedrive, ctx.planhat, ctx.store, ctx.mappings, run_id=run_id, summary=begun
    )
    scanned(summary, dry_run=ctx.dry_run)
    return summary
