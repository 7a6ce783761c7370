"""One-machine mode and prefect.yaml: the deployments, their trigger and schedule, and the whole
webhook path end to end (sandbox Pipedrive → receiver → Prefect event → trigger → deal-sync
run → license in the sandbox Planhat) against a real local Prefect server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect_support import deal_sync_runs

import deployments.receiver
from deployments.definitions import (
    DEPLOYMENT_NAMES,
    PLANHAT_SYNC_CONCURRENCY,
    build_deployments,
    deal_trigger,
    planhat_trigger,
)
from deployments.demo import write_demo_settings
from deployments.prefect_server import (
    LocalPrefectServer,
    ServeError,
    group_members,
    stop_process_group,
)
from deployments.sandbox_settings import SANDBOX_DIR
from deployments.serve import InboxDrainer, receiver_address, run_serve
from mappings.loading import load_settings
from sandbox.runner import Sandbox
from store import StateStore
from tasks.account import open_pipedrive
from tasks.connect import ensure_webhook

REPO = Path(__file__).resolve().parents[2]
SANDBOX_SETTINGS = SANDBOX_DIR


def _settings(tmp_path: Path, receiver_url: str, **urls: str) -> Path:
    return write_demo_settings(
        SANDBOX_SETTINGS,
        tmp_path / "settings",
        pipedrive_url=urls.get("pipedrive", "http://127.0.0.1:8711"),
        planhat_url=urls.get("planhat", "http://127.0.0.1:8712"),
        receiver_url=receiver_url,
    )


# -- the deployments (no server needed) --------------------------------------------------------


def test_serve_builds_the_four_deployments_with_trigger_schedule_and_limits(
    tmp_path: Path,
) -> None:
    directory = _settings(tmp_path, "http://127.0.0.1:8713/webhooks/pipedrive")
    text = (directory / "integration.yaml").read_text()
    (directory / "integration.yaml").write_text(
        text.replace("timezone: UTC", "timezone: Europe/Berlin")
    )
    settings = load_settings(directory)
    built = {d.name: d for d in build_deployments(settings, str(directory), deal_concurrency=3)}
    assert {f"{d.flow_name}/{d.name}" for d in built.values()} == set(DEPLOYMENT_NAMES)

    deal = built["deal-sync"]
    (trigger,) = deal.triggers
    assert trigger.expect == {"pipedrive.deal.*"}
    assert trigger.match.model_dump() == {
        "prefect.resource.id": "pipedrive.deal.*",
        "pdsync.starts-run": "yes",
    }
    assert trigger.posture == "Reactive" and trigger.threshold == 1
    assert trigger.parameters == {
        "deal_id": "{{ event.payload.deal_id }}",
        "inbox_key": "{{ event.payload.inbox_key }}",
    }
    assert deal.concurrency_limit == 3
    assert deal.concurrency_options.collision_strategy == "ENQUEUE"
    assert deal.parameters == {"settings_dir": str(directory)}
    assert deal.entrypoint == "flows.deal_sync.deal_sync"  # importable from any directory

    inc = built["incremental-sync"]
    (schedule,) = inc.schedules
    assert schedule.schedule.cron == settings.integration.incremental.cron
    assert schedule.schedule.timezone == "Europe/Berlin"
    assert inc.concurrency_limit == 1
    assert inc.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert inc.parameters == {"full": False, "settings_dir": str(directory)}

    resync = built["company-resync"]
    schema = resync._parameter_openapi_schema.model_dump()
    assert schema["required"] == ["company"]  # the UI's Run form asks for the company
    assert schema["properties"]["company"]["type"] == "string"
    assert schema["properties"]["company"]["title"] == "Company"
    assert "Pipedrive organization id" in schema["properties"]["company"]["description"]
    assert not built["connect"].triggers and not built["connect"].schedules


def test_prefect_yaml_loads_with_prefects_own_loader_and_matches_serve() -> None:
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    raw = yaml.safe_load((REPO / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(raw)  # raises on any invalid key or value
    configs = {d.name: d.model_dump(exclude_unset=True, mode="json") for d in model.deployments}
    assert set(configs) == {name.split("/")[0] for name in DEPLOYMENT_NAMES}
    for name, config in configs.items():
        assert config["work_pool"]["name"] == "pdsync"
        path, func = config["entrypoint"].split(":")
        assert (REPO / path).is_file()
        module = __import__(path[:-3].replace("/", "."), fromlist=[func])
        assert getattr(module, func).name == name  # the flow's own name

    (trigger,) = _initialize_deployment_triggers("deal-sync", configs["deal-sync"]["triggers"])
    served = deal_trigger()
    assert trigger.expect == served.expect and trigger.match == served.match
    assert trigger.parameters == served.parameters
    (trigger,) = _initialize_deployment_triggers(
        "planhat-sync", configs["planhat-sync"]["triggers"]
    )
    served = planhat_trigger()
    assert trigger.expect == served.expect and trigger.match == served.match
    assert trigger.parameters == served.parameters
    assert configs["planhat-sync"]["concurrency_limit"]["limit"] == PLANHAT_SYNC_CONCURRENCY
    assert configs["deal-sync"]["concurrency_limit"] == {
        "limit": 4,
        "collision_strategy": "ENQUEUE",
    }
    inc = configs["incremental-sync"]
    shipped = load_settings(REPO / "mappings").integration.incremental
    assert inc["schedules"][0]["cron"] == shipped.cron  # in step with integration.yaml
    assert inc["schedules"][0]["timezone"] == shipped.timezone
    assert inc["concurrency_limit"]["limit"] == 1


@pytest.mark.parametrize("loader", ["flow", "source"])
def test_every_parameter_has_a_title_and_a_description_in_the_run_form(loader: str) -> None:
    """What the Prefect UI's Run form shows, built the ways Prefect builds it: from the flow
    (prefect deploy, pdsync serve) or from the entrypoint's source."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema, parameter_schema_from_entrypoint

    raw = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for config in raw["deployments"]:
        entrypoint = str(REPO / config["entrypoint"])
        if loader == "flow":
            schema = parameter_schema(load_flow_from_entrypoint(entrypoint))
        else:
            schema = parameter_schema_from_entrypoint(entrypoint)
        form = schema.model_dump_for_openapi()
        props = form["properties"]
        for name, prop in props.items():
            assert prop["title"] != name and len(prop.get("description") or "") > 20, (name, prop)
        last = max(props, key=lambda n: props[n]["position"])
        assert last == "settings_dir", config["name"]  # optional, at the end of the form
        assert "settings_dir" not in form.get("required", [])
        assert "PDSYNC_SETTINGS_DIR" in props["settings_dir"]["description"]
        if config["name"] == "company-resync":
            company = props["company"]
            assert form["required"] == ["company"] and company["type"] == "string"
            assert "Planhat company id" in company["description"]
            assert "Pipedrive organization id" in company["description"]


