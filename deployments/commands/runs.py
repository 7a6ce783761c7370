"""`pdsync connect`, `pdsync sync`, `pdsync resync`: the flows, run in this process on the
Prefect API in `PREFECT_API_URL` (a temporary local one when it is unset), each after its
settings are checked (`preflight`), so that a command failing on its settings writes nothing."""

from __future__ import annotations

from typing import Annotated

import typer

from deployments.commands.common import (
    JsonOut,
    SettingsDir,
    errors_to_exit_status,
    fail,
    prefect_environment,
    preflight,
    print_json,
    settings_arg,
)
from deployments.render import failed_count, out, print_report, run_sync_with_progress

__all__ = ["connect", "resync", "sync"]


def connect(
    settings: SettingsDir = None,
    force_check: Annotated[
        bool,
        typer.Option("--force-check", help="Test the token even if it did not change."),
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Test the Pipedrive token and create (or keep) the deal webhook to the receiver.

    Run it once, and again whenever the company URL, the token or the receiver's public URL
    change. The token is tested only when it changed (or with --force-check). With
    connection.receiver.public_url set, exactly one Pipedrive webhook (v2, deal events, basic
    auth) points at it. The state store keeps the token's fingerprint, never the token.

    **Examples**

    ```
    export PIPEDRIVE_API_TOKEN=...  PLANHAT_API_TOKEN=...  PDSYNC_WEBHOOK_PASSWORD=...
    pdsync connect --settings ~/pdsync-settings
    pdsync connect --force-check --json
    ```
    """
    prefect_environment()
    directory = settings_arg(settings)
    with errors_to_exit_status():
        preflight(directory)
        from flows.connect import connect as connect_flow

        result = connect_flow(settings_dir=directory, force_check=force_check)
    if as_json:
        print_json(result)
        return
    who = (
        f"token tested: {result['user']}"
        if result.get("verified")
        else "token unchanged since the last check (not tested again; --force-check tests it)"
    )
    out.print(f"Pipedrive  {result['company_url']}  ({who})", markup=False)
    hook = result.get("webhook")
    if hook == "not configured":
        out.print(
            "Webhook    none: connection.receiver.public_url is not set, so deals sync on the "
            "incremental schedule only",
            markup=False,
        )
    else:
        out.print(f"Webhook    {hook} (id {result.get('webhook_id')})", markup=False)


def sync(
    settings: SettingsDir = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Everything, not only the changes since the last run (the backfill)."
        ),
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Sync what changed in Pipedrive since the last run into Planhat, now.

    The same run as the scheduled incremental sync: every receiving section since its cursor
    (minus the overlap window), won deals in the selected pipelines as licenses, their
    companies, contacts and notes; it also re-creates a missing webhook. Shows a progress bar
    over the pages read and a table of what was created, updated, skipped (and why) at the end.
    Exits 1 when a record failed to write (the reasons are in the table).

    **Examples**

    ```
    pdsync sync --full          # the first backfill ("Fetch All")
    pdsync sync                 # changes since the last run
    pdsync sync --json | jq .counts
    ```
    """
    prefect_environment()
    directory = settings_arg(settings)
    with errors_to_exit_status():
        preflight(directory, resolve=True)
        if as_json:
            from flows.incremental_sync import incremental_sync

            report = incremental_sync(full=full, settings_dir=directory)
        else:
            report = run_sync_with_progress(directory, full)
    if as_json:
        print_json(report)
    else:
        print_report(report, "Full backfill" if full else "Incremental sync")
    if failed_count(report):
        fail(f"{failed_count(report)} records failed to write (see the reasons above)")


def resync(
    company: Annotated[
        str,
        typer.Argument(
            help="A Planhat company id, or a Pipedrive organization id (digits).",
            show_default=False,
        ),
    ],
    settings: SettingsDir = None,
    as_json: JsonOut = False,
) -> None:
    """Sync one company with Pipedrive now (Planhat's "Sync with Pipedrive").

    Re-reads the company's Pipedrive organization, its persons, notes and won deals in the
    selected pipelines, and pushes them to Planhat. The same as the company-resync
    deployment's Run button in the Prefect UI.

    **Examples**

    ```
    pdsync resync 1042                       # a Pipedrive organization id
    pdsync resync 64f1c0ffee0123456789abcd   # a Planhat company id
    ```
    """
    prefect_environment()
    directory = settings_arg(settings)
    with errors_to_exit_status():
        preflight(directory, resolve=True)
        from flows.company_resync import company_resync

        report = company_resync(company=company, settings_dir=directory)
    if as_json:
        print_json(report)
    else:
        print_report(report, f"Company resync: {company}")
    if failed_count(report):
        fail(f"{failed_count(report)} records failed to write (see the reasons above)")
