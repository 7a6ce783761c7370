"""The webhook inbox, as the flows see it (the receiver stores each notification there first).

* A deal-sync run started by a notification takes every waiting deal notification (its own
  first), a batch of up to `DEAL_BATCH` deals at a time, never a deal another run holds, and
  comes back for more until none waits; each batch's notifications are marked done once its
  push succeeded, or wait again when it failed (after `MAX_ATTEMPTS`, the incremental sync
  covers them). So a burst of notifications is synced in a few batches, each deal fetched
  once per batch however many notifications it got.
* An incremental sync covers every change made before it started, so once it succeeded it
  settles every notification received before its start: nothing is lost, nothing is done twice.
  It also deletes the notifications handled more than `incremental.inbox_retention_days` ago
  (pending and failed ones are never deleted), so the inbox does not grow forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

from prefect import task
from prefect.cache_policies import NO_CACHE

from store import InboxItem, StateStore
from tasks.context import SyncContext

log = logging.getLogger(__name__)

#: a claimed item whose run has not finished after this long is given back (its process died:
#: a deal-sync batch takes seconds, a minute under a binding rate limit)
STALE_CLAIM = timedelta(minutes=10)


#: deals one deal-sync batch takes from the inbox (Pipedrive's `ids` filter takes 100 a call)
DEAL_BATCH = 100
#: a notification whose sync failed this many times is left to the incremental sync
MAX_ATTEMPTS = 5
#: while notifications pour in faster than this many a second, a run collects them into a
#: fuller batch (fewer Pipedrive calls) for at most COLLECT_S seconds; at a calmer pace it
#: takes what is waiting at once (latency first)
BURST_PER_S = 5
COLLECT_S = 3.0


class DealBatch:
    """The deals one pass of a deal-sync run syncs, and the inbox items they settle."""

    def __init__(
        self, deal_ids: Sequence[int], items: Sequence[InboxItem] = (), *, from_inbox: bool
    ) -> None:
        self.deal_ids = sorted({int(d) for d in deal_ids})
        self.items = list(items)
        self.from_inbox = from_inbox

    def __bool__(self) -> bool:
        return bool(self.deal_ids)

    @property
    def keys(self) -> list[str]:
        return [i.dedupe_key for i in self.items]

    def title(self) -> str:
        shown = ", ".join(str(d) for d in self.deal_ids[:10])
        more = f", … ({len(self.deal_ids)} deals)" if len(self.deal_ids) > 10 else ""
        what = f"deal{'s' if len(self.deal_ids) > 1 else ''} {shown}{more}"
        if not self.from_inbox:
            return f"Deal sync: {what}"
        n = len(self.items)
        return f"Deal sync: {what} ({n} notification{'s' if n != 1 else ''})"


def collect(store: StateStore, *, clock: Callable[[], float] = time.monotonic) -> None:
    """Wait while a burst pours in, so that the next claim takes a fuller batch: at most
    `COLLECT_S` seconds, until `DEAL_BATCH` deals wait or fewer than `BURST_PER_S`
    notifications came in the last second. Returns at once at a calm pace."""
    deadline = clock() + COLLECT_S
    while clock() < deadline:
        arrivals, waiting = store.inbox_deal_pace(timedelta(seconds=1))
        if arrivals < BURST_PER_S or waiting >= DEAL_BATCH:
            return
        time.sleep(0.25)


def claim_deal_batch(
    store: StateStore, deal_id: int | None, inbox_key: str | None, *, first: bool
) -> DealBatch:
    """The next batch of a deal-sync run. A run started by hand (no `inbox_key`) syncs its
    deal once; a run started by a notification takes every waiting deal notification, its
    own first, up to `DEAL_BATCH` deals, and comes back for more until none waits."""
    if inbox_key is None:
        return DealBatch([deal_id] if first and deal_id is not None else [], from_inbox=False)
    if first:
        store.inbox_requeue_stale(STALE_CLAIM)  # a dead run's deals are not held forever
    collect(store)
    items = store.inbox_claim_deals(
        DEAL_BATCH, first=inbox_key if first else None, deals=[deal_id] if first and deal_id else ()
    )
    return DealBatch([i.deal_id for i in items if i.deal_id is not None], items, from_inbox=True)


def batch_done(store: StateStore, batch: DealBatch) -> int:
    """The batch's notifications are synced."""
    return store.inbox_done(i.id for i in batch.items)


class Claimed(Protocol):
    """A batch of claimed notifications (deal or Planhat)."""

    @property
    def items(self) -> list[InboxItem]: ...


