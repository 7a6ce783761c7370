"""Benchmark: the full backfill (`pdsync sync --full`) against the sandbox, beside its read floor.

For each scale of the data set (`--scales 0.25,0.5,1` of `large` by default; `--quick`: 0.25 only)
it:

1. starts the sandbox in its own process (`python -m sandbox --dataset large --scale F --json`,
   free ports), with the Pipedrive burst limit raised so far that it never binds (unless
   `--burst N` or `--with-burst-limit` is given);
2. measures the **read floor** of that sandbox: one plain `httpx.Client` reading every page of
   the four streams (v2 `/api/v2/{deals,organizations,persons}` cursor paging, v1
   `/api/v1/notes` offset paging, `limit=500`), JSON-decoded, nothing else (the burst limit is
   lifted for it through `/_sandbox/ratelimit`; afterwards the limit, the spent budget and both
   servers' request counters are reset);
3. runs the backfill as a user does, in its own process: `.venv/bin/pdsync sync --full
   --settings DIR` with a copy of deployments/sandbox_settings/ pointed at that sandbox, a fresh
   SQLite store, the token environment variables those settings name, and `PREFECT_API_URL` set
   to one local Prefect server the bench starts before any timing (so no run pays Prefect's
   start-up). It measures the process's wall time (start-up and imports included), its CPU time
   (user + sys, from `os.wait4` of that very process) and its peak RSS: `VmHWM` of
   /proc/<pid>/status, the kernel's high-water mark of the process's own memory since it
   started, polled every 20 ms until it exits (it only rises, so a poll misses at most the
   last 20 ms). Not `ru_maxrss`: a child spawned by vfork (as `subprocess` does) shares its
   parent's memory until it execs, and Linux keeps that memory's high-water mark as the
   child's, so after a large step the bench's own memory showed as pdsync's (345 MiB against a
   VmHWM of 166 in one incremental run); it is printed beside, for reference. The CPU the
   sandbox and the Prefect server spent meanwhile is shown too (they share the machine's
   cores), and where the wall time went, from Prefect's record of the flow run's tasks: from
   the spawn to the stream, the stream, the scan of Planhat, the report, and from the report to
   the exit (Prefect's flow teardown and the interpreter's);
4. reads both servers' request counters (`GET /_sandbox/counters`) and prints the API calls
   beside the minimum: Σ ceil(n/500) list pages of the four streams + the account lists
   (`ACCOUNT_LISTS`) + the scan of Planhat's companies that follows in the same run
   (ceil(n/5000): the sandbox settings send organizations) + Σ ceil(n/5000) Planhat bulk
   upserts of what landed in Planhat;
5. the incremental step (unless `--no-incremental`): changes 1 % of each list's records
   through Pipedrive's API (every 100th record read by the floor: a deal's title, an
   organization's or person's name, a note's content; the burst limit lifted meanwhile), then
   runs `pdsync sync` (without `--full`) the same way and counts its calls against the
   minimum: per list Σ max(1, ceil(n/500)) pages, n the records a read from the list's cursor
   minus the settings' overlap (`overlap_seconds`) returns (the changed ones, and those the
   backfill read last, within the overlap: every correct read returns them again; counted
   through the API before the run) + the account lists + the scan of
   Planhat's companies (ceil(n/5000); the sandbox settings send organizations) + Σ
   ceil(n/5000) upserts of the Planhat records whose content changed (dumps compared).

Then it prints a table and the targets of issue 14 as met / not met (never asserted; the
process exits 0 when every step ran, whatever the figures):

* peak RSS ≤ 400 MiB at scale 1, and growing less than 1.2× from scale ¼ to scale 1;
* calls ≤ 1.05 × the minimum, for the backfill and for the incremental sync (1 % changed);
* wall time ≤ 2 × the read floor of the same run (no rate limit binding);
* with `--with-burst-limit` (Growth's burst of 40 requests per 2 s unless `--burst N`):
  wall time ≤ 1.2 × (Pipedrive calls ÷ the allowed rate).

The machine's other load shows in every figure; on a small shared machine repeat a run before
trusting a difference of less than ~20 %.

    .venv/bin/python bench/pipeline_backfill.py                 # scales 0.25, 0.5, 1 of large
    .venv/bin/python bench/pipeline_backfill.py --quick         # scale 0.25 only
    .venv/bin/python bench/pipeline_backfill.py --with-burst-limit [--burst 40]
    .venv/bin/python bench/pipeline_backfill.py --dataset demo --scales 1 --show-output
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/pipeline_backfill.py` puts bench/ first
    sys.path.insert(0, str(ROOT))

PDSYNC = Path(sys.executable).parent / "pdsync"
PY_SPY = Path(sys.executable).parent / "py-spy"
SANDBOX_SETTINGS = ROOT / "deployments" / "sandbox_settings"

PAGE_SIZE = 500  # Pipedrive's largest page
BULK_SIZE = 5_000  # Planhat's bulk upsert limit
# (collection, path, paging): the four streams the backfill reads.
STREAMS = (
    ("deals", "/api/v2/deals", "cursor"),
    ("organizations", "/api/v2/organizations", "cursor"),
    ("persons", "/api/v2/persons", "cursor"),
    ("notes", "/api/v1/notes", "offset"),
)
# The lists a backfill needs once whatever the data set's size: Pipedrive's users, pipelines
# (with their stages) and deal, organization and person fields; Planhat's users (team members).
ACCOUNT_LISTS = 6
UNLIMITED_BURST = 1_000_000
RSS_POLL_S = 0.02  # VmHWM poll of the measured process
GROWTH_BURST = 40
BURST_WINDOW_S = 2.0
PLANHAT_MODELS = ("companies", "endusers", "licenses", "conversations")

#: the incremental step changes one record in CHANGE_EVERY of each list (1 %)
CHANGE_EVERY = 100
#: what it changes: (path of one record, method, body) per stream
CHANGES = {
    "deals": ("/api/v2/deals/{id}", "PATCH", {"title": "Bench deal {id} (changed)"}),
    "organizations": ("/api/v2/organizations/{id}", "PATCH", {"name": "Bench org {id}"}),
    "persons": ("/api/v2/persons/{id}", "PATCH", {"name": "Bench Person {id}"}),
    "notes": ("/api/v1/notes/{id}", "PUT", {"content": "<p>Bench note {id}, changed</p>"}),
}

# The targets of issue 14.
RSS_LIMIT_MIB = 400.0
RSS_GROWTH_LIMIT = 1.2
FLOOR_FACTOR = 2.0
CALLS_FACTOR = 1.05
PACE_FACTOR = 1.2

MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    scale: float
    counts: dict[str, int] = field(default_factory=dict)
    floor_s: float = 0.0
    floor_pages: dict[str, int] = field(default_factory=dict)
    floor_records: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    vmhwm_mib: float = 0.0
    maxrss_mib: float = 0.0
    exit_code: int | None = None
    sandbox_cpu_s: float = 0.0
    prefect_cpu_s: float = 0.0
    pipedrive_calls: dict[str, Any] = field(default_factory=dict)
    planhat_calls: dict[str, Any] = field(default_factory=dict)
    landed: dict[str, int] = field(default_factory=dict)
    output_tail: str = ""
    started_at: float = 0.0  # the process's spawn, time.time()
    #: where the wall time went, from Prefect's record of the run (`flow_timeline`)
    timeline: dict[str, float] = field(default_factory=dict)
    #: the incremental step: records changed per stream, Planhat records changed per model,
    #: and the `pdsync sync` that followed (its figures in a Run of its own)
    changed: dict[str, int] = field(default_factory=dict)
    #: records the incremental read must return: updated since the cursor minus the overlap
    #: (the changed ones, and the backfill's newest, read again at the boundary)
    to_read: dict[str, int] = field(default_factory=dict)
    planhat_changed: dict[str, int] = field(default_factory=dict)
    scan_pages: int = 0  # the backfill's scan of Planhat's companies: ceil(companies/5000)
    incremental_scan_pages: int = 0
    incremental: Run | None = None

    @property
    def records(self) -> int:
        return sum(self.counts.get(name, 0) for name, _, _ in STREAMS)

    @property
    def peak_rss_mib(self) -> float:
        """The process's own high-water mark (`VmHWM`; see the module docstring)."""
        return self.vmhwm_mib

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def list_pages_min(self) -> int:
        return sum(math.ceil(self.counts.get(name, 0) / PAGE_SIZE) for name, _, _ in STREAMS)

    @property
    def upserts_min(self) -> int:
        return sum(math.ceil(n / BULK_SIZE) for n in self.landed.values())

    @property
    def minimum_calls(self) -> int:
        return self.list_pages_min + ACCOUNT_LISTS + self.scan_pages + self.upserts_min

    @property
    def calls(self) -> int:
        return int(self.pipedrive_calls.get("total", 0)) + int(self.planhat_calls.get("total", 0))

    @property
    def incremental_minimum(self) -> int:
        """One page at least per list read (of what a read from the cursor minus the overlap
        returns), the account lists, the scan of Planhat's companies (the sandbox settings send
        organizations) and the upserts of what changed in Planhat."""
        read = {n: max(self.changed.get(n, 0), self.to_read.get(n, 0)) for n, _, _ in STREAMS}
        pages = sum(max(1, math.ceil(read[n] / PAGE_SIZE)) for n, _, _ in STREAMS)
        upserts = sum(math.ceil(n / BULK_SIZE) for n in self.planhat_changed.values())
        return pages + ACCOUNT_LISTS + self.incremental_scan_pages + upserts


