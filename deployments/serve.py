"""One-machine mode: the webhook receiver and every deployment served from one process.

    pdsync serve [--settings DIR]          # the CLI; in Python: run_serve(settings_dir)

What runs, in one process:

* **the receiver** (`deployments.receiver`, FastAPI under uvicorn on a thread): Pipedrive posts
  deal notifications to it; it stores each one in the inbox and posts a Prefect event
  `pipedrive.deal.<action>` (payload: `deal_id`, `inbox_key`, ...); Planhat's automation
  webhooks likewise (`planhat.<object>.<event>`) when the settings have `planhat_webhook`;
* **the inbox drain** (a thread): every `drain_every_s` seconds, and once at start, the events
  of notifications whose event was not posted (Prefect was unreachable when they came) are
  posted again;
* **deal-sync and planhat-sync runs, warm** (`deployments.warm`): executed on threads of this
  process (at most `--deal-concurrency` deal-sync runs at once, and 2 planhat-sync runs),
  polled every 0.25 s: no Python start-up per run;
* **a `prefect.serve`-style runner** of the three other deployments
  (`deployments.definitions`), polling for work every second
  (`PREFECT_RUNNER_POLL_FREQUENCY=1`), a process per run.

`--receiver-only` runs the receiver and the drain alone (the flows run elsewhere);
`--worker-only` the flows alone (no receiver: several such processes may share one Prefect
server and one state store on PostgreSQL; a deal is never synced by two of them at once).

The Prefect API is `PREFECT_API_URL` when set; otherwise a local `prefect server start` is
started and stopped with the process (`deployments.prefect_server`). Deployments and their
trigger are registered before the receiver opens, so no notification can arrive before its
trigger exists. SIGINT or SIGTERM stop everything (a running flow run is cancelled; the next
incremental sync catches up).

The names this module had before its split (the deployments, the local Prefect server) are
still importable from here.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from clients.http import is_loopback_url
from deployments.definitions import (
    DEAL_EVENTS,
    DEAL_RESOURCES,
    DEAL_SYNC_CONCURRENCY,
    DEPLOYMENT_NAMES,
    build_deployments,
    deal_trigger,
    register,
)
from deployments.prefect_server import (
    LOCAL_PREFECT_HOME,
    POLL_FREQUENCY_S,
    PREFECT_PORT,
    SERVER_STARTUP_TIMEOUT_S,
    LocalPrefectServer,
    ServeError,
    free_port,
    group_alive,
    group_members,
    port_in_use,
    prefect_api,
    prefect_settings,
    stop_process_group,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mappings.models import Settings

__all__ = [
    "DEAL_EVENTS",
    "DEAL_RESOURCES",
    "DEAL_SYNC_CONCURRENCY",
    "DEPLOYMENT_NAMES",
    "DRAIN_EVERY_S",
    "LOCAL_PREFECT_HOME",
    "POLL_FREQUENCY_S",
    "PREFECT_PORT",
    "RECEIVER_HOST",
    "RECEIVER_PORT",
    "SERVER_STARTUP_TIMEOUT_S",
    "InboxDrainer",
    "LocalPrefectServer",
    "ReceiverAddress",
    "ReceiverServer",
    "ServeError",
    "build_deployments",
    "check_receiver_port",
    "deal_trigger",
    "free_port",
    "group_alive",
    "group_members",
    "port_in_use",
    "prefect_api",
    "prefect_settings",
    "receiver_address",
    "run_serve",
    "stop_process_group",
    "wait_for_signal",
]

log = logging.getLogger(__name__)

DRAIN_EVERY_S = 30.0
RECEIVER_HOST = "127.0.0.1"
RECEIVER_PORT = 8713


# -- the receiver and the inbox drain -------------------------------------------------------------


def check_receiver_port(host: str, port: int) -> None:
    """`ServeError` when the receiver's port is taken."""
    if port_in_use(host, port):
        raise ServeError(
            f"the receiver cannot listen on {host}:{port}: the port is in use "
            "(another pdsync serve?); choose another with --port"
        )


