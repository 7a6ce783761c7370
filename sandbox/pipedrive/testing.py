"""Test kit for the sandbox Pipedrive: a webhook receiver and a hand-built minimal seed.

`WebhookReceiver` serves a small FastAPI app on a free loopback port that records every POST
(path, headers, JSON body) and can be told to answer errors or to stall, to exercise the
sandbox's retries, timeouts and ban policy.

`minimal_seed(n_deals)` builds a tiny, fully valid `PipedriveSeed` by hand (one admin, one
pipeline, a few custom fields, `n_deals` deals), for tests that need exact counts.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from sandbox.dataset import PipedriveSeed
from sandbox.server import ServedApp

Record = dict[str, Any]


class WebhookReceiver:
    """Records webhook deliveries per path; answers 200 unless told otherwise."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.requests: list[Record] = []
        self._plans: dict[str, list[int]] = {}
        self._stalls: dict[str, float] = {}
        self._always: dict[str, int] = {}
        self._cond = threading.Condition()

        async def receive(request: Request) -> Any:
            name = request.path_params["name"]
            body = await request.body()
            entry = {
                "path": name,
                "headers": dict(request.headers),
                "body": json.loads(body) if body else None,
                "time": time.monotonic(),
            }
            with self._cond:
                plan = self._plans.get(name)
                status = plan.pop(0) if plan else self._always.get(name, 200)
                stall = self._stalls.get(name, 0.0)
            if stall:
                await asyncio.sleep(stall)
            with self._cond:
                entry["answered"] = status
                self.requests.append(entry)
                self._cond.notify_all()
            return JSONResponse({"ok": status < 300}, status_code=status)

        app = Starlette(routes=[Route("/{name:path}", receive, methods=["POST"])])
        self.served = ServedApp(app)

    def start(self) -> WebhookReceiver:
        self.served.start()
        return self

    def stop(self) -> None:
        self.served.stop()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, name: str) -> str:
        return f"{self.served.url}/{name}"

    def fail(self, name: str, *statuses: int) -> None:
        """Answer these statuses to the next requests on `name`, then 200 again."""
        with self._cond:
            self._plans[name] = list(statuses)

    def always(self, name: str, status: int) -> None:
        with self._cond:
            self._always[name] = status

    def stall(self, name: str, seconds: float) -> None:
        """Wait this long before answering on `name`."""
        with self._cond:
            self._stalls[name] = seconds

    def received(self, name: str) -> list[Record]:
        with self._cond:
            return [r for r in self.requests if r["path"] == name]

    def wait_for(self, name: str, n: int, timeout: float = 10.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.requests if r["path"] == name]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(got)} requests on /{name}, {n} expected")
                self._cond.wait(left)


ME_USER_ID = 7001
ENUM_FIELD = "a" * 40
SET_FIELD = "b" * 40
MONEY_FIELD = "c" * 40
TEXT_FIELD = "d" * 40


def _field(
    code: str, name: str, field_type: str, custom: bool, options: list[Record] | None = None
) -> Record:
    return {
        "field_name": name,
        "field_code": code,
        "description": "",
        "field_type": field_type,
        "options": options,
        "subfields": None,
        "is_custom_field": custom,
        "is_optional_response_field": False,
    }


