"""Automations of the sandbox Planhat (an outbound webhook on create/update), as a receiver
sees them: what fires, the body, the headers, retries, the admin API and shutdown."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.dataset import PlanhatSeed
from sandbox.pipedrive.testing import WebhookReceiver
from sandbox.planhat import PlanhatSandbox
from sandbox.planhat.automations import AutomationError
from sandbox.server import ServedApp, free_port

TOKEN = "ph-automations-token-0123456789"
SECRET = "s3cret-for-the-receiver"
ALL_MODELS = ["companies", "endusers", "licenses", "conversations"]
BODY_KEYS = {
    "automation", "event", "model", "object", "_id", "sourceId", "externalId", "changed",
    "updatedAt", "id",
}  # fmt: skip

_unique = itertools.count(1)


def uid(prefix: str) -> str:
    return f"{prefix}-{next(_unique)}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as rx:
        yield rx


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[PlanhatSandbox, str]]:
    sb = PlanhatSandbox(PlanhatSeed(), [TOKEN])
    try:
        with ServedApp(sb.asgi) as app:
            yield sb, app.url
    finally:
        sb.close()


@pytest.fixture()
def sb(served: tuple[PlanhatSandbox, str]) -> Iterator[PlanhatSandbox]:
    sandbox = served[0]
    yield sandbox
    sandbox.set_automations([])  # each test starts with no automation and an empty log
    sandbox.wait_automations_idle(5)
    sandbox.clear_automation_deliveries()


@pytest.fixture()
def client(served: tuple[PlanhatSandbox, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=served[1], headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as c:
        yield c


@pytest.fixture()
def admin(served: tuple[PlanhatSandbox, str]) -> Iterator[httpx.Client]:
    """No token: the admin API is never authenticated."""
    with httpx.Client(base_url=f"{served[1]}/_sandbox", timeout=10) as c:
        yield c


def automation(receiver: WebhookReceiver, path: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": fields.pop("name", path),
        "models": fields.pop("models", ALL_MODELS),
        "events": fields.pop("events", ["created", "updated"]),
        "url": receiver.url(path),
        "headers": fields.pop("headers", {"X-Pdsync-Secret": SECRET}),
        **fields,
    }


def create_company(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    fields.setdefault("name", uid("Company"))
    fields.setdefault("sourceId", uid("org"))
    response = client.post("/companies", json=fields)
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- what fires -------------------------------------------------------------------------------


def test_create_fires_created_with_ids_and_the_secret_header(
    sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("created")
    sb.set_automations([automation(receiver, path, events=["created"])])
    company = create_company(client, externalId="ext-1x", custom={"Tier": "Gold"})

    [request] = receiver.wait_for(path, 1, timeout=5)
    body = request["body"]
    assert set(body) == BODY_KEYS  # ids and small facts: no companyId on companies, no record
    assert body["automation"] == path
    assert (body["event"], body["model"], body["object"]) == ("created", "companies", "company")
    assert body["_id"] == company["_id"]
    assert (body["sourceId"], body["externalId"]) == (company["sourceId"], "ext-1x")
    assert body["updatedAt"] == company["updatedAt"]
    assert {"name", "sourceId", "externalId", "custom.Tier"} <= set(body["changed"])
    assert not {"_id", "createdAt", "updatedAt", "custom"} & set(body["changed"])
    assert body["changed"] == sorted(body["changed"])
    assert request["headers"]["x-pdsync-secret"] == SECRET
    assert request["headers"]["content-type"] == "application/json"

    [entry] = sb.wait_automations_idle(5)
    assert entry["automation"] == path and entry["id"] == body["id"]
    assert (entry["model"], entry["event"], entry["_id"]) == ("companies", "created", body["_id"])
    assert (entry["status"], entry["ok"], entry["attempt"], entry["error"]) == (200, True, 1, None)
    assert entry["time"].endswith("Z")


def test_an_update_fires_updated_with_the_changed_fields(
    sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("updated")
    company = create_company(client, custom={"Tier": "Silver", "Seats": 3})
    sb.set_automations([automation(receiver, path, events=["updated"])])

    new_name = uid("Renamed")
    response = client.put(
        f"/companies/{company['_id']}", json={"name": new_name, "custom": {"Tier": "Gold"}}
    )
    assert response.status_code == 200, response.text

    [request] = receiver.wait_for(path, 1, timeout=5)
    body = request["body"]
    assert (body["event"], body["_id"]) == ("updated", company["_id"])
    assert body["changed"] == ["custom.Tier", "name"]
    assert body["updatedAt"] == response.json()["updatedAt"]


def test_a_write_that_changes_nothing_fires_nothing(
    sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("same")
    company = create_company(client, custom={"Tier": "Gold"})
    sb.set_automations([automation(receiver, path)])

    same = {"name": company["name"], "custom": {"Tier": "Gold"}}
    assert client.put(f"/companies/{company['_id']}", json=same).status_code == 200
    bulk = client.put("/companies", json=[{"sourceId": company["sourceId"], **same}])
    assert bulk.json()["nonupdates"] == 1
    assert client.delete(f"/companies/{company['_id']}").status_code == 200  # deletes: none

    # Firing happens before the API answers, so an idle deliverer now means nothing was fired.
    assert sb.wait_automations_idle(5) == []
    assert receiver.received(path) == []


def test_the_fields_filter_fires_on_those_fields_only(
    sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("fields")
    company = create_company(client, custom={"Tier": "Silver"})
    sb.set_automations([automation(receiver, path, fields=["custom.Tier", "status"])])

    client.put(f"/companies/{company['_id']}", json={"name": uid("Other name")})
    client.put(f"/companies/{company['_id']}", json={"custom": {"Seats": 9}})
    assert sb.wait_automations_idle(5) == []

    client.put(f"/companies/{company['_id']}", json={"custom": {"Tier": "Gold"}})
    [request] = receiver.wait_for(path, 1, timeout=5)
    assert request["body"]["changed"] == ["custom.Tier"]
    # A create always fires: the filter is about updates.
    create_company(client)
    assert len(receiver.wait_for(path, 2, timeout=5)) == 2

    # `custom` stands for every custom field.
    sb.set_automations([automation(receiver, path, fields=["custom"])])
    client.put(f"/companies/{company['_id']}", json={"custom": {"Seats": 10}})
    assert receiver.wait_for(path, 3, timeout=5)[2]["body"]["changed"] == ["custom.Seats"]


def test_a_bulk_upsert_of_three_fires_three_deliveries_with_the_company(
    sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("bulk")
    company = create_company(client)
    sb.set_automations([automation(receiver, path, models=["endusers"])])

    items = [
        {"companyId": company["_id"], "email": f"{uid('p')}@x.example", "externalId": uid("pd")}
        for _ in range(3)
    ]
    response = client.put("/endusers", json=items)
    assert response.json()["created"] == 3

    requests = receiver.wait_for(path, 3, timeout=5)
    bodies = [r["body"] for r in requests]
    assert len(bodies) == 3
    assert {b["externalId"] for b in bodies} == {i["externalId"] for i in items}
    assert len({b["_id"] for b in bodies}) == len({b["id"] for b in bodies}) == 3
    assert all(b["object"] == "enduser" and b["companyId"] == company["_id"] for b in bodies)
    assert all(set(b) == BODY_KEYS | {"companyId"} for b in bodies)


def test_the_api_answers_without_waiting_for_the_receiver(
    sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("slow")
    receiver.stall(path, 1.5)  # far longer than an answer takes, even on a loaded machine
    sb.set_automations([automation(receiver, path)])
    create_company(client)
    assert sb.automation_deliveries() == []  # answered while the delivery still waits
    assert sb.wait_automations_idle(10)[0]["ok"]


# --- retries ---------------------------------------------------------------------------------


def test_a_5xx_is_retried_with_the_same_delivery_id(
    sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("retry")
    receiver.fail(path, 500)
    sb.set_automations([automation(receiver, path)])
    create_company(client)

    first, second = receiver.wait_for(path, 2, timeout=5)
    assert (first["answered"], second["answered"]) == (500, 200)
    assert first["body"] == second["body"]  # the same id on every attempt
    log = sb.wait_automations_idle(5)
    assert [(e["attempt"], e["status"], e["ok"]) for e in log] == [(1, 500, False), (2, 200, True)]
    assert log[0]["error"] == "HTTP 500"


def test_a_4xx_is_not_retried(
    sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("refused")
    receiver.fail(path, 403)
    sb.set_automations([automation(receiver, path)])
    create_company(client)
    assert [(e["attempt"], e["status"]) for e in sb.wait_automations_idle(5)] == [(1, 403)]


def test_an_unreachable_target_gets_three_attempts_and_close_stops_the_thread() -> None:
    sb = PlanhatSandbox(PlanhatSeed(), [TOKEN], automation_time_scale=0.01)
    dead = f"http://127.0.0.1:{free_port()}/webhooks/planhat"
    sb.set_automations([{"name": "dead", "models": ["companies"], "url": dead}])
    sb.store.create("companies", {"name": "Acme"})
    log = sb.wait_for_automation_deliveries(3, timeout=5)
    assert [e["attempt"] for e in log] == [1, 2, 3]
    assert all(e["status"] is None and e["error"] and not e["ok"] for e in log)
    sb.wait_automations_idle(5)

    assert sb.deliverer.running
    sb.close()
    assert not sb.deliverer.running
    sb.close()  # idempotent
    sb.store.create("companies", {"name": "After close"})  # fires into nothing, quietly
    assert len(sb.automation_deliveries()) == 3


# --- configuration ---------------------------------------------------------------------------


def test_configuration_over_the_admin_api(
    admin: httpx.Client, sb: PlanhatSandbox, receiver: WebhookReceiver
) -> None:
    path = uid("admin")
    config = {"automations": [automation(receiver, path, models=["licenses"], fields=None)]}
    response = admin.put("/automations", json=config)
    assert response.status_code == 200, response.text
    assert response.json() == config
    assert admin.get("/automations").json() == config
    assert sb.automations() == config["automations"]

    # Defaults: both events, no headers, no field filter.
    minimal = {"automations": [{"name": "m", "models": ["companies"], "url": "https://x.test/"}]}
    response = admin.put("/automations", json=minimal)
    assert response.json()["automations"] == [
        {
            "name": "m",
            "models": ["companies"],
            "events": ["created", "updated"],
            "url": "https://x.test/",
            "headers": {},
            "fields": None,
        }
    ]

    assert admin.delete("/automations").json() == {"automations": []}
    assert sb.automations() == []


def test_the_delivery_log_over_the_admin_api(
    admin: httpx.Client, sb: PlanhatSandbox, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    path = uid("log")
    sb.set_automations([automation(receiver, path)])
    company = create_company(client)
    sb.wait_automations_idle(5)
    [entry] = admin.get("/automations/deliveries").json()
    assert (entry["automation"], entry["_id"], entry["status"]) == (path, company["_id"], 200)
    assert admin.delete("/automations/deliveries").json() == []
    assert admin.get("/automations/deliveries").json() == []


BAD_BODIES: list[tuple[Any, str]] = [
    (b"{not json", "not valid JSON"),
    (b"", "a JSON body is required"),
    ({"automation": []}, '{"automations": [...]}'),
    ({"automations": {}}, '{"automations": [...]}'),
    ({"automations": [1]}, "automations[0] must be an object"),
    ({"automations": [{"models": ["companies"], "url": "http://x.test"}]}, "name"),
    ({"automations": [{"name": "a", "url": "http://x.test"}]}, "models is required"),
    ({"automations": [{"name": "a", "models": ["deals"], "url": "http://x.test"}]}, "'deals'"),
    ({"automations": [{"name": "a", "models": [], "url": "http://x.test"}]}, "models"),
    ({"automations": [{"name": "a", "models": ["companies"], "url": "ftp://x"}]}, "url"),
    ({"automations": [{"name": "a", "models": ["companies"]}]}, "url"),
    (
        {"automations": [{"name": "a", "models": ["companies"], "url": "http://x.test",
                          "events": ["deleted"]}]},
        "'deleted'",
    ),
    (
        {"automations": [{"name": "a", "models": ["companies"], "url": "http://x.test",
                          "headers": {"X-Secret": 1}}]},
        "headers",
    ),
    (
        {"automations": [{"name": "a", "models": ["companies"], "url": "http://x.test",
                          "fields": "name"}]},
        "fields",
    ),
    (
        {"automations": [{"name": "a", "models": ["companies"], "url": "http://x.test",
                          "field": ["name"]}]},
        "unknown keys ['field']",
    ),
    (
        {"automations": [{"name": "a", "models": ["companies"], "url": "http://x.test"},
                         {"name": "a", "models": ["licenses"], "url": "http://x.test"}]},
        "unique",
    ),
]  # fmt: skip


def test_a_bad_admin_body_is_a_400_and_changes_nothing(
    admin: httpx.Client, sb: PlanhatSandbox, receiver: WebhookReceiver
) -> None:
    config = [automation(receiver, uid("kept"))]
    sb.set_automations(config)
    for body, message in BAD_BODIES:
        if isinstance(body, bytes):
            response = admin.put("/automations", content=body)
        else:
            response = admin.put("/automations", json=body)
        assert response.status_code == 400, (body, response.text)
        assert message in response.json()["message"], (body, response.json())
        assert sb.automations() == [{**config[0], "fields": None}]


def test_the_python_api_validates_too(sb: PlanhatSandbox) -> None:
    with pytest.raises(AutomationError, match="models"):
        sb.set_automations([{"name": "a", "models": ["nope"], "url": "http://x.test"}])
    assert sb.automations() == []
