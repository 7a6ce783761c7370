"""Helpers for the pipeline's end-to-end tests: settings pointed at an in-process sandbox."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import yaml

from deployments.sandbox_settings import SANDBOX_DIR
from sandbox.runner import Sandbox

SANDBOX_SETTINGS = SANDBOX_DIR


def write_settings(
    directory: Path, sb: Sandbox, *, pipelines: list[Any] | None = None, **changes: Any
) -> Path:
    """A settings directory like deployments/sandbox_settings/, aimed at `sb` and a fresh
    SQLite store.

    `changes` replace top-level sections of integration.yaml (e.g. notes={"direction": "none"}).
    Tokens come from the environment variables the sandbox settings name (set by the caller).
    """
    directory.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((SANDBOX_SETTINGS / "integration.yaml").read_text())
    data["connection"]["pipedrive"]["company_url"] = sb.pipedrive_url
    data["connection"]["planhat"]["base_url"] = sb.planhat_url
    data["connection"]["receiver"]["public_url"] = None
    data["store"]["url"] = f"sqlite:///{directory / 'state.db'}"
    if pipelines is not None:
        data["deals"]["pipelines"] = pipelines
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    (directory / "integration.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    shutil.copy(SANDBOX_SETTINGS / "custom_matches.yaml", directory / "custom_matches.yaml")
    return directory


def pipedrive(sb: Sandbox) -> httpx.Client:
    return httpx.Client(
        base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}, timeout=30
    )


def pipeline_ids(sb: Sandbox) -> dict[str, int]:
    return {p["name"]: int(p["id"]) for p in sb.pipedrive_seed.pipelines}


def by_source(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(r["sourceId"]): r for r in records if r.get("sourceId") is not None}
