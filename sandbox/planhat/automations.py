"""Planhat Automations with an outbound webhook step: configuration, body, background delivery.

Real Planhat lets a user build an Automation whose trigger is "a record of <model> is created /
updated" (optionally "only when specific fields change") and whose step is an outbound webhook:
a request to a URL with user-chosen headers and a user-templated body (reference
`planhat-api.md` §5, "Push alternative"). The sandbox offers the POST-with-JSON case.

* Configuration: a list of `Automation`s (`parse_automations` validates what a user sends;
  `AutomationError` says what is wrong and nothing changes). Keys: `name` (unique), `models`
  (among `companies`, `endusers`, `licenses`, `conversations`), `events` (`created`,
  `updated`; default both), `url` (http/https), `headers` (string → string; default none),
  `fields` (null, or field names with custom fields as `custom.<name>`, `custom` for any of
  them: an update fires only when one of them changed; a create always fires).
* Firing: `AutomationDeliverer.on_change` is a `PlanhatStore` listener: every create, and
  every update that changes at least one value, of a record of a matching model queues one
  delivery per matching automation (a bulk upsert of N records queues N). Writes that change
  nothing, deletes, and values Planhat derives on *other* records (a company's `mrr`/`arr`
  rollup, the `companyName` of a renamed company's records) fire nothing.
* The body (`delivery_body`): ids and small facts, never the whole record:

      {"automation": "<name>", "event": "created" | "updated", "model": "companies",
       "object": "company", "_id": "...", "sourceId": "..." | null, "externalId": "..." | null,
       "companyId": "..." (end users, licenses, conversations only), "changed": ["name",
       "custom.Tier"], "updatedAt": "2025-03-01T09:30:00.000Z", "id": "<delivery id>"}

  `changed`: on `updated` the fields whose stored value changed (derived ones included, e.g. a
  license's `arr` when its `mrr` changed; `updatedAt` never), on `created` every field the new
  record has (`_id`, `createdAt`, `updatedAt` left out). Custom fields appear as
  `custom.<name>`; the list is sorted. `id` is unique per delivery and the same on its retries.
  In real Planhat the body is a template the user writes in the webhook step, filled from the
  triggering record; this is the shape the product asks users to configure. Whether a real
  template can produce `changed` and a delivery `id` is unverified [U].
* Delivery: on its own thread with its own asyncio loop and an `httpx.AsyncClient`, off the
  request path (a write only appends to a queue under a lock), at most `MAX_IN_FLIGHT`
  requests at a time. `POST` with `content-type: application/json` and the automation's
  headers; a 2xx is a success; a connection error, a timeout (`TIMEOUT_S`) or a 5xx is retried
  after `RETRY_DELAYS_S` (3 attempts in all); any other status fails at once. Every delay and
  the timeout are multiplied by `time_scale`. Each attempt is logged
  (`sandbox.delivery_log.DeliveryLog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox.delivery_log import DeliveryLog
from sandbox.faults import ADMIN_PREFIX
from sandbox.loop_thread import LoopThread
from sandbox.planhat.store import COMPANY_OWNED, MODELS, Record, iso_ms

EVENTS = ("created", "updated")
OBJECT_OF = {
    "companies": "company",
    "endusers": "enduser",
    "licenses": "license",
    "conversations": "conversation",
}
RETRY_DELAYS_S = (0.2, 1.0)  # 3 attempts in all
TIMEOUT_S = 5.0
MIN_TIMEOUT_S = 0.5  # a scaled timeout never drops below this (loaded test machines)
MAX_IN_FLIGHT = 8
MAX_QUEUED = 100_000  # deliveries waiting beyond this are dropped (and logged as such)
USER_AGENT = "Planhat-Automations (sandbox)"
# Fields that are not "changes" of a record: set on every write, or the record's identity.
_NOT_CHANGES = frozenset({"_id", "updatedAt", "createdAt", "__v"})
_SEND = 'send {"automations": [...]}, an array of automation objects'
_KEYS = frozenset({"name", "models", "events", "url", "headers", "fields"})


class AutomationError(ValueError):
    """An automation configuration the sandbox refuses (the admin API's 400)."""


@dataclass(frozen=True)
class Automation:
    """One automation: trigger (models, events, optional fields) and webhook step (url, headers)."""

    name: str
    models: tuple[str, ...]
    url: str
    events: tuple[str, ...] = EVENTS
    headers: Mapping[str, str] = field(default_factory=dict)
    fields: tuple[str, ...] | None = None

    def to_json(self) -> Record:
        return {
            "name": self.name,
            "models": list(self.models),
            "events": list(self.events),
            "url": self.url,
            "headers": dict(self.headers),
            "fields": None if self.fields is None else list(self.fields),
        }

    def fires_on(self, model: str, event: str, changed: list[str]) -> bool:
        if model not in self.models or event not in self.events:
            return False
        if event == "updated" and self.fields is not None:
            every_custom = "custom" in self.fields
            return any(
                name in self.fields or (every_custom and name.startswith("custom."))
                for name in changed
            )
        return True


def _strings(value: Any, what: str, allowed: Iterable[str] | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise AutomationError(f"{what} must be a non-empty array of strings")
    known = None if allowed is None else tuple(allowed)
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise AutomationError(f"{what} must be a non-empty array of strings")
        if known is not None and item not in known:
            raise AutomationError(f"{what}: unknown {item!r}; known: {', '.join(known)}")
        if item not in out:
            out.append(item)
    return tuple(out)


def parse_automation(data: Any, index: int = 0) -> Automation:
    """One automation from its JSON form (see the module docstring); `AutomationError` if bad."""
    if isinstance(data, Automation):
        data = data.to_json()  # checked like any other
    where = f"automations[{index}]"
    if not isinstance(data, dict):
        raise AutomationError(f"{where} must be an object")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise AutomationError(f"{where}: unknown keys {unknown}; known: {sorted(_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise AutomationError(f"{where}.name must be a non-empty string")
    if "models" not in data:
        raise AutomationError(f"{where}.models is required (among {', '.join(MODELS)})")
    models = _strings(data["models"], f"{where}.models", MODELS)
    events = _strings(data["events"], f"{where}.events", EVENTS) if "events" in data else EVENTS
    url = data.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise AutomationError(f"{where}.url must be an http:// or https:// URL")
    headers = data.get("headers")
    if headers is None:
        headers = {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and k.strip() and isinstance(v, str) for k, v in headers.items()
    ):
        raise AutomationError(f"{where}.headers must be an object of strings")
    fields = data.get("fields")
    if fields is not None:
        fields = _strings(fields, f"{where}.fields")
    assert isinstance(url, str)
    return Automation(name, models, url, events, dict(headers), fields)


def parse_automations(data: Any) -> list[Automation]:
    """`{"automations": [...]}` (or the bare array) → automations; `AutomationError` if bad."""
    if isinstance(data, dict):
        unknown = sorted(set(data) - {"automations"})
        if unknown or "automations" not in data:
            raise AutomationError(_SEND)
        data = data["automations"]
    if not isinstance(data, list):
        raise AutomationError(_SEND)
    automations = [parse_automation(item, i) for i, item in enumerate(data)]
    names = [a.name for a in automations]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AutomationError(f"automation names must be unique; repeated: {duplicates}")
    return automations


def changed_fields(old: Record | None, new: Record) -> list[str]:
    """The fields whose value differs (all of `new`'s when `old` is None), `custom.<name>`
    for custom fields, sorted; `_id`, `createdAt`, `updatedAt` never count."""
    if old is None:
        names = [key for key in new if key not in _NOT_CHANGES]
    else:
        names = [
            key
            for key in old.keys() | new.keys()
            if key not in _NOT_CHANGES and old.get(key) != new.get(key)
        ]
    if "custom" in names:
        was, now = (old or {}).get("custom"), new.get("custom")
        if isinstance(now, dict) and isinstance(was, dict | None):
            was = was or {}
            names.remove("custom")
            names.extend(
                f"custom.{name}"
                for name in was.keys() | now.keys()
                if old is None or was.get(name) != now.get(name)
            )
    return sorted(names)


def delivery_body(
    automation: str, model: str, event: str, record: Record, changed: list[str]
) -> Record:
    """The JSON body of one delivery (the module docstring's shape)."""
    body: Record = {
        "automation": automation,
        "event": event,
        "model": model,
        "object": OBJECT_OF[model],
        "_id": record["_id"],
        "sourceId": record.get("sourceId"),
        "externalId": record.get("externalId"),
    }
    if model in COMPANY_OWNED:
        body["companyId"] = record.get("companyId")
    body["changed"] = changed
    body["updatedAt"] = record.get("updatedAt")
    body["id"] = os.urandom(16).hex()  # as unique as a UUID, a quarter of the cost
    return body


@dataclass
class Job:
    """One delivery: one automation, one record event (its body fixed when queued)."""

    automation: Automation
    body: Record
    content: bytes = b""


class AutomationDeliverer(LoopThread):
    """The configured automations, and their deliveries on a background thread.

    Deliveries wait in a thread-safe queue of attempts; `MAX_IN_FLIGHT` worker coroutines on
    the delivery thread's loop take one attempt at a time, so at most that many requests are in
    flight however many records a write touched. A failed attempt worth retrying goes back to
    the front of the queue after its delay (it holds no worker meanwhile).

    `write_lock` (the store's lock): a burst of deliveries starts once the write that fired it
    is over, so that the delivery thread does not compete with that write for the interpreter
    (a bulk upsert of 5,000 records would otherwise take several times as long).
    """

    thread_name = "planhat-automations"

    def __init__(self, time_scale: float = 1.0, write_lock: threading.RLock | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        super().__init__()
        self.time_scale = time_scale
        self.log = DeliveryLog("automation deliveries")
        self._write_lock = write_lock
        self._automations: tuple[Automation, ...] = ()
        self._queue: deque[tuple[Job, int]] = deque()  # (delivery, attempt number)
        self._pending = 0  # deliveries not finished yet (queued, in flight or awaiting a retry)
        self._cond = threading.Condition()
        self._wake: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []

    # -- configuration ------------------------------------------------------------------------
    def set(self, automations: Any) -> None:
        """Replace the automations: an iterable of dicts in their JSON form (or `Automation`s),
        or `{"automations": [...]}`. All or nothing: `AutomationError` changes nothing."""
        if not isinstance(automations, dict | list):
            try:
                automations = list(automations)
            except TypeError:
                raise AutomationError(_SEND) from None
        self._automations = tuple(parse_automations(automations))
        if self._automations:
            self._ensure_started()  # now rather than in the first write that fires

    def configured(self) -> list[Record]:
        """The automations in their JSON form."""
        return [a.to_json() for a in self._automations]

    @property
    def timeout_s(self) -> float:
        return max(TIMEOUT_S * self.time_scale, MIN_TIMEOUT_S)

    @property
    def retry_delays_s(self) -> list[float]:
        return [d * self.time_scale for d in RETRY_DELAYS_S]

    # -- firing (a `PlanhatStore` listener: on the API's thread, under the store's lock) -------
    def on_change(self, model: str, old: Record | None, new: Record) -> None:
        automations = self._automations
        if not automations:
            return
        event = "created" if old is None else "updated"
        if not any(model in a.models and event in a.events for a in automations):
            return
        changed = changed_fields(old, new)
        if event == "updated" and not changed:
            return
        jobs = [
            Job(a, delivery_body(a.name, model, event, new, changed))
            for a in automations
            if a.fires_on(model, event, changed)
        ]
        if jobs:
            self._submit(jobs)

    def _submit(self, jobs: list[Job]) -> None:
        loop = self._loop if not self._closed else None  # the fast path: running already
        if loop is None:
            loop = self._ensure_started()
        if loop is None:
            return
        with self._cond:
            if self._closed:  # `close` clears the queue under this lock after setting it
                return
            room = max(MAX_QUEUED - len(self._queue), 0)
            jobs, dropped = jobs[:room], jobs[room:]
            wake = not self._queue and bool(jobs)
            self._queue.extend((job, 1) for job in jobs)
            self._pending += len(jobs)
        for job in dropped:
            self.log.add(self._entry(job, 0, None, "queue full: delivery dropped", 0.0, True))
        if wake:  # only when the queue was empty: a bulk upsert of 5,000 records wakes once
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(self._start_burst)

    def _loop_started(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._workers = [loop.create_task(self._work()) for _ in range(MAX_IN_FLIGHT)]

    def _loop_stopping(self, loop: asyncio.AbstractEventLoop) -> None:
        for worker in self._workers:
            worker.cancel()
        loop.run_until_complete(asyncio.gather(*self._workers, return_exceptions=True))

    # -- delivery (on the delivery thread) ----------------------------------------------------
    def _start_burst(self) -> None:
        if self._write_lock is not None:
            with self._write_lock:  # blocks this loop until the firing write is over
                pass
        self._set_wake()

    def _set_wake(self) -> None:
        assert self._wake is not None
        self._wake.set()

    def _retry(self, job: Job, attempt: int) -> None:
        with self._cond:
            self._queue.appendleft((job, attempt))
        self._set_wake()

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            with self._cond:
                item = self._queue.popleft() if self._queue else None
            if item is None:
                # Nothing queued: sleep until `_submit` or `_retry` wakes the workers. The
                # event is cleared before the queue is looked at again, so a job queued in
                # between is seen now or wakes us later: none is left behind.
                self._wake.clear()
                with self._cond:
                    if self._queue:
                        continue
                await self._wake.wait()
                continue
            job, attempt = item
            try:
                retry = await self._attempt(job, attempt)
            except Exception as exc:  # a bug must show in the log, not stop the worker
                self.log.add(self._entry(job, attempt, None, f"delivery error: {exc!r}", 0.0))
                retry = False
            if retry:
                delay = RETRY_DELAYS_S[attempt - 1] * self.time_scale
                asyncio.get_running_loop().call_later(delay, self._retry, job, attempt + 1)
            else:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _entry(
        self,
        job: Job,
        attempt: int,
        status: int | None,
        error: str | None,
        duration_s: float,
        dropped: bool = False,
    ) -> Record:
        body = job.body
        return {
            "id": body["id"],
            "automation": job.automation.name,
            "model": body["model"],
            "event": body["event"],
            "_id": body["_id"],
            "attempt": attempt,
            "url": job.automation.url,
            "status": status,
            "error": error,
            "ok": error is None and status is not None and 200 <= status < 300,
            "duration_ms": round(duration_s * 1000, 3),
            "time": iso_ms(time.time_ns() // 1_000_000),
            "dropped": dropped,
        }

    async def _attempt(self, job: Job, attempt: int) -> bool:
        """One attempt, logged; True when it failed in a way worth another attempt."""
        if not job.content:
            job.content = orjson.dumps(job.body)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **job.automation.headers,
        }
        started = time.monotonic()
        status, error = await self._send_attempt(
            job.automation.url, job.content, headers, self.timeout_s
        )
        self.log.add(self._entry(job, attempt, status, error, time.monotonic() - started))
        failed_hard = error is not None and (status is None or status >= 500)
        return failed_hard and attempt <= len(RETRY_DELAYS_S)

    # -- waiting and shutdown (any thread) ----------------------------------------------------
    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every fired delivery finished (its retries included)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._pending} automation deliveries still pending")
                self._cond.wait(left)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the delivery thread (pending deliveries and retries are abandoned); idempotent."""
        loop, thread = self._closing()
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # already stopped and closed
                loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
        with self._cond:
            self._queue.clear()
            self._pending = 0
            self._cond.notify_all()


# --- the admin API ------------------------------------------------------------------------------


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def automations_router(deliverer: AutomationDeliverer) -> APIRouter:
    """`GET|PUT|DELETE /_sandbox/automations`, `GET|DELETE /_sandbox/automations/deliveries`."""
    router = APIRouter(prefix=ADMIN_PREFIX + "/automations", include_in_schema=False)

    @router.get("")
    async def get_automations() -> Response:
        return _json({"automations": deliverer.configured()})

    @router.put("")
    async def put_automations(request: Request) -> Response:
        raw = await request.body()
        if not raw.strip():
            return _json({"message": f"a JSON body is required: {_SEND}"}, 400)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _json({"message": "the body is not valid JSON"}, 400)
        try:
            deliverer.set(data)
        except AutomationError as exc:
            return _json({"message": str(exc)}, 400)
        return _json({"automations": deliverer.configured()})

    @router.delete("")
    async def clear_automations() -> Response:
        deliverer.set([])
        return _json({"automations": []})

    @router.get("/deliveries")
    async def get_deliveries() -> Response:
        return _json(deliverer.log.entries())

    @router.delete("/deliveries")
    async def clear_deliveries() -> Response:
        deliverer.log.clear()
        return _json([])

    return router


__all__ = [
    "Automation",
    "AutomationDeliverer",
    "AutomationError",
    "automations_router",
    "changed_fields",
    "delivery_body",
    "parse_automations",
]
