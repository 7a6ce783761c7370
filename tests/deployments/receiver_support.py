"""Helpers for the receiver's tests: settings, delivery bodies, and a tiny fake Prefect API."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request, Response

from deployments.sandbox_settings import SANDBOX_DIR
from mappings.loading import load_settings
from mappings.models import Settings

REPO = Path(__file__).resolve().parents[2]
# copies of Pipedrive's description and real deliveries: tests/reference/README.md
FIXTURES = REPO / "tests" / "reference" / "fixtures"
PASSWORD_ENV = "PDSYNC_TEST_RECEIVER_PASSWORD"
USERNAME = "pdsync"
PASSWORD = "r3ceiver-Pa55word-for-tests"  # never to appear in a log line or an answer


def write_settings(directory: Path, public_url: str | None = None) -> Settings:
    """The sandbox settings with a fresh SQLite store and the test password variable; the
    password must be in the environment (`PASSWORD_ENV`) when the app is created."""
    directory.mkdir(parents=True, exist_ok=True)
    data = yaml.safe_load((SANDBOX_DIR / "integration.yaml").read_text())
    data["connection"]["receiver"]["public_url"] = public_url
    data["connection"]["receiver"]["basic_auth"] = {
        "username": USERNAME,
        "password_env": PASSWORD_ENV,
    }
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
    """A Prefect API that records `POST /api/events` and can be told to fail or hang."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.mode: int | str = 204  # a status to answer, or "hang"
        self.hang_s = 5.0
        self._cond = threading.Condition()
        self.app = FastAPI()

        @self.app.post("/api/events")
        async def events(request: Request) -> Response:
            mode = self.mode
            if mode == "hang":
                await asyncio.sleep(self.hang_s)
                return Response(status_code=204)
            if mode != 204:
                return Response(status_code=int(mode))
            received = await request.json()
            with self._cond:
                self.events.extend(received)
                self.headers.append(dict(request.headers))
                self._cond.notify_all()
            return Response(status_code=204)

    def reset(self) -> None:
        with self._cond:
            self.events.clear()
            self.headers.clear()
            self.mode = 204

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The events matching `predicate`, once there is one (timeout only catches hangs)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [e for e in self.events if predicate(e)]
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching event; got {self.events}")
                self._cond.wait(left)
