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
6. **The events, off the request path.** One background poster per app (`EventPump`, a thread
   started and stopped with the app's lifespan, which uvicorn runs; without it the events wait
   for `drain_inbox` and a WARNING says so; woken by every stored notification and every
   `POSTER_IDLE_WAKE_S` seconds anyway) posts the owed events, oldest first, in batches of up
   to `EVENT_BATCH_SIZE` per `POST {PREFECT_API_URL}/events`, and marks them posted (the
   inbox's `event_posted_at`) only once Prefect took them. Each event is rebuilt from the
   stored item (`deployments.events`): `pipedrive.deal.<action>`, resource
   `pipedrive.deal.<id>` labelled `pdsync.starts-run` `"yes"` when the item asked for a run
   (`run_requested_at` set) else `"no"`, id `uuid5(EVENT_NAMESPACE, inbox key)`, payload
   `deal_id`, `object`, `action`, `inbox_key`, `change_source`. Prefect down, slow or failing:
   the events stay owed and the poster retries with a backoff (up to `POSTER_MAX_BACKOFF_S`);
   nothing is lost, and a redelivery of a notification whose event is still owed only wakes the
   poster. Prefect de-duplicates the ids, so a post repeated after a lost answer starts nothing
   twice. Once an event that starts a run is posted, its ask is recorded again
   (`inbox_mark_run_requested`): the run is on its way from then, not from when Prefect was
   down. An event Prefect refuses outright (HTTP 413/422, isolated by splitting the batch) is
   logged at ERROR and no longer owed: its notification stays pending for the next run and the
   incremental sync. The events of notifications still being stored and decided in this process
   are held back until their decision is stored (another process's poster could post such an
   event as "no": the drain then asks again, see below).
7. **`drain_inbox`** (`pdsync serve`'s periodic drain; tests) posts the owed events the same
   way, then asks again for a run nobody started: when waiting deal notifications exist and
   none asked for a run within `RUN_REQUEST_FRESH` (the run asked for was cancelled, or
   crashed before claiming), it posts `pipedrive.deal.waiting` (starts-run yes, a new random
   id) for the oldest and records the ask (`inbox_mark_run_requested`). The incremental sync
   settles every pending notification anyway.

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
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from deployments.events import (
    BATCH_POST_TIMEOUT_S,
    RUN_REQUEST_FRESH,
    Delivery,
    EventPoster,
    PostFailure,
    default_prefect_api_url,
    event_for,
    parse_delivery,
    pipedrive_event,
    starts_a_run,
    waiting_event,
)
from mappings.models import Settings
from store import InboxItem, StateStore, StoreUnavailableError
from tasks.credentials import receiver_password

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
#: events per `POST /events` (Prefect takes a JSON list)
EVENT_BATCH_SIZE = 200
#: the poster looks for owed events this often even when no notification woke it
POSTER_IDLE_WAKE_S = 5.0
#: after a failed post the poster waits this long, doubling up to `POSTER_MAX_BACKOFF_S`
POSTER_MIN_BACKOFF_S = 0.25
POSTER_MAX_BACKOFF_S = 5.0
#: how long stopping the poster waits for a post under way
POSTER_STOP_TIMEOUT_S = BATCH_POST_TIMEOUT_S + 5.0

_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_STORE_ERRORS = (sa.exc.SQLAlchemyError, StoreUnavailableError, OSError)
_drain_lock = threading.Lock()  # one drain at a time in a process (the app's, the serve loop's)


# -- posting the owed events ---------------------------------------------------------------------
class _Deciding:
    """The inbox keys of deliveries this process is storing and deciding (`inbox_add` then
    `inbox_request_run`): until the decision is stored, their row says "asked for no run"
    whatever the decision will be, so their events are held back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: Counter[str] = Counter()

    @contextmanager
    def deciding(self, key: str) -> Iterator[None]:
        with self._lock:
            self._keys[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._keys[key] -= 1
                if self._keys[key] <= 0:
                    del self._keys[key]

    def snapshot(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._keys)


_DECIDING = _Deciding()


def _stored_event(item: InboxItem) -> dict[str, Any] | None:
    """The Prefect event of a stored delivery, labelled starts-run yes when the item asked for
    a run (None: it gets none, or its body is not a delivery, or it is stored under another
    key than its own)."""
    try:
        delivery = parse_delivery(item.payload)
    except ValueError:
        return None
    if delivery.inbox_key != item.dedupe_key:
        return None
    return event_for(delivery, starts_run=item.run_requested_at is not None)


def _owed_batch(store: StateStore, size: int) -> list[InboxItem]:
    """Up to `size` items whose event is owed, oldest first, leaving out those still being
    decided (`_Deciding`: the wake that follows their decision posts them).

    Read, look at what is being decided, read again, and keep the items of both reads not
    being decided, as the second read has them: an item stored but not decided at the first
    read is either still being decided (left out) or decided before the second read (which
    then shows the decision)."""
    first = store.inbox_not_posted(size)
    if not first:
        return []
    busy = _DECIDING.snapshot()
    seen = {item.dedupe_key for item in first}
    return [
        item
        for item in store.inbox_not_posted(size)
        if item.dedupe_key in seen and item.dedupe_key not in busy
    ]


@dataclass
class _Posted:
    """What a round of posting did."""

    events: int = 0  # events Prefect took
    starting: int = 0  # of which with starts-run yes
    settled: int = 0  # items no longer owed (posted, or nothing to post, or refused)
    failure: PostFailure | None = None  # why the round stopped early (events kept owed)


def _post_items(store: StateStore, poster: EventPoster, items: Sequence[InboxItem]) -> _Posted:
    """Post the events of `items` in one request and mark them posted; when Prefect refuses
    the request itself, split it to find the event it refuses, which is logged and settled."""
    pairs = [(item, _stored_event(item)) for item in items]
    events = [event for _, event in pairs if event is not None]
    failure = poster.send_batch(events)
    if failure is None:
        store.inbox_mark_posted([item.dedupe_key for item, _ in pairs])
        asked = [item.dedupe_key for item, event in pairs if event and starts_a_run(event)]
        for key in asked:  # the run is on its way from now: the ask is fresh from now
            store.inbox_mark_run_requested(key)
        return _Posted(len(events), len(asked), len(pairs))
    if not failure.rejected:
        return _Posted(failure=failure)
    if len(events) > 1:
        half = len(items) // 2
        done = _post_items(store, poster, items[:half])
        if done.failure is not None:
            return done
        rest = _post_items(store, poster, items[half:])
        rest.events += done.events
        rest.starting += done.starting
        rest.settled += done.settled
        return rest
    for item, event in pairs:
        if event is not None:
            log.error(
                "event %s (%s) of deal %s refused by Prefect (%s): not posted again; the "
                "notification stays in the inbox for the next deal-sync run and the "
                "incremental sync",
                event["event"],
                event["id"],
                item.deal_id,
                failure.reason,
            )
    store.inbox_mark_posted([item.dedupe_key for item, _ in pairs])
    return _Posted(settled=len(pairs))


def _post_owed(store: StateStore, poster: EventPoster, limit: int | None = None) -> _Posted:
    """Post the owed events, oldest first, in batches of `EVENT_BATCH_SIZE` until none is left
    (or `limit` items were settled), or a post fails (the rest stays owed)."""
    total = _Posted()
    while limit is None or total.settled < limit:
        size = EVENT_BATCH_SIZE if limit is None else min(EVENT_BATCH_SIZE, limit - total.settled)
        with _drain_lock:
            items = _owed_batch(store, size)
            if not items:
                break
            done = _post_items(store, poster, items)
        total.events += done.events
        total.starting += done.starting
        total.settled += done.settled
        if done.failure is not None:
            total.failure = done.failure
            break
    return total


def _ask_again(store: StateStore, poster: EventPoster) -> int:
    """Post `pipedrive.deal.waiting` for the oldest waiting deal notification when none asked
    for a run within `RUN_REQUEST_FRESH`; 1 when posted (the ask is then recorded)."""
    with _drain_lock:
        item = store.inbox_unasked(RUN_REQUEST_FRESH)
        if item is None or item.deal_id is None:
            return 0
        event = waiting_event(item.dedupe_key, item.deal_id)
        failure = poster.send_batch([event])
        if failure is None:
            store.inbox_mark_run_requested(item.dedupe_key)
    if failure is not None:
        log.warning(
            "deal notifications wait for a deal-sync run nobody started; asking again failed "
            "(%s): tried again at the next drain",
            failure.reason,
        )
        return 0
    log.info(
        "deal notifications waited more than %d s for a deal-sync run that never came: asked "
        "again (event %s for deal %d, inbox item %d)",
        RUN_REQUEST_FRESH.total_seconds(),
        event["id"],
        item.deal_id,
        item.id,
    )
    return 1


def drain_inbox(store: StateStore, prefect_api_url: str, *, limit: int = 500) -> int:
    """Post the owed events of pending notifications (Prefect was down, or the receiver
    stopped before its poster posted them), oldest first, at most `limit`, in batches; stops at
    the first post that fails (Prefect still down) and keeps the rest. Notifications a run or
    the incremental sync already settled are not posted. Then, when Prefect took them, ask
    again for a run nobody started (`pipedrive.deal.waiting`, see the module docstring).
    Returns how many events were posted (the waiting one included).

    The event ids of notifications are the deterministic ones, so a drain that overlaps the
    receiver's poster starts no second run. A store that cannot be read is logged and counts
    as nothing posted.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    with EventPoster(prefect_api_url) as poster:
        try:
            done = _post_owed(store, poster, limit)
            if done.failure is not None:
                log.warning(
                    "inbox drain: events not posted to %s (%s); kept for the next drain",
                    poster.shown_url,
                    done.failure.reason,
                )
            if done.settled:
                log.info(
                    "drained the inbox: %d event(s) posted to Prefect, %d still waiting",
                    done.events,
                    store.inbox_not_posted_count(),
                )
            asked = _ask_again(store, poster) if done.failure is None else 0
        except _STORE_ERRORS as exc:
            log.warning("inbox not drained: the state store failed (%s)", type(exc).__name__)
            return 0
    return done.events + asked


class EventPump:
    """The receiver's background event poster: one thread that posts the owed events
    (`_post_owed`) whenever `wake()` is called, every `POSTER_IDLE_WAKE_S` seconds anyway, and,
    after a failed post, again after a backoff (`POSTER_MIN_BACKOFF_S` doubling up to
    `POSTER_MAX_BACKOFF_S`; wakes do not cut a backoff short). `start`/`stop` may be called
    again (a new thread each time)."""

    def __init__(self, store: StateStore, api_url: str | None) -> None:
        self.store = store
        self.api_url = api_url
        self.posted = 0  # events Prefect took, since the app was created
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poster: EventPoster | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> EventPump:
        if self.running:
            return self
        self._stop.clear()
        self._wake.set()  # look at once: events may be owed from before
        self._poster = EventPoster(self.api_url)
        self._thread = threading.Thread(target=self._run, name="pdsync-event-poster", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Post soon (a notification was stored, or is owed)."""
        self._wake.set()

    def stop(self, timeout_s: float = POSTER_STOP_TIMEOUT_S) -> None:
        """Stop the thread (a post under way ends first, within its timeout); owed events stay
        owed in the inbox."""
        self._stop.set()
        self._wake.set()
        thread, poster = self._thread, self._poster
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning("the event poster did not stop within %g s", timeout_s)
        if poster is not None:
            poster.close()
        self._thread = self._poster = None

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            if backoff:
                if self._stop.wait(backoff):
                    break
            else:
                self._wake.wait(POSTER_IDLE_WAKE_S)
                if self._stop.is_set():
                    break
            self._wake.clear()
            try:
                failed = self._round()
            except Exception:  # noqa: BLE001 - a poster that dies posts nothing more
                log.exception("the event poster failed; it tries again after a backoff")
                failed = True
            backoff = (
                min(POSTER_MAX_BACKOFF_S, max(POSTER_MIN_BACKOFF_S, backoff * 2)) if failed else 0.0
            )

    def _round(self) -> bool:
        """Post what is owed; True when a post (or the store) failed."""
        poster = self._poster
        if poster is None:
            return False
        try:
            done = _post_owed(self.store, poster)
        except _STORE_ERRORS as exc:
            self._failed(f"the state store failed ({type(exc).__name__})")
            return True
        self.posted += done.events
        if done.events:
            log.info(
                "posted %d event(s) to Prefect (%d starting a deal-sync run)",
                done.events,
                done.starting,
            )
        if done.failure is not None:
            self._failed(f"Prefect at {poster.shown_url}: {done.failure.reason}")
            return True
        if self.last_error is not None:
            log.info("the event poster is posting again: nothing owed is left behind")
            self.last_error = None
        return False

    def _failed(self, reason: str) -> None:
        """One WARNING line per streak of failures (and per new reason), not one per retry."""
        if reason != self.last_error:
            log.warning(
                "owed events not posted: %s; they stay owed in the inbox and are posted again "
                "within %g s",
                reason,
                POSTER_MAX_BACKOFF_S,
            )
        self.last_error = reason


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

    def store_and_decide(body: dict[str, Any], delivery: Delivery, deal: bool) -> bool | _Outcome:
        """Store the delivery: True when it is new, False for a redelivery, or the answer
        that refuses it (not storable, or the store failed)."""
        key = delivery.inbox_key
        try:
            new = inbox.inbox_add(
                key, body, event_due=deal, deal_id=delivery.deal_id if deal else None
            )
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
        return new

    def ask_for_run(delivery: Delivery) -> bool:
        try:
            return inbox.inbox_request_run(delivery.inbox_key, RUN_REQUEST_FRESH)
        except _STORE_ERRORS as exc:  # stored: the drain asks for a run if none comes
            log.warning(
                "webhook %s: stored, but whether it starts a run is not recorded (the state "
                "store failed: %s); its event says no, and the drain asks again if no run "
                "comes",
                delivery.describe(),
                type(exc).__name__,
            )
            return False

    def accept(body: dict[str, Any], delivery: Delivery) -> _Outcome:
        event = event_for(delivery)
        deal = event is not None
        starts = False
        with _DECIDING.deciding(delivery.inbox_key):
            stored = store_and_decide(body, delivery, deal)
            if isinstance(stored, _Outcome):
                return stored
            new = stored
            if new and deal:
                starts = ask_for_run(delivery)
        answer: dict[str, Any] = {"stored": True, "duplicate": not new}
        wake = False
        if event is None:
            answer.update(
                event="not posted",
                event_id=None,
                starts_run=False,
                reason=f"no event for a {delivery.object}: the incremental sync covers it",
            )
            what = f"no event ({delivery.object}s are covered by the incremental sync)"
        else:
            answer.update(event_id=event["id"], starts_run=starts)
            if new:
                owed = True
                what = "event queued, " + (
                    "starts a deal-sync run" if starts else "taken by the run already asked for"
                )
            else:
                try:
                    owed = inbox.inbox_event_owed(delivery.inbox_key)
                except _STORE_ERRORS:
                    owed = True  # wake the poster anyway: Prefect de-duplicates the id
                what = "event still queued" if owed else "event already posted"
            answer["event"] = "queued" if owed else "posted"
            wake = owed
        log.info(
            "webhook %s: %s, %s",
            delivery.describe(),
            "duplicate, already stored" if not new else "stored",
            what,
        )
        return _Outcome(200, answer, wake)

    async def receive(request: Request) -> JSONResponse:
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
        if outcome.wake:
            pump.wake()
            if api_url and not pump.running and not warned:
                warned.append(True)
                log.warning(
                    "the event poster is not running (the server did not run the app's "
                    "lifespan): events stay owed until drain_inbox posts them"
                )
        return JSONResponse(outcome.body, status_code=outcome.status)

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
