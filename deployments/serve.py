"""One-machine mode: the webhook receiver and every deployment served from one process.

    pdsync serve [--settings DIR]          # the CLI; in Python: run_serve(settings_dir)

What runs, in one process:

* **the receiver** (`deployments.receiver`, FastAPI under uvicorn on a thread): Pipedrive posts
  deal notifications to it; it stores each one in the inbox and posts a Prefect event
  `pipedrive.deal.<action>` (payload: `deal_id`, `inbox_key`, ...);
* **the inbox drain** (a thread): every `drain_every_s` seconds, and once at start, the events
  of notifications still pending (Prefect was unreachable when they came) are posted again;
* **`prefect.serve`-style runner** of the four deployments, polling for work every second
  (`PREFECT_RUNNER_POLL_FREQUENCY=1`):

  * `deal-sync/deal-sync`: the event trigger on `pipedrive.deal.*` (deal id and inbox key
    templated from the event), at most `deal_concurrency` runs at once, the others queued;
  * `incremental-sync/incremental-sync`: the settings' schedule (`incremental.cron`,
    `.timezone`), one at a time (a run due while one runs is cancelled);
  * `company-resync/company-resync`: ad hoc, the Prefect UI's Run form (a `company` field) or
    `pdsync resync`;
  * `connect/connect`: ad hoc.

The Prefect API is `PREFECT_API_URL` when set; otherwise a local `prefect server start` is
started as a subprocess (its own `PREFECT_HOME` under `.pdsync/prefect`, UI and API on
`--prefect-port`, default 4200) and stopped with the process. Deployments and their trigger are
registered before the receiver opens, so no notification can arrive before its trigger exists.
SIGINT or SIGTERM stop everything (a running flow run is cancelled; the next incremental sync
catches up).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

import httpx

from clients.http import is_loopback_url

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prefect.deployments.runner import RunnerDeployment

    from mappings.settings import Settings

log = logging.getLogger(__name__)

DEAL_EVENTS = "pipedrive.deal.*"
DEAL_RESOURCES = "pipedrive.deal.*"
DEAL_SYNC_CONCURRENCY = 4
POLL_FREQUENCY_S = 1
DRAIN_EVERY_S = 30.0
RECEIVER_HOST = "127.0.0.1"
RECEIVER_PORT = 8713
PREFECT_PORT = 4200
LOCAL_PREFECT_HOME = Path(".pdsync") / "prefect"
SERVER_STARTUP_TIMEOUT_S = 120.0
DEPLOYMENT_NAMES = (
    "deal-sync/deal-sync",
    "incremental-sync/incremental-sync",
    "company-resync/company-resync",
    "connect/connect",
)


class ServeError(RuntimeError):
    """One-machine mode cannot start (a port in use, a server that does not come up)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# -- the deployments ------------------------------------------------------------------------------


def deal_trigger() -> Any:
    """The deal-sync trigger: every `pipedrive.deal.*` event starts one run with the event's
    deal id and inbox key (the same trigger as in prefect.yaml)."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="pipedrive deal notification",
        expect={DEAL_EVENTS},
        match={"prefect.resource.id": DEAL_RESOURCES},
        for_each={"prefect.resource.id"},
        posture="Reactive",  # type: ignore[arg-type]
        threshold=1,
        within=0,  # type: ignore[arg-type]
        parameters={
            "deal_id": "{{ event.payload.deal_id }}",
            "inbox_key": "{{ event.payload.inbox_key }}",
        },
    )


def build_deployments(
    settings: Settings,
    settings_dir: str | None,
    *,
    deal_concurrency: int = DEAL_SYNC_CONCURRENCY,
) -> list[RunnerDeployment]:
    """The four deployments of one-machine mode (the same as prefect.yaml's, without a pool).
    `settings_dir` (absolute) becomes every deployment's default `settings_dir` parameter."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.company_resync import company_resync
    from flows.connect import connect
    from flows.deal_sync import deal_sync
    from flows.incremental_sync import incremental_sync

    params: dict[str, Any] = {"settings_dir": settings_dir} if settings_dir else {}
    module = EntrypointType.MODULE_PATH  # importable from any working directory
    inc = settings.integration.incremental
    return [
        deal_sync.to_deployment(
            "deal-sync",
            triggers=[deal_trigger()],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=deal_concurrency, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
            ),
            parameters=params,
            tags=["pdsync", "webhook"],
            entrypoint_type=module,
        ),
        incremental_sync.to_deployment(
            "incremental-sync",
            schedules=[Cron(inc.cron, timezone=inc.timezone)],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            parameters={"full": False, **params},
            tags=["pdsync", "scheduled"],
            entrypoint_type=module,
        ),
        company_resync.to_deployment(
            "company-resync",
            parameters=params,
            tags=["pdsync", "ad-hoc"],
            entrypoint_type=module,
        ),
        connect.to_deployment(
            "connect",
            parameters=params,
            tags=["pdsync", "ad-hoc"],
            entrypoint_type=module,
        ),
    ]


