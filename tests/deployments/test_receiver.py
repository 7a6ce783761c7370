"""The webhook receiver, as Pipedrive and Prefect see it.

Pipedrive's side: basic auth (401/403), every bad body refused with its reason and nothing
stored, v1 and v2 deliveries stored once however often they come, answered without waiting
for Prefect. Prefect's side (a fake Prefect API that records `POST /api/events` and can be
told to fail, block or refuse): the event's name, resource, starts-run label, deterministic
id and small payload; events posted in the background, in batches; Prefect down → stored,
answered 200, posted once Prefect is back. End to end: the sandbox Pipedrive's real
deliveries. (test_receiver_volume.py: bursts, batches, runs asked for once.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from receiver_support import (
    PASSWORD,
    PASSWORD_ENV,
    FakePrefect,
    all_posted,
    basic,
    fixture,
    v1_deal,
    v1_person,
    v2_deal,
    wait_until,
    write_settings,
)

import deployments.events
import deployments.inbox_events
import deployments.receiver
from deployments.events import (
    EVENT_NAMESPACE,
    STARTS_RUN_LABEL,
    STARTS_RUN_NO,
    STARTS_RUN_YES,
    parse_delivery,
)
from deployments.receiver import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    WEBHOOK_PATH,
    create_receiver_app,
    drain_inbox,
    pipedrive_event,
)
from mappings.models import Settings
from sandbox.runner import Sandbox
from sandbox.server import ServedApp, free_port
from store import StateStore

EMPTY_INBOX = {"pending": 0, "processing": 0, "done": 0, "failed": 0}


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[ServedApp]:
    """`app` under uvicorn (`ServedApp` runs no lifespan: its event poster is run here)."""
    pump = app.state.event_pump
    pump.start()
    try:
        with ServedApp(app) as running:
            yield running
    finally:
        pump.stop()


def deliver(client: TestClient, body: Any, **headers: str) -> httpx.Response:
    return client.post(WEBHOOK_PATH, json=body, headers={**basic(), **headers})


def inbox_key(body: Any) -> str:
    """The key the receiver stores a delivery under (the one parser's)."""
    return parse_delivery(body).inbox_key


def unposted_events(store: StateStore) -> list[str]:
    """The inbox keys whose Prefect event is owed, oldest first."""
    return [item.dedupe_key for item in store.inbox_not_posted(1000)]


def deal_resource(deal_id: int, *, starts_run: bool) -> dict[str, str]:
    return {
        "prefect.resource.id": f"pipedrive.deal.{deal_id}",
        STARTS_RUN_LABEL: STARTS_RUN_YES if starts_run else STARTS_RUN_NO,
    }


# -- auth ---------------------------------------------------------------------------------------
def test_missing_credentials_get_401_with_a_basic_challenge(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    answer = client.post(WEBHOOK_PATH, json=v1_deal())
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic")
    bearer = client.post(WEBHOOK_PATH, json=v1_deal(), headers={"Authorization": "Bearer x"})
    assert bearer.status_code == 401
    assert store.inbox_counts() == EMPTY_INBOX and fake.events == []


@pytest.mark.parametrize(
    "authorization",
    [
        basic(password="wrong-password")["Authorization"],
        basic(user="someone", password=PASSWORD)["Authorization"],
        basic(password=PASSWORD + "x")["Authorization"],
        "Basic not*base64",
        "Basic " + "cGRzeW5j",  # "pdsync" without a colon
    ],
    ids=["wrong-password", "wrong-user", "longer-password", "malformed", "no-colon"],
)
def test_wrong_credentials_get_403_and_store_nothing(
    client: TestClient, store: StateStore, fake: FakePrefect, authorization: str
) -> None:
    answer = client.post(WEBHOOK_PATH, json=v1_deal(), headers={"Authorization": authorization})
    assert answer.status_code == 403
    assert answer.json() == {"detail": "wrong credentials"}
    assert store.inbox_counts() == EMPTY_INBOX and fake.events == []


def test_right_credentials_are_accepted(client: TestClient, store: StateStore) -> None:
    answer = deliver(client, v1_deal())
    assert answer.status_code == 200
    assert answer.json()["stored"] is True
    assert store.inbox_counts()["pending"] == 1


def test_a_missing_password_stops_the_receiver_from_starting(
    settings: Settings, store: StateStore, api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mappings.errors import SettingsError

    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(SettingsError, match=PASSWORD_ENV):
        create_receiver_app(settings, prefect_api_url=api_url, store=store)


# -- bad bodies ---------------------------------------------------------------------------------
def _too_big_stream() -> Iterator[bytes]:
    yield b'{"meta": {"v": 1}, "padding": "'
    for _ in range(17):
        yield b"x" * 65536
    yield b'"}'


BAD_BODIES = {
    "413-by-header": (
        {"content": b"{}", "headers": {"content-length": str(MAX_BODY_BYTES + 1)}},
        413,
        "larger than",
    ),
    "415-text": (
        {"content": b"meta=1", "headers": {"content-type": "text/plain"}},
        415,
        "application/json",
    ),
    "415-form": (
        {"data": {"meta": "x"}},  # application/x-www-form-urlencoded
        415,
        "application/json",
    ),
    "400-invalid-json": (
        {"content": b'{"meta": {', "headers": {"content-type": "application/json"}},
        400,
        "invalid JSON",
    ),
    "400-nan": (
        {"content": b'{"meta": NaN}', "headers": {"content-type": "application/json"}},
        400,
        "NaN",
    ),
    "400-not-an-object": ({"json": [v1_deal()]}, 400, "JSON object"),
    "400-no-meta": ({"json": {"current": {"id": 1}, "event": "updated.deal"}}, 400, "meta"),
    "400-neither-v1-nor-v2": (
        {"json": {"meta": {"action": "change", "entity": "deal"}}},
        400,
        "event id",
    ),
    "400-deal-without-id": (
        {"json": {"meta": {"version": "2.0", "id": "e-1", "entity": "deal", "action": "change"}}},
        400,
        "deal id",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_are_refused_with_the_reason_and_store_nothing(
    client: TestClient, store: StateStore, fake: FakePrefect, case: str
) -> None:
    request, status, reason = BAD_BODIES[case]
    request = dict(request)
    headers = {**basic(), **request.pop("headers", {})}
    answer = client.post(WEBHOOK_PATH, **request, headers=headers)
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["detail"]
    assert store.inbox_counts() == EMPTY_INBOX
    assert unposted_events(store) == [] and fake.events == []


def test_a_streamed_body_over_the_limit_gets_413_and_stores_nothing(
    settings: Settings, store: StateStore, fake: FakePrefect, api_url: str
) -> None:
    app = create_receiver_app(settings, prefect_api_url=api_url, store=store)
    with served(app) as receiver, httpx.Client(timeout=30) as http:
        answer = http.post(
            f"{receiver.url}{WEBHOOK_PATH}",
            content=_too_big_stream(),  # chunked: no Content-Length to go by
            headers={**basic(), "content-type": "application/json"},
        )
        assert "content-length" not in answer.request.headers
        assert answer.status_code == 413
        assert "larger than" in answer.json()["detail"]
        ok = http.post(f"{receiver.url}{WEBHOOK_PATH}", json=v1_deal(), headers=basic())
        assert ok.status_code == 200  # the receiver goes on serving
        all_posted(store)
    assert store.inbox_counts() == {**EMPTY_INBOX, "pending": 1}
    assert [e["payload"]["deal_id"] for e in fake.events] == [9]


def test_a_body_of_exactly_the_limit_is_read(client: TestClient, store: StateStore) -> None:
    body = v1_deal()
    text = httpx.Request("POST", "/", json=body).content
    padded = text[:-1] + b', "pad": "' + b"x" * (MAX_BODY_BYTES - len(text) - 11) + b'"}'
    assert len(padded) == MAX_BODY_BYTES
    answer = client.post(
        WEBHOOK_PATH, content=padded, headers={**basic(), "content-type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    assert store.inbox_counts()["pending"] == 1


# -- hostile bodies: nesting, ids, names ------------------------------------------------------
def _post_raw(client: TestClient, raw: bytes) -> httpx.Response:
    return client.post(
        WEBHOOK_PATH, content=raw, headers={**basic(), "content-type": "application/json"}
    )


def _nested(depth: int) -> Any:
    """A valid v1 deal delivery whose custom field value is nested `depth` levels in all."""
    body = v1_deal()
    value: Any = "deep"
    for _ in range(depth - 2):  # the body itself and `current` are two levels
        value = [value]
    body["current"]["9f1c2e7d40aa51b36c8e0d2f4b7a19c3e5d60b21"] = value
    return body


def _assert_nothing_happened(store: StateStore, fake: FakePrefect) -> None:
    assert store.inbox_counts() == EMPTY_INBOX
    assert unposted_events(store) == [] and fake.events == []


DEEP_BODIES = {
    "arrays-1000": b"[" * 1000 + b"]" * 1000,
    "objects-1000-in-meta": b'{"v": 1, "meta": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001,
    "arrays-200000": b"[" * 200_000 + b"]" * 200_000,
    "just-past-the-limit": httpx.Request("POST", "/", json=_nested(MAX_JSON_DEPTH + 1)).content,
}


@pytest.mark.parametrize("case", list(DEEP_BODIES))
def test_deeply_nested_json_is_a_400_without_a_traceback(
    client: TestClient,
    store: StateStore,
    fake: FakePrefect,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = _post_raw(client, DEEP_BODIES[case])  # a 500 would raise here (TestClient)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {
        "detail": f"invalid JSON: nested more than {MAX_JSON_DEPTH} levels deep"
    }
    _assert_nothing_happened(store, fake)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    assert _post_raw(client, DEEP_BODIES[case][:0] + b"{}").status_code == 400  # still serving


def test_a_body_nested_exactly_to_the_limit_is_accepted(
    client: TestClient, store: StateStore
) -> None:
    answer = deliver(client, _nested(MAX_JSON_DEPTH))
    assert answer.status_code == 200, answer.text
    assert store.inbox_counts()["pending"] == 1


def test_deep_nesting_on_a_real_server_logs_no_error(
    settings: Settings,
    store: StateStore,
    fake: FakePrefect,
    api_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through uvicorn (which logs an unhandled exception at ERROR with its traceback)."""
    caplog.set_level(logging.DEBUG)
    app = create_receiver_app(settings, prefect_api_url=api_url, store=store)
    with served(app) as receiver, httpx.Client(timeout=30) as http:
        answer = http.post(
            f"{receiver.url}{WEBHOOK_PATH}",
            content=DEEP_BODIES["arrays-1000"],
            headers={**basic(), "content-type": "application/json"},
        )
    assert answer.status_code == 400
    assert "nested" in answer.json()["detail"]
    _assert_nothing_happened(store, fake)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "Traceback" not in caplog.text


def _v1_with(**meta: Any) -> dict[str, Any]:
    body = v1_deal()
    body["meta"].update(meta)
    return body


def _v2_with(**meta: Any) -> dict[str, Any]:
    body = v2_deal(42)
    body["meta"].update(meta)
    return body


def _record_id(version: int, record: str, value: Any) -> dict[str, Any]:
    body = v1_deal() if version == 1 else v2_deal(42)
    body[record]["id"] = value
    return body


def _lead_with(entity_id: Any) -> dict[str, Any]:
    body = fixture("webhook-v2-change-lead.json")
    body["meta"]["entity_id"] = entity_id
    return body


FOUR_THOUSAND_DIGITS = int("9" * 4000)
BAD_IDS = {
    "v1-4000-digits": (_v1_with(id=FOUR_THOUSAND_DIGITS), "meta.id"),
    "v1-2**63": (_v1_with(id=2**63), "meta.id"),
    "v1-2**31": (_v1_with(id=2**31), "meta.id"),
    "v1-zero": (_v1_with(id=0), "meta.id"),
    "v1-negative": (_v1_with(id=-9), "meta.id"),
    "v1-float": (_v1_with(id=9.0), "meta.id"),
    "v1-bool": (_v1_with(id=True), "meta.id"),
    "v2-4000-digit-text": (_v2_with(entity_id="9" * 4000), "meta.entity_id"),
    "v2-5000-digit-text": (_v2_with(entity_id="9" * 5000), "meta.entity_id"),
    "v2-2**63-text": (_v2_with(entity_id=str(2**63)), "meta.entity_id"),
    "v2-arabic-digits": (_v2_with(entity_id="٤٢"), "meta.entity_id"),
    "v2-spaces": (_v2_with(entity_id=" 42"), "meta.entity_id"),
    "v2-sign": (_v2_with(entity_id="+42"), "meta.entity_id"),
    "v2-newline": (_v2_with(entity_id="42\nINFO forged"), "meta.entity_id"),
    "v1-current-id": (_record_id(1, "current", 2**63), "current.id"),
    "v1-previous-id": (_record_id(1, "previous", FOUR_THOUSAND_DIGITS), "previous.id"),
    "v2-data-id": (_record_id(2, "data", 2**63), "data.id"),
    "v2-user-id": (_v2_with(user_id=str(2**63)), "meta.user_id"),
    "v1-company-id": (_v1_with(company_id=FOUR_THOUSAND_DIGITS), "meta.company_id"),
    "v2-webhook-id": (_v2_with(webhook_id="1\r\n2"), "meta.webhook_id"),
    "v2-permitted-users": (_v2_with(permitted_user_ids=["1", str(2**63)]), "permitted_user_ids"),
    "v2-merged-to": (_v2_with(merged_to_id=2**40), "meta.merged_to_id"),
    "v2-lead-not-a-uuid": (_lead_with("lead\u202e1"), "meta.entity_id"),
    "v2-lead-number-too-long": (_lead_with("a" * 65), "meta.entity_id"),
}


@pytest.mark.parametrize("case", list(BAD_IDS))
def test_ids_outside_pipedrives_range_are_refused_and_nothing_is_stored(
    client: TestClient,
    store: StateStore,
    fake: FakePrefect,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    body, field = BAD_IDS[case]
    answer = deliver(client, body)
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert field in detail
    assert "999" not in detail and "forged" not in detail  # the field, never its value
    _assert_nothing_happened(store, fake)
    assert "999" not in caplog.text and "forged" not in caplog.text


def test_the_largest_pipedrive_id_is_accepted(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    top = 2**31 - 1
    assert deliver(client, v2_deal(top)).status_code == 200
    assert deliver(client, v1_deal(top)).status_code == 200
    all_posted(store)
    assert [e["payload"]["deal_id"] for e in fake.events] == [top, top]
    assert fake.events[0]["resource"] == deal_resource(top, starts_run=True)


FORGED = "\nERROR forged line\x00\u202e\u200f"
BAD_NAMES = {
    "v2-action-newline": (_v2_with(action="change" + FORGED), "meta.action"),
    "v2-action-nul": (_v2_with(action="chan\x00ge"), "meta.action"),
    "v2-action-rtl": (_v2_with(action="\u202echange"), "meta.action"),
    "v2-action-v1-word": (_v2_with(action="updated"), "meta.action"),
    "v2-action-wildcard": (_v2_with(action="*"), "meta.action"),
    "v2-action-case": (_v2_with(action="Change"), "meta.action"),
    "v2-action-number": (_v2_with(action=1), "meta.action"),
    "v2-entity-newline": (_v2_with(entity="deal" + FORGED), "meta.entity"),
    "v2-entity-rtl": (_v2_with(entity="\u200fdeal"), "meta.entity"),
    "v2-entity-unknown": (_v2_with(entity="deals"), "meta.entity"),
    "v2-entity-v1-only": (_v2_with(entity="activityType"), "meta.entity"),
    "v2-event-id-newline": (_v2_with(id="3f0b" + FORGED), "meta.id"),
    "v2-event-id-too-long": (_v2_with(id="a" * 101), "meta.id"),
    "v1-action-newline": (_v1_with(action="updated" + FORGED), "meta.action"),
    "v1-action-v2-word": (_v1_with(action="change"), "meta.action"),
    "v1-object-nul": (_v1_with(object="deal\x00"), "meta.object"),
    "v1-object-v2-only": (_v1_with(object="lead"), "meta.object"),
    "v1-object-case": (_v1_with(object="Deal"), "meta.object"),
    "v1-event-newline": ({**v1_deal(), "event": "updated.deal" + FORGED}, "event"),
    "v1-event-unknown-action": ({**v1_deal(), "event": "changed.deal"}, "event"),
    "v1-event-not-text": ({**v1_deal(), "event": ["updated", "deal"]}, "event"),
    "v1-timestamp-text": (_v1_with(timestamp_micro="1739827361" + FORGED), "timestamp_micro"),
}


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_unknown_actions_and_objects_are_refused_naming_the_field(
    client: TestClient,
    store: StateStore,
    fake: FakePrefect,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    body, field = BAD_NAMES[case]
    answer = deliver(client, body)
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert field in detail
    _assert_nothing_happened(store, fake)
    for text in (detail, *(r.getMessage() for r in caplog.records)):
        assert "forged" not in text
        assert not any(c in text for c in "\n\r\x00\u202e\u200f"), repr(text)


KNOWN_NAMES = [
    (2, "create", "deal_product"),
    (2, "delete", "activity"),
    (2, "change", "project"),
    (1, "added", "activityType"),
    (1, "merged", "organization"),
    (1, "deleted", "note"),
]


@pytest.mark.parametrize(("version", "action", "obj"), KNOWN_NAMES)
def test_every_name_pipedrive_sends_is_accepted(
    client: TestClient, store: StateStore, version: int, action: str, obj: str
) -> None:
    if version == 2:
        body = _v2_with(action=action, entity=obj, entity_id="17")
        body["data"], body["previous"] = {"id": 17}, None
    else:
        body = _v1_with(action=action, object=obj, id=17)
        body["event"] = f"{action}.{obj}"
        body["current"], body["previous"] = {"id": 17}, None
    answer = deliver(client, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["event"] == "not posted"  # not a deal: the incremental sync's
    assert store.inbox_counts()["pending"] == 1


def test_no_text_of_a_body_reaches_a_log_line(
    client: TestClient, fake: FakePrefect, caplog: pytest.LogCaptureFixture
) -> None:
    """A marker planted in every field of good and bad bodies never shows in the log."""
    caplog.set_level(logging.DEBUG)
    marker = "Zq-MARKER-8c1e"
    good = v2_deal(42)
    good["data"]["title"] = good["previous"]["status"] = marker
    good["meta"]["change_source"] = marker
    good["meta"]["host"] = marker
    bodies: list[Any] = [good, {**v1_deal(), "current": {"id": 9, "title": marker}}]
    for field in ("action", "entity", "entity_id", "id", "user_id", "version", "timestamp"):
        bodies.append(_v2_with(**{field: marker}))
    for field in ("action", "object", "id", "company_id", "timestamp_micro", "webhook_id"):
        bodies.append(_v1_with(**{field: marker}))
    bodies += [{**v1_deal(), "event": marker}, {"meta": marker}, {"meta": {"v": 1, marker: 1}}]
    bodies += [[marker], marker, {marker: {"meta": {}}}]
    fake.mode = 503  # the "not posted" lines too
    answers = [deliver(client, b) for b in bodies]
    answers.append(_post_raw(client, b'{"meta": "' + marker.encode() + b'", }'))
    answers.append(_post_raw(client, marker.encode()))
    assert {a.status_code for a in answers} == {200, 400}
    assert sum(a.status_code == 200 for a in answers) >= 3  # the good ones were logged too
    assert any("deal 42 change" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert marker not in record.getMessage()
    assert marker not in json.dumps(fake.events)  # no event either (Prefect was down)


# -- deliveries ---------------------------------------------------------------------------------
def test_v1_and_v2_deliveries_are_stored_once_however_often_they_come(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    v1, v2 = v1_deal(), v2_deal(42)
    answers: dict[str, list[httpx.Response]] = {"v1": [], "v2": []}
    for attempt in range(3):  # Pipedrive's redeliveries differ only in retry/attempt
        v1["retry"], v2["meta"]["attempt"] = attempt, attempt + 1
        answers["v1"].append(deliver(client, v1))
        answers["v2"].append(deliver(client, v2))
        all_posted(store)  # the redeliveries come once the first event was posted
    for version, replies in answers.items():
        assert [r.status_code for r in replies] == [200, 200, 200], version
        bodies = [r.json() for r in replies]
        assert [b["duplicate"] for b in bodies] == [False, True, True], version
        assert [b["event"] for b in bodies] == ["queued", "posted", "posted"], version
        assert all(b["stored"] is True for b in bodies), version
        assert len({b["event_id"] for b in bodies}) == 1, version  # one id for all three
        assert [b["starts_run"] for b in bodies[1:]] == [False, False]  # redeliveries never ask
    # of two notifications arriving together, the first asks for the run that takes both
    assert [answers[v][0].json()["starts_run"] for v in ("v1", "v2")] == [True, False]
    assert store.inbox_counts() == {**EMPTY_INBOX, "pending": 2}
    stored = store.inbox_get(inbox_key(v2))
    assert stored is not None and stored.payload["data"]["id"] == 42
    # Prefect got each event once: the first post succeeded, redeliveries post nothing more
    assert sorted(e["payload"]["deal_id"] for e in fake.events) == [9, 42]


def test_the_event_names_the_deal_and_carries_ids_only(
    client: TestClient, fake: FakePrefect
) -> None:
    body = v2_deal(42)
    before = datetime.now(UTC)
    answer = deliver(client, body).json()
    assert answer == {
        "stored": True,
        "duplicate": False,
        "event": "queued",
        "event_id": answer["event_id"],
        "starts_run": True,
        "own_write": False,  # an app change (by a person), not an API change by our user
    }
    (event,) = fake.wait_for(lambda e: True)
    key = f"pipedrive:v2:{body['meta']['id']}"
    assert event["id"] == answer["event_id"] == str(uuid.uuid5(EVENT_NAMESPACE, key))
    assert event["event"] == "pipedrive.deal.change"
    assert event["resource"] == {
        "prefect.resource.id": "pipedrive.deal.42",
        "pdsync.starts-run": "yes",  # the label the deal-sync trigger matches
    }
    assert event["payload"] == {
        "deal_id": 42,  # an int, though v2 meta sends "42"
        "object": "deal",
        "action": "change",
        "inbox_key": key,
        "change_source": "app",
        "own_write": False,
    }
    occurred = datetime.fromisoformat(event["occurred"])
    assert before - timedelta(seconds=1) <= occurred <= datetime.now(UTC) + timedelta(seconds=1)
    assert "Acme renewal" not in str(event)  # never the record


@pytest.mark.parametrize(
    ("v1_action", "expected"),
    [("added", "create"), ("updated", "change"), ("merged", "change"), ("deleted", "delete")],
)
def test_v1_actions_are_named_in_v2_words(v1_action: str, expected: str) -> None:
    body = v1_deal(77)
    body["meta"]["action"] = v1_action
    event = pipedrive_event(body)
    assert event is not None
    assert event["event"] == f"pipedrive.deal.{expected}"
    assert event["resource"] == deal_resource(77, starts_run=False)
    assert pipedrive_event(body, starts_run=True)["resource"] == deal_resource(77, starts_run=True)
    assert event["payload"]["deal_id"] == 77 and event["payload"]["action"] == expected


def test_v2_create_and_delete_events(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    deliver(client, v2_deal(7, "create"))
    deleted = v2_deal(7, "delete")
    deleted["data"], deleted["previous"] = None, {"id": 7, "title": "Gone"}
    deliver(client, deleted)
    all_posted(store)
    assert [e["event"] for e in fake.events] == ["pipedrive.deal.create", "pipedrive.deal.delete"]
    assert len({e["id"] for e in fake.events}) == 2  # two Pipedrive events, two Prefect events
    # the run the first one asked for takes both
    assert [e["resource"][STARTS_RUN_LABEL] for e in fake.events] == ["yes", "no"]


def test_redeliveries_give_identical_event_ids() -> None:
    first, again = v1_deal(), v1_deal()
    again["retry"] = 2
    v2_first = v2_deal(5)
    v2_again = {**v2_first, "meta": {**v2_first["meta"], "attempt": 3}}
    ids = [pipedrive_event(b)["id"] for b in (first, again, v2_first, v2_again)]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    other_change = v1_deal(stamp=1739827399000000)  # a later change of the same deal
    assert pipedrive_event(other_change)["id"] != ids[0]


def test_one_key_format_dedupes_the_inbox_and_names_the_event() -> None:
    """`parse_delivery`'s key is the inbox's dedupe key and the source of the event id."""
    v1 = v1_deal()
    assert inbox_key(v1) == "pipedrive:v1:deal:9:updated:1739827361322662"
    assert inbox_key({**v1, "retry": 3}) == inbox_key(v1)
    assert inbox_key(v1_deal(8)) != inbox_key(v1)
    v2 = v2_deal(5)
    assert inbox_key(v2) == f"pipedrive:v2:{v2['meta']['id']}"
    for body in (v1, v2):
        event = pipedrive_event(body)
        assert event is not None and event["payload"]["inbox_key"] == inbox_key(body)
        assert event["id"] == str(uuid.uuid5(EVENT_NAMESPACE, inbox_key(body)))
    no_record_id = v1_deal()
    del no_record_id["meta"]["id"]
    for not_a_webhook in ({}, {"meta": {}}, {"meta": {"version": "2.0"}}, {"data": 1}):
        with pytest.raises(ValueError, match="not a Pipedrive webhook"):
            parse_delivery(not_a_webhook)
    with pytest.raises(ValueError, match="meta.id"):
        parse_delivery(no_record_id)  # a v1 event is keyed on its record id


def test_other_objects_are_stored_without_an_event(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    lead = fixture("webhook-v2-change-lead.json")  # the real v2 delivery: a lead
    for body in (lead, v1_person(5)):
        answer = deliver(client, body)
        assert answer.status_code == 200
        assert answer.json()["stored"] is True and answer.json()["event"] == "not posted"
        assert answer.json()["starts_run"] is False and answer.json()["event_id"] is None
        assert "incremental sync" in answer.json()["reason"]
        assert store.inbox_get(inbox_key(body)).deal_id is None
    assert store.inbox_counts()["pending"] == 2
    assert store.inbox_get(inbox_key(lead)) is not None
    assert fake.events == [] and unposted_events(store) == []


# -- off the request path: the background poster ----------------------------------------------
def test_the_answer_does_not_wait_for_prefect(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    """Prefect holds every POST until released: the webhook is answered meanwhile, and its
    event reaches Prefect afterwards."""
    fake.mode = "block"
    body = v2_deal(12)
    answer = deliver(client, body)  # would hang until block_s if it waited for Prefect
    assert answer.status_code == 200
    assert answer.json() == {
        "stored": True,
        "duplicate": False,
        "event": "queued",
        "event_id": str(uuid.uuid5(EVENT_NAMESPACE, inbox_key(body))),
        "starts_run": True,
        "own_write": False,
    }
    assert store.inbox_get(inbox_key(body)).status == "pending"  # stored before the answer
    fake.wait_until(lambda: fake.blocked == 1)  # the poster's post is under way, held
    assert fake.events == [] and unposted_events(store) == [inbox_key(body)]
    fake.release()
    (event,) = fake.wait_for(lambda e: e["payload"]["deal_id"] == 12)
    assert event["id"] == answer.json()["event_id"]
    all_posted(store)


def test_the_poster_runs_with_the_app_and_posts_what_was_owed_before(
    settings: Settings, store: StateStore, fake: FakePrefect, api_url: str
) -> None:
    """Stored, then the receiver stopped before posting: the event is owed from the moment the
    notification is stored, and the poster posts it when the receiver starts again."""
    body = v2_deal(13)
    store.inbox_add(inbox_key(body), body, deal_id=13)
    app = create_receiver_app(settings, prefect_api_url=api_url, store=store)
    pump = app.state.event_pump
    assert not pump.running and unposted_events(store) == [inbox_key(body)]
    with TestClient(app):
        assert pump.running
        (event,) = fake.wait_for(lambda e: True)
        all_posted(store)
    assert not pump.running  # stopped with the app
    assert event["payload"]["inbox_key"] == inbox_key(body)
    assert event["resource"] == deal_resource(13, starts_run=False)  # it never asked for a run


def test_an_event_is_held_back_until_its_run_decision_is_stored(
    client: TestClient, store: StateStore, fake: FakePrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poster looks at the inbox after a notification was stored and before the store
    recorded that it asks for a run: its event must not go out saying "no"."""
    pump = client.app.state.event_pump
    reads: list[list[str]] = []
    read, decide = store.inbox_not_posted, store.inbox_request_run

    def recorded_read(limit: int = 100) -> list[Any]:
        items = read(limit)
        reads.append([item.dedupe_key for item in items])
        return items

    def late_decision(key: str, fresh_within: timedelta, **options: Any) -> bool:
        seen = len(reads)
        pump.wake()  # the poster reads the inbox (twice) while the decision is not made
        wait_until(lambda: sum(key in r for r in reads[seen:]) >= 2, what=f"reads: {reads}")
        return decide(key, fresh_within, **options)

    monkeypatch.setattr(store, "inbox_not_posted", recorded_read)
    monkeypatch.setattr(store, "inbox_request_run", late_decision)
    body = v2_deal(14)
    assert deliver(client, body).json()["starts_run"] is True
    (event,) = fake.wait_for(lambda e: True)
    all_posted(store)
    assert event["resource"] == deal_resource(14, starts_run=True)
    assert len(fake.events) == 1


# -- Prefect down -------------------------------------------------------------------------------
@pytest.mark.parametrize("failure", [503, 500, "refused", "hang"])
def test_prefect_down_the_notification_is_kept_and_drained_later(
    settings: Settings,
    store: StateStore,
    fake: FakePrefect,
    api_url: str,
    monkeypatch: pytest.MonkeyPatch,
    failure: int | str,
) -> None:
    monkeypatch.setattr(deployments.events, "BATCH_POST_TIMEOUT_S", 0.5)  # before "hang" ends
    url = f"http://127.0.0.1:{free_port()}/api" if failure == "refused" else api_url
    fake.mode = 204 if failure == "refused" else failure
    fake.hang_s = 4.0
    app = create_receiver_app(settings, prefect_api_url=url, store=store)
    with TestClient(app) as client:
        answer = deliver(client, v1_deal())
        pump = app.state.event_pump
        wait_until(lambda: pump.last_error is not None)  # the poster tried, and failed
    assert answer.status_code == 200
    assert answer.json() == {**answer.json(), "stored": True, "event": "queued"}
    key = inbox_key(v1_deal())
    assert store.inbox_get(key).status == "pending" and unposted_events(store) == [key]
    assert fake.events == []

    assert drain_inbox(store, url) == 0  # still down: nothing posted, nothing forgotten
    assert unposted_events(store) == [key]
    fake.mode = 204
    assert drain_inbox(store, api_url) == 1  # Prefect is back
    (event,) = fake.events
    assert event["id"] == answer.json()["event_id"] and event["payload"]["inbox_key"] == key
    assert event["resource"] == deal_resource(9, starts_run=True)
    assert unposted_events(store) == [] and drain_inbox(store, api_url) == 0
    assert store.inbox_get(key).status == "pending"  # the run it starts marks it done


def test_prefect_down_the_poster_keeps_the_events_and_posts_them_once_it_is_back(
    client: TestClient, store: StateStore, fake: FakePrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deployments.inbox_events, "POSTER_MAX_BACKOFF_S", 0.2)
    fake.mode = 503
    answers = [deliver(client, v2_deal(n)).json() for n in (1, 2)]
    assert [a["event"] for a in answers] == ["queued", "queued"]
    fake.wait_until(lambda: fake.attempts >= 2)  # tried, refused, tried again: still owed
    assert client.get("/healthz").json()["events_not_posted"] == 2
    fake.mode = 204
    deliver(client, v2_deal(3))
    all_posted(store)
    assert sorted(e["payload"]["deal_id"] for e in fake.events) == [1, 2, 3]  # each once
    by_deal = {e["payload"]["deal_id"]: e for e in fake.events}
    assert by_deal[1]["id"] == answers[0]["event_id"]
    assert [by_deal[n]["resource"][STARTS_RUN_LABEL] for n in (1, 2, 3)] == ["yes", "no", "no"]
    assert client.get("/healthz").json()["events_not_posted"] == 0


def test_a_redelivery_of_a_queued_event_wakes_the_poster_and_posts_nothing_twice(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    body = v2_deal(11)
    fake.mode = "block"
    first = deliver(client, body).json()
    assert first["event"] == "queued"
    fake.wait_until(lambda: fake.blocked == 1)  # the poster's post is under way, held
    again = deliver(client, body).json()  # Pipedrive's retry meanwhile: still queued
    assert again == {**first, "duplicate": True, "starts_run": False}
    fake.release()
    all_posted(store)
    third = deliver(client, body).json()  # a third delivery: already posted, nothing more
    assert third == {**again, "event": "posted"}
    all_posted(store)
    assert [e["id"] for e in fake.events] == [first["event_id"]]
    assert store.inbox_counts()["pending"] == 1


def test_drain_forgets_notifications_already_settled(
    store: StateStore, fake: FakePrefect, api_url: str
) -> None:
    for deal in (21, 22):
        body = v2_deal(deal)
        store.inbox_add(inbox_key(body), body, deal_id=deal)
    (first,) = store.inbox_claim(1)  # the incremental sync settled the older one
    store.inbox_done([first.id])
    assert drain_inbox(store, api_url) == 1
    assert [e["payload"]["deal_id"] for e in fake.events] == [22]
    assert unposted_events(store) == []


def test_an_event_owed_since_the_receiver_stopped_is_drained(
    store: StateStore, fake: FakePrefect, api_url: str
) -> None:
    """Stored, then the receiver died before posting: the next drain posts it."""
    body = v2_deal(31)
    key = inbox_key(body)
    assert store.inbox_add(key, body)
    assert unposted_events(store) == [key]
    assert drain_inbox(store, api_url) == 1
    (event,) = fake.events
    assert event == {**event, "id": str(uuid.uuid5(EVENT_NAMESPACE, key))}
    assert event["payload"]["inbox_key"] == key and event["payload"]["deal_id"] == 31
    assert unposted_events(store) == [] and drain_inbox(store, api_url) == 0


def test_drain_settles_owed_items_that_get_no_event_without_a_post(
    store: StateStore, fake: FakePrefect, api_url: str
) -> None:
    person, deal = v1_person(5), v2_deal(8)
    store.inbox_add("not-a-delivery", {"n": 1})
    store.inbox_add(inbox_key(person), person)
    store.inbox_add("pipedrive:v2:not-its-own-key", deal)  # its event would claim nothing
    assert len(unposted_events(store)) == 3
    assert drain_inbox(store, api_url) == 0
    assert fake.events == [] and unposted_events(store) == []
    assert store.inbox_counts()["pending"] == 3  # still there for the incremental sync


def test_an_event_prefect_refuses_is_set_aside_and_the_others_are_posted(
    store: StateStore, fake: FakePrefect, api_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Prefect refuses a whole request for one event it finds invalid (422): the batch is
    split until that event is found, which is logged and no longer owed (its notification
    stays pending for the runs and the incremental sync); the others are posted."""
    caplog.set_level(logging.INFO)
    for deal in range(1, 8):
        body = v2_deal(deal)
        store.inbox_add(inbox_key(body), body, deal_id=deal)
    fake.reject = lambda event: event["payload"]["deal_id"] == 4
    assert drain_inbox(store, api_url) == 6
    assert sorted(e["payload"]["deal_id"] for e in fake.events) == [1, 2, 3, 5, 6, 7]
    assert unposted_events(store) == [] and store.inbox_counts()["pending"] == 7
    (refused,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "of deal 4 refused by Prefect" in refused.getMessage()


def test_a_store_that_cannot_be_written_gets_503_so_pipedrive_retries(
    client: TestClient, store: StateStore, fake: FakePrefect, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> bool:
        raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "inbox_add", broken)
    answer = deliver(client, v1_deal())
    assert answer.status_code == 503
    assert fake.events == []


def test_healthz_counts_the_inbox(client: TestClient, store: StateStore) -> None:
    assert client.get("/healthz").json() == {
        "ok": True,
        "inbox": EMPTY_INBOX,
        "events_not_posted": 0,
    }
    deliver(client, v1_deal())
    deliver(client, v1_person())
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["inbox"] == {**EMPTY_INBOX, "pending": 2}


def test_the_public_url_path_is_served_too(
    tmp_path: Path, store: StateStore, api_url: str, fake: FakePrefect, settings: Settings
) -> None:
    custom = write_settings(tmp_path / "custom", public_url="https://sync.example.com/pd/hook/")
    with TestClient(create_receiver_app(custom, prefect_api_url=api_url, store=store)) as c:
        assert c.post("/pd/hook", json=v1_deal(), headers=basic()).status_code == 200
        assert c.post(WEBHOOK_PATH, json=v2_deal(), headers=basic()).status_code == 200
        assert c.post("/pd/hook", json=v1_deal()).status_code == 401
        all_posted(store)
    assert len(fake.events) == 2


# -- secrets ------------------------------------------------------------------------------------
def test_the_password_appears_in_no_log_record_and_no_answer(
    client: TestClient, fake: FakePrefect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        client.post(WEBHOOK_PATH, json=v1_deal()),
        client.post(WEBHOOK_PATH, json=v1_deal(), headers=basic(password=PASSWORD + "!")),
        client.post(WEBHOOK_PATH, json=v1_deal(), headers=basic(user=PASSWORD)),
        client.post(WEBHOOK_PATH, content=b"{", headers={**basic(), "content-type": "text/x"}),
        deliver(client, v1_deal()),
    ]
    fake.mode = 503
    answers.append(deliver(client, v2_deal()))
    assert [a.status_code for a in answers] == [401, 403, 403, 415, 200, 200]
    records = caplog.records
    assert any(r.levelno == logging.INFO and "deal 9 change" in r.getMessage() for r in records)
    for record in records:
        assert PASSWORD not in record.getMessage()
        assert PASSWORD not in str(record.args) and PASSWORD not in str(record.__dict__)
    for answer in answers:
        assert PASSWORD not in answer.text and PASSWORD not in str(answer.headers)


# -- end to end: the sandbox Pipedrive's real deliveries ----------------------------------------
@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """Our own sandbox (the session's `sandbox_small` is left untouched: we change a deal)."""
    with Sandbox("small", webhook_time_scale=0.01) as sb:
        yield sb


@pytest.mark.parametrize("version", ["2.0", "1.0"])
def test_a_deal_changed_in_pipedrive_reaches_prefect_as_an_event(
    sandbox: Sandbox,
    settings: Settings,
    store: StateStore,
    fake: FakePrefect,
    api_url: str,
    version: str,
) -> None:
    app = create_receiver_app(settings, prefect_api_url=api_url, store=store)
    deal = sandbox.pipedrive_seed.deals[0]
    deal_id = int(deal["id"])
    with (
        served(app) as receiver,
        httpx.Client(
            base_url=sandbox.pipedrive_url,
            headers={"x-api-token": sandbox.pipedrive_token},
            timeout=30,
        ) as api,
    ):
        hooks = [
            api.post(
                "/api/v1/webhooks",
                json={
                    "subscription_url": f"{receiver.url}{WEBHOOK_PATH}",
                    "event_action": "change" if version == "2.0" else "updated",
                    "event_object": "deal",
                    "name": f"receiver test {name}",
                    "version": version,
                    "http_auth_user": "pdsync",
                    "http_auth_password": password,
                },
            ).json()["data"]
            for name, password in (("right", PASSWORD), ("wrong", "not-the-password"))
        ]
        original = api.get(f"/api/v2/deals/{deal_id}").json()["data"]["title"]
        try:
            patched = api.patch(f"/api/v2/deals/{deal_id}", json={"title": "Renamed by test"})
            assert patched.status_code == 200
            (event,) = fake.wait_for(lambda e: e["payload"]["deal_id"] == deal_id)
            assert event["event"] == "pipedrive.deal.change"
            assert event["resource"] == deal_resource(deal_id, starts_run=True)
            log = _wait_for_deliveries(sandbox, {h["id"] for h in hooks})
        finally:
            for hook in hooks:
                api.delete(f"/api/v1/webhooks/{hook['id']}")
            api.patch(
                f"/api/v2/deals/{deal_id}", json={"title": original}
            )  # the next case renames it again
    by_hook = {e["webhook_id"]: e for e in log}
    assert by_hook[hooks[0]["id"]]["status"] == 200
    assert by_hook[hooks[1]["id"]]["status"] == 403  # the wrong password: refused
    assert store.inbox_counts()["pending"] == 1  # only the authenticated delivery is stored
    item = store.inbox_get(event["payload"]["inbox_key"])
    assert item is not None and item.status == "pending"
    title = (item.payload.get("data") or item.payload.get("current"))["title"]
    assert title == "Renamed by test"


def _wait_for_deliveries(sb: Sandbox, hook_ids: set[int], timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:  # attempts the sandbox timed out (0.1 s at its time scale) are retried
        found = [
            e
            for e in sb.pipedrive.deliveries()
            if e["webhook_id"] in hook_ids and e["status"] is not None
        ]
        if {e["webhook_id"] for e in found} == hook_ids:
            return found
        assert time.monotonic() < deadline, f"deliveries so far: {found}"
        time.sleep(0.02)


# -- a real Prefect API -------------------------------------------------------------------------
def _prefect_events(api_url: str, ids: list[str], timeout: float = 60.0) -> list[dict[str, Any]]:
    """The events Prefect stored under `ids`, once it has them all (it stores asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        page = httpx.post(
            f"{api_url}/events/filter",
            json={"filter": {"id": {"id": ids}}, "limit": 50},
            timeout=10,
        )
        assert page.status_code == 200, page.text
        found: list[dict[str, Any]] = page.json()["events"]
        if len(found) >= len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_real_prefect_api_takes_the_event_once(settings: Settings, store: StateStore) -> None:
    """The default API URL (PREFECT_API_URL) and the event's shape, checked by Prefect itself:
    it answers 204, keeps the event under its deterministic id with its starts-run label, and
    keeps it once however often the delivery comes."""
    from deployments.events import default_prefect_api_url

    api_url = default_prefect_api_url()
    assert api_url
    body = v2_deal(4242)
    with TestClient(create_receiver_app(settings, store=store)) as client:
        first = deliver(client, body).json()
        all_posted(store)
        again = deliver(client, body).json()
    assert first["event"] == "queued" and first["starts_run"] is True
    assert again == {**first, "duplicate": True, "event": "posted", "starts_run": False}
    event_id = first["event_id"]
    assert drain_inbox(store, api_url) == 0
    (event,) = _prefect_events(api_url, [event_id])
    assert event["event"] == "pipedrive.deal.change"
    assert event["resource"]["prefect.resource.id"] == "pipedrive.deal.4242"
    assert event["resource"][STARTS_RUN_LABEL] == STARTS_RUN_YES
    assert event["payload"]["deal_id"] == 4242


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_real_prefect_api_takes_a_batch_and_a_waiting_event(store: StateStore) -> None:
    """Prefect's `POST /events` takes a list of many events in one request, and the waiting
    event's shape (a random id, the starts-run label)."""
    from deployments.events import EventPoster, default_prefect_api_url, waiting_event

    api_url = default_prefect_api_url()
    assert api_url
    bodies = [v2_deal(4300 + n) for n in range(5)]
    for n, body in enumerate(bodies):
        store.inbox_add(inbox_key(body), body, deal_id=4300 + n)
    assert drain_inbox(store, api_url) == 5
    waiting = waiting_event(inbox_key(bodies[0]), 4300)
    with EventPoster(api_url) as poster:
        assert poster.send_batch([waiting]) is None
    ids = [pipedrive_event(b)["id"] for b in bodies] + [waiting["id"]]
    found = {e["id"]: e for e in _prefect_events(api_url, ids)}
    assert set(found) == set(ids)
    assert found[waiting["id"]]["event"] == "pipedrive.deal.waiting"
    assert found[waiting["id"]]["resource"][STARTS_RUN_LABEL] == STARTS_RUN_YES


def test_an_api_change_by_the_webhooks_owner_is_recognised_as_our_own_write(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="deployments.receiver")
    ours = v2_deal(31)
    ours["meta"].update(change_source="api", user_id="777", webhook_owner_id="777")
    someone = v2_deal(32)
    someone["meta"].update(change_source="app", user_id="778", webhook_owner_id="777")
    assert deliver(client, ours).json()["own_write"] is True
    assert deliver(client, someone).json()["own_write"] is False
    assert any(
        "deal 31" in r.getMessage() and "the sync's own write" in r.getMessage()
        for r in caplog.records
    )
    assert parse_delivery(ours).own_write and not parse_delivery(someone).own_write
