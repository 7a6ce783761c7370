"""The incremental sync and the backfill as a stream: read, select, map and write together,
page by page, with only id maps and the current pages in memory.

* **Reading**: one reader thread per receiving stream lists it page by page (500 a page) into
  a small bounded queue (`tasks.pages.PageReader`); the writer, in the caller's thread, takes
  the streams in the order of writing: deals, organizations, persons, notes. The streams are
  read one after another in that order (each reader starts the next when its list is read), so
  that Pipedrive's budget goes to the stream the writer needs first. A reader waits when its
  queue is full; the Pipedrive client's limiter stays the only other wait.
* **Selecting** (the rules of `tasks.select.plan_scope`, record by record): won deals in a
  selected pipeline are kept as they pass (their ids and organizations in memory, the deals
  themselves on disk, `tasks.spill`); organizations, persons and notes are kept only when they
  belong to a company in Planhat or to be created.
* **Writing** (`tasks.push.push_mapped`, per chunk): a chunk of up to `CHUNK` records is written
  as soon as it is full; companies before their children. A license waits on disk for its own
  company's id, then for a moment when the writer has no page to take (`write_ready_licenses`;
  the rest at the end of the run): written right after their companies, chunks of licenses
  held the writer while the readers' queues filled and Pipedrive's budget went unused. A
  chunk's Pipedrive records are let go once mapped, unless its section sends and merges them.
  Each chunk's run-log actions go to the store at once (`store.log_actions`).
* **Cursors** never pass an unwritten record, nor the moment the stream's read began (as
  `Fetched.cap`), and a stream with a failed record keeps its cursor for the rest of the run:
  organizations and persons are read by `update_time` ascending (v2 keyset paging) and their
  cursor moves after each written chunk to the last `update_time` read, all of it written;
  notes (v1 offset paging: a note edited during a sorted read would move and shift the others
  past the reader) move at the end of their stream, to the newest `update_time` read; deals at
  the end of the run (a selected deal's company, persons and notes are written after it). A
  list that comes back out of `update_time` order moves its cursor only at its end.

An incremental run also reads what deals won since the last run bring (their organizations,
persons and notes, as `tasks.fetch.fetch_deal_relations`), after each stream; a backfill reads
every list whole and nothing more.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients import PipedriveClient, PlanhatClient
from clients.pipedrive import ReadStart
from mappings.kinds import BY_SECTION, BY_STREAM
from mappings.receive import (
    deal_to_license,
    note_to_conversation,
    organization_to_company,
    person_to_enduser,
)
from mappings.resolve import Mappings
from mappings.rows import MappedBatch
from store import StateStore
from store.records import RunAction
from tasks import fetch, steplog
from tasks.context import SyncContext
from tasks.fetch import STREAMS, key_time, receiving_sections, since_with_overlap, time_key
from tasks.pages import QUEUE_PAGES, PageReader
from tasks.push import PushResult, push_mapped
from tasks.scan import ScanSummary, scan_during_merge
from tasks.select import note_in_scope, select_won_deals
from tasks.spill import Spill
from tasks.twoway import CurrentReader, TwoWay, sends

log = logging.getLogger(__name__)

Record = dict[str, Any]

#: the most records one Planhat write carries (Planhat's bulk upsert limit)
CHUNK = 5_000
#: the order in which the writer takes the streams (and so the readers read them)
WRITE_ORDER = ("deals", "organizations", "persons", "notes")
#: the streams read by `update_time` ascending, whose cursor moves after each written chunk
SORTED_STREAMS = ("organizations", "persons")


class StreamSummary:
    """What a streamed run did, in counts (the actions themselves are in the store's run log).
    (A plain class: see `tasks.fetch.Fetched`.)"""

    def __init__(self) -> None:
        self.read: dict[str, int] = {}  # stream → records read (its list, then the extras)
        self.pages: dict[str, int] = {}
        self.selected = 0
        self.skipped_deals = 0
        self.kept: Counter[str] = Counter()  # object type → records sent to push_mapped
        self.actions: dict[str, Counter[str]] = {}  # object type → action → records
        self.requests: Counter[str] = Counter()  # object type → Planhat write calls
        self.chunks: Counter[str] = Counter()  # object type → push_mapped calls
        self.failed: set[str] = set()  # object types with a failed record
        self.cursors: dict[str, bool] = {}  # stream → moved
        #: the most records the run held at once (kept bodies and pending licenses), a check
        self.peak_held = 0
        #: the run's scan of Planhat, as far as the stream's merges did it (`StreamSync`)
        self.scan: ScanSummary | None = None


class StreamSync:
    """One streamed run's state: id maps, the current chunks, and the licenses waiting for
    their company's id."""

    def __init__(
        self,
        pipedrive: PipedriveClient,
        planhat: PlanhatClient,
        store: StateStore,
        mappings: Mappings,
        *,
        run_id: str,
        full: bool,
        chunk: int = CHUNK,
        scan: ScanSummary | None = None,
    ) -> None:
        self.pipedrive = pipedrive
        self.planhat = planhat
        self.store = store
        self.mappings = mappings
        self.run_id = run_id
        self.full = full
        self.chunk = chunk
        self.dry_run = mappings.dry_run
        self.summary = StreamSummary()
        #: a merge that reads Planhat's whole list of a kind the run's scan (which follows)
        #: has to read does that scan in the same read (`tasks.scan.scan_during_merge`)
        self.read_current: CurrentReader | None = None
        if scan is not None:
            self.summary.scan = scan
            self.read_current = scan_during_merge(
                pipedrive, planhat, store, mappings, scan, run_id=run_id
            )
        linked = store.linked_planhat_ids("organization")
        self.licensed: set[int] = store.linked_pipedrive_ids("deal")
        #: organization id → Planhat company `_id` (the links, then this run's companies)
        self.company_ids: dict[int, str] = {
            org_id: planhat_id for org_id, planhat_id in linked.items() if planhat_id
        }
        self.company_orgs: set[int] = set(linked)
        self.fresh: set[str] = set()  # companies this run created
        self.deal_orgs: dict[int, int] = {}
        self.person_orgs: dict[int, int] = {}
        self.selected_ids: set[int] = set()
        #: a selected deal's person → (the lowest such deal id, its organization)
        self.own_company: dict[int, tuple[int, int]] = {}
        #: deals won since the last run that may enter Planhat, i.e. with an organization
        #: (incremental): (deal id, org id, person id)
        self.needing: list[tuple[int, int | None, int | None]] = []
        #: the selected deals, on disk, by organization id: waiting for their company's id, or
        #: ready (known, or none) to be written a chunk at a time
        self.pending = Spill()
        self.skips: list[RunAction] = []
        self.held = 0
        #: the running stream readers, for the moment each read began (the cursors' cap)
        self.readers: dict[str, PageReader] = {}
        #: stream → `update_time` of the last record, and the newest, as `fetch.time_key`s
        self.last_key: dict[str, str] = {}
        self.newest_key: dict[str, str] = {}
        self.in_order: dict[str, bool] = {s: True for s in SORTED_STREAMS}

    # -- bookkeeping ---------------------------------------------------------------------------
    def _hold(self, change: int) -> None:
        self.held += change
        self.summary.peak_held = max(self.summary.peak_held, self.held)

    def _log(self, actions: list[RunAction]) -> None:
        if actions:
            self.store.log_actions(self.run_id, actions)

    def _keep(self, chunk: dict[Any, Record], record: Record) -> int:
        """Add a record to a chunk (a record read twice, e.g. changed while its sorted list was
        read, is sent once: its last copy); returns the chunk's size."""
        key = record.get("id")
        if key not in chunk:
            self._hold(1)
        chunk[key] = record
        return len(chunk)

    def _seen(self, stream: str, record: Record) -> None:
        read = self.summary.read
        read[stream] = read.get(stream, 0) + 1
        key = time_key(record)
        if key is None:
            return
        if stream in self.in_order:
            last = self.last_key.get(stream)
            if last is not None and key < last:
                self.in_order[stream] = False  # not sorted after all: move at the end only
            self.last_key[stream] = key
        newest = self.newest_key.get(stream)
        if newest is None or key > newest:
            self.newest_key[stream] = key

    def push(
        self,
        object_type: str,
        batch: MappedBatch,
        records: list[Record],
        held: int | None = None,
    ) -> PushResult:
        """One chunk to Planhat (and, both ways, its merge with Planhat's side), its actions to
        the run log at once. `records` (the chunk's Pipedrive records, the caller's only copy)
        are let go once mapped, unless the merge needs them: a chunk is in memory once.
        `held`: the records the chunk stands for (default: `records`). Of a chunk of
        organizations only the linked ones are kept for the merge (a backfill's are new)."""
        held = len(records) if held is None else held
        needed = records  # by a merge: only linked records are merged (`TwoWay.merge`)
        if object_type == "organization":
            # linked organizations (before the run, or written by it) are `company_ids`' keys
            needed = [r for r in records if r.get("id") in self.company_ids]
        twoway = TwoWay.for_push(
            self.pipedrive, self.planhat, self.mappings, object_type, needed, self.read_current
        )
        if twoway is None or needed is not records:
            records.clear()
        result = push_mapped(
            self.planhat,
            self.store,
            object_type,
            batch,
            dry_run=self.dry_run,
            fresh_companies=self.fresh,
            twoway=twoway,
        )
        self._log(result.actions)
        summary = self.summary
        counts = summary.actions.setdefault(object_type, Counter())
        counts.update(a.action for a in result.actions)
        summary.requests[object_type] += result.requests
        summary.chunks[object_type] += 1
        summary.kept[object_type] += held
        if result.failed:
            summary.failed.add(object_type)
        self._hold(-held)
        return result

    def pages(self, reader: PageReader) -> Iterator[list[Record]]:
        """A reader's pages, with the page-progress hook (`tasks.fetch.page_progress`)."""
        read = 0
        for page in reader.pages(idle=self.write_ready_licenses):
            self.summary.pages[reader.stream] = self.summary.pages.get(reader.stream, 0) + 1
            self._hold(len(page))
            yield page
            self._hold(-len(page))
            read += len(page)
            if len(page) >= fetch.page_size():
                fetch.notify_page(reader.stream, read, False)
        fetch.notify_page(reader.stream, read, True)

    def _move_cursor(self, stream: str, value: datetime) -> None:
        if self.dry_run or BY_STREAM[stream].pipedrive in self.summary.failed:
            return
        self.summary.cursors[stream] = self.store.advance_cursor(stream, value, pushed=True)

    def chunk_written(self, stream: str) -> None:
        """A chunk of a sorted stream is written, and with it every record read before it:
        its cursor moves to the last `update_time` read (capped at the read's start)."""
        reader, last = self.readers.get(stream), self.last_key.get(stream)
        if reader is None or last is None or not self.in_order.get(stream):
            return
        self._move_cursor(stream, min(key_time(last), reader.read_started))

    def finish_stream(self, stream: str, reader: PageReader | None) -> None:
        """The stream is fully written: its cursor may move (capped at its read's start)."""
        newest = self.newest_key.get(stream)
        if reader is None or newest is None:
            return
        self._move_cursor(stream, min(key_time(newest), reader.read_started))

    # -- deals ---------------------------------------------------------------------------------
    def take_deals(self, pages: Iterable[list[Record]]) -> None:
        for page in pages:
            for deal in page:
                self._seen("deals", deal)
                deal_id, org_id = deal.get("id"), deal.get("org_id")
                if isinstance(deal_id, int) and isinstance(org_id, int):
                    self.deal_orgs[deal_id] = org_id
            selection = select_won_deals(page, self.mappings, self.licensed)
            self.summary.skipped_deals += len(selection.skipped)
            self.skips += selection.skipped
            if len(self.skips) >= self.chunk:
                self._log(self.skips)
                self.skips = []
            for deal in selection.selected:
                self.select(deal)
        self._log(self.skips)
        self.skips = []

    def select(self, deal: Record) -> None:
        self.summary.selected += 1
        deal_id = int(deal["id"])
        org_id = deal.get("org_id") if isinstance(deal.get("org_id"), int) else None
        person_id = deal.get("person_id") if isinstance(deal.get("person_id"), int) else None
        self.selected_ids.add(deal_id)
        if org_id is not None:
            self.company_orgs.add(org_id)
            if person_id is not None:
                first = self.own_company.get(person_id)
                if first is None or deal_id < first[0]:
                    self.own_company[person_id] = (deal_id, org_id)
        if not self.full and deal_id not in self.licensed and org_id is not None:
            # (without an organization no license, and so none of its relations, can be
            # written: reading its notes and persons would be calls for nothing)
            self.needing.append((deal_id, org_id, person_id))
        self.pending.add(org_id, deal, ready=org_id is None or org_id in self.company_ids)

    def write_ready_licenses(self) -> bool:
        """While the writer would wait for a page: a full chunk of the licenses whose company
        is known, if there is one (True: it was written). Licenses wait on disk, so they are
        written when the writer has nothing else to do rather than right after their companies:
        a chunk written in one go holds the writer for up to a second, and several in a row
        (after a chunk of companies) left the readers' queues full and Pipedrive's budget
        unused."""
        if self.pending.ready < self.chunk:
            return False
        self._write_licenses(waiting_too=False)
        return True

    def flush_licenses(self) -> None:
        """Write every license left, whatever its company (every company this run writes is
        written by now)."""
        while len(self.pending):
            self._write_licenses(waiting_too=True)

    def _write_licenses(self, *, waiting_too: bool) -> None:
        """One chunk of licenses from `pending`, mapped a page at a time: a raw deal takes
        several times its license's memory (a section that sends keeps them for its merge)."""
        keep_raw = sends(self.mappings, "deal")
        mapped, raw, taken = MappedBatch(), [], 0
        while taken < self.chunk:
            part = self.pending.take(
                min(fetch.page_size(), self.chunk - taken), waiting_too=waiting_too
            )
            if not part:
                break
            taken += len(part)
            mapped.extend(deal_to_license(part, self.mappings, company_ids=self.company_ids))
            if keep_raw:
                raw += part
        self._hold(taken)
        self.push("deal", mapped, raw, held=taken)

    # -- organizations ---------------------------------------------------------------------------
    def wanted_orgs(self) -> set[int]:
        return {org for _, org, _ in self.needing if org is not None}

    def take_organizations(self, pages: Iterable[list[Record]]) -> None:
        sync_all = self.mappings.sync_all_organizations
        wanted = self.wanted_orgs()
        seen_wanted: set[int] = set()
        kept: dict[Any, Record] = {}
        for page in pages:
            for org in page:
                self._seen("organizations", org)
                org_id = org.get("id")
                if not isinstance(org_id, int):
                    continue
                if org_id in wanted:
                    seen_wanted.add(org_id)
                if sync_all:
                    self.company_orgs.add(org_id)
                if org_id in self.company_orgs and self._keep(kept, org) >= self.chunk:
                    self.write_companies(kept)
                    kept = {}
                    self.chunk_written("organizations")
        missing = sorted(wanted - seen_wanted)
        if missing:
            for org in self.pipedrive.iter_organizations(ids=missing):
                if isinstance(org.get("id"), int):
                    self.company_orgs.add(org["id"])
                    self._keep(kept, org)
        if kept:
            self.write_companies(kept)

    def write_companies(self, chunk: dict[Any, Record]) -> None:
        """Write a chunk of companies (the caller's `chunk` is emptied); the licenses that
        waited for them are ready to be written (`write_ready_licenses`)."""
        orgs = list(chunk.values())
        chunk.clear()
        result = self.push("organization", organization_to_company(orgs, self.mappings), orgs)
        del orgs
        self.company_ids.update(result.planhat_ids)
        self.fresh |= result.created
        self.pending.release(result.planhat_ids)

    # -- persons ---------------------------------------------------------------------------------
    def _person(self, person: Record) -> Record | None:
        person_id, org_id = person.get("id"), person.get("org_id")
        if not isinstance(person_id, int):
            return None
        if isinstance(org_id, int) and org_id in self.company_orgs:
            self.person_orgs[person_id] = org_id
            return person
        own = self.own_company.get(person_id)
        if own is not None:
            # the deal's own person, outside the deal's organization: under its company
            self.person_orgs[person_id] = own[1]
            return {**person, "org_id": own[1]}
        return None

    def take_persons(self, pages: Iterable[list[Record]]) -> None:
        seen: set[int] = set()  # only an incremental run reads persons twice
        kept: dict[Any, Record] = {}

        def keep(person: Record) -> bool:
            """Keep a person; True when that wrote a chunk."""
            nonlocal kept
            if not self.full and isinstance(person.get("id"), int):
                if person["id"] in seen:
                    return False
                seen.add(person["id"])
            chosen = self._person(person)
            if chosen is None:
                return False
            if self._keep(kept, chosen) < self.chunk:
                return False
            self.write_persons(kept)
            kept = {}
            return True

        for page in pages:
            for person in page:
                self._seen("persons", person)
                if keep(person):
                    self.chunk_written("persons")
        if self.needing:
            for org_id in sorted(self.wanted_orgs()):
                for person in self.pipedrive.iter_persons(org_id=org_id):
                    keep(person)
            own = sorted({p for _, _, p in self.needing if p is not None} - seen)
            if own:
                for person in self.pipedrive.iter_persons(ids=own):
                    keep(person)
        if kept:
            self.write_persons(kept)

    def write_persons(self, chunk: dict[Any, Record]) -> None:
        """Write a chunk of end users (the caller's `chunk` is emptied)."""
        persons = list(chunk.values())
        chunk.clear()
        mapped = person_to_enduser(persons, self.mappings, company_ids=self.company_ids)
        self.push("person", mapped, persons)

    # -- notes -----------------------------------------------------------------------------------
    def take_notes(self, pages: Iterable[list[Record]]) -> None:
        scope = self.mappings.notes_scope
        deal_ids = self.selected_ids | self.licensed
        seen: set[int] = set()
        kept: dict[Any, Record] = {}

        def keep(note: Record) -> None:
            nonlocal kept
            if not self.full and isinstance(note.get("id"), int):
                if note["id"] in seen:
                    return
                seen.add(note["id"])
            if not note_in_scope(note, self.mappings) or not note.get("active_flag", True):
                return
            if (
                ("deal" in scope and note.get("deal_id") in deal_ids)
                or ("organization" in scope and note.get("org_id") in self.company_orgs)
                or ("person" in scope and note.get("person_id") in self.person_orgs)
            ) and self._keep(kept, note) >= self.chunk:
                self.write_notes(kept)
                kept = {}

        for page in pages:
            for note in page:
                self._seen("notes", note)
                keep(note)
        if self.needing:
            if "deal" in scope:
                for deal_id, _, _ in self.needing:
                    for note in self.pipedrive.iter_notes(deal_id=deal_id):
                        keep(note)
            if "organization" in scope:
                for org_id in sorted(self.wanted_orgs()):
                    for note in self.pipedrive.iter_notes(org_id=org_id):
                        keep(note)
        if kept:
            self.write_notes(kept)

    def write_notes(self, chunk: dict[Any, Record]) -> None:
        """Write a chunk of conversations (the caller's `chunk` is emptied)."""
        notes = list(chunk.values())
        chunk.clear()
        mapped = note_to_conversation(
            notes,
            self.mappings,
            company_ids=self.company_ids,
            deal_orgs=self.deal_orgs,
            person_orgs=self.person_orgs,
        )
        self.push("note", mapped, notes)


def open_reader(
    pipedrive: PipedriveClient, section: str, since: datetime | None, depth: int
) -> PageReader:
    """A reader of every record of `section` updated since `since` (None: all)."""
    kind = BY_SECTION[section]
    list_records = getattr(pipedrive, kind.pipedrive_list)
    order = (
        {"sort_by": "update_time", "sort_direction": "asc"} if kind.stream in SORTED_STREAMS else {}
    )

    def records(start: ReadStart) -> Iterable[Record]:
        return list_records(updated_since=since, read_start=start, **order)  # type: ignore[no-any-return]

    return PageReader(kind.stream, records, depth)


def stream_sync(
    pipedrive: PipedriveClient,
    planhat: PlanhatClient,
    store: StateStore,
    mappings: Mappings,
    *,
    run_id: str,
    full: bool,
    overlap_s: int = 0,
    chunk: int = CHUNK,
    depth: int = QUEUE_PAGES,
    scan: ScanSummary | None = None,
) -> StreamSummary:
    """The incremental sync (`full`: the backfill) as a stream (see the module docstring).
    Every record's action is in the store's run log (`run_id`) when this returns. `scan`: the
    scan of Planhat that follows this stream in the run, which a merge may begin
    (`tasks.scan.scan_during_merge`); it is the summary's `scan`."""
    run = StreamSync(
        pipedrive, planhat, store, mappings, run_id=run_id, full=full, chunk=chunk, scan=scan
    )
    readers: dict[str, PageReader] = {}
    for section in receiving_sections(mappings):
        stream = STREAMS[section]
        cursor = None if full else store.get_cursor(stream)
        since = since_with_overlap(cursor.value if cursor else None, overlap_s)
        readers[stream] = open_reader(pipedrive, section, since, depth)
    run.readers = readers
    try:
        chain = [readers[s] for s in WRITE_ORDER if s in readers]  # read as they are written
        for reader, following in zip(chain, chain[1:], strict=False):
            reader.then = following
        if chain:
            chain[0].begin()

        def pages(stream: str) -> Iterable[list[Record]]:
            reader = readers.get(stream)
            return run.pages(reader) if reader is not None else ()

        run.take_deals(pages("deals"))
        if "organizations" in readers:
            run.take_organizations(pages("organizations"))
        run.finish_stream("organizations", readers.get("organizations"))
        if "persons" in readers:
            run.take_persons(pages("persons"))
            run.finish_stream("persons", readers["persons"])
        if "notes" in readers:
            run.take_notes(pages("notes"))
            run.finish_stream("notes", readers["notes"])
        run.flush_licenses()  # those not written while the writer waited for pages
        # last: what a selected deal brings (company, persons, notes) is written by now
        run.finish_stream("deals", readers.get("deals"))
    finally:
        for reader in readers.values():
            reader.close()
        run.pending.close()
    return run.summary


# -- Prefect task: a thin wrapper ------------------------------------------------------------------


@task(name="read, select and write, streamed", cache_policy=NO_CACHE)
def stream_sync_task(ctx: SyncContext, run_id: str, full: bool) -> StreamSummary:
    """Every receiving section since its cursor (minus the overlap), or everything (`full`),
    read, selected and written to Planhat together, in chunks. The scan of Planhat that
    follows (`tasks.scan.scan_planhat_task`) takes over the summary's `scan`: a merge may
    have begun it."""
    summary = stream_sync(
        ctx.pipedrive,
        ctx.planhat,
        ctx.store,
        ctx.mappings,
        run_id=run_id,
        full=full,
        overlap_s=ctx.settings.integration.incremental.overlap_seconds,
        scan=ScanSummary(),
    )
    steplog.streamed(summary, full=full, dry_run=ctx.dry_run)
    return summary
