"""Fixtures of the receiver's tests: a fake Prefect API served on a port, and receiver
settings (a test module may define its own `settings` instead)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from receiver_support import PASSWORD, PASSWORD_ENV, FakePrefect, write_settings

from mappings.models import Settings
from sandbox.server import ServedApp


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
