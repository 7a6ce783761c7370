"""Serve an ASGI app with uvicorn on a background thread (in-process) or in the foreground.

The sandbox apps are ordinary ASGI apps. In tests and benchmarks they run on a free loopback
port inside the current process (`ServedApp`); `python -m sandbox` serves them until SIGINT or
SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (and may be taken by the time it is used:
    to serve on a free port, hold the socket of `bound_socket(host, 0)`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` (0: a free port the system picks), for uvicorn to
    listen on. Held from the start, so no other process can take the port in between (a port
    looked up free and bound later could be, by any outgoing connection on the machine).
    Raises `OSError` when the port is in use. The protocol is named (`IPPROTO_TCP`, as uvicorn's
    own binding has it): asyncio sets `TCP_NODELAY` on accepted connections only then, and
    without it every small answer waited some 40 ms for the client's delayed ACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the thread is not the main thread
        return None


class ServedApp:
    """An ASGI app served by uvicorn on a background thread.

    >>> served = ServedApp(app).start()
    >>> served.url  # 'http://127.0.0.1:54321'
    >>> served.stop()
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning"
    ) -> None:
        self.app = app
        self.host = host
        #: a free port's socket, held from now on (an explicit port is bound by uvicorn)
        self._socket: socket.socket | None = None
        if port:
            self.port = port
        else:
            self._socket = bound_socket(host, 0)
            self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> ServedApp:
        sockets = [self._socket] if self._socket is not None else None
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": sockets},
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"sandbox server on port {self.port} failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"sandbox server on port {self.port} did not start in {timeout}s"
                )
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._socket is not None and self._thread is None:  # never served: let the port go
            self._socket.close()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # a hung request: force it
                self._server.force_exit = True
                self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve_together(
    apps: list[tuple[Any, str, int]],
    log_level: str = "warning",
    on_started: Callable[[], None] | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve several ASGI apps in the foreground, in one event loop, until SIGINT or SIGTERM.

    `on_started` is called once every server is listening (so that what it prints is true).
    `sockets`: one bound socket per app (`bound_socket`), to listen on instead of binding
    each app's host and port.
    """
    if sockets is not None and len(sockets) != len(apps):
        raise ValueError("serve_together takes one socket per app")
    servers = [
        _Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=log_level,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
        )
        for app, host, port in apps
    ]
    loop = asyncio.get_running_loop()

    def request_exit() -> None:
        for server in servers:
            if server.should_exit:  # a second signal: stop without waiting
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_exit)

    async def announce() -> None:
        while not all(server.started for server in servers):
            if any(server.should_exit for server in servers):
                return
            await asyncio.sleep(0.01)
        if on_started is not None:
            on_started()

    try:
        await asyncio.gather(
            announce(),
            *(
                server.serve(sockets=None if sockets is None else [sockets[i]])
                for i, server in enumerate(servers)
            ),
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
