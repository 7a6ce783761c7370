"""Constants and helpers shared by the client tests (fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

import httpx

PD_URL = "https://acme.pipedrive.com"
PD_TOKEN = "0123456789abcdef0123456789abcdef01234567"
PH_URL = "https://api.planhat.com"
PH_TOKEN = "ph-secret-Token-5f0c2a9b8e4d3c2b1a0f9e8d"


class FakeTime:
    """`clock` and `sleep` for the clients: sleeping advances the clock and is recorded."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    @property
    def slept(self) -> float:
        return sum(self.sleeps)


def envelope(data: Any, **additional: Any) -> dict[str, Any]:
    return {"success": True, "data": data, "additional_data": additional or None}


def pd_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None, **additional: Any
) -> httpx.Response:
    return httpx.Response(status, json=envelope(data, **additional), headers=headers)


def pd_error(
    status: int, error: str, headers: dict[str, str] | None = None, **extra: Any
) -> httpx.Response:
    body = {
        "success": False,
        "error": error,
        "error_info": "Please check developers.pipedrive.com",
        "data": None,
        "additional_data": None,
        **extra,
    }
    return httpx.Response(status, json=body, headers=headers)
