"""The webhook receiver: Pipedrive notification → inbox → Prefect event → 2xx (design §3).

    app = create_receiver_app(load_settings())          # FastAPI; serve it with uvicorn
    uvicorn.run(app, host="0.0.0.0", port=8713)
    drain_inbox(store, api_url)                          # later: events Prefect missed

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
   cannot be written → 503, and Pipedrive retries). A deal's item is stored with its Prefect
   event owed; other objects' with nothing owed.
4. **A Prefect event** for deal notifications (`deployments.events`): `pipedrive.deal.<action>`,
   resource `pipedrive.deal.<id>`, id `uuid5(EVENT_NAMESPACE, inbox key)`, payload `deal_id`,
   `object`, `action`, `inbox_key`, `change_source`, posted synchronously to
   `{PREFECT_API_URL}/events` with a 2 s timeout. Other objects (persons, organizations, notes…)
   are stored and get no event: the incremental sync covers them.
5. **200** `{"stored": true, "duplicate": bool, "event": "posted" | "not posted", "event_id":
   ...}` (and a `reason` when no event was posted), even when Prefect is down: the
   notification stays pending in the inbox with its event owed (the inbox's
   `event_posted_at` is set only once Prefect took the event), and `drain_inbox` (the serve
   loop; or this app itself, after its next successful post) posts it later. A redelivery
   posts the same event id again only when the event is still owed. The incremental sync
   settles every pending notification anyway: nothing is lost.

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
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deployments.events import (
    Delivery,
    EventPoster,
    default_prefect_api_url,
    event_for,
    parse_delivery,
    pipedrive_event,
)
from mappings.models import Settings
from store import InboxItem, StateStore, StoreUnavailableError
from tasks.credentials import receiver_password

__all__ = [
    "HEALTH_PATH",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "WEBHOOK_PATH",
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
_STORE_ERRORS = (sa.exc.SQLAlchemyError, StoreUnavailableError, OSError)
_drain_lock = threading.Lock()  # one drain at a time in a process (the app's, the serve loop's)


# -- draining -----------------------------------------------------------------------------------
def _stored_event(item: InboxItem) -> dict[str, Any] | None:
    """The Prefect event of a stored delivery (None: it gets none, or its body is not a
    delivery, or it is stored under another key than its own)."""
    try:
        delivery = parse_delivery(item.payload)
    except ValueError:
        return None
    if delivery.inbox_key != item.dedupe_key:
        return None
    return event_for(delivery)


def _drain(store: StateStore, poster: EventPoster, limit: int) -> tuple[int, int]:
    """Post the owed events, oldest first, until one fails; (posted, events still owed)."""
    with _drain_lock:
        items = store.inbox_not_posted(limit)
        settled: list[str] = []
        posted = 0
        for item in items:
            event = _stored_event(item)
            if event is not None:
                if not poster.post(event):
                    break  # Prefect still down: keep the rest for the next drain
                posted += 1
            settled.append(item.dedupe_key)  # posted, or nothing to post
        if settled:
            store.inbox_mark_posted(settled)
        left = store.inbox_not_posted_count()
    if items:
        log.info("drained the inbox: %d event(s) posted to Prefect, %d still waiting", posted, left)
    return posted, left


def drain_inbox(store: StateStore, prefect_api_url: str, *, limit: int = 500) -> int:
    """Post the events of pending notifications whose event never reached Prefect (Prefect
    was down when they arrived), oldest first, at most `limit`; stops at the first post that
    fails (Prefect still down) and keeps the rest. Notifications a run or the incremental sync
    already settled are not posted. Returns how many events were posted.

    The event ids are the deterministic ones, so a drain that overlaps a redelivery's post
    starts no second run. A store that cannot be read is logged and counts as nothing posted.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    with EventPoster(prefect_api_url) as poster:
        try:
            return _drain(store, poster, limit)[0]
        except _STORE_ERRORS as exc:
            log.warning("inbox not drained: the state store failed (%s)", type(exc).__name__)
            return 0


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
        if path and path not in paths and path != HEALTH_PATH:
            paths.append(path)
    return paths


# -- the app ------------------------------------------------------------------------------------
@dataclass
class _Outcome:
    status: int
    body: dict[str, Any]
    drain: bool = False


