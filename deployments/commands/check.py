"""`pdsync check`: the settings against both accounts (or the files only, or against an
in-process sandbox), and what would sync. Writes nothing anywhere.

`run_check` is the one implementation: `pdsync check` and `python -m mappings validate` (its
module entry point) both call it, and differ only in how they print and exit.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deployments.commands.common import (
    SettingsDir,
    errors_to_exit_status,
    prefect_environment,
    settings_arg,
)
from deployments.render import describe, out

if TYPE_CHECKING:
    from clients import PipedriveClient
    from mappings.models import Settings
    from mappings.resolve import Mappings

__all__ = ["check", "check_against_accounts", "count_won", "run_check", "with_connection"]

Write = Callable[[str], None]


def with_connection(settings: Settings, *, pipedrive_url: str, planhat_url: str) -> Settings:
    """The same settings pointed at other service URLs (the in-process sandbox)."""
    conn = settings.integration.connection
    connection = conn.model_copy(
        update={
            "pipedrive": conn.pipedrive.model_copy(update={"company_url": pipedrive_url}),
            "planhat": conn.planhat.model_copy(update={"base_url": planhat_url}),
        }
    )
    integration = settings.integration.model_copy(update={"connection": connection})
    return dataclasses.replace(settings, integration=integration)


def count_won(pipedrive: PipedriveClient, mappings: Mappings) -> dict[int, int]:
    """The won deals of each selected pipeline (what a full sync would make licenses of)."""
    counts = {}
    for pipeline_id in sorted(mappings.pipeline_ids):
        counts[pipeline_id] = sum(
            1 for deal in pipedrive.iter_deals(status="won", pipeline_id=pipeline_id)
            if not deal.get("is_deleted")
        )  # fmt: skip
    return counts


def check_against_accounts(
    settings: Settings, *, count: bool, write: Write, refusal_as_problem: bool = False
) -> None:
    """Test both connections, resolve every name against the accounts and `write` what would
    sync. Raises `SettingsError` (located problems) or the clients' `ApiError` (a refused
    token), or with `refusal_as_problem` a refused token as a `SettingsError` located at the
    token's setting."""
    from clients import ApiError
    from mappings.errors import Problem, SettingsError
    from mappings.resolve import compile_mappings
    from tasks.account import connection_problems, fetch_account, open_pipedrive, open_planhat
    from tasks.credentials import token_location

    local = connection_problems(settings)
    if local["pipedrive"] or local["planhat"]:
        raise SettingsError([*local["pipedrive"], *local["planhat"]])
    with open_pipedrive(settings) as pipedrive, open_planhat(settings) as planhat:
        service = "pipedrive"
        try:
            pipedrive.check_connection()
            service = "planhat"
            account = fetch_account(pipedrive, planhat)
        except ApiError as exc:
            if not refusal_as_problem:
                raise
            where = token_location(settings, service)
            raise SettingsError(
                [Problem(where, f"{service.capitalize()} refused: {exc}")]
            ) from None
        mappings = compile_mappings(settings, account)
        counts = count_won(pipedrive, mappings) if count else None
    write(describe(mappings, counts))
    for warning in mappings.problems:
        write(f"note: {warning}")
    write("\nValid: the settings load and resolve against both accounts. Nothing was synced.")


def run_check(
    directory: str | Path | None,
    *,
    offline: bool = False,
    sandbox: bool = False,
    count: bool = True,
    write: Write,
    refusal_as_problem: bool = False,
) -> None:
    """Load the settings in `directory` (default: $PDSYNC_SETTINGS_DIR or mappings/; with
    `sandbox`, the sandbox settings) and check them: the files only (`offline`), against the
    accounts, or against a sandbox (demo data) started in this process. `write` takes each
    block of the report, without its final newline. Raises as `check_against_accounts`."""
    from deployments.sandbox_settings import SANDBOX_DIR
    from mappings.loading import load_settings

    settings = load_settings(directory or (SANDBOX_DIR if sandbox else None))
    if offline:
        write(f"The files in {settings.directory} are valid (not checked against the accounts).")
        return
    if not sandbox:
        check_against_accounts(
            settings, count=count, write=write, refusal_as_problem=refusal_as_problem
        )
        return
    from sandbox.runner import Sandbox

    with Sandbox("demo") as sb:
        conn = settings.integration.connection
        for name, value in (
            (conn.pipedrive.token_env, sb.pipedrive_token),
            (conn.planhat.token_env, sb.planhat_token),
        ):
            if name:
                os.environ.setdefault(name, value)
        write(f"Sandbox (demo data) at {sb.pipedrive_url} and {sb.planhat_url}\n")
        local = with_connection(
            settings, pipedrive_url=sb.pipedrive_url, planhat_url=sb.planhat_url
        )
        check_against_accounts(
            local, count=count, write=write, refusal_as_problem=refusal_as_problem
        )


def check(
    settings: SettingsDir = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Check the files only, no call to either account.")
    ] = False,
    sandbox: Annotated[
        bool,
        typer.Option(
            "--sandbox",
            help="Start a sandbox (demo data) in this process and check the settings "
            "(default: deployments/sandbox_settings/) against it.",
        ),
    ] = False,
    no_count: Annotated[
        bool, typer.Option("--no-count", help="Do not count the won deals that would sync.")
    ] = False,
) -> None:
    """Check the settings against both accounts and show what would sync. Writes nothing.

    Reads the files, tests both tokens, resolves every pipeline and field name against the
    accounts, and prints the sections, directions, field maps and how many won deals would
    become licenses. Every mistake is reported as file:line:column with what is valid.

    **Examples**

    ```
    pdsync check                                # mappings/ or $PDSYNC_SETTINGS_DIR
    pdsync check --settings ~/pdsync-settings   # your own directory
    pdsync check --offline                      # the files only
    pdsync check --sandbox                      # deployments/sandbox_settings/ against a sandbox
    ```
    """
    prefect_environment()
    directory = settings_arg(settings)
    with errors_to_exit_status():
        run_check(
            directory,
            offline=offline,
            sandbox=sandbox,
            count=not no_count,
            write=lambda text: out.print(text, markup=False),
        )
