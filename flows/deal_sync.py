"""The deal-sync flow: Pipedrive deal notifications → their licenses, companies, contacts and
notes in Planhat. Each deal is fetched fresh, so late, duplicated or out-of-order notifications
converge to the deal's current state (design §2.6).

A run started by a notification takes every deal notification waiting in the inbox, in batches
of up to 100 deals (`tasks.inbox`), until none waits: a burst of notifications becomes a few
batches of a few runs, not a run each. Each batch reads its deals and their organizations
fresh, and the persons and notes of the deals entering Planhat (`tasks.enrich`). A run started
by hand syncs its one deal with everything it brings, read fresh."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow

from flows.common import finish, open_context_task, run_id
from flows.params import SettingsDir, form
from tasks.enrich import enrich_task
from tasks.fetch import fetch_deals_task
from tasks.inbox import claim_deals_task, notifications_done_task, settled
from tasks.push import push_task
from tasks.report import report_task
from tasks.select import select_task


@flow(
    name="deal-sync",
    description="Pipedrive deals (from their notifications) → their Planhat licenses, "
    "companies, end users and notes (when won in a selected pipeline).",
)
def deal_sync(
    deal_id: Annotated[
        int,
        form(
            "Pipedrive deal id",
            "The deal to sync (its id in Pipedrive, e.g. 1042). A webhook run gets it from the "
            "notification that started it, and syncs every other waiting notification too.",
        ),
    ],
    inbox_key: Annotated[
        str | None,
        form(
            "Notification (optional)",
            "Set by the webhook trigger: the stored notification that started the run. The run "
            "then takes every deal notification waiting in the inbox, 100 deals a batch, and "
            "marks each done once synced. Leave empty for a run started by hand (that deal only).",
        ),
    ] = None,
    settings_dir: SettingsDir = None,
) -> dict[str, Any]:
    """`deal_id`: the deal to sync; `inbox_key`: the stored notification that started the run
    (the receiver's trigger passes it): the run then syncs every waiting notification."""
    ctx = open_context_task(settings_dir)
    with finish(ctx):
        report: dict[str, Any] = {"run_id": run_id(), "deals": [], "notifications": 0}
        batch = claim_deals_task(ctx, deal_id, inbox_key)
        while batch:
            with settled(ctx, batch):
                fetched = fetch_deals_task(ctx, batch.deal_ids)
                selection = select_task(ctx, fetched)
                scope = enrich_task(ctx, fetched, selection, entering_only=batch.from_inbox)
                results = push_task(ctx, scope)
                report |= report_task(ctx, run_id(), batch.title(), scope, results)
                notifications_done_task(ctx, batch, run_id())
            report["deals"] += batch.deal_ids
            report["notifications"] += len(batch.items)
            batch = claim_deals_task(ctx, deal_id, inbox_key, first=False)
        return report
