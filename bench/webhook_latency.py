"""Webhook → Planhat latency in one-machine mode (prints figures, asserts nothing).

    .venv/bin/python bench/webhook_latency.py [--n 50] [--gap 1.0] [--burst]

Starts what `pdsync demo` starts (the sandbox with the demo data, a local Prefect server, the
backfill, `pdsync serve` as a subprocess), then changes the value of `--n` won deals in the
selected pipelines through the sandbox Pipedrive API, one at a time (the next change `--gap`
seconds after the previous license was updated; `--burst`: all at once). For each it reports:

* received → run created: the receiver stored the webhook (the inbox's `received_at`) until
  Prefect created the deal-sync run (the trigger fired);
* received → run started: until the run's flow code started (runner poll and process spawn);
* received → upsert done: until the license's `updatedAt` in the sandbox Planhat.

The Prefect settings used are printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deployments.demo import Demo, _selected_pipelines, deal_sync_runs  # noqa: E402


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--burst", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    from rich.console import Console

    demo = Demo(None, keep_running=False, timeout_s=600, console=Console(highlight=False))
    try:
        return _bench(demo, args)
    finally:
        demo.stop()


def _bench(demo: Demo, args: argparse.Namespace) -> int:
    # the demo's set-up, up to serving (the same steps as `pdsync demo`)
    import secrets

    from deployments.prefect_server import LocalPrefectServer, free_port, prefect_settings
    from deployments.receiver import WEBHOOK_PATH
    from mappings.loading import load_settings
    from sandbox.runner import Sandbox

    home = demo.work / "prefect"
    os.environ["PREFECT_HOME"] = str(home)
    demo.server = LocalPrefectServer(home, port=0).launch()
    demo.sandbox = sb = Sandbox("demo").start()
    os.environ["SANDBOX_PIPEDRIVE_TOKEN"] = sb.pipedrive_token
    os.environ["SANDBOX_PLANHAT_TOKEN"] = sb.planhat_token
    os.environ["SANDBOX_WEBHOOK_PASSWORD"] = secrets.token_urlsafe(18)
    port = free_port()
    from deployments.demo import write_demo_settings

    settings_dir = write_demo_settings(
        demo.base_dir,
        demo.work / "settings",
        pipedrive_url=sb.pipedrive_url,
        planhat_url=sb.planhat_url,
        receiver_url=f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
    )
    demo.server.wait_ready()
    api_url = demo.server.api_url
    with prefect_settings(api_url):
        demo._connect_and_backfill(str(settings_dir))
        demo._start_serve(settings_dir, port, api_url)
        settings = load_settings(str(settings_dir))
        selected = _selected_pipelines(
            list(settings.integration.deals.pipelines),
            [dict(p) for p in sb.pipedrive_seed.pipelines],
        )
        licensed = {
            int(r["sourceId"]): r
            for r in sb.planhat.records("licenses")
            if str(r.get("sourceId") or "").isdigit()
        }
        deals = [
            d
            for d in sb.pipedrive_seed.deals
            if d["status"] == "won" and d["pipeline_id"] in selected and d["id"] in licensed
        ][: args.n]
        if len(deals) < args.n:
            print(f"only {len(deals)} licensed won deals in the selected pipelines")
        sb.pipedrive.deliveries()  # the log so far
        pd = httpx.Client(
            base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}, timeout=30
        )
        patched: dict[int, tuple[float, float]] = {}

        def license_value(deal_id: int) -> Any:
            for r in sb.planhat.records("licenses"):
                if str(r.get("sourceId")) == str(deal_id):
                    return r
            return None

        started = time.time()
        for i, deal in enumerate(deals):
            value = float(deal.get("value") or 0) + 1000 + i
            pd.patch(f"/api/v2/deals/{deal['id']}", json={"value": value}).raise_for_status()
            patched[deal["id"]] = (time.time(), value)
            if args.burst:
                continue
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                lic = license_value(deal["id"])
                if lic and float(lic.get("value") or 0) == value:
                    break
                time.sleep(0.05)
            time.sleep(args.gap)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = [
                d
                for d, (_, v) in patched.items()
                if (lic := license_value(d)) and float(lic.get("value") or 0) == v
            ]
            if len(done) == len(patched):
                break
            time.sleep(0.2)
        wall = time.time() - started
        deliveries: dict[int, float] = {}  # deal id → when the receiver stored its webhook
        import sqlalchemy as sa

        from store import StateStore
        from store.schema import inbox

        with StateStore(settings.store_url) as store, store.engine.connect() as conn:
            for payload, received_at in conn.execute(
                sa.select(inbox.c.payload, inbox.c.received_at)
            ):
                meta = payload.get("meta") or {}
                entity = meta.get("entity_id", meta.get("id"))
                if str(entity).isdigit() and int(entity) in patched:
                    at = received_at.timestamp()
                    if at >= patched[int(entity)][0] - 1:
                        deliveries.setdefault(int(entity), at)
        with httpx.Client(base_url=api_url, timeout=10) as api:
            runs = deal_sync_runs(api)
        rows: dict[str, list[float]] = {"created": [], "started": [], "upsert": [], "patch": []}
        for deal_id, (patched_at, _) in patched.items():
            received = deliveries.get(deal_id)
            lic = license_value(deal_id)
            run = runs.get(deal_id)
            if received is None or lic is None or run is None:
                print(f"deal {deal_id}: incomplete (delivery {received}, run {bool(run)})")
                continue
            rows["created"].append(_ts(run["created"]) - received)
            if run.get("start_time"):
                rows["started"].append(_ts(run["start_time"]) - received)
            rows["upsert"].append(_ts(lic["updatedAt"]) - received)
            rows["patch"].append(_ts(lic["updatedAt"]) - patched_at)
    print()
    mode = "burst (all at once)" if args.burst else f"sequential, {args.gap:g} s apart"
    print(
        f"{len(rows['upsert'])} notifications, {mode}, {wall:.1f} s in all; cores: {os.cpu_count()}"
    )
    print(
        "Prefect: local `prefect server start` (SQLite), pdsync serve (Runner), "
        "PREFECT_RUNNER_POLL_FREQUENCY=1, deal-sync concurrency 4 (ENQUEUE), runner limit 6"
    )
    for key, label in (
        ("created", "received → run created"),
        ("started", "received → run started"),
        ("upsert", "received → upsert done"),
        ("patch", "PATCH → upsert done"),
    ):
        values = rows[key]
        if values:
            print(
                f"  {label:<26} p50 {_pct(values, 0.5):6.2f} s   p95 {_pct(values, 0.95):6.2f} s"
                f"   max {max(values):6.2f} s   mean {statistics.mean(values):6.2f} s"
            )
    demo.ok = True  # its temporary files go
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
