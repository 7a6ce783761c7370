"""What the `pdsync` commands and the demo print: the run report as tables (records per object
and action, the reasons records were skipped or failed), the sync's progress bar, and the
settings as `pdsync check` understands them (`describe`).

    print_report(report, "Incremental sync")           # the counts table, then the reasons
    report = run_sync_with_progress(settings_dir, full)  # incremental_sync with a progress bar
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table

from mappings.kinds import KINDS
from tasks.reasons import ACTION_ORDER, OBJECT_LABELS

if TYPE_CHECKING:
    from mappings.resolve import Mappings

__all__ = [
    "counts_table",
    "describe",
    "err",
    "failed_count",
    "grouped_reasons",
    "out",
    "print_report",
    "reasons_table",
    "run_sync_with_progress",
]

PAGE_SIZE = 500  # Pipedrive's page size (clients.pipedrive.PAGE_SIZE), without importing it here

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


# -- reports as tables ------------------------------------------------------------------------


def _compact_table(title: str) -> Table:
    """A table that fits 80 columns: a rule under the headers, one space between columns."""
    return Table(
        title=title,
        title_justify="left",
        show_edge=False,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )


def counts_table(report: dict[str, Any], title: str) -> Table:
    """Records per object and action, fit for 80 columns: the headers and numbers are never
    cut, the conflict column shows only when a record was in conflict, and an object's name
    wraps only when it must."""
    counts: dict[str, dict[str, int]] = report.get("counts") or {}
    actions = [a for a in ACTION_ORDER if a != "conflict" or any(r.get(a) for r in counts.values())]
    table = _compact_table(title)
    table.add_column("records", min_width=len("records"), overflow="fold")
    for action in (*actions, "total"):
        table.add_column(action, justify="right", no_wrap=True, min_width=len(action))
    for obj in sorted(
        counts, key=lambda o: list(OBJECT_LABELS).index(o) if o in OBJECT_LABELS else 9
    ):
        row = counts[obj]
        table.add_row(
            OBJECT_LABELS.get(obj, obj),
            *[str(row.get(a, 0)) if row.get(a) else "·" for a in actions],
            str(sum(row.values())),
        )
    if not counts:
        table.add_row("nothing to do", *["·"] * (len(actions) + 1))
    return table


def grouped_reasons(reasons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run's reasons with record ids replaced by # and equal ones summed ("deal 12 is lost,
    not won" ×40 → one line of 40), most frequent first: the grouping of the run's summary
    artifact (`tasks.report.group_reasons`)."""
    from tasks.reasons import group_reasons

    return group_reasons(reasons)


def reasons_table(report: dict[str, Any], limit: int = 12) -> Table | None:
    reasons = grouped_reasons(report.get("reasons") or [])
    if not reasons:
        return None
    table = _compact_table("Why records were skipped, in conflict or failed")
    table.add_column("count", justify="right", no_wrap=True, min_width=len("count"))
    table.add_column("record", no_wrap=True, min_width=len("record"))
    table.add_column("action", no_wrap=True, min_width=len("action"))
    table.add_column("reason", overflow="fold")
    for reason in reasons[:limit]:
        table.add_row(
            str(reason["count"]), reason["object"], reason["action"], reason.get("reason") or ""
        )
    if len(reasons) > limit:
        table.caption = f"… and {len(reasons) - limit} more reasons (the run's Prefect artifacts)"
    return table


def print_report(report: dict[str, Any], title: str) -> None:
    out.print()
    out.print(counts_table(report, title))
    table = reasons_table(report)
    if table is not None:
        out.print()
        out.print(table)


def failed_count(report: dict[str, Any]) -> int:
    return sum(row.get("failed", 0) for row in (report.get("counts") or {}).values())


# -- the sync progress display ----------------------------------------------------------------

STREAM_ORDER = tuple((k.section, k.stream) for k in KINDS)


def run_sync_with_progress(
    settings_dir: str | None, full: bool, *, console: Console | None = None
) -> dict[str, Any]:
    """`incremental_sync` in this process with a progress bar over the pages it reads from
    Pipedrive (the fetch's page hook), then a spinner while it converts and pushes."""
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Column

    from flows.incremental_sync import incremental_sync
    from mappings.loading import load_settings
    from tasks.fetch import page_progress

    console = console or out
    settings = load_settings(settings_dir)  # invalid settings fail here, before any run
    streams = [
        stream
        for section, stream in STREAM_ORDER
        if settings.integration.direction(section) in ("receive", "both")
    ]
    progress = Progress(
        SpinnerColumn(finished_text="[green]✓[/green]"),
        TextColumn("{task.description}", table_column=Column(no_wrap=True)),
        # 80 columns hold the longest row (a stream, its bar, "12 pages · 5,678 records", time)
        BarColumn(bar_width=max(8, min(30, console.width - 62))),
        TextColumn("{task.fields[detail]}", table_column=Column(no_wrap=True)),
        TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
        console=console,
        transient=False,
    )
    what = "everything" if full else "the changes since the last run"
    console.print(f"Syncing {what}: Pipedrive → Planhat", markup=False)
    phase = progress.add_task("Connecting", total=None, detail="")
    rows: dict[str, Any] = {}
    done: set[str] = set()

    def on_page(stream: str, read: int, finished: bool) -> None:
        pages = max(1, math.ceil(read / PAGE_SIZE)) if read or finished else 0
        detail = f"{pages} page{'s' if pages != 1 else ''} · {read:,} records"
        if stream not in rows:
            rows[stream] = progress.add_task(f"  Pipedrive {stream}", total=None, detail=detail)
            progress.update(phase, description="Reading Pipedrive")
        if finished:
            progress.update(rows[stream], total=pages, completed=pages, detail=detail)
            done.add(stream)
            if set(streams) <= done:
                progress.update(phase, description="Writing to Planhat")
        else:
            progress.update(rows[stream], completed=pages, detail=detail)

    with progress, page_progress(on_page):
        report = incremental_sync(full=full, settings_dir=settings_dir)
        progress.update(phase, description="Synced", total=1, completed=1)
    return report


