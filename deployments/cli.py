"""`pdsync`: the command line of the Pipedrive ⇄ Planhat sync (Typer, like Prefect's own CLI).

    pdsync demo                     # everything, locally, against the sandbox: start here
    pdsync check   [--settings DIR] # the settings against the accounts; nothing is written
    pdsync connect [--settings DIR] # test the token, create the Pipedrive webhook
    pdsync sync    [--settings DIR] [--full]
    pdsync resync  COMPANY [--settings DIR]
    pdsync serve   [--settings DIR] # receiver + every deployment, on one machine
    pdsync sandbox [--settings DIR] [SANDBOX FLAGS...]

Flows run in this process, on the Prefect API in `PREFECT_API_URL` (a temporary local one when
it is unset). Exit status: 0 done; 1 a run or connection failure (the error's message on
stderr); 2 a usage or settings error (each problem as file:line:column: message).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from clients.http import is_loopback_url

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
PAGE_SIZE = 500  # Pipedrive's page size (clients.pipedrive.PAGE_SIZE), without importing it here

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="pdsync",
    help=(
        "Pipedrive ⇄ Planhat sync on Prefect: won deals in the pipelines you select become "
        "Planhat licenses, with their companies, contacts and notes.\n\n"
        "Start with **pdsync demo** (no account needed). With your own accounts: "
        "**pdsync check**, **pdsync connect**, **pdsync sync --full**, then **pdsync serve** "
        "(or prefect deploy --all and a worker).\n\n"
        "Every command reads the settings directory given by --settings DIR, else "
        "$PDSYNC_SETTINGS_DIR, else mappings/. Exit status: 0 done, 1 a run or connection "
        "failure, 2 a usage or settings error."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

SettingsDir = Annotated[
    Path | None,
    typer.Option(
        "--settings",
        metavar="DIR",
        help="The settings directory (integration.yaml and the field maps). "
        "Default: $PDSYNC_SETTINGS_DIR, else mappings/.",
        show_default=False,
    ),
]
JsonOut = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON object (for scripts).")
]


# -- errors → exit status ---------------------------------------------------------------------


def _settings_problems(exc: Any) -> NoReturn:
    for problem in exc.problems:
        err.print(str(problem), markup=False)
    n = len(exc.problems)
    err.print(
        f"\nInvalid settings ({n} problem{'s' if n != 1 else ''}): nothing ran. Fix them and "
        "run again (pdsync check shows the settings as understood).",
        markup=False,
    )
    raise typer.Exit(EXIT_USAGE)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    err.print(f"pdsync: {message}", markup=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def errors_to_exit_status() -> Iterator[None]:
    """Settings errors → 2 with the located messages; run and connection errors → 1 with the
    typed error's message; Ctrl-C → 130."""
    from clients import ApiError, InvalidSettingError
    from mappings.errors import SettingsError

    try:
        yield
    except typer.Exit:
        raise
    except SettingsError as exc:
        _settings_problems(exc)
    except InvalidSettingError as exc:
        fail(str(exc), EXIT_USAGE)
    except ApiError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("pdsync: interrupted", markup=False)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - a run failure: its own message, no traceback
        if os.environ.get("PDSYNC_DEBUG"):
            raise
        name = type(exc).__name__
        text = str(exc) or name
        if name in _PLAIN_ERRORS:
            fail(text)
        hint = "" if os.environ.get("PDSYNC_VERBOSE") else " (PDSYNC_VERBOSE=1 shows the run's log)"
        fail(f"{name}: {text}{hint}")


_PLAIN_ERRORS = {"LookupError", "ServeError", "StoreUnavailableError", "StoreUrlError"}


def _preflight(settings_dir: str | None, *, resolve: bool = False) -> None:
    """What can be checked before a flow starts, checked here, so that a command failing on its
    settings writes nothing anywhere (no Prefect flow run, no state store): the files, the URLs
    and that the tokens are set and well-formed; with `resolve`, also every pipeline and field
    name against both accounts (the mappings compiled, as `pdsync check` does; reads only).
    Raises `SettingsError` (exit 2) or the clients' errors (a refused token: exit 1)."""
    from mappings.account import connection_problems
    from mappings.errors import SettingsError
    from mappings.settings import load_settings

    settings = load_settings(settings_dir)
    problems = connection_problems(settings)
    if problems["pipedrive"] or problems["planhat"]:
        raise SettingsError([*problems["pipedrive"], *problems["planhat"]])
    if resolve:
        from mappings.account import fetch_account, open_pipedrive, open_planhat
        from mappings.resolve import compile_mappings

        with open_pipedrive(settings) as pipedrive, open_planhat(settings) as planhat:
            compile_mappings(settings, fetch_account(pipedrive, planhat))


