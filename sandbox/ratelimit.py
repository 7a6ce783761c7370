"""Rate limits as the real services enforce and report them (ASGI middlewares).

Pipedrive (`../shared/reference/pipedrive-api.md` §5, Pipedrive's "Rate limiting" page):

* **Daily token budget per company**: `30,000 × plan multiplier × seats` tokens a day
  (multipliers: Lite 1, Growth 2, Premium 5, Ultimate 7; `daily_budget_for`). Every API token of
  the company draws from the one budget; each request costs its endpoint's token cost (the
  spec's `x-token-cost`, all in `PIPEDRIVE_TOKEN_COSTS`; v1 get 2, list 20, write 10, delete 6,
  search 40; v2 about half). Once the budget is spent, *every* request is answered 429 until
  midnight (server time; the sandbox uses UTC). A request is served while anything is left and
  may take the remainder below its cost (the remainder then shows 0): the sandbox's choice, as
  Pipedrive does not document the last request of a day.
* **Burst limit per token** over a **rolling 2-second window** (Lite 20, Growth 40, Premium 100,
  Ultimate 120 for api_token requests; `PLAN_BURST`); search endpoints 10 per 2 s on every plan.
  A 429 for the burst costs no tokens.
* **Headers on every answer**: `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`
  (whole seconds until the oldest request in the window leaves it, i.e. a slot frees), and
  `x-daily-requests-left` (the legacy fair-use counter of POST/PUT requests, 10,000 per user a
  day; reported, never enforced, as Pipedrive only says it "may" block), plus the daily token
  budget as third parties observe it live: `x-daily-ratelimit-token-limit` and
  `x-daily-ratelimit-token-remaining` (what is left after this request).
* Over a limit: 429 with Pipedrive's error envelope (no `Retry-After`: it is not documented for
  today's API). A spent daily budget says so in `error` and shows
  `x-daily-ratelimit-token-remaining: 0`.
* Requests whose token belongs to no company (`company_of` answers None) are not limited at all:
  Pipedrive's gateway answers them 401 before any budget is touched.

Planhat (`planhat-api.md` §6): 150 requests/s hard (429), 200/minute soft (reported in
`X-Rate-Limit-Limit` / `X-Rate-Limit-Remaining`, never enforced).

Admin requests under `/_sandbox/` are exempt. Limits can be changed at run time (tests lower
them to provoke 429s quickly).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from sandbox.faults import ADMIN_PREFIX, send_json

Clock = Callable[[], float]

# -- Pipedrive's plans and costs ----------------------------------------------------------------
BASE_DAILY_TOKENS = 30_000
PLAN_MULTIPLIER = {"lite": 1, "growth": 2, "premium": 5, "ultimate": 7}
#: Burst per api_token per rolling 2 s window (OAuth apps get four times as much).
PLAN_BURST = {"lite": 20, "growth": 40, "premium": 100, "ultimate": 120}
SEARCH_BURST = 10
WINDOW_S = 2.0
#: The legacy fair-use counter of POST/PUT requests per user and day (`x-daily-requests-left`).
DAILY_WRITE_REQUESTS = 10_000
DEFAULT_PLAN = "growth"
DEFAULT_SEATS = 10


def daily_budget_for(plan: str, seats: int) -> int:
    """A company's daily token budget: 30,000 × plan multiplier × seats."""
    if plan not in PLAN_MULTIPLIER:
        raise ValueError(f"unknown plan {plan!r}; choose one of {', '.join(PLAN_MULTIPLIER)}")
    if seats < 1:
        raise ValueError("seats must be at least 1")
    return BASE_DAILY_TOKENS * PLAN_MULTIPLIER[plan] * seats


