"""Webhooks of the sandbox Pipedrive, as a receiver sees them.

A webhook registered through `POST /api/v1/webhooks` gets, for every matching create/change/
delete made through the API, the payload of its version (v2 by default, v1 on request) with
basic auth; failed deliveries are retried after 3, 30 and 150 s times the time scale; the ban
policy (off by default) bans after 10 failed first attempts.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.data import generate
from sandbox.pipedrive.app import PipedriveSandbox
from sandbox.pipedrive.testing import (
    WebhookReceiver,
    minimal_seed,
)
from sandbox.server import ServedApp

TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
SCALE = 0.01
# The two real deliveries (kept beside the project, not in it); overridable.
# copies of Pipedrive's description and real deliveries: tests/reference/README.md
REFERENCE = Path(__file__).resolve().parents[1] / "reference"
FIXTURES = Path(os.environ.get("PIPEDRIVE_FIXTURES_DIR", str(REFERENCE / "fixtures")))


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[PipedriveSandbox, str]]:
    seed, _ = generate("small")
    pd = PipedriveSandbox(seed, [TOKEN], burst=10_000, webhook_time_scale=SCALE)
    served = ServedApp(pd.asgi).start()
    try:
        yield pd, served.url
    finally:
        served.stop()
        pd.close()


@pytest.fixture
def pd(sandbox: tuple[PipedriveSandbox, str]) -> PipedriveSandbox:
    return sandbox[0]


@pytest.fixture
def api(sandbox: tuple[PipedriveSandbox, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox[1], headers={"x-api-token": TOKEN}, timeout=10) as c:
        yield c
        for hook in c.get("/api/v1/webhooks").json()["data"]:  # each test starts with none
            c.delete(f"/api/v1/webhooks/{hook['id']}")


def add_webhook(api: httpx.Client, url: str, **body: Any) -> dict[str, Any]:
    body = {
        "subscription_url": url,
        "event_action": "*",
        "event_object": "*",
        "name": "test hook",
        **body,
    }
    response = api.post("/api/v1/webhooks", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def log_of(pd: PipedriveSandbox, webhook_id: int, n: int, timeout: float = 10.0) -> list[dict]:
    """The delivery log entries of one webhook, once there are at least `n`."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [e for e in pd.deliveries() if e["webhook_id"] == webhook_id]
        if len(entries) >= n:
            return entries
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(entries)} deliveries for webhook {webhook_id}, {n} expected")
        time.sleep(0.01)


def some_deal(api: httpx.Client) -> dict[str, Any]:
    return api.post("/api/v2/deals", json={"title": f"Hook deal {uuid.uuid4().hex[:6]}"}).json()[
        "data"
    ]


# -- management API -----------------------------------------------------------------------------
def test_webhook_management(api: httpx.Client, receiver: WebhookReceiver) -> None:
    hook = add_webhook(
        api,
        receiver.url("mgmt"),
        event_action="change",
        event_object="deal",
        http_auth_user="pd",
        http_auth_password="secret",
    )
    assert hook["version"] == "2.0" and hook["is_active"] == 1 and hook["type"] == "general"
    assert hook["add_time"].endswith(".000Z")
    listed = api.get("/api/v1/webhooks").json()
    assert listed["success"] is True and listed["status"] == "ok"
    assert [h["id"] for h in listed["data"]] == [hook["id"]]
    assert api.delete(f"/api/v1/webhooks/{hook['id']}").json() == {"success": True, "status": "ok"}
    missing = api.delete(f"/api/v1/webhooks/{hook['id']}")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "status": "error", "errors": {"id": ["not found"]}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": "1.0", "event_action": "change"}, "event_action"),
        ({"version": "2.0", "event_action": "updated"}, "event_action"),
        ({"event_object": "deals"}, "event_object"),
        ({"subscription_url": "ftp://example.test/x"}, "subscription_url"),
        ({"subscription_url": "https://api.pipedrive.com/v1/x"}, "subscription_url"),
        ({"name": ""}, "name"),
        ({"version": "3.0"}, "version"),
    ],
)
def test_webhook_creation_is_validated(
    api: httpx.Client, receiver: WebhookReceiver, body: dict[str, Any], field: str
) -> None:
    payload = {
        "subscription_url": receiver.url("bad"),
        "event_action": "*",
        "event_object": "deal",
        "name": "x",
        **body,
    }
    response = api.post("/api/v1/webhooks", json=payload)
    assert response.status_code == 400
    answer = response.json()
    assert answer["success"] is False and answer["status"] == "error"
    assert field in answer["errors"]


