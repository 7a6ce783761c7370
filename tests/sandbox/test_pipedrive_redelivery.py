"""Redelivery in the sandbox Pipedrive: an event sent once more, as Pipedrive does when it did not
get the receiver's answer (the same body and `meta.id`, the next attempt number)."""

from __future__ import annotations

import httpx

from sandbox.pipedrive.app import PipedriveSandbox
from sandbox.pipedrive.testing import WebhookReceiver, minimal_seed
from sandbox.server import ServedApp

TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567"


def test_redelivery_sends_the_same_event_with_the_next_attempt() -> None:
    sandbox = PipedriveSandbox(minimal_seed(3), [TOKEN], burst=10_000, webhook_time_scale=0.01)
    with (
        WebhookReceiver() as rx,
        ServedApp(sandbox.asgi) as served,
        httpx.Client(base_url=served.url, headers={"x-api-token": TOKEN}, timeout=10) as api,
    ):
        for name, version in (("v2", "2.0"), ("v1", "1.0")):
            api.post(
                "/api/v1/webhooks",
                json={
                    "subscription_url": rx.url(name),
                    "event_action": "*",
                    "event_object": "deal",
                    "name": name,
                    "version": version,
                    "http_auth_user": "u",
                    "http_auth_password": "p",
                },
            ).raise_for_status()
        api.patch("/api/v2/deals/1", json={"value": 123}).raise_for_status()
        first = sandbox.wait_for_deliveries(2)
        counted = httpx.get(f"{served.url}/_sandbox/counters").json()["total"]
        v2_event = next(e["event_id"] for e in first if e["version"] == "2.0")
        v1_event = next(e["event_id"] for e in first if e["version"] == "1.0")

        assert sandbox.redeliver(v2_event) == 2
        answer = httpx.post(f"{served.url}/_sandbox/deliveries/{v2_event}/redeliver")
        assert answer.status_code == 202 and answer.json() == {"event_id": v2_event, "attempt": 3}
        assert sandbox.redeliver(v1_event) == 2
        v2 = rx.wait_for("v2", 3)
        assert sorted(r["body"]["meta"]["attempt"] for r in v2) == [1, 2, 3]
        assert len({r["body"]["meta"]["id"] for r in v2}) == 1
        assert all(r["body"]["data"]["value"] == 123 for r in v2)  # the event's own state
        assert all(r["headers"]["authorization"].startswith("Basic ") for r in v2)
        assert [r["body"]["retry"] for r in rx.wait_for("v1", 2)] == [0, 1]

        log = sandbox.wait_for_deliveries(5)
        again = [e for e in log if e["attempt"] > 1]
        assert sorted((e["event_id"], e["attempt"]) for e in again) == sorted(
            [(v2_event, 2), (v2_event, 3), (v1_event, 2)]
        )
        assert all(e["ok"] and e["duration_ms"] >= 0 for e in again)
        # no API request: nothing counted, nothing rate-limited
        assert httpx.get(f"{served.url}/_sandbox/counters").json()["total"] == counted

        assert sandbox.redeliver("no-such-event") is None
        missing = httpx.post(f"{served.url}/_sandbox/deliveries/no-such-event/redeliver")
        assert missing.status_code == 404
    sandbox.close()
    assert sandbox.redeliver(v2_event) is None  # closed: nothing sent
