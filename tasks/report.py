"""Report: the run log and the run's Prefect artifacts.

Every run logs an action per record it considered (created, updated, unchanged, skipped with
why, failed with Planhat's message) in the state store, and publishes three Prefect artifacts:
`sync-summary` (counts per object and action, the reasons grouped with how many records each,
and a link to the full list), `sync-counts` (the counts as a table) and
`sync-skips-and-failures` (every skipped, conflicting or failed record with its ids and reason).

(Cursors move in `tasks.stream`, chunk by chunk, never past an unwritten record.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from store import StateStore
from store.records import RunAction, RunReport
from tasks.context import SyncContext
from tasks.push import PushResult
from tasks.reasons import ACTION_ORDER, OBJECT_LABELS, group_reasons, reason_group
from tasks.select import Scope

log = logging.getLogger(__name__)


def all_actions(scope: Scope, results: Sequence[PushResult]) -> list[RunAction]:
    actions = list(scope.skipped)
    for result in results:
        actions.extend(result.actions)
    return actions


def report_reasons(report: RunReport) -> list[dict[str, Any]]:
    """The run's skips, conflicts and failures grouped by reason (`group_reasons`)."""
    return group_reasons(
        {"object": r.object_type, "action": r.action, "reason": r.reason, "count": r.count}
        for r in report.reasons
    )


# -- the run's artifacts --------------------------------------------------------------------------

SUMMARY_KEY = "sync-summary"
COUNTS_KEY = "sync-counts"
PROBLEMS_KEY = "sync-skips-and-failures"
#: the most records the skips-and-failures table lists (the run log in the store has them all)
FULL_LIST_LIMIT = 10_000
#: the most grouped reasons the summary shows (the rest: in the full list)
SUMMARY_REASONS = 50


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _objects(report: RunReport) -> list[str]:
    order = list(OBJECT_LABELS)
    return sorted(report.counts, key=lambda o: (order.index(o) if o in order else 9, o))


def problems_link(artifact_id: Any | None) -> str:
    """Where the full list of skips and failures is: a link to its artifact in the Prefect UI
    when the UI's URL is known, else its key (the run's Artifacts tab)."""
    name = f"artifact `{PROBLEMS_KEY}`"
    if artifact_id is None:
        return f"{name} (this run's Artifacts tab)"
    try:
        from prefect.settings import PREFECT_UI_URL

        ui_url = PREFECT_UI_URL.value()
    except Exception:  # noqa: BLE001 - a link is a convenience
        ui_url = None
    if not ui_url:
        return f"{name} (this run's Artifacts tab)"
    return f"[{name}]({str(ui_url).rstrip('/')}/artifacts/artifact/{artifact_id})"


def summary_markdown(
    title: str, report: RunReport, *, dry_run: bool, problems_at: str | None = None
) -> str:
    """The run's summary: records per object and action, then every reason for a skip, a
    conflict or a failure with how many records it concerns, and where the full list is."""
    lines = [f"# {title}{' (dry run: nothing written)' if dry_run else ''}", ""]
    objects = _objects(report)
    if not objects:
        lines.append("Nothing to do: no record to write, skip or report.")
    else:
        lines += [
            "| records | " + " | ".join(ACTION_ORDER) + " | total |",
            "| --- | " + " | ".join("---:" for _ in ACTION_ORDER) + " | ---: |",
        ]
        for obj in objects:
            row = report.counts[obj]
            cells = [str(row.get(a, 0)) if row.get(a) else "·" for a in ACTION_ORDER]
            label = OBJECT_LABELS.get(obj, obj)
            lines.append(f"| **{label}** | " + " | ".join(cells) + f" | {sum(row.values())} |")
    reasons = report_reasons(report)
    if reasons:
        total = report.problems_total
        lines += [
            "",
            f"## Why records were skipped, in conflict or failed ({total:,} "
            f"record{'s' if total != 1 else ''}, {len(reasons)} "
            f"reason{'s' if len(reasons) != 1 else ''})",
            "",
            "| records | object | action | reason |",
            "| ---: | --- | --- | --- |",
        ]
        for reason in reasons[:SUMMARY_REASONS]:
            lines.append(
                f"| {reason['count']} | {reason['object']} | {reason['action']} | "
                f"{_cell(reason['reason'])} |"
            )
        rest = reasons[SUMMARY_REASONS:]
        if rest:
            n = sum(r["count"] for r in rest)
            lines.append(f"| {n} | | | … and {len(rest)} more reasons (in the full list) |")
        where = problems_at or f"artifact `{PROBLEMS_KEY}`"
        listed = len(report.problems)
        if listed < total:
            lines += [
                "",
                f"The full list, one row per record: {where} (the first {listed:,} of "
                f"{total:,}; the state store's run log holds every one, run id "
                f"`{report.run_id}`).",
            ]
        else:
            lines += ["", f"The full list, one row per record ({total:,}): {where}."]
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
    """Log the actions and publish the run's artifacts; returns the report.

    Artifacts: `sync-skips-and-failures`, a table of every skipped, conflicting or failed
    record with its ids and reason (up to `FULL_LIST_LIMIT` rows, and the summary says so
    when there are more); `sync-counts`, records per object and action; `sync-summary`, both
    in short with the reasons grouped and counted, and a link to the full list."""
    store.log_actions(run_id, actions)
    report = store.run_report(run_id, problem_limit=FULL_LIST_LIMIT, reason_group=reason_group)
    if artifacts:
        problems_id = create_table_artifact(
            key=PROBLEMS_KEY,
            table=report.problems_table() or [{"object": "-", "reason": "none"}],
            description=f"{title}: every record skipped, in conflict or failed, with why",
        )
        create_table_artifact(
            key=COUNTS_KEY,
            table=report.counts_table() or [{"object": "-", "total": 0}],
            description=f"{title}: records per object and action",
        )
        create_markdown_artifact(
            key=SUMMARY_KEY,
            markdown=summary_markdown(
                title, report, dry_run=dry_run, problems_at=problems_link(problems_id)
            ),
            description=title,
        )
    log.info("%s%s: %s", title, " (dry run)" if dry_run else "", counts_line(report))
    for reason in report_reasons(report)[:10]:
        log.info(
            "  %d × %s %s: %s",
            reason["count"],
            reason["object"],
            reason["action"],
            reason["reason"],
        )
    return report


def counts_line(report: RunReport) -> str:
    """The counts in one line: "deals → licenses: 1 created, 4 skipped; ..."."""
    parts = []
    for obj in _objects(report):
        row = report.counts[obj]
        done = ", ".join(f"{row[a]} {a}" for a in ACTION_ORDER if row.get(a))
        parts.append(f"{OBJECT_LABELS.get(obj, obj)}: {done or 'none'}")
    return "; ".join(parts) or "nothing to do"


def report_counts(report: RunReport) -> dict[str, Any]:
    """A run's result as plain data (what a flow returns): its size is that of the reasons'
    groups (`tasks.reasons.reason_group`), never one entry per record."""
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


@task(name="report the run", cache_policy=NO_CACHE)
def report_logged_task(ctx: SyncContext, run_id: str, title: str) -> dict[str, Any]:
    """The report of a run whose actions are already in the store's run log (a streamed run
    logs them chunk by chunk: `tasks.stream`)."""
    report = publish_report(ctx.store, run_id, title, [], dry_run=ctx.dry_run)
    return report_counts(report)
