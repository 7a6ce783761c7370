"""The webhook inbox: durable, one item per Pipedrive event however often it is delivered,
claimed by one worker at a time, finished as done or failed (or retried); each item's Prefect
event owed until it is marked posted.

The store takes dedupe keys as given (the receiver's parser derives them from the body): the
keys here are store-neutral strings of the same shape."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from store_support import FakeClock

from store import StateStore


def v2_delivery(event_id: str, deal_id: int, attempt: int = 1) -> dict[str, Any]:
    """A Pipedrive v2 deal notification as the sandbox and Pipedrive send it."""
    return {
        "meta": {
            "action": "change",
            "entity": "deal",
            "entity_id": str(deal_id),
            "id": event_id,
            "version": "2.0",
            "attempt": attempt,
            "timestamp": "2026-03-01T12:00:00.000Z",
        },
        "data": {"id": deal_id, "status": "won", "title": "Déal ✓"},
        "previous": {"status": "open"},
    }


def v1_delivery(deal_id: int, retry: int = 0) -> dict[str, Any]:
    return {
        "v": 1,
        "event": "updated.deal",
        "retry": retry,
        "meta": {
            "v": 1,
            "action": "updated",
            "object": "deal",
            "id": deal_id,
            "timestamp_micro": 1772366400123456,
        },
        "current": {"id": deal_id},
        "previous": {"id": deal_id},
    }


def test_a_redelivered_event_is_stored_once(store: StateStore) -> None:
    first = v2_delivery("8f1c-event", 42, attempt=1)
    retry = v2_delivery("8f1c-event", 42, attempt=2)
    assert store.inbox_add("pipedrive:v2:8f1c-event", first) is True
    assert store.inbox_add("pipedrive:v2:8f1c-event", retry) is False
    assert store.inbox_counts() == {"pending": 1, "processing": 0, "done": 0, "failed": 0}
    item = store.inbox_get("pipedrive:v2:8f1c-event")
    assert item is not None and item.payload == first  # stored as first received
    assert item.status == "pending" and item.attempts == 0


def test_an_added_event_is_committed_when_inbox_add_returns(
    open_store: Callable[[], StateStore],
) -> None:
    receiver, worker = open_store(), open_store()  # two connections, as two processes have
    payload = v2_delivery("e-7", 7)
    assert receiver.inbox_add("pipedrive:v2:e-7", payload) is True
    receiver.close()  # the receiver answers 200 and may die now
    [item] = worker.inbox_claim(5)
    assert item.payload == payload


def test_keys_are_taken_as_given_and_checked_for_length(store: StateStore) -> None:
    key = "pipedrive:v1:deal:7:updated:1772366400123456"
    assert store.inbox_add(key, v1_delivery(7, retry=0)) is True
    assert store.inbox_add(key, v1_delivery(7, retry=3)) is False
    for bad in ("", "k" * 201, None, 7):
        with pytest.raises(ValueError, match="dedupe key"):
            store.inbox_add(bad, v1_delivery(7))  # type: ignore[arg-type]
    assert store.inbox_counts()["pending"] == 1


def test_a_done_event_delivered_again_is_not_processed_again(store: StateStore) -> None:
    payload = v2_delivery("e-1", 1)
    store.inbox_add("pipedrive:v2:e-1", payload)
    [item] = store.inbox_claim(10)
    assert store.inbox_done([item.id]) == 1
    assert store.inbox_add("pipedrive:v2:e-1", payload) is False
    assert store.inbox_claim(10) == []


# -- the Prefect event of each item ---------------------------------------------------------------
def _not_posted(store: StateStore) -> list[str]:
    return [item.dedupe_key for item in store.inbox_not_posted(100)]


def test_an_items_event_is_owed_until_marked_posted(store: StateStore) -> None:
    for n in range(3):
        store.inbox_add(f"pipedrive:v2:e{n}", v2_delivery(f"e{n}", n + 1))
    assert _not_posted(store) == ["pipedrive:v2:e0", "pipedrive:v2:e1", "pipedrive:v2:e2"]
    assert store.inbox_not_posted_count() == 3
    assert store.inbox_event_owed("pipedrive:v2:e1") is True
    assert store.inbox_mark_posted(["pipedrive:v2:e1", "absent"]) == 1
    assert store.inbox_mark_posted(["pipedrive:v2:e1"]) == 0  # already marked
    assert store.inbox_mark_posted([]) == 0
    assert store.inbox_event_owed("pipedrive:v2:e1") is False
    assert store.inbox_event_owed("absent") is False
    assert _not_posted(store) == ["pipedrive:v2:e0", "pipedrive:v2:e2"]
    assert [i.dedupe_key for i in store.inbox_not_posted(1)] == ["pipedrive:v2:e0"]  # oldest
    assert store.inbox_not_posted_count() == 2
    assert store.inbox_add("pipedrive:v2:e1", v2_delivery("e1", 2)) is False
    assert store.inbox_event_owed("pipedrive:v2:e1") is False  # a redelivery owes nothing new
    for bad in (0, -1, True, "5"):
        with pytest.raises(ValueError, match="limit"):
            store.inbox_not_posted(bad)  # type: ignore[arg-type]


def test_an_item_stored_without_an_event_owes_none(store: StateStore) -> None:
    assert store.inbox_add("pipedrive:v1:person:5:updated:1", {"n": 1}, event_due=False)
    assert _not_posted(store) == [] and store.inbox_not_posted_count() == 0
    assert store.inbox_event_owed("pipedrive:v1:person:5:updated:1") is False
    assert store.inbox_mark_posted(["pipedrive:v1:person:5:updated:1"]) == 0
    [item] = store.inbox_claim(1)  # claimed and processed like any other
    assert item.dedupe_key == "pipedrive:v1:person:5:updated:1"


def test_settled_items_owe_no_event(store: StateStore) -> None:
    for key in ("done", "failed", "processing", "pending"):
        store.inbox_add(key, {"key": key})
    done, failed, _ = store.inbox_claim(3)
    store.inbox_done([done.id])
    store.inbox_failed([failed.id], "gone")
    assert _not_posted(store) == ["pending"] and store.inbox_not_posted_count() == 1
    assert [store.inbox_event_owed(k) for k in ("done", "failed", "processing", "pending")] == [
        False,
        False,
        False,
        True,
    ]
    assert store.inbox_mark_posted(["done", "failed", "processing", "pending"]) == 4
    assert store.inbox_not_posted_count() == 0


def test_claims_are_fifo_and_each_item_is_handed_out_once(store: StateStore) -> None:
    for n in range(5):
        store.inbox_add(f"k{n}", {"n": n})
    first = store.inbox_claim(3)
    second = store.inbox_claim(3)
    assert [i.payload["n"] for i in first] == [0, 1, 2]
    assert [i.payload["n"] for i in second] == [3, 4]
    assert store.inbox_claim(3) == []
    assert all(i.status == "processing" and i.attempts == 1 for i in first + second)
    assert store.inbox_counts()["processing"] == 5


def test_failed_items_retry_or_stop_with_their_error(store: StateStore) -> None:
    store.inbox_add("a", {"n": 1})
    store.inbox_add("b", {"n": 2})
    a, b = store.inbox_claim(2)
    assert store.inbox_failed([a.id], "Planhat 503", retry=True) == 1
    assert store.inbox_failed([b.id], "deal 2 not found") == 1
    assert store.inbox_failed([b.id], "twice") == 0  # only claimed items change
    again = store.inbox_claim(5)
    assert [(i.dedupe_key, i.attempts, i.last_error) for i in again] == [("a", 2, "Planhat 503")]
    failed = store.inbox_get("b")
    assert failed is not None and failed.status == "failed"
    assert failed.last_error == "deal 2 not found" and failed.processed_at is not None


def test_a_crashed_workers_items_can_be_requeued(store: StateStore, clock: FakeClock) -> None:
    store.inbox_add("a", {"n": 1})
    [claimed] = store.inbox_claim(1)
    clock.advance(minutes=5)
    store.inbox_add("b", {"n": 2})
    store.inbox_claim(1)  # "b", claimed just now
    assert store.inbox_requeue_stale(timedelta(minutes=10)) == 0
    assert store.inbox_requeue_stale(timedelta(minutes=2)) == 1
    [again] = store.inbox_claim(5)
    assert again.id == claimed.id and again.attempts == 2
    assert "claim expired" in (again.last_error or "")
    assert store.inbox_done([claimed.id]) == 1  # the original worker's late "done" is taken


def test_old_done_items_can_be_purged(store: StateStore, clock: FakeClock) -> None:
    store.inbox_add("old", {})
    store.inbox_add("pending", {})
    [old] = store.inbox_claim(1)
    store.inbox_done([old.id])
    assert store.inbox_purge(clock.now) == 0
    assert store.inbox_purge(clock.advance(days=8)) == 1
    assert store.inbox_get("old") is None and store.inbox_get("pending") is not None


def test_payloads_must_be_json_objects(store: StateStore) -> None:
    for bad in ([1, 2], {"x": float("nan")}, {"x": object()}):
        with pytest.raises(ValueError):
            store.inbox_add("k", bad)  # type: ignore[arg-type]
    assert store.inbox_counts()["pending"] == 0


def test_threads_claiming_at_once_never_share_an_item(store: StateStore) -> None:
    for n in range(200):
        store.inbox_add(f"k{n}", {"n": n})
    claimed: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def worker(slot: int) -> None:
        start.wait()
        while items := store.inbox_claim(3):
            claimed[slot].extend(i.id for i in items)
            store.inbox_done([i.id for i in items])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [i for ids in claimed for i in ids]
    assert len(every) == len(set(every)) == 200
    assert store.inbox_counts() == {"pending": 0, "processing": 0, "done": 200, "failed": 0}


# -- deal notifications: claimed a deal at a time, one run asked for at a time ------------------


def add_deal(store: StateStore, key: str, deal: int) -> None:
    assert store.inbox_add(key, v2_delivery(key, deal), deal_id=deal)


def test_a_deal_claim_takes_every_waiting_notification_of_its_deals(store: StateStore) -> None:
    for n, deal in enumerate([5, 6, 5, 7, 8, 5]):
        add_deal(store, f"e{n}", deal)
    store.inbox_add("person", {"meta": {}})  # not a deal: never claimed by deal
    items = store.inbox_claim_deals(2)
    assert [(i.dedupe_key, i.deal_id) for i in items] == [
        ("e0", 5), ("e1", 6), ("e2", 5), ("e5", 5)
    ]  # fmt: skip
    assert all(i.status == "processing" and i.attempts == 1 for i in items)
    assert store.inbox_deal_pace(timedelta(seconds=1)) == (6, 2)  # 6 came now; 7 and 8 wait
    assert [i.deal_id for i in store.inbox_claim_deals(10)] == [7, 8]
    assert store.inbox_claim_deals(10) == []
    assert store.inbox_counts()["pending"] == 1


def test_a_deal_in_processing_is_not_claimed_again_until_it_is_finished(
    store: StateStore,
) -> None:
    add_deal(store, "e0", 5)
    first = store.inbox_claim_deals(10)
    add_deal(store, "e1", 5)  # arrives while the first run syncs deal 5
    add_deal(store, "e2", 6)
    assert [i.deal_id for i in store.inbox_claim_deals(10)] == [6]  # 5 waits
    store.inbox_done([i.id for i in first])
    assert [i.dedupe_key for i in store.inbox_claim_deals(10)] == ["e1"]


def test_a_deal_claim_starts_with_the_given_notification_and_deals(store: StateStore) -> None:
    for n, deal in enumerate([1, 2, 3, 4]):
        add_deal(store, f"e{n}", deal)
    assert [i.deal_id for i in store.inbox_claim_deals(1, first="e2")] == [3]
    assert [i.deal_id for i in store.inbox_claim_deals(1, deals=[4])] == [4]
    assert [i.deal_id for i in store.inbox_claim_deals(5, first="absent")] == [1, 2]
    with pytest.raises(ValueError):
        store.inbox_claim_deals(0)


def test_of_notifications_arriving_together_one_asks_for_a_run(
    store: StateStore, clock: FakeClock
) -> None:
    fresh = timedelta(seconds=60)
    add_deal(store, "e0", 5)
    add_deal(store, "e1", 6)
    assert store.inbox_request_run("e0", fresh) is True
    assert store.inbox_request_run("e1", fresh) is False  # e0's run will take it
    assert store.inbox_request_run("e0", fresh) is True  # asking again for itself
    store.inbox_claim_deals(1)  # the run took e0 (deal 5): e1 is waiting, nobody asked
    add_deal(store, "e2", 7)
    assert store.inbox_request_run("e2", fresh) is True
    assert store.inbox_request_run("absent", fresh) is False
    store.inbox_add("person", {"meta": {}})
    assert store.inbox_request_run("person", fresh) is False  # not a deal notification


def test_a_run_asked_for_long_ago_and_never_started_is_asked_for_again(
    store: StateStore, clock: FakeClock
) -> None:
    fresh = timedelta(seconds=60)
    add_deal(store, "e0", 5)
    assert store.inbox_unasked(fresh) is None  # too recent
    clock.advance(seconds=61)
    item = store.inbox_unasked(fresh)
    assert item is not None and item.dedupe_key == "e0" and item.deal_id == 5
    assert store.inbox_mark_run_requested("e0")
    assert store.inbox_unasked(fresh) is None  # asked now
    clock.advance(seconds=61)
    assert store.inbox_unasked(fresh) is not None  # that run never came
    assert store.inbox_request_run("e0", fresh) is True


def test_threads_claiming_deals_at_once_never_hold_one_deal_twice(store: StateStore) -> None:
    for n in range(300):
        add_deal(store, f"e{n}", 1 + n % 40)
    held: set[int] = set()
    clash: list[int] = []
    lock = threading.Lock()
    taken: list[int] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        while items := store.inbox_claim_deals(3):
            deals = {i.deal_id for i in items if i.deal_id is not None}
            with lock:
                clash.extend(deals & held)
                held.update(deals)
                taken.extend(i.id for i in items)
            time.sleep(0.002)  # "syncing" the deals: a second claim of one now is a clash
            with lock:
                held.difference_update(deals)
            store.inbox_done([i.id for i in items])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert clash == []
    assert len(taken) == len(set(taken)) == 300
