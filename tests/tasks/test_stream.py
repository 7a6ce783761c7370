"""The streamed sync (`tasks.stream`) as a plain function against an in-memory Pipedrive (pages
of the `small` data set) and Planhat (`planhat_fake`) and a real SQLite store: the same outcome
as the phased fetch → select → enrich → push, record for record, written in chunks of at most
the chunk size, companies before their children, no cursor past an unwritten record, and never
a whole stream in memory."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from planhat_fake import FakePlanhat

import tasks.fetch
from clients.pipedrive import ReadStart
from deployments.sandbox_settings import SANDBOX_DIR, account_from_seed
from mappings.loading import load_settings
from mappings.resolve import compile_mappings
from sandbox.data import generate
from store import StateStore
from store.records import RunAction
from tasks.fetch import Fetched, update_time
from tasks.push import convert_and_push
from tasks.scan import ScanSummary, scan_planhat
from tasks.select import plan_scope, select_won_deals
from tasks.stream import stream_sync
from tasks.twoway import COMPANIES_ONE_BY_ONE

PD, PH = generate("small", 7)
MAPPINGS = compile_mappings(load_settings(SANDBOX_DIR), account_from_seed(PD, PH.users))
BEGAN = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
PAGE, CHUNK, DEPTH = 5, 8, 1
MODELS = {"organizations": "companies", "persons": "endusers", "deals": "licenses",
          "notes": "conversations"}  # fmt: skip
TOTAL = len(PD.deals) + len(PD.organizations) + len(PD.persons) + len(PD.notes)


class Tracked(dict[str, Any]):
    """A record handed out by the fake Pipedrive; counts how many are alive at once."""

    live = 0
    peak = 0
    lock = threading.Lock()

    def __init__(self, record: Mapping[str, Any]) -> None:
        super().__init__(record)
        with Tracked.lock:
            Tracked.live += 1
            Tracked.peak = max(Tracked.peak, Tracked.live)

    def __del__(self) -> None:
        with Tracked.lock:
            Tracked.live -= 1

    def __reduce__(self) -> tuple[Any, ...]:  # a waiting license comes back from disk counted
        return (Tracked, (dict(self),))


class FakePipedrive:
    """The four lists of the `small` data set, yielded record by record as fresh objects (no
    list is held here), the read's first answer at `BEGAN` by Pipedrive's clock."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.events: list[tuple[str, str]] = []  # ("open" | "end", list), as they happen
        self.note_reads: list[dict[str, Any]] = []  # each notes list's filters

    def _list(
        self, name: str, source: list[dict[str, Any]], start: ReadStart | None, **params: Any
    ) -> Any:
        self.calls[name] += 1
        if start is not None and start.at is None:
            start.at = BEGAN
        if params.get("sort_by") == "update_time":  # v2: sort_by, sort_direction
            assert params.get("sort_direction") == "asc"
            source = sorted(source, key=lambda r: (update_time(r), r["id"]))
        self.events.append(("open", name))
        for record in source:
            yield Tracked(record)
        self.events.append(("end", name))

    def iter_deals(self, *, read_start: ReadStart | None = None, **kw: Any) -> Iterator[Any]:
        return self._list("deals", PD.deals, read_start, **kw)  # type: ignore[no-any-return]

    def iter_organizations(
        self, *, read_start: ReadStart | None = None, ids: Iterable[int] | None = None, **kw: Any
    ) -> Iterator[Any]:
        wanted = set(ids) if ids is not None else None
        rows = [o for o in PD.organizations if wanted is None or o["id"] in wanted]
        return self._list("organizations", rows, read_start, **kw)  # type: ignore[no-any-return]

    def iter_persons(self, *, read_start: ReadStart | None = None, **kw: Any) -> Iterator[Any]:
        return self._list("persons", PD.persons, read_start, **kw)  # type: ignore[no-any-return]

    def iter_notes(self, *, read_start: ReadStart | None = None, **kw: Any) -> Iterator[Any]:
        self.note_reads.append(kw)
        return self._list("notes", PD.notes, read_start)  # type: ignore[no-any-return]