# -- processes ---------------------------------------------------------------------------------


def process_cpu_s(pids: list[int]) -> float:
    """user + sys seconds of the live processes `pids` (/proc/<pid>/stat), 0 for gone ones."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def vmhwm_mib(pid: int) -> float:
    """The process's peak resident set so far (`VmHWM`), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


class SandboxProcess:
    """`python -m sandbox ... --json` in its own process group; `info` is its JSON line."""

    def __init__(self, dataset: str, scale: float, seed: int, burst: int, log: Path) -> None:
        self.command = [
            sys.executable, "-m", "sandbox",
            "--dataset", dataset, "--scale", repr(scale), "--seed", str(seed),
            "--pipedrive-port", "0", "--planhat-port", "0",
            "--burst", str(burst), "--json",
        ]  # fmt: skip
        self.log = log
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> SandboxProcess:
        with open(self.log, "w") as errors:
            self.process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                cwd=ROOT,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise SystemExit(f"the sandbox did not start:\n{self.log.read_text()[-2000:]}")
        self.info = json.loads(line)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


# -- the read floor -----------------------------------------------------------------------------


def read_floor(
    url: str, token: str, ids: dict[str, list[int]] | None = None
) -> tuple[float, dict[str, int], dict[str, int]]:
    """Seconds to read every page of the four streams, JSON-decoded; pages and records each.
    `ids`, when given, gets every `CHANGE_EVERY`-th record id of each stream (the records the
    incremental step changes)."""
    pages: dict[str, int] = {}
    records: dict[str, int] = {}
    with httpx.Client(base_url=url, headers={"x-api-token": token}, timeout=120) as client:
        started = time.perf_counter()
        for name, path, paging in STREAMS:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            pages[name] = records[name] = 0
            while True:
                response = client.get(path, params=params)
                response.raise_for_status()
                body = response.json()
                pages[name] += 1
                data = body.get("data") or ()
                if ids is not None:  # a slice: no cost worth counting in the floor
                    skip = (CHANGE_EVERY // 2 - records[name]) % CHANGE_EVERY
                    ids.setdefault(name, []).extend(r["id"] for r in data[skip::CHANGE_EVERY])
                records[name] += len(data)
                more = body.get("additional_data") or {}
                if paging == "cursor":
                    if not more.get("next_cursor"):
                        break
                    params = {"limit": PAGE_SIZE, "cursor": more["next_cursor"]}
                else:
                    pagination = more.get("pagination") or {}
                    if not pagination.get("more_items_in_collection"):
                        break
                    start = pagination.get("next_start", params.get("start", 0) + PAGE_SIZE)
                    params = {"limit": PAGE_SIZE, "start": start}
        elapsed = time.perf_counter() - started
    return elapsed, pages, records


# -- the backfill -------------------------------------------------------------------------------


def write_settings(directory: Path, info: dict[str, Any]) -> dict[str, str]:
    """deployments/sandbox_settings/ aimed at the sandbox of `info` and a fresh SQLite store;
    returns the environment variables (tokens, webhook password) those settings name."""
    directory.mkdir(parents=True)
    data = yaml.safe_load((SANDBOX_SETTINGS / "integration.yaml").read_text())
    connection = data["connection"]
    connection["pipedrive"]["company_url"] = info["pipedrive_url"]
    connection["planhat"]["base_url"] = info["planhat_url"]
    connection["receiver"]["public_url"] = None
    data["store"]["url"] = f"sqlite:///{directory / 'state.db'}"
    (directory / "integration.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
    (directory / "custom_matches.yaml").write_text(
        (SANDBOX_SETTINGS / "custom_matches.yaml").read_text()
    )
    env = {
        connection["pipedrive"]["token_env"]: info["pipedrive_token"],
        connection["planhat"]["token_env"]: info["planhat_token"],
    }
    password_env = (connection["receiver"].get("basic_auth") or {}).get("password_env")
    if password_env:
        env[password_env] = "bench-webhook-password"
    return env


def run_backfill(
    run: Run,
    settings: Path,
    env: dict[str, str],
    workdir: Path,
    watch: list[int],
    profile: Path | None = None,
    *,
    full: bool = True,
) -> None:
    """`pdsync sync --full --settings <settings>` (`full=False`: without `--full`, the
    incremental sync) in its own process, measured (see the module docstring); `watch` are the
    pids of the sandbox and the Prefect server, for their CPU.
    `profile`: run it under `py-spy record` (the GIL-holding thread's stacks, raw format) into
    that file; the figures then include py-spy's own cost and the process measured is py-spy's."""
    log = workdir / ("pdsync.log" if full else "pdsync-incremental.log")
    others_before = process_cpu_s(watch[:1]), process_cpu_s(watch[1:])
    command = [str(PDSYNC), "sync", *(["--full"] if full else []), "--settings", str(settings)]
    if profile is not None:
        command = [
            str(PY_SPY), "record", "--gil", "--rate", "200", "--format", "raw",
            "--output", str(profile), "--", *command,
        ]  # fmt: skip
    with open(log, "wb") as out:
        started = time.perf_counter()
        run.started_at = time.time()
        process = subprocess.Popen(  # noqa: S603 - the project's own entry point
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
        peak = 0.0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, vmhwm_mib(process.pid))
            time.sleep(RSS_POLL_S)
        run.wall_s = time.perf_counter() - started
    process.returncode = run.exit_code = os.waitstatus_to_exitcode(status)
    run.user_s, run.sys_s = usage.ru_utime, usage.ru_stime
    run.maxrss_mib = usage.ru_maxrss / 1024  # KiB on Linux; from the parent's, see above
    run.vmhwm_mib = peak
    run.sandbox_cpu_s = process_cpu_s(watch[:1]) - others_before[0]
    run.prefect_cpu_s = process_cpu_s(watch[1:]) - others_before[1]
    run.output_tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])


