"""The receiver's `POST /webhooks/planhat` (Planhat's automation webhooks): the shared secret,
the body checks, the inbox before the answer, one run asked for per burst, the events posted
off the request path (`pipedrive`'s own route is tested in test_receiver.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from receiver_support import PASSWORD, PASSWORD_ENV, FakePrefect, all_posted, write_settings

from deployments.planhat_events import PLANHAT_PATH
from deployments.receiver import create_receiver_app
from mappings.models import Settings
from store import StateStore

SECRET_ENV = "TEST_PLANHAT_WEBHOOK_SECRET"
SECRET = "a-long-shared-secret-for-planhat"  # noqa: S105 - a test value


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return write_settings(tmp_path / "settings", planhat_secret_env=SECRET_ENV)


def company(planhat_id: str = "66a1c3f00000000000000003", **fields: Any) -> dict[str, Any]:
    """The body the sandbox's (and the README's) automation sends."""
    return {
        "automation": "pdsync", "event": "updated", "model": "companies", "object": "company",
        "_id": planhat_id, "sourceId": "12", "externalId": None, "changed": ["name"],
        "updatedAt": "2026-11-29T10:00:00.000Z", "id": uuid.uuid4().hex, **fields,
    }  # fmt: skip


def post(client: TestClient, body: Any, secret: str | None = SECRET) -> Any:
    headers = {"X-Pdsync-Secret": secret} if secret is not None else {}
    return client.post(PLANHAT_PATH, json=body, headers=headers)


@pytest.mark.parametrize(("secret", "status"), [(None, 401), ("wrong", 403), ("", 401)])
def test_a_missing_or_wrong_secret_is_refused_and_nothing_is_stored(
    client: TestClient, store: StateStore, secret: str | None, status: int
) -> None:
    answer = post(client, company(), secret)
    assert answer.status_code == status
    assert SECRET not in answer.text
    assert store.inbox_counts()["pending"] == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"model": "notes"}, "model must be one of"),
        ({"_id": "../etc"}, "_id must be a Planhat id"),
        ({"event": "deleted"}, "event must be one of"),
        ({"id": None, "updatedAt": None}, "neither a delivery id"),
        ({"companyId": {"x": 1}}, "companyId must be"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field_and_nothing_is_stored(
    client: TestClient, store: StateStore, change: dict[str, Any], named: str
) -> None:
    answer = post(client, company(**change))
    assert answer.status_code == 400 and named in answer.json()["detail"]
    assert store.inbox_counts()["pending"] == 0


def test_a_burst_is_stored_once_each_and_asks_for_one_run(
    client: TestClient, store: StateStore, fake: FakePrefect
) -> None:
    bodies = [company(f"66a1c3f0000000000000000{i}") for i in range(3)]
    answers = [post(client, b).json() for b in bodies]
    assert [a["starts_run"] for a in answers] == [True, False, False]
    assert all(a["stored"] and a["event"] == "queued" for a in answers)
    again = post(client, bodies[0]).json()  # Planhat retries a delivery
    assert again["duplicate"] is True and again["starts_run"] is False
    assert store.inbox_counts()["pending"] == 3
    all_posted(store)
    events = [e for e in fake.events if e["event"].startswith("planhat.")]
    assert [e["event"] for e in events] == ["planhat.company.updated"] * 3
    labels = [e["resource"]["pdsync.starts-run"] for e in events]
    assert labels == ["yes", "no", "no"]
    assert events[0]["resource"]["prefect.resource.id"] == f"planhat.company.{bodies[0]['_id']}"
    assert events[0]["payload"]["source_id"] == 12
    assert [i.dedupe_key for i in store.inbox_claim_planhat(10)] == [
        f"planhat:{b['id']}" for b in bodies
    ]


def test_without_the_setting_the_route_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_url: str
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    settings = write_settings(tmp_path / "plain")
    with StateStore(settings.store_url) as store:
        app = create_receiver_app(settings, prefect_api_url=api_url, store=store)
        with TestClient(app) as client:
            assert post(client, company()).status_code == 404
