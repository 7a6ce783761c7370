"""`sandbox.server`: a sandbox app on a free port holds that port from the moment it is chosen,
so nothing else on the machine can take it before the app listens."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from sandbox.server import ServedApp, bound_socket


async def _ok(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Any]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:  # a minimal ASGI app
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _taken(port: int, *, reuse: bool = False) -> bool:
    """Whether binding `port` fails; `reuse`: as a server would bind it (a closed connection's
    TIME_WAIT does not count then, a socket bound to it does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        if reuse:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_a_free_port_is_held_from_the_start_and_served() -> None:
    served = ServedApp(_ok)
    assert _taken(served.port)  # chosen and held, before the app is started
    with served:
        assert httpx.get(f"{served.url}/", timeout=5).status_code == 204
    assert not _taken(served.port, reuse=True)


def test_an_app_never_started_lets_its_port_go() -> None:
    served = ServedApp(_ok)
    served.stop()
    assert not _taken(served.port, reuse=True)


def test_a_port_in_use_is_refused_at_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(OSError):
            bound_socket("127.0.0.1", holder.getsockname()[1])


async def _small_json(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Any]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:  # headers and body in two writes, as a framework answers
    body = b'{"success":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"16")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_small_answers_on_a_kept_alive_connection_are_not_held_back() -> None:
    """On a free port held from the start, the answers still go out at once (`TCP_NODELAY`):
    without it each one waited about 40 ms for the client's delayed ACK."""
    with ServedApp(_small_json) as served, httpx.Client(base_url=served.url, timeout=5) as client:
        client.get("/")  # the connection, opened
        times = []
        for _ in range(15):
            started = time.perf_counter()
            assert client.get("/").status_code == 200
            times.append(time.perf_counter() - started)
    assert statistics.median(times) < 0.025, times
