"""Rate limits as Pipedrive and Planhat report and enforce them (controlled clock, real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from sandbox.ratelimit import (
    PIPEDRIVE_TOKEN_COSTS,
    FixedWindow,
    PipedriveRateLimit,
    PlanhatRateLimit,
    SlidingWindow,
    TokenCosts,
    daily_budget_for,
)
from sandbox.server import ServedApp

TOKEN_A = "a" * 40
TOKEN_B = "b" * 40
TOKEN_OTHER_COMPANY = "c" * 40
UNKNOWN = "f" * 40
COMPANIES = {TOKEN_A: "acme", TOKEN_B: "acme", TOKEN_OTHER_COMPANY: "globex"}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/api/v2/deals")
    def deals() -> dict:
        return {"success": True, "data": []}

    @app.get("/api/v2/deals/search")
    def search() -> dict:
        return {"success": True, "data": {"items": []}}

    @app.post("/api/v2/deals")
    def create() -> dict:
        return {"success": True, "data": {}}

    @app.get("/api/v1/users/me")
    def me() -> dict:
        return {"success": True, "data": {}}

    @app.get("/_sandbox/counters")
    def admin() -> dict:
        return {}

    return app


@pytest.fixture(scope="module")
def pipedrive() -> Iterator[tuple[PipedriveRateLimit, FakeClock, FakeClock, str]]:
    clock = FakeClock()
    wall = FakeClock(1_790_000_000.0)  # 2026-09-21 13:33:20 UTC
    limiter = PipedriveRateLimit(
        _app(),
        burst=5,
        window_s=2.0,
        daily_budget=1000,
        clock=clock,
        company_of=COMPANIES.get,
        wall_clock=wall,
    )
    with ServedApp(limiter) as served:
        yield limiter, clock, wall, served.url


@pytest.fixture()
def pd_client(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, FakeClock, str],
) -> Iterator[httpx.Client]:
    limiter, clock, _, url = pipedrive
    limiter.reset()
    limiter.configure(burst=5, daily_budget=1000, search_burst=10)
    clock.now += 100  # every window of an earlier test has passed
    with httpx.Client(base_url=url, headers={"x-api-token": TOKEN_A}) as client:
        yield client


# -- windows --------------------------------------------------------------------------------------
def test_fixed_window_counts_and_resets() -> None:
    clock = FakeClock()
    window = FixedWindow(2, 2.0, clock)
    assert window.hit("k")[:2] == (True, 1)
    assert window.hit("k")[:2] == (True, 0)
    assert window.hit("k")[0] is False
    clock.now += 2.0
    assert window.hit("k")[:2] == (True, 1)


def test_sliding_window_frees_a_slot_when_its_oldest_hit_ages_out() -> None:
    clock = FakeClock()
    window = SlidingWindow(5, 2.0, clock)
    assert [window.hit("k")[0] for _ in range(3)] == [True] * 3  # t = 0
    clock.now += 1.5
    assert [window.hit("k")[0] for _ in range(2)] == [True] * 2  # t = 1.5
    allowed, remaining, reset = window.hit("k")
    assert (allowed, remaining, reset) == (False, 0, 0.5)  # the hits of t = 0 free at t = 2
    clock.now += 0.5  # t = 2: a fixed window would be empty; the rolling one still holds 2
    assert [window.hit("k")[0] for _ in range(4)] == [True, True, True, False]
    assert window.peek("k") == (0, 1.5)  # the next slot frees when t = 1.5's hits age out
    clock.now += 1.5  # t = 3.5
    assert window.peek("k") == (2, 0.5)
    assert window.hit("other")[:2] == (True, 4)  # keys are counted apart


# -- Pipedrive over HTTP ---------------------------------------------------------------------------
def test_every_answer_carries_the_headers(pd_client: httpx.Client) -> None:
    resp = pd_client.get("/api/v2/deals")
    assert resp.status_code == 200
    assert resp.headers["x-ratelimit-limit"] == "5"
    assert resp.headers["x-ratelimit-remaining"] == "4"
    assert resp.headers["x-ratelimit-reset"] == "2"
    assert resp.headers["x-daily-requests-left"] == "10000"  # POST/PUT fair-use counter
    assert resp.headers["x-daily-ratelimit-token-limit"] == "1000"
    assert resp.headers["x-daily-ratelimit-token-remaining"] == "990"  # v2 list: 10 tokens


def test_each_request_costs_its_endpoint_tokens(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, FakeClock, str], pd_client: httpx.Client
) -> None:
    limiter = pipedrive[0]
    left = [
        int(pd_client.request(method, path).headers["x-daily-ratelimit-token-remaining"])
        for method, path in (
            ("GET", "/api/v1/users/me"),
            ("GET", "/api/v2/deals"),
            ("POST", "/api/v2/deals"),
            ("GET", "/api/v2/deals/search"),
        )
    ]
    assert left == [998, 988, 983, 963]
    assert limiter.spent("acme") == 37


def test_only_posts_and_puts_count_against_the_daily_requests_left(
    pd_client: httpx.Client,
) -> None:
    assert pd_client.get("/api/v2/deals").headers["x-daily-requests-left"] == "10000"
    assert pd_client.post("/api/v2/deals").headers["x-daily-requests-left"] == "9999"
    assert pd_client.get("/api/v2/deals").headers["x-daily-requests-left"] == "9999"


def test_burst_limit_gives_pipedrive_429_until_the_window_rolls(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, FakeClock, str], pd_client: httpx.Client
) -> None:
    limiter, clock, _, _ = pipedrive
    statuses = [pd_client.get("/api/v2/deals").status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    over = pd_client.get("/api/v2/deals")
    assert over.json()["success"] is False and over.json()["errorCode"] == 429
    assert over.json()["error"] == "Request over limit"
    assert over.headers["x-ratelimit-remaining"] == "0"
    assert over.headers["x-daily-ratelimit-token-remaining"] == "950"  # refusals cost nothing
    assert limiter.spent("acme") == 50
    # another token has its own window; the admin prefix is never limited
    assert pd_client.get("/api/v2/deals", headers={"x-api-token": TOKEN_B}).status_code == 200
    assert pd_client.get("/_sandbox/counters").status_code == 200
    clock.now += 2.0
    assert pd_client.get("/api/v2/deals").status_code == 200


def test_the_burst_window_rolls_instead_of_restarting(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, FakeClock, str], pd_client: httpx.Client
) -> None:
    clock = pipedrive[1]
    assert [pd_client.get("/api/v2/deals").status_code for _ in range(3)] == [200] * 3
    clock.now += 1.5
    assert [pd_client.get("/api/v2/deals").status_code for _ in range(2)] == [200] * 2
    clock.now += 0.5  # the first three age out; the last two still count
    statuses = [pd_client.get("/api/v2/deals").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_search_has_its_own_tighter_burst(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, FakeClock, str], pd_client: httpx.Client
) -> None:
    limiter = pipedrive[0]
    limiter.configure(burst=100, search_burst=3)
    searches = [pd_client.get("/api/v2/deals/search") for _ in range(4)]
    assert [r.status_code for r in searches] == [200, 200, 200, 429]
    assert searches[0].headers["x-ratelimit-limit"] == "3"
    assert pd_client.get("/api/v2/deals").status_code == 200


def test_query_parameter_token_is_limited_like_the_header(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, FakeClock, str], pd_client: httpx.Client
) -> None:
    url = pipedrive[3]
    with httpx.Client(base_url=url) as bare:
        for _ in range(5):
            assert bare.get("/api/v2/deals", params={"api_token": TOKEN_B}).status_code == 200
        assert bare.get("/api/v2/deals", params={"api_token": TOKEN_B}).status_code == 429


def test_the_daily_budget_is_the_companys_shared_by_its_tokens(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, FakeClock, str], pd_client: httpx.Client
) -> None:
    limiter, clock, _, _ = pipedrive
    limiter.configure(daily_budget=25)
    assert pd_client.get("/api/v2/deals").status_code == 200  # 15 left
    other = {"x-api-token": TOKEN_B}
    assert pd_client.get("/api/v2/deals", headers=other).status_code == 200  # 5 left
    # the last request of the day may take the remainder below its cost
    last = pd_client.get("/api/v2/deals", headers=other)
    assert last.status_code == 200 and last.headers["x-daily-ratelimit-token-remaining"] == "0"
    clock.now += 10
    for token in (TOKEN_A, TOKEN_B):
        spent = pd_client.get("/api/v1/users/me", headers={"x-api-token": token})
        assert spent.status_code == 429
        assert spent.headers["x-daily-ratelimit-token-remaining"] == "0"
        assert spent.headers["x-daily-ratelimit-token-limit"] == "25"
        assert spent.headers["x-ratelimit-remaining"] != "0"  # not the burst
        assert "budget" in spent.json()["error"] and spent.json()["errorCode"] == 429
    # another company has its own budget; an unknown token is left to the gateway's 401
    assert (
        pd_client.get("/api/v2/deals", headers={"x-api-token": TOKEN_OTHER_COMPANY}).status_code
        == 200
    )
    unknown = pd_client.get("/api/v2/deals", headers={"x-api-token": UNKNOWN})
    assert unknown.status_code == 200 and "x-ratelimit-limit" not in unknown.headers
    assert limiter.spent("acme") == 30 and limiter.spent("globex") == 10


def test_the_daily_budget_comes_back_at_midnight_utc(
    pipedrive: tuple[PipedriveRateLimit, FakeClock, FakeClock, str], pd_client: httpx.Client
) -> None:
    limiter, _, wall, _ = pipedrive
    limiter.configure(daily_budget=10)
    assert pd_client.get("/api/v2/deals").status_code == 200
    assert pd_client.get("/api/v2/deals").status_code == 429
    wall.now += 86_400 - wall.now % 86_400  # the next UTC midnight
    fresh = pd_client.get("/api/v2/deals")
    assert fresh.status_code == 200
    assert fresh.headers["x-daily-ratelimit-token-remaining"] == "0"  # 10 - 10


def test_a_plan_sets_burst_and_budget_and_explicit_values_win() -> None:
    assert daily_budget_for("lite", 1) == 30_000
    assert daily_budget_for("growth", 5) == 300_000  # Pipedrive's worked example
    assert daily_budget_for("ultimate", 3) == 630_000
    with pytest.raises(ValueError, match="plan"):
        daily_budget_for("enterprise", 1)
    limiter = PipedriveRateLimit(_app())
    limiter.configure(plan="premium", seats=4)
    assert (limiter.window.limit, limiter.daily_budget) == (100, 600_000)
    limiter.configure(plan="lite", burst=7)
    assert (limiter.window.limit, limiter.daily_budget) == (7, 120_000)
    with pytest.raises(ValueError):
        limiter.configure(seats=0)


def test_token_costs_follow_the_table_and_the_kind_of_request() -> None:
    costs = TokenCosts()
    assert costs("GET", "/api/v2/deals") == 10
    assert costs("GET", "/api/v2/deals/42") == 1
    assert costs("GET", "/api/v2/deals/search") == 20  # literal before `/deals/{id}`
    assert costs("PATCH", "/api/v2/persons/7") == 5
    assert costs("GET", "/api/v1/noteFields") == costs("GET", "/v1/noteFields") == 20
    assert costs("DELETE", "/v1/notes/3") == 6
    # outside the table: the kind's typical cost
    assert costs("GET", "/api/v2/leads/9") == 1
    assert costs("GET", "/v1/mailbox/mailThreads") == 20
    assert costs("POST", "/v1/callLogs") == 10
    assert costs("GET", "/v1/itemSearch") == 40
    assert all(cost > 0 for cost in PIPEDRIVE_TOKEN_COSTS.values())


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
