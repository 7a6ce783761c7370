"""An asyncio event loop on a daemon thread of its own, started on first use, with one
`httpx.AsyncClient`: what the sandboxes' outbound deliverers run on (Pipedrive's webhooks,
`sandbox.pipedrive.webhooks`; Planhat's automations, `sandbox.planhat.automations`)."""

from __future__ import annotations

import asyncio
import threading

import httpx


class LoopThread:
    """The loop, its thread and client. Subclasses add their work through `_loop_started` (on
    the loop's thread, before anything is scheduled) and `_loop_stopping` (after the loop
    stopped, before the client closes); `_closing` marks the thread closed and hands back
    what to stop."""

    thread_name = "sandbox-deliveries"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def _ensure_started(self) -> asyncio.AbstractEventLoop | None:
        """The running loop (started now if need be); None once closed."""
        with self._start_lock:
            if self._closed:
                return None
            if self._loop is None:
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(ready,), name=self.thread_name, daemon=True
                )
                self._thread.start()
                ready.wait(10)
            return self._loop

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        self._loop_started(loop)
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._loop_stopping(loop)
            loop.run_until_complete(self._client.aclose())
            loop.close()

    def _loop_started(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hook: on the loop's thread, before the loop runs."""

    def _loop_stopping(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hook: the loop stopped; finish what runs on it (the client closes next)."""

    async def _send_attempt(
        self,
        url: str,
        content: bytes,
        headers: dict[str, str],
        timeout: float,
        auth: httpx.Auth | None = None,
    ) -> tuple[int | None, str | None]:
        """One delivery attempt: (HTTP status or None, None on a 2xx else why it failed)."""
        assert self._client is not None
        status: int | None = None
        try:
            response = await self._client.post(
                url, content=content, headers=headers, auth=auth or httpx.Auth(), timeout=timeout
            )
        except httpx.TimeoutException:
            return None, f"timeout after {timeout:g}s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        status = response.status_code
        return status, None if 200 <= status < 300 else f"HTTP {status}"

    def _closing(self) -> tuple[asyncio.AbstractEventLoop | None, threading.Thread | None]:
        """Mark closed (nothing starts any more); the loop and thread to stop, if started."""
        with self._start_lock:
            self._closed = True
            return self._loop, self._thread