# -- v2 payloads --------------------------------------------------------------------------------
def test_v2_webhook_gets_a_deal_change_with_basic_auth(
    pd: PipedriveSandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    deal = some_deal(api)
    hook = add_webhook(
        api,
        receiver.url("v2-change"),
        event_action="change",
        event_object="deal",
        http_auth_user="pipedrive",
        http_auth_password="s3cret",
    )
    patched = api.patch(f"/api/v2/deals/{deal['id']}", json={"title": "Renamed deal"})
    (delivery,) = receiver.wait_for("v2-change", 1)
    expected_auth = "Basic " + base64.b64encode(b"pipedrive:s3cret").decode()
    assert delivery["headers"]["authorization"] == expected_auth
    body = delivery["body"]
    meta = body["meta"]
    assert meta["action"] == "change" and meta["entity"] == "deal"
    assert meta["entity_id"] == str(deal["id"])
    assert meta["webhook_id"] == str(hook["id"])
    assert meta["user_id"] == str(pd.model.me_user_id)
    assert meta["company_id"] == str(pd.model.company["id"])
    assert meta["change_source"] == "api" and meta["attempt"] == 1 and meta["version"] == "2.0"
    uuid.UUID(meta["id"])
    assert meta["timestamp"].endswith("Z") and "T" in meta["timestamp"]
    real = json.loads((FIXTURES / "webhook-v2-change-lead.json").read_text())
    assert set(real["meta"]) <= set(meta)
    for key in ("company_id", "entity_id", "id", "user_id", "webhook_id", "webhook_owner_id"):
        assert isinstance(meta[key], str), key  # strings, as the real v2 delivery shows
    assert body["data"] == patched.json()["data"]
    assert body["previous"] == {"title": deal["title"], "update_time": deal["update_time"]} or (
        body["previous"] == {"title": deal["title"]}  # same second: update_time unchanged
    )
    (entry,) = log_of(pd, hook["id"], 1)
    assert entry["status"] == 200 and entry["attempt"] == 1 and entry["ok"] is True
    assert entry["event_id"] == meta["id"] and entry["url"] == receiver.url("v2-change")


def test_v2_create_and_delete_payloads(api: httpx.Client, receiver: WebhookReceiver) -> None:
    add_webhook(api, receiver.url("v2-cd"), event_object="person")
    person = api.post("/api/v2/persons", json={"name": "Hook Person"}).json()["data"]
    api.delete(f"/api/v2/persons/{person['id']}")
    created, deleted = sorted(
        receiver.wait_for("v2-cd", 2), key=lambda r: r["body"]["meta"]["action"] != "create"
    )
    assert created["body"]["meta"]["action"] == "create"
    assert created["body"]["data"] == person and created["body"]["previous"] is None
    assert deleted["body"]["meta"]["action"] == "delete"
    assert deleted["body"]["data"] is None and deleted["body"]["previous"] == person


# -- v1 payloads --------------------------------------------------------------------------------
def test_v1_webhook_gets_the_v1_webhook_shape(
    api: httpx.Client, receiver: WebhookReceiver, pd: PipedriveSandbox
) -> None:
    fields = {f["field_code"]: f for f in pd.model.fields["deal"] if f["is_custom_field"]}
    enum = next(k for k, f in fields.items() if f["field_type"] == "enum")
    options = [
        o["id"]
        for o in fields[next(k for k, f in fields.items() if f["field_type"] == "set")]["options"]
    ]
    set_key = next(k for k, f in fields.items() if f["field_type"] == "set")
    money = next(k for k, f in fields.items() if f["field_type"] == "monetary")
    deal = some_deal(api)
    hook = add_webhook(
        api, receiver.url("v1"), version="1.0", event_action="updated", event_object="deal"
    )
    api.patch(
        f"/api/v2/deals/{deal['id']}",
        json={
            "status": "won",
            "custom_fields": {
                enum: fields[enum]["options"][0]["id"],
                set_key: options[:2],
                money: {"value": 1500, "currency": "USD"},
            },
        },
    )
    (delivery,) = receiver.wait_for("v1", 1)
    body = delivery["body"]
    assert "authorization" not in delivery["headers"]
    assert body["v"] == 1 and body["event"] == "updated.deal" and body["retry"] == 0
    meta = body["meta"]
    assert meta["action"] == "updated" and meta["object"] == "deal" and meta["id"] == deal["id"]
    assert meta["webhook_id"] == str(hook["id"]) and meta["change_source"] == "api"
    assert (
        isinstance(meta["timestamp"], int) and meta["timestamp_micro"] // 10**6 == meta["timestamp"]
    )
    real = json.loads((FIXTURES / "webhook-v1-updated-deal.json").read_text())
    assert set(real["meta"]) <= set(meta)
    assert set(real) == set(body)
    current, previous = body["current"], body["previous"]
    assert set(real["current"]) <= set(current)  # every key of the real delivery is there
    assert current["status"] == "won" and previous["status"] == "open"
    assert current["user_id"] == deal["owner_id"] and isinstance(current["user_id"], int)
    assert current["won_time"] and len(current["won_time"]) == 19 and current["won_time"][10] == " "
    assert previous["won_time"] is None and current["active"] is False
    assert current["visible_to"] == "3"
    assert current[enum] == str(fields[enum]["options"][0]["id"])  # enum: id as a string
    assert current[set_key] == ",".join(str(o) for o in options[:2])  # set: "1,2"
    assert current[money] == 1500 and current[f"{money}_currency"] == "USD"
    assert "custom_fields" not in current


def test_v1_note_events_and_action_filtering(
    api: httpx.Client, receiver: WebhookReceiver, pd: PipedriveSandbox
) -> None:
    added = add_webhook(
        api, receiver.url("v1-added"), version="1.0", event_action="added", event_object="*"
    )
    deal = some_deal(api)
    note = api.post("/api/v1/notes", json={"content": "<p>Hi</p>", "deal_id": deal["id"]}).json()
    api.put(f"/api/v1/notes/{note['data']['id']}", json={"content": "<p>Edited</p>"})
    org = api.post("/api/v2/organizations", json={"name": "Hook Org"}).json()["data"]
    got = receiver.wait_for("v1-added", 3)
    time.sleep(0.1)  # an `updated` event would have arrived by now
    events = sorted(r["body"]["event"] for r in receiver.received("v1-added"))
    assert events == ["added.deal", "added.note", "added.organization"]
    note_payload = next(r["body"] for r in got if r["body"]["event"] == "added.note")
    assert note_payload["current"]["content"] == "<p>Hi</p>"
    assert note_payload["current"]["deal"] == {"title": deal["title"]}
    assert note_payload["previous"] is None
    org_payload = next(r["body"] for r in got if r["body"]["event"] == "added.organization")
    assert org_payload["current"]["name"] == org["name"]
    assert all(e["ok"] for e in log_of(pd, added["id"], 3))


def test_deleted_webhook_gets_nothing_more(
    pd: PipedriveSandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    hook = add_webhook(api, receiver.url("gone"), event_object="deal")
    some_deal(api)
    receiver.wait_for("gone", 1)
    api.delete(f"/api/v1/webhooks/{hook['id']}")
    some_deal(api)
    time.sleep(0.2)
    assert len(receiver.received("gone")) == 1


# -- delivery -----------------------------------------------------------------------------------
def test_failed_deliveries_are_retried_after_scaled_delays(
    pd: PipedriveSandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail("retry", 500, 503)
    hook = add_webhook(api, receiver.url("retry"), event_object="deal", event_action="create")
    some_deal(api)
    attempts = receiver.wait_for("retry", 3)
    assert [r["body"]["meta"]["attempt"] for r in attempts] == [1, 2, 3]
    assert [r["answered"] for r in attempts] == [500, 503, 200]
    assert len({r["body"]["meta"]["id"] for r in attempts}) == 1  # the same event each time
    gaps = [b["time"] - a["time"] for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 3 * SCALE * 0.9 and gaps[1] >= 30 * SCALE * 0.9
    log = log_of(pd, hook["id"], 3)
    assert [(e["attempt"], e["status"], e["ok"]) for e in log] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert log[0]["error"] == "HTTP 500"
    listed = api.get("/api/v1/webhooks").json()["data"][0]
    assert listed["last_http_status"] == 200 and listed["last_delivery_time"]


def test_v1_retry_counter_and_timeouts(
    pd: PipedriveSandbox, api: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.stall("slow", 2.0)
    hook = add_webhook(
        api, receiver.url("slow"), version="1.0", event_object="deal", event_action="added"
    )
    some_deal(api)
    # the API answered while its (stalled) delivery was still unanswered: delivery never holds
    # up the API's answer (an order of events, not a duration)
    assert receiver.received("slow") == []
    first = log_of(pd, hook["id"], 1)[0]
    assert first["status"] is None and first["error"].startswith("timeout")
    receiver.stall("slow", 0.0)
    entries = log_of(pd, hook["id"], 2)
    assert entries[1]["ok"] is True and entries[1]["attempt"] == 2
    retries = [r["body"]["retry"] for r in receiver.wait_for("slow", 2)]
    assert sorted(retries) == [0, 1]


def test_delivery_log_over_http(
    sandbox: tuple[PipedriveSandbox, str], api: httpx.Client, receiver: WebhookReceiver
) -> None:
    pd, url = sandbox
    hook = add_webhook(api, receiver.url("logged"), event_object="organization")
    api.post("/api/v2/organizations", json={"name": "Logged Org"})
    log_of(pd, hook["id"], 1)
    entries = [
        e for e in httpx.get(f"{url}/_sandbox/deliveries").json() if e["webhook_id"] == hook["id"]
    ]
    assert len(entries) == 1
    assert {
        "webhook_id",
        "event_id",
        "attempt",
        "url",
        "status",
        "error",
        "duration_ms",
        "time",
    } <= set(entries[0])
    settings = httpx.get(f"{url}/_sandbox/webhooks").json()
    assert settings["time_scale"] == SCALE and settings["ban_policy"] is False


def test_ban_after_ten_failed_first_attempts_then_deletion() -> None:
    """With the policy on: 10 failed first attempts → banned (events lost) for 30 scaled
    minutes; no success for 3 scaled days → the webhook is deleted."""
    scale = 0.0003  # ban 0.54 s; retries 0.9, 9, 45 ms; three days 78 s
    sandbox = PipedriveSandbox(
        minimal_seed(5), [TOKEN], burst=10_000, webhook_time_scale=scale, webhook_ban_policy=True
    )
    with (
        WebhookReceiver() as rx,
        ServedApp(sandbox.asgi) as served,
        httpx.Client(base_url=served.url, headers={"x-api-token": TOKEN}) as api,
    ):
        rx.always("down", 500)
        hook = add_webhook(api, rx.url("down"), event_object="deal", event_action="change")
        for i in range(10):
            api.patch("/api/v2/deals/1", json={"title": f"t{i}"})
        deadline = time.monotonic() + 10
        while sum(1 for e in sandbox.deliveries() if e["attempt"] == 1) < 10:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        api.patch("/api/v2/deals/1", json={"title": "during the ban"})
        dropped = [e for e in sandbox.deliveries() if e["dropped"]]
        assert len(dropped) == 1 and dropped[0]["webhook_id"] == hook["id"]
        time.sleep(1800 * scale + 0.1)  # the ban ends
        rx.always("down", 200)
        api.patch("/api/v2/deals/1", json={"title": "after the ban"})
        body = rx.wait_for("down", 41)[-1]["body"]
        assert body["data"]["title"] == "after the ban"
        sandbox.close()

    deleting = PipedriveSandbox(
        minimal_seed(5), [TOKEN], webhook_time_scale=2e-6, webhook_ban_policy=True
    )  # three days = 0.52 s
    with (
        WebhookReceiver() as rx,
        ServedApp(deleting.asgi) as served,
        httpx.Client(base_url=served.url, headers={"x-api-token": TOKEN}) as api,
    ):
        rx.always("dead", 500)
        add_webhook(api, rx.url("dead"), event_object="deal")
        api.patch("/api/v2/deals/1", json={"title": "first failure"})
        deleting.wait_for_deliveries(4)
        time.sleep(0.6)
        api.patch("/api/v2/deals/1", json={"title": "three days later"})
        deleting.wait_for_deliveries(8)
        deadline = time.monotonic() + 5
        while api.get("/api/v1/webhooks").json()["data"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        deleting.close()
