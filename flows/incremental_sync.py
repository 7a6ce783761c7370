"""The incremental-sync flow: everything that changed in Pipedrive since the last run, per
section and direction; `full=True` is the backfill ("Fetch All"). It also catches any missed
webhook, and recreates the Pipedrive webhook if it was deleted. Then, for the sections that
send, it scans Planhat for what changed there since the last sync and merges it into Pipedrive
(`tasks.scan`); a merge in the stream that reads Planhat's whole company list does the
companies' scan in that read, so the list is read once.

The run is a stream (`tasks.stream`): each list is read page by page while what belongs in
Planhat is mapped and written in chunks of up to 5,000, companies first; each chunk's actions go
to the run log at once, and a stream's cursor moves only once the stream is fully written. The
cyclic garbage collector is set for that many records while the run lasts (`tasks.gctune`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow

from flows.common import finish, open_context_task, run_id
from flows.params import SettingsDir, form
from tasks.connect import check_webhook_task
from tasks.gctune import bulk_gc
from tasks.inbox import settle_notifications_task
from tasks.report import report_logged_task
from tasks.scan import scan_planhat_task
from tasks.stream import stream_sync_task


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
    with finish(ctx), bulk_gc():
        check_webhook_task(ctx.settings, ctx.pipedrive, ctx.store)
        run = run_id()
        streamed = stream_sync_task(ctx, run, full)
        scan_planhat_task(ctx, run, streamed.scan)
        settle_notifications_task(ctx, started)
        title = "Full backfill" if full else "Incremental sync"
        return report_logged_task(ctx, run, title)
