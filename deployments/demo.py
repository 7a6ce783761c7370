"""`pdsync demo` (`make demo`): the whole product on this machine, with no account.

1. starts the sandbox Pipedrive and Planhat (demo data set) in this process and a Prefect server
   (`prefect server start`, a free port, a temporary `PREFECT_HOME`) as a subprocess;
2. writes a settings directory (the given one, default `deployments/sandbox_settings/`,
   pointed at the sandbox, a fresh SQLite store and the local receiver) and the sandbox tokens
   into this process's environment;
3. runs connect (the sandbox Pipedrive gets a webhook to the receiver) and a full backfill with
   a progress bar;
4. starts one-machine mode (`pdsync serve`) as a subprocess: the receiver and the deployments,
   deal-sync on its event trigger;
5. changes four deals through the sandbox's Pipedrive API: one won in a selected pipeline, one
   won in an unselected pipeline, one lost (it was won), one whose custom field is set to null.
   Each change reaches the receiver as a real webhook, whose Prefect event starts a deal-sync
   run through the trigger;
6. waits for those runs (a generous timeout), then prints what landed in Planhat and why the
   rest was skipped, from the runs' logs in the state store;
7. the other way: sets up a Planhat automation webhook to the receiver, renames a company in
   Planhat (the sandbox settings sync organizations both ways), and waits for the planhat-sync
   run its notification starts to write the new name to the Pipedrive organization;
8. stops everything it started (serve, the server, the sandbox) and exits 0 when every run
   completed and the won deal became a license.

Its size: one scripted story (start, connect, backfill, serve, four changes, the results
table, one change the other way, a clean stop) read top to bottom; its tables come from
`deployments.render`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from deployments.serve import LocalPrefectServer, ServeError, free_port, stop_process_group

DEMO_CRON = "0 */6 * * *"  # the demo's schedule: no incremental sync falls inside the demo
SERVE_READY_TIMEOUT_S = 120.0
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
#: license custom fields the null change may use, first match wins
NULLABLE_FIELDS = ("Contract tier", "PO number", "Seats", "Implementation fee")
#: the environment variable of the demo receiver's Planhat webhook secret
PLANHAT_SECRET_ENV = "SANDBOX_PLANHAT_WEBHOOK_SECRET"  # noqa: S105 - a variable's name
#: how long the demo waits for a Planhat change to reach Pipedrive through its webhook
PLANHAT_WAIT_S = 90.0


class DemoError(RuntimeError):
    """The demo could not go on (what failed and where its logs are)."""


@dataclass
class Change:
    """One change the demo makes through the Pipedrive API, and what came of it."""

    label: str
    deal: dict[str, Any]
    body: dict[str, Any]
    expect: str  # "license" | "skipped" | "kept" | "null"
    field_label: str | None = None
    changed_at: float = 0.0  # time.monotonic() of the API call
    changed_wall: float = 0.0  # time.time() of the API call
    run: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=dict)
    action: str | None = None  # what the run did with the deal (its run-log line)
    reason: str | None = None


# -- settings --------------------------------------------------------------------------------


def write_demo_settings(
    base_dir: Path,
    target: Path,
    *,
    pipedrive_url: str,
    planhat_url: str,
    receiver_url: str,
    planhat_secret_env: str | None = None,
) -> Path:
    """`base_dir`'s settings pointed at the sandbox, the receiver and a fresh store in
    `target` (integration.yaml rewritten; the other files copied as they are). With
    `planhat_secret_env`, the receiver takes Planhat's automation webhooks too."""
    target.mkdir(parents=True, exist_ok=True)
    for source in base_dir.glob("*.yaml"):
        if source.name != "integration.yaml":
            shutil.copy(source, target / source.name)
    data = yaml.safe_load((base_dir / "integration.yaml").read_text())
    conn = data["connection"]
    conn["pipedrive"] = {"company_url": pipedrive_url, "token_env": "SANDBOX_PIPEDRIVE_TOKEN"}
    conn["planhat"] = {"base_url": planhat_url, "token_env": "SANDBOX_PLANHAT_TOKEN"}
    conn["receiver"] = {
        "public_url": receiver_url,
        "basic_auth": {"username": "pdsync", "password_env": "SANDBOX_WEBHOOK_PASSWORD"},
    }
    if planhat_secret_env is not None:
        conn["receiver"]["planhat_webhook"] = {"secret_env": planhat_secret_env}
    data.setdefault("incremental", {})["cron"] = DEMO_CRON
    data["store"] = {"url": f"sqlite:///{(target / 'state.db').absolute()}"}
    data["dry_run"] = False
    (target / "integration.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    return target


# -- picking the deals -----------------------------------------------------------------------


def _selected_pipelines(settings_pipelines: list[Any], pipelines: list[dict[str, Any]]) -> set[int]:
    names = {str(p["name"]).casefold(): int(p["id"]) for p in pipelines}
    ids = {int(p["id"]) for p in pipelines}
    chosen: set[int] = set()
    for value in settings_pipelines:
        if isinstance(value, int) and value in ids:
            chosen.add(value)
        elif str(value).casefold() in names:
            chosen.add(names[str(value).casefold()])
    return chosen


def plan_changes(pd: httpx.Client, selected: set[int], licensed: set[int]) -> list[Change]:
    """The four changes, on deals chosen from the sandbox's current data."""
    deals = _all(pd, "/api/v2/deals")
    pipelines = {int(p["id"]): p["name"] for p in _all(pd, "/api/v2/pipelines")}
    fields = _all(pd, "/api/v2/dealFields")
    live = sorted((d for d in deals if not d.get("is_deleted")), key=lambda d: d["id"])

    def first(pred: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        for deal in live:
            if pred(deal) and deal["id"] not in used:
                used.add(deal["id"])
                return deal
        raise DemoError(f"the sandbox data has no {what}")

    used: set[int] = set()
    changes = []
    won_new = first(
        lambda d: d["status"] == "open" and d["pipeline_id"] in selected and bool(d.get("org_id")),
        "open deal with an organization in a selected pipeline",
    )
    changes.append(
        Change(
            f"set to won, in {pipelines[won_new['pipeline_id']]} (selected)",
            won_new,
            {"status": "won"},
            "license",
        )
    )
    unselected = [p for p in pipelines if p not in selected]
    if unselected:
        won_other = first(
            lambda d: d["status"] == "open" and d["pipeline_id"] in unselected,
            "open deal in an unselected pipeline",
        )
        changes.append(
            Change(
                f"set to won, in {pipelines[won_other['pipeline_id']]} (not selected)",
                won_other,
                {"status": "won"},
                "skipped",
            )
        )
    lost = first(
        lambda d: d["status"] == "won" and d["pipeline_id"] in selected and d["id"] in licensed,
        "won deal with a license",
    )
    changes.append(
        Change(
            f"set to lost (was won, in {pipelines[lost['pipeline_id']]})",
            lost,
            {"status": "lost", "lost_reason": "Went with a competitor"},
            "kept",
        )
    )
    for label in NULLABLE_FIELDS:
        key = next((f["field_code"] for f in fields if f.get("field_name") == label), None)
        if key is None:
            continue
        candidates = [
            d
            for d in live
            if d["status"] == "won"
            and d["pipeline_id"] in selected
            and d["id"] in licensed
            and d["id"] not in used
            and (d.get("custom_fields") or {}).get(key) not in (None, "")
        ]
        if candidates:
            deal = candidates[0]
            used.add(deal["id"])
            changes.append(
                Change(
                    f"custom field '{label}' set to null",
                    deal,
                    {"custom_fields": {key: None}},
                    "null",
                    field_label=label,
                )
            )
            break
    return changes


def _all(pd: httpx.Client, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        body = pd.get(path, params=params).raise_for_status().json()
        items.extend(body.get("data") or [])
        cursor = (body.get("additional_data") or {}).get("next_cursor")
        if not cursor:
            return items


def _timeline(run: dict[str, Any], since: float) -> str:
    """`created +0.2 s, started +3.1 s, done +5.0 s` after the change (Prefect's times)."""
    from datetime import datetime

    parts = []
    for label, key in (("run created", "created"), ("started", "start_time"),
                       ("done", "end_time")):  # fmt: skip
        value = run.get(key)
        if value:
            at = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
            parts.append(f"{label} +{max(0.0, at - since):.1f} s")
    return ", ".join(parts) + " after the change"


def _seconds(run: dict[str, Any]) -> float | None:
    value = run.get("total_run_time")
    return float(value) if isinstance(value, int | float) else None


# -- the demo --------------------------------------------------------------------------------


class Demo:
    def __init__(
        self,
        settings_dir: str | None,
        *,
        keep_running: bool,
        timeout_s: float,
        console: Console,
    ) -> None:
        from deployments.sandbox_settings import SANDBOX_DIR

        self.base_dir = Path(settings_dir) if settings_dir else SANDBOX_DIR
        self.keep_running = keep_running
        self.timeout_s = timeout_s
        self.out = console
        self.work = Path(tempfile.mkdtemp(prefix="pdsync-demo-"))
        self.started = time.monotonic()
        self.server: LocalPrefectServer | None = None
        self.serve: subprocess.Popen[bytes] | None = None
        self.sandbox: Any = None
        self.receiver_port = 0
        self.ok = False

    # -- helpers ---------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.out.print(f"[dim]{time.monotonic() - self.started:5.1f}s[/dim]  {text}")

    @property
    def serve_log(self) -> Path:
        return self.work / "serve.log"

    def _serve_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.serve_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- the steps -------------------------------------------------------------------------
    def run(self) -> int:
        previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        # SIGTERM or SIGHUP (a CI timeout, a closed terminal) stop the demo like Ctrl-C does, so
        # that what it started is stopped too; Ctrl-C works even if SIGINT came in ignored.
        for sig, handler in (
            (signal.SIGTERM, interrupt),
            (signal.SIGHUP, interrupt),
            (signal.SIGINT, signal.default_int_handler),
        ):
            with contextlib.suppress(ValueError):  # not the main thread: leave them alone
                previous[sig] = signal.signal(sig, handler)
        try:
            self._run()
        finally:
            for sig in previous:  # the clean-up is bounded; a second signal must not cut it
                signal.signal(sig, signal.SIG_IGN)
            try:
                self.stop()
            finally:
                for sig, saved in previous.items():
                    signal.signal(sig, saved)
        return 0 if self.ok else 1

    def _run(self) -> None:
        from sandbox.runner import Sandbox

        self.out.rule("[bold]pdsync demo[/bold]: Pipedrive ⇄ Planhat on Prefect, all local")
        home = self.work / "prefect"
        os.environ["PREFECT_HOME"] = str(home)  # this process too (before Prefect is imported)
        self.server = LocalPrefectServer(home, port=0).launch()
        self.say("Starting a Prefect server and the sandbox Pipedrive and Planhat (demo data)")
        self.sandbox = Sandbox("demo").start()
        sb = self.sandbox
        os.environ["SANDBOX_PIPEDRIVE_TOKEN"] = sb.pipedrive_token
        os.environ["SANDBOX_PLANHAT_TOKEN"] = sb.planhat_token
        os.environ["SANDBOX_WEBHOOK_PASSWORD"] = secrets.token_urlsafe(18)
        os.environ[PLANHAT_SECRET_ENV] = secrets.token_urlsafe(18)
        receiver_port = free_port()
        from deployments.receiver import WEBHOOK_PATH

        receiver_url = f"http://127.0.0.1:{receiver_port}{WEBHOOK_PATH}"
        settings_dir = write_demo_settings(
            self.base_dir,
            self.work / "settings",
            pipedrive_url=sb.pipedrive_url,
            planhat_url=sb.planhat_url,
            receiver_url=receiver_url,
            planhat_secret_env=PLANHAT_SECRET_ENV,
        )
        self.receiver_port = receiver_port
        counts = sb.summary()
        self.say(
            f"Sandbox Pipedrive {sb.pipedrive_url} ({counts['deals']} deals, "
            f"{counts['organizations']} organizations, {counts['persons']} persons, "
            f"{counts['notes']} notes); Planhat {sb.planhat_url}"
        )
        self.server.wait_ready()
        api_url = self.server.api_url
        self.say(
            f"Prefect UI: [bold link={self.server.ui_url}]{self.server.ui_url}[/] "
            "(open it to watch the runs)"
        )
        from deployments.serve import prefect_settings

        with prefect_settings(api_url):
            self._connect_and_backfill(str(settings_dir))
            self._start_serve(settings_dir, receiver_port, api_url)
            changes = self._change_deals(str(settings_dir))
            self._wait_for_runs(changes, api_url, str(settings_dir))
            self._report(changes, str(settings_dir))
            if self.ok:
                self._planhat_to_pipedrive(str(settings_dir))
            if self.ok:
                elapsed = time.monotonic() - self.started
                self.out.print(f"[green]Demo complete in {elapsed:.0f} s.[/green]")
            if self.keep_running and self.ok:
                self._keep_serving(receiver_url)

    def _connect_and_backfill(self, settings_dir: str) -> None:
        from deployments.render import print_report, run_sync_with_progress
        from flows.connect import connect

        result = connect(settings_dir=settings_dir)
        self.say(
            f"connect: token tested ({result['user']}); Pipedrive webhook {result['webhook']} "
            f"→ the receiver"
        )
        self.say("Backfill (incremental sync, full): every won deal in the selected pipelines")
        report = run_sync_with_progress(settings_dir, True, console=self.out)
        print_report(report, "Backfill")
        self.out.print()

    def _start_serve(self, settings_dir: Path, port: int, api_url: str) -> None:
        env = dict(os.environ)
        env.update(
            PREFECT_API_URL=api_url,
            PREFECT_RUNNER_POLL_FREQUENCY="1",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PYTHONUNBUFFERED="1",
        )
        env.pop("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", None)  # serve's log shows the runs
        command = [
            sys.executable, "-m", "deployments.cli", "serve",
            "--settings", str(settings_dir), "--port", str(port),
        ]  # fmt: skip
        self.say("Starting one-machine mode (pdsync serve): the receiver and the deployments")
        with open(self.serve_log, "ab") as log:
            self.serve = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + SERVE_READY_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.serve.poll() is not None:
                    raise DemoError(
                        f"pdsync serve exited (status {self.serve.returncode}); its log "
                        f"{self.serve_log} ends with:\n{self._serve_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"pdsync serve was not ready within {SERVE_READY_TIMEOUT_S:.0f} s; its "
                        f"log {self.serve_log} ends with:\n{self._serve_tail()}"
                    )
                time.sleep(0.2)
        self.say(
            f"Serving: receiver on http://127.0.0.1:{port}, deal-sync triggered by "
            "pipedrive.deal.* events (log: serve.log)"
        )

    def _change_deals(self, settings_dir: str) -> list[Change]:
        from mappings.loading import load_settings

        sb = self.sandbox
        settings = load_settings(settings_dir)
        pipelines = [dict(p) for p in sb.pipedrive_seed.pipelines]
        selected = _selected_pipelines(list(settings.integration.deals.pipelines), pipelines)
        licensed = {
            int(r["sourceId"])
            for r in sb.planhat.records("licenses")
            if str(r.get("sourceId") or "").isdigit()
        }
        with httpx.Client(
            base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}, timeout=30
        ) as pd:
            changes = plan_changes(pd, selected, licensed)
            self.say("Changing deals through the Pipedrive API (each fires a real webhook):")
            for change in changes:
                pd.patch(f"/api/v2/deals/{change.deal['id']}", json=change.body).raise_for_status()
                change.changed_at = time.monotonic()
                change.changed_wall = time.time()
                self.out.print(
                    f"         deal {change.deal['id']} “{change.deal['title']}”: {change.label}",
                    markup=False,
                )
        return changes

    def _wait_for_runs(self, changes: list[Change], api_url: str, settings_dir: str) -> None:
        """Wait until the run that synced each changed deal finished. A run takes every
        waiting notification, so one run may sync several of the changes: the state store's
        run log says which run synced which deal."""
        from datetime import UTC, datetime

        from mappings.loading import load_settings
        from store import StateStore

        wanted = {c.deal["id"]: c for c in changes}
        deadline = time.monotonic() + self.timeout_s
        reported: set[int] = set()
        with (
            StateStore(load_settings(settings_dir).store_url) as store,
            httpx.Client(base_url=api_url, timeout=10) as api,
            self.out.status("Waiting for the webhook-started deal-sync runs...") as status,
        ):
            while True:
                for deal_id, change in wanted.items():
                    if deal_id in reported:
                        continue
                    since = datetime.fromtimestamp(change.changed_wall - 1, UTC)
                    history = store.record_history("deal", deal_id, since=since)
                    if not history:
                        continue
                    response = api.get(f"/flow_runs/{history[-1].run_id}")
                    if response.status_code != 200:
                        continue
                    run = change.run = response.json()
                    change.action, change.reason = history[-1].action, history[-1].reason
                    if run["state_type"] in TERMINAL:
                        reported.add(deal_id)
                        self.say(
                            f"deal {deal_id}: run '{run['name']}' {run['state_name']} "
                            f"({_timeline(run, change.changed_wall)})"
                        )
                if len(reported) == len(wanted):
                    return
                if self.serve is not None and self.serve.poll() is not None:
                    raise DemoError(
                        f"pdsync serve exited (status {self.serve.returncode}); its log "
                        f"{self.serve_log} ends with:\n{self._serve_tail()}"
                    )
                if time.monotonic() > deadline:
                    missing = [str(d) for d in wanted if d not in reported]
                    raise DemoError(
                        f"no finished deal-sync run for deal(s) {', '.join(missing)} within "
                        f"{self.timeout_s:.0f} s (a webhook or the trigger did not fire?); "
                        f"serve's log {self.serve_log} ends with:\n{self._serve_tail()}"
                    )
                status.update(
                    f"Waiting for the webhook-started deal-sync runs ({len(reported)} of "
                    f"{len(wanted)} finished)..."
                )
                time.sleep(0.5)

    def _report(self, changes: list[Change], settings_dir: str) -> None:
        from mappings.loading import load_settings
        from store import StateStore

        settings = load_settings(settings_dir)
        licenses = {str(r.get("sourceId")): r for r in self.sandbox.planhat.records("licenses")}
        table = Table(
            title="What the webhooks did (deal-sync runs started by their Prefect events; a run "
            "syncs every notification waiting when it starts)",
            title_justify="left",
            show_lines=True,
        )
        table.add_column("deal", overflow="fold")
        table.add_column("change in Pipedrive", overflow="fold")
        table.add_column("deal-sync run", overflow="fold")
        table.add_column("in Planhat", overflow="fold")
        table.add_column("why", overflow="fold")
        failures = []
        with StateStore(settings.store_url) as store:
            for change in changes:
                run = change.run or {}
                report = store.run_report(run["id"]) if run.get("id") else None
                deal_id = change.deal["id"]
                landed, why, good = self._outcome(change, report, licenses.get(str(deal_id)))
                if run.get("state_type") != "COMPLETED" or not good:
                    failures.append(f"deal {deal_id}: {landed} ({why})")
                took = _seconds(run)
                table.add_row(
                    f"{deal_id}\n{change.deal['title']}",
                    change.label,
                    f"{run.get('name', '?')}\n{run.get('state_name', '?')}"
                    + (f" in {took:.1f} s" if took is not None else ""),
                    landed,
                    why,
                )
        self.out.print()
        self.out.print(table)
        totals = {
            name: len(self.sandbox.planhat.records(model))
            for name, model in (
                ("companies", "companies"),
                ("end users", "endusers"),
                ("licenses", "licenses"),
                ("notes", "conversations"),
            )
        }
        self.out.print(
            "Planhat now holds " + ", ".join(f"{n} {name}" for name, n in totals.items()) + "."
        )
        ui = self.server.ui_url if self.server else "?"
        self.out.print(f"Runs, logs and artifacts: {ui}/runs (while the demo runs)")
        if failures:
            self.out.print("[red]Not as expected:[/red]")
            for line in failures:
                self.out.print(f"  {line}", markup=False)
            self.out.print(f"serve's log: {self.serve_log}", markup=False)
        else:
            self.ok = True

    def _planhat_to_pipedrive(self, settings_dir: str) -> None:
        """The other way (organizations: both): a company renamed in Planhat reaches its
        Pipedrive organization through Planhat's automation webhook, the receiver, a Prefect
        event and a planhat-sync run (warm, in serve)."""
        from deployments.planhat_events import PLANHAT_PATH
        from mappings.loading import load_settings

        sb = self.sandbox
        hook = load_settings(settings_dir).integration.connection.receiver.planhat_webhook
        assert hook is not None
        sb.planhat.set_automations(
            [
                {
                    "name": "pdsync",
                    "models": ["companies", "endusers", "licenses"],
                    "events": ["created", "updated"],
                    "url": f"http://127.0.0.1:{self.receiver_port}{PLANHAT_PATH}",
                    "headers": {hook.header: os.environ[PLANHAT_SECRET_ENV]},
                }
            ]
        )
        company = next(
            c for c in sb.planhat.records("companies") if str(c.get("sourceId", "")).isdigit()
        )
        org_id, new_name = int(company["sourceId"]), f"{company['name']} (renamed in Planhat)"
        self.say(
            f"Planhat → Pipedrive: a Planhat automation webhook → {PLANHAT_PATH}; renaming "
            f"company '{company['name']}' in Planhat to '{new_name}'"
        )
        with (
            httpx.Client(
                base_url=sb.planhat_url,
                headers={"Authorization": f"Bearer {sb.planhat_token}"},
                timeout=30,
            ) as planhat,
            httpx.Client(
                base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}, timeout=30
            ) as pd,
        ):
            started = time.monotonic()
            planhat.put(f"/companies/{company['_id']}", json={"name": new_name}).raise_for_status()
            org: dict[str, Any] = {}
            while time.monotonic() - started < PLANHAT_WAIT_S:
                org = pd.get(f"/api/v2/organizations/{org_id}").json().get("data") or {}
                if org.get("name") == new_name:
                    break
                time.sleep(0.2)
            took = time.monotonic() - started
        if org.get("name") == new_name:
            self.out.print(
                f"  Pipedrive organization {org_id} is now named '{org['name']}', {took:.1f} s "
                "after the edit in Planhat (a planhat-sync run wrote that one field)",
                markup=False,
            )
            return
        self.ok = False
        self.out.print("[red]Not as expected:[/red]")
        self.out.print(
            f"  after {PLANHAT_WAIT_S:.0f} s organization {org_id} is named "
            f"'{org.get('name')}', not '{new_name}'; serve's log: {self.serve_log}",
            markup=False,
        )

    def _outcome(
        self, change: Change, report: Any, license: dict[str, Any] | None
    ) -> tuple[str, str, bool]:
        """(what is in Planhat, why, as expected?) for one change."""
        if report is None:
            return "nothing (no run)", "no deal-sync run was found", False
        action = change.action or "none"
        why = change.reason or ""
        others = ", ".join(
            f"{obj} {act} {n}"
            for obj, acts in sorted(report.counts.items())
            if obj != "deal"
            for act, n in sorted(acts.items())
            if act in ("created", "updated")
        )
        if change.expect == "license":
            good = action == "created" and license is not None
            landed = (
                f"license created: {license.get('product')!r} "
                f"({license.get('value')} {license.get('_currency') or ''})".replace(" )", ")")
                if license
                else f"no license (deal {action})"
            )
            if others:
                landed += f"\n+ {others}"
            return landed, why or "won, in a selected pipeline", good
        if change.expect == "skipped":
            good = action == "skipped" and license is None
            return "nothing written (no license)", why or f"deal {action}", good
        if change.expect == "kept":
            good = action == "skipped" and license is not None
            return "license kept, not updated", why or f"deal {action}", good
        label = change.field_label or "the field"
        value = (license or {}).get("custom", {}).get(label, "missing")
        good = action == "updated" and value is None
        return (
            f"license updated: {label} = {'null' if value is None else repr(value)}",
            why or "an explicit null is synced as null (empty would be ignored)",
            good,
        )

    def _keep_serving(self, receiver_url: str) -> None:
        sb = self.sandbox
        self.out.print(
            "\nStill running (Ctrl-C stops everything). Change a deal and watch its run:\n"
            f"  curl -X PATCH -H 'x-api-token: {sb.pipedrive_token}' "
            "-H 'content-type: application/json' \\\n"
            f'       -d \'{{"status": "won"}}\' {sb.pipedrive_url}/api/v2/deals/<id>\n'
            f"  Pipedrive {sb.pipedrive_url}   Planhat {sb.planhat_url} "
            f"(token {sb.planhat_token})   receiver {receiver_url}",
            markup=False,
            soft_wrap=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while self.serve is not None and self.serve.poll() is None:
                time.sleep(0.5)

    def stop(self) -> None:
        """Stop everything the demo started (serve and its runs, the server, the sandbox)."""
        if self.serve is not None:
            if self.serve.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.serve.send_signal(signal.SIGTERM)  # the runner stops gracefully
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.serve.wait(15)
            stop_process_group(self.serve, timeout_s=5)
            self.serve = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.ok and not os.environ.get("PDSYNC_DEMO_KEEP_FILES"):
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            self.out.print(f"The demo's files and logs are kept in {self.work}", markup=False)


def run_demo(
    settings_dir: str | None = None,
    *,
    keep_running: bool = False,
    timeout_s: float = 120.0,
    console: Console | None = None,
) -> int:
    """The demo; returns the exit status (0: every run completed as expected)."""
    console = console or Console(highlight=False)
    demo = Demo(settings_dir, keep_running=keep_running, timeout_s=timeout_s, console=console)
    try:
        return demo.run()
    except (DemoError, ServeError) as exc:
        console.print(f"[red]pdsync demo failed:[/red] {exc}", soft_wrap=True)
        return 1
