"""`pdsync`: the command line of the Pipedrive ⇄ Planhat sync (Typer).

    pdsync demo                     # everything, locally, against the sandbox: start here
    pdsync check   [--settings DIR] # the settings against the accounts; nothing is written
    pdsync connect [--settings DIR] # test the token, create the Pipedrive webhook
    pdsync sync    [--settings DIR] [--full]
    pdsync resync  COMPANY [--settings DIR]
    pdsync serve   [--settings DIR] # receiver + every deployment, on one machine
    pdsync worker  [--settings DIR] # deal-sync runs of prefect deploy's deployment, warm
    pdsync sandbox [--settings DIR] [SANDBOX FLAGS...]

Flows run in this process, on the Prefect API in `PREFECT_API_URL` (a temporary local one when
it is unset). Exit status: 0 done; 1 a run or connection failure (the error's message on
stderr); 2 a usage or settings error (each problem as file:line:column: message).
"""

from __future__ import annotations

import gc

import typer

from deployments.commands.check import check
from deployments.commands.common import EXIT_FAILURE, EXIT_OK
from deployments.commands.local import demo, sandbox, serve
from deployments.commands.runs import connect, resync, sync
from deployments.commands.worker import worker
from deployments.render import counts_table, print_report, run_sync_with_progress

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

# The command groups (deployments.commands), in the order the help lists them.
app.command()(check)
app.command()(connect)
app.command()(sync)
app.command()(resync)
app.command()(serve)
app.command()(worker)
app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(sandbox)
app.command()(demo)


def main(argv: list[str] | None = None) -> int:
    """Run one `pdsync` command line; its exit status."""
    try:
        app(args=argv, prog_name="pdsync", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_FAILURE)
    return EXIT_OK


def script() -> int:
    """The `pdsync` console script: `main`, then a short exit. The interpreter's last act is a
    full collection of every object still tracked, to finalize cycles; after a backfill that
    walk took 0.5-0.6 s, with nothing left to finalize (the run closed its store and clients).
    What exists now is frozen out of it (`gc.freeze`); files and the log are flushed as ever."""
    code = main()
    gc.freeze()
    return code


__all__ = ["app", "counts_table", "main", "script", "print_report", "run_sync_with_progress"]

if __name__ == "__main__":
    raise SystemExit(script())
