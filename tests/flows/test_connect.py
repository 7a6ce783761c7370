"""The connect flow and the incremental sync's webhook check, against the sandbox Pipedrive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pipeline_support import pipedrive, write_settings

from clients import AuthError
from flows.connect import connect
from flows.incremental_sync import incremental_sync
from sandbox.runner import Sandbox
from store import StateStore

pytestmark = pytest.mark.usefixtures("prefect_harness")

RECEIVER = "https://sync.example.com/webhooks/pipedrive"


@pytest.fixture()
def sb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox("small", burst=1_000_000) as sandbox:
        monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", sandbox.pipedrive_token)
        monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", sandbox.planhat_token)
        monkeypatch.setenv("SANDBOX_WEBHOOK_PASSWORD", "s3cret-receiver-password")
        yield sandbox


def _settings(sb: Sandbox, tmp_path: Path) -> Path:
    directory = write_settings(tmp_path / "settings", sb, pipelines=["New business"])
    text = (directory / "integration.yaml").read_text()
    (directory / "integration.yaml").write_text(
        text.replace("public_url: null", f"public_url: {RECEIVER}")
    )
    return directory


def _webhooks(sb: Sandbox) -> list[dict]:
    with pipedrive(sb) as pd:
        return pd.get("/api/v1/webhooks").json()["data"]


def test_connect_creates_one_webhook_and_stores_only_a_fingerprint(
    sb: Sandbox, tmp_path: Path
) -> None:
    settings = _settings(sb, tmp_path)
    first = connect(settings_dir=str(settings))
    assert first["verified"] is True and first["webhook"] == "created"
    hooks = _webhooks(sb)
    assert len(hooks) == 1
    hook = hooks[0]
    assert (hook["subscription_url"], hook["event_object"], hook["version"]) == (
        RECEIVER,
        "deal",
        "2.0",
    )
    assert hook["http_auth_user"] == "pdsync"
    # connecting again changes nothing: same webhook, the token not tested again
    sb.pipedrive.counters.reset()
    again = connect(settings_dir=str(settings))
    assert again["webhook"] == "kept" and again["webhook_id"] == first["webhook_id"]
    assert sb.pipedrive.counters.get("GET /api/v1/users/me") == 0
    assert len(_webhooks(sb)) == 1
    db = tmp_path / "settings" / "state.db"
    assert sb.pipedrive_token.encode() not in db.read_bytes()
    stored = StateStore(f"sqlite:///{db}").get_connection()
    assert stored is not None and stored.webhook_id == first["webhook_id"]


def test_a_wrong_token_fails_with_what_to_do_and_stores_nothing(
    sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(sb, tmp_path)
    monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", "0" * 40)
    with pytest.raises(AuthError, match="Settings → API"):
        connect(settings_dir=str(settings))
    assert sb.pipedrive.counters.get("GET /api/v1/users/me") == 1  # no retry of an auth error
    assert _webhooks(sb) == []
    assert StateStore(f"sqlite:///{tmp_path / 'settings' / 'state.db'}").get_connection() is None


def test_incremental_sync_recreates_a_deleted_webhook(sb: Sandbox, tmp_path: Path) -> None:
    settings = _settings(sb, tmp_path)
    first = connect(settings_dir=str(settings))
    with pipedrive(sb) as pd:
        pd.delete(f"/api/v1/webhooks/{first['webhook_id']}").raise_for_status()
    assert _webhooks(sb) == []
    incremental_sync(settings_dir=str(settings))
    hooks = _webhooks(sb)
    assert len(hooks) == 1 and hooks[0]["subscription_url"] == RECEIVER
