"""The planhat-sync flow: records changed in Planhat (named by its automation webhooks) → their
Pipedrive records, field by field (`tasks.scan`, `tasks.twoway`).

A run started by a notification takes every waiting Planhat notification, 500 at a time, until
none waits: a bulk edit in Planhat is a few batches of one run, not a run per record. Each
record is read fresh from Planhat and merged with its Pipedrive record against what was last
synced: only the fields that changed are written, so the notification of our own write
writes nothing (no echo). The incremental sync's scan of Planhat catches whatever no
notification announced."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow

from flows.common import finish, open_context_task, run_id
from flows.params import SettingsDir, form
from tasks.inbox import settled
from tasks.planhat_inbox import claim_planhat_task, planhat_done_task, sync_notified_task
from tasks.report import report_logged_task


@flow(
    name="planhat-sync",
    description="Records changed in Planhat (from its automation webhooks) → their Pipedrive "
    "records, only the fields that changed.",
)
def planhat_sync(
    inbox_key: Annotated[
        str | None,
        form(
            "Notification (optional)",
            "Set by the webhook trigger: the stored Planhat notification that started the run. "
            "Every waiting Planhat notification is synced either way.",
        ),
    ] = None,
    settings_dir: SettingsDir = None,
) -> dict[str, Any]:
    ctx = open_context_task(settings_dir)
    with finish(ctx):
        run = run_id()
        notifications = 0
        titles: list[str] = []
        batch = claim_planhat_task(ctx)
        while batch:
            with settled(ctx, batch):
                sync_notified_task(ctx, batch, run)
                planhat_done_task(ctx, batch)
            notifications += len(batch.items)
            titles.append(batch.title())
            batch = claim_planhat_task(ctx, first=False)
        title = titles[0] if len(titles) == 1 else f"Planhat sync: {notifications} notifications"
        report = report_logged_task(ctx, run, title)
        report["notifications"] = notifications
        report["inbox_key"] = inbox_key
        return report