# The token cost of every endpoint, as Pipedrive's descriptions give it (`x-token-cost` in
# openapi-v1.yaml / openapi-v2.yaml). Paths are the specs' own: v2 under `/api/v2`, v1 under
# `/v1` (requests to `/api/v1/...` are looked up as `/v1/...`).
# fmt: off
PIPEDRIVE_TOKEN_COSTS: dict[tuple[str, str], int] = {
    # v2: list 10, get 1, create/update 5, delete 3, search 20
    ("GET", "/api/v2/deals"): 10,
    ("POST", "/api/v2/deals"): 5,
    ("GET", "/api/v2/deals/archived"): 20,
    ("GET", "/api/v2/deals/search"): 20,
    ("GET", "/api/v2/deals/products"): 10,
    ("GET", "/api/v2/deals/{id}"): 1,
    ("PATCH", "/api/v2/deals/{id}"): 5,
    ("DELETE", "/api/v2/deals/{id}"): 3,
    ("GET", "/api/v2/deals/{id}/products"): 10,
    ("GET", "/api/v2/persons"): 10,
    ("POST", "/api/v2/persons"): 5,
    ("GET", "/api/v2/persons/search"): 20,
    ("GET", "/api/v2/persons/{id}"): 1,
    ("PATCH", "/api/v2/persons/{id}"): 5,
    ("DELETE", "/api/v2/persons/{id}"): 3,
    ("GET", "/api/v2/organizations"): 10,
    ("POST", "/api/v2/organizations"): 5,
    ("GET", "/api/v2/organizations/search"): 20,
    ("GET", "/api/v2/organizations/{id}"): 1,
    ("PATCH", "/api/v2/organizations/{id}"): 5,
    ("DELETE", "/api/v2/organizations/{id}"): 3,
    ("GET", "/api/v2/pipelines"): 5,
    ("GET", "/api/v2/pipelines/{id}"): 1,
    ("GET", "/api/v2/stages"): 5,
    ("GET", "/api/v2/stages/{id}"): 1,
    ("GET", "/api/v2/activities"): 10,
    ("GET", "/api/v2/activities/{id}"): 1,
    ("GET", "/api/v2/products"): 10,
    ("GET", "/api/v2/products/{id}"): 1,
    ("GET", "/api/v2/products/search"): 20,
    ("GET", "/api/v2/leads/search"): 20,
    ("GET", "/api/v2/dealFields"): 10,
    ("GET", "/api/v2/dealFields/{field_code}"): 1,
    ("GET", "/api/v2/personFields"): 10,
    ("GET", "/api/v2/personFields/{field_code}"): 1,
    ("GET", "/api/v2/organizationFields"): 10,
    ("GET", "/api/v2/organizationFields/{field_code}"): 1,
    ("GET", "/api/v2/activityFields"): 10,
    ("GET", "/api/v2/activityFields/{field_code}"): 1,
    ("GET", "/api/v2/productFields"): 10,
    ("GET", "/api/v2/productFields/{field_code}"): 1,
    # v1: list 20, get 2, create/update 10, delete 6, search 40
    ("GET", "/v1/users/me"): 2,
    ("GET", "/v1/users"): 20,
    ("GET", "/v1/users/find"): 40,
    ("GET", "/v1/users/{id}"): 2,
    ("GET", "/v1/notes"): 20,
    ("POST", "/v1/notes"): 10,
    ("GET", "/v1/notes/{id}"): 2,
    ("PUT", "/v1/notes/{id}"): 10,
    ("DELETE", "/v1/notes/{id}"): 6,
    ("GET", "/v1/webhooks"): 10,
    ("POST", "/v1/webhooks"): 10,
    ("DELETE", "/v1/webhooks/{id}"): 6,
    ("GET", "/v1/recents"): 20,
    ("GET", "/v1/leads"): 20,
    ("GET", "/v1/leads/search"): 40,
    ("GET", "/v1/activityFields"): 20,
    ("GET", "/v1/dealFields"): 20,
    ("GET", "/v1/dealFields/{id}"): 2,
    ("GET", "/v1/leadFields"): 20,
    ("GET", "/v1/noteFields"): 20,
    ("GET", "/v1/organizationFields"): 20,
    ("GET", "/v1/organizationFields/{id}"): 2,
    ("GET", "/v1/personFields"): 20,
    ("GET", "/v1/personFields/{id}"): 2,
    ("GET", "/v1/productFields"): 20,
    ("GET", "/v1/productFields/{id}"): 2,
}
# fmt: on
# Endpoints outside the table cost what their kind typically costs (reference §5).
_FALLBACK_COSTS = {
    "v1": {"get": 2, "list": 20, "write": 10, "delete": 6, "search": 40},
    "v2": {"get": 1, "list": 10, "write": 5, "delete": 3, "search": 20},
}
_SINGLE_SEGMENT = re.compile(r"^(\d+|[0-9a-f]{40}|[0-9a-f-]{36})$")