class ReceiverServer:
    """A FastAPI app under uvicorn on a daemon thread."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        import uvicorn

        self.host = host
        self.port = port
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, name="pdsync-receiver", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run()
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self.error = exc

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> ReceiverServer:
        check_receiver_port(self.host, self.port)
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(
                    f"the receiver did not start on {self.host}:{self.port}"
                    + (f": {self.error}" if self.error else "")
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout_s)


class InboxDrainer:
    """Re-posts the events of pending notifications every `every_s` seconds (and at once)."""

    def __init__(self, store_url: str, api_url: str, every_s: float = DRAIN_EVERY_S) -> None:
        self.store_url = store_url
        self.api_url = api_url
        self.every_s = every_s
        self.posted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pdsync-inbox-drain", daemon=True)

    def drain_once(self) -> int:
        from deployments.receiver import drain_inbox
        from store import StateStore

        with StateStore(self.store_url) as store:
            n = drain_inbox(store, self.api_url)
        if n:
            log.info("inbox: posted %d event(s) for waiting notifications", n)
        self.posted += n
        return n

    def _run(self) -> None:
        while True:
            try:
                self.drain_once()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("inbox drain failed (tried again in %.0f s): %s", self.every_s, exc)
            if self._stop.wait(self.every_s):
                return

    def start(self) -> InboxDrainer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)


# -- one-machine mode -----------------------------------------------------------------------------


class ReceiverAddress(NamedTuple):
    host: str
    port: int


def receiver_address(settings: Settings, host: str | None, port: int | None) -> ReceiverAddress:
    """Where the receiver listens: the options, else the port of a loopback `public_url`
    (the sandbox settings), else 127.0.0.1:8713 (behind your HTTPS reverse proxy)."""
    public = settings.integration.connection.receiver.public_url
    default_port = RECEIVER_PORT
    if public:
        parts = urlsplit(public)
        if is_loopback_url(public) and parts.port:
            default_port = parts.port
    return ReceiverAddress(host or RECEIVER_HOST, port if port is not None else default_port)


def run_serve(
    settings_dir: str | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    api_url: str | None = None,
    prefect_port: int = PREFECT_PORT,
    prefect_home: Path = LOCAL_PREFECT_HOME,
    deal_concurrency: int = DEAL_SYNC_CONCURRENCY,
    drain_every_s: float = DRAIN_EVERY_S,
    receiver_only: bool = False,
    worker_only: bool = False,
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until SIGINT or SIGTERM. Raises `SettingsError` (invalid settings) or
    `ServeError` (a port in use, a server that does not start) before serving anything."""
    from mappings.loading import load_settings
    from tasks.credentials import receiver_password

    if receiver_only and worker_only:
        raise ServeError("--receiver-only and --worker-only exclude each other")
    settings = load_settings(settings_dir)
    if not worker_only and settings.integration.connection.receiver.basic_auth.password_env:
        receiver_password(settings)  # not set: a located SettingsError before anything starts
    if not receiver_only:  # the flows need both connections: their mistakes fail here too
        from mappings.errors import SettingsError
        from tasks.account import connection_problems

        problems = connection_problems(settings)
        if problems["pipedrive"] or problems["planhat"]:
            raise SettingsError([*problems["pipedrive"], *problems["planhat"]])
    settings_arg = str(Path(settings.directory).absolute())
    import prefect.main  # noqa: F401 - Prefect's logging set-up (its console handler)

    if logging.getLogger("deployments").level == logging.NOTSET:
        logging.getLogger("deployments").setLevel(logging.INFO)  # a line per webhook
    where = receiver_address(settings, host, port)
    if not worker_only:
        check_receiver_port(where.host, where.port)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_interrupts())  # the local server is stopped on SIGTERM too
        url = stack.enter_context(
            prefect_api(api_url, home=prefect_home, port=prefect_port, announce=announce)
        )
        stack.enter_context(prefect_settings(url))
        runner = None
        if not receiver_only:
            runner, warm = register(settings, settings_arg, deal_concurrency)
            stack.callback(warm.stop)
            warm.start()
            inc = settings.integration.incremental
            announce(
                f"Deployments: {', '.join(DEPLOYMENT_NAMES)} (deal-sync on {DEAL_EVENTS} "
                f"events, warm: up to {deal_concurrency} at once in this process; "
                f"incremental-sync on '{inc.cron}' {inc.timezone})"
            )
        if not worker_only:
            from deployments.receiver import WEBHOOK_PATH, create_receiver_app

            app = create_receiver_app(settings, prefect_api_url=url)
            receiver = ReceiverServer(app, where.host, where.port).start()
            stack.callback(receiver.stop)
            drainer = InboxDrainer(settings.store_url, url, drain_every_s).start()
            stack.callback(drainer.stop)
            public = settings.integration.connection.receiver.public_url
            announce(
                f"Receiver: {receiver.url}{WEBHOOK_PATH} (GET /healthz)"
                + (f"; Pipedrive posts to {public}" if public else "")
            )
        announce(f"pdsync serve: ready (Prefect API {url}). Ctrl-C stops.")
        if runner is None:
            wait_for_signal()
        else:
            _run_runner(runner)
    announce("pdsync serve: stopped")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while starting up, so that the clean-up runs (the runner
    installs its own graceful handler once it serves)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_runner(runner: Any) -> None:
    import asyncio

    from prefect.exceptions import TerminationSignal

    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