class WatchedPlanhat(FakePlanhat):
    """Checks every write as it happens: its size, and that each child's company exists."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, int]] = []
        self.orphans: list[Any] = []

    def bulk_upsert(self, model: str, items: Iterable[Mapping[str, Any]]) -> Any:
        items = [dict(i) for i in items]
        self.writes.append((model, len(items)))
        if model != "companies":
            companies = {c["_id"] for c in self.records("companies")}
            self.orphans += [i for i in items if i.get("companyId") not in companies]
        return super().bulk_upsert(model, items)


SOURCE = {"deals": PD.deals, "organizations": PD.organizations, "persons": PD.persons,
          "notes": PD.notes}  # fmt: skip


class WatchedStore(StateStore):
    """Checks every cursor move: every record of the stream older than the new cursor that the
    run writes is in Planhat already (one as old is read again: `updated_since` includes it)."""

    planhat: WatchedPlanhat
    expected: dict[str, set[str]]
    passed: list[tuple[str, str]]
    moves: Counter[str]

    def advance_cursor(self, stream: str, value: datetime, **kw: Any) -> bool:
        model = MODELS[stream]
        written = {str(r.get("sourceId")) for r in self.planhat.records(model)}
        older = {str(r["id"]) for r in SOURCE[stream] if (update_time(r) or BEGAN) < value}
        self.passed += [(stream, i) for i in sorted((self.expected[stream] & older) - written)]
        self.moves[stream] += 1
        return super().advance_cursor(stream, value, **kw)


def _expected(store_dir: Path) -> tuple[dict[str, set[str]], Counter[tuple[str, str]]]:
    """What the phased path (fetch → select → enrich → push) writes: ids per model, and the
    run's actions per (object, action)."""
    fetched = Fetched()
    for stream, rows in (("deals", PD.deals), ("organizations", PD.organizations),
                         ("persons", PD.persons), ("notes", PD.notes)):  # fmt: skip
        fetched.add(stream, rows)
    planhat = FakePlanhat()
    with StateStore(f"sqlite:///{store_dir / 'phased.db'}") as store:
        selection = select_won_deals(fetched.deals.values(), MAPPINGS)
        scope = plan_scope(fetched, selection, MAPPINGS, linked_orgs=())
        results = convert_and_push(
            planhat,
            store,
            MAPPINGS,
            scope,
            pipedrive=FakePipedrive(),  # type: ignore[arg-type]
        )
    actions: list[RunAction] = list(scope.skipped)
    for result in results:
        actions += result.actions
    ids = {
        stream: {str(r["sourceId"]) for r in planhat.records(model)}
        for stream, model in MODELS.items()
    }
    return ids, Counter((a.object_type, a.action) for a in actions)


def _stream(
    pipedrive: Any, planhat: Any, store: StateStore, run_id: str = "run-1", full: bool = True
) -> Any:
    """`stream_sync` with the fakes at the client seam, in small chunks and queues."""
    return stream_sync(
        pipedrive, planhat, store, MAPPINGS, run_id=run_id, full=full, chunk=CHUNK, depth=DEPTH
    )


@pytest.fixture()
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks.fetch, "PAGE_SIZE", PAGE)


