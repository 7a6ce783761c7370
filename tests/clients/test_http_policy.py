"""The one retry and limit policy (`clients.http`), seen through both clients with respx and a
fake clock: every 429 flavour, 5xx and timeouts, what is (not) retried, the pacing limiter,
Cloudflare's HTML 403, and the DEBUG request log."""

from __future__ import annotations

import gc
import logging
import random
import weakref
from collections.abc import Callable

import httpx
import pytest
import respx
from clients_support import FakeTime, pd_error, pd_response

from clients import (
    BlockedError,
    PipedriveClient,
    PlanhatClient,
    RateLimitedError,
    RetryPolicy,
    UnavailableError,
)
from clients.http import HttpClient, RateLimiter, ServiceProfile

MakePipedrive = Callable[..., PipedriveClient]
MakePlanhat = Callable[..., PlanhatClient]
OK_DEAL = pd_response({"id": 1})


def over_limit(**headers: str) -> httpx.Response:
    return pd_error(429, "Request over limit", headers=headers, errorCode=429)


# -- 429 ------------------------------------------------------------------------------------------
def test_429_with_retry_after_waits_exactly_that_long(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(
        side_effect=[over_limit(**{"retry-after": "7"}), OK_DEAL]
    )
    assert make_pipedrive().get_deal(1) == {"id": 1}
    assert route.call_count == 2
    assert fake_time.sleeps == [7.0]


def test_429_with_remaining_0_waits_for_the_reset(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(
        side_effect=[
            over_limit(
                **{
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": "2",
                    "x-ratelimit-limit": "20",
                    "x-daily-requests-left": "900",
                }
            ),
            OK_DEAL,
        ]
    )
    assert make_pipedrive().get_deal(1) == {"id": 1}
    assert route.call_count == 2
    assert fake_time.slept == pytest.approx(2.0)


def test_429_without_headers_backs_off_exponentially_with_jitter(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(
        side_effect=[over_limit(), over_limit(), over_limit(), OK_DEAL]
    )
    client = make_pipedrive(retry=RetryPolicy(max_attempts=6, backoff_base_s=1.0))
    assert client.get_deal(1) == {"id": 1}
    assert route.call_count == 4
    first, second, third = fake_time.sleeps
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0 and 2.0 <= third <= 4.0


def test_persistent_429_ends_in_one_clear_error_after_bounded_attempts(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals").mock(
        return_value=over_limit(**{"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"})
    )
    client = make_pipedrive(retry=RetryPolicy(max_attempts=4, max_total_wait_s=60))
    with pytest.raises(RateLimitedError) as caught:
        list(client.iter_deals())
    assert route.call_count == 4  # bounded: no hot loop
    assert fake_time.slept == pytest.approx(6.0)  # three waits of the 2 s reset
    error = caught.value
    assert not error.daily_budget_spent and error.attempts == 4
    assert "after 4 attempts" in str(error) and "daily API budget" in str(error)
    assert "Run the sync again later" in str(error)


def test_total_wait_is_capped_too(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(return_value=over_limit(**{"retry-after": "4"}))
    client = make_pipedrive(retry=RetryPolicy(max_attempts=100, max_total_wait_s=10))
    with pytest.raises(RateLimitedError):
        client.get_deal(1)
    assert fake_time.slept <= 10
    assert route.call_count == 3  # 4 + 4 s waited; a third wait would pass 10 s


def test_a_retry_after_longer_than_the_budget_stops_at_once(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(
        return_value=over_limit(**{"retry-after": "3600"})
    )
    with pytest.raises(RateLimitedError, match="asked to wait 3600 s"):
        make_pipedrive().get_deal(1)
    assert route.call_count == 1 and fake_time.sleeps == []


def test_retry_after_as_an_http_date_is_honoured(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    import time
    from email.utils import formatdate

    when = formatdate(time.time() + 5, usegmt=True)
    pd_router.get("/api/v2/deals/1").mock(
        side_effect=[over_limit(**{"retry-after": when}), OK_DEAL]
    )
    make_pipedrive().get_deal(1)
    assert 3.0 <= fake_time.slept <= 5.5


def budget_spent(**headers: str) -> httpx.Response:
    return pd_error(
        429,
        "Daily API token budget exceeded",
        errorCode=429,
        headers={"x-ratelimit-remaining": "17", "x-ratelimit-reset": "2", **headers},
    )


def test_daily_budget_spent_stops_at_once_with_a_clear_error(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals").mock(
        return_value=budget_spent(
            **{
                "x-daily-ratelimit-token-limit": "300000",
                "x-daily-ratelimit-token-remaining": "0",
                "x-daily-requests-left": "9876",
            }
        )
    )
    with pytest.raises(RateLimitedError) as caught:
        list(make_pipedrive().iter_deals())
    assert route.call_count == 1 and fake_time.sleeps == []  # not retried
    assert caught.value.daily_budget_spent and caught.value.status == 429
    message = str(caught.value)
    assert "daily API budget is spent" in message and "midnight" in message
    assert "x-daily-ratelimit-token-remaining: 0" in message


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_spent_post_put_allowance_stops_a_write_at_once(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime, method: str
) -> None:
    spent = budget_spent(**{"x-daily-requests-left": "0"})
    if method == "POST":
        route = pd_router.post("/api/v1/notes").mock(return_value=spent)
        call = lambda client: client.create_note({"content": "x", "deal_id": 1})  # noqa: E731
    else:
        route = pd_router.put("/api/v1/notes/5").mock(return_value=spent)
        call = lambda client: client.update_note(5, {"content": "x"})  # noqa: E731
    with pytest.raises(RateLimitedError) as caught:
        call(make_pipedrive())
    assert route.call_count == 1 and fake_time.sleeps == []
    assert caught.value.daily_budget_spent
    assert "x-daily-requests-left: 0" in str(caught.value)


def test_a_spent_post_put_allowance_does_not_stop_a_read(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    """`x-daily-requests-left` counts POST/PUT requests only: a GET's 429 is a burst 429."""
    route = pd_router.get("/api/v2/deals/1").mock(
        side_effect=[
            over_limit(
                **{
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": "2",
                    "x-daily-requests-left": "0",
                    "x-daily-ratelimit-token-remaining": "120000",
                }
            ),
            OK_DEAL,
        ]
    )
    assert make_pipedrive().get_deal(1) == {"id": 1}
    assert route.call_count == 2 and fake_time.slept == pytest.approx(2.0)


def test_a_create_is_retried_after_a_429(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.post("/api/v2/deals").mock(
        side_effect=[over_limit(**{"retry-after": "1"}), pd_response({"id": 5}, status=201)]
    )
    assert make_pipedrive().create_deal({"title": "x"})["id"] == 5
    assert route.call_count == 2  # a 429 is refused unprocessed: no duplicate possible


# -- 5xx, timeouts, dropped connections -----------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_success(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime, status: int
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(
        side_effect=[pd_error(status, "An internal server error occurred"), OK_DEAL]
    )
    assert make_pipedrive().get_deal(1) == {"id": 1}
    assert route.call_count == 2 and len(fake_time.sleeps) == 1


def test_persistent_5xx_raises_unavailable_after_max_attempts(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(return_value=pd_error(503, "Service unavailable"))
    with pytest.raises(UnavailableError, match="HTTP 503: Service unavailable") as caught:
        make_pipedrive(retry=RetryPolicy(max_attempts=3)).get_deal(1)
    assert route.call_count == 3 and caught.value.attempts == 3
    assert "try again later" in str(caught.value)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected"),
        httpx.ReadError("reset by peer"),
        httpx.ConnectError("refused"),
    ],
)
def test_timeouts_and_dropped_connections_then_success(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime, exc: Exception
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(side_effect=[exc, OK_DEAL])
    assert make_pipedrive().get_deal(1) == {"id": 1}
    assert route.call_count == 2


def test_persistent_timeout_raises_unavailable(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(side_effect=httpx.ReadTimeout("timed out"))
    with pytest.raises(UnavailableError, match="did not answer GET /api/v2/deals/1 in time"):
        make_pipedrive(retry=RetryPolicy(max_attempts=3)).get_deal(1)
    assert route.call_count == 3


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("disconnected"),
        pd_error(500, "An internal server error occurred"),
        pd_error(503, "Service unavailable"),
    ],
)
def test_a_create_is_not_retried_once_it_may_have_arrived(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, failure: object
) -> None:
    route = pd_router.post("/api/v2/organizations").mock(
        side_effect=[failure, pd_response({"id": 1})]
    )
    with pytest.raises(UnavailableError, match="not retried.*may already have reached"):
        make_pipedrive().create_organization({"name": "Acme"})
    assert route.call_count == 1


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")])
def test_a_create_is_retried_when_it_never_left(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, exc: Exception
) -> None:
    route = pd_router.post("/api/v1/notes").mock(side_effect=[exc, pd_response({"id": 3})])
    assert make_pipedrive().create_note({"content": "x", "deal_id": 1})["id"] == 3
    assert route.call_count == 2


def test_updates_and_deletes_are_retried(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    patch = pd_router.patch("/api/v2/deals/1").mock(
        side_effect=[httpx.ReadTimeout("t"), pd_response({"id": 1})]
    )
    put = pd_router.put("/api/v1/notes/2").mock(
        side_effect=[pd_error(502, "Bad gateway"), pd_response({"id": 2})]
    )
    delete = pd_router.delete("/api/v1/webhooks/3").mock(
        side_effect=[pd_error(503, "x"), httpx.Response(200, json={"success": True})]
    )
    client = make_pipedrive()
    client.update_deal(1, {"title": "t"})
    client.update_note(2, {"content": "c"})
    client.delete_webhook(3)
    assert (patch.call_count, put.call_count, delete.call_count) == (2, 2, 2)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_client_errors_are_not_retried(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, status: int
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(return_value=pd_error(status, "no"))
    with pytest.raises(Exception) as caught:
        make_pipedrive().get_deal(1)
    assert route.call_count == 1
    assert caught.value.status == status  # type: ignore[attr-defined]


def test_typed_errors_per_status(make_pipedrive: MakePipedrive, pd_router: respx.Router) -> None:
    from clients import BadRequestError, ForbiddenError, GoneError, NotFoundError

    expected = {
        400: BadRequestError,
        403: ForbiddenError,
        404: NotFoundError,
        410: GoneError,
        422: BadRequestError,
        402: ForbiddenError,
    }
    client = make_pipedrive()
    for status, cls in expected.items():
        pd_router.get(f"/api/v2/deals/{status}").mock(
            return_value=pd_error(status, f"problem {status}", code="feature_capping_deals_limit")
        )
        with pytest.raises(cls, match=f"problem {status}"):
            client.get_deal(status)


def test_bad_request_keeps_pipedrives_message(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    from clients import BadRequestError

    pd_router.get("/api/v2/deals").mock(
        return_value=pd_error(
            400,
            "Validation failed: updated_since: not a valid datetime",
            code="ERR_SCHEMA_VALIDATION_FAILED",
        )
    )
    with pytest.raises(BadRequestError) as caught:
        list(make_pipedrive().iter_deals(updated_since="yesterday"))
    assert "updated_since: not a valid datetime" in str(caught.value)
    assert caught.value.detail == "Validation failed: updated_since: not a valid datetime"


# -- Cloudflare -----------------------------------------------------------------------------------
CLOUDFLARE_PAGE = """<!DOCTYPE html>
<html lang="en-US"><head><title>Attention Required! | Cloudflare</title></head>
<body><h1>Sorry, you have been blocked</h1><p>Cloudflare Ray ID: 8a1b2c3d4e5f6a7b</p></body></html>
"""


def test_cloudflare_html_403_is_recognised_and_explained(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    route = pd_router.get("/api/v2/deals").mock(
        return_value=httpx.Response(
            403,
            text=CLOUDFLARE_PAGE,
            headers={
                "content-type": "text/html; charset=UTF-8",
                "server": "cloudflare",
                "cf-ray": "8a1b2c3d4e5f6a7b-FRA",
            },
        )
    )
    with pytest.raises(BlockedError) as caught:
        list(make_pipedrive().iter_deals())
    message = str(caught.value)
    assert "Cloudflare" in message and "429" in message and "Wait" in message
    assert "<html" not in message and "DOCTYPE" not in message
    assert route.call_count == 1  # hammering on would only extend the block


def test_a_json_403_is_a_permission_error_not_cloudflare(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    from clients import ForbiddenError

    pd_router.get("/api/v2/deals").mock(
        return_value=pd_error(403, "You do not have permissions to do this.")
    )
    with pytest.raises(ForbiddenError) as caught:
        list(make_pipedrive().iter_deals())
    assert not isinstance(caught.value, BlockedError)
    assert "You do not have permissions" in str(caught.value) and "admin" in str(caught.value)


def test_a_non_json_error_body_is_survived(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    pd_router.get("/api/v2/deals/1").mock(
        return_value=httpx.Response(
            500, text="upstream connect error", headers={"content-type": "text/plain"}
        )
    )
    with pytest.raises(UnavailableError, match="upstream connect error"):
        make_pipedrive(retry=RetryPolicy(max_attempts=1)).get_deal(1)


# -- the pacing limiter ---------------------------------------------------------------------------
def test_limiter_waits_for_the_window_when_nothing_is_left(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    """remaining 0 + reset 2 on a 200: the next request waits 2 s instead of earning a 429."""
    answers = iter(
        [
            pd_response(
                {"id": 1}, headers={"x-ratelimit-remaining": "1", "x-ratelimit-reset": "2"}
            ),
            pd_response(
                {"id": 1}, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"}
            ),
            pd_response(
                {"id": 1}, headers={"x-ratelimit-remaining": "9", "x-ratelimit-reset": "2"}
            ),
        ]
    )
    route = pd_router.get("/api/v2/deals/1").mock(side_effect=lambda request: next(answers))
    client = make_pipedrive()
    client.get_deal(1)
    client.get_deal(1)
    assert fake_time.sleeps == []
    client.get_deal(1)
    assert fake_time.sleeps == [pytest.approx(2.0)]
    assert route.call_count == 3


def test_limiter_never_trusts_a_reset_beyond_the_burst_window(fake_time: FakeTime) -> None:
    profile = ServiceProfile(name="X", window_s=2.0, remaining_header="r", reset_header="s")
    limiter = RateLimiter(profile, fake_time.clock, fake_time.sleep)
    limiter.acquire()
    limiter.release(httpx.Headers({"r": "0", "s": "2000"}))  # milliseconds? never 33 minutes
    limiter.acquire()
    assert fake_time.sleeps == [2.0]


def test_limiter_counts_requests_in_flight(fake_time: FakeTime) -> None:
    """Two requests in flight use up "2 left": a third waits for the window, though no answer
    has said 0 yet (concurrent tasks share one token's burst limit)."""
    profile = ServiceProfile(name="X", window_s=2.0, remaining_header="r", reset_header="s")
    limiter = RateLimiter(profile, fake_time.clock, fake_time.sleep)
    limiter.acquire()
    limiter.release(httpx.Headers({"r": "2", "s": "2"}))
    limiter.acquire()
    limiter.acquire()
    assert fake_time.sleeps == []
    limiter.acquire()
    assert fake_time.sleeps == [2.0]


def test_a_known_limit_paces_a_rolling_window_not_whole_rounded_resets(
    fake_time: FakeTime,
) -> None:
    """Pipedrive's window is rolling and its reset whole seconds rounded up: with the limit
    known (`x-ratelimit-limit`), a slot is taken again as soon as the limiter's own oldest
    request leaves the window, never before the reset less its rounding."""
    profile = ServiceProfile(
        name="X", window_s=2.0, remaining_header="r", reset_header="s", limit_header="l"
    )
    limiter = RateLimiter(profile, fake_time.clock, fake_time.sleep)
    start = fake_time.now
    for left in (3, 2, 1, 0):  # four requests 0.25 s apart, the last answered "0 left, reset 2"
        limiter.acquire()
        fake_time.now += 0.25
        limiter.release(httpx.Headers({"r": str(left), "s": "2", "l": "4"}))
    assert fake_time.sleeps == [] and fake_time.now == start + 1.0
    limiter.acquire()  # the first request (answered at +0.25) leaves the window at +2.25
    assert fake_time.now == pytest.approx(start + 2.25)  # not +3.0 (the rounded reset)
    limiter.release(httpx.Headers({"r": "0", "s": "1", "l": "4"}))
    limiter.acquire()  # the second leaves at +2.5
    assert fake_time.now == pytest.approx(start + 2.5)
    # what the service says is a floor: "0 left, reset 2" just now holds for at least 1 s
    limiter.release(httpx.Headers({"r": "0", "s": "2", "l": "400"}))
    limiter.acquire()
    assert fake_time.now == pytest.approx(start + 3.5)


def test_local_cap_paces_planhat(fake_time: FakeTime) -> None:
    profile = ServiceProfile(name="P", window_s=1.0, requests_per_window=3)
    limiter = RateLimiter(profile, fake_time.clock, fake_time.sleep)
    for _ in range(3):
        limiter.acquire()
        limiter.release(None)
    assert fake_time.sleeps == []
    limiter.acquire()
    assert fake_time.sleeps == [1.0]


def test_clients_of_one_token_share_one_limiter(fake_time: FakeTime) -> None:
    a = PipedriveClient(
        "https://acme.pipedrive.com", "a" * 40, clock=fake_time.clock, sleep=fake_time.sleep
    )
    b = PipedriveClient(
        "https://acme.pipedrive.com/v1",
        "a" * 40,
        clock=a._http.limiter._clock,
        sleep=a._http.limiter._sleep,
    )
    c = PipedriveClient(
        "https://acme.pipedrive.com",
        "b" * 40,
        clock=a._http.limiter._clock,
        sleep=a._http.limiter._sleep,
    )
    assert a._http.limiter is b._http.limiter
    assert a._http.limiter is not c._http.limiter
    for client in (a, b, c):
        client.close()


# -- logging --------------------------------------------------------------------------------------
def test_one_debug_line_per_attempt_with_method_path_status_duration_attempt(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    pd_router.get("/api/v2/deals").mock(
        side_effect=[pd_error(503, "x"), pd_response([{"id": 1}], next_cursor=None)]
    )
    with caplog.at_level(logging.DEBUG, logger="clients.http"):
        list(make_pipedrive().iter_deals(status="won", updated_since="2026-01-01T00:00:00Z"))
    lines = [r for r in caplog.records if r.name == "clients.http"]
    assert len(lines) == 2
    first, second = (r.getMessage() for r in lines)
    assert first.startswith("Pipedrive GET /api/v2/deals -> 503 in ")
    assert first.endswith("ms (attempt 1)")
    assert second.startswith("Pipedrive GET /api/v2/deals -> 200 in ") and "(attempt 2)" in second
    assert all("?" not in r.getMessage() and "status=won" not in r.getMessage() for r in lines)
    assert lines[1].http_status == 200 and lines[1].attempt == 2  # type: ignore[attr-defined]
    assert isinstance(lines[1].duration_ms, float)  # type: ignore[attr-defined]


def test_transport_failures_are_logged_too(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    pd_router.get("/api/v2/deals/1").mock(side_effect=[httpx.ReadTimeout("t"), OK_DEAL])
    with caplog.at_level(logging.DEBUG, logger="clients.http"):
        make_pipedrive().get_deal(1)
    messages = [r.getMessage() for r in caplog.records if r.name == "clients.http"]
    assert "-> ReadTimeout in" in messages[0] and "(attempt 1)" in messages[0]
    assert "-> 200 in" in messages[1]


# -- Planhat uses the same policy -----------------------------------------------------------------
def test_planhat_429_with_retry_after_then_success(
    make_planhat: MakePlanhat, ph_router: respx.Router, fake_time: FakeTime
) -> None:
    route = ph_router.get("/companies/srcid-8812").mock(
        side_effect=[
            httpx.Response(429, json="Too Many Requests", headers={"retry-after": "1"}),
            httpx.Response(200, json={"_id": "a" * 24, "name": "Acme"}),
        ]
    )
    assert make_planhat().get("companies", "srcid-8812")["name"] == "Acme"
    assert route.call_count == 2 and fake_time.sleeps == [1.0]


def test_planhat_500_then_success_and_text_bodies(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    route = ph_router.get("/licenses/x1").mock(
        side_effect=[
            httpx.Response(500, text="Internal Server Error"),
            httpx.Response(200, json={"_id": "x1"}),
        ]
    )
    assert make_planhat().get("licenses", "x1") == {"_id": "x1"}
    assert route.call_count == 2


def test_planhat_401_message(make_planhat: MakePlanhat, ph_router: respx.Router) -> None:
    from clients import AuthError

    ph_router.get("/companies/x").mock(return_value=httpx.Response(401, json="Unauthorized"))
    with pytest.raises(AuthError, match="Service Accounts"):
        make_planhat().get("companies", "x")


def test_backoff_is_bounded_and_jittered() -> None:
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=8.0)
    rng = random.Random(1)
    waits = [policy.backoff(n, rng) for n in range(1, 10)]
    assert all(0.5 <= w <= 8.0 for w in waits)
    assert waits[-1] >= 4.0  # capped at 8, never below half of it
    assert len({round(w, 6) for w in waits}) == len(waits)  # jitter: no two alike


def test_a_429_whose_reset_is_already_0_backs_off_instead_of_hammering(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    pd_router.get("/api/v2/deals/1").mock(
        side_effect=[
            over_limit(**{"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}),
            over_limit(**{"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}),
            OK_DEAL,
        ]
    )
    make_pipedrive(retry=RetryPolicy(backoff_base_s=1.0)).get_deal(1)
    assert 0.5 <= fake_time.sleeps[0] <= 1.0 and 1.0 <= fake_time.sleeps[1] <= 2.0


# -- memory ---------------------------------------------------------------------------------------
def test_a_response_is_freed_by_reference_counting_not_left_to_the_cycle_collector() -> None:
    """httpx 0.28 makes every response a reference cycle (its body stream points back at it);
    the client drops that back reference once the body is read, so a page's body goes when
    its last reference does, not at the next cyclic collection."""
    profile = ServiceProfile(name="Test", window_s=1.0)
    client = HttpClient(
        profile,
        headers={},
        secrets=(),
        limiter=RateLimiter(profile, clock=lambda: 0.0, sleep=lambda _: None),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"page": [1]})),
    )
    gc.disable()
    try:
        response = client.request("GET", "https://api.example.test/things")
        assert client.json(response) == {"page": [1]}
        alive = weakref.ref(response)
        del response
        assert alive() is None
    finally:
        gc.enable()
        client.close()
