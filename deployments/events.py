"""Pipedrive webhook deliveries → Prefect events (no I/O but the POSTs to Prefect's API).

    delivery = parse_delivery(body)            # ValueError with the reason for a bad body
    delivery.inbox_key                         # the inbox's dedupe key, the same every retry
    event = event_for(delivery, starts_run=True)  # None for anything but a deal
    EventPoster(api_url).send_batch([event, ...])  # None once Prefect took them all

`parse_delivery` is the one parser of webhook bodies: the receiver checks and stores with what
it returns, and its event poster re-builds events from stored bodies with it.

* **Both webhook versions.** v2 (`meta.version` "2.0": `meta.entity`, `meta.entity_id` as a
  string, `meta.action` create/change/delete) and v1 (`meta.object`, `meta.id` as a number,
  `meta.action` added/updated/deleted/merged). Actions are named in v2's words: `added` →
  `create`, `updated` and `merged` → `change`, `deleted` → `delete`.
* **The inbox key** (one format, the dedupe key of the inbox and the source of the event id):
  v2 `pipedrive:v2:<meta.id>` (Pipedrive's event id; redeliveries differ only in
  `meta.attempt`); v1, which has no event id,
  `pipedrive:v1:<meta.object>:<meta.id>:<meta.action>:<meta.timestamp_micro>` (or
  `meta.timestamp` when there is no `timestamp_micro`; redeliveries differ only in `retry`).
  Never change it: stored items and posted event ids depend on it.
* **The event**: `pipedrive.<object>.<action>`, resource `pipedrive.<object>.<id>` with the
  label `STARTS_RUN_LABEL` (`pdsync.starts-run`), a small payload (`deal_id`, `object`,
  `action`, `inbox_key`, `change_source`, `own_write`: ids and facts, never the record), and
  an id derived
  from the inbox key (`uuid5(EVENT_NAMESPACE, key)`): every redelivery of one Pipedrive event
  gives the same Prefect event id, which Prefect de-duplicates, so a redelivery starts no
  second run.
* **Which events start a run.** A deal-sync run claims every waiting deal notification, so
  one run per burst is enough: the deployment trigger matches `pipedrive.deal.*` events whose
  resource carries `pdsync.starts-run: "yes"` (`STARTS_RUN_YES`). The receiver sets it on the
  event of the notification that asked for a run (`StateStore.inbox_request_run`, at most one
  per `RUN_REQUEST_FRESH` while a run is on its way), `"no"` (`STARTS_RUN_NO`) on the others:
  every notification still shows in Prefect's event feed. When a run that was asked for never
  came (cancelled, crashed before it claimed), the drain asks again with `waiting_event`:
  `pipedrive.deal.waiting`, starts-run yes, a new random id each time.
* **Only known names and Pipedrive ids get through.** `meta.action` and `meta.entity` (v2),
  `meta.action`, `meta.object` and `event` (v1) must be names Pipedrive sends (reference §4.1,
  §4.3, §4.4); record ids must be Pipedrive ids (whole numbers from 1 to 2**31-1; a lead's id is
  a UUID); the event id (v2 `meta.id`) and v1's `timestamp_micro` must be plain tokens. A body
  that breaks any of these is refused with the field named and never its value, so no text of
  a body reaches a log line, an inbox key or a Prefect event name.
* **Posting** is a plain synchronous `POST {api}/events` of a JSON list (Prefect answers 204):
  `send_batch` posts many events in one request (bounded by `BATCH_POST_TIMEOUT_S`), `send`
  one (bounded by `POST_TIMEOUT_S`). Neither raises: they return why Prefect did not take the
  events (`PostFailure.rejected` tells a request Prefect refused from one that may succeed
  later).
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

log = logging.getLogger(__name__)

#: The namespace of the Prefect event ids (uuid5 of the inbox key). Never change it: the ids of
#: redeliveries must stay equal to the ids already posted.
EVENT_NAMESPACE = uuid.UUID("0c6f1d7e-5b0a-5d7e-9a52-7a1f3c2e8d41")
#: Seconds allowed for one POST of one event to Prefect (connect, write, read each).
POST_TIMEOUT_S = 2.0
#: Seconds allowed for one POST of a batch of events (off the request path: more room).
BATCH_POST_TIMEOUT_S = 10.0

#: The resource label that tells the deal-sync trigger whether an event starts a run.
STARTS_RUN_LABEL = "pdsync.starts-run"
#: Its value on the events that start a run (the trigger matches this one) ...
STARTS_RUN_YES = "yes"
#: ... and on the others (shown in the event feed, start nothing).
STARTS_RUN_NO = "no"
#: A waiting deal notification that asked for a run less than this long ago needs no other
#: run: the one it asked for takes every waiting notification (`StateStore.inbox_request_run`,
#: `StateStore.inbox_unasked`).
RUN_REQUEST_FRESH = timedelta(seconds=60)
#: The action of the event that asks again for a run nobody started (`waiting_event`).
WAITING_ACTION = "waiting"
#: Prefect answers these when it refuses the request itself (an invalid event, a body too
#: large): posting the same request again cannot succeed. (Not 400: proxies answer it too.)
REJECTED_STATUSES = frozenset({413, 422})

#: v1 actions (and v2's own) in v2 vocabulary.
ACTIONS = {
    "create": "create",
    "added": "create",
    "change": "change",
    "updated": "change",
    "merged": "change",
    "delete": "delete",
    "deleted": "delete",
}
#: the objects that get a Prefect event (the others are stored for the incremental sync).
EVENT_OBJECTS = frozenset({"deal"})

#: v2 `meta.action` values (reference §4.4; `*` is a subscription wildcard, never sent).
V2_ACTIONS = frozenset({"create", "change", "delete"})
#: v1 `meta.action` values and the first part of v1 `event` (reference §4.3).
V1_ACTIONS = frozenset({"added", "updated", "deleted", "merged"})
#: v2 `meta.entity` values: the spec's enum plus the objects the 2026 webhooks-v2 guide adds
#: (reference §4.1).
V2_ENTITIES = frozenset(
    {"activity", "deal", "lead", "note", "organization", "person", "pipeline", "product",
     "stage", "user", "deal_installment", "deal_product", "board", "phase", "project", "task"}
)  # fmt: skip
#: v1 `meta.object` values and the second part of v1 `event`: v1 adds `activityType` and has
#: no `lead` (reference §4.1).
V1_OBJECTS = frozenset(
    {"activity", "activityType", "deal", "note", "organization", "person", "pipeline",
     "product", "stage", "user"}
)  # fmt: skip
#: objects whose ids are UUIDs, not numbers (a lead's `id`, reference fixtures/).
UUID_ID_OBJECTS = frozenset({"lead"})
#: Pipedrive ids are positive 32-bit integers.
MAX_PIPEDRIVE_ID = 2**31 - 1
#: ids of the user, company and webhook in `meta` (ids too, checked like record ids).
_META_IDS = ("company_id", "user_id", "webhook_id", "webhook_owner_id")
_META_OBJECT_IDS = ("merged_to_id", "merged_from_id")

_ID_TEXT = re.compile(r"[1-9][0-9]{0,9}")  # ASCII digits only ("٤٢".isdigit() is True)
_UUID_TEXT = re.compile(r"[0-9A-Fa-f]{1,32}(?:-[0-9A-Fa-f]{1,32}){0,7}")
_EVENT_ID_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_CHANGE_SOURCE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ID_RULE = f"a Pipedrive id: a whole number from 1 to {MAX_PIPEDRIVE_ID}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the receiver needs of one delivery: never the record itself."""

    version: int  # 1 or 2
    object: str  # "deal", "person", "organization", "note", "lead"... (a known name)
    action: str  # "create", "change", "delete"
    entity_id: int | str | None  # the record's id (an int; a UUID string for a lead)
    change_source: str | None
    inbox_key: str  # the inbox's dedupe key (see the module docstring); the event id's source
    #: an API change made by the user who owns the webhook (the token the sync connects with):
    #: the sync's own write, or a script using the same token (`own_write`)
    by_webhook_owner: bool = False

    @property
    def own_write(self) -> bool:
        """Recognised as the sync's own write: `change_source: api` by the webhook's owner.
        The run still compares values (a script with the same token is not ignored)."""
        return self.change_source == "api" and self.by_webhook_owner

    @property
    def deal_id(self) -> int | None:
        return self.entity_id if self.object == "deal" and isinstance(self.entity_id, int) else None

    def describe(self) -> str:
        """`deal 42 change (v2)`: for log lines."""
        what = self.object if self.entity_id is None else f"{self.object} {self.entity_id}"
        return f"{what} {self.action} (v{self.version})"


