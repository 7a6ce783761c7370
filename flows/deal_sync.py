"""The deal-sync flow: one Pipedrive deal notification → its license, company, contacts and
notes in Planhat. The deal is fetched fresh, so late, duplicated or out-of-order notifications
converge to the deal's current state (design §2.6)."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow

from flows.common import finish, open_context_task, run_id
from flows.params import SettingsDir, form
from tasks.enrich import enrich_task
from tasks.fetch import fetch_deals_task
from tasks.inbox import claim_notification_task, notification_done_task
from tasks.push import push_task
from tasks.report import report_task
from tasks.select import select_task


@flow(
    name="deal-sync",
    description="One Pipedrive deal → its Planhat license, company, "
    "end users and notes (when won in a selected pipeline).",
)
def deal_sync(
    deal_id: Annotated[
        int,
        form(
            "Pipedrive deal id",
            "The deal to sync (its id in Pipedrive, e.g. 1042). A webhook run gets it from the "
            "deal's notification.",
        ),
    ],
    inbox_key: Annotated[
        str | None,
        form(
            "Notification (optional)",
            "Set by the webhook trigger: the stored notification that started the run, marked "
            "done when the run succeeds. Leave empty for a run started by hand.",
        ),
    ] = None,
    settings_dir: SettingsDir = None,
) -> dict[str, Any]:
    """`deal_id`: the deal to sync; `inbox_key`: the stored notification that started the run
    (the receiver's trigger passes it), marked done when the run succeeded."""
    ctx = open_context_task(settings_dir)
    with finish(ctx):
        item = claim_notification_task(ctx, inbox_key)
        fetched = fetch_deals_task(ctx, [deal_id])
        selection = select_task(ctx, fetched)
        scope = enrich_task(ctx, fetched, selection)
        results = push_task(ctx, scope)
        report = report_task(ctx, run_id(), f"Deal sync: deal {deal_id}", scope, results)
        notification_done_task(ctx, item)
        return report
