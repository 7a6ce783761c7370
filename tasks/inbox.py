"""The webhook inbox, as the flows see it (the receiver stores each notification there first).

* A deal-sync run started by a notification claims its inbox item first and marks it done once
  the run's push succeeded (a failed run leaves it claimed; the incremental sync takes over).
* An incremental sync covers every change made before it started, so once it succeeded it
  settles every notification received before its start: nothing is lost, nothing is done twice.
  It also deletes the notifications handled more than `incremental.inbox_retention_days` ago
  (pending and failed ones are never deleted), so the inbox does not grow forever.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE

from store import StateStore
from tasks.context import SyncContext

log = logging.getLogger(__name__)

#: a claimed item whose run has not finished after this long is given back
STALE_CLAIM = timedelta(minutes=30)


def claim_notification(store: StateStore, inbox_key: str | None) -> int | None:
    """Claim the notification's inbox item; its id, or None (no key, or already handled)."""
    if not inbox_key:
        return None
    item = store.inbox_claim_key(inbox_key)
    return item.id if item is not None else None


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


@task(name="claim the notification", cache_policy=NO_CACHE)
def claim_notification_task(ctx: SyncContext, inbox_key: str | None) -> int | None:
    return claim_notification(ctx.store, inbox_key)


@task(name="mark the notification done", cache_policy=NO_CACHE)
def notification_done_task(ctx: SyncContext, item_id: int | None) -> None:
    if item_id is not None:
        ctx.store.inbox_done([item_id])


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
