"""Fixtures of the flow tests: a sandbox of their own per test (the Planhat side starts empty,
the counters count only that test's calls) and settings aimed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_support import write_settings

from sandbox.runner import Sandbox


@pytest.fixture()
def sb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox("small", burst=1_000_000) as sandbox:
        monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", sandbox.pipedrive_token)
        monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", sandbox.planhat_token)
        yield sandbox


@pytest.fixture()
def settings(sb: Sandbox, tmp_path: Path) -> str:
    return str(write_settings(tmp_path / "settings", sb, pipelines=["New business"]))