def minimal_seed(n_deals: int = 10, *, n_orgs: int = 3, n_persons: int = 3) -> PipedriveSeed:
    """A tiny valid seed: deal i (1..n) is `open`, `won` or `lost` by i % 3, in stage 1 or 2."""
    user = {
        "id": ME_USER_ID,
        "name": "Ada Admin",
        "default_currency": "EUR",
        "locale": "en_US",
        "lang": 1,
        "email": "ada@example.test",
        "phone": None,
        "activated": True,
        "last_login": "2026-01-01 00:00:00",
        "created": "2024-01-01 00:00:00",
        "modified": "2026-01-01 00:00:00",
        "has_created_company": True,
        "access": [{"app": "sales", "admin": True}, {"app": "global", "admin": True}],
        "active_flag": True,
        "timezone_name": "Europe/Berlin",
        "timezone_offset": "+01:00",
        "role_id": 1,
        "icon_url": None,
        "is_you": True,
        "is_deleted": False,
    }
    pipeline = {
        "id": 1,
        "name": "Sales",
        "order_nr": 0,
        "is_deleted": False,
        "is_deal_probability_enabled": False,
        "add_time": "2024-01-01T00:00:00Z",
        "update_time": "2024-01-01T00:00:00Z",
    }
    stages = [
        {
            "id": i,
            "order_nr": i,
            "name": f"Stage {i}",
            "is_deleted": False,
            "deal_probability": 100,
            "pipeline_id": 1,
            "is_deal_rot_enabled": False,
            "days_to_rotten": None,
            "add_time": "2024-01-01T00:00:00Z",
            "update_time": "2024-01-01T00:00:00Z",
        }
        for i in (1, 2)
    ]
    options = [
        {"id": 1, "label": "Gold", "color": None},
        {"id": 2, "label": "Silver", "color": None},
    ]
    deal_fields = [
        _field("title", "Title", "varchar", False),
        _field(
            "status",
            "Status",
            "status",
            False,
            [{"id": "open", "label": "Open"}, {"id": "won", "label": "Won"}],
        ),
        _field(ENUM_FIELD, "Tier", "enum", True, options),
        _field(SET_FIELD, "Modules", "set", True, options),
        _field(MONEY_FIELD, "Fee", "monetary", True),
        _field(TEXT_FIELD, "PO number", "varchar", True),
    ]
    orgs: list[Record] = [
        {
            "id": i,
            "name": f"Org {i}",
            "owner_id": ME_USER_ID,
            "add_time": "2024-02-01T00:00:00Z",
            "update_time": f"2024-02-{i % 28 + 1:02d}T00:00:00Z",
            "is_deleted": False,
            "visible_to": 3,
            "address": None,
            "label_ids": [],
            "website": None,
            "linkedin": None,
            "industry": None,
            "annual_revenue": None,
            "employee_count": None,
            "custom_fields": {},
        }
        for i in range(1, n_orgs + 1)
    ]
    persons: list[Record] = [
        {
            "id": i,
            "name": f"Person {i}",
            "first_name": "Person",
            "last_name": str(i),
            "owner_id": ME_USER_ID,
            "org_id": (i - 1) % n_orgs + 1 if n_orgs else None,
            "add_time": "2024-03-01T00:00:00Z",
            "update_time": f"2024-03-{i % 28 + 1:02d}T00:00:00Z",
            "emails": [{"value": f"p{i}@example.test", "primary": True, "label": "work"}],
            "phones": [],
            "is_deleted": False,
            "visible_to": 3,
            "label_ids": [],
            "picture_id": None,
            "custom_fields": {},
        }
        for i in range(1, n_persons + 1)
    ]
    deals = []
    for i in range(1, n_deals + 1):
        status = ("open", "won", "lost")[i % 3]
        closed = f"2025-01-{i % 28 + 1:02d}T12:00:00Z" if status != "open" else None
        deals.append(
            {
                "id": i,
                "title": f"Deal {i}",
                "creator_user_id": ME_USER_ID,
                "owner_id": ME_USER_ID,
                "person_id": (i % n_persons) + 1 if n_persons else None,
                "org_id": (i % n_orgs) + 1 if n_orgs else None,
                "pipeline_id": 1,
                "stage_id": 1 + i % 2,
                "value": i * 10,
                "currency": "EUR",
                "add_time": "2024-06-01T00:00:00Z",
                "update_time": f"2025-{i % 12 + 1:02d}-01T00:00:00Z",
                "stage_change_time": None,
                "is_deleted": False,
                "is_archived": False,
                "archive_time": None,
                "status": status,
                "probability": None,
                "lost_reason": "price" if status == "lost" else None,
                "visible_to": 3,
                "close_time": closed,
                "won_time": closed if status == "won" else None,
                "lost_time": closed if status == "lost" else None,
                "expected_close_date": None,
                "label_ids": [],
                "origin": "ManuallyCreated",
                "origin_id": None,
                "channel": None,
                "channel_id": None,
                "arr": None,
                "mrr": None,
                "acv": None,
                "custom_fields": {
                    ENUM_FIELD: 1 + i % 2,
                    SET_FIELD: [1, 2] if i % 2 else None,
                    MONEY_FIELD: {"value": i, "currency": "EUR"},
                    TEXT_FIELD: None,
                },
            }
        )
    notes = [
        {
            "id": i,
            "user_id": ME_USER_ID,
            "deal_id": i if i <= n_deals else None,
            "person_id": None,
            "org_id": None,
            "lead_id": None,
            "project_id": None,
            "task_id": None,
            "content": f"<p>Note {i}</p>",
            "add_time": "2024-07-01 00:00:00",
            "update_time": f"2024-07-{i:02d} 00:00:00",
            "active_flag": True,
            "pinned_to_deal_flag": False,
            "pinned_to_organization_flag": False,
            "pinned_to_person_flag": False,
            "pinned_to_lead_flag": False,
            "pinned_to_project_flag": False,
            "pinned_to_task_flag": False,
            "last_update_user_id": ME_USER_ID,
        }
        for i in range(1, 6)
    ]
    return PipedriveSeed(
        me_user_id=ME_USER_ID,
        users=[user],
        pipelines=[pipeline],
        stages=stages,
        deal_fields=deal_fields,
        organization_fields=[_field("name", "Name", "varchar", False)],
        person_fields=[_field("name", "Name", "varchar", False)],
        organizations=orgs,
        persons=persons,
        deals=deals,
        notes=notes,
    )
