"""The `pdsync` command line: help that teaches, exit status and messages fit for scripts, and
each command against an in-process sandbox (flows in this process, on the test Prefect API)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deployments.cli import app
from deployments.commands.local import sandbox_args_from_settings
from deployments.demo import write_demo_settings
from deployments.sandbox_settings import SANDBOX_DIR
from sandbox.runner import Sandbox

COMMANDS = ("check", "connect", "sync", "resync", "serve", "sandbox", "demo")
RECEIVER = "https://sync.example.com/webhooks/pipedrive"


@pytest.fixture(autouse=True)
def _cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI sets these with setdefault; pin them so every test leaves the environment as found
    monkeypatch.setenv("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.delenv("PDSYNC_SETTINGS_DIR", raising=False)


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def sb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    with Sandbox("small", burst=1_000_000) as sandbox:
        monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", sandbox.pipedrive_token)
        monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", sandbox.planhat_token)
        monkeypatch.setenv("SANDBOX_WEBHOOK_PASSWORD", "s3cret-receiver-password")
        yield sandbox


@pytest.fixture()
def settings(sb: Sandbox, tmp_path: Path) -> Path:
    return write_demo_settings(
        SANDBOX_DIR,
        tmp_path / "settings",
        pipedrive_url=sb.pipedrive_url,
        planhat_url=sb.planhat_url,
        receiver_url=RECEIVER,
    )


def _break(settings: Path, old: str, new: str) -> None:
    path = settings / "integration.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# -- help and usage ----------------------------------------------------------------------------


def test_help_lists_every_command_and_where_to_start() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out
    assert "pdsync demo" in out and "--settings" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_has_examples_and_the_settings_option(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0
    assert "Examples" in out and f"pdsync {command}" in out
    assert "--settings" in out
    assert "[bold]" not in out and "[/" not in out and "**" not in out


def test_help_shows_no_literal_markup() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert "[bold]" not in out and "[/bold]" not in out and "**" not in out
    assert "Start with pdsync demo" in " ".join(out.split())


def test_no_command_shows_help_and_an_unknown_option_is_a_usage_error() -> None:
    code, out, _ = run()
    assert code == 2 and "Usage" in out
    code, _, err = run("sync", "--bogus")
    assert code == 2 and "--bogus" in err


def test_a_settings_directory_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run("check", "--offline", "--settings", str(tmp_path / "nowhere"))
    assert code == 2
    assert "no such directory" in err


@pytest.mark.slow  # a process of its own
def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "pdsync"
    assert script.exists(), "pip install -e . installs the pdsync script"
    done = subprocess.run(  # noqa: S603 - the installed script
        [str(script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "resync" in done.stdout


# -- check -------------------------------------------------------------------------------------


def test_check_offline_accepts_the_shipped_sandbox_settings() -> None:
    code, out, _ = run("check", "--offline", "--settings", str(SANDBOX_DIR))
    assert code == 0 and "are valid" in out


def test_check_reports_located_settings_errors_with_exit_2(tmp_path: Path) -> None:
    directory = tmp_path / "bad"
    directory.mkdir()
    text = (SANDBOX_DIR / "integration.yaml").read_text()
    (directory / "integration.yaml").write_text(
        text.replace("  direction: both\n  sync_all", "  direction: recieve\n  sync_all", 1)
    )
    code, out, err = run("check", "--offline", "--settings", str(directory))
    assert code == 2 and out == ""
    assert "integration.yaml:" in err and "recieve" in err
    assert "Invalid settings (1 problem): nothing ran" in err


def test_check_against_the_accounts_describes_what_would_sync(sb: Sandbox, settings: Path) -> None:
    code, out, err = run("check", "--settings", str(settings))
    assert code == 0, err
    assert "Valid: the settings load and resolve against both accounts" in out
    assert "Would sync" in out and "won deals as licenses" in out
    # organizations go both ways in these settings, without Planhat's webhooks: said so
    assert "Planhat hook  none (connection.receiver.planhat_webhook is not set)" in out


def test_check_with_a_refused_token_exits_1_with_the_clients_message(
    sb: Sandbox, settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", "0" * 40)
    code, _, err = run("check", "--settings", str(settings))
    assert code == 1
    assert "pdsync:" in err and "token" in err.lower()
    assert "0" * 40 not in err


def test_check_with_an_unknown_pipeline_exits_2_located(sb: Sandbox, settings: Path) -> None:
    _break(settings, "- New business", "- New busyness")
    code, _, err = run("check", "--settings", str(settings))
    assert code == 2
    assert "integration.yaml:" in err and "New busyness" in err


# -- connect, sync, resync (flows in this process) ---------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_connect_creates_the_webhook_and_says_so(sb: Sandbox, settings: Path) -> None:
    code, out, err = run("connect", "--settings", str(settings))
    assert code == 0, err
    assert "token tested" in out and "Webhook    created" in out
    with httpx.Client(base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}) as pd:
        hooks = pd.get("/api/v1/webhooks").json()["data"]
    assert [h["subscription_url"] for h in hooks] == [RECEIVER]
    code, out, _ = run("connect", "--settings", str(settings), "--json")
    assert code == 0
    assert json.loads(out)["webhook"] == "kept"


@pytest.mark.usefixtures("prefect_harness")
def test_connect_with_a_wrong_token_exits_1_and_tells_what_to_do(
    sb: Sandbox, settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", "f" * 40)
    code, out, err = run("connect", "--settings", str(settings))
    assert code == 1 and out == ""
    assert "Settings → API" in err and "f" * 40 not in err


@pytest.mark.usefixtures("prefect_harness")
def test_connect_with_a_malformed_token_is_a_settings_error(
    sb: Sandbox, settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", "too-short")
    code, _, err = run("connect", "--settings", str(settings))
    assert code == 2
    assert "integration.yaml:" in err and "40" in err


@pytest.mark.usefixtures("prefect_harness")
def test_sync_full_shows_pages_and_a_summary_table_then_sync_finds_nothing_new(
    sb: Sandbox, settings: Path
) -> None:
    code, out, err = run("sync", "--full", "--settings", str(settings))  # 80 columns
    assert code == 0, err
    assert "Pipedrive deals" in out and "records" in out and "page" in out
    assert "…" not in out  # no header, number or time cut to fit
    headers = next(line for line in out.splitlines() if line.startswith("records "))
    assert headers.split() == [
        "records",
        "created",
        "updated",
        "unchanged",
        "skipped",
        "failed",
        "total",
    ]  # fmt: skip (conflict: only when a record was in conflict)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "Full backfill" in out and "deals → licenses" in out
    assert "Why records were skipped" in out and "not won" in out
    licenses = sb.planhat.records("licenses")
    assert licenses
    code, out, err = run("sync", "--settings", str(settings), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert "created" not in report["counts"].get("deal", {})
    assert len(sb.planhat.records("licenses")) == len(licenses)


def test_the_counts_table_fits_80_columns_and_shows_conflicts_only_when_there_are() -> None:
    from rich.console import Console

    from deployments.render import counts_table

    report = {"counts": {"organization": {"created": 12345, "failed": 2},
                         "person": {"updated": 7}, "deal": {"skipped": 3}}}  # fmt: skip
    console = Console(width=80, record=True)
    console.print(counts_table(report, "Full backfill"))
    text = console.export_text()
    assert "organizations → companies" in text and "…" not in text
    assert "conflict" not in text and "12345" in text
    report["counts"]["deal"]["conflict"] = 1
    console = Console(width=80, record=True)
    console.print(counts_table(report, "Full backfill"))
    text = console.export_text()
    header = next(line for line in text.splitlines() if line.startswith("records"))
    assert header.split()[1:] == [
        "created", "updated", "unchanged", "skipped", "conflict", "failed", "total"
    ]  # fmt: skip
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80


def _flow_run_count() -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(limit=200))


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("command", [("sync",), ("sync", "--full"), ("resync", "1")])
def test_a_settings_error_found_against_the_accounts_writes_nothing_anywhere(
    sb: Sandbox, settings: Path, command: tuple[str, ...]
) -> None:
    from mappings.loading import load_settings

    _break(settings, "- New business", "- New busyness")
    store = Path(load_settings(settings).store_url.removeprefix("sqlite:///"))
    runs = _flow_run_count()
    code, out, err = run(*command, "--settings", str(settings))
    assert code == 2, err
    assert "New busyness" in err and "nothing ran" in err
    assert _flow_run_count() == runs  # no flow run, not even a failed one
    assert not store.exists()  # no state store
    assert sb.planhat.records("licenses") == [] and sb.planhat.records("companies") == []


def test_the_cli_gives_prefect_time_to_start_and_no_telemetry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.settings import Settings

    from deployments.commands.common import EPHEMERAL_STARTUP_TIMEOUT_S, prefect_environment

    keys = ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "DO_NOT_TRACK",
            "PREFECT_SERVER_ANALYTICS_ENABLED", "PDSYNC_VERBOSE")  # fmt: skip
    for key in keys:  # set, then removed: monkeypatch puts back whatever was there
        monkeypatch.setenv(key, "x")
        monkeypatch.delenv(key)
    assert Settings().server.ephemeral.startup_timeout_seconds == 20  # Prefect's default
    prefect_environment()
    settings = Settings()
    assert settings.server.ephemeral.startup_timeout_seconds == EPHEMERAL_STARTUP_TIMEOUT_S >= 120
    assert settings.server.analytics_enabled is False
    from prefect._internal.analytics.enabled import is_telemetry_enabled

    assert is_telemetry_enabled() is False
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    prefect_environment()
    assert Settings().server.ephemeral.startup_timeout_seconds == 300  # the user's value wins


@pytest.mark.slow
def test_connect_with_a_fresh_prefect_home_and_no_api_url_starts_prefect_quietly(
    sb: Sandbox, settings: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DO_NOT_TRACK"))}
    env.update(PREFECT_HOME=str(tmp_path / "fresh-prefect-home"), PYTHONUNBUFFERED="1")
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "deployments.cli", "connect", "--settings", str(settings)],
        capture_output=True, text=True, env=env, timeout=280,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Webhook    created" in done.stdout
    assert "telemetry" not in done.stderr.lower() and "Traceback" not in done.stderr
    assert (tmp_path / "fresh-prefect-home" / "prefect.db").exists()  # the temporary API ran


@pytest.mark.usefixtures("prefect_harness")
def test_resync_one_organization_and_an_unknown_one(sb: Sandbox, settings: Path) -> None:
    won = next(d for d in sb.pipedrive_seed.deals if d["status"] == "won" and d["org_id"])
    code, out, err = run("resync", str(won["org_id"]), "--settings", str(settings))
    assert code == 0, err
    assert f"Company resync: {won['org_id']}" in out and "organizations → companies" in out
    assert any(
        str(c.get("sourceId")) == str(won["org_id"]) for c in sb.planhat.records("companies")
    )
    code, out, err = run("resync", "987654", "--settings", str(settings))
    assert code == 1
    assert "Pipedrive has no organization 987654" in err


def test_serve_with_a_missing_password_or_token_exits_2_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_demo_settings(
        SANDBOX_DIR,
        tmp_path / "s",
        pipedrive_url="http://127.0.0.1:8711",
        planhat_url="http://127.0.0.1:8712",
        receiver_url=RECEIVER,
    )
    monkeypatch.delenv("SANDBOX_WEBHOOK_PASSWORD", raising=False)
    code, _, err = run("serve", "--settings", str(directory))
    assert code == 2 and "SANDBOX_WEBHOOK_PASSWORD is not set" in err
    monkeypatch.setenv("SANDBOX_WEBHOOK_PASSWORD", "pw")
    monkeypatch.delenv("SANDBOX_PIPEDRIVE_TOKEN", raising=False)
    code, _, err = run("serve", "--settings", str(directory))
    assert code == 2 and "SANDBOX_PIPEDRIVE_TOKEN is not set" in err
    assert not (directory / "state.db").exists()


# -- sandbox -----------------------------------------------------------------------------------


def test_sandbox_ports_and_tokens_come_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", "a" * 40)
    monkeypatch.delenv("SANDBOX_PLANHAT_TOKEN", raising=False)
    args = sandbox_args_from_settings(str(SANDBOX_DIR), ["--dataset", "small"])
    assert args == [
        "--pipedrive-port", "8711", "--planhat-port", "8712",
        "--pipedrive-token", "a" * 40, "--dataset", "small",
    ]  # fmt: skip
    given = sandbox_args_from_settings(
        str(SANDBOX_DIR), ["--pipedrive-port", "0", "--pipedrive-token=x"]
    )
    assert given == ["--planhat-port", "8712", "--pipedrive-port", "0", "--pipedrive-token=x"]


@pytest.mark.slow  # a process of its own
def test_sandbox_passes_its_flags_through_and_stops_on_sigint() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "sandbox", "--dataset", "small",
         "--pipedrive-port", "0", "--planhat-port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["dataset"] == "small"
        answer = httpx.get(
            f"{info['pipedrive_url']}/api/v2/deals",
            headers={"x-api-token": info["pipedrive_token"]},
            params={"limit": 1},
        )
        assert answer.status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sandbox_usage_errors_keep_the_sandbox_exit_status() -> None:
    code, _, _ = run("sandbox", "--dataset", "huge")
    assert code == 2


def test_check_describes_the_planhat_webhook_by_its_secrets_source_never_its_value(
    tmp_path: Path,
) -> None:
    from deployments.render import describe
    from deployments.sandbox_settings import account_from_seed
    from mappings.loading import load_settings
    from mappings.resolve import compile_mappings
    from sandbox.data import generate

    directory = write_demo_settings(
        SANDBOX_DIR,
        tmp_path / "s",
        pipedrive_url="http://127.0.0.1:1111",
        planhat_url="http://127.0.0.1:2222",
        receiver_url="http://127.0.0.1:3333/webhooks/pipedrive",
        planhat_secret_env="MY_PLANHAT_SECRET",
    )
    pd, ph = generate("small", 7)
    text = describe(compile_mappings(load_settings(directory), account_from_seed(pd, ph.users)))
    assert (
        "Planhat hook  POST /webhooks/planhat (header X-Pdsync-Secret: $MY_PLANHAT_SECRET)" in text
    )
