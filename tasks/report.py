"""Report and commit: the run log, the run's Prefect artifacts, and the cursors.

Every run logs an action per record it considered (created, updated, unchanged, skipped with
why, failed with Planhat's message) in the state store, and publishes two Prefect artifacts: a
table of counts per object and action, and a table of the skips and failures with reasons.

Cursors move only after the push succeeded (design §3): a stream's cursor advances to the newest
`update_time` read only when none of that stream's records failed; otherwise the next run reads
them again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from store import StateStore
from store.records import RunAction, RunReport
from tasks.context import SyncContext
from tasks.fetch import STREAMS, Fetched
from tasks.push import PushResult
from tasks.select import Scope

log = logging.getLogger(__name__)

#: stream → the object type whose push decides whether its cursor may move
STREAM_OBJECTS = {
    "deals": "deal",
    "organizations": "organization",
    "persons": "person",
    "notes": "note",
}


def advance_cursors(
    store: StateStore, fetched: Fetched, results: Sequence[PushResult], streams: Iterable[str]
) -> dict[str, bool]:
    """Advance each read stream's cursor to its newest `update_time` when its push had no
    failure. Returns stream → moved."""
    failed = {r.object_type for r in results if r.failed}
    moved = {}
    for stream in streams:
        newest = fetched.newest.get(stream)
        if newest is None:
            continue
        ok = STREAM_OBJECTS[stream] not in failed
        moved[stream] = store.advance_cursor(stream, newest, pushed=ok)
    return moved


def all_actions(scope: Scope, results: Sequence[PushResult]) -> list[RunAction]:
    actions = list(scope.skipped)
    for result in results:
        actions.extend(result.actions)
    return actions


def summary_markdown(title: str, report: RunReport, *, dry_run: bool) -> str:
    lines = [f"# {title}{' (dry run: nothing written)' if dry_run else ''}", ""]
    rows = report.counts_table()
    if not rows:
        lines.append("Nothing to do.")
    for row in rows:
        parts = [
            f"{row[a]} {a}"
            for a in ("created", "updated", "unchanged", "skipped", "conflict", "failed")
            if row.get(a)
        ]
        lines.append(f"* **{row['object']}**: {', '.join(parts) or 'none'}")
    if report.reasons:
        lines += ["", "## Why records were skipped or failed", ""]
        for reason in report.reasons[:20]:
            lines.append(
                f"* {reason.count} × {reason.object_type} {reason.action}: {reason.reason}"
            )
    return "\n".join(lines)


def publish_report(
    store: StateStore,
    run_id: str,
    title: str,
    actions: list[RunAction],
    *,
    dry_run: bool,
    artifacts: bool = True,
) -> RunReport:
    """Log the actions and publish the run's artifacts; returns the report."""
    store.log_actions(run_id, actions)
    report = store.run_report(run_id)
    if artifacts:
        create_markdown_artifact(
            key="sync-summary",
            markdown=summary_markdown(title, report, dry_run=dry_run),
            description=title,
        )
        create_table_artifact(
            key="sync-counts",
            table=report.counts_table() or [{"object": "-", "total": 0}],
            description="records per object and action",
        )
        create_table_artifact(
            key="sync-skips-and-failures",
            table=report.problems_table() or [{"object": "-", "reason": "none"}],
            description="every record skipped or failed, with the reason",
        )
    return report


def report_counts(report: RunReport) -> dict[str, Any]:
    """A run's result as plain data (what a flow returns)."""
    return {
        "run_id": report.run_id,
        "counts": report.counts,
        "problems": report.problems_total,
        "reasons": [
            {"object": r.object_type, "action": r.action, "reason": r.reason, "count": r.count}
            for r in report.reasons
        ],
    }


# -- Prefect tasks --------------------------------------------------------------------------------


@task(name="report the run", cache_policy=NO_CACHE)
def report_task(
    ctx: SyncContext, run_id: str, title: str, scope: Scope, results: list[PushResult]
) -> dict[str, Any]:
    report = publish_report(
        ctx.store, run_id, title, all_actions(scope, results), dry_run=ctx.dry_run
    )
    return report_counts(report)


@task(name="advance cursors", cache_policy=NO_CACHE)
def advance_cursors_task(
    ctx: SyncContext, fetched: Fetched, results: list[PushResult]
) -> dict[str, bool]:
    if ctx.dry_run:
        return {}
    streams = [STREAMS[s] for s in STREAMS if ctx.mappings.receives(s)]
    return advance_cursors(ctx.store, fetched, results, streams)