B = TypeVar("B", bound=Claimed)


def batch_failed(store: StateStore, batch: Claimed, error: BaseException) -> None:
    """The batch's sync failed: its notifications wait again (the next run, or the serve
    loop's re-ask a minute later, retries them); after `MAX_ATTEMPTS` they are left to the
    incremental sync, which reads every change anyway."""
    reason = f"sync failed: {type(error).__name__}: {error}"
    again = [i.id for i in batch.items if i.attempts < MAX_ATTEMPTS]
    given_up = [i.id for i in batch.items if i.attempts >= MAX_ATTEMPTS]
    store.inbox_failed(again, reason, retry=True)
    store.inbox_failed(
        given_up, reason + f" ({MAX_ATTEMPTS} attempts: left to the incremental sync)"
    )


@contextmanager
def settled(ctx: SyncContext, batch: B) -> Iterator[B]:
    """Around a batch's sync: on failure its notifications wait again (then the error goes on)."""
    try:
        yield batch
    except BaseException as exc:
        if batch.items:
            try:
                batch_failed(ctx.store, batch, exc)
            except Exception:  # the store is down too: the stale-claim rule gives them back
                log.warning("the failed batch's notifications could not be released", exc_info=True)
        raise


def announce_synced(batch: DealBatch, run_id: str) -> None:
    """One Prefect event per deal synced from notifications (`pdsync.deal.synced`, resource
    `pipedrive.deal.<id>`, related to this flow run, payload the notifications' keys): the
    Prefect UI shows, for each deal, the notifications and the run that synced them."""
    from prefect.events import emit_event

    keys: dict[int, list[str]] = {}
    for item in batch.items:
        if item.deal_id is not None:
            keys.setdefault(item.deal_id, []).append(item.dedupe_key)
    related = [
        {"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.resource.role": "flow-run"}
    ]
    for deal, deal_keys in keys.items():
        emit_event(
            "pdsync.deal.synced",
            resource={"prefect.resource.id": f"pipedrive.deal.{deal}"},
            related=related,
            payload={"deal_id": deal, "inbox_keys": deal_keys},
        )
    if batch.items:
        log.info(
            "inbox: %d notification(s) of %d deal(s) synced: %s",
            len(batch.items),
            len(keys),
            ", ".join(batch.keys[:20]) + (", …" if len(batch.items) > 20 else ""),
        )


def settle_notifications_before(store: StateStore, started: datetime, batch: int = 1000) -> int:
    """Mark done every notification received before `started` (the run read their changes);
    later ones go back to pending. Returns how many were settled."""
    store.inbox_requeue_stale(STALE_CLAIM)
    settled = 0
    while True:
        items = store.inbox_claim(batch)
        if not items:
            return settled
        done = [i.id for i in items if i.received_at < started]
        later = [i.id for i in items if i.received_at >= started]
        settled += store.inbox_done(done)
        if later:
            store.inbox_failed(later, "arrived during an incremental sync", retry=True)
            return settled


def purge_handled(store: StateStore, retention_days: int, now: datetime | None = None) -> int:
    """Delete the notifications handled (done) more than `retention_days` ago."""
    now = now or datetime.now(UTC)
    return store.inbox_purge(now - timedelta(days=retention_days))


@task(name="claim waiting notifications", cache_policy=NO_CACHE)
def claim_deals_task(
    ctx: SyncContext, deal_id: int | None, inbox_key: str | None, first: bool = True
) -> DealBatch:
    batch = claim_deal_batch(ctx.store, deal_id, inbox_key, first=first)
    if first and inbox_key is not None and not batch:
        log.info("inbox: nothing waiting (notification %s was synced by another run)", inbox_key)
    return batch


@task(name="mark the notifications done", cache_policy=NO_CACHE)
def notifications_done_task(ctx: SyncContext, batch: DealBatch, run_id: str) -> int:
    done = batch_done(ctx.store, batch)
    announce_synced(batch, run_id)
    return done


@task(name="settle earlier notifications", cache_policy=NO_CACHE)
def settle_notifications_task(ctx: SyncContext, started: datetime) -> int:
    """Settle the notifications this run covered, then purge the old handled ones."""
    if ctx.dry_run:
        return 0
    settled = settle_notifications_before(ctx.store, started)
    retention = ctx.settings.integration.incremental.inbox_retention_days
    purged = purge_handled(ctx.store, retention)
    if purged:
        log.info("inbox: deleted %d notifications handled over %d days ago", purged, retention)
    return settled
