"""Fault injection and request counters, shared by both sandbox apps.

A `FaultRule` says, for the requests whose method and path match it, how much latency to add and
how likely each fault is: a 500/502/503, a 429 with or without `Retry-After`, a hang past any
sane client timeout, or a dropped connection. Rules are checked in order; the first that matches
a request applies. `RequestCounters` counts requests per method and route template
(`GET /api/v2/deals/{id}`) and per status.

Both are reachable as a Python API (`Sandbox.pipedrive_faults`, ...) and over HTTP under the
admin prefix `/_sandbox/`, which the real APIs do not have and which is itself never faulted,
rate-limited or counted.
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
import re
import threading
from collections import Counter
from collections.abc import MutableMapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson

ADMIN_PREFIX = "/_sandbox"

_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-f]{24}|[0-9a-f]{40}|extid-.*|srcid-.*|[0-9a-f-]{36})$", re.IGNORECASE
)


def route_template(path: str) -> str:
    """`/api/v2/deals/17` → `/api/v2/deals/{id}`: ids, hashes and Planhat key prefixes collapse."""
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in path.split("/"))


@dataclass
class FaultRule:
    """Faults for requests whose method and path match (shell-style patterns, `*` = all)."""

    route: str = "*"
    method: str = "*"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    p_500: float = 0.0
    p_502: float = 0.0
    p_503: float = 0.0
    p_429: float = 0.0
    p_429_no_retry_after: float = 0.0
    p_hang: float = 0.0
    p_drop: float = 0.0
    retry_after_s: int = 1
    hang_s: float = 60.0

    def __post_init__(self) -> None:
        total = sum(getattr(self, f.name) for f in fields(self) if f.name.startswith("p_"))
        for f in fields(self):
            if f.name.startswith("p_") and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"{f.name} must be a probability in [0, 1]")
        if total > 1.0:
            raise ValueError(f"fault probabilities add up to {total:.3f}, more than 1")
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must not be negative")
        self.method = self.method.upper()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method == method) and fnmatch.fnmatchcase(
            path, self.route
        )

    def draw(self, rng: random.Random) -> str | None:
        """Which fault (if any) hits this request."""
        roll = rng.random()
        for name in (
            "p_500",
            "p_502",
            "p_503",
            "p_429",
            "p_429_no_retry_after",
            "p_hang",
            "p_drop",
        ):
            roll -= getattr(self, name)
            if roll < 0:
                return name[2:]
        return None


class FaultInjector:
    """An ordered list of fault rules with a seeded random source (thread-safe)."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def add(self, rule: FaultRule | None = None, **kwargs: Any) -> FaultRule:
        rule = rule or FaultRule(**kwargs)
        with self._lock:
            self._rules.append(rule)
        return rule

    def replace(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def clear(self) -> None:
        self.replace([])

    def decide(self, method: str, path: str) -> tuple[float, str | None, FaultRule | None]:
        """(delay in seconds, fault name or None, the rule) for one request."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    delay = (rule.latency_ms + self._rng.uniform(0, rule.jitter_ms)) / 1000.0
                    return delay, rule.draw(self._rng), rule
        return 0.0, None, None


class RequestCounters:
    """Requests per `METHOD /route/template`, and per status code (thread-safe)."""

    def __init__(self) -> None:
        self._routes: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, method: str, path: str) -> None:
        with self._lock:
            self._routes[f"{method} {route_template(path)}"] += 1

    def count_status(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._statuses[f"{method} {route_template(path)} {status}"] += 1

    def get(self, key: str) -> int:
        """Count for `"GET /api/v2/deals"`; `"GET /api/v2/deals 429"` for one status."""
        with self._lock:
            return self._statuses[key] if key.count(" ") >= 2 else self._routes[key]

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._routes.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self._routes.values()),
                "routes": dict(self._routes),
                "statuses": dict(self._statuses),
            }

    def reset(self) -> None:
        with self._lock:
            self._routes.clear()
            self._statuses.clear()


async def send_json(
    send: Any, status: int, body: Any, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete JSON response on a raw ASGI `send`."""
    payload = orjson.dumps(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _drop_connection(send: Any) -> bool:
    """Close the TCP connection under a uvicorn request without answering."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        return False
    transport.close()
    return True


class FaultMiddleware:
    """ASGI middleware: counts every API request and applies the injector's faults.

    `error_body(status)` gives the JSON body each app answers errors with, so that injected
    faults look like the real service's own errors.
    """

    def __init__(
        self,
        app: Any,
        injector: FaultInjector,
        counters: RequestCounters,
        error_body: Any,
    ) -> None:
        self.app = app
        self.injector = injector
        self.counters = counters
        self.error_body = error_body

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.counters.count(method, path)

        async def counting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.counters.count_status(method, path, message["status"])
            await send(message)

        delay, fault, rule = self.injector.decide(method, path)
        if delay:
            await asyncio.sleep(delay)
        if fault is None:
            await self.app(scope, receive, counting_send)
            return
        assert rule is not None
        if fault in ("500", "502", "503"):
            await send_json(counting_send, int(fault), self.error_body(int(fault)))
        elif fault == "429":
            await send_json(
                counting_send,
                429,
                self.error_body(429),
                [(b"retry-after", str(rule.retry_after_s).encode())],
            )
        elif fault == "429_no_retry_after":
            await send_json(counting_send, 429, self.error_body(429))
        elif fault == "hang":
            await asyncio.sleep(rule.hang_s)
            if not _drop_connection(send):
                await send_json(counting_send, 504, self.error_body(504))
        elif fault == "drop":
            if not _drop_connection(send):
                raise ConnectionResetError("sandbox fault: connection dropped")


def faults_to_json(injector: FaultInjector) -> list[dict[str, Any]]:
    return [asdict(rule) for rule in injector.rules]


def admin_router(injector: FaultInjector, counters: RequestCounters) -> Any:
    """`/_sandbox/faults` (GET, POST one rule, PUT all rules, DELETE) and `/_sandbox/counters`."""
    from fastapi import APIRouter, Body
    from fastapi.responses import JSONResponse

    router = APIRouter(prefix=ADMIN_PREFIX, include_in_schema=False)

    def _rules(data: Any) -> list[FaultRule] | JSONResponse:
        items = data if isinstance(data, list) else [data]
        try:
            return [FaultRule.from_dict(item) for item in items]
        except (TypeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    @router.get("/faults")
    def get_faults() -> list[dict[str, Any]]:
        return faults_to_json(injector)

    @router.post("/faults", status_code=201)
    def add_fault(data: dict[str, Any] = Body(...)) -> Any:
        rules = _rules(data)
        if isinstance(rules, JSONResponse):
            return rules
        injector.add(rules[0])
        return faults_to_json(injector)

    @router.put("/faults")
    def put_faults(data: list[dict[str, Any]] = Body(...)) -> Any:
        rules = _rules(data)
        if isinstance(rules, JSONResponse):
            return rules
        injector.replace(rules)
        return faults_to_json(injector)

    @router.delete("/faults")
    def clear_faults() -> list[dict[str, Any]]:
        injector.clear()
        return []

    @router.get("/counters")
    def get_counters() -> dict[str, Any]:
        return counters.snapshot()

    @router.delete("/counters")
    def reset_counters() -> dict[str, Any]:
        counters.reset()
        return counters.snapshot()

    return router


__all__ = [
    "ADMIN_PREFIX",
    "FaultInjector",
    "FaultMiddleware",
    "FaultRule",
    "RequestCounters",
    "faults_to_json",
    "route_template",
    "admin_router",
    "send_json",
]
