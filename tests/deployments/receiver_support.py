"""Helpers for the receiver's tests: settings, delivery bodies, and a tiny fake Prefect API."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request, Response

from deployments.sandbox_settings import SANDBOX_DIR
from mappings.loading import load_settings
from mappings.models import Settings
from store import StateStore

REPO = Path(__file__).resolve().parents[2]
# copies of Pipedrive's description and real deliveries: tests/reference/README.md
FIXTURES = REPO / "tests" / "reference" / "fixtures"
PASSWORD_ENV = "PDSYNC_TEST_RECEIVER_PASSWORD"
USERNAME = "pdsync"
PASSWORD = "r3ceiver-Pa55word-for-tests"  # never to appear in a log line or an answer


def write_settings(
    directory: Path, public_url: str | None = None, *, planhat_secret_env: str | None = None
) -> Settings:
    """The sandbox settings with a fresh SQLite store and the test password variable; the
    password must be in the environment (`PASSWORD_ENV`) when the app is created. With
    `planhat_secret_env`, the receiver takes Planhat's webhooks too (that variable's secret)."""
    directory.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((SANDBOX_DIR / "integration.yaml").read_text())
    data["connection"]["receiver"]["public_url"] = public_url
    data["connection"]["receiver"]["basic_auth"] = {
        "username": USERNAME,
        "password_env": PASSWORD_ENV,
    }
    if planhat_secret_env is not None:
        data["connection"]["receiver"]["planhat_webhook"] = {"secret_env": planhat_secret_env}
    data["store"]["url"] = f"sqlite:///{directory / 'state.db'}"
    (directory / "integration.yaml").write_text(yaml.safe_dump(data))
    return load_settings(directory)


def basic(user: str = USERNAME, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def v1_deal(deal_id: int | None = None, *, stamp: int | None = None) -> dict[str, Any]:
    """The real v1 `updated.deal` delivery (deal 9 unless `deal_id`)."""
    body = fixture("webhook-v1-updated-deal.json")
    if deal_id is not None:
        body["meta"]["id"] = deal_id
        body["current"]["id"] = body["previous"]["id"] = deal_id
    if stamp is not None:
        body["meta"]["timestamp_micro"] = stamp
    return body


def v2_deal(deal_id: int = 42, action: str = "change") -> dict[str, Any]:
    """The real v2 delivery's envelope around a deal: ids as strings, as Pipedrive sends."""
    body = fixture("webhook-v2-change-lead.json")
    body["meta"].update(entity="deal", entity_id=str(deal_id), id=str(uuid.uuid4()), action=action)
    body["data"] = {"id": deal_id, "title": "Acme renewal", "status": "won", "value": 1200}
    body["previous"] = {"status": "open"}
    return body


def v1_person(person_id: int = 5) -> dict[str, Any]:
    body = copy.deepcopy(fixture("webhook-v1-updated-deal.json"))
    body["meta"].update(object="person", id=person_id)
    body["event"] = "updated.person"
    body["current"] = {"id": person_id, "name": "Ada Lovelace"}
    body["previous"] = {"id": person_id, "name": "Ada Byron"}
    return body


class FakePrefect:
    """A Prefect API that records `POST /api/events` and can be told to fail, hang, block
    until released, or refuse some events.

    `mode`: a status to answer, "hang" (answer 204 after `hang_s` without keeping anything),
    or "block" (wait until `release()`, then take the events as 204 does). `reject`: events
    for which the whole request is refused with 422 (as Prefect refuses an invalid event).
    `events`: every event taken, in order; `batches`: the size of each request taken;
    `attempts`: every request received, taken or not."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.batches: list[int] = []
        self.attempts = 0
        self.blocked = 0  # requests waiting for `release()` now
        self.mode: int | str = 204
        self.hang_s = 5.0
        self.block_s = 60.0  # a blocked request goes on after this anyway (catches hangs)
        self.reject: Callable[[dict[str, Any]], bool] | None = None
        self._released = threading.Event()
        self._cond = threading.Condition()
        self.app = FastAPI()

        @self.app.post("/api/events")
        async def events(request: Request) -> Response:
            mode = self.mode
            with self._cond:
                self.attempts += 1
                self._cond.notify_all()
            if mode == "hang":
                await asyncio.sleep(self.hang_s)
                return Response(status_code=204)
            if mode == "block":
                await self._blocked()
            elif mode != 204:
                return Response(status_code=int(mode))
            received = await request.json()
            reject = self.reject
            if reject is not None and any(reject(e) for e in received):
                return Response(status_code=422)
            with self._cond:
                self.events.extend(received)
                self.batches.append(len(received))
                self.headers.append(dict(request.headers))
                self._cond.notify_all()
            return Response(status_code=204)

    async def _blocked(self) -> None:
        with self._cond:
            self.blocked += 1
            self._cond.notify_all()
        deadline = time.monotonic() + self.block_s
        try:
            while not self._released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        finally:
            with self._cond:
                self.blocked -= 1
                self._cond.notify_all()

    def release(self) -> None:
        """Let the blocked requests (and any later one) through."""
        self._released.set()

    def reset(self) -> None:
        with self._cond:
            self.events.clear()
            self.headers.clear()
            self.batches.clear()
            self.attempts = 0
            self.mode = 204
            self.reject = None
            self._released.clear()

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The events matching `predicate`, once there is one (timeout only catches hangs)."""
        found: list[dict[str, Any]] = []

        def matched() -> bool:
            found[:] = [e for e in self.events if predicate(e)]
            return bool(found)

        self.wait_until(matched, timeout, lambda: f"no matching event; got {self.events}")
        return found

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = 60.0, what: Any = None
    ) -> None:
        """Wait until `condition()` (checked whenever a request comes or ends)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(what() if callable(what) else f"waited {timeout} s")
                self._cond.wait(left)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll `condition` until it holds (the timeout only catches hangs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what or f"waited {timeout} s")
        time.sleep(0.01)


class FakeClock:
    """A settable UTC clock for the store (`StateStore(url, clock=...)`), as
    tests/store/store_support.py has it."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> datetime:
        with self._lock:
            self.now += timedelta(**delta)
            return self.now


def all_posted(store: StateStore) -> None:
    """Wait until the receiver's poster posted every owed event (the timeout catches hangs)."""
    wait_until(
        lambda: store.inbox_not_posted_count() == 0,
        what=f"events still owed: {store.inbox_not_posted_count()}",
    )
