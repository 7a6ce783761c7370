"""Benchmark: the full backfill ("Fetch All") of the sandbox's `large` data set, end to end.

Starts the sandbox in its own process (`python -m sandbox --dataset large`, burst limit raised
so that the figure is the pipeline's, not Pipedrive's pacing; pass --burst 40 for Growth-plan
pacing), then runs the `incremental-sync` flow with `full=True` in this process against a fresh
SQLite state store, on an ephemeral Prefect API. Prints the wall time, this process's peak
memory, the calls made to each API (the sandbox's counters) against the minimum
Σ ceil(n/500) + Σ ceil(n/5000), and the run's counts.

    .venv/bin/python bench/pipeline_backfill.py [--dataset large] [--burst 1000000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="large")
    parser.add_argument("--burst", type=int, default=1_000_000)
    args = parser.parse_args()

    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "sandbox",
            "--dataset",
            args.dataset,
            "--pipedrive-port",
            "0",
            "--planhat-port",
            "0",
            "--burst",
            str(args.burst),
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Path(tmp) / "settings"
            settings.mkdir()
            data = yaml.safe_load(
                (ROOT / "deployments/sandbox_settings/integration.yaml").read_text()
            )
            data["connection"]["pipedrive"]["company_url"] = info["pipedrive_url"]
            data["connection"]["planhat"]["base_url"] = info["planhat_url"]
            data["connection"]["receiver"]["public_url"] = None
            data["store"]["url"] = f"sqlite:///{Path(tmp) / 'state.db'}"
            (settings / "integration.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))
            (settings / "custom_matches.yaml").write_text(
                (ROOT / "deployments/sandbox_settings/custom_matches.yaml").read_text()
            )
            os.environ["SANDBOX_PIPEDRIVE_TOKEN"] = info["pipedrive_token"]
            os.environ["SANDBOX_PLANHAT_TOKEN"] = info["planhat_token"]
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
            os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
            os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

            from flows.incremental_sync import incremental_sync

            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            started = time.perf_counter()
            report = incremental_sync(full=True, settings_dir=str(settings))
            elapsed = time.perf_counter() - started
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        pd_counts = httpx.get(f"{info['pipedrive_url']}/_sandbox/counters").json()
        ph_counts = httpx.get(f"{info['planhat_url']}/_sandbox/counters").json()
        counts = info["counts"]
        listed = sum(
            math.ceil(counts[k] / 500) for k in ("deals", "organizations", "persons", "notes")
        )
        written = {
            k: v.get("created", 0) + v.get("updated", 0) for k, v in report["counts"].items()
        }
        upserts = sum(math.ceil(n / 5000) for n in written.values() if n)
        minimum = listed + 5 + upserts + 1
        print(
            f"backfill of '{args.dataset}' (burst {args.burst}): {elapsed:.1f} s wall, "
            f"peak RSS {peak:.0f} MiB (before the run {rss_before:.0f} MiB)"
        )
        print(
            f"calls: Pipedrive {pd_counts['total']}, Planhat {ph_counts['total']} = "
            f"{pd_counts['total'] + ph_counts['total']} (minimum ≈ {minimum}: {listed} list "
            f"pages + 5 account lists + {upserts} upserts + 1 Planhat users)"
        )
        print("Pipedrive:", json.dumps(pd_counts["routes"]))
        print("Planhat:  ", json.dumps(ph_counts["routes"]))
        for obj, by_action in sorted(report["counts"].items()):
            print(f"  {obj:13s} {json.dumps(by_action)}")
    finally:
        proc.terminate()
        proc.wait(15)


if __name__ == "__main__":
    main()
