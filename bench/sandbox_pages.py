"""Benchmark: how fast the sandbox Pipedrive serves 500-item list pages of the `large` data set.

Starts `python -m sandbox --dataset large` as its own process (the documented command line, with
the burst limit raised so the rate limiter does not pace the client), then pages through every
deal, organization and person with `limit=500` over HTTP, several rounds, and prints pages/s,
records/s and per-page latency percentiles. The target for this 2-core machine is ≥ 200 pages/s.

    .venv/bin/python bench/sandbox_pages.py [--rounds 3] [--dataset large]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import httpx
import orjson


def start_sandbox(dataset: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
        [
            sys.executable,
            "-m",
            "sandbox",
            "--dataset",
            dataset,
            "--pipedrive-port",
            "0",
            "--planhat-port",
            "0",
            "--burst",
            "1000000",
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise SystemExit("the sandbox did not start")
    return proc, json.loads(line)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def page_through(client: httpx.Client, path: str) -> tuple[int, int, list[float]]:
    pages = records = 0
    latencies: list[float] = []
    cursor = None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        t0 = time.perf_counter()
        resp = client.get(path, params=params)
        resp.raise_for_status()
        body = orjson.loads(resp.content)
        latencies.append(time.perf_counter() - t0)
        pages += 1
        records += len(body["data"])
        cursor = body["additional_data"]["next_cursor"]
        if not cursor:
            return pages, records, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="large")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    proc, info = start_sandbox(args.dataset)
    startup = time.perf_counter() - t0
    try:
        headers = {"x-api-token": info["pipedrive_token"]}
        with httpx.Client(base_url=info["pipedrive_url"], headers=headers, timeout=30) as client:
            # warm-up: builds the server's per-query caches the first time
            page_through(client, "/api/v2/deals")
            print(
                f"sandbox '{args.dataset}' ready in {startup:.1f}s, server RSS "
                f"{rss_mib(proc.pid):.0f} MiB, {os.cpu_count()} cores"
            )
            for path in ("/api/v2/deals", "/api/v2/organizations", "/api/v2/persons"):
                all_lat: list[float] = []
                total_pages = total_records = 0
                t_start = time.perf_counter()
                for _ in range(args.rounds):
                    pages, records, lat = page_through(client, path)
                    total_pages += pages
                    total_records += records
                    all_lat += lat
                elapsed = time.perf_counter() - t_start
                qs = statistics.quantiles(all_lat, n=20)
                print(
                    f"{path:24s} {total_pages / elapsed:7.1f} pages/s "
                    f"{total_records / elapsed:9.0f} records/s  "
                    f"p50 {statistics.median(all_lat) * 1000:5.1f} ms  "
                    f"p95 {qs[18] * 1000:5.1f} ms  ({total_pages} pages of 500, "
                    f"{args.rounds} rounds)"
                )
            print(f"server RSS after: {rss_mib(proc.pid):.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