def pipedrive_id(value: Any) -> int | None:
    """`value` as a Pipedrive id (an int, or a string of ASCII digits as v2 `meta` sends it)
    from 1 to 2**31-1; None for anything else (bools, floats, signs, spaces, 2**63, a
    4,000-digit number...). Never raises: digit strings are length-checked before `int()`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _ID_TEXT.fullmatch(value):
        number = int(value)
    else:
        return None
    return number if 1 <= number <= MAX_PIPEDRIVE_ID else None


def _object_id(obj: str, value: Any) -> int | str | None:
    """The id of a record of `obj` (a UUID string for leads, else a Pipedrive id) or None."""
    if obj in UUID_ID_OBJECTS:
        if isinstance(value, str) and len(value) <= 64 and _UUID_TEXT.fullmatch(value):
            return value
        return None
    return pipedrive_id(value)


def _rule_for(obj: str) -> str:
    return "a lead id (a UUID)" if obj in UUID_ID_OBJECTS else _ID_RULE


def _records(body: Mapping[str, Any], *names: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(field, record) of the records a body carries under `names` (v1 user events carry
    arrays of records)."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for name in names:
        record = body.get(name)
        if isinstance(record, list):
            found.extend(
                (f"{name} #{i + 1}", item)
                for i, item in enumerate(record)
                if isinstance(item, Mapping)
            )
        elif isinstance(record, Mapping):
            found.append((name, record))
    return found


def _refuse(reason: str) -> ValueError:
    return ValueError(f"not a Pipedrive webhook payload: {reason}")


def _known(
    meta: Mapping[str, Any], field: str, known: frozenset[str], prefix: str = "meta."
) -> str:
    value = meta.get(field)
    if not isinstance(value, str) or not value:
        raise _refuse(f"no {prefix}{field}")
    if value not in known:
        raise _refuse(f"{prefix}{field} is not one of {', '.join(sorted(known))}")
    return value


def _check_ids(
    meta: Mapping[str, Any], obj: str, records: list[tuple[str, Mapping[str, Any]]]
) -> None:
    """Every id a delivery carries must be a Pipedrive id (the field is named, not the value)."""
    for field in _META_IDS:
        value = meta.get(field)
        if value is not None and pipedrive_id(value) is None:
            raise _refuse(f"meta.{field} must be {_ID_RULE}")
    users = meta.get("permitted_user_ids")
    if users is not None:
        if not isinstance(users, list) or any(pipedrive_id(u) is None for u in users):
            raise _refuse(f"meta.permitted_user_ids must be a list of Pipedrive ids ({_ID_RULE})")
    for field in _META_OBJECT_IDS:
        value = meta.get(field)
        if value is not None and _object_id(obj, value) is None:
            raise _refuse(f"meta.{field} must be {_rule_for(obj)}")
    for name, record in records:
        value = record.get("id")
        if value is not None and _object_id(obj, value) is None:
            raise _refuse(f"{name}.id must be {_rule_for(obj)}")


def parse_delivery(body: Any) -> Delivery:
    """The facts of a Pipedrive webhook body (v2.0 or v1.0).

    Raises `ValueError` with the reason for anything else: no `meta` object, no event id, an
    object or action Pipedrive does not send, an id that is not a Pipedrive id, a deal without
    a deal id. The reason names the field, never its value (no text of the body is repeated)."""
    if not isinstance(body, Mapping):
        raise ValueError(f"the body must be a JSON object, got {type(body).__name__}")
    meta = body.get("meta")
    if not isinstance(meta, Mapping):
        raise _refuse("no `meta` object")
    v2 = str(meta.get("version", "")).startswith("2")
    key: str | None = None  # the inbox key (v1: once the record id is checked)
    if not v2 and meta.get("v") != 1 and body.get("v") != 1:
        raise _refuse("no event id (meta.id) nor v1 meta fields")
    if v2:
        event = meta.get("id")
        if not isinstance(event, str) or not event:
            raise _refuse("no event id (meta.id)")
        if not _EVENT_ID_TEXT.fullmatch(event):
            raise _refuse(
                "meta.id (the event id) must be 1-100 letters, digits and . _ : - (a UUID)"
            )
        action = _known(meta, "action", V2_ACTIONS)
        field = "meta.entity" if "entity" in meta or "object" not in meta else "meta.object"
        obj = _known(meta, field.removeprefix("meta."), V2_ENTITIES)
        id_field, raw_id = "meta.entity_id", meta.get("entity_id")
        records = _records(body, "data", "previous")
        key = f"pipedrive:v2:{event}"
    else:
        action = _known(meta, "action", V1_ACTIONS)
        obj = _known(meta, "object", V1_OBJECTS)
        name = body.get("event")
        if name is not None:
            first, dot, second = name.partition(".") if isinstance(name, str) else ("", "", "")
            if not (dot and first in V1_ACTIONS and second in V1_OBJECTS):
                raise _refuse(
                    "event must be '<action>.<object>' with an action among "
                    f"{', '.join(sorted(V1_ACTIONS))} and a known object (like updated.deal)"
                )
        stamp_field = "timestamp_micro" if "timestamp_micro" in meta else "timestamp"
        stamp = meta.get(stamp_field)
        if isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 < stamp < 2**63:
            raise _refuse(f"meta.{stamp_field} must be a positive whole number (epoch)")
        id_field, raw_id = "meta.id", meta.get("id")
        if raw_id is None or raw_id == "":
            raise _refuse("no meta.id (a v1 event is keyed on its record id)")
        records = _records(body, "current", "previous")
    _check_ids(meta, obj, records)
    if raw_id is None:
        raw_id = next((r["id"] for _, r in records if r.get("id") is not None), None)
    entity_id = _object_id(obj, raw_id) if raw_id is not None else None
    if raw_id is not None and entity_id is None:
        raise _refuse(f"{id_field} must be {_rule_for(obj)}")
    if obj == "deal" and entity_id is None:
        raise _refuse(f"a deal notification without a deal id ({id_field})")
    if key is None:  # v1: the checked values, as Pipedrive sent them
        key = f"pipedrive:v1:{obj}:{entity_id}:{meta['action']}:{stamp}"
    source = meta.get("change_source")
    user, owner = pipedrive_id(meta.get("user_id")), pipedrive_id(meta.get("webhook_owner_id"))
    delivery = Delivery(
        version=2 if v2 else 1,
        object=obj,
        action=ACTIONS[action],
        entity_id=entity_id,
        change_source=source
        if isinstance(source, str) and _CHANGE_SOURCE.fullmatch(source)
        else None,
        inbox_key=key,
        by_webhook_owner=user is not None and user == owner,
    )
    return delivery


def event_id(inbox_key: str) -> str:
    """The Prefect event id of the delivery stored under `inbox_key` (the same every time)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, inbox_key))