@pytest.mark.usefixtures("small_pages")
def test_the_stream_writes_what_the_phases_wrote_in_chunks_companies_first(
    tmp_path: Path,
) -> None:
    expected, expected_actions = _expected(tmp_path)
    assert all(expected.values())  # the data set has something of every kind to write
    planhat = WatchedPlanhat()
    Tracked.live = Tracked.peak = 0
    pipedrive = FakePipedrive()
    with WatchedStore(f"sqlite:///{tmp_path / 'stream.db'}") as store:
        store.planhat, store.expected, store.passed = planhat, expected, []
        store.moves = Counter()
        summary = _stream(pipedrive, planhat, store)
        report = store.run_report("run-1")
        cursors = store.all_cursors()

    # the lists read one after another in the order they are written (each reader starts the
    # next once its own list is read): Pipedrive's budget goes to the list needed first
    order = ("deals", "organizations", "persons", "notes")
    assert pipedrive.events == [(event, name) for name in order for event in ("open", "end")]
    # the same records, and the same action for each (now read back from the run log)
    for stream, model in MODELS.items():
        assert {str(r["sourceId"]) for r in planhat.records(model)} == expected[stream], model
    logged = Counter({(o, a): n for o, row in report.counts.items() for a, n in row.items()})
    assert logged == expected_actions
    # chunks of at most CHUNK; several per model (nothing waited for a whole stream)
    assert planhat.writes and all(size <= CHUNK for _, size in planhat.writes)
    assert all(n > 1 for n in Counter(m for m, _ in planhat.writes).values())
    # a child is written only once its company is in Planhat
    assert planhat.orphans == []
    # every stream's cursor moved, and only past what was written; the sorted streams'
    # cursors after each chunk, the others at their stream's (deals: the run's) end
    assert store.passed == []
    assert store.moves["persons"] > 1 and store.moves["organizations"] >= 1
    assert store.moves["deals"] == store.moves["notes"] == 1
    assert set(cursors) == {"deals", "organizations", "persons", "notes"}
    assert all(c.value <= BEGAN for c in cursors.values())
    assert summary.failed == set()
    # never a whole stream in memory: the pages in the queues and a chunk or two (the licenses
    # waiting for their company wait on disk)
    bound = 4 * (DEPTH + 2) * PAGE + 2 * CHUNK
    assert summary.peak_held <= bound < TOTAL / 2, (summary.peak_held, bound)
    assert Tracked.peak <= bound, Tracked.peak
    assert max(len(PD.persons), len(PD.notes)) > bound


@pytest.mark.usefixtures("small_pages")
def test_a_failed_chunk_keeps_its_streams_cursor(tmp_path: Path) -> None:
    class FailingNotes(WatchedPlanhat):
        def bulk_upsert(self, model: str, items: Iterable[Mapping[str, Any]]) -> Any:
            if model == "conversations" and sum(m == model for m, _ in self.writes) == 1:
                items = [{**dict(i), "companyId": "nowhere"} for i in items]  # Planhat refuses
            return super().bulk_upsert(model, items)

    planhat = FailingNotes()
    with WatchedStore(f"sqlite:///{tmp_path / 'stream.db'}") as store:
        store.planhat, store.expected, store.passed = planhat, _expected(tmp_path)[0], []
        store.moves = Counter()
        summary = _stream(FakePipedrive(), planhat, store)
        cursors = store.all_cursors()
    assert summary.failed == {"note"}
    assert "notes" not in cursors and {"deals", "organizations", "persons"} <= set(cursors)


@pytest.mark.usefixtures("small_pages")
def test_an_incremental_run_after_the_backfill_writes_nothing(tmp_path: Path) -> None:
    planhat = FakePlanhat()
    pipedrive = FakePipedrive()
    with StateStore(f"sqlite:///{tmp_path / 'stream.db'}") as store:
        for run, full in (("run-1", True), ("run-2", False)):
            pipedrive.note_reads.clear()
            _stream(pipedrive, planhat, store, run_id=run, full=full)
            if run == "run-1":
                planhat.calls.clear()
        counts = store.run_report("run-2").counts
    assert not [c for c in planhat.calls if c.startswith("PUT")], planhat.calls
    assert all(set(row) <= {"unchanged", "skipped"} for row in counts.values()), counts
    # a won deal without an organization can never have a license: its notes are not read
    orgless = {d["id"] for d in PD.deals if not d.get("org_id")}
    by_deal = [r["deal_id"] for r in pipedrive.note_reads if r.get("deal_id") is not None]
    assert not orgless & set(by_deal), sorted(orgless & set(by_deal))


