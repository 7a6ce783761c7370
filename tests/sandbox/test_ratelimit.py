"""Rate limits as Pipedrive and Planhat report and enforce them (controlled clock, real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from sandbox.ratelimit import FixedWindow, PipedriveRateLimit, PlanhatRateLimit
from sandbox.server import ServedApp

TOKEN_A = "a" * 40
TOKEN_B = "b" * 40


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v2/deals")
    def deals() -> dict:
        return {"success": True, "data": []}

    @app.get("/_sandbox/counters")
    def admin() -> dict:
        return {}

    return app


@pytest.fixture(scope="module")
def pipedrive() -> Iterator[tuple[PipedriveRateLimit, FakeClock, str]]:
    clock = FakeClock()
    limiter = PipedriveRateLimit(_app(), burst=5, window_s=2.0, daily_budget=1000, clock=clock)
    with ServedApp(limiter) as served:
        yield limiter, clock, served.url


@pytest.fixture()
def pd_client(pipedrive: tuple[PipedriveRateLimit, FakeClock, str]) -> Iterator[httpx.Client]:
    limiter, clock, url = pipedrive
    limiter.reset()
    limiter.configure(burst=5, daily_budget=1000)
    with httpx.Client(base_url=url, headers={"x-api-token": TOKEN_A}) as client:
        yield client


def test_window_counts_and_resets() -> None:
    clock = FakeClock()
    window = FixedWindow(2, 2.0, clock)
    assert window.hit("k")[:2] == (True, 1)
    assert window.hit("k")[:2] == (True, 0)
    assert window.hit("k")[0] is False
    clock.now += 2.0
    assert window.hit("k")[:2] == (True, 1)


def test_every_answer_carries_the_headers(pd_client: httpx.Client) -> None:
    resp = pd_client.get("/api/v2/deals")
    assert resp.status_code == 200
    assert resp.headers["x-ratelimit-limit"] == "5"
    assert resp.headers["x-ratelimit-remaining"] == "4"
    assert resp.headers["x-ratelimit-reset"] == "2"
    assert resp.headers["x-daily-requests-left"] == "999"


def test_burst_limit_gives_pipedrive_429_until_the_window_resets(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, str], pd_client: httpx.Client
) -> None:
    _, clock, _ = pipedrive
    statuses = [pd_client.get("/api/v2/deals").status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    over = pd_client.get("/api/v2/deals")
    assert over.json()["success"] is False and over.json()["errorCode"] == 429
    assert over.headers["x-ratelimit-remaining"] == "0"
    # another token has its own window; the admin prefix is never limited
    assert pd_client.get("/api/v2/deals", headers={"x-api-token": TOKEN_B}).status_code == 200
    assert pd_client.get("/_sandbox/counters").status_code == 200
    clock.now += 2.0
    assert pd_client.get("/api/v2/deals").status_code == 200


def test_query_parameter_token_is_limited_like_the_header(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, str], pd_client: httpx.Client
) -> None:
    url = pipedrive[2]
    with httpx.Client(base_url=url) as bare:
        for _ in range(5):
            assert bare.get("/api/v2/deals", params={"api_token": TOKEN_B}).status_code == 200
        assert bare.get("/api/v2/deals", params={"api_token": TOKEN_B}).status_code == 429


def test_daily_budget_spent_says_so(
    pd_client: httpx.Client, pipedrive: tuple[PipedriveRateLimit, FakeClock, str]
) -> None:
    limiter, clock, _ = pipedrive
    limiter.configure(daily_budget=3)
    for _ in range(3):
        assert pd_client.get("/api/v2/deals").status_code == 200
    clock.now += 10
    spent = pd_client.get("/api/v2/deals")
    assert spent.status_code == 429
    assert spent.headers["x-daily-requests-left"] == "0"
    assert "Daily" in spent.json()["error"]


def test_planhat_hard_limit_and_soft_quota_headers() -> None:
    clock = FakeClock()
    limiter = PlanhatRateLimit(_app(), per_second=3, per_minute_soft=4, clock=clock)
    with (
        ServedApp(limiter) as served,
        httpx.Client(base_url=served.url, headers={"authorization": "Bearer t"}) as client,
    ):
        answers = [client.get("/api/v2/deals") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[0].headers["x-rate-limit-limit"] == "4"
        assert answers[0].headers["x-rate-limit-remaining"] == "3"
        assert answers[3].headers["retry-after"] == "1"
        clock.now += 1.0
        # past the soft quota Planhat still answers; it only reports 0 remaining
        extra = [client.get("/api/v2/deals") for _ in range(2)]
        assert [a.status_code for a in extra] == [200, 200]
        assert extra[-1].headers["x-rate-limit-remaining"] == "0"