def pipedrive_event(
    payload: Mapping[str, Any], *, starts_run: bool = False
) -> dict[str, Any] | None:
    """The Prefect event of the delivery `payload` (`event_for(parse_delivery(payload))`).
    Raises `ValueError` for a body that is not a delivery."""
    return event_for(parse_delivery(payload), starts_run=starts_run)


def event_for(delivery: Delivery, *, starts_run: bool = False) -> dict[str, Any] | None:
    """The Prefect event (the JSON `POST /api/events` takes, one item of its list) of
    `delivery`, its id and payload's `inbox_key` from `delivery.inbox_key`, its resource
    labelled `STARTS_RUN_LABEL`: `STARTS_RUN_YES` when `starts_run` (this notification asked
    for the deal-sync run), else `STARTS_RUN_NO`; None for objects other than deals (the
    incremental sync covers those)."""
    if delivery.object not in EVENT_OBJECTS or delivery.deal_id is None:
        return None
    key = delivery.inbox_key
    return {
        "id": event_id(key),
        "occurred": datetime.now(UTC).isoformat(),
        "event": f"pipedrive.{delivery.object}.{delivery.action}",
        "resource": _deal_resource(delivery.deal_id, starts_run),
        "related": [],
        "payload": {
            "deal_id": delivery.deal_id,
            "object": delivery.object,
            "action": delivery.action,
            "inbox_key": key,
            "change_source": delivery.change_source,
            "own_write": delivery.own_write,
        },
    }


