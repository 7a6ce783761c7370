"""`pdsync demo` (the README's main command): the demo itself runs here, end to end, and leaves
no process behind; its settings and its choice of deals are checked on their own too."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from deployments.demo import _selected_pipelines, plan_changes, write_demo_settings
from deployments.sandbox_settings import SANDBOX_DIR
from mappings.loading import load_settings
from sandbox.runner import Sandbox


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (every child inherits it)."""
    found = []
    needle = marker.encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def test_the_demo_settings_point_at_the_sandbox_the_receiver_and_a_fresh_store(
    tmp_path: Path,
) -> None:
    directory = write_demo_settings(
        SANDBOX_DIR,
        tmp_path / "s",
        pipedrive_url="http://127.0.0.1:1111",
        planhat_url="http://127.0.0.1:2222",
        receiver_url="http://127.0.0.1:3333/webhooks/pipedrive",
    )
    settings = load_settings(directory)
    conn = settings.integration.connection
    assert conn.pipedrive.company_url == "http://127.0.0.1:1111"
    assert conn.planhat.base_url == "http://127.0.0.1:2222"
    assert conn.receiver.public_url == "http://127.0.0.1:3333/webhooks/pipedrive"
    assert conn.receiver.basic_auth.password_env == "SANDBOX_WEBHOOK_PASSWORD"
    assert settings.store_url == f"sqlite:///{directory / 'state.db'}"
    assert (directory / "custom_matches.yaml").exists()
    assert settings.integration.deals.pipelines == ["New business", "Renewals & upsell"]


def test_the_demo_picks_four_different_deals_one_per_case() -> None:
    with Sandbox("demo") as sb:
        pipelines = [dict(p) for p in sb.pipedrive_seed.pipelines]
        selected = _selected_pipelines(["New business", "Renewals & upsell"], pipelines)
        assert len(selected) == 2
        licensed = {
            d["id"]
            for d in sb.pipedrive_seed.deals
            if d["status"] == "won" and d["pipeline_id"] in selected and d["org_id"]
        }
        with httpx.Client(
            base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}
        ) as pd:
            changes = plan_changes(pd, selected, licensed)
    assert [c.expect for c in changes] == ["license", "skipped", "kept", "null"]
    assert len({c.deal["id"] for c in changes}) == 4
    won, other, lost, null = changes
    assert won.deal["status"] == "open" and won.deal["pipeline_id"] in selected
    assert other.deal["status"] == "open" and other.deal["pipeline_id"] not in selected
    assert lost.deal["id"] in licensed and lost.body["status"] == "lost"
    assert null.deal["id"] in licensed and list(null.body["custom_fields"].values()) == [None]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_pdsync_demo_runs_end_to_end_and_leaves_no_process_behind(tmp_path: Path) -> None:
    marker = f"PDSYNC_DEMO_TEST_MARKER={uuid.uuid4()}"
    # wide enough that no table cell wraps (the assertions read whole phrases)
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1], "COLUMNS": "400"}
    env["TMPDIR"] = str(tmp_path)  # the demo's own files, if it keeps them
    for name in ("PREFECT_API_URL", "PDSYNC_SETTINGS_DIR", "PREFECT_HOME"):
        env.pop(name, None)
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "deployments.cli", "demo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=400,
    )
    took = time.monotonic() - started
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr}"
    # the table: the won deal landed, the three others skipped or updated, each with why
    for phrase in (
        "license created",
        "which is not selected",
        "nothing written",
        "license kept",
        "its license is kept",
        "Contract tier = null",
        "null is synced",
        "Prefect UI: http://127.0.0.1:",
        "after the edit in Planhat (a planhat-sync run wrote that one field)",
        "Demo complete",
    ):
        assert phrase in out, f"{phrase!r} missing from the demo's output:\n{out}"
    assert out.count("Completed (run created") == 4, out  # four runs, each from its webhook
    # nothing left running: the serve process, its flow runs, the Prefect server
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(marker) == []
    print(f"pdsync demo took {took:.0f} s")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_demo_stopped_midway_by_sigterm_stops_what_it_started(tmp_path: Path) -> None:
    marker = f"PDSYNC_DEMO_TEST_MARKER={uuid.uuid4()}"
    env = {**os.environ, marker.split("=")[0]: marker.split("=")[1], "PYTHONUNBUFFERED": "1"}
    env["TMPDIR"] = str(tmp_path)  # an interrupted demo keeps its files: here
    for name in ("PREFECT_API_URL", "PDSYNC_SETTINGS_DIR", "PREFECT_HOME"):
        env.pop(name, None)
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "deployments.cli", "demo", "--keep-running"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + 300
        while "Serving: receiver" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert len(processes_with(marker)) >= 3  # the demo, the Prefect server, pdsync serve
        process.terminate()
        assert process.wait(120) == 130, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(marker) == [], log.read_text()
    assert "interrupted" in log.read_text()
    assert list(tmp_path.glob("pdsync-demo-*/settings/integration.yaml"))  # kept, and said where
