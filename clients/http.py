"""The one HTTP layer both clients use: rate limiting, retries, typed errors and request logging.

Policy (the same for Pipedrive and Planhat, parametrised by each service's `ServiceProfile`):

* **Before a request**, a `RateLimiter` (one per service origin and token, shared by every
  client in the process) waits when the service's last answer said no request is left in the
  current window (`x-ratelimit-remaining: 0` until `x-ratelimit-reset` seconds have passed), or
  when a locally counted cap is reached (services that do not report their budget).
* **429**: wait for `Retry-After`, else `x-ratelimit-reset`, else exponential backoff with
  jitter, then retry. A 429 means the request was refused unprocessed, so any method is retried.
  A spent daily budget stops at once with a `RateLimitedError(daily_budget_spent=True)`:
  waiting would not help. Pipedrive reports it as `x-daily-ratelimit-token-remaining: 0` (the
  company's token budget, which refuses every request once spent) or, for a POST/PUT only,
  `x-daily-requests-left: 0` (the legacy fair-use counter of POST/PUT requests; it says nothing
  about a GET, so a GET's 429 with it is an ordinary burst 429).
* **5xx, timeouts, dropped connections**: exponential backoff with jitter, for idempotent
  requests only (GET, PUT, PATCH, DELETE, or a caller's explicit `idempotent=True`). A create
  (POST) is retried only after a failure that proves it never left (connection refused, connect
  timeout, no free connection), because a retry after the request may have reached the server
  could create the record twice.
* **Bounded**: at most `RetryPolicy.max_attempts` attempts and `max_total_wait_s` seconds of
  retry waits per call; a server asking for a longer wait ends the call at once. The outcome is
  a success or one clear error, never a loop.
* **Logging**: one DEBUG line per attempt on the `clients.http` logger: service, method, path
  (never the query string), status (or the transport error), duration and attempt number.
* **Secrets**: tokens travel only in headers; error messages are built from the method, the
  path and the service's own error text with every known secret scrubbed out, and errors keep
  no reference to httpx requests (whose headers carry the token).

`sleep`, `clock` and `rng` are injectable so that tests of waits and retries do not sleep.

Its size: this is the one retry and limit policy of both clients, kept whole on purpose
(the limiter, the request loop and the typed errors it raises are read together).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import orjson

from clients.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    BlockedError,
    ForbiddenError,
    GoneError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], None]
Params = Mapping[str, str | int | float | bool | None]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
# The requests a write-only daily counter (`ServiceProfile.daily_write_left_headers`) counts.
WRITE_METHODS = frozenset({"POST", "PUT"})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
# Transport failures that prove the request never reached the server: safe to retry a create.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Transport failures worth retrying at all (for idempotent requests).
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_DETAIL_MAX = 300
#: the hosts that are this machine (the sandbox, a local receiver): the one loopback rule
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback_url(url: str | None) -> bool:
    """Whether `url` points at this machine (plain http is accepted only there)."""
    try:
        return (urlsplit(url or "").hostname or "").lower() in LOOPBACK_HOSTS
    except ValueError:
        return False


#: how long a connection may take to open: an unreachable host is noticed within it
CONNECT_TIMEOUT_S = 5.0


class Closing:
    """`with thing:` closes it at the end (clients, run contexts)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries before it raises.

    `max_attempts` counts the first try. `max_total_wait_s` caps the sum of retry waits of one
    call (a `Retry-After` longer than what is left ends the call at once). Backoff: attempt n
    waits between half and all of `min(backoff_max_s, backoff_base_s * 2**(n-1))`.
    """

    max_attempts: int = 6
    max_total_wait_s: float = 120.0
    #: a service that cannot be reached (refused, reset, timed out) is given up on once this
    #: much time (attempts and waits together) has gone: an unreachable host fails in seconds,
    #: not minutes, and the error counts the attempts really made. No other layer retries.
    max_unreachable_s: float = 12.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    min_wait_s: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.max_total_wait_s, self.backoff_base_s, self.backoff_max_s) < 0:
            raise ValueError("waits must not be negative")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter for the wait after failed attempt `attempt` (1-based)."""
        ceiling: float = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return max(self.min_wait_s, ceiling / 2 + rng.uniform(0, ceiling / 2))


