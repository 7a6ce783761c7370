"""The receiver at volume: a bulk edit in Pipedrive fires one webhook per deal.

One run per burst: of waiting deal notifications only one asks for a deal-sync run (its
event carries `pdsync.starts-run: "yes"`; the run claims them all), the next asks again once
a run claimed them or the ask is older than `RUN_REQUEST_FRESH`. Events go to Prefect in
batches, each once, nothing owed at the end. A run asked for that never came is asked for
again by `drain_inbox` (`pipedrive.deal.waiting`). The store's clock is a fake one
(`StateStore(url, clock=...)`): time moves only when a test says so.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from receiver_support import (
    FakeClock,
    FakePrefect,
    all_posted,
    basic,
    v1_deal,
    v2_deal,
)

from deployments.events import (
    EVENT_NAMESPACE,
    RUN_REQUEST_FRESH,
    STARTS_RUN_LABEL,
    STARTS_RUN_YES,
    parse_delivery,
    starts_a_run,
)
from deployments.receiver import EVENT_BATCH_SIZE, WEBHOOK_PATH, create_receiver_app, drain_inbox
from mappings.models import Settings
from sandbox.server import ServedApp
from store import StateStore

FRESH_S = RUN_REQUEST_FRESH.total_seconds()


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def store(settings: Settings, clock: FakeClock) -> Iterator[StateStore]:
    with StateStore(settings.store_url, clock=clock) as opened:
        yield opened


def deliver(client: TestClient, body: Any) -> dict[str, Any]:
    answer = client.post(WEBHOOK_PATH, json=body, headers=basic())
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def key_of(body: Any) -> str:
    return parse_delivery(body).inbox_key


def label(event: dict[str, Any]) -> str:
    return str(event["resource"][STARTS_RUN_LABEL])


# -- batches ------------------------------------------------------------------------------------
def test_a_storm_is_posted_in_batches_each_event_once(
    client: TestClient, store: StateStore, fake: FakePrefect, api_url: str
) -> None:
    """N deliveries while Prefect holds the poster's first POST: once released, the rest go
    in batches of `EVENT_BATCH_SIZE`, far fewer POSTs than deliveries."""
    storm = 2 * EVENT_BATCH_SIZE + 50
    bodies = [v2_deal(1000 + n) for n in range(storm)]
    fake.mode = "block"
    answers = [deliver(client, bodies[0])]
    fake.wait_until(lambda: fake.blocked == 1)  # the first event's POST is under way, held
    answers += [deliver(client, body) for body in bodies[1:]]  # all answered meanwhile
    assert {a["event"] for a in answers} == {"queued"}
    assert fake.events == [] and store.inbox_not_posted_count() == storm
    fake.release()
    all_posted(store)

    assert len(fake.batches) <= 1 + math.ceil((storm - 1) / EVENT_BATCH_SIZE)  # here 4
    assert max(fake.batches) == EVENT_BATCH_SIZE and sum(fake.batches) == storm
    ids = [e["id"] for e in fake.events]
    assert len(ids) == len(set(ids)) == storm  # every event once
    assert set(ids) == {str(uuid.uuid5(EVENT_NAMESPACE, key_of(b))) for b in bodies}
    assert [e["payload"]["deal_id"] for e in fake.events] == list(range(1000, 1000 + storm))
    # one run for the whole storm: the first notification asked, the others wait for it
    assert [a["starts_run"] for a in answers] == [True] + [False] * (storm - 1)
    assert [label(e) for e in fake.events] == ["yes"] + ["no"] * (storm - 1)
    assert drain_inbox(store, api_url) == 0  # nothing owed, nothing to ask again


def test_a_concurrent_burst_asks_for_one_run(
    settings: Settings, store: StateStore, fake: FakePrefect, api_url: str
) -> None:
    """Deliveries arriving together on a real server (threads): one of them asks."""
    app = create_receiver_app(settings, prefect_api_url=api_url, store=store)
    bodies = [v2_deal(2000 + n) for n in range(40)]
    app.state.event_pump.start()  # ServedApp runs no lifespan
    try:
        with ServedApp(app) as served, httpx.Client(timeout=60) as http:

            def post(body: Any) -> dict[str, Any]:
                answer = http.post(f"{served.url}{WEBHOOK_PATH}", json=body, headers=basic())
                assert answer.status_code == 200, answer.text
                result: dict[str, Any] = answer.json()
                return result

            with ThreadPoolExecutor(8) as pool:
                answers = list(pool.map(post, bodies))
            all_posted(store)
    finally:
        app.state.event_pump.stop()
    (asking,) = [a for a in answers if a["starts_run"]]
    ids = [e["id"] for e in fake.events]
    assert len(ids) == len(set(ids)) == len(bodies)
    (starting,) = [e for e in fake.events if starts_a_run(e)]
    assert starting["id"] == asking["event_id"]
    assert len(fake.batches) <= len(bodies)


# -- which notification asks for a run ----------------------------------------------------------
def test_of_a_burst_only_the_first_asks_and_after_a_claim_the_next_asks_again(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    burst = [v2_deal(n) for n in (1, 2, 3)] + [v1_deal(1)]  # deal 1 twice
    answers = [deliver(client, body) for body in burst]
    assert [a["starts_run"] for a in answers] == [True, False, False, False]
    assert deliver(client, burst[1])["starts_run"] is False  # a redelivery never asks
    all_posted(store)
    by_id = {e["id"]: e for e in fake.events}
    assert [label(by_id[a["event_id"]]) for a in answers] == ["yes", "no", "no", "no"]
    assert store.inbox_get(key_of(burst[0])).run_requested_at is not None
    assert all(store.inbox_get(key_of(b)).run_requested_at is None for b in burst[1:])

    claimed = store.inbox_claim_deals(10)  # the run that was asked for takes them all
    assert sorted(i.dedupe_key for i in claimed) == sorted(key_of(b) for b in burst)
    later = [v2_deal(4), v2_deal(5)]  # a new burst while that run works: a new run
    assert [deliver(client, body)["starts_run"] for body in later] == [True, False]
    assert deliver(client, burst[2]) == {
        "stored": True,
        "duplicate": True,
        "event": "posted",
        "event_id": answers[2]["event_id"],
        "starts_run": False,
        "own_write": False,
    }
    all_posted(store)
    assert [label(e) for e in fake.events[-2:]] == ["yes", "no"]


def test_an_ask_older_than_a_minute_is_not_trusted(
    client: TestClient, store: StateStore, fake: FakePrefect, clock: FakeClock
) -> None:
    """The run asked for a minute ago (counted from when Prefect took its event) never
    claimed the notifications (cancelled, crashed): the next notification asks again."""
    assert deliver(client, v2_deal(1))["starts_run"] is True
    all_posted(store)
    clock.advance(seconds=FRESH_S - 1)
    assert deliver(client, v2_deal(2))["starts_run"] is False  # the run is on its way
    all_posted(store)
    clock.advance(seconds=2)
    assert deliver(client, v2_deal(3))["starts_run"] is True
    all_posted(store)
    assert [label(e) for e in fake.events] == ["yes", "no", "yes"]


# -- asking again: drain_inbox ------------------------------------------------------------------
def _waiting_events(fake: FakePrefect) -> list[dict[str, Any]]:
    return [e for e in fake.events if e["event"] == "pipedrive.deal.waiting"]


def test_drain_asks_again_when_the_run_never_came(
    client: TestClient,
    store: StateStore,
    fake: FakePrefect,
    api_url: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="deployments.receiver")
    first, second = v2_deal(7), v2_deal(8)
    assert [deliver(client, b)["starts_run"] for b in (first, second)] == [True, False]
    all_posted(store)
    assert drain_inbox(store, api_url) == 0  # the run asked for is on its way

    clock.advance(seconds=FRESH_S / 2)
    assert drain_inbox(store, api_url) == 0 and _waiting_events(fake) == []
    clock.advance(seconds=FRESH_S / 2 + 1)  # a minute: that run never claimed them
    caplog.clear()
    assert drain_inbox(store, api_url) == 1
    (asked,) = _waiting_events(fake)
    key = key_of(first)  # the oldest waiting notification
    assert asked["resource"] == {"prefect.resource.id": "pipedrive.deal.7", STARTS_RUN_LABEL: "yes"}
    assert asked["payload"] == {
        "deal_id": 7,
        "object": "deal",
        "action": "waiting",
        "inbox_key": key,
        "change_source": None,
    }
    assert uuid.UUID(asked["id"]) != uuid.uuid5(EVENT_NAMESPACE, key)  # a new event
    assert store.inbox_get(key).run_requested_at == clock.now  # the ask is recorded
    (line,) = [r for r in caplog.records if "asked again" in r.getMessage()]
    assert line.levelno == logging.INFO and "deal 7" in line.getMessage()
    assert drain_inbox(store, api_url) == 0  # just asked

    clock.advance(seconds=FRESH_S + 1)  # that run did not come either
    assert drain_inbox(store, api_url) == 1
    again = _waiting_events(fake)[-1]
    assert again["id"] != asked["id"] and again["payload"]["inbox_key"] == key

    store.inbox_claim_deals(10)  # a run came at last and took them
    clock.advance(seconds=FRESH_S + 1)
    assert drain_inbox(store, api_url) == 0
    assert len(_waiting_events(fake)) == 2


def test_drain_asks_again_only_once_prefect_took_the_ask(
    store: StateStore, fake: FakePrefect, api_url: str, clock: FakeClock
) -> None:
    body = v2_deal(9)
    store.inbox_add(key_of(body), body, deal_id=9)  # stored, never decided (a crash)
    store.inbox_mark_posted([key_of(body)])
    clock.advance(seconds=FRESH_S + 1)
    fake.mode = 503
    assert drain_inbox(store, api_url) == 0
    assert store.inbox_get(key_of(body)).run_requested_at is None  # not recorded: not asked
    fake.mode = 204
    assert drain_inbox(store, api_url) == 1
    (asked,) = _waiting_events(fake)
    assert asked["resource"][STARTS_RUN_LABEL] == STARTS_RUN_YES
    assert store.inbox_get(key_of(body)).run_requested_at == clock.now


def test_an_ask_counts_from_when_prefect_took_it(
    store: StateStore, fake: FakePrefect, api_url: str, clock: FakeClock
) -> None:
    """Prefect was down for more than a minute: the drain posts the owed events, the asking
    one among them, and the run it starts is on its way from then: no second ask until a
    minute later."""
    bodies = [v2_deal(n) for n in (31, 32)]
    for n, body in zip((31, 32), bodies, strict=True):
        store.inbox_add(key_of(body), body, deal_id=n)
    assert store.inbox_request_run(key_of(bodies[0]), RUN_REQUEST_FRESH)
    clock.advance(seconds=FRESH_S + 1)
    assert drain_inbox(store, api_url) == 2  # the owed events, no ask
    assert [label(e) for e in fake.events] == ["yes", "no"]
    assert store.inbox_get(key_of(bodies[0])).run_requested_at == clock.now
    clock.advance(seconds=FRESH_S - 1)
    assert drain_inbox(store, api_url) == 0
    clock.advance(seconds=2)
    assert drain_inbox(store, api_url) == 1
    assert [e["event"] for e in fake.events][-1] == "pipedrive.deal.waiting"
