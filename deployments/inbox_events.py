"""The inbox's owed Prefect events, posted off the request path; runs asked for again.

**The events, off the request path.** One background poster per app (`EventPump`, a thread
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
event as "no": the drain then asks again, see below). Planhat's notifications
(`deployments.planhat_events`) are posted the same way: `planhat.<object>.<event>`.

**`drain_inbox`** (`pdsync serve`'s periodic drain; tests) posts the owed events the same
way, then asks again for a run nobody started: when waiting deal notifications exist and
none asked for a run within `RUN_REQUEST_FRESH` (the run asked for was cancelled, or
crashed before claiming), it posts `pipedrive.deal.waiting` (starts-run yes, a new random
id) for the oldest and records the ask (`inbox_mark_run_requested`); the same for waiting
Planhat notifications (`planhat.<object>.waiting`). The incremental sync settles every pending
notification anyway.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from deployments.events import (
    BATCH_POST_TIMEOUT_S,
    RUN_REQUEST_FRESH,
    EventPoster,
    PostFailure,
    event_for,
    parse_delivery,
    starts_a_run,
    waiting_event,
)
from deployments.planhat_events import (
    parse_planhat_delivery,
    planhat_waiting_event,
    stored_planhat_event,
)
from store import InboxItem, StateStore, StoreUnavailableError
from store.state import PLANHAT_KEY_PREFIX, RUN_SOURCES

log = logging.getLogger("deployments.receiver")

#: events per `POST /events` (Prefect takes a JSON list)
EVENT_BATCH_SIZE = 200
#: the poster looks for owed events this often even when no notification woke it
POSTER_IDLE_WAKE_S = 5.0
#: after a failed post the poster waits this long, doubling up to `POSTER_MAX_BACKOFF_S`
POSTER_MIN_BACKOFF_S = 0.25
POSTER_MAX_BACKOFF_S = 5.0
#: how long stopping the poster waits for a post under way
POSTER_STOP_TIMEOUT_S = BATCH_POST_TIMEOUT_S + 5.0

STORE_ERRORS = (sa.exc.SQLAlchemyError, StoreUnavailableError, OSError)
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


DECIDING = _Deciding()


def _stored_event(item: InboxItem) -> dict[str, Any] | None:
    """The Prefect event of a stored delivery, labelled starts-run yes when the item asked for
    a run (None: it gets none, or its body is not a delivery, or it is stored under another
    key than its own). Pipedrive's and Planhat's, told apart by the key."""
    if item.dedupe_key.startswith(PLANHAT_KEY_PREFIX):
        return stored_planhat_event(
            item.dedupe_key, item.payload, starts_run=item.run_requested_at is not None
        )
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
    busy = DECIDING.snapshot()
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
        asked = [item.dedupe_key for item, event in pairs if event and starts_a_run(event)]
        for key in asked:  # the run is on its way from now: the ask is fresh from now
            store.inbox_mark_run_requested(key)
        # then posted: an item seen posted has its ask recorded (never the other way round)
        store.inbox_mark_posted([item.dedupe_key for item, _ in pairs])
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
    """For each kind of notification (deal, Planhat), post a waiting event for the oldest
    waiting one when none asked for a run within `RUN_REQUEST_FRESH`; returns how many were
    posted (each ask is then recorded)."""
    asked = 0
    for source in RUN_SOURCES:
        with _drain_lock:
            item = store.inbox_unasked(RUN_REQUEST_FRESH, source=source)
            asking = _waiting_event(item) if item is not None else None
            if item is None or asking is None:
                continue
            event, subject = asking
            failure = poster.send_batch([event])
            if failure is None:
                store.inbox_mark_run_requested(item.dedupe_key)
        if failure is not None:
            log.warning(
                "%s notifications wait for a run nobody started; asking again failed (%s): "
                "tried again at the next drain",
                source,
                failure.reason,
            )
            continue
        log.info(
            "%s notifications waited more than %d s for a run that never came: asked again "
            "(event %s for %s, inbox item %d)",
            source,
            RUN_REQUEST_FRESH.total_seconds(),
            event["id"],
            subject,
            item.id,
        )
        asked += 1
    return asked


def _waiting_event(item: InboxItem) -> tuple[dict[str, Any], str] | None:
    """The event that asks again for a run on behalf of a waiting notification, and what it
    is about (for the log line)."""
    if item.deal_id is not None:
        return waiting_event(item.dedupe_key, item.deal_id), f"deal {item.deal_id}"
    try:
        delivery = parse_planhat_delivery(item.payload)
    except ValueError:
        return None
    return planhat_waiting_event(item.dedupe_key, delivery), delivery.describe()


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
        except STORE_ERRORS as exc:
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
        except STORE_ERRORS as exc:
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
