"""A storm of deal notifications, end to end (sandbox Pipedrive's real webhooks → receiver →
Prefect events → trigger → warm deal-sync runs → sandbox Planhat), against real Prefect
servers: every license ends equal to the deal's final state in Pipedrive, in far fewer runs
than notifications, nothing lost, nothing twice. Then the same with the state store and
Prefect's database on PostgreSQL, the receiver in one process and the flows in two others.

The timeouts only catch hangs (the bench, bench/notifications.py, measures the speed)."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prefect_support import deal_sync_runs

from deployments.demo import write_demo_settings
from deployments.prefect_server import LocalPrefectServer, group_members, stop_process_group
from deployments.sandbox_settings import SANDBOX_DIR
from mappings.loading import load_settings
from sandbox.runner import Sandbox
from store import StateStore
from store.testing import PostgresUnavailable, TemporaryPostgres
from tasks.account import open_pipedrive
from tasks.connect import ensure_webhook

pytestmark = pytest.mark.slow

PASSWORD = "storm-receiver-password"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "deployments.cli", *args]
    with open(log, "ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield process
    finally:
        pgid = process.pid
        stop_process_group(process, timeout_s=30)
        assert group_members(pgid) == []


def _wait(what: str, check: Callable[[], Any], timeout_s: float, *logs: Path) -> Any:
    deadline = time.monotonic() + timeout_s  # only catches hangs: not a timing assertion
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in logs if p.exists())
    raise AssertionError(f"{what} within {timeout_s:.0f} s\n{tails}")


def _healthy(port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    return False


def _storm(sb: Sandbox, deals: list[dict[str, Any]], rounds: int, seed: int) -> dict[int, float]:
    """Change each deal's value `rounds` times, shuffled, through the Pipedrive API (each a
    real webhook), and redeliver a fifth of the events, some while the changes go on
    (Pipedrive's at-least-once delivery). Returns each deal's final value."""
    rng = random.Random(seed)
    changes = [(d, r) for d in deals for r in range(rounds)]
    rng.shuffle(changes)
    final: dict[int, float] = {}
    redelivered = 0
    with httpx.Client(
        base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}, timeout=30
    ) as pd:
        for n, (deal, _round) in enumerate(changes):
            value = float(10_000 + 100 * deal["id"] + n)
            pd.patch(f"/api/v2/deals/{deal['id']}", json={"value": value}).raise_for_status()
            final[deal["id"]] = value
            if n % 5 == 4:  # a duplicate of an earlier delivery, in between the changes
                delivered = [e["event_id"] for e in sb.pipedrive.deliveries() if e.get("ok")]
                if delivered and sb.pipedrive.redeliver(rng.choice(delivered)) is not None:
                    redelivered += 1
    sb.pipedrive.wait_for_deliveries(len(changes), timeout=120)
    delivered = sorted({e["event_id"] for e in sb.pipedrive.deliveries() if e.get("ok")})
    for event_id in rng.sample(delivered, max(0, len(changes) // 5 - redelivered)):
        sb.pipedrive.redeliver(event_id)  # the rest after (a loaded machine delivers late)
    return final


def _licenses_match(sb: Sandbox, final: dict[int, float]) -> bool:
    values = {str(r.get("sourceId")): r.get("value") for r in sb.planhat.records("licenses")}
    return all(values.get(str(d)) == v for d, v in final.items())


def _won_deals(sb: Sandbox, settings_dir: Path, n: int) -> list[dict[str, Any]]:
    selected = set(load_settings(settings_dir).integration.deals.pipelines)
    pipelines = {p["id"] for p in sb.pipedrive_seed.pipelines if p["name"] in selected}
    deals = [
        d
        for d in sb.pipedrive_seed.deals
        if d["status"] == "won" and d["pipeline_id"] in pipelines and d["org_id"]
    ]
    assert len(deals) >= n, f"the data set has {len(deals)} won deals in selected pipelines"
    return deals[:n]


def _check_outcome(
    sb: Sandbox, store_url: str, final: dict[int, float], api_url: str, *logs: Path
) -> None:
    deliveries = [e for e in sb.pipedrive.deliveries() if e.get("ok")]
    events = {e["event_id"] for e in deliveries}
    with StateStore(store_url) as store:
        # nothing lost: one inbox item per Pipedrive event, however often it was delivered
        counts = _wait(
            "the inbox did not settle",
            lambda: (c := store.inbox_counts())["pending"] + c["processing"] == 0 and c,
            300,
            *logs,
        )
    assert counts["failed"] == 0
    assert counts["done"] == len(events)
    assert len(deliveries) > len(events)  # there were duplicates
    runs = _wait(
        "deal-sync runs still running",
        lambda: (
            (r := deal_sync_runs(api_url))
            and all(x["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for x in r)
            and r
        ),
        300,
        *logs,
    )
    assert all(r["state_type"] == "COMPLETED" for r in runs), Counter(r["state_type"] for r in runs)
    assert len(runs) < len(events) / 2, (len(runs), len(events))  # coalesced
    print(f"{len(events)} notifications ({len(deliveries)} deliveries) → {len(runs)} runs")
    # no duplicate record in Planhat
    for model in ("licenses", "companies", "endusers"):
        sources = Counter(str(r.get("sourceId")) for r in sb.planhat.records(model))
        assert not [s for s, n in sources.items() if n > 1], model


def _settings(tmp_path: Path, sb: Sandbox, port: int) -> Path:
    url = f"http://127.0.0.1:{port}/webhooks/pipedrive"
    directory = write_demo_settings(
        SANDBOX_DIR,
        tmp_path / "settings",
        pipedrive_url=sb.pipedrive_url,
        planhat_url=sb.planhat_url,
        receiver_url=url,
    )
    with open_pipedrive(load_settings(directory)) as client:  # the connect flow's step
        ensure_webhook(client, url, "pdsync", PASSWORD)
    return directory


@contextlib.contextmanager
def _world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, prefect_env: dict[str, str] | None = None
) -> Iterator[tuple[LocalPrefectServer, Sandbox, Path, int]]:
    """A Prefect server of its own, the `small` sandbox (no binding rate limit), settings
    pointed at both and at a receiver port, and the webhook registered: (server, sandbox,
    settings directory, receiver port)."""
    monkeypatch.setenv("SANDBOX_WEBHOOK_PASSWORD", PASSWORD)
    server = LocalPrefectServer(tmp_path / "prefect-home", port=0, env=prefect_env).start()
    try:
        with Sandbox("small", burst=1_000_000) as sb:
            monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", sb.pipedrive_token)
            monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", sb.planhat_token)
            port = _free_port()
            yield server, sb, _settings(tmp_path, sb, port), port
    finally:
        server.stop()


def _env(sb: Sandbox, api_url: str, **more: str) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PYTHONUNBUFFERED": "1",
        "SANDBOX_WEBHOOK_PASSWORD": PASSWORD,
        "SANDBOX_PIPEDRIVE_TOKEN": sb.pipedrive_token,
        "SANDBOX_PLANHAT_TOKEN": sb.planhat_token,
        **more,
    }


@pytest.mark.timeout(900)
def test_a_storm_of_notifications_lands_in_few_runs_at_pipedrives_final_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _world(tmp_path, monkeypatch) as (server, sb, directory, port):
        deals = _won_deals(sb, directory, 15)
        log = tmp_path / "serve.log"
        args = ["serve", "--settings", str(directory), "--port", str(port)]
        with _process(args, _env(sb, server.api_url), log):
            _wait("serve not ready", lambda: _healthy(port), 180, log)
            final = _storm(sb, deals, rounds=3, seed=13)
            _wait(
                "licenses not at Pipedrive's final state",
                lambda: _licenses_match(sb, final),
                300,
                log,
            )
            _check_outcome(sb, load_settings(directory).store_url, final, server.api_url, log)


@pytest.fixture(scope="module")
def postgres() -> Iterator[TemporaryPostgres]:
    try:
        server = TemporaryPostgres().start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(1200)
def test_two_workers_on_postgresql_share_a_storm_and_never_write_a_record_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres: TemporaryPostgres
) -> None:
    store_url = postgres.create_database("storm_store")
    prefect_db = postgres.create_database("storm_prefect").replace(
        "postgresql+psycopg://", "postgresql+asyncpg://"
    )
    with _world(
        tmp_path, monkeypatch, prefect_env={"PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_db}
    ) as (server, sb, directory, port):
        monkeypatch.setenv("PDSYNC_DATABASE_URL", store_url)
        deals = _won_deals(sb, directory, 15)
        env = _env(sb, server.api_url, PDSYNC_DATABASE_URL=store_url)
        logs = [tmp_path / f"{name}.log" for name in ("receiver", "worker-1", "worker-2")]
        common = ["--settings", str(directory), "--port", str(port)]
        with contextlib.ExitStack() as stack:
            stack.enter_context(_process(["serve", "--receiver-only", *common], env, logs[0]))
            for log in logs[1:]:
                stack.enter_context(_process(["serve", "--worker-only", *common], env, log))
            _wait("the receiver not ready", lambda: _healthy(port), 180, *logs)
            _wait(
                "the workers not ready",
                lambda: all("ready" in p.read_text() for p in logs[1:] if p.exists()),
                180,
                *logs,
            )
            final = _storm(sb, deals, rounds=3, seed=29)
            _wait(
                "licenses not at Pipedrive's final state",
                lambda: _licenses_match(sb, final),
                600,
                *logs,
            )
            _check_outcome(sb, store_url, final, server.api_url, *logs)
            ran = [p.read_text().count("deal-sync run '") for p in logs[1:]]
            assert sum(ran) >= 1, ran  # the workers' own lines: which one ran what
    # Prefect's own records are on PostgreSQL too
    engine = sa.create_engine(prefect_db.replace("+asyncpg", "+psycopg"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM flow_run")).scalar()
    finally:
        engine.dispose()


@pytest.mark.timeout(600)
def test_pdsync_worker_runs_the_deal_sync_runs_of_a_deployment_warm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployments.definitions import build_deployments
    from deployments.prefect_server import prefect_settings

    with _world(tmp_path, monkeypatch) as (server, sb, directory, port):
        (deal,) = _won_deals(sb, directory, 1)
        with prefect_settings(server.api_url):  # as `prefect deploy` would make it
            built = {d.name: d for d in build_deployments(load_settings(directory), None)}
            deployment_id = built["deal-sync"].apply()
            built["planhat-sync"].apply()
            built["incremental-sync"].apply()
        log = tmp_path / "worker.log"
        args = ["worker", "--settings", str(directory), "--concurrency", "2"]
        with (
            _process(args, _env(sb, server.api_url), log),
            httpx.Client(base_url=server.api_url, timeout=30) as api,
        ):
            _wait("the worker not ready", lambda: "Ctrl-C stops" in log.read_text(), 180, log)
            assert "planhat-sync/planhat-sync warm" in log.read_text()

            def created() -> dict[str, Any] | None:  # a busy SQLite Prefect answers 503
                answer = api.post(
                    f"/deployments/{deployment_id}/create_flow_run",
                    json={"parameters": {"deal_id": deal["id"]}},
                )
                return answer.json() if answer.is_success else None

            run = _wait("the run was not created", created, 120, log)
            state = _wait(
                "the run did not finish",
                lambda: (
                    (s := api.get(f"/flow_runs/{run['id']}").json()["state_type"])
                    in ("COMPLETED", "FAILED", "CRASHED")
                    and s
                ),
                300,
                log,
            )
            assert state == "COMPLETED", log.read_text()
            assert f"deal-sync run '{run['name']}' started (warm)" in log.read_text()
            assert any(
                str(r.get("sourceId")) == str(deal["id"]) for r in sb.planhat.records("licenses")
            )
        other = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-m", "deployments.cli", "worker", "--settings", str(directory),
             "--deployment", "incremental-sync/incremental-sync"],
            env=_env(sb, server.api_url),
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
        assert other.returncode == 1, other
        assert "runs deal-sync deployments only" in other.stderr


def test_pdsync_worker_without_a_prefect_api_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-m", "deployments.cli", "worker", "--settings", str(SANDBOX_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done
    assert "PREFECT_API_URL is not set" in done.stderr


@pytest.mark.timeout(600)
def test_a_warm_run_whose_process_died_is_marked_crashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    from deployments.warm import CRASH_DETECTOR

    with _world(tmp_path, monkeypatch) as (server, sb, directory, port):
        (deal,) = _won_deals(sb, directory, 1)
        log = tmp_path / "serve.log"
        args = ["serve", "--settings", str(directory), "--port", str(port)]
        with (
            _process(args, _env(sb, server.api_url), log) as process,
            httpx.Client(base_url=server.api_url, timeout=30) as api,
            httpx.Client(
                base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}
            ) as pd,
        ):
            _wait("serve not ready", lambda: _healthy(port), 180, log)
            found = api.post("/automations/filter", json={}).json()
            assert [a["name"] for a in found].count(CRASH_DETECTOR) == 1
            # the run will hang in its first Pipedrive read: killed meanwhile
            pd.post("/_sandbox/faults", json={"route": "/api/v2/deals", "latency_ms": 60_000})
            pd.patch(f"/api/v2/deals/{deal['id']}", json={"value": 4242}).raise_for_status()

            def running() -> dict[str, Any] | None:
                runs = deal_sync_runs(server.api_url)
                return next((r for r in runs if r["state_type"] == "RUNNING"), None)

            run = _wait("no deal-sync run started", running, 180, log)
            os.killpg(process.pid, signal.SIGKILL)  # the machine lost, say
            process.wait(30)
            state = _wait(
                "the dead run was not marked crashed",
                lambda: (
                    (s := api.get(f"/flow_runs/{run['id']}").json()["state"])["type"] == "CRASHED"
                    and s
                ),
                400,
                log,
            )
            assert "heartbeat" in state["message"]
