"""A deal-sync run's batches: every waiting deal notification, a deal once however often it
was notified, a full batch during a burst, notifications back to waiting when a batch fails,
and each relation read once a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from store import StateStore
from tasks import inbox as inbox_tasks
from tasks.fetch import Fetched, fetch_deal_relations
from tasks.inbox import MAX_ATTEMPTS, batch_done, batch_failed, claim_deal_batch, collect


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(f"sqlite:///{tmp_path / 's.db'}") as opened:
        yield opened


def notify(store: StateStore, key: str, deal: int) -> None:
    store.inbox_add(key, {"meta": {"entity": "deal", "entity_id": str(deal)}}, deal_id=deal)


def test_a_run_by_hand_syncs_its_one_deal_and_leaves_the_inbox_alone(store: StateStore) -> None:
    notify(store, "e1", 7)
    batch = claim_deal_batch(store, 5, None, first=True)
    assert batch.deal_ids == [5] and batch.items == [] and not batch.from_inbox
    assert batch.title() == "Deal sync: deal 5"
    assert not claim_deal_batch(store, 5, None, first=False)
    assert store.inbox_counts()["pending"] == 1


def test_a_notification_run_takes_every_waiting_notification_until_none_is_left(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_tasks, "DEAL_BATCH", 2)
    for n, deal in enumerate([3, 1, 3, 2, 4]):
        notify(store, f"e{n}", deal)
    batch = claim_deal_batch(store, 2, "e3", first=True)  # its own deal first
    assert batch.deal_ids == [2, 3] and sorted(batch.keys) == ["e0", "e2", "e3"]
    assert batch.title() == "Deal sync: deals 2, 3 (3 notifications)"
    assert batch_done(store, batch) == 3
    nxt = claim_deal_batch(store, 2, "e3", first=False)
    assert nxt.deal_ids == [1, 4]
    batch_done(store, nxt)
    assert not claim_deal_batch(store, 2, "e3", first=False)


def test_a_failed_batch_waits_again_then_is_left_to_the_incremental_sync(
    store: StateStore,
) -> None:
    notify(store, "e1", 9)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        batch = claim_deal_batch(store, 9, "e1", first=True)
        assert [i.attempts for i in batch.items] == [attempt]
        batch_failed(store, batch, RuntimeError("Planhat answered 503"))
    item = store.inbox_get("e1")
    assert item is not None and item.status == "failed"
    assert item.last_error is not None and "incremental sync" in item.last_error
    assert "503" in item.last_error


def test_a_burst_is_collected_into_a_fuller_batch_and_a_calm_pace_is_not_held_up(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_tasks, "DEAL_BATCH", 8)
    monkeypatch.setattr(inbox_tasks, "BURST_PER_S", 3)
    slept: list[float] = []
    now = [0.0]
    burst = [True]

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s
        if len(slept) == 2 and burst[0]:  # the burst goes on while the run waits: it fills
            burst[0] = False
            for n in range(100, 100 + inbox_tasks.DEAL_BATCH):
                notify(store, f"b{n}", n)

    monkeypatch.setattr(inbox_tasks.time, "sleep", sleep)
    notify(store, "calm", 1)
    collect(store, clock=lambda: now[0])
    assert slept == []  # one notification in the last second: take it now
    for n in range(2, 2 + inbox_tasks.BURST_PER_S):
        notify(store, f"e{n}", n)
    collect(store, clock=lambda: now[0])
    assert len(slept) == 2  # waited while the burst poured in, until the batch was full
    slept.clear()
    monkeypatch.setattr(inbox_tasks, "DEAL_BATCH", 10_000)
    collect(store, clock=lambda: now[0])
    assert 0 < sum(slept) <= inbox_tasks.COLLECT_S + 0.25  # never longer than COLLECT_S


class CountingPipedrive:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _read(self, what: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        self.calls.append((what, params))
        return iter([])

    def iter_organizations(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._read("organizations", params)

    def iter_persons(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._read("persons", params)

    def iter_notes(self, **params: Any) -> Iterator[dict[str, Any]]:
        return self._read("notes", params)


class EveryDirection:
    notes_scope = ("deal", "organization")

    def receives(self, section: str) -> bool:
        return True


def test_a_runs_later_batches_do_not_read_a_relation_again() -> None:
    pd = CountingPipedrive()
    seen: set[tuple[str, int]] = set()
    deals = [{"id": 1, "org_id": 10, "person_id": 100}, {"id": 2, "org_id": 20}]
    fetch_deal_relations(pd, EveryDirection(), deals, Fetched(), already=seen)  # type: ignore[arg-type]
    first = len(pd.calls)
    assert first == 1 + 2 + 1 + 2 + 2  # orgs; persons of 10, 20; person 100; notes
    again = [{"id": 1, "org_id": 10, "person_id": 100}, {"id": 3, "org_id": 30}]
    fetch_deal_relations(pd, EveryDirection(), again, Fetched(), already=seen)  # type: ignore[arg-type]
    later = pd.calls[first:]
    assert later == [
        ("organizations", {"ids": [10, 30]}),  # organizations are always fresh (1 call)
        ("persons", {"org_id": 30}),
        ("notes", {"deal_id": 3}),
        ("notes", {"org_id": 30}),
    ]


def test_only_deals_entering_planhat_bring_their_relations() -> None:
    from tasks.enrich import entering

    deals = [
        {"id": 1, "org_id": 10},  # licensed, its company exists: the license is enough
        {"id": 2, "org_id": 10},  # newly won: brings its relations
        {"id": 3, "org_id": 30},  # licensed, but moved to an organization not in Planhat
        {"id": 4},  # licensed, no organization
    ]
    assert [d["id"] for d in entering(deals, licensed={1, 3, 4}, linked_orgs={10})] == [2, 3]


def test_the_deals_of_a_run_that_died_are_taken_again_after_the_stale_claim(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    now = [datetime(2026, 11, 29, 12, 0, tzinfo=UTC)]
    with StateStore(f"sqlite:///{tmp_path / 's.db'}", clock=lambda: now[0]) as store:
        notify(store, "e1", 5)
        dead = claim_deal_batch(store, 5, "e1", first=True)  # its process is killed
        assert dead.deal_ids == [5]
        notify(store, "e2", 5)
        assert not claim_deal_batch(store, 5, "e2", first=True)  # deal 5 is held
        now[0] += inbox_tasks.STALE_CLAIM + inbox_tasks.timedelta(seconds=1)
        again = claim_deal_batch(store, 5, "e2", first=True)
        assert again.deal_ids == [5] and sorted(again.keys) == ["e1", "e2"]
