"""Benchmark: the API clients against the sandbox's `large` data set, in-process.

Prints, for the Pipedrive client, seconds and requests to page every deal, organization and
person at 500 a page (burst limit off, then Pipedrive's Growth burst of 40 per 2 s, paced by the
client's limiter: 429s should stay 0), and for the Planhat client the time to bulk-upsert
20,000 companies in chunks of 5,000 and list them back. Figures only; nothing is asserted.

    .venv/bin/python bench/clients_paging.py
"""

from __future__ import annotations

import time

from clients.pipedrive import PipedriveClient
from clients.planhat import PlanhatClient
from sandbox.runner import Sandbox


def main() -> None:
    started = time.perf_counter()
    with Sandbox("large", burst=1_000_000) as sb:
        print(f"sandbox large up in {time.perf_counter() - started:.1f} s")
        for burst in (1_000_000, 40):
            sb.pipedrive.ratelimit.configure(burst=burst)
            sb.pipedrive.ratelimit.reset()
            for name in ("deals", "organizations", "persons"):
                sb.pipedrive.counters.reset()
                with PipedriveClient(
                    sb.pipedrive_url, sb.pipedrive_token, allow_local_http=True
                ) as pd:
                    t = time.perf_counter()
                    count = sum(1 for _ in getattr(pd, f"iter_{name}")())
                    seconds = time.perf_counter() - t
                route = f"GET /api/v2/{name}"
                print(
                    f"pipedrive burst={burst:>7} {name:>13}: {count:>6} records in "
                    f"{seconds:5.2f} s ({count / seconds:>8.0f}/s), "
                    f"{sb.pipedrive.counters.get(route)} requests, "
                    f"{sb.pipedrive.counters.get(route + ' 429')} × 429"
                )
        items = [{"sourceId": f"bench-{i}", "name": f"Bench {i}"} for i in range(20_000)]
        with PlanhatClient(sb.planhat_token, base_url=sb.planhat_url, allow_local_http=True) as ph:
            t = time.perf_counter()
            result = ph.bulk_upsert("companies", items)
            upsert_s = time.perf_counter() - t
            t = time.perf_counter()
            listed = sum(1 for _ in ph.iter_records("companies"))
            list_s = time.perf_counter() - t
        print(
            f"planhat bulk upsert 20000 companies: {upsert_s:.2f} s in {result.requests} requests "
            f"({result.summary()['created']} created); list back {listed} in {list_s:.2f} s"
        )


if __name__ == "__main__":
    main()