def flow_timeline(api_url: str, run: Run) -> dict[str, float]:
    """Where the backfill's wall time went, from Prefect's record of its flow run (the newest
    on this bench's own server): seconds from the spawn to the stream's start, in the stream,
    the scan and the report, and from the report's end to the process's exit (Prefect's flow
    teardown and the interpreter's). Empty if the API has no such run."""
    from tasks.report import report_logged_task
    from tasks.scan import scan_planhat_task
    from tasks.stream import stream_sync_task

    #: the flow's tasks timed, by their names (a task run's name carries a suffix)
    timed = {
        stream_sync_task.name: "stream",
        scan_planhat_task.name: "scan",
        report_logged_task.name: "report",
    }
    with httpx.Client(base_url=api_url, timeout=30) as api:
        flows = api.post("/flow_runs/filter", json={"sort": "START_TIME_DESC", "limit": 1})
        if flows.status_code != 200 or not flows.json():
            return {}
        flow_run = flows.json()[0]
        tasks = api.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run["id"]]}}}
        ).json()

    def at(text: str | None) -> float | None:
        if not text:
            return None
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() - run.started_at

    spans: dict[str, tuple[float, float]] = {}
    for task in tasks:
        name = str(task.get("name", "")).rsplit("-", 1)[0]
        start, end = at(task.get("start_time")), at(task.get("end_time"))
        if name in timed and start is not None and end is not None:
            spans[timed[name]] = (start, end)
    if set(spans) != set(timed.values()):
        return {}
    return {
        "to the stream": spans["stream"][0],
        "stream": spans["stream"][1] - spans["stream"][0],
        "scan": spans["scan"][1] - spans["scan"][0],
        "report": spans["report"][1] - spans["report"][0],
        "after the report": run.wall_s - spans["report"][1],
    }