def test_the_receiver_listens_where_a_loopback_public_url_says_else_on_8713(
    tmp_path: Path,
) -> None:
    local = load_settings(_settings(tmp_path / "a", "http://127.0.0.1:9123/webhooks/pipedrive"))
    public = load_settings(_settings(tmp_path / "b", "https://sync.example.com/webhooks/pipedrive"))
    assert receiver_address(local, None, None) == ("127.0.0.1", 9123)
    assert receiver_address(public, None, None) == ("127.0.0.1", 8713)
    assert receiver_address(public, "0.0.0.0", 9000) == ("0.0.0.0", 9000)  # noqa: S104


def test_serve_refuses_a_receiver_port_in_use_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_WEBHOOK_PASSWORD", "x")
    monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", "a" * 40)
    monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", "planhat-token")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        directory = _settings(tmp_path, f"http://127.0.0.1:{port}/webhooks/pipedrive")
        with pytest.raises(ServeError, match=f"127.0.0.1:{port}: the port is in use"):
            run_serve(str(directory), api_url="http://127.0.0.1:9/api", announce=lambda _: None)


def test_the_names_other_modules_import_from_serve_still_resolve() -> None:
    """`deployments.serve` was split (definitions, prefect_server): its old names remain."""
    import deployments.definitions as definitions
    import deployments.prefect_server as prefect_server
    import deployments.serve as serve

    moved = {
        definitions: ["DEAL_EVENTS", "DEAL_SYNC_CONCURRENCY", "DEPLOYMENT_NAMES",
                      "build_deployments", "deal_trigger"],
        prefect_server: ["LOCAL_PREFECT_HOME", "PREFECT_PORT", "LocalPrefectServer",
                         "ServeError", "free_port", "group_members", "port_in_use",
                         "prefect_api", "prefect_settings", "stop_process_group"],
    }  # fmt: skip
    for module, names in moved.items():
        for name in names:
            assert getattr(serve, name) is getattr(module, name), name
            assert name in serve.__all__, name
    assert all(hasattr(serve, name) for name in serve.__all__)


def test_the_inbox_drain_runs_at_start_and_then_periodically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    third = threading.Event()

    def fake_drain(store: StateStore, api_url: str, *, limit: int = 500) -> int:
        calls.append(api_url)
        if len(calls) >= 3:
            third.set()
        return 0

    monkeypatch.setattr(deployments.receiver, "drain_inbox", fake_drain)
    drainer = InboxDrainer(f"sqlite:///{tmp_path / 'state.db'}", "http://api", every_s=0.05)
    drainer.start()
    assert third.wait(60)  # the timeout only catches a hang
    drainer.stop()
    assert not drainer._thread.is_alive()  # stopped
    settled = len(calls)
    assert settled >= 3 and set(calls) == {"http://api"}
    drainer.stop()  # stopping twice is harmless
    assert len(calls) == settled


