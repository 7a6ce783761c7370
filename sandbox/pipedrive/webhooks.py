"""Webhooks: the v1 management API's registry, the v1/v2 payloads, and background delivery.

Every create/change/delete made through the sandbox API fires, to each matching webhook
(`event_action`/`event_object`, `*` included), the payload of that webhook's version
(reference §4.3, §4.4 and `fixtures/`). Delivery runs on its own thread with its own asyncio
loop and an `httpx.AsyncClient`, fed thread-safely, so it never blocks or slows an API answer
and works whatever server runs the app.

Delivery rules (reference §4.2), with every delay multiplied by `time_scale`:
* any 2xx is a success; a non-2xx answer, a connection error or a timeout (10 s) is a failed
  attempt, retried after 3, 30 and 150 s (`meta.attempt` 1..4 in v2, `retry` 0..3 in v1);
* with the ban policy on: each failed *first* attempt counts; at 10 the webhook is banned for
  30 minutes (the count restarts) and events during the ban are lost (logged as `dropped`);
  a webhook with no successful delivery for 3 days (failed deliveries spanning 3 scaled days)
  is deleted.

`WebhookDispatcher.redeliver(event_id)` sends an event once more, as Pipedrive does when it did
not get a receiver's answer (at-least-once delivery): the same body, the same `meta.id`, the
next attempt number (v2 `meta.attempt`, v1 `retry`), one attempt, logged like every attempt.
The last `REDELIVERABLE_EVENTS` events can be redelivered (tests and benchmarks make
duplicates with it; the delivery rules above never call it).

Its size: Pipedrive's whole webhook behaviour (v1 and v2 payloads, delivery, retries,
bans and deletion) in one place, as Pipedrive documents it in one place.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson

from sandbox.delivery_log import DeliveryLog
from sandbox.loop_thread import LoopThread
from sandbox.pipedrive import views
from sandbox.pipedrive.common import iso, now

if TYPE_CHECKING:
    from sandbox.pipedrive.model import PipedriveModel

Record = dict[str, Any]

RETRY_DELAYS_S = (3.0, 30.0, 150.0)
TIMEOUT_S = 10.0
MIN_TIMEOUT_S = 0.5  # a scaled timeout never drops below this (loaded test machines)
BAN_AFTER_FAILED_FIRST_ATTEMPTS = 10
BAN_S = 30 * 60.0
DELETE_AFTER_S = 3 * 24 * 3600.0
MAX_WEBHOOKS_PER_USER = 40
REDELIVERABLE_EVENTS = 10_000  # the most recent events `redeliver` can send again

V2_ACTIONS = ("create", "change", "delete", "*")
V1_ACTIONS = ("added", "updated", "merged", "deleted", "*")
V1_ACTION_OF = {"create": "added", "change": "updated", "delete": "deleted"}
V2_OBJECTS = (
    "activity",
    "deal",
    "lead",
    "note",
    "organization",
    "person",
    "pipeline",
    "product",
    "stage",
    "user",
    "*",
)
V1_OBJECTS = (
    "activity",
    "activityType",
    "deal",
    "note",
    "organization",
    "person",
    "pipeline",
    "product",
    "stage",
    "user",
    "*",
)


class WebhookRequestError(Exception):
    """A rejected webhook request: `errors` is `{field: [messages]}` (the webhooks API's 400)."""

    def __init__(self, errors: dict[str, list[str]], status: int = 400) -> None:
        super().__init__(str(errors))
        self.errors = errors
        self.status = status


@dataclass
class _State:
    failed_first_attempts: int = 0
    banned_until: float | None = None
    failing_since: float | None = None


@dataclass
class Job:
    """One event for one webhook."""

    webhook: Record
    entity: str
    action: str
    current: Record | None
    previous: Record | None
    event_id: str
    correlation_id: str
    when: datetime
    when_ns: int
    body_of: Callable[[int], bytes] | None = field(default=None, repr=False)


class WebhookRegistry:
    """The company's webhooks (`/v1/webhooks`) and their delivery state."""

    def __init__(
        self, company_id: int, me_user_id: int, user_exists: Callable[[int], bool]
    ) -> None:
        self.company_id = company_id
        self.me_user_id = me_user_id
        self._user_exists = user_exists
        self._hooks: dict[int, Record] = {}
        self._state: dict[int, _State] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def list(self) -> list[Record]:
        with self._lock:
            return [dict(hook) for hook in self._hooks.values()]

    def get(self, webhook_id: int) -> Record | None:
        with self._lock:
            hook = self._hooks.get(webhook_id)
            return dict(hook) if hook else None

    def __len__(self) -> int:
        return len(self._hooks)

    def create(self, body: Record) -> Record:
        errors: dict[str, list[str]] = {}
        version = body.get("version") or "2.0"
        if version not in ("1.0", "2.0"):
            errors["version"] = ["must be one of 1.0, 2.0"]
        url = body.get("subscription_url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.hostname.endswith("pipedrive.com")
        ):
            errors["subscription_url"] = ["invalid or non-reachable URL"]
        actions = V1_ACTIONS if version == "1.0" else V2_ACTIONS
        if body.get("event_action") not in actions:
            errors["event_action"] = [f"must be one of {', '.join(actions)}"]
        objects = V1_OBJECTS if version == "1.0" else V2_OBJECTS
        if body.get("event_object") not in objects:
            errors["event_object"] = [f"must be one of {', '.join(objects)}"]
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            errors["name"] = ["is required"]
        elif len(name) > 255:
            errors["name"] = ["must be at most 255 characters"]
        user_id = body.get("user_id", self.me_user_id)
        try:
            user_id = int(user_id) if user_id not in (None, "") else self.me_user_id
            if not self._user_exists(user_id):
                errors["user_id"] = ["user not found"]
        except (TypeError, ValueError):
            errors["user_id"] = ["must be an integer"]
        for key in ("http_auth_user", "http_auth_password"):
            if body.get(key) is not None and not isinstance(body[key], str):
                errors[key] = ["must be a string"]
        if errors:
            raise WebhookRequestError(errors)
        with self._lock:
            owned = sum(1 for h in self._hooks.values() if h["owner_id"] == self.me_user_id)
            if owned >= MAX_WEBHOOKS_PER_USER:
                raise WebhookRequestError(
                    {"subscription_url": [f"limit of {MAX_WEBHOOKS_PER_USER} webhooks reached"]},
                    status=422,
                )
            webhook_id = self._next_id
            self._next_id += 1
            hook = {
                "id": webhook_id,
                "company_id": self.company_id,
                "owner_id": self.me_user_id,
                "user_id": user_id,
                "event_action": body["event_action"],
                "event_object": body["event_object"],
                "subscription_url": url,
                "version": version,
                "is_active": 1,
                "add_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "remove_time": None,
                "type": "general",
                "http_auth_user": body.get("http_auth_user") or None,
                "http_auth_password": body.get("http_auth_password") or None,
                "remove_reason": None,
                "last_delivery_time": None,
                "last_http_status": None,
                "admin_id": self.me_user_id,
                "name": name,
            }
            self._hooks[webhook_id] = hook
            self._state[webhook_id] = _State()
            return dict(hook)

    def delete(self, webhook_id: int) -> bool:
        with self._lock:
            self._state.pop(webhook_id, None)
            return self._hooks.pop(webhook_id, None) is not None

    def matching(self, entity: str, action: str) -> builtins.list[Record]:
        """Webhooks subscribed to this event (by their version's action names)."""
        v1_action = V1_ACTION_OF[action]
        with self._lock:
            return [
                dict(hook)
                for hook in self._hooks.values()
                if hook["event_object"] in (entity, "*")
                and hook["event_action"] in ("*", v1_action if hook["version"] == "1.0" else action)
            ]

    # -- delivery state (called from the delivery thread) -------------------------------------
    def is_banned(self, webhook_id: int, clock: float) -> bool:
        with self._lock:
            state = self._state.get(webhook_id)
            if state is None or state.banned_until is None:
                return False
            if clock >= state.banned_until:
                state.banned_until = None
                return False
            return True

    def exists(self, webhook_id: int) -> bool:
        return webhook_id in self._hooks

    def record_attempt(
        self,
        webhook_id: int,
        attempt: int,
        ok: bool,
        status: int | None,
        *,
        ban_policy: bool,
        clock: float,
        ban_s: float,
    ) -> None:
        with self._lock:
            hook = self._hooks.get(webhook_id)
            state = self._state.get(webhook_id)
            if hook is None or state is None:
                return
            hook["last_delivery_time"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
            hook["last_http_status"] = status
            if attempt == 1 and not ok and ban_policy:
                state.failed_first_attempts += 1
                if state.failed_first_attempts >= BAN_AFTER_FAILED_FIRST_ATTEMPTS:
                    state.banned_until = clock + ban_s
                    state.failed_first_attempts = 0

    def record_delivery(
        self, webhook_id: int, ok: bool, *, ban_policy: bool, clock: float, delete_after_s: float
    ) -> bool:
        """Record a finished delivery (all its attempts); True when the webhook got deleted."""
        with self._lock:
            state = self._state.get(webhook_id)
            if state is None:
                return False
            if ok:
                state.failing_since = None
                return False
            if state.failing_since is None:
                state.failing_since = clock
                return False
            if ban_policy and clock - state.failing_since >= delete_after_s:
                self._hooks.pop(webhook_id, None)
                self._state.pop(webhook_id, None)
                return True
            return False


def _diff(old: Record, new: Record) -> Record:
    """v2 `previous` for a change: only the fields that changed, with their old values."""
    changed: Record = {}
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "custom_fields" and isinstance(before, dict) and isinstance(after, dict):
            changed[key] = {
                k: before.get(k)
                for k in before.keys() | after.keys()
                if before.get(k) != after.get(k)
            }
        else:
            changed[key] = before
    return changed


class WebhookDispatcher(LoopThread):
    """Turns model events into deliveries, and delivers them on a background thread."""

    thread_name = "pipedrive-webhooks"

    def __init__(
        self,
        model: PipedriveModel,
        registry: WebhookRegistry,
        *,
        time_scale: float = 1.0,
        ban_policy: bool = False,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("webhook_time_scale must be positive")
        super().__init__()
        self.model = model
        self.registry = registry
        self.time_scale = time_scale
        self.ban_policy = ban_policy
        self.log = DeliveryLog("webhook deliveries")
        self._tasks: set[asyncio.Task[None]] = set()
        # event id → (its job, with `body_of` set; the highest attempt number sent so far)
        self._sent: OrderedDict[str, tuple[Job, int]] = OrderedDict()
        self._sent_lock = threading.Lock()
        host = f"{model.company.get('domain', 'sandbox')}.pipedrive.com"
        self._host = host

    # -- settings -----------------------------------------------------------------------------
    def settings(self) -> Record:
        return {
            "time_scale": self.time_scale,
            "ban_policy": self.ban_policy,
            "timeout_s": self.timeout_s,
            "retry_delays_s": self.retry_delays_s,
        }

    def configure(self, time_scale: float | None = None, ban_policy: bool | None = None) -> None:
        if time_scale is not None:
            if time_scale <= 0:
                raise ValueError("time_scale must be positive")
            self.time_scale = time_scale
        if ban_policy is not None:
            self.ban_policy = ban_policy

    @property
    def timeout_s(self) -> float:
        return max(TIMEOUT_S * self.time_scale, MIN_TIMEOUT_S)

    @property
    def retry_delays_s(self) -> list[float]:
        return [d * self.time_scale for d in RETRY_DELAYS_S]

    # -- events (called on the API's thread) --------------------------------------------------
    def on_event(
        self, entity: str, action: str, current: Record | None, previous: Record | None
    ) -> None:
        if not len(self.registry):
            return
        hooks = self.registry.matching(entity, action)
        if not hooks:
            return
        when = datetime.now(UTC)
        when_ns = time.time_ns()
        correlation_id = str(uuid.uuid4())
        clock = time.monotonic()
        for hook in hooks:
            job = Job(
                hook,
                entity,
                action,
                current,
                previous,
                str(uuid.uuid4()),
                correlation_id,
                when,
                when_ns,
            )
            if self.ban_policy and self.registry.is_banned(hook["id"], clock):
                self.log.add(
                    self._entry(job, 0, None, "webhook banned: event lost", 0.0, dropped=True)
                )
                continue
            self._submit(job)

    def _submit(self, job: Job) -> None:
        loop = self._ensure_started()
        if loop is None:
            return
        loop.call_soon_threadsafe(self._start_job, job)

    def _start_job(self, job: Job) -> None:
        self._start_task(self._deliver(job))

    def _start_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- redelivery (any thread) ----------------------------------------------------------------
    def _remember(self, job: Job, attempt: int) -> None:
        with self._sent_lock:
            known = self._sent.get(job.event_id)
            self._sent[job.event_id] = (job, max(attempt, known[1] if known else 0))
            self._sent.move_to_end(job.event_id)
            while len(self._sent) > REDELIVERABLE_EVENTS:
                self._sent.popitem(last=False)

    def redeliver(self, event_id: str) -> int | None:
        """Send the event `event_id` once more to its webhook, as Pipedrive does when it did
        not get the receiver's answer: the same body with the next attempt number (one
        attempt, no retries, logged like the others). Returns that attempt number; None when
        the event is unknown (not delivered yet, or older than the last
        `REDELIVERABLE_EVENTS`) or the dispatcher is closed."""
        with self._sent_lock:
            known = self._sent.get(event_id)
            if known is None:
                return None
            job, last = known
            attempt = last + 1
            self._sent[event_id] = (job, attempt)
        loop = self._ensure_started()
        if loop is None:
            return None
        loop.call_soon_threadsafe(self._start_task, self._attempt_once(job, attempt))
        return attempt

    async def _attempt_once(self, job: Job, attempt: int) -> None:
        assert job.body_of is not None
        ok, status = await self._post(job, job.body_of, attempt)
        self.registry.record_attempt(
            job.webhook["id"],
            attempt,
            ok,
            status,
            ban_policy=self.ban_policy,
            clock=time.monotonic(),
            ban_s=BAN_S * self.time_scale,
        )

    # -- payloads -----------------------------------------------------------------------------
    def _v2_body(self, job: Job) -> Record:
        model = self.model
        if job.entity == "note":
            current = views.note_webhook_v2(job.current) if job.current else None
            previous = views.note_webhook_v2(job.previous) if job.previous else None
        else:
            current, previous = job.current, job.previous
        if job.action == "change" and current is not None and previous is not None:
            previous = _diff(previous, current)
        record = job.current or job.previous or {}
        users = [str(u["id"]) for u in model.users.values() if u.get("active_flag", True)]
        meta = {
            "action": job.action,
            "entity": job.entity,
            "entity_id": str(record.get("id")),
            "id": job.event_id,
            "correlation_id": job.correlation_id,
            "company_id": str(model.company.get("id")),
            "user_id": str(model.me_user_id),
            "webhook_id": str(job.webhook["id"]),
            "webhook_owner_id": str(job.webhook["owner_id"]),
            "version": "2.0",
            "type": "general",
            "is_bulk_edit": False,
            "timestamp": job.when.strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{job.when.microsecond // 1000:03d}Z",
            "change_source": "api",
            "attempt": 1,
            "host": self._host,
            "permitted_user_ids": users,
        }
        return {
            "meta": meta,
            "data": current if job.action != "delete" else None,
            "previous": previous if job.action != "create" else None,
        }

    def _v1_view(self, entity: str, record: Record | None) -> Record | None:
        if record is None:
            return None
        if entity == "deal":
            return views.deal_webhook_v1(self.model, record)
        if entity == "person":
            return views.person_webhook_v1(self.model, record)
        if entity == "organization":
            return views.organization_webhook_v1(self.model, record)
        return views.note_v1(self.model, record)

    def _v1_body(self, job: Job) -> Record:
        model = self.model
        record = job.current or job.previous or {}
        action = V1_ACTION_OF[job.action]
        users = [u["id"] for u in model.users.values() if u.get("active_flag", True)]
        matches: dict[str, list[Any]] = (
            {"current": []} if job.current is not None else {"previous": []}
        )
        meta = {
            "v": 1,
            "action": action,
            "object": job.entity,
            "id": record.get("id"),
            "company_id": model.company.get("id"),
            "user_id": model.me_user_id,
            "host": self._host,
            "timestamp": job.when_ns // 1_000_000_000,
            "timestamp_micro": job.when_ns // 1_000,
            "prepublish_timestamp": job.when_ns // 1_000_000,
            "permitted_user_ids": users,
            "trans_pending": False,
            "is_bulk_update": False,
            "pipedrive_service_name": False,
            "change_source": "api",
            "matches_filters": matches,
            "webhook_id": str(job.webhook["id"]),
        }
        return {
            "v": 1,
            "matches_filters": matches,
            "meta": meta,
            "current": self._v1_view(job.entity, job.current),
            "previous": self._v1_view(job.entity, job.previous),
            "retry": 0,
            "event": f"{action}.{job.entity}",
        }

    def _body_factory(self, job: Job) -> Callable[[int], bytes]:
        if job.webhook["version"] == "1.0":
            body = self._v1_body(job)

            def v1(attempt: int) -> bytes:
                body["retry"] = attempt - 1
                return orjson.dumps(body)

            return v1
        body = self._v2_body(job)

        def v2(attempt: int) -> bytes:
            body["meta"]["attempt"] = attempt
            return orjson.dumps(body)

        return v2

    # -- delivery (on the delivery thread) ----------------------------------------------------
    def _entry(
        self,
        job: Job,
        attempt: int,
        status: int | None,
        error: str | None,
        duration_s: float,
        *,
        dropped: bool = False,
    ) -> Record:
        record = job.current or job.previous or {}
        return {
            "webhook_id": job.webhook["id"],
            "event_id": job.event_id,
            "attempt": attempt,
            "url": job.webhook["subscription_url"],
            "status": status,
            "error": error,
            "ok": status is not None and 200 <= status < 300,
            "duration_ms": round(duration_s * 1000, 3),
            "time": iso(now()),
            "version": job.webhook["version"],
            "action": job.action,
            "object": job.entity,
            "entity_id": record.get("id"),
            "dropped": dropped,
        }

    async def _post(
        self, job: Job, body_of: Callable[[int], bytes], attempt: int
    ) -> tuple[bool, int | None]:
        """One attempt, logged: (succeeded, HTTP status or None)."""
        hook = job.webhook
        auth = httpx.Auth()  # no authentication (what httpx makes of `auth=None`)
        if hook.get("http_auth_user") is not None:
            auth = httpx.BasicAuth(hook["http_auth_user"], hook.get("http_auth_password") or "")
        headers = {"content-type": "application/json", "user-agent": "Pipedrive-Webhook"}
        started = time.monotonic()
        status, error = await self._send_attempt(
            hook["subscription_url"], body_of(attempt), headers, self.timeout_s, auth
        )
        duration = time.monotonic() - started
        self.log.add(self._entry(job, attempt, status, error, duration))
        return error is None, status

    async def _deliver(self, job: Job) -> None:
        hook = job.webhook
        try:
            body_of = self._body_factory(job)
        except Exception as exc:  # a payload bug must show in the log, not vanish in a task
            self.log.add(self._entry(job, 1, None, f"payload error: {exc!r}", 0.0))
            return
        job.body_of = body_of
        ok = False
        for attempt in range(1, len(RETRY_DELAYS_S) + 2):
            if attempt > 1:
                await asyncio.sleep(RETRY_DELAYS_S[attempt - 2] * self.time_scale)
                if not self.registry.exists(hook["id"]):
                    return  # deleted meanwhile: no more retries
            self._remember(job, attempt)
            ok, status = await self._post(job, body_of, attempt)
            self.registry.record_attempt(
                hook["id"],
                attempt,
                ok,
                status,
                ban_policy=self.ban_policy,
                clock=time.monotonic(),
                ban_s=BAN_S * self.time_scale,
            )
            if ok:
                break
        self.registry.record_delivery(
            hook["id"],
            ok,
            ban_policy=self.ban_policy,
            clock=time.monotonic(),
            delete_after_s=DELETE_AFTER_S * self.time_scale,
        )

    # -- shutdown -----------------------------------------------------------------------------
    def close(self, timeout: float = 5.0) -> None:
        """Stop the delivery thread (pending retries are abandoned)."""
        loop, thread = self._closing()
        if loop is None or thread is None:
            return

        async def _cancel_all() -> None:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks, return_exceptions=True)

        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
