"""Benchmark: how fast the sandbox Pipedrive serves 500-item list pages of the `large` data set.

Starts `python -m sandbox --dataset large` as its own process (the documented command line, with
the burst limit raised so that the rate limiter does not pace the client), then pages through
every deal, organization and person with `limit=500`, several rounds, and prints pages/s,
records/s and per-page latency percentiles, measured two ways:

* `raw`: a minimal keep-alive HTTP/1.1 client on a socket that reads each answer whole and takes
  only `next_cursor` out of it. This is the server's own throughput (what "the sandbox is not
  the bottleneck" means); the target on this 2-core machine is ≥ 200 pages/s.
* `httpx`: httpx plus a full JSON decode of every page, i.e. what a real client costs. The
  client's decoding, not the server, bounds this figure.

    .venv/bin/python bench/sandbox_pages.py [--rounds 3] [--dataset large]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import quote, urlsplit

import httpx
import orjson

_CURSOR = re.compile(rb'"next_cursor":(null|"([^"]*)")')
_COUNT_HINT = re.compile(rb'"id":')


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


class RawClient:
    """Keep-alive HTTP/1.1 GETs over one socket; returns the body bytes undecoded."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = f"Host: {parts.netloc}\r\nx-api-token: {token}\r\n"
        self.buf = b""

    def get(self, target: str) -> bytes:
        self.sock.sendall(f"GET {target} HTTP/1.1\r\n{self.head}\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 20)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        chunks = [rest]
        have = len(rest)
        while have < length:
            chunk = self.sock.recv(1 << 20)
            chunks.append(chunk)
            have += len(chunk)
        data = b"".join(chunks)
        body, self.buf = data[:length], data[length:]
        if status != 200:
            raise RuntimeError(f"GET {target} -> {status}: {body[:200]!r}")
        return body

    def close(self) -> None:
        self.sock.close()


def page_raw(client: RawClient, path: str) -> tuple[int, int, list[float]]:
    pages = records = 0
    latencies: list[float] = []
    cursor: str | None = None
    while True:
        target = f"{path}?limit=500" + (f"&cursor={quote(cursor)}" if cursor else "")
        t0 = time.perf_counter()
        body = client.get(target)
        latencies.append(time.perf_counter() - t0)
        pages += 1
        records += 500  # every page but the last is full; corrected below
        match = _CURSOR.search(body, max(0, len(body) - 400))
        cursor = match.group(2).decode() if match and match.group(2) is not None else None
        if not cursor:
            records -= 500 - len(orjson.loads(body)["data"])
            return pages, records, latencies


def page_httpx(client: httpx.Client, path: str) -> tuple[int, int, list[float]]:
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


def measure(label: str, pager: Callable[[str], tuple[int, int, list[float]]], rounds: int) -> None:
    for path in ("/api/v2/deals", "/api/v2/organizations", "/api/v2/persons"):
        all_lat: list[float] = []
        total_pages = total_records = 0
        t_start = time.perf_counter()
        for _ in range(rounds):
            pages, records, lat = pager(path)
            total_pages += pages
            total_records += records
            all_lat += lat
        elapsed = time.perf_counter() - t_start
        p95 = statistics.quantiles(all_lat, n=20)[18]
        print(
            f"{label:5s} {path:22s} {total_pages / elapsed:7.1f} pages/s "
            f"{total_records / elapsed:9.0f} records/s  "
            f"p50 {statistics.median(all_lat) * 1000:5.1f} ms  p95 {p95 * 1000:5.1f} ms  "
            f"({total_pages} pages, {rounds} rounds)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="large")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    proc, info = start_sandbox(args.dataset)
    startup = time.perf_counter() - t0
    try:
        url, token = info["pipedrive_url"], info["pipedrive_token"]
        raw = RawClient(url, token)
        cold = []
        for path in ("/api/v2/deals", "/api/v2/organizations", "/api/v2/persons"):
            t_cold = time.perf_counter()
            pages, _, _ = page_raw(raw, path)  # first pass builds the server's per-query caches
            cold.append(f"{path} {pages / (time.perf_counter() - t_cold):.0f}")
        print(f"first (cold) pass, pages/s: {', '.join(cold)}")
        print(
            f"sandbox '{args.dataset}' ready in {startup:.1f}s, server RSS "
            f"{rss_mib(proc.pid):.0f} MiB, {os.cpu_count()} cores"
        )
        measure("raw", lambda path: page_raw(raw, path), args.rounds)
        raw.close()
        with httpx.Client(base_url=url, headers={"x-api-token": token}, timeout=30) as client:
            measure("httpx", lambda path: page_httpx(client, path), args.rounds)
        print(f"server RSS after: {rss_mib(proc.pid):.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