@dataclass(frozen=True)
class ServiceProfile:
    """What the HTTP layer needs to know about one service: its limits and its help texts.

    * `window_s`: the length of the service's burst window (Pipedrive 2 s, Planhat 1 s); a
      reported reset is never trusted beyond it (the unit of Pipedrive's reset is unverified).
    * `remaining_header` / `reset_header`: where the service reports what is left of the window;
      `limit_header`: where it reports how many requests the window allows.
    * `requests_per_window`: a cap counted locally, for services that do not report one.
    * `daily_left_headers`: headers whose value `0` on a 429 means the daily budget is spent.
    * `daily_write_left_headers`: the same, but counting only writes (`WRITE_METHODS`): they
      are consulted for those requests only.
    * `*_help`: the sentence appended to errors, telling the user what to do.
    """

    name: str
    window_s: float
    remaining_header: str | None = None
    reset_header: str | None = None
    limit_header: str | None = None
    requests_per_window: int | None = None
    daily_left_headers: tuple[str, ...] = ()
    daily_write_left_headers: tuple[str, ...] = ()
    auth_help: str = "Check the API token and save it again."
    forbidden_help: str = "The token's user may lack the permission for this."
    rate_limit_help: str = "Run the sync again later."
    daily_budget_help: str = "Run the sync again after the daily budget resets."
    blocked_help: str = "Wait before running the sync again."


#: how long a request waits before it looks again, when the requests in flight fill the window
IN_FLIGHT_POLL_S = 0.05


class RateLimiter:
    """Client-side pacing for one service token, fed by the service's rate-limit headers.

    Thread-safe: every client of the same origin and token in this process shares one (see
    `shared_limiter`), so concurrent tasks draw from one budget. Requests still in flight count
    against the last reported `remaining`.

    The window is rolling: the limiter keeps the times of its own requests in the last
    `window_s` (each from its answer, when the service had surely counted it; those in flight
    count too), and once the service has said how many it allows (`limit_header`, or the
    profile's `requests_per_window`), a request goes when fewer than that many lie in the
    window. A reported `remaining` of 0 then holds requests only until the reported reset less
    a second (the reset is in whole seconds, rounded up), not for the whole of it: a rolling
    window frees a slot as each request ages out, and waiting out every rounded reset would
    leave a third of the budget unused.
    """

    def __init__(self, profile: ServiceProfile, clock: Clock, sleep: Sleep) -> None:
        self.profile = profile
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._window_ends = 0.0  # when the reported window resets, at the latest
        self._window_floor = 0.0  # ... and at the earliest (the reset less its rounding)
        self._limit: int | None = profile.requests_per_window  # requests per window
        self._in_flight = 0
        self._recent: deque[float] = deque()  # this limiter's requests in the last window
        self.waited_s = 0.0

    def _wait_needed(self, now: float) -> float:
        wait = 0.0
        window = self.profile.window_s
        while self._recent and self._recent[0] <= now - window:
            self._recent.popleft()
        limit = self._limit
        taken = len(self._recent) + self._in_flight
        if limit and taken >= limit:
            oldest = taken - limit  # the requests that must leave the window first, less one
            if oldest < len(self._recent):
                wait = self._recent[oldest] + window - now
            else:  # the requests in flight fill the window: wait for an answer
                wait = IN_FLIGHT_POLL_S
        if self._remaining is not None and now < self._window_ends:
            if self._remaining - self._in_flight <= 0:
                until = self._window_floor if limit else self._window_ends
                wait = max(wait, until - now)
        return wait

    def acquire(self) -> float:
        """Wait until a request may go out; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait <= 0:
                    self._in_flight += 1
                    self.waited_s += waited
                    return waited
            self._sleep(wait)
            waited += wait

    def release(self, headers: httpx.Headers | None) -> None:
        """A request finished; `headers` are its answer's (None when there was no answer)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            # counted in the window from its answer: the service saw it no later than that
            self._recent.append(self._clock())
            if headers is None or self.profile.remaining_header is None:
                return
            remaining = _int_header(headers, self.profile.remaining_header)
            if remaining is None:
                return
            if self.profile.limit_header is not None:
                limit = _int_header(headers, self.profile.limit_header)
                if limit is not None and limit > 0:
                    self._limit = limit
            reset = _float_header(headers, self.profile.reset_header)
            window = self.profile.window_s
            reset = window if reset is None else min(max(reset, 0.0), window)
            now = self._clock()
            self._remaining = remaining
            self._window_ends = now + reset
            self._window_floor = now + max(reset - 1.0, 0.0)