def import_time_s() -> float:
    """Seconds a fresh interpreter takes to import what `pdsync sync` runs (CLI, flow, Prefect):
    part of every backfill's wall time, whatever the data set's size."""
    started = time.perf_counter()
    subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-c", "import deployments.cli, flows.incremental_sync"],
        check=True,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def prefect_server_pids(server: Any) -> list[int]:
    from deployments.prefect_server import group_members

    if server.process is None:
        return []
    return list(group_members(server.process.pid)) or [server.process.pid]


# -- one scale ----------------------------------------------------------------------------------


def measure(args: argparse.Namespace, scale: float, server: Any, tmp: Path) -> Run:
    run = Run(scale)
    workdir = tmp / f"scale-{scale:g}"
    workdir.mkdir()
    sandbox = SandboxProcess(args.dataset, scale, args.seed, args.burst, workdir / "sandbox.log")
    print(f"\n[scale {scale:g}] starting the sandbox ({args.dataset} × {scale:g}) ...", flush=True)
    sandbox.start()
    try:
        info = sandbox.info
        run.counts = {k: int(v) for k, v in info["counts"].items()}
        pd_url, ph_url = info["pipedrive_url"], info["planhat_url"]
        with httpx.Client(timeout=120) as admin:
            if args.burst != UNLIMITED_BURST:  # the floor is the reading alone, never paced
                admin.put(f"{pd_url}/_sandbox/ratelimit", json={"burst": UNLIMITED_BURST})
            ids: dict[str, list[int]] = {}
            run.floor_s, run.floor_pages, run.floor_records = read_floor(
                pd_url, info["pipedrive_token"], ids
            )
            print(
                f"[scale {scale:g}] read floor {run.floor_s:.1f} s "
                f"({sum(run.floor_pages.values())} pages, {sum(run.floor_records.values()):,} "
                "records); running pdsync sync --full ...",
                flush=True,
            )
            if args.burst != UNLIMITED_BURST:
                admin.put(f"{pd_url}/_sandbox/ratelimit", json={"burst": args.burst})
            admin.delete(f"{pd_url}/_sandbox/ratelimit").raise_for_status()  # windows, budget
            for url in (pd_url, ph_url):
                admin.delete(f"{url}/_sandbox/counters").raise_for_status()
            time.sleep(BURST_WINDOW_S if args.burst != UNLIMITED_BURST else 0)

            env = dict(os.environ)
            env.update(write_settings(workdir / "settings", info))
            env.update(
                PREFECT_API_URL=server.api_url,
                PREFECT_HOME=str(workdir / "prefect-client"),
                PREFECT_SERVER_ANALYTICS_ENABLED="false",
                DO_NOT_TRACK="1",
                COLUMNS="100",
            )
            profile = None
            if args.profile is not None:
                profile = args.profile.with_name(f"{args.profile.stem}-{scale:g}.txt")
            run_backfill(
                run,
                workdir / "settings",
                env,
                workdir,
                [sandbox.pid, *prefect_server_pids(server)],
                profile,
            )
            if profile is not None:
                print_hot_spots(profile, args.top)
            run.timeline = flow_timeline(server.api_url, run)
            run.pipedrive_calls = admin.get(f"{pd_url}/_sandbox/counters").json()
            run.planhat_calls = admin.get(f"{ph_url}/_sandbox/counters").json()
            before = planhat_contents(admin, ph_url)
            run.landed = {model: len(records) for model, records in before.items()}
            run.scan_pages = math.ceil(run.landed.get("companies", 0) / BULK_SIZE)
            print_outcome(args, run, "pdsync", f"minimum {run.minimum_calls}")
            if run.exit_code == 0 and not args.no_incremental:
                incremental(args, run, info, ids, before, admin, workdir, env, server, sandbox)
    finally:
        sandbox.stop()
    return run


