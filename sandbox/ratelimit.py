"""Rate limits as the real services enforce and report them (ASGI middlewares).

Pipedrive (`../shared/reference/pipedrive-api.md` §5): a burst limit per token over a 2-second
window and a daily budget; every answer carries `x-ratelimit-limit`, `x-ratelimit-remaining`,
`x-ratelimit-reset` (seconds left in the window) and `x-daily-requests-left`; over the limit,
429 with Pipedrive's error envelope (no `Retry-After`: it is not documented for today's API).

Planhat (`planhat-api.md` §6): 150 requests/s hard (429), 200/minute soft (reported in
`X-Rate-Limit-Limit` / `X-Rate-Limit-Remaining`, never enforced).

Admin requests under `/_sandbox/` are exempt. Limits can be changed at run time (tests lower
them to provoke 429s quickly).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from sandbox.faults import ADMIN_PREFIX, send_json

Clock = Callable[[], float]


class FixedWindow:
    """Counts hits per key in fixed windows of `window_s` seconds that start at the first hit."""

    def __init__(self, limit: int, window_s: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, int, float]:
        """Record one request: (allowed, remaining after it, seconds until the window resets)."""
        now = self.clock()
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= self.window_s:
                start, used = now, 0
            allowed = used < self.limit
            if allowed:
                used += 1
            self._windows[key] = (start, used)
            return allowed, max(self.limit - used, 0), max(self.window_s - (now - start), 0.0)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


def pipedrive_token_of(scope: dict[str, Any]) -> str:
    """The API token of a request: `x-api-token` header first, then the `api_token` parameter."""
    for name, value in scope.get("headers", ()):
        if name == b"x-api-token":
            return value.decode("latin-1")
    query = scope.get("query_string", b"")
    if b"api_token=" in query:
        values = parse_qs(query.decode("latin-1")).get("api_token")
        if values:
            return values[0]
    return ""


class PipedriveRateLimit:
    """Burst limit per token per 2-second window, and a daily request budget per token."""

    def __init__(
        self,
        app: Any,
        burst: int = 40,
        window_s: float = 2.0,
        daily_budget: int = 1_000_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.app = app
        self.window = FixedWindow(burst, window_s, clock)
        self.daily_budget = daily_budget
        self._daily_used: dict[str, int] = {}
        self._lock = threading.Lock()

    def configure(
        self,
        burst: int | None = None,
        window_s: float | None = None,
        daily_budget: int | None = None,
    ) -> None:
        if burst is not None:
            self.window.limit = burst
        if window_s is not None:
            self.window.window_s = window_s
        if daily_budget is not None:
            self.daily_budget = daily_budget

    def reset(self) -> None:
        self.window.reset()
        with self._lock:
            self._daily_used.clear()

    def settings(self) -> dict[str, Any]:
        return {
            "burst": self.window.limit,
            "window_s": self.window.window_s,
            "daily_budget": self.daily_budget,
        }

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        token = pipedrive_token_of(scope)
        with self._lock:
            used = self._daily_used.get(token, 0)
            daily_ok = used < self.daily_budget
            if daily_ok:
                used += 1
                self._daily_used[token] = used
            daily_left = max(self.daily_budget - used, 0)
        allowed, remaining, reset_in = self.window.hit(token) if daily_ok else (False, 0, 0.0)
        headers = [
            (b"x-ratelimit-limit", str(self.window.limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(reset_in)).encode()),
            (b"x-daily-requests-left", str(daily_left).encode()),
        ]
        if not daily_ok or not allowed:
            error = "Daily API request limit reached" if not daily_ok else "Request over limit"
            await send_json(
                send,
                429,
                {
                    "success": False,
                    "error": error,
                    "error_info": "Please check developers.pipedrive.com for more information "
                    "about Pipedrive API rate limits.",
                    "errorCode": 429,
                    "data": None,
                    "additional_data": None,
                },
                headers,
            )
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class PlanhatRateLimit:
    """150 requests per second (hard, 429) and 200 per minute (soft: reported, not enforced)."""

    def __init__(
        self,
        app: Any,
        per_second: int = 150,
        per_minute_soft: int = 200,
        clock: Clock = time.monotonic,
    ) -> None:
        self.app = app
        self.hard = FixedWindow(per_second, 1.0, clock)
        self.soft = FixedWindow(per_minute_soft, 60.0, clock)

    def configure(self, per_second: int | None = None, per_minute_soft: int | None = None) -> None:
        if per_second is not None:
            self.hard.limit = per_second
        if per_minute_soft is not None:
            self.soft.limit = per_minute_soft

    def reset(self) -> None:
        self.hard.reset()
        self.soft.reset()

    def settings(self) -> dict[str, Any]:
        return {"per_second": self.hard.limit, "per_minute_soft": self.soft.limit}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        token = ""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                token = value.decode("latin-1")
                break
        allowed, _, reset_in = self.hard.hit(token)
        # The soft quota only counts and reports; Planhat does not refuse on it.
        limit = self.soft.limit
        _, soft_remaining, _ = self.soft.hit(token)
        headers = [
            (b"x-rate-limit-limit", str(limit).encode()),
            (b"x-rate-limit-remaining", str(soft_remaining).encode()),
        ]
        if not allowed:
            await send_json(
                send,
                429,
                "Too Many Requests",
                [*headers, (b"retry-after", str(max(math.ceil(reset_in), 1)).encode())],
            )
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
