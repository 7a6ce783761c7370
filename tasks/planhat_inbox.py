"""Planhat's automation webhooks in the inbox, as the planhat-sync flow sees them.

A planhat-sync run takes every waiting Planhat notification, `PLANHAT_BATCH` at a time, reads
the records they name fresh from Planhat and merges them into Pipedrive (`tasks.scan`), then
marks them done; a failed batch waits again (after `tasks.inbox.MAX_ATTEMPTS`, the incremental
sync's scan covers it). Several notifications of one record are one read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from deployments.planhat_events import parse_planhat_delivery
from store import InboxItem, StateStore
from tasks.context import SyncContext
from tasks.inbox import STALE_CLAIM
from tasks.scan import ScanSummary, scanned, sync_notified

log = logging.getLogger(__name__)

#: Planhat notifications one batch takes
PLANHAT_BATCH = 500


class PlanhatBatch:
    """The records one pass of a planhat-sync run reads, and the inbox items they settle."""

    def __init__(self, items: Sequence[InboxItem]) -> None:
        self.items = list(items)
        #: model → (record `_id`, its company `_id`), each record once
        self.records: dict[str, dict[str, str | None]] = {}
        for item in self.items:
            try:
                delivery = parse_planhat_delivery(item.payload)
            except ValueError:  # stored by an older receiver? nothing to read: settled
                continue
            self.records.setdefault(delivery.model, {})[delivery.planhat_id] = delivery.company_id

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def keys(self) -> list[str]:
        return [i.dedupe_key for i in self.items]

    def title(self) -> str:
        parts = [f"{len(ids)} {model}" for model, ids in sorted(self.records.items())]
        n = len(self.items)
        return f"Planhat sync: {', '.join(parts) or 'nothing'} ({n} notification{'s' * (n != 1)})"


def claim_planhat_batch(store: StateStore, *, first: bool) -> PlanhatBatch:
    if first:
        store.inbox_requeue_stale(STALE_CLAIM)  # a dead run's notifications are not held forever
    return PlanhatBatch(store.inbox_claim_planhat(PLANHAT_BATCH))


@task(name="claim waiting Planhat notifications", cache_policy=NO_CACHE)
def claim_planhat_task(ctx: SyncContext, first: bool = True) -> PlanhatBatch:
    batch = claim_planhat_batch(ctx.store, first=first)
    if first and not batch:
        log.info("inbox: no Planhat notification waiting (another run took them)")
    return batch


@task(name="read the notified Planhat records and send their changes", cache_policy=NO_CACHE)
def sync_notified_task(ctx: SyncContext, batch: PlanhatBatch, run_id: str) -> ScanSummary:
    notified = {model: list(ids.items()) for model, ids in batch.records.items()}
    summary = sync_notified(
        ctx.pipedrive, ctx.planhat, ctx.store, ctx.mappings, notified, run_id=run_id
    )
    scanned(summary, dry_run=ctx.dry_run)
    return summary


@task(name="mark the Planhat notifications done", cache_policy=NO_CACHE)
def planhat_done_task(ctx: SyncContext, batch: PlanhatBatch) -> int:
    done = ctx.store.inbox_done(i.id for i in batch.items)
    log.info("inbox: %d Planhat notification(s) synced", done)
    return done
