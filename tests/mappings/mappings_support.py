"""Helpers of the mapping tests: settings directories written from text, and compiled mappings
over the sandbox data sets (no HTTP: the account's lists come straight from the seed)."""

from __future__ import annotations

import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Any

from deployments.sandbox_settings import SANDBOX_DIR, account_from_seed
from mappings.loading import load_settings
from mappings.models import Settings
from mappings.resolve import Account, Mappings, compile_mappings
from sandbox.data import generate

BASE_INTEGRATION = """\
version: 1
connection:
  pipedrive:
    company_url: https://acme.pipedrive.com
    token_env: PIPEDRIVE_API_TOKEN
  planhat:
    token_env: PLANHAT_API_TOKEN
deals:
  direction: receive
  pipelines: [New business]
"""


def write_settings(directory: Path, integration: str = BASE_INTEGRATION, **files: str) -> Path:
    """A settings directory: integration.yaml plus any other file given as name_yaml=text
    (e.g. custom_matches_yaml="..."). Files not given come from the shipped defaults."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "integration.yaml").write_text(textwrap.dedent(integration), encoding="utf-8")
    for name, text in files.items():
        filename = name.removesuffix("_yaml") + ".yaml"
        (directory / filename).write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


@lru_cache(maxsize=4)
def seed(dataset: str = "small") -> tuple[Any, Any]:
    return generate(dataset, 7)


def account(dataset: str = "small") -> Account:
    pd, ph = seed(dataset)
    return account_from_seed(pd, ph.users)


@lru_cache(maxsize=4)
def sandbox_settings() -> Settings:
    return load_settings(SANDBOX_DIR)


def sandbox_mappings(dataset: str = "small", settings: Settings | None = None) -> Mappings:
    return compile_mappings(settings or sandbox_settings(), account(dataset))


def field_code(entity: str, label: str, dataset: str = "small") -> str:
    """The 40-character key of a sandbox custom field, by its label."""
    pd, _ = seed(dataset)
    items = {"deal": pd.deal_fields, "organization": pd.organization_fields,
             "person": pd.person_fields}[entity]  # fmt: skip
    return next(f["field_code"] for f in items if f["field_name"] == label)


def option_id(entity: str, label: str, option: str, dataset: str = "small") -> int:
    pd, _ = seed(dataset)
    items = {"deal": pd.deal_fields, "organization": pd.organization_fields,
             "person": pd.person_fields}[entity]  # fmt: skip
    field = next(f for f in items if f["field_name"] == label)
    return next(o["id"] for o in field["options"] if o["label"] == option)