_SHARED: weakref.WeakValueDictionary[tuple[Any, ...], RateLimiter] = weakref.WeakValueDictionary()
#: the limiters on the real clock stay for the life of the process: runs that follow each
#: other in one process (warm deal-sync runs) must see the requests of the run before, which
#: still count in the service's window
_KEPT: dict[tuple[Any, ...], RateLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(
    profile: ServiceProfile, origin: str, token: str, clock: Clock, sleep: Sleep
) -> RateLimiter:
    """The process-wide limiter of one service origin and token (created on first use).

    Keyed by a hash of the token (never the token itself) and by the clock and sleep functions,
    so tests with their own fake clocks get their own limiter. Those on the real clock live as
    long as the process (a run's requests still count in the window when the next run starts).
    """
    fingerprint = hashlib.sha256(f"{origin}\0{token}".encode()).hexdigest()
    key = (profile.name, fingerprint, id(clock), id(sleep))
    with _SHARED_LOCK:
        limiter = _SHARED.get(key)
        if limiter is None:
            limiter = RateLimiter(profile, clock, sleep)
            _SHARED[key] = limiter
            if clock is time.monotonic and sleep is time.sleep:
                _KEPT[key] = limiter
        return limiter


class HttpClient:
    """A sync httpx client with the shared limit and retry policy and typed errors.

    `headers` carry the authentication; `secrets` are scrubbed from every error message.
    `request` returns a 2xx response or raises an `ApiError` subclass.
    """

    def __init__(
        self,
        profile: ServiceProfile,
        *,
        headers: Mapping[str, str],
        secrets: Sequence[str],
        limiter: RateLimiter,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self._secrets = tuple(s for s in secrets if s)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._client = httpx.Client(
            headers={"accept": "application/json", **headers},
            transport=transport,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S)),
            follow_redirects=False,
        )
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"HttpClient(service={self.profile.name!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credentials this client sends (to scrub from whatever text may show them)."""
        return self._secrets

    def close(self) -> None:
        self._client.close()

    # -- the one request loop ----------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        json: Any = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one call with the policy above; a 2xx response or a typed error."""
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        query = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        content = None if json is None else orjson.dumps(json)
        headers = {"content-type": "application/json"} if content is not None else None
        path = httpx.URL(url).path
        policy = self.retry
        waited = 0.0
        in_flight = 0.0  # time spent in attempts that failed at the transport level
        attempt = 0
        while True:
            attempt += 1
            self.limiter.acquire()
            started = time.perf_counter()
            try:
                response = self._client.request(
                    method, url, params=query, content=content, headers=headers
                )
                _unbind(response)
            except httpx.TransportError as exc:
                self.limiter.release(None)
                self._log(method, path, type(exc).__name__, started, attempt)
                in_flight += time.perf_counter() - started
                never_sent = isinstance(exc, _NOT_SENT)
                if isinstance(exc, _TRANSIENT) and (idempotent or never_sent):
                    delay = policy.backoff(attempt, self._rng)
                    if (
                        attempt < policy.max_attempts
                        and waited + delay <= policy.max_total_wait_s
                        and waited + in_flight + delay <= policy.max_unreachable_s
                    ):
                        self._sleep(delay)
                        waited += delay
                        continue
                raise self._transport_error(exc, method, path, attempt, idempotent) from None
            except BaseException:
                self.limiter.release(None)
                raise
            self.limiter.release(response.headers)
            status = response.status_code
            self._log(method, path, status, started, attempt)
            if 200 <= status < 300:
                return response
            if status == 429:
                delay = self._rate_limit_wait(response, attempt)
                spent_by = self._daily_budget_spent(response, method)
                if spent_by is not None:
                    raise self._rate_limited(
                        response, method, path, attempt, waited, delay, daily=spent_by
                    )
                if attempt < policy.max_attempts and waited + delay <= policy.max_total_wait_s:
                    self._sleep(delay)
                    waited += delay
                    continue
                raise self._rate_limited(response, method, path, attempt, waited, delay)
            if status in RETRYABLE_STATUSES and idempotent:
                retry_after = _retry_after(response.headers)
                delay = policy.backoff(attempt, self._rng) if retry_after is None else retry_after
                delay = max(delay, policy.min_wait_s)
                if attempt < policy.max_attempts and waited + delay <= policy.max_total_wait_s:
                    self._sleep(delay)
                    waited += delay
                    continue
            raise self.error_for(response, method, path, attempt, waited, idempotent)

    # -- helpers for the clients ---------------------------------------------------------------
    def json(self, response: httpx.Response) -> Any:
        """The JSON body of a 2xx answer (an `ApiError` if it is not JSON)."""
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            path = response.request.url.path
            method = response.request.method
            raise ApiError(
                f"{self.profile.name} answered {method} {path} with HTTP {response.status_code} "
                "but the body is not JSON; is the base URL right?",
                service=self.profile.name,
                method=method,
                path=path,
                status=response.status_code,
            ) from None

    def scrub(self, text: str) -> str:
        """`text` with every secret of this client replaced by `[redacted]`."""
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    # -- internals -------------------------------------------------------------------------------
    def _log(self, method: str, path: str, status: int | str, started: float, attempt: int) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            ms = (time.perf_counter() - started) * 1000
            logger.debug(
                "%s %s %s -> %s in %.1f ms (attempt %d)",
                self.profile.name,
                method,
                path,
                status,
                ms,
                attempt,
                extra={
                    "service": self.profile.name,
                    "http_method": method,
                    "http_path": path,
                    "http_status": status,
                    "duration_ms": round(ms, 1),
                    "attempt": attempt,
                },
            )

    def _rate_limit_wait(self, response: httpx.Response, attempt: int) -> float:
        retry_after = _retry_after(response.headers)
        if retry_after is not None:
            return max(retry_after, self.retry.min_wait_s)
        reset = _float_header(response.headers, self.profile.reset_header)
        if reset:  # a reset of 0 while still refused says nothing: back off instead
            return max(min(reset, self.profile.window_s), self.retry.min_wait_s)
        return self.retry.backoff(attempt, self._rng)

    def _daily_budget_spent(self, response: httpx.Response, method: str) -> str | None:
        """The header saying the daily budget is spent (None: it is not, as far as known)."""
        names = self.profile.daily_left_headers
        if method in WRITE_METHODS:
            names = (*names, *self.profile.daily_write_left_headers)
        for name in names:
            if _int_header(response.headers, name) == 0:
                return name
        return None

    def _rate_limited(
        self,
        response: httpx.Response,
        method: str,
        path: str,
        attempt: int,
        waited: float,
        delay: float,
        daily: str | None = None,
    ) -> RateLimitedError:
        """`daily`: the header that said the daily budget is spent, if one did."""
        name = self.profile.name
        if daily:
            message = (
                f"{name}'s daily API budget is spent (HTTP 429 on {method} {path}, "
                f"{daily}: 0). {self.profile.daily_budget_help}"
            )
        elif delay > self.retry.max_total_wait_s - waited and attempt < self.retry.max_attempts:
            message = (
                f"{name} rate-limited {method} {path} (HTTP 429) and asked to wait "
                f"{delay:.0f} s, longer than this client waits ({self.retry.max_total_wait_s:.0f}"
                f" s per call). {self.profile.rate_limit_help}"
            )
        else:
            message = (
                f"{name} still rate-limited {method} {path} (HTTP 429) after {attempt} attempts "
                f"over {waited:.1f} s of waiting. {self.profile.rate_limit_help}"
            )
        return RateLimitedError(
            self.scrub(message),
            daily_budget_spent=daily is not None,
            waited_s=waited,
            service=name,
            method=method,
            path=path,
            status=429,
            detail=self._detail(response)[0],
            attempts=attempt,
        )

    def error_for(
        self,
        response: httpx.Response,
        method: str,
        path: str,
        attempts: int = 1,
        waited: float = 0.0,
        idempotent: bool = True,
    ) -> ApiError:
        """The typed error for a non-2xx answer (429s are handled by the loop)."""
        name = self.profile.name
        status = response.status_code
        detail, is_html = self._detail(response)
        said = f": {detail}" if detail else ""
        kwargs: dict[str, Any] = {
            "service": name,
            "method": method,
            "path": path,
            "status": status,
            "detail": detail,
            "attempts": attempts,
        }
        cls: type[ApiError]
        if status == 401:
            cls = AuthError
            message = f"{name} rejected the API token (HTTP 401 on {method} {path}). "
            message += self.profile.auth_help
        elif status == 403 and is_html:
            cls = BlockedError
            message = (
                f"{name}'s firewall (Cloudflare) blocked {method} {path} with an HTML 403 page "
                f"instead of an API answer. {self.profile.blocked_help}"
            )
        elif status in (402, 403):
            cls = ForbiddenError
            message = f"{name} refused {method} {path} (HTTP {status}{said}). "
            message += self.profile.forbidden_help
        elif status == 404:
            cls = NotFoundError
            message = f"{name} found nothing at {method} {path} (HTTP 404{said})."
        elif status == 410:
            cls = GoneError
            message = f"{name} says {path} is gone for good (HTTP 410{said})."
        elif 400 <= status < 500:
            cls = BadRequestError
            message = f"{name} refused {method} {path} (HTTP {status}){said or '.'}"
        elif status >= 500:
            cls = UnavailableError
            if not idempotent:
                message = (
                    f"{name} answered {method} {path} with HTTP {status}{said}. It was not "
                    f"retried: it creates a record and may already have reached {name}, so "
                    "check before creating it again."
                )
            else:
                message = (
                    f"{name} answered {method} {path} with HTTP {status}{said} "
                    f"({attempts} attempt{'s' if attempts != 1 else ''} over {waited:.1f} s). "
                    f"{name} is down or overloaded; try again later."
                )
        else:
            cls = ApiError
            where = response.headers.get("location", "")
            where_host = httpx.URL(where).host if where else ""
            message = (
                f"{name} answered {method} {path} with HTTP {status} (a redirect"
                f"{' to ' + where_host if where_host else ''}); check the base URL."
            )
        return cls(self.scrub(message), **kwargs)

    def _transport_error(
        self, exc: httpx.TransportError, method: str, path: str, attempts: int, idempotent: bool
    ) -> UnavailableError:
        name = self.profile.name
        kind = type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            what = f"did not answer {method} {path} in time ({kind}, limit {self.timeout_s:g} s)"
        elif isinstance(exc, httpx.ConnectError):
            what = f"could not be reached for {method} {path} ({kind})"
        else:
            what = f"dropped the connection during {method} {path} ({kind})"
        message = f"{name} {what} after {attempts} attempt{'s' if attempts != 1 else ''}."
        if not idempotent and not isinstance(exc, _NOT_SENT):
            message += (
                f" It was not retried: it creates a record and may already have reached {name},"
                " so check before creating it again."
            )
        elif isinstance(exc, _TRANSIENT):
            message += " Check the network and try again later."
        return UnavailableError(
            self.scrub(message), service=name, method=method, path=path, attempts=attempts
        )

    def _detail(self, response: httpx.Response) -> tuple[str | None, bool]:
        """(the service's own error text, whether the body is an HTML page)."""
        content_type = response.headers.get("content-type", "").lower()
        raw = response.content[:20_000]
        head = raw[:200].lstrip().lower()
        if "html" in content_type or head.startswith((b"<!doctype", b"<html")):
            return None, True
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            text = raw.decode("utf-8", "replace").strip()
            return (self.scrub(text[:_DETAIL_MAX]) or None), False
        detail = _error_text(body)
        return (self.scrub(detail[:_DETAIL_MAX]) if detail else None), False


