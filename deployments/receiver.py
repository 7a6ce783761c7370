"""The webhook receiver: Pipedrive notification → inbox → 2xx, then Prefect events (design §3).

    app = create_receiver_app(load_settings())          # FastAPI; serve it with uvicorn
    uvicorn.run(app, host="0.0.0.0", port=8713)
    drain_inbox(store, api_url)                          # later: owed events, runs never started

`POST /webhooks/pipedrive` (also served at the path of `connection.receiver.public_url`, the
address the connect flow registers with Pipedrive) takes Pipedrive webhook bodies of version
2.0 and 1.0:

1. **Basic auth**, compared in constant time: none → 401 (`WWW-Authenticate: Basic`), wrong →
   403. The password is never logged nor echoed.
2. **The body**: at most 1 MiB (413, by `Content-Length` and by the bytes actually read), a
   JSON content type (415), valid JSON nested at most `MAX_JSON_DEPTH` levels (400 with the
   reason), a Pipedrive delivery: a `meta` object, v1 or v2, with an event id, a known object
   and action, and Pipedrive ids (`deployments.events.parse_delivery`; 400 naming the field).
   None of these rejections stores anything or starts anything, and no reason or log line
   repeats any text of the body.
3. **Stored** in the state store's inbox, de-duplicated on Pipedrive's event id
   (`Delivery.inbox_key`, from the same parse), committed *before* the answer (a store that
   cannot be written → 503, and Pipedrive retries). A deal's item is stored with its deal id
   and its Prefect event owed; other objects' with nothing owed.
4. **Does it start a run?** A deal-sync run claims every waiting deal notification, so a new
   deal notification asks for a run only when no other waiting one asked within
   `RUN_REQUEST_FRESH` (60 s): `StateStore.inbox_request_run` decides it atomically, so of a
   burst (a bulk edit: one webhook per deal) one notification asks and the run it starts
   takes them all. A redelivery never asks.
5. **200** at once, without waiting for Prefect: `{"stored": true, "duplicate": bool, "event":
   "queued" | "posted" | "not posted", "event_id": ..., "starts_run": bool}`. `"queued"`: the
   event is owed and the poster posts it shortly; `"posted"`: a redelivery whose event Prefect
   already took; `"not posted"` (with a `reason`): an object other than a deal, which gets no
   event (the incremental sync covers persons, organizations, notes...). `starts_run`: this
   delivery asked for the deal-sync run (its event carries `pdsync.starts-run: "yes"`).
   `own_write`: `change_source: api` by the webhook's owner (the user whose token the sync
   connects with): recognised as the sync's own write, and said so in the log line. It is
   still synced (a script with the same token must not be ignored): its run finds the values
   equal to what was last synced and writes nothing (no echo).
6. **The events** are posted off the request path by the app's `EventPump`, and
   `drain_inbox` asks again for runs nobody started: see `deployments.inbox_events`.
7. **Planhat's automation webhooks** (`POST /webhooks/planhat`, when
   `connection.receiver.planhat_webhook` is set): the shared secret in the configured header
   (missing → 401, wrong → 403, compared in constant time), the same body checks, then
   `deployments.planhat_events.parse_planhat_delivery`; stored under `planhat:<id>` with its
   event owed, and asking for a planhat-sync run as deal notifications ask for a deal-sync run
   (one run takes every waiting Planhat notification).

`GET /healthz` → 200 `{"ok": true, "inbox": {status: count}, "events_not_posted": n}` (503 with
the reason when the store cannot be read).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deployments.events import (
    RUN_REQUEST_FRESH,
    Delivery,
    default_prefect_api_url,
    event_for,
    parse_delivery,
    pipedrive_event,
)
from deployments.inbox_events import (
    DECIDING,
    EVENT_BATCH_SIZE,
    STORE_ERRORS,
    EventPump,
    drain_inbox,
)
from deployments.planhat_events import (
    PLANHAT_PATH,
    PlanhatDelivery,
    parse_planhat_delivery,
    planhat_event,
)
from mappings.models import Settings
from store import StateStore
from store.state import RunSource
from tasks.credentials import planhat_webhook_secret, receiver_password

__all__ = [
    "EVENT_BATCH_SIZE",
    "HEALTH_PATH",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "WEBHOOK_PATH",
    "EventPump",
    "create_receiver_app",
    "drain_inbox",
    "pipedrive_event",
]

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/pipedrive"
HEALTH_PATH = "/healthz"
MAX_BODY_BYTES = 1024 * 1024
#: the deepest nesting of objects and arrays a body may have (Pipedrive's go 4 or 5 deep)
MAX_JSON_DEPTH = 32
#: past the limit, the rest of a body is read and dropped up to this size (so that the client
#: gets its 413 instead of a reset connection), then the connection is let go
DISCARD_LIMIT_BYTES = 8 * MAX_BODY_BYTES
REALM = "pdsync"
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")


# -- the request checks -------------------------------------------------------------------------
def _problem(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=status, headers=headers)


def _credentials(header: str | None) -> tuple[bytes, bytes] | None:
    """(username, password) of a Basic Authorization header; None when there is none;
    (b"", b"") when it is malformed (which then fails the comparison)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b"", b""
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else (b"", b"")


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than `MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            if size > DISCARD_LIMIT_BYTES:
                break
            continue
        chunks.append(chunk)
    return None if size > MAX_BODY_BYTES else b"".join(chunks)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _deeper_than(value: Any, limit: int) -> bool:
    """True when `value` nests objects/arrays more than `limit` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _parse_json(raw: bytes) -> Any:
    """The JSON of `raw`; ValueError with a reason that quotes none of the text."""
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:  # the parser's own limit (about 1,000 levels)
        raise ValueError(f"invalid JSON: nested more than {MAX_JSON_DEPTH} levels deep") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid JSON: not UTF-8 text ({exc.reason})") from None
    except ValueError as exc:  # JSONDecodeError names line and column, never the text
        raise ValueError(f"invalid JSON: {exc}") from None
    if isinstance(body, dict | list) and _deeper_than(body, MAX_JSON_DEPTH):
        raise ValueError(f"invalid JSON: nested more than {MAX_JSON_DEPTH} levels deep")
    return body


def _webhook_paths(settings: Settings) -> list[str]:
    paths = [WEBHOOK_PATH]
    public = settings.integration.connection.receiver.public_url
    if public:
        path = urlsplit(public).path.rstrip("/")
        if path and path not in paths and path not in (HEALTH_PATH, PLANHAT_PATH):
            paths.append(path)
    return paths


# -- the app ------------------------------------------------------------------------------------
@dataclass
class _Outcome:
    status: int
    body: dict[str, Any]
    wake: bool = False  # an event is owed: wake the poster


def create_receiver_app(
    settings: Settings,
    *,
    prefect_api_url: str | None = None,
    store: StateStore | None = None,
) -> FastAPI:
    """The receiver for `settings` (basic-auth username from
    `connection.receiver.basic_auth`, password from where it says: resolved now, so a missing
    password fails here, not at the first delivery). Events go to `prefect_api_url` (default:
    `PREFECT_API_URL` from Prefect's settings), posted by the app's `EventPump`
    (`app.state.event_pump`, running while the app's lifespan does); notifications to `store`
    (default: a `StateStore(settings.store_url)` opened once for this app and closed with
    it)."""
    username = settings.integration.connection.receiver.basic_auth.username.encode("utf-8")
    password = receiver_password(settings).encode("utf-8")
    hook = settings.integration.connection.receiver.planhat_webhook
    secret = planhat_webhook_secret(settings)
    planhat_secret = secret.encode("utf-8") if secret is not None else None
    planhat_header = hook.header if hook is not None else None
    api_url = prefect_api_url or default_prefect_api_url()
    if not api_url:
        log.warning(
            "PREFECT_API_URL is not set: notifications are stored but no Prefect event is "
            "posted (the incremental sync still syncs them)"
        )
    own_store = store is None
    inbox = store if store is not None else StateStore(settings.store_url)
    pump = EventPump(inbox, api_url)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if api_url:
            pump.start()
        try:
            yield
        finally:
            await run_in_threadpool(pump.stop)
            if own_store:
                inbox.close()

    app = FastAPI(
        title="pdsync webhook receiver",
        description="Pipedrive webhook deliveries → the inbox → Prefect events.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.store = inbox
    app.state.prefect_api_url = api_url
    app.state.event_pump = pump
    warned: list[bool] = []  # the "no poster" warning was logged

    def authorized(request: Request) -> JSONResponse | None:
        given = _credentials(request.headers.get("authorization"))
        if given is None:
            return _problem(
                401,
                "authentication required (HTTP basic auth)",
                {"WWW-Authenticate": f'Basic realm="{REALM}"'},
            )
        user_ok = secrets.compare_digest(given[0], username)
        password_ok = secrets.compare_digest(given[1], password)
        if not (user_ok and password_ok):
            return _problem(403, "wrong credentials")
        return None

    def store_and_decide(
        body: dict[str, Any], described: str, key: str, event_due: bool, deal_id: int | None
    ) -> bool | _Outcome:
        """Store the delivery: True when it is new, False for a redelivery, or the answer
        that refuses it (not storable, or the store failed)."""
        try:
            new = inbox.inbox_add(key, body, event_due=event_due, deal_id=deal_id)
        except ValueError as exc:  # not storable as plain JSON
            log.warning("webhook %s refused with 400: not a storable JSON document", described)
            return _Outcome(400, {"detail": f"not a storable JSON document: {exc}"})
        except Exception as exc:  # the database is down: the sender must retry later
            log.error(
                "webhook %s NOT stored: the state store failed (%s); answering 503 so that "
                "it is sent again",
                described,
                type(exc).__name__,
            )
            return _Outcome(503, {"detail": "the notification could not be stored; retry later"})
        return new

    def ask_for_run(described: str, key: str, source: RunSource) -> bool:
        try:
            return inbox.inbox_request_run(key, RUN_REQUEST_FRESH, source=source)
        except STORE_ERRORS as exc:  # stored: the drain asks for a run if none comes
            log.warning(
                "webhook %s: stored, but whether it starts a run is not recorded (the state "
                "store failed: %s); its event says no, and the drain asks again if no run "
                "comes",
                described,
                type(exc).__name__,
            )
            return False

    def accept(
        body: dict[str, Any], delivery: Delivery | PlanhatDelivery, source: RunSource
    ) -> _Outcome:
        described, key = delivery.describe(), delivery.inbox_key
        if isinstance(delivery, PlanhatDelivery):
            event: dict[str, Any] | None = planhat_event(delivery)
            deal_id = None
        else:
            event = event_for(delivery)
            deal_id = delivery.deal_id if event is not None else None
        due = event is not None
        starts = False
        with DECIDING.deciding(key):
            stored = store_and_decide(body, described, key, due, deal_id)
            if isinstance(stored, _Outcome):
                return stored
            new = stored
            if new and due:
                starts = ask_for_run(described, key, source)
        answer: dict[str, Any] = {"stored": True, "duplicate": not new}
        wake = False
        run = "a deal-sync run" if source == "deal" else "a planhat-sync run"
        if event is None:
            answer.update(
                event="not posted",
                event_id=None,
                starts_run=False,
                reason=f"no event for a {getattr(delivery, 'object', '?')}: the incremental "
                "sync covers it",
            )
            what = f"no event ({getattr(delivery, 'object', '?')}s are covered by the "
            what += "incremental sync)"
        else:
            answer.update(event_id=event["id"], starts_run=starts)
            if new:
                owed = True
                what = "event queued, " + (
                    f"starts {run}" if starts else "taken by the run already asked for"
                )
            else:
                try:
                    owed = inbox.inbox_event_owed(key)
                except STORE_ERRORS:
                    owed = True  # wake the poster anyway: Prefect de-duplicates the id
                what = "event still queued" if owed else "event already posted"
            answer["event"] = "queued" if owed else "posted"
            wake = owed
        if isinstance(delivery, Delivery):
            answer["own_write"] = delivery.own_write
            if delivery.own_write:
                what += (
                    "; an API change by the webhook's own user: the sync's own write (its run "
                    "finds the values already synced and writes nothing) or a script with its "
                    "token"
                )
        log.info(
            "webhook %s: %s, %s",
            described,
            "duplicate, already stored" if not new else "stored",
            what,
        )
        return _Outcome(200, answer, wake)

    async def answer(refused: JSONResponse | None, request: Request, planhat: bool) -> JSONResponse:
        checked = refused or await checked_body(request, planhat)
        if isinstance(checked, JSONResponse):
            log.warning(
                "%s webhook refused with %d: %s",
                "Planhat" if planhat else "Pipedrive",
                checked.status_code,
                json.loads(bytes(checked.body))["detail"],
            )
            return checked
        body, delivery = checked
        source: RunSource = "planhat" if planhat else "deal"
        outcome = await run_in_threadpool(accept, body, delivery, source)
        if outcome.wake:
            pump.wake()
            if api_url and not pump.running and not warned:
                warned.append(True)
                log.warning(
                    "the event poster is not running (the server did not run the app's "
                    "lifespan): events stay owed until drain_inbox posts them"
                )
        return JSONResponse(outcome.body, status_code=outcome.status)

    async def receive(request: Request) -> JSONResponse:
        return await answer(authorized(request), request, planhat=False)

    async def receive_planhat(request: Request) -> JSONResponse:
        return await answer(planhat_authorized(request), request, planhat=True)

    def planhat_authorized(request: Request) -> JSONResponse | None:
        assert planhat_secret is not None and planhat_header is not None
        given = request.headers.get(planhat_header)
        if not given:
            return _problem(401, f"the shared secret is missing (header {planhat_header})")
        if not secrets.compare_digest(given.encode("utf-8"), planhat_secret):
            return _problem(403, "wrong shared secret")
        return None

    async def checked_body(
        request: Request, planhat: bool
    ) -> JSONResponse | tuple[dict[str, Any], Delivery | PlanhatDelivery]:
        length = request.headers.get("content-length")
        if length is not None:
            if not _CONTENT_LENGTH.fullmatch(length.strip()):  # ASCII digits only
                return _problem(400, f"invalid Content-Length {length[:20]!r}")
            if int(length) > MAX_BODY_BYTES:
                return _problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        if not _is_json(request.headers.get("content-type")):
            shown = repr((request.headers.get("content-type") or "none")[:100])
            return _problem(415, f"the content type must be application/json, got {shown}")
        raw = await _read_body(request)
        if raw is None:
            return _problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            body = _parse_json(raw)
            delivery = parse_planhat_delivery(body) if planhat else parse_delivery(body)
        except ValueError as exc:
            return _problem(400, str(exc))
        return body, delivery

    for path in _webhook_paths(settings):
        app.add_api_route(path, receive, methods=["POST"], include_in_schema=False)
    if planhat_secret is not None:
        app.add_api_route(PLANHAT_PATH, receive_planhat, methods=["POST"], include_in_schema=False)

    @app.get(HEALTH_PATH, include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            counts = inbox.inbox_counts()
            waiting = inbox.inbox_not_posted_count()
        except STORE_ERRORS as exc:
            return JSONResponse(
                {"ok": False, "detail": f"the state store failed ({type(exc).__name__})"},
                status_code=503,
            )
        return JSONResponse({"ok": True, "inbox": counts, "events_not_posted": waiting})

    return app