def test_an_incremental_merge_of_many_companies_reads_their_list_once_for_the_scan_too(
    tmp_path: Path,
) -> None:
    """Organizations go both ways in the sandbox settings: a run whose changed organizations
    are too many to read from Planhat one by one reads Planhat's company list for their merge,
    and the scan after the stream reads no second copy of it (issue 14)."""
    renamed: set[int] = set()

    class Renaming(FakePipedrive):
        def iter_organizations(self, **kw: Any) -> Iterator[Any]:
            for org in super().iter_organizations(**kw):
                yield (
                    Tracked({**org, "name": f"{org['name']} (renamed)"})
                    if org["id"] in renamed
                    else org
                )

        def update_organization(self, *_: Any, **__: Any) -> Any:
            raise AssertionError("only Pipedrive changed: nothing goes to Pipedrive")

    planhat, pipedrive = FakePlanhat(), Renaming()
    with StateStore(f"sqlite:///{tmp_path / 'stream.db'}") as store:
        stream_sync(pipedrive, planhat, store, MAPPINGS, run_id="run-1", full=True)  # type: ignore[arg-type]
        renamed |= {org for org, ph in store.linked_planhat_ids("organization").items() if ph}
        assert len(renamed) > COMPANIES_ONE_BY_ONE
        planhat.calls.clear()
        scan = ScanSummary()
        stream_sync(pipedrive, planhat, store, MAPPINGS, run_id="run-2", full=False, scan=scan)  # type: ignore[arg-type]
        scan_planhat(pipedrive, planhat, store, MAPPINGS, run_id="run-2", summary=scan)  # type: ignore[arg-type]
    assert planhat.calls["GET /companies"] == 1, planhat.calls
    assert scan.done == {"organization"} and not scan.waiting
    names = {c["sourceId"]: c["name"] for c in planhat.records("companies")}
    assert all(names[str(org)].endswith("(renamed)") for org in renamed)


def test_a_read_error_is_raised_in_the_writers_thread(tmp_path: Path) -> None:
    class Broken(FakePipedrive):
        def iter_notes(self, **_: Any) -> Iterator[Any]:
            raise RuntimeError("Pipedrive is down")

    with (
        StateStore(f"sqlite:///{tmp_path / 'stream.db'}") as store,
        pytest.raises(RuntimeError, match="Pipedrive is down"),
    ):
        stream_sync(
            Broken(),  # type: ignore[arg-type]
            FakePlanhat(),  # type: ignore[arg-type]
            store,
            MAPPINGS,
            run_id="run-1",
            full=True,
        )


@pytest.mark.usefixtures("small_pages")
def test_licenses_are_written_while_the_writer_waits_for_a_page(tmp_path: Path) -> None:
    """A license ready to be written (its company is in Planhat) waits on disk until the writer
    has no page to take: the persons' list stalls after its first page until licenses are in
    Planhat, which only the writer's idle time can do by then (organizations are read)."""
    licensed = threading.Event()
    stalled: list[bool] = []

    class Signalling(WatchedPlanhat):
        def bulk_upsert(self, model: str, items: Iterable[Mapping[str, Any]]) -> Any:
            answer = super().bulk_upsert(model, items)
            if model == "licenses":
                licensed.set()
            return answer

    class Stalling(FakePipedrive):
        def iter_persons(self, **kw: Any) -> Iterator[Any]:
            for n, person in enumerate(super().iter_persons(**kw)):
                if n == PAGE:  # the second page's request
                    stalled.append(licensed.wait(timeout=10))
                yield person

    planhat = Signalling()
    with StateStore(f"sqlite:///{tmp_path / 'stream.db'}") as store:
        _stream(Stalling(), planhat, store)
    assert stalled == [True]  # written while the persons' read waited, not after the stream
    licenses = [size for model, size in planhat.writes if model == "licenses"]
    assert len(licenses) > 1 and all(size <= CHUNK for size in licenses)
    assert planhat.orphans == []
    expected = _expected(tmp_path)[0]["deals"]
    assert {str(r["sourceId"]) for r in planhat.records("licenses")} == expected