def _settings_arg(settings: Path | None) -> str | None:
    """The settings directory as the flows take it (absolute), checked to exist."""
    if settings is None:
        return None
    if not settings.is_dir():
        fail(f"--settings {settings}: no such directory", EXIT_USAGE)
    return str(settings.absolute())


#: seconds Prefect waits for its temporary local API (PREFECT_API_URL unset) to answer: a fresh
#: PREFECT_HOME creates and migrates its database first, which outlasts Prefect's default 20 s
#: on a small or busy machine
EPHEMERAL_STARTUP_TIMEOUT_S = 120


def _prefect_environment() -> None:
    """Prefect's settings for flows run in this process (set before Prefect is imported; any
    the user set wins). No telemetry (server analytics, the client's usage data, their notice)
    and, when PREFECT_API_URL is unset, a temporary local API given time to create its
    database. In-process flow runs keep logging to the Prefect API (the UI shows every line),
    but the terminal shows only this command's own output: a failure is reported once, by its
    message, not also as the engine's traceback (PDSYNC_VERBOSE=1 shows the log lines here
    too)."""
    if not os.environ.get("PDSYNC_VERBOSE"):
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT_S)
    )


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, sort_keys=True) + "\n")


# -- reports as tables ------------------------------------------------------------------------

ACTION_COLUMNS = ("created", "updated", "unchanged", "skipped", "conflict", "failed")
OBJECT_NAMES = {
    "deal": "deals → licenses",
    "organization": "organizations → companies",
    "person": "persons → end users",
    "note": "notes → notes",
}


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
    actions = [
        a for a in ACTION_COLUMNS if a != "conflict" or any(r.get(a) for r in counts.values())
    ]
    table = _compact_table(title)
    table.add_column("records", min_width=len("records"), overflow="fold")
    for action in (*actions, "total"):
        table.add_column(action, justify="right", no_wrap=True, min_width=len(action))
    for obj in sorted(
        counts, key=lambda o: list(OBJECT_NAMES).index(o) if o in OBJECT_NAMES else 9
    ):
        row = counts[obj]
        table.add_row(
            OBJECT_NAMES.get(obj, obj),
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

STREAM_ORDER = (("deals", "deals"), ("organizations", "organizations"),
                ("contacts", "persons"), ("notes", "notes"))  # fmt: skip


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
    from mappings.settings import load_settings
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


# -- commands ---------------------------------------------------------------------------------


@app.command()
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
            "(default: mappings/sandbox/) against it.",
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
    pdsync check --sandbox                      # mappings/sandbox/ against a sandbox
    ```
    """
    _prefect_environment()
    directory = _settings_arg(settings)
    with errors_to_exit_status():
        from mappings.settings import SANDBOX_DIR, load_settings

        loaded = load_settings(directory or (str(SANDBOX_DIR) if sandbox else None))
        if offline:
            out.print(
                f"The files in {loaded.directory} are valid (not checked against the accounts).",
                markup=False,
            )
            return
        if not sandbox:
            _check_against_accounts(loaded, count=not no_count)
            return
        from mappings.__main__ import with_connection
        from sandbox.runner import Sandbox

        with Sandbox("demo") as sb:
            conn = loaded.integration.connection
            for name, value in (
                (conn.pipedrive.token_env, sb.pipedrive_token),
                (conn.planhat.token_env, sb.planhat_token),
            ):
                if name:
                    os.environ.setdefault(name, value)
            out.print(f"Sandbox (demo data) at {sb.pipedrive_url} and {sb.planhat_url}\n")
            local = with_connection(
                loaded, pipedrive_url=sb.pipedrive_url, planhat_url=sb.planhat_url
            )
            _check_against_accounts(local, count=not no_count)


def _check_against_accounts(settings: Any, *, count: bool) -> None:
    from mappings.__main__ import _count_won, describe
    from mappings.account import connection_problems, fetch_account, open_pipedrive, open_planhat
    from mappings.errors import SettingsError
    from mappings.resolve import compile_mappings

    local = connection_problems(settings)
    if local["pipedrive"] or local["planhat"]:
        raise SettingsError([*local["pipedrive"], *local["planhat"]])
    with open_pipedrive(settings) as pipedrive, open_planhat(settings) as planhat:
        pipedrive.check_connection()  # a refused token: AuthError, exit 1
        account = fetch_account(pipedrive, planhat)
        mappings = compile_mappings(settings, account)
        counts = _count_won(pipedrive, mappings) if count else None
    out.print(describe(mappings, counts), markup=False)
    for warning in mappings.problems:
        out.print(f"note: {warning}", markup=False)
    out.print("\nValid: the settings load and resolve against both accounts. Nothing was synced.")


@app.command()
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
    _prefect_environment()
    directory = _settings_arg(settings)
    with errors_to_exit_status():
        _preflight(directory)
        from flows.connect import connect as connect_flow

        result = connect_flow(settings_dir=directory, force_check=force_check)
    if as_json:
        _print_json(result)
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


@app.command()
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
    _prefect_environment()
    directory = _settings_arg(settings)
    with errors_to_exit_status():
        _preflight(directory, resolve=True)
        if as_json:
            from flows.incremental_sync import incremental_sync

            report = incremental_sync(full=full, settings_dir=directory)
        else:
            report = run_sync_with_progress(directory, full)
    if as_json:
        _print_json(report)
    else:
        print_report(report, "Full backfill" if full else "Incremental sync")
    if failed_count(report):
        fail(f"{failed_count(report)} records failed to write (see the reasons above)")


@app.command()
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
    _prefect_environment()
    directory = _settings_arg(settings)
    with errors_to_exit_status():
        _preflight(directory, resolve=True)
        from flows.company_resync import company_resync

        report = company_resync(company=company, settings_dir=directory)
    if as_json:
        _print_json(report)
    else:
        print_report(report, f"Company resync: {company}")
    if failed_count(report):
        fail(f"{failed_count(report)} records failed to write (see the reasons above)")


@app.command()
def serve(
    settings: SettingsDir = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="The receiver's listen address (default 127.0.0.1; 0.0.0.0 behind a proxy).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="The receiver's port (default: the port of a loopback public_url, else 8713).",
            show_default=False,
        ),
    ] = None,
    prefect_port: Annotated[
        int,
        typer.Option(
            help="The port of the local Prefect server started when PREFECT_API_URL "
            "is unset (its UI too)."
        ),
    ] = 4200,  # fmt: skip
    deal_concurrency: Annotated[
        int, typer.Option(min=1, help="At most this many deal-sync runs at once.")
    ] = 4,
    drain_every: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Seconds between re-posts of notifications that Prefect did not take.",
        ),
    ] = 30.0,
    receiver_only: Annotated[
        bool,
        typer.Option(
            "--receiver-only",
            help="Run only the receiver and the inbox drain (the flows run on a worker after "
            "prefect deploy --all).",
        ),
    ] = False,
) -> None:
    """Run everything on this machine: the webhook receiver and every deployment.

    Registers the four deployments with the Prefect API and serves them from this process:
    deal-sync (started by each Pipedrive deal notification, through an event trigger),
    incremental-sync (on the settings' schedule), company-resync and connect (ad hoc, from the
    Prefect UI), polling every second. The receiver takes Pipedrive's notifications on
    /webhooks/pipedrive. Uses the Prefect API in PREFECT_API_URL, or starts a local Prefect
    server (UI on --prefect-port) and stops it on exit. Ctrl-C or SIGTERM stop everything.

    **Examples**

    ```
    pdsync serve --settings ~/pdsync-settings                  # all on one machine
    PREFECT_API_URL=http://prefect:4200/api pdsync serve       # a shared Prefect server
    pdsync serve --host 0.0.0.0 --port 8713                    # behind an HTTPS proxy
    pdsync serve --receiver-only                               # flows run on a worker
    ```
    """
    directory = _settings_arg(settings)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with errors_to_exit_status():
        from deployments.serve import run_serve

        run_serve(
            directory,
            host=host,
            port=port,
            prefect_port=prefect_port,
            deal_concurrency=deal_concurrency,
            drain_every_s=drain_every,
            receiver_only=receiver_only,
            announce=lambda line: out.print(line, markup=False),
        )


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def sandbox(ctx: typer.Context, settings: SettingsDir = None) -> None:
    """Serve the local sandbox Pipedrive and Planhat (python -m sandbox) until Ctrl-C.

    Every other flag is passed to python -m sandbox: --dataset small|demo|large, --seed N,
    --pipedrive-port N, --planhat-port M, --burst N, --webhook-time-scale F, fault flags
    (--p-503 0.1 ...), --json; see pdsync sandbox -- --help. With --settings, the sandbox
    listens on the ports of the settings' connection URLs and accepts the tokens in the
    environment variables they name (when set).

    **Examples**

    ```
    pdsync sandbox                                   # demo data on 8711 and 8712
    pdsync sandbox --settings mappings/sandbox       # where those settings point
    pdsync sandbox --dataset large --p-503 0.05      # big, and flaky
    pdsync sandbox -- --help                         # every sandbox flag
    ```
    """
    args = [a for a in ctx.args if a != "--"] if ctx.args[:1] == ["--"] else list(ctx.args)
    if settings is not None:
        directory = _settings_arg(settings)
        with errors_to_exit_status():
            args = _sandbox_args_from_settings(directory, args)
    from sandbox.__main__ import main as sandbox_main

    raise typer.Exit(sandbox_main(args))


def _sandbox_args_from_settings(directory: str | None, args: list[str]) -> list[str]:
    from urllib.parse import urlsplit

    from mappings.settings import load_settings

    conn = load_settings(directory).integration.connection
    extra: list[str] = []
    for flag, url in (
        ("--pipedrive-port", conn.pipedrive.company_url),
        ("--planhat-port", conn.planhat.base_url),
    ):
        parts = urlsplit(url)
        given = any(a == flag or a.startswith(flag + "=") for a in args)
        if not given and is_loopback_url(url) and parts.port:
            extra += [flag, str(parts.port)]
    for flag, env in (
        ("--pipedrive-token", conn.pipedrive.token_env),
        ("--planhat-token", conn.planhat.token_env),
    ):
        given = any(a == flag or a.startswith(flag + "=") for a in args)
        if not given and env and os.environ.get(env):
            extra += [flag, os.environ[env]]
    return extra + args


@app.command()
def demo(
    settings: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            metavar="DIR",
            help="Settings to demonstrate (pipelines, field maps), re-pointed at the demo's "
            "sandbox. Default: mappings/sandbox/.",
            show_default=False,
        ),
    ] = None,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="Keep the sandbox, receiver, runs and Prefect UI up after the demo, until Ctrl-C.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(min=10.0, help="Seconds to wait for the webhook-started runs."),
    ] = 120.0,
) -> None:
    """The whole product, locally, in about a minute: no account, nothing to start by hand.

    Starts the sandbox Pipedrive and Planhat (demo data) and a Prefect server, connects (the
    sandbox Pipedrive gets a webhook to the local receiver), backfills with a progress bar,
    starts one-machine mode (pdsync serve), then changes four deals through the Pipedrive API:
    one won in a selected pipeline, one won in an unselected pipeline, one lost, one whose
    custom field is set to null. Each change reaches the receiver as a real webhook and starts a
    deal-sync run through its Prefect trigger; the demo waits for them and prints what landed in
    Planhat and why the rest was skipped. Everything it started is stopped at the end.

    **Examples**

    ```
    pdsync demo                  # or: make demo
    pdsync demo --keep-running   # then explore the Prefect UI it prints
    ```
    """
    _prefect_environment()
    directory = _settings_arg(settings)
    with errors_to_exit_status():
        from deployments.demo import run_demo

        code = run_demo(settings_dir=directory, keep_running=keep_running, timeout_s=timeout)
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    """The `pdsync` console script."""
    try:
        app(args=argv, prog_name="pdsync", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_FAILURE)
    return EXIT_OK


__all__ = ["app", "counts_table", "main", "print_report", "run_sync_with_progress"]

if __name__ == "__main__":
    raise SystemExit(main())
