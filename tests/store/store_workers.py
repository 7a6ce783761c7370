"""What each OS process does in the concurrency tests (a module of its own, so that
`multiprocessing`'s spawned children can import it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from threading import Barrier  # a multiprocessing manager's Barrier proxy behaves alike
from typing import Any

from store import LinkRow, StateStore

N_EVENTS = 600
N_LINKS = 3000
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def contend(url: str, worker: int, start: Barrier) -> dict[str, Any]:
    """Open the store (on an empty database: both processes create the schema at once), then
    at the same moment as the other process: add the same inbox events, upsert the same links
    (in opposite orders), advance one cursor, and claim inbox items until none is left."""
    start.wait(60)
    store = StateStore(url)
    try:
        start.wait(60)
        new = sum(store.inbox_add(f"pipedrive:v2:e{n}", {"n": n}) for n in range(N_EVENTS))
        start.wait(60)
        ids = list(range(1, N_LINKS + 1))
        batches = [ids[i : i + 250] for i in range(0, len(ids), 250)]
        if worker % 2:
            batches.reverse()
        conflicts = 0
        for batch in batches:
            rows = [LinkRow(i, f"ph-{i}", {"n": i, "by": worker}) for i in batch]
            conflicts += len(store.upsert_links("deal", rows).conflicts)
        start.wait(60)  # both link one Planhat record to different Pipedrive persons at once
        clash = store.upsert_links("person", [LinkRow(90_000 + worker, "ph-shared", {})])
        conflicts += len(clash.conflicts)
        for step in range(50):
            store.advance_cursor(
                "deals", T0 + timedelta(seconds=step * 2 + worker), pushed=True, seen_ids=[worker]
            )
        start.wait(60)
        claimed: list[int] = []
        while items := store.inbox_claim(7):
            claimed.extend(i.id for i in items)
            time.sleep(0.003)  # the work, so that both workers keep competing to the end
            store.inbox_done([i.id for i in items])
        return {"new": new, "conflicts": conflicts, "claimed": claimed}
    finally:
        store.close()


def open_at_once(url: str, start: Barrier) -> int:
    """Open the store at the same moment as the other processes; store one inbox event."""
    start.wait(60)
    with StateStore(url) as store:
        return int(store.inbox_add("pipedrive:v2:same-event", {"n": 1}))