# -- end to end, against a real Prefect server -------------------------------------------------


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrefectServer]:
    server = LocalPrefectServer(tmp_path_factory.mktemp("prefect-home"), port=0).start()
    pgid = server.process.pid if server.process else None
    try:
        yield server
    finally:
        server.stop()
        assert pgid is not None and group_members(pgid) == []


@contextlib.contextmanager
def serving(settings_dir: Path, port: int, api_url: str, log: Path) -> Iterator[Any]:
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "deployments.cli", "serve",
               "--settings", str(settings_dir), "--port", str(port)]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            assert time.monotonic() < deadline, "serve not ready:\n" + log.read_text()
            time.sleep(0.2)
        yield process
    finally:
        stop_process_group(process, timeout_s=20)


def _wait(what: str, check: Any, timeout_s: float = 150.0, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout_s  # only catches hangs: not a timing assertion
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout_s:.0f} s\n" + (log.read_text() if log else ""))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_deal_won_in_pipedrive_becomes_a_license_through_webhook_event_and_trigger(
    prefect_server: LocalPrefectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "e2e-receiver-password"
    monkeypatch.setenv("SANDBOX_WEBHOOK_PASSWORD", password)
    with Sandbox("small", burst=1_000_000) as sb:
        monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", sb.pipedrive_token)
        monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", sb.planhat_token)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}/webhooks/pipedrive"
        directory = _settings(tmp_path, url, pipedrive=sb.pipedrive_url, planhat=sb.planhat_url)
        pd = httpx.Client(
            base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}, timeout=30
        )
        with open_pipedrive(load_settings(directory)) as client:  # the connect flow's step
            ensure_webhook(client, url, "pdsync", password)
        new_business = next(
            p["id"] for p in sb.pipedrive_seed.pipelines if p["name"] == "New business"
        )
        deal = next(
            d for d in sb.pipedrive_seed.deals
            if d["status"] == "open" and d["pipeline_id"] == new_business and d["org_id"]
        )  # fmt: skip
        log = tmp_path / "serve.log"
        with serving(directory, port, prefect_server.api_url, log) as process:
            pd.patch(f"/api/v2/deals/{deal['id']}", json={"status": "won"}).raise_for_status()

            def license_() -> dict[str, Any] | None:
                for record in sb.planhat.records("licenses"):
                    if str(record.get("sourceId")) == str(deal["id"]):
                        return record
                return None

            lic = _wait("no license for the won deal", license_, log=log)
            assert lic["product"] == deal["title"]
            company = next(
                c
                for c in sb.planhat.records("companies")
                if str(c["sourceId"]) == str(deal["org_id"])
            )
            assert lic["companyId"] == company["_id"]

            api = httpx.Client(base_url=prefect_server.api_url, timeout=10)
            run = _wait(
                "the deal-sync run did not complete",
                lambda: next(
                    (
                        r
                        for r in deal_sync_runs(prefect_server.api_url)
                        if r["parameters"].get("deal_id") == deal["id"]
                        and r["state_type"] == "COMPLETED"
                    ),
                    None,
                ),
                log=log,
            )
            assert run["parameters"]["deal_id"] == deal["id"]
            key = run["parameters"]["inbox_key"]
            assert key.startswith("pipedrive:v2:")
            with StateStore(load_settings(directory).store_url) as store:
                item = store.inbox_get(key)
                assert item is not None and item.status == "done"
                report = store.run_report(run["id"])
                assert report.counts["deal"] == {"created": 1}
            assert len(deal_sync_runs(prefect_server.api_url)) == 1  # one notification, one run

            # the run's log (Prefect UI, Logs tab) has the product's lines, no token
            def product_lines() -> str | None:
                answer = api.post(
                    "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}
                )
                lines = [
                    line["message"]
                    for line in answer.json()
                    if line["name"].startswith(("flows.", "tasks."))
                ]
                text = "\n".join(lines)
                return text if "deals → licenses: 1 created" in text else None

            text = _wait("no product line in the run's log", product_lines, log=log)
            assert f"read from Pipedrive (deal {deal['id']})" in text, text
            assert sb.pipedrive_token not in text and sb.planhat_token not in text

            pgid = process.pid
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0, log.read_text()
            _wait("serve left processes behind", lambda: group_members(pgid) == [], 30, log)
        assert "pdsync serve: stopped" in log.read_text()