def waiting_event(inbox_key: str, deal_id: int) -> dict[str, Any]:
    """The event that asks again for a deal-sync run on behalf of the waiting notification
    `inbox_key` (of deal `deal_id`): `pipedrive.deal.waiting`, starts-run yes, a new random id
    (each ask is a new event: Prefect must not de-duplicate it against an earlier one)."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": f"pipedrive.deal.{WAITING_ACTION}",
        "resource": _deal_resource(deal_id, True),
        "related": [],
        "payload": {
            "deal_id": deal_id,
            "object": "deal",
            "action": WAITING_ACTION,
            "inbox_key": inbox_key,
            "change_source": None,
        },
    }


def starts_a_run(event: Mapping[str, Any]) -> bool:
    """True when `event` carries the starts-run label the deal-sync trigger matches."""
    resource = event.get("resource")
    return isinstance(resource, Mapping) and resource.get(STARTS_RUN_LABEL) == STARTS_RUN_YES


def _deal_resource(deal_id: int, starts_run: bool) -> dict[str, str]:
    return {
        "prefect.resource.id": f"pipedrive.deal.{deal_id}",
        STARTS_RUN_LABEL: STARTS_RUN_YES if starts_run else STARTS_RUN_NO,
    }


def prefect_auth_headers() -> dict[str, str]:
    """The Authorization header Prefect's own client would send (an API key for Prefect Cloud,
    or `PREFECT_API_AUTH_STRING` for a server behind basic auth); empty when neither is set."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    auth_string = PREFECT_API_AUTH_STRING.value()
    if auth_string:
        secret = (
            auth_string.get_secret_value()
            if hasattr(auth_string, "get_secret_value")
            else auth_string
        )
        token = base64.b64encode(str(secret).encode("utf-8")).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    api_key = PREFECT_API_KEY.value()
    if api_key:
        secret = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else api_key
        return {"Authorization": f"Bearer {secret}"}
    return {}


