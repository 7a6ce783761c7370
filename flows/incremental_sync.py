"""The incremental-sync flow: everything that changed in Pipedrive since the last run, per
section and direction; `full=True` is the backfill ("Fetch All"). It also catches any missed
webhook, and recreates the Pipedrive webhook if it was deleted. Cursors move only after the
push succeeded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow

from flows.common import finish, open_context_task, run_id
from flows.params import SettingsDir, form
from tasks.connect import check_webhook_task
from tasks.enrich import enrich_task
from tasks.fetch import fetch_changed_task
from tasks.inbox import settle_notifications_task
from tasks.push import push_task
from tasks.report import advance_cursors_task, report_task
from tasks.select import select_task


@flow(
    name="incremental-sync",
    description="Everything changed in Pipedrive since the last "
    "run (full=True: everything), into Planhat.",
)
def incremental_sync(
    full: Annotated[
        bool,
        form(
            "Full backfill",
            'Read everything from Pipedrive (the first backfill, "Fetch All"), not only what '
            "changed since the last run. Records unchanged in Planhat are not written again.",
        ),
    ] = False,
    settings_dir: SettingsDir = None,
) -> dict[str, Any]:
    started = datetime.now(UTC)
    ctx = open_context_task(settings_dir, fresh_account=True)
    with finish(ctx):
        check_webhook_task(ctx.settings, ctx.pipedrive, ctx.store)
        fetched = fetch_changed_task(ctx, full)
        selection = select_task(ctx, fetched)
        scope = enrich_task(ctx, fetched, selection, "full" if full else "incremental")
        results = push_task(ctx, scope)
        advance_cursors_task(ctx, fetched, results)
        settle_notifications_task(ctx, started)
        title = "Full backfill" if full else "Incremental sync"
        return report_task(ctx, run_id(), title, scope, results)
