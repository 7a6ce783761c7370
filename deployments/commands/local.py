"""`pdsync serve`, `pdsync sandbox`, `pdsync demo`: everything on this machine (the receiver
and every deployment; the sandbox Pipedrive and Planhat; the whole product against the sandbox).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from clients.http import is_loopback_url
from deployments.commands.common import (
    SettingsDir,
    errors_to_exit_status,
    prefect_environment,
    settings_arg,
)
from deployments.render import out
from deployments.warm import HEARTBEAT_S

__all__ = ["demo", "sandbox", "sandbox_args_from_settings", "serve"]


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
        int,
        typer.Option(
            min=1,
            help="At most this many deal-sync runs at once (run in this process, warm).",
        ),
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
    worker_only: Annotated[
        bool,
        typer.Option(
            "--worker-only",
            help="Run only the flows (no receiver): another process takes the webhooks "
            "(pdsync serve --receiver-only). Several may share one Prefect server and one "
            "state store on PostgreSQL.",
        ),
    ] = False,
) -> None:
    """Run everything on this machine: the webhook receiver and every deployment.

    Registers the four deployments with the Prefect API and serves them from this process:
    deal-sync (started by Pipedrive deal notifications through an event trigger, each run
    taking every waiting notification; run warm, on threads of this process),
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
    pdsync serve --worker-only                                 # flows only (one of several)
    ```
    """
    directory = settings_arg(settings)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_S))  # dead → Crashed
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
            worker_only=worker_only,
            announce=lambda line: out.print(line, markup=False),
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
    pdsync sandbox                                          # demo data on 8711 and 8712
    pdsync sandbox --settings deployments/sandbox_settings  # where those settings point
    pdsync sandbox --dataset large --p-503 0.05             # big, and flaky
    pdsync sandbox -- --help                                # every sandbox flag
    ```
    """
    args = [a for a in ctx.args if a != "--"] if ctx.args[:1] == ["--"] else list(ctx.args)
    if settings is not None:
        directory = settings_arg(settings)
        with errors_to_exit_status():
            args = sandbox_args_from_settings(directory, args)
    from sandbox.__main__ import main as sandbox_main

    raise typer.Exit(sandbox_main(args))


def sandbox_args_from_settings(directory: str | None, args: list[str]) -> list[str]:
    from urllib.parse import urlsplit

    from mappings.loading import load_settings

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


def demo(
    settings: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            metavar="DIR",
            help="Settings to demonstrate (pipelines, field maps), re-pointed at the demo's "
            "sandbox. Default: deployments/sandbox_settings/.",
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
    prefect_environment()
    directory = settings_arg(settings)
    with errors_to_exit_status():
        from deployments.demo import run_demo

        code = run_demo(settings_dir=directory, keep_running=keep_running, timeout_s=timeout)
    raise typer.Exit(code)
