"""What each step of a run did, as one INFO line in the run's log (the Prefect UI's Logs tab):
what was read, which deals were selected and why the others were not, what will be written,
and what was written with the Planhat calls it took. The task wrappers call these; the lines
reach Prefect through `flows.runlog`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mappings.kinds import KINDS
from tasks.reasons import ACTION_ORDER, OBJECT_LABELS, group_reasons

if TYPE_CHECKING:
    from tasks.context import SyncContext
    from tasks.fetch import Fetched
    from tasks.push import PushResult
    from tasks.select import DealSelection, Scope

log = logging.getLogger("tasks.steps")
STREAM_NAMES = tuple(k.stream for k in KINDS)


def _n(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{count:,} {plural}"


def context_opened(ctx: SyncContext) -> None:
    """Where the run reads and writes."""
    conn = ctx.settings.integration.connection
    log.info(
        "settings %s: Pipedrive %s → Planhat %s%s; account lists (pipelines, fields, users) %s",
        ctx.settings.directory,
        conn.pipedrive.company_url,
        conn.planhat.base_url,
        " (dry run: nothing is written)" if ctx.dry_run else "",
        "from the cache" if ctx.account_from_cache else "read fresh",
    )


def fetched_records(fetched: Fetched, what: str) -> None:
    """A read by id (a deal notification, a company resync)."""
    parts = [
        _n(len(getattr(fetched, s)), s.rstrip("s")) for s in STREAM_NAMES if getattr(fetched, s)
    ]
    deals = fetched.deals
    detail = "; ".join(
        f"deal {i}: {d.get('status')}, pipeline {d.get('pipeline_id')}"
        for i, d in list(deals.items())[:5]
    ) + ("; …" if len(deals) > 5 else "")
    log.info(
        "read from Pipedrive (%s): %s%s",
        what,
        ", ".join(parts) or "nothing",
        f" ({detail})" if detail else "",
    )


def selected(selection: DealSelection) -> None:
    """The deals that become licenses, and why the others do not (grouped)."""
    reasons = group_reasons(
        {"object": a.object_type, "action": a.action, "reason": a.reason, "count": 1}
        for a in selection.skipped
    )
    why = "; ".join(f"{r['count']} × {r['reason']}" for r in reasons[:5])
    if len(reasons) > 5:
        why += f"; and {len(reasons) - 5} more reasons"
    log.info(
        "deals: %s selected (won, in a selected pipeline: licenses), %s skipped%s",
        f"{len(selection.selected):,}",
        f"{len(selection.skipped):,}",
        f" ({why})" if why else "",
    )


def scoped(scope: Scope) -> None:
    """What the run writes to Planhat."""
    log.info(
        "to write to Planhat: %s, %s, %s, %s",
        _n(len(scope.deals), "license"),
        _n(len(scope.organizations), "company"),
        _n(len(scope.persons), "end user"),
        _n(len(scope.notes), "note"),
    )


def pushed(results: Sequence[PushResult], *, dry_run: bool) -> None:
    """What was written, per object, and the Planhat calls it took."""
    for result in results:
        counts: dict[str, int] = {}
        for action in result.actions:
            counts[action.action] = counts.get(action.action, 0) + 1
        done = ", ".join(f"{counts[a]:,} {a}" for a in ACTION_ORDER if counts.get(a))
        log.info(
            "%s, %s: %s (%s)",
            "would write to Planhat (dry run)" if dry_run else "wrote to Planhat",
            OBJECT_LABELS.get(result.object_type, result.object_type),
            done or "nothing",
            _n(result.requests, "write call"),
        )


def streamed(summary: Any, *, full: bool, dry_run: bool) -> None:
    """A streamed run (`tasks.stream`): what was read, selected and written, per object."""
    parts = []
    for stream in STREAM_NAMES:
        if stream in summary.read or stream in summary.pages:
            count = summary.read.get(stream, 0)
            pages = max(1, summary.pages.get(stream, 0))
            parts.append(f"{_n(count, stream.rstrip('s'))} in {_n(pages, 'page')}")
    what = "everything" if full else "changed since each stream's cursor (minus the overlap)"
    log.info(
        "read from Pipedrive, %s: %s", what, "; ".join(parts) or "nothing (no section receives)"
    )
    log.info(
        "deals: %s selected (won, in a selected pipeline: licenses), %s skipped",
        f"{summary.selected:,}",
        f"{summary.skipped_deals:,}",
    )
    for object_type, counts in summary.actions.items():
        done = ", ".join(f"{counts[a]:,} {a}" for a in ACTION_ORDER if counts.get(a))
        log.info(
            "%s, %s: %s (%s in %s)",
            "would write to Planhat (dry run)" if dry_run else "wrote to Planhat",
            OBJECT_LABELS.get(object_type, object_type),
            done or "nothing",
            _n(summary.requests[object_type], "write call"),
            _n(summary.chunks[object_type], "chunk"),
        )