def default_prefect_api_url() -> str | None:
    """`PREFECT_API_URL` as Prefect's settings resolve it (None when unset)."""
    from prefect.settings import PREFECT_API_URL

    value = PREFECT_API_URL.value()
    return str(value) if value else None


@dataclass(frozen=True, slots=True)
class PostFailure:
    """Why Prefect did not take a POST: `rejected` when Prefect refused the request itself
    (HTTP 413, 422: the same request would be refused again), else a failure that may pass
    (Prefect down, slow, unreachable, a 5xx, wrong credentials...)."""

    reason: str
    rejected: bool = False


class EventPoster:
    """Posts events to one Prefect API. `post`/`send`/`send_batch` never raise: `post`
    returns True once Prefect answered 2xx, False (with one WARNING line naming the reason)
    otherwise; `send` returns None or that reason; `send_batch` posts many events in one
    request and returns None or a `PostFailure` (not logged: its caller decides). Thread-safe
    (one pooled `httpx.Client`)."""

    def __init__(
        self,
        api_url: str | None,
        client: httpx.Client | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/") if api_url else None
        self._own_client = client is None
        self._client = client or httpx.Client(timeout=POST_TIMEOUT_S)
        self._headers = dict(headers) if headers is not None else prefect_auth_headers()
        self.last_error: str | None = None

    @property
    def events_url(self) -> str | None:
        return f"{self.api_url}/events" if self.api_url else None

    @property
    def shown_url(self) -> str:
        """The events URL as log lines show it (any user:password@ part hidden)."""
        if self.events_url is None:
            return "(none)"
        return str(httpx.URL(self.events_url).copy_with(userinfo=b""))

    def post(self, event: Mapping[str, Any]) -> bool:
        """True once Prefect answered 2xx."""
        return self.send(event) is None

    def send(self, event: Mapping[str, Any]) -> str | None:
        """Post `event`; None once Prefect answered 2xx, else why not (also logged)."""
        failure = self._post([dict(event)], POST_TIMEOUT_S)
        if failure is None:
            return None
        log.warning(
            "event %s (%s) not posted to %s: %s",
            event.get("event"),
            event.get("id"),
            self.shown_url,
            failure.reason,
        )
        return failure.reason

    def send_batch(self, events: Sequence[Mapping[str, Any]]) -> PostFailure | None:
        """Post `events` in one request; None once Prefect answered 2xx (it took them all),
        else why not (not logged). An empty list posts nothing."""
        if not events:
            return None
        return self._post([dict(e) for e in events], BATCH_POST_TIMEOUT_S)

    def _post(self, events: list[dict[str, Any]], timeout: float) -> PostFailure | None:
        failure: PostFailure
        if self.events_url is None:
            failure = PostFailure("no Prefect API URL (PREFECT_API_URL is not set)")
        else:
            try:
                response = self._client.post(
                    self.events_url, json=events, headers=self._headers, timeout=timeout
                )
            except httpx.TimeoutException:
                failure = PostFailure(f"Prefect did not answer within {timeout:g} s")
            except httpx.HTTPError as exc:
                failure = PostFailure(f"Prefect unreachable: {type(exc).__name__}")
            else:
                if 200 <= response.status_code < 300:
                    self.last_error = None
                    return None
                failure = PostFailure(
                    f"Prefect answered HTTP {response.status_code}",
                    rejected=response.status_code in REJECTED_STATUSES,
                )
        self.last_error = failure.reason
        return failure

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> EventPoster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