def create_receiver_app(
    settings: Settings,
    *,
    prefect_api_url: str | None = None,
    store: StateStore | None = None,
) -> FastAPI:
    """The receiver for `settings` (basic-auth username from
    `connection.receiver.basic_auth`, password from where it says: resolved now, so a missing
    password fails here, not at the first delivery). Events go to `prefect_api_url` (default:
    `PREFECT_API_URL` from Prefect's settings); notifications to `store` (default: a
    `StateStore(settings.store_url)` opened once for this app and closed with it)."""
    username = settings.integration.connection.receiver.basic_auth.username.encode("utf-8")
    password = receiver_password(settings).encode("utf-8")
    api_url = prefect_api_url or default_prefect_api_url()
    if not api_url:
        log.warning(
            "PREFECT_API_URL is not set: notifications are stored but no Prefect event is "
            "posted (the incremental sync still syncs them)"
        )
    own_store = store is None
    inbox = store if store is not None else StateStore(settings.store_url)
    poster = EventPoster(api_url)
    state = {"owed": True}  # events may be owed: try a drain after the next post

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            poster.close()
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

    def drain_in_background() -> None:
        try:
            _, left = _drain(inbox, poster, 500)
            state["owed"] = left > 0
        except _STORE_ERRORS as exc:
            log.warning("inbox not drained: the state store failed (%s)", type(exc).__name__)

    def accept(body: dict[str, Any], delivery: Delivery) -> _Outcome:
        key = delivery.inbox_key
        event = event_for(delivery)
        try:
            new = inbox.inbox_add(key, body, event_due=event is not None)
        except ValueError as exc:  # not storable as plain JSON
            log.warning(
                "webhook %s refused with 400: not a storable JSON document", delivery.describe()
            )
            return _Outcome(400, {"detail": f"not a storable JSON document: {exc}"})
        except Exception as exc:  # the database is down: Pipedrive must retry later
            log.error(
                "webhook %s NOT stored: the state store failed (%s); answering 503 so that "
                "Pipedrive retries",
                delivery.describe(),
                type(exc).__name__,
            )
            return _Outcome(503, {"detail": "the notification could not be stored; retry later"})
        answer: dict[str, Any] = {"stored": True, "duplicate": not new}
        drain = False
        if event is None:
            answer.update(
                event="not posted",
                event_id=None,
                reason=f"no event for a {delivery.object}: the incremental sync covers it",
            )
            what = f"no event ({delivery.object}s are covered by the incremental sync)"
        else:
            answer["event_id"] = event["id"]
            try:
                retry = not new and inbox.inbox_event_owed(key)
            except _STORE_ERRORS:
                retry = True  # post again: Prefect de-duplicates the id
            if new or retry:
                error = poster.send(event)
                if error is None:
                    answer["event"] = "posted"
                    what = f"event {event['event']} posted"
                    _mark_posted_safely(inbox, key)
                    drain = state["owed"]
                else:
                    answer.update(event="not posted", reason=error)
                    state["owed"] = True
                    what = f"event NOT posted ({error}); kept for the drain"
            else:
                answer["event"] = "posted"
                what = "event already posted"
        log.info(
            "webhook %s: %s, %s",
            delivery.describe(),
            "duplicate, already stored" if not new else "stored",
            what,
        )
        return _Outcome(200, answer, drain)

    async def receive(request: Request, background: BackgroundTasks) -> JSONResponse:
        checked = authorized(request) or await checked_body(request)
        if isinstance(checked, JSONResponse):
            log.warning(
                "webhook refused with %d: %s",
                checked.status_code,
                json.loads(bytes(checked.body))["detail"],
            )
            return checked
        body, delivery = checked
        outcome = await run_in_threadpool(accept, body, delivery)
        if outcome.drain:
            background.add_task(drain_in_background)
        return JSONResponse(outcome.body, status_code=outcome.status, background=background)

    async def checked_body(request: Request) -> JSONResponse | tuple[dict[str, Any], Delivery]:
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
            delivery = parse_delivery(body)
        except ValueError as exc:
            return _problem(400, str(exc))
        return body, delivery

    for path in _webhook_paths(settings):
        app.add_api_route(path, receive, methods=["POST"], include_in_schema=False)

    @app.get(HEALTH_PATH, include_in_schema=False)
    def healthz() -> JSONResponse:
        try:
            counts = inbox.inbox_counts()
            waiting = inbox.inbox_not_posted_count()
        except _STORE_ERRORS as exc:
            return JSONResponse(
                {"ok": False, "detail": f"the state store failed ({type(exc).__name__})"},
                status_code=503,
            )
        return JSONResponse({"ok": True, "inbox": counts, "events_not_posted": waiting})

    return app


def _mark_posted_safely(store: StateStore, key: str) -> None:
    try:
        store.inbox_mark_posted([key])
    except _STORE_ERRORS as exc:  # the drain posts it again: Prefect de-duplicates the id
        log.warning("the posted event of %s not marked posted (%s)", key, type(exc).__name__)