# -- a local Prefect server -----------------------------------------------------------------------


class LocalPrefectServer:
    """`prefect server start` as a subprocess (its own process group), with its own
    `PREFECT_HOME`; `stop()` ends the whole group. Use as a context manager."""

    def __init__(
        self,
        home: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = SERVER_STARTUP_TIMEOUT_S,
        env: dict[str, str] | None = None,
    ) -> None:
        self.home = Path(home).absolute()
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self._extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    def launch(self) -> LocalPrefectServer:
        """Start the server process without waiting for it (then `wait_ready`)."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        elif port_in_use(self.host, self.port):
            raise ServeError(
                f"port {self.port} on {self.host} is in use: another Prefect server? Point "
                f"PREFECT_API_URL at it (PREFECT_API_URL=http://{self.host}:{self.port}/api) or "
                "choose another port with --prefect-port"
            )
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
            **self._extra_env,
        )
        command = [
            sys.executable, "-m", "prefect", "server", "start",
            "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        with open(self.log_path, "ab") as logfile:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def wait_ready(self) -> LocalPrefectServer:
        """Wait until the API answers (`ServeError` with the log's end if it does not)."""
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self) -> LocalPrefectServer:
        return self.launch().wait_ready()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise ServeError(
                        f"the Prefect server exited at start (status {self.process.returncode}); "
                        f"its log, {self.log_path}, ends with:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return
                time.sleep(0.25)
        raise ServeError(
            f"the Prefect server did not answer {self.api_url}/health within "
            f"{self.startup_timeout_s:.0f} s; its log, {self.log_path}, ends with:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        stop_process_group(self.process, timeout_s)
        self.process = None

    def __enter__(self) -> LocalPrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(process: subprocess.Popen[Any] | None, timeout_s: float = 15.0) -> None:
    """Stop a child started with `start_new_session=True` and everything in its process group:
    SIGTERM, then SIGKILL after `timeout_s`; the child is reaped. Only ever the group of a child
    this process started (its id is the child's pid)."""
    if process is None:
        return
    pgid = process.pid
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid, process):
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and group_alive(pgid, process):
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(1.0)


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid` (Linux `/proc`)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def group_alive(pgid: int, leader: subprocess.Popen[Any] | None = None) -> bool:
    if leader is not None:
        leader.poll()  # reap the leader once it exited
    if Path("/proc/self/stat").exists():
        return bool(group_members(pgid))
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def prefect_api(
    api_url: str | None = None,
    *,
    home: Path = LOCAL_PREFECT_HOME,
    port: int = PREFECT_PORT,
    announce: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """The Prefect API URL to use: `api_url`, else `PREFECT_API_URL`, else a local server
    started here (and stopped on exit)."""
    url = api_url or os.environ.get("PREFECT_API_URL")
    if url:
        yield url.rstrip("/")
        return
    if announce:
        announce(f"Starting a local Prefect server (PREFECT_HOME {home}) ...")
    with LocalPrefectServer(home, port=port) as server:
        if announce:
            announce(f"Prefect UI: {server.ui_url}  (API {server.api_url})")
        yield server.api_url


@contextlib.contextmanager
def prefect_settings(api_url: str, poll_s: int = POLL_FREQUENCY_S) -> Iterator[None]:
    """This process, and every flow run it starts, on `api_url` and polling every `poll_s`."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_RUNNER_POLL_FREQUENCY,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )

    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_RUNNER_POLL_FREQUENCY")}
    os.environ["PREFECT_API_URL"] = api_url
    os.environ["PREFECT_RUNNER_POLL_FREQUENCY"] = str(poll_s)
    try:
        with temporary_settings(
            {
                PREFECT_API_URL: api_url,
                PREFECT_RUNNER_POLL_FREQUENCY: poll_s,
                PREFECT_SERVER_ANALYTICS_ENABLED: False,
            }
        ):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- the receiver and the inbox drain -------------------------------------------------------------


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
        if port_in_use(self.host, self.port):
            raise ServeError(
                f"the receiver cannot listen on {self.host}:{self.port}: the port is in use "
                "(another pdsync serve?); choose another with --port"
            )
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
            log.info("inbox: re-posted the events of %d pending notifications", n)
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
    announce: Callable[[str], None] = print,
) -> None:
    """Serve until SIGINT or SIGTERM. Raises `SettingsError` (invalid settings) or
    `ServeError` (a port in use, a server that does not start) before serving anything."""
    from mappings.settings import load_settings, receiver_password

    settings = load_settings(settings_dir)
    if settings.integration.connection.receiver.basic_auth.password_env:
        receiver_password(settings)  # not set: a located SettingsError before anything starts
    if not receiver_only:  # the flows need both connections: their mistakes fail here too
        from mappings.account import connection_problems
        from mappings.errors import SettingsError

        problems = connection_problems(settings)
        if problems["pipedrive"] or problems["planhat"]:
            raise SettingsError([*problems["pipedrive"], *problems["planhat"]])
    settings_arg = str(Path(settings.directory).absolute())
    import prefect.main  # noqa: F401 - Prefect's logging set-up (its console handler)

    if logging.getLogger("deployments").level == logging.NOTSET:
        logging.getLogger("deployments").setLevel(logging.INFO)  # a line per webhook
    where = receiver_address(settings, host, port)
    if port_in_use(where.host, where.port):
        raise ServeError(
            f"the receiver cannot listen on {where.host}:{where.port}: the port is in use "
            "(another pdsync serve?); choose another with --port"
        )
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_interrupts())  # the local server is stopped on SIGTERM too
        url = stack.enter_context(
            prefect_api(api_url, home=prefect_home, port=prefect_port, announce=announce)
        )
        stack.enter_context(prefect_settings(url))
        runner = None
        if not receiver_only:
            runner = _register(settings, settings_arg, deal_concurrency)
            inc = settings.integration.incremental
            announce(
                f"Deployments: {', '.join(DEPLOYMENT_NAMES)} (deal-sync on {DEAL_EVENTS} "
                f"events, incremental-sync on '{inc.cron}' {inc.timezone})"
            )
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
            _wait_for_signal()
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


def _register(settings: Settings, settings_dir: str | None, deal_concurrency: int) -> Any:
    """A Prefect `Runner` with the deployments registered (their trigger and schedule exist on
    the server when this returns)."""
    from prefect.runner import Runner

    runner = Runner(pause_on_shutdown=True, limit=deal_concurrency + 2)
    for deployment in build_deployments(settings, settings_dir, deal_concurrency=deal_concurrency):
        runner.add_deployment(deployment)
    return runner


def _run_runner(runner: Any) -> None:
    import asyncio

    from prefect.exceptions import TerminationSignal

    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass


def _wait_for_signal() -> None:
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
