"""What the end-to-end tests read from a Prefect API."""

from __future__ import annotations

from typing import Any

import httpx


def deal_sync_runs(api_url: str) -> list[dict[str, Any]]:
    """Every run of the deal-sync/deal-sync deployment, oldest expected start first."""
    with httpx.Client(base_url=api_url, timeout=30) as api:
        dep = api.get("/deployments/name/deal-sync/deal-sync").raise_for_status().json()
        runs: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = (
                api.post(
                    "/flow_runs/filter",
                    json={
                        "flow_runs": {"deployment_id": {"any_": [dep["id"]]}},
                        "sort": "EXPECTED_START_TIME_ASC",
                        "limit": 200,
                        "offset": offset,
                    },
                )
                .raise_for_status()
                .json()
            )
            runs += page
            if len(page) < 200:
                return runs
            offset += 200