# -- the settings as understood ------------------------------------------------------------

_WAYS = {"receive": "Pipedrive → Planhat", "send": "Planhat → Pipedrive", "both": "both ways",
         "none": "off: nothing fetched"}  # fmt: skip


def describe(mappings: Mappings, counts: dict[int, int] | None = None) -> str:
    """What the settings make the sync do, in words (`pdsync check`'s report)."""
    from mappings.schema import CUSTOM_MATCHES_FILE, PAIRS

    s = mappings.settings
    integ = s.integration
    conn = integ.connection
    lines = [f"Settings: {s.directory}"]
    for part, file in s.files.items():
        lines.append(f"  {part:<15} {file}")
    lines += [
        "",
        f"Pipedrive     {conn.pipedrive.company_url}  (token: {conn.pipedrive.source()})",
        f"Planhat       {conn.planhat.base_url}  (token: {conn.planhat.source()})",
    ]
    receiver = conn.receiver
    auth = receiver.basic_auth
    password = (
        f"${auth.password_env}" if auth.password_env else f"Secret '{auth.password_secret_block}'"
    )
    lines.append(
        f"Webhook       {receiver.public_url} (basic auth {auth.username}, password: {password})"
        if receiver.public_url
        else "Webhook       none (connection.receiver.public_url is null): scheduled runs only"
    )
    hook = receiver.planhat_webhook
    sending = any(d in ("send", "both") for d in mappings.directions.values())
    if hook is not None:
        secret = f"${hook.secret_env}" if hook.secret_env else f"Secret '{hook.secret_block}'"
        lines.append(
            f"Planhat hook  POST /webhooks/planhat (header {hook.header}: {secret}): Planhat's "
            "automations start planhat-sync runs"
        )
    elif sending:
        lines.append(
            "Planhat hook  none (connection.receiver.planhat_webhook is not set): Planhat's "
            "changes reach Pipedrive at the incremental sync's scan"
        )
    inc = integ.incremental
    lines += [
        f"Schedule      {inc.cron} ({inc.timezone}); each run re-reads {inc.overlap_seconds} s",
        f"State store   {s.store_url}",
        f"Conflicts     {integ.conflict_policy} (for fields synced both ways)",
        f"Dry run       {'yes: nothing will be written' if integ.dry_run else 'no'}",
        "",
        "Sections",
    ]
    for section, direction in mappings.directions.items():
        extra = ""
        if section == "organizations":
            extra = (
                "every organization"
                if mappings.sync_all_organizations
                else "organizations of the synced deals only"
            )
        elif section == "deals":
            names = ", ".join(
                f"{mappings.pipeline_names.get(i, i)} (id {i})"
                for i in sorted(mappings.pipeline_ids)
            )
            extra = f"won deals in: {names or 'no pipeline'}"
        elif section == "notes":
            extra = f"notes on: {', '.join(sorted(mappings.notes_scope))}"
        lines.append(f"  {section:<14} {direction:<8} {_WAYS[direction]:<22} {extra}".rstrip())
    lic = mappings.license
    template = integ.license.product
    lines += [
        "",
        f"Licenses      product {template!r}, from {lic.start_label}, {lic.length_months} "
        "months, fixed period",
    ]
    for obj, pair in PAIRS.items():
        rules = mappings.rules.get(obj, ())
        lines += ["", f"{pair.pipedrive.capitalize()} ⇄ {pair.planhat_title} "
                      f"({s.files.get(obj)}, {CUSTOM_MATCHES_FILE})"]  # fmt: skip
        if not rules:
            lines.append("  (no field is synced)")
        for rule in rules:
            kind = rule.converter.name
            origin = "  [custom match]" if rule.origin == "custom match" else ""
            lines.append(f"  {rule.key:<34} {rule.arrow} {rule.pipedrive_label}  ({kind}){origin}")
    users = mappings.users
    lines += [
        "",
        f"Users         {len(users.planhat_of)} of {len(users.pipedrive_users)} Pipedrive users "
        "have a Planhat team member with the same email",
    ]
    for user in users.unmatched_pipedrive:
        lines.append(
            f"  no match: {user.get('name')} <{user.get('email')}> (owner fields left empty)"
        )
    if counts is not None:
        total = sum(counts.values())
        per = ", ".join(
            f"{mappings.pipeline_names.get(i, i)}: {n}" for i, n in sorted(counts.items())
        )
        lines += ["", f"Would sync    {total} won deals as licenses ({per or 'none'})"]
    return "\n".join(lines)