def _compile_costs(
    table: dict[tuple[str, str], int],
) -> list[tuple[str, re.Pattern[str], int]]:
    compiled = []
    for (method, template), cost in table.items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        compiled.append((method, re.compile(pattern + "$"), cost))
    # Literal paths before templated ones (`/deals/search` before `/deals/{id}`).
    compiled.sort(key=lambda entry: entry[1].pattern.count("[^/]+"))
    return compiled


def is_search_path(path: str) -> bool:
    return path.endswith(("/search", "/itemSearch", "/users/find"))


class TokenCosts:
    """What one request costs: `PIPEDRIVE_TOKEN_COSTS`, else its kind's typical cost."""

    def __init__(self, table: dict[tuple[str, str], int] | None = None) -> None:
        self.table = dict(PIPEDRIVE_TOKEN_COSTS if table is None else table)
        self._compiled = _compile_costs(self.table)
        self._cache: dict[tuple[str, str], int] = {}

    def __call__(self, method: str, path: str) -> int:
        if path.startswith("/api/v1/"):
            path = path[len("/api") :]
        key = (method, path)
        cost = self._cache.get(key)
        if cost is None:
            cost = self._lookup(method, path)
            if len(self._cache) < 10_000:
                self._cache[key] = cost
        return cost

    def _lookup(self, method: str, path: str) -> int:
        for entry_method, pattern, cost in self._compiled:
            if entry_method == method and pattern.match(path):
                return cost
        costs = _FALLBACK_COSTS["v2" if path.startswith("/api/v2/") else "v1"]
        if is_search_path(path):
            return costs["search"]
        if method == "DELETE":
            return costs["delete"]
        if method != "GET":
            return costs["write"]
        last = path.rstrip("/").rsplit("/", 1)[-1]
        return costs["get"] if _SINGLE_SEGMENT.match(last) else costs["list"]


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


