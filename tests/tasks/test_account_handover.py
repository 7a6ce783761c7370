"""The account a command reads to check the settings is handed to the run it starts, once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import tasks.account
from mappings.resolve import Account
from tasks.account import hand_over, taken_over


def _clients(token: str = "first-token") -> tuple[Any, Any]:  # noqa: S107 - a fake
    pipedrive = SimpleNamespace(urls=SimpleNamespace(company_url="https://x.pipedrive.com"))
    pipedrive.secrets = (token,)
    planhat = SimpleNamespace(base_url="https://api.planhat.com", secrets=("ph",))
    return pipedrive, planhat


def _account() -> Account:
    return Account(
        pipelines=[{"id": 1, "name": "Sales"}],
        deal_fields=[],
        organization_fields=[],
        person_fields=[],
        pipedrive_users=[],
        planhat_users=[],
    )


def test_an_account_handed_over_is_taken_once_by_the_same_accounts_only() -> None:
    account = _account()
    hand_over(*_clients(), account)
    assert taken_over(*_clients("another-token")) is None  # another token: not this account
    assert taken_over(*_clients()) is account
    assert taken_over(*_clients()) is None  # once: the next run reads it fresh


def test_an_account_handed_over_too_long_ago_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(tasks.account.time, "monotonic", lambda: now[0])
    hand_over(*_clients(), _account())
    now[0] += tasks.account.HANDOVER_S + 1
    assert taken_over(*_clients()) is None
