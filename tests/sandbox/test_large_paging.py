"""The `large` data set pages through in exactly ceil(n / 500) requests, every deal once."""

from __future__ import annotations

import math

import httpx
import pytest

from sandbox.runner import Sandbox


@pytest.mark.slow
def test_all_large_deals_in_exactly_100_pages_of_500() -> None:
    with Sandbox("large", burst=1_000_000) as sb:
        total = len(sb.pipedrive_seed.deals)
        assert total == 50_000
        seen: list[int] = []
        cursor: str | None = None
        with httpx.Client(
            base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}, timeout=30
        ) as client:
            while True:
                params: dict[str, str | int] = {"limit": 500}
                if cursor:
                    params["cursor"] = cursor
                body = client.get("/api/v2/deals", params=params).raise_for_status().json()
                seen += [deal["id"] for deal in body["data"]]
                cursor = body["additional_data"]["next_cursor"]
                if cursor is None:
                    break
        requests = sb.pipedrive.counters.get("GET /api/v2/deals")
        assert requests == math.ceil(total / 500) == 100
        assert len(seen) == len(set(seen)) == total
        assert seen == sorted(seen)  # default order: id ascending