class SlidingWindow:
    """Counts hits per key over a rolling window of `window_s` seconds (a log of hit times).

    A hit is allowed when fewer than `limit` hits of the key lie in the last `window_s` seconds;
    the window frees one slot each time its oldest hit ages out.
    """

    def __init__(self, limit: int, window_s: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        horizon = now - self.window_s
        while hits and hits[0] <= horizon:
            hits.popleft()
        return hits

    def _state(self, hits: deque[float], now: float) -> tuple[int, float]:
        remaining = max(self.limit - len(hits), 0)
        reset = hits[0] + self.window_s - now if hits else self.window_s
        return remaining, max(reset, 0.0)

    def hit(self, key: str) -> tuple[bool, int, float]:
        """Record one request: (allowed, remaining after it, seconds until a slot frees)."""
        now = self.clock()
        with self._lock:
            hits = self._live(key, now)
            allowed = len(hits) < self.limit
            if allowed:
                hits.append(now)
            return (allowed, *self._state(hits, now))

    def peek(self, key: str) -> tuple[int, float]:
        """(remaining, seconds until a slot frees) without recording a request."""
        now = self.clock()
        with self._lock:
            return self._state(self._live(key, now), now)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


def pipedrive_token_of(scope: Mapping[str, Any]) -> str:
    """The API token of a request: `x-api-token` header first, then the `api_token` parameter."""
    name: bytes
    value: bytes
    for name, value in scope.get("headers", ()):
        if name == b"x-api-token":
            return value.decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    if b"api_token=" in query:
        values = parse_qs(query.decode("latin-1")).get("api_token")
        if values:
            return values[0]
    return ""


def _utc_day(wall_clock: Clock) -> int:
    return int(wall_clock() // 86_400)


class PipedriveRateLimit:
    """Pipedrive's limits: a daily token budget per company, a rolling burst window per token
    (and a tighter one for search), the fair-use counter of POST/PUT requests per token, and the
    headers that report them (see the module docstring).

    `company_of(token)` names the company a token belongs to (None: an unknown token, not
    limited; default: every token belongs to one company). `clock` paces the burst windows,
    `wall_clock` (epoch seconds) decides the day the budget belongs to.
    """

    def __init__(
        self,
        app: Any,
        burst: int = PLAN_BURST[DEFAULT_PLAN],
        window_s: float = WINDOW_S,
        daily_budget: int = 1_000_000,
        clock: Clock = time.monotonic,
        *,
        search_burst: int = SEARCH_BURST,
        company_of: Callable[[str], str | None] | None = None,
        costs: TokenCosts | None = None,
        wall_clock: Clock = time.time,
    ) -> None:
        self.app = app
        self.window = SlidingWindow(burst, window_s, clock)
        self.search_window = SlidingWindow(search_burst, window_s, clock)
        self.daily_budget = daily_budget
        self.company_of = company_of or (lambda token: "company")
        self.costs = costs or TokenCosts()
        self.wall_clock = wall_clock
        self.plan: str | None = None
        self.seats: int | None = None
        self._day = _utc_day(wall_clock)
        self._spent: dict[str, int] = {}
        self._writes: dict[str, int] = {}
        self._lock = threading.Lock()

    def configure(
        self,
        burst: int | None = None,
        window_s: float | None = None,
        daily_budget: int | None = None,
        *,
        search_burst: int | None = None,
        plan: str | None = None,
        seats: int | None = None,
    ) -> None:
        """Change limits at run time. `plan` and/or `seats` set the burst and the daily budget
        as Pipedrive derives them; an explicit `burst` or `daily_budget` wins over them."""
        if seats is not None and seats < 1:
            raise ValueError("seats must be at least 1")
        for name, value in (
            ("burst", burst),
            ("search_burst", search_burst),
            ("daily_budget", daily_budget),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        if window_s is not None and window_s <= 0:
            raise ValueError("window_s must be positive")
        if plan is not None or seats is not None:
            plan = plan or self.plan or DEFAULT_PLAN
            seats = seats or self.seats or DEFAULT_SEATS
            budget = daily_budget_for(plan, seats)  # validates both
            self.plan, self.seats = plan, seats
            self.window.limit = PLAN_BURST[plan]
            self.daily_budget = budget
        if burst is not None:
            self.window.limit = burst
        if search_burst is not None:
            self.search_window.limit = search_burst
        if window_s is not None:
            self.window.window_s = window_s
            self.search_window.window_s = window_s
        if daily_budget is not None:
            self.daily_budget = daily_budget

    def reset(self) -> None:
        """Empty the burst windows and give every company its whole daily budget back."""
        self.window.reset()
        self.search_window.reset()
        with self._lock:
            self._spent.clear()
            self._writes.clear()
            self._day = _utc_day(self.wall_clock)

    def settings(self) -> dict[str, Any]:
        with self._lock:
            self._roll_day()
            spent = dict(self._spent)
        return {
            "burst": self.window.limit,
            "search_burst": self.search_window.limit,
            "window_s": self.window.window_s,
            "daily_budget": self.daily_budget,
            "plan": self.plan,
            "seats": self.seats,
            "tokens_spent": spent,
        }

    def spent(self, company: str = "company") -> int:
        """Tokens the company spent today."""
        with self._lock:
            self._roll_day()
            return self._spent.get(company, 0)

    def _roll_day(self) -> None:
        day = _utc_day(self.wall_clock)
        if day != self._day:
            self._day = day
            self._spent.clear()
            self._writes.clear()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        token = pipedrive_token_of(scope)
        company = self.company_of(token)
        if company is None:  # the gateway refuses it (401) before any limit applies
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = scope["path"]
        cost = self.costs(method, path)
        search = is_search_path(path)
        window = self.search_window if search else self.window
        key = f"{token}\0search" if search else token
        budget = self.daily_budget
        with self._lock:
            self._roll_day()
            spent = self._spent.get(company, 0)
            daily_ok = spent < budget
        if daily_ok:
            allowed, remaining, reset_in = window.hit(key)
        else:
            allowed = False
            remaining, reset_in = window.peek(key)
        with self._lock:
            self._roll_day()
            if daily_ok and allowed:
                spent = self._spent.get(company, 0) + cost
                self._spent[company] = spent
                if method in ("POST", "PUT"):
                    self._writes[token] = self._writes.get(token, 0) + 1
            else:
                spent = self._spent.get(company, 0)
            writes = self._writes.get(token, 0)
        headers = [
            (b"x-ratelimit-limit", str(window.limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(reset_in)).encode()),
            (b"x-daily-requests-left", str(max(DAILY_WRITE_REQUESTS - writes, 0)).encode()),
            (b"x-daily-ratelimit-token-limit", str(budget).encode()),
            (b"x-daily-ratelimit-token-remaining", str(max(budget - spent, 0)).encode()),
        ]
        if not daily_ok or not allowed:
            error = (
                "Daily API token budget exceeded: the company's token budget resets at midnight"
                if not daily_ok
                else "Request over limit"
            )
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