def print_outcome(args: argparse.Namespace, run: Run, what: str, minimum: str) -> None:
    """One line on a pdsync run just measured, and the end of its output if it failed."""
    print(
        f"[scale {run.scale:g}] {what} exit {run.exit_code}: {run.wall_s:.1f} s wall, "
        f"{run.cpu_s:.1f} s CPU, peak RSS {run.peak_rss_mib:.0f} MiB; {run.calls} API calls "
        f"({minimum})",
        flush=True,
    )
    if run.exit_code != 0 or args.show_output:
        print(f"--- pdsync output (last lines) ---\n{run.output_tail}\n---", flush=True)


# -- the incremental step -------------------------------------------------------------------------


def planhat_contents(admin: httpx.Client, ph_url: str) -> dict[str, dict[str, bytes]]:
    """Every record of the sandbox Planhat's models: `_id` → its content (without `updatedAt`)."""
    contents: dict[str, dict[str, bytes]] = {}
    for model in PLANHAT_MODELS:
        response = admin.get(f"{ph_url}/_sandbox/dump/{model}")
        if response.status_code == 200:
            contents[model] = {
                str(r.get("_id")): json.dumps(
                    {k: v for k, v in r.items() if k != "updatedAt"}, sort_keys=True
                ).encode()
                for r in response.json()
            }
    return contents


