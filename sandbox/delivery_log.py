"""The log of a sandbox's outbound deliveries (Pipedrive's webhooks, Planhat's automations):
every attempt, readable while it grows, waitable for tests."""

from __future__ import annotations

import threading
import time
from typing import Any

Record = dict[str, Any]


class DeliveryLog:
    """Every delivery attempt (and every delivery dropped), readable while it grows."""

    def __init__(self, what: str = "deliveries") -> None:
        self._what = what
        self._entries: list[Record] = []
        self._cond = threading.Condition()

    def add(self, entry: Record) -> None:
        with self._cond:
            self._entries.append(entry)
            self._cond.notify_all()

    def entries(self) -> list[Record]:
        with self._cond:
            return [dict(e) for e in self._entries]

    def clear(self) -> None:
        with self._cond:
            self._entries.clear()

    def wait_for(self, n: int, timeout: float) -> list[Record]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._entries) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(self._entries)} {self._what} logged, {n} expected within {timeout}s"
                    )
                self._cond.wait(left)
            return [dict(e) for e in self._entries]
