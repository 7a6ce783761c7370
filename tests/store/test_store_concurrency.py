"""Two OS processes on one database at once: schema creation, inbox adds and claims, link
upserts and cursor moves race, and nothing is duplicated, lost or handed out twice."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from store_support import wipe_postgres
from store_workers import N_EVENTS, N_LINKS, T0, contend, open_at_once

from store import StateStore
from store.schema import inbox, links

WORKERS = 2


@pytest.mark.slow
def test_two_processes_at_once_duplicate_nothing_and_claim_each_item_once(
    store_url: str,
) -> None:
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        start = manager.Barrier(WORKERS)
        futures = [pool.submit(contend, store_url, n, start) for n in range(WORKERS)]
        results = [f.result(timeout=240) for f in futures]

    # the same 600 events added by both: each stored once, "new" said once per event
    assert sum(r["new"] for r in results) == N_EVENTS
    claimed = [i for r in results for i in r["claimed"]]
    assert len(claimed) == len(set(claimed)) == N_EVENTS  # each claimed exactly once
    assert all(r["claimed"] for r in results)  # both workers really competed
    assert sum(r["conflicts"] for r in results) == 1  # the shared Planhat id: one wins

    with StateStore(store_url) as store:
        assert store.inbox_counts() == {
            "pending": 0,
            "processing": 0,
            "done": N_EVENTS,
            "failed": 0,
        }
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.max(inbox.c.attempts))).scalar() == 1
            pairs = conn.execute(sa.select(links.c.pipedrive_id, links.c.planhat_id)).all()
        assert sorted(pairs) == [(i, f"ph-{i}") for i in range(1, N_LINKS + 1)] + [
            (p.pipedrive_id, "ph-shared")
            for p in store.links_by_planhat("person", ["ph-shared"]).values()
        ]
        assert store.count_links("person") == 1
        found = store.links_for("deal", range(1, N_LINKS + 1))
        assert all(link.values["n"] == i for i, link in found.items())
        cursor = store.get_cursor("deals")
        assert cursor is not None
        assert cursor.value == T0 + timedelta(seconds=99)  # the newest either process wrote
        assert cursor.seen_ids == {1}


@pytest.mark.slow
def test_processes_opening_a_new_database_at_once_all_succeed(
    store_url: str, tmp_path: Path
) -> None:
    """Four processes create the schema of an empty database at the same moment, several
    times over: every one opens it, and the event they all add is stored once."""
    processes, rounds = 4, (12 if store_url.startswith("sqlite") else 4)
    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(processes, mp_context=context) as pool,
    ):
        for n in range(rounds):
            if store_url.startswith("sqlite"):
                url = f"sqlite:///{tmp_path / f'round{n}' / 'state.db'}"
            else:
                url = store_url
                wipe_postgres(url)
            start = manager.Barrier(processes)
            futures = [pool.submit(open_at_once, url, start) for _ in range(processes)]
            assert sum(f.result(timeout=120) for f in futures) == 1, f"round {n}"
            with StateStore(url) as store:
                assert store.inbox_counts()["pending"] == 1
