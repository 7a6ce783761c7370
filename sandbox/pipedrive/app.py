"""The sandbox Pipedrive: an ASGI app that speaks Pipedrive's API v1 and v2.

    sandbox = PipedriveSandbox(seed, tokens=["<40 hex characters>"], webhook_time_scale=0.01)
    served = ServedApp(sandbox.asgi).start()     # http://127.0.0.1:<port>/api/v2/deals
    ...
    served.stop(); sandbox.close()

The stack, outside in: `FaultMiddleware` (injected faults, request counters) →
`PipedriveRateLimit` (daily token budget per company, rolling 2 s burst window per token,
headers on every answer, 429) →
the FastAPI app (token check, then the endpoints of `sandbox.pipedrive.api`).

Admin endpoints under `/_sandbox/` (never authenticated, rate-limited, faulted or counted):
`faults`, `counters` (see `sandbox.faults`), `ratelimit` (GET the settings and the tokens spent
today; PUT `burst`, `search_burst`, `window_s`, `daily_budget`, `plan`, `seats`; DELETE resets
the windows and the spent budget), `deliveries` (GET the webhook delivery log, DELETE clears
it; `POST deliveries/{event_id}/redeliver` sends that event once more, see `redeliver`),
`webhooks` (GET/PUT the delivery settings: `time_scale`, `ban_policy`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.dataset import PipedriveSeed
from sandbox.faults import (
    ADMIN_PREFIX,
    FaultInjector,
    FaultMiddleware,
    RequestCounters,
    admin_router,
    send_json,
)
from sandbox.pipedrive.api import Api
from sandbox.pipedrive.common import ApiError, error_body, error_response, unauthorized_body
from sandbox.pipedrive.model import PipedriveModel
from sandbox.pipedrive.webhooks import WebhookDispatcher, WebhookRegistry
from sandbox.ratelimit import PipedriveRateLimit, pipedrive_token_of

UNAUTHORIZED_HEADERS = [(b"x-401-by-gw", b"true")]


class TokenAuth:
    """401 (Pipedrive's gateway body, `x-401-by-gw: true`) unless the request carries a known
    token in `x-api-token` or `api_token`. The token is never echoed."""

    def __init__(self, app: ASGIApp, tokens: frozenset[str]) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        if pipedrive_token_of(scope) not in self.tokens:
            await send_json(send, 401, unauthorized_body(), UNAUTHORIZED_HEADERS)
            return
        await self.app(scope, receive, send)


class PipedriveSandbox:
    """The sandbox Pipedrive over one seed; every valid token belongs to `seed.me_user_id`."""

    def __init__(
        self,
        seed: PipedriveSeed,
        tokens: list[str],
        *,
        burst: int = 40,
        window_s: float = 2.0,
        daily_budget: int = 1_000_000,
        webhook_time_scale: float = 1.0,
        webhook_ban_policy: bool = False,
        fault_seed: int = 0,
    ) -> None:
        if not tokens:
            raise ValueError("at least one API token is needed")
        self.tokens = frozenset(tokens)
        self.model = PipedriveModel(seed)
        self.webhooks = WebhookRegistry(
            seed.company.get("id", 0),
            seed.me_user_id,
            lambda uid: self.model.users.get(uid) is not None,
        )
        self.dispatcher = WebhookDispatcher(
            self.model, self.webhooks, time_scale=webhook_time_scale, ban_policy=webhook_ban_policy
        )
        self.model.listeners.append(self.dispatcher.on_event)
        self.api = Api(self.model, self.webhooks)
        self.faults = FaultInjector(fault_seed)
        self.counters = RequestCounters()
        self.app = self._build_app()
        # Every valid token belongs to the one company, so all of them share its daily budget;
        # unknown tokens belong to none (the gateway answers 401 before any limit).
        company = str(seed.company.get("id", "company"))
        self.ratelimit = PipedriveRateLimit(
            self.app,
            burst=burst,
            window_s=window_s,
            daily_budget=daily_budget,
            company_of=lambda token: company if token in self.tokens else None,
        )
        self.asgi: ASGIApp = FaultMiddleware(self.ratelimit, self.faults, self.counters, error_body)

    # -- the app ------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="Pipedrive sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        for method, path, handler in self.api.routes():
            app.router.add_route(path, handler, methods=[method], include_in_schema=False)

        async def api_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, ApiError)
            return exc.response()

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, StarletteHTTPException)
            if exc.status_code == 404:
                # Pipedrive's gateway answers an unknown path like a missing token
                # (reference §1, 3rd-party observation).
                return JSONResponse(unauthorized_body(), 401, headers={"x-401-by-gw": "true"})
            return error_response(exc.status_code)

        async def server_error(request: Request, exc: Exception) -> Response:
            return error_response(500)

        app.add_exception_handler(ApiError, api_error)
        app.add_exception_handler(StarletteHTTPException, http_error)
        app.add_exception_handler(Exception, server_error)
        app.include_router(admin_router(self.faults, self.counters))
        app.include_router(self._admin_router())
        app.add_middleware(TokenAuth, tokens=self.tokens)
        return app

    def _admin_router(self) -> APIRouter:
        router = APIRouter(prefix=ADMIN_PREFIX, include_in_schema=False)

        @router.get("/ratelimit")
        def get_ratelimit() -> dict[str, Any]:
            return self.ratelimit.settings()

        @router.put("/ratelimit")
        def put_ratelimit(data: dict[str, Any] = Body(...)) -> Any:
            ints = ("burst", "daily_budget", "search_burst", "seats")
            # GET's read-only keys may come back unchanged (tests restore saved settings).
            known = {*ints, "window_s", "plan", "tokens_spent"}
            unknown = sorted(set(data) - known)
            if unknown:
                return JSONResponse({"error": f"unknown keys {unknown}"}, 400)
            try:
                values: dict[str, Any] = {
                    name: int(data[name]) for name in ints if data.get(name) is not None
                }
                if data.get("window_s") is not None:
                    values["window_s"] = float(data["window_s"])
                if data.get("plan") is not None:
                    values["plan"] = str(data["plan"])
                # plan/seats first, so that an explicit burst or budget in the same call wins
                self.ratelimit.configure(**values)
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return self.ratelimit.settings()

        @router.delete("/ratelimit")
        def reset_ratelimit() -> dict[str, Any]:
            self.ratelimit.reset()
            return self.ratelimit.settings()

        @router.get("/deliveries")
        def get_deliveries() -> list[dict[str, Any]]:
            return self.deliveries()

        @router.delete("/deliveries")
        def clear_deliveries() -> list[dict[str, Any]]:
            self.dispatcher.log.clear()
            return []

        @router.post("/deliveries/{event_id}/redeliver", status_code=202)
        def redeliver(event_id: str) -> Any:
            attempt = self.redeliver(event_id)
            if attempt is None:
                return JSONResponse({"error": "unknown event (or too old to redeliver)"}, 404)
            return {"event_id": event_id, "attempt": attempt}

        @router.get("/webhooks")
        def get_webhook_settings() -> dict[str, Any]:
            return self.dispatcher.settings()

        @router.put("/webhooks")
        def put_webhook_settings(data: dict[str, Any] = Body(...)) -> Any:
            unknown = sorted(set(data) - {"time_scale", "ban_policy"})
            if unknown:
                return JSONResponse({"error": f"unknown keys {unknown}"}, 400)
            try:
                self.dispatcher.configure(
                    time_scale=None
                    if data.get("time_scale") is None
                    else float(data["time_scale"]),
                    ban_policy=None if data.get("ban_policy") is None else bool(data["ban_policy"]),
                )
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
            return self.dispatcher.settings()

        return router

    # -- Python API ---------------------------------------------------------------------------
    def deliveries(self) -> list[dict[str, Any]]:
        """The webhook delivery log: one entry per attempt (webhook_id, event_id, attempt, url,
        status, error, ok, duration_ms, time, version, action, object, entity_id, dropped)."""
        return self.dispatcher.log.entries()

    def redeliver(self, event_id: str) -> int | None:
        """Deliver a delivered event once more, as Pipedrive does when it did not get the
        receiver's answer: the same body (same `meta.id`) with the next attempt number, one
        attempt, logged. Returns that attempt number; None for an unknown event (see
        `WebhookDispatcher.redeliver`)."""
        return self.dispatcher.redeliver(event_id)

    def wait_for_deliveries(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least `n` entries are logged (TimeoutError otherwise)."""
        return self.dispatcher.log.wait_for(n, timeout)

    def close(self) -> None:
        """Stop the webhook delivery thread (idempotent)."""
        self.dispatcher.close()


__all__ = ["PipedriveSandbox", "TokenAuth"]