def records_to_read(api: httpx.Client, settings: Path) -> dict[str, int]:
    """Per list, the records an incremental read must return: those updated since its cursor
    (in the store the backfill left) minus the settings' overlap, whole seconds, as pdsync
    asks (`updated_since`). Counted through the API before the counters are reset."""
    data = yaml.safe_load((settings / "integration.yaml").read_text())
    overlap = int((data.get("incremental") or {}).get("overlap_seconds", 300))
    with sqlite3.connect(settings / "state.db") as db:
        cursors = dict(db.execute("SELECT stream, value FROM cursors").fetchall())
    counts: dict[str, int] = {}
    for name, path, paging in STREAMS:
        if name not in cursors:
            continue
        value = datetime.fromisoformat(str(cursors[name]).replace(" ", "T"))
        since = (value.replace(tzinfo=value.tzinfo or UTC) - timedelta(seconds=overlap)).replace(
            microsecond=0
        )
        params: dict[str, Any] = {
            "limit": PAGE_SIZE,
            "updated_since": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        total, cursor, start = 0, None, 0
        while True:
            page = {**params, **({"cursor": cursor} if cursor else {"start": start})}
            body = api.get(path, params=page).raise_for_status().json()
            total += len(body.get("data") or [])
            more = body.get("additional_data") or {}
            if paging == "cursor":
                cursor = more.get("next_cursor")
                if not cursor:
                    break
            else:
                pagination = more.get("pagination") or {}
                if not pagination.get("more_items_in_collection"):
                    break
                start = int(pagination.get("next_start", start + PAGE_SIZE))
        counts[name] = total
    return counts


def incremental(
    args: argparse.Namespace,
    run: Run,
    info: dict[str, Any],
    ids: dict[str, list[int]],
    before: dict[str, dict[str, bytes]],
    admin: httpx.Client,
    workdir: Path,
    env: dict[str, str],
    server: Any,
    sandbox: SandboxProcess,
) -> None:
    """After the backfill: change 1 % of each list's records through Pipedrive's API (as its
    users would; the burst limit lifted meanwhile), then run the incremental sync (`pdsync
    sync`) and count its calls against the minimum."""
    pd_url, ph_url = info["pipedrive_url"], info["planhat_url"]
    limited = args.burst != UNLIMITED_BURST
    if limited:
        admin.put(f"{pd_url}/_sandbox/ratelimit", json={"burst": UNLIMITED_BURST})
    headers = {"x-api-token": info["pipedrive_token"]}
    with httpx.Client(base_url=pd_url, headers=headers, timeout=60) as api:
        for name, (path, method, body) in CHANGES.items():
            for record_id in ids.get(name, []):
                payload = {k: v.format(id=record_id) for k, v in body.items()}
                api.request(method, path.format(id=record_id), json=payload).raise_for_status()
            run.changed[name] = len(ids.get(name, []))
        run.to_read = records_to_read(api, workdir / "settings")
    if limited:
        admin.put(f"{pd_url}/_sandbox/ratelimit", json={"burst": args.burst})
    admin.delete(f"{pd_url}/_sandbox/ratelimit").raise_for_status()
    for url in (pd_url, ph_url):
        admin.delete(f"{url}/_sandbox/counters").raise_for_status()
    time.sleep(BURST_WINDOW_S if limited else 1.0)
    print(
        f"[scale {run.scale:g}] changed {sum(run.changed.values()):,} records (1 %); running "
        "pdsync sync (incremental) ...",
        flush=True,
    )
    inc = Run(run.scale)
    run_backfill(
        inc, workdir / "settings", env, workdir, [sandbox.pid, *prefect_server_pids(server)],
        full=False,
    )  # fmt: skip
    inc.pipedrive_calls = admin.get(f"{pd_url}/_sandbox/counters").json()
    inc.planhat_calls = admin.get(f"{ph_url}/_sandbox/counters").json()
    after = planhat_contents(admin, ph_url)
    run.planhat_changed = {
        model: sum(1 for key, text in records.items() if before.get(model, {}).get(key) != text)
        for model, records in after.items()
    }
    run.incremental_scan_pages = math.ceil(len(after.get("companies", {})) / BULK_SIZE)
    run.incremental = inc
    print_outcome(args, inc, "incremental", f"minimum {run.incremental_minimum}")


# -- profile ---------------------------------------------------------------------------------------


def print_hot_spots(path: Path, top: int) -> None:
    """The `top` functions by samples (self: at the top of the stack; total: anywhere in it) of
    a py-spy raw profile (one `frame;frame;... count` line per stack)."""
    own: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            anywhere[frame] = anywhere.get(frame, 0) + count
    if not total:
        print(f"  profile {path}: no samples")
        return
    print(f"  profile {path}: {total} samples of the GIL-holding thread")
    for title, table in (("self", own), ("total", anywhere)):
        print(f"  top {top} by {title}:")
        for frame, count in sorted(table.items(), key=lambda item: -item[1])[:top]:
            print(f"    {100 * count / total:5.1f} %  {frame}")


# -- report -------------------------------------------------------------------------------------


def routes_line(counters: dict[str, Any]) -> str:
    routes = counters.get("routes") or {}
    return ", ".join(f"{route} {n}" for route, n in sorted(routes.items()))


def non_2xx(counters: dict[str, Any]) -> int:
    statuses = counters.get("statuses") or {}
    return sum(n for key, n in statuses.items() if not key.rsplit(" ", 1)[-1].startswith("2"))


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


def report(args: argparse.Namespace, runs: list[Run]) -> None:
    limited = args.burst != UNLIMITED_BURST
    rate = args.burst / BURST_WINDOW_S
    print()
    print(
        f"Backfill of '{args.dataset}' (seed {args.seed}), Pipedrive burst "
        f"{'unlimited' if not limited else f'{args.burst} per {BURST_WINDOW_S:g} s'}; "
        f"{os.cpu_count()} CPUs, shared: figures are noisy."
    )
    header = (
        f"{'scale':>5} {'records':>8} {'floor s':>8} {'wall s':>7} {'wall/fl':>7} "
        f"{'CPU s':>6} {'RSS MiB':>7} {'PD calls':>8} {'PH calls':>8} {'calls':>5} {'min':>5} "
        f"{'sbx CPU':>7} {'pf CPU':>6} {'exit':>4}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        ratio = r.wall_s / r.floor_s if r.floor_s else float("nan")
        print(
            f"{r.scale:>5g} {r.records:>8,} {r.floor_s:>8.1f} {r.wall_s:>7.1f} {ratio:>6.1f}× "
            f"{r.cpu_s:>6.1f} {r.peak_rss_mib:>7.0f} {r.pipedrive_calls.get('total', 0):>8} "
            f"{r.planhat_calls.get('total', 0):>8} {r.calls:>5} {r.minimum_calls:>5} "
            f"{r.sandbox_cpu_s:>7.1f} {r.prefect_cpu_s:>6.1f} {r.exit_code!s:>4}"
        )
    legend = (
        "records: organizations + persons + deals + notes in the sandbox",
        "floor s: one httpx.Client reading all their pages (JSON-decoded), nothing else",
        "wall s, CPU s (user + sys), RSS MiB (peak: VmHWM): the pdsync process alone;",
        f"  its start-up (a fresh interpreter importing the CLI, the flow and Prefect: "
        f"{args.import_s:.1f} s) is in every wall time",
        "PD / PH calls: requests the backfill made to the sandbox Pipedrive / Planhat; min = "
        f"Σ ceil(n/{PAGE_SIZE}) list pages",
        f"  + {ACCOUNT_LISTS} account lists + ceil(companies/{BULK_SIZE}) scan pages + "
        f"Σ ceil(n/{BULK_SIZE}) Planhat upserts of what landed",
        "sbx CPU, pf CPU: CPU seconds the sandbox and the Prefect server spent during the backfill",
    )
    for line in legend:
        print(f"  {line}")
    for r in runs:
        print(f"\nscale {r.scale:g}:")
        print(
            f"  read floor: {r.floor_s:.2f} s, pages {json.dumps(r.floor_pages)}, "
            f"records {json.dumps(r.floor_records)}"
        )
        print(
            f"  pdsync: user {r.user_s:.1f} s + sys {r.sys_s:.1f} s; VmHWM {r.vmhwm_mib:.0f} MiB"
            f" (ru_maxrss {r.maxrss_mib:.0f} MiB: at least the bench's own peak at the spawn)"
        )
        if r.timeline:
            print(
                "  wall time (Prefect's record of the run): "
                + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in r.timeline.items())
            )
        print(
            f"  calls {r.calls} vs minimum {r.minimum_calls} = {r.list_pages_min} list pages + "
            f"{ACCOUNT_LISTS} account lists + {r.scan_pages} scan pages + {r.upserts_min} upserts "
            f"(landed in Planhat: {json.dumps(r.landed)})"
        )
        print(
            f"  Pipedrive {r.pipedrive_calls.get('total', 0)} ({non_2xx(r.pipedrive_calls)} "
            f"not 2xx): {routes_line(r.pipedrive_calls)}"
        )
        print(
            f"  Planhat {r.planhat_calls.get('total', 0)} ({non_2xx(r.planhat_calls)} not 2xx): "
            f"{routes_line(r.planhat_calls)}"
        )
        inc = r.incremental
        if inc is not None:
            print(
                f"  incremental (1 % changed: {json.dumps(r.changed)}; to read from the cursors"
                f" minus the overlap: {json.dumps(r.to_read)}; changed in Planhat: "
                f"{json.dumps(r.planhat_changed)}): exit {inc.exit_code}, {inc.wall_s:.1f} s wall,"
                f" {inc.cpu_s:.1f} s CPU, {inc.peak_rss_mib:.0f} MiB; calls {inc.calls} vs "
                f"minimum {r.incremental_minimum}"
            )
            pd_total = inc.pipedrive_calls.get("total", 0)
            print(f"    Pipedrive {pd_total}: {routes_line(inc.pipedrive_calls)}")
            print(
                f"    Planhat {inc.planhat_calls.get('total', 0)}: {routes_line(inc.planhat_calls)}"
            )

    print("\nTargets (issue 14; printed, not asserted):")
    by_scale = {r.scale: r for r in runs if r.exit_code == 0}
    full, quarter = by_scale.get(1.0), by_scale.get(0.25)
    if full is not None:
        print(
            f"  peak RSS ≤ {RSS_LIMIT_MIB:.0f} MiB at scale 1: {full.peak_rss_mib:.0f} MiB → "
            f"{verdict(full.peak_rss_mib <= RSS_LIMIT_MIB)}"
        )
    else:
        print(f"  peak RSS ≤ {RSS_LIMIT_MIB:.0f} MiB at scale 1: n/a (no successful scale-1 run)")
    if full is not None and quarter is not None:
        growth = full.peak_rss_mib / quarter.peak_rss_mib
        print(
            f"  peak RSS growth scale ¼ → 1 < {RSS_GROWTH_LIMIT}×: {quarter.peak_rss_mib:.0f} → "
            f"{full.peak_rss_mib:.0f} MiB = {growth:.2f}× → {verdict(growth < RSS_GROWTH_LIMIT)}"
        )
    else:
        print(f"  peak RSS growth scale ¼ → 1 < {RSS_GROWTH_LIMIT}×: n/a (needs scales 0.25 and 1)")
    for r in runs:
        ok_backfill = r.exit_code == 0 and r.calls <= CALLS_FACTOR * r.minimum_calls
        print(
            f"  calls ≤ {CALLS_FACTOR:g} × minimum, backfill (scale {r.scale:g}): {r.calls} vs "
            f"{CALLS_FACTOR:g} × {r.minimum_calls} = {CALLS_FACTOR * r.minimum_calls:.0f} → "
            f"{verdict(ok_backfill)}"
        )
        inc = r.incremental
        if inc is None:
            print(
                f"  calls ≤ {CALLS_FACTOR:g} × minimum, incremental (scale {r.scale:g}): n/a "
                "(not run)"
            )
            continue
        minimum = r.incremental_minimum
        ok = inc.exit_code == 0 and inc.calls <= CALLS_FACTOR * minimum
        print(
            f"  calls ≤ {CALLS_FACTOR:g} × minimum, incremental, 1 % changed (scale "
            f"{r.scale:g}): {inc.calls} vs {CALLS_FACTOR:g} × {minimum} = "
            f"{CALLS_FACTOR * minimum:.1f} → {verdict(ok)}"
        )
    for r in runs:
        if limited:
            print(
                f"  wall ≤ {FLOOR_FACTOR:g} × read floor (scale {r.scale:g}): n/a (the burst "
                f"limit binds; floor {r.floor_s:.1f} s, wall {r.wall_s:.1f} s)"
            )
        else:
            ok = r.exit_code == 0 and r.wall_s <= FLOOR_FACTOR * r.floor_s
            print(
                f"  wall ≤ {FLOOR_FACTOR:g} × read floor (scale {r.scale:g}): {r.wall_s:.1f} s vs "
                f"{FLOOR_FACTOR:g} × {r.floor_s:.1f} = {FLOOR_FACTOR * r.floor_s:.1f} s "
                f"({r.wall_s / r.floor_s:.1f}×) → {verdict(ok)}"
            )
    for r in runs:
        if not limited:
            print(
                f"  wall ≤ {PACE_FACTOR:g} × Pipedrive calls ÷ allowed rate (scale {r.scale:g}): "
                "n/a (run with --with-burst-limit)"
            )
            continue
        paced = r.pipedrive_calls.get("total", 0) / rate
        ok = r.exit_code == 0 and r.wall_s <= PACE_FACTOR * paced
        print(
            f"  wall ≤ {PACE_FACTOR:g} × Pipedrive calls ÷ allowed rate (scale {r.scale:g}): "
            f"{r.wall_s:.1f} s vs {PACE_FACTOR:g} × {r.pipedrive_calls.get('total', 0)} ÷ "
            f"{rate:g}/s = {PACE_FACTOR * paced:.1f} s → {verdict(ok)}"
        )


# -- main ---------------------------------------------------------------------------------------


def scales_arg(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None
    if not values or any(not (math.isfinite(v) and v > 0) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: scales are positive numbers")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/pipeline_backfill.py",
        description="The full backfill (pdsync sync --full) against the sandbox, per scale of "
        "the data set, beside the read floor; prints the targets as met / not met.",
    )
    parser.add_argument("--dataset", default="large", choices=("small", "demo", "large"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--scales",
        type=scales_arg,
        default=[0.25, 0.5, 1.0],
        help="comma-separated scales of the data set (default: 0.25,0.5,1)",
    )
    parser.add_argument("--quick", action="store_true", help="one run, scale 0.25")
    parser.add_argument(
        "--burst",
        type=int,
        default=None,
        help="Pipedrive burst limit per 2 s (default: unlimited; with --with-burst-limit 40)",
    )
    parser.add_argument(
        "--with-burst-limit",
        action="store_true",
        help="pace Pipedrive at --burst (default 40, Growth) and check the pacing target",
    )
    parser.add_argument(
        "--show-output", action="store_true", help="print the end of pdsync's output"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="run pdsync under py-spy (pip install py-spy) and write FILE-<scale>.txt (raw "
        "stacks of the GIL-holding thread); prints the hot spots (timings then include py-spy)",
    )
    parser.add_argument("--top", type=int, default=25, help="hot spots to print with --profile")
    parser.add_argument(
        "--no-incremental",
        action="store_true",
        help="skip the incremental step (1 %% of the records changed, then pdsync sync)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, settings, store)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.import_s = float("nan")
    if args.quick:
        args.scales = [0.25]
    if args.burst is None:
        args.burst = GROWTH_BURST if args.with_burst_limit else UNLIMITED_BURST
    if not PDSYNC.exists():
        raise SystemExit(f"{PDSYNC} not found: run `make install` first")
    if args.profile is not None and not PY_SPY.exists():
        raise SystemExit(f"--profile needs py-spy: {PY_SPY.parent / 'pip'} install py-spy")

    from deployments.prefect_server import LocalPrefectServer

    tmp = Path(tempfile.mkdtemp(prefix="pdsync-bench-"))
    server = LocalPrefectServer(tmp / "prefect-server", port=0)
    print(f"Starting a local Prefect server (not timed; logs in {tmp}) ...", flush=True)
    runs: list[Run] = []
    try:
        server.start()
        print(f"Prefect API {server.api_url}", flush=True)
        args.import_s = import_time_s()
        for scale in args.scales:
            runs.append(measure(args, scale, server, tmp))
    finally:
        server.stop()
        if not args.keep:
            import shutil

            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    report(args, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
