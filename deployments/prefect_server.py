"""The Prefect API that one-machine mode uses, and a local Prefect server when there is none.

    with prefect_api(api_url) as url, prefect_settings(url):   # PREFECT_API_URL, else local
        ...

The Prefect API is `api_url` (`--api-url`), else `PREFECT_API_URL` when set; otherwise a local
`prefect server start` is started as a subprocess (`LocalPrefectServer`: its own process group,
its own `PREFECT_HOME` under `.pdsync/prefect`, UI and API on `--prefect-port`, default 4200)
and stopped, with every process of its group, on exit. `stop_process_group` only ever signals
the group of a child this process started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

POLL_FREQUENCY_S = 1
PREFECT_PORT = 4200
LOCAL_PREFECT_HOME = Path(".pdsync") / "prefect"
SERVER_STARTUP_TIMEOUT_S = 120.0


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


# -- process groups -------------------------------------------------------------------------------


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


# -- which Prefect API ----------------------------------------------------------------------------


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
