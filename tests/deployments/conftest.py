"""Fixtures of the receiver's tests: a fake Prefect API served on a port, receiver settings
(a test module may define its own `settings` instead), their state store (or the module's
own `store`) and the receiver app on a test client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from receiver_support import PASSWORD, PASSWORD_ENV, FakePrefect, write_settings

from deployments.receiver import create_receiver_app
from mappings.models import Settings
from sandbox.server import ServedApp
from store import StateStore


@pytest.fixture(scope="module")
def prefect_served() -> Iterator[tuple[FakePrefect, str]]:
    fake = FakePrefect()
    with ServedApp(fake.app) as served:
        yield fake, f"{served.url}/api"


@pytest.fixture()
def fake(prefect_served: tuple[FakePrefect, str]) -> FakePrefect:
    prefect_served[0].reset()
    return prefect_served[0]


@pytest.fixture()
def api_url(prefect_served: tuple[FakePrefect, str]) -> str:
    return prefect_served[1]


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return write_settings(tmp_path / "settings")


@pytest.fixture()
def store(settings: Settings) -> Iterator[StateStore]:
    with StateStore(settings.store_url) as opened:
        yield opened


@pytest.fixture()
def client(settings: Settings, store: StateStore, api_url: str) -> Iterator[TestClient]:
    app = create_receiver_app(settings, prefect_api_url=api_url, store=store)
    with TestClient(app) as test_client:
        yield test_client