def _unbind(response: httpx.Response) -> None:
    """Let the response be freed by reference counting once dropped. httpx 0.28 binds a
    response's body stream back to the response (`BoundSyncStream._response`, to time it when
    closed; encode/httpx#3733), so every response is a reference cycle that only the cyclic
    garbage collector frees, with its body: a stream of pages kept several pages' bodies alive
    between collections. `Client.request` has read the body and closed the stream: the back
    reference has served, and is dropped."""
    stream: Any = response.stream
    if response.is_closed and getattr(stream, "_response", None) is response:
        stream._response = None


def _error_text(body: Any) -> str | None:
    """The human part of an error body; the services use many keys (reference §6)."""
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, dict):
        return None
    parts: list[str] = []
    for key in ("error", "message", "msg"):
        value = body.get(key)
        if isinstance(value, str) and value.strip() and value not in parts:
            parts.append(value.strip())
    errors = body.get("errors")
    if isinstance(errors, dict):
        for field, problems in errors.items():
            text = ", ".join(map(str, problems)) if isinstance(problems, list) else str(problems)
            parts.append(f"{field}: {text}")
    elif isinstance(errors, list):
        parts.extend(str(e) for e in errors)
    for entry in body.get("permissionErrors") or []:
        parts.append(str(entry.get("error", entry)) if isinstance(entry, dict) else str(entry))
    if not parts and isinstance(body.get("error_info"), str):
        parts.append(body["error_info"])
    return "; ".join(parts) or None


def _param(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int_header(headers: httpx.Headers, name: str | None) -> int | None:
    value = _float_header(headers, name)
    return None if value is None else int(value)


def _float_header(headers: httpx.Headers, name: str | None) -> float | None:
    if not name:
        return None
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    if value != value or value < 0:  # NaN or negative
        return None
    if value > 1e9:  # an epoch timestamp rather than seconds left
        value = max(0.0, value - time.time())
    return value


def _retry_after(headers: httpx.Headers) -> float | None:
    """`Retry-After` in seconds: a number of seconds or an HTTP date (RFC 9110)."""
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


__all__ = [
    "HttpClient",
    "IDEMPOTENT_METHODS",
    "RateLimiter",
    "RetryPolicy",
    "ServiceProfile",
    "shared_limiter",
]
