"""Pipedrive webhook deliveries → Prefect events (no I/O but the one POST to Prefect's API).

    delivery = parse_delivery(body)            # ValueError with the reason for a bad body
    event = pipedrive_event(body, delivery.inbox_key)   # None for anything but a deal
    EventPoster(api_url, client).post(event)   # True once Prefect answered 2xx

* **Both webhook versions.** v2 (`meta.version` "2.0": `meta.entity`, `meta.entity_id` as a
  string, `meta.action` create/change/delete) and v1 (`meta.object`, `meta.id` as a number,
  `meta.action` added/updated/deleted/merged). Actions are named in v2's words: `added` →
  `create`, `updated` and `merged` → `change`, `deleted` → `delete`.
* **The event**: `pipedrive.<object>.<action>`, resource `pipedrive.<object>.<id>`, a small
  payload (`deal_id`, `object`, `action`, `inbox_key`, `change_source`: ids and facts, never
  the record), and an id derived from the inbox key (`uuid5(EVENT_NAMESPACE, key)`): every
  redelivery of one Pipedrive event gives the same Prefect event id, which Prefect
  de-duplicates, so a redelivery starts no second run.
* **Posting** is a plain synchronous `POST {api}/events` (a JSON list of one event; Prefect
  answers 204), bounded by a short timeout so that Pipedrive, which gives up after 10 s, is
  answered in time even when Prefect is down.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from store.records import inbox_key as _inbox_key

log = logging.getLogger(__name__)

#: The namespace of the Prefect event ids (uuid5 of the inbox key). Never change it: the ids of
#: redeliveries must stay equal to the ids already posted.
EVENT_NAMESPACE = uuid.UUID("0c6f1d7e-5b0a-5d7e-9a52-7a1f3c2e8d41")
#: Seconds allowed for one POST to Prefect (connect, write, read each).
POST_TIMEOUT_S = 2.0

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


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the receiver needs of one delivery: never the record itself."""

    version: int  # 1 or 2
    object: str  # "deal", "person", "organization", "note", "lead"...
    action: str  # "create", "change", "delete" (others kept as sent)
    entity_id: int | str | None  # the record's id (ints as ints; v2 sends strings)
    change_source: str | None
    inbox_key: str

    @property
    def deal_id(self) -> int | None:
        return self.entity_id if self.object == "deal" and isinstance(self.entity_id, int) else None

    def describe(self) -> str:
        """`deal 42 change (v2)`: for log lines."""
        what = self.object if self.entity_id is None else f"{self.object} {self.entity_id}"
        return f"{what} {self.action} (v{self.version})"


def _as_id(value: Any) -> int | str | None:
    """Pipedrive ids as ints (v2 meta sends "42"); other non-empty ids (lead UUIDs) as strings."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) > 0:
            return int(text)
        return text[:100] or None
    return None


def _record_id(body: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        record = body.get(name)
        if isinstance(record, list):  # v1 user events carry arrays
            record = record[0] if record else None
        if isinstance(record, Mapping) and record.get("id") is not None:
            return record["id"]
    return None


def parse_delivery(body: Any) -> Delivery:
    """The facts of a Pipedrive webhook body (v2.0 or v1.0).

    Raises `ValueError` with the reason for anything else: no `meta` object, no event id,
    no object or action, a deal without a deal id."""
    if not isinstance(body, Mapping):
        raise ValueError(f"the body must be a JSON object, got {type(body).__name__}")
    key = _inbox_key(body)  # ValueError: neither v1 nor v2
    meta = body["meta"]
    v2 = key.startswith("pipedrive:v2:")
    if v2:
        obj = meta.get("entity") or meta.get("object")
        raw_id = meta.get("entity_id")
        if raw_id is None:
            raw_id = _record_id(body, "data", "previous")
    else:
        obj = meta.get("object")
        raw_id = meta.get("id")
        if raw_id is None:
            raw_id = _record_id(body, "current", "previous")
    if not isinstance(obj, str) or not obj.strip():
        field = "meta.entity" if v2 else "meta.object"
        raise ValueError(f"not a Pipedrive webhook payload: no object ({field})")
    action = meta.get("action")
    if not isinstance(action, str) or not action.strip():
        raise ValueError("not a Pipedrive webhook payload: no meta.action")
    obj = obj.strip().lower()[:32]
    action = action.strip().lower()[:32]
    delivery = Delivery(
        version=2 if v2 else 1,
        object=obj,
        action=ACTIONS.get(action, action),
        entity_id=_as_id(raw_id),
        change_source=str(meta["change_source"])[:32] if meta.get("change_source") else None,
        inbox_key=key,
    )
    if delivery.object == "deal" and delivery.deal_id is None:
        raise ValueError(
            f"a deal notification without a deal id (found {raw_id!r} in "
            f"{'meta.entity_id' if v2 else 'meta.id'})"
        )
    return delivery


def event_id(inbox_key: str) -> str:
    """The Prefect event id of the delivery stored under `inbox_key` (the same every time)."""
    return str(uuid.uuid5(EVENT_NAMESPACE, inbox_key))


def pipedrive_event(payload: Mapping[str, Any], inbox_key: str) -> dict[str, Any] | None:
    """The Prefect event (the JSON `POST /api/events` takes, one item of its list) for the
    delivery `payload` stored under `inbox_key`; None for objects other than deals (the
    incremental sync covers those). Raises `ValueError` for a body that is not a delivery."""
    delivery = parse_delivery(payload)
    return event_for(delivery, inbox_key)


def event_for(delivery: Delivery, inbox_key: str | None = None) -> dict[str, Any] | None:
    if delivery.object not in EVENT_OBJECTS or delivery.deal_id is None:
        return None
    key = inbox_key or delivery.inbox_key
    return {
        "id": event_id(key),
        "occurred": datetime.now(UTC).isoformat(),
        "event": f"pipedrive.{delivery.object}.{delivery.action}",
        "resource": {"prefect.resource.id": f"pipedrive.{delivery.object}.{delivery.deal_id}"},
        "related": [],
        "payload": {
            "deal_id": delivery.deal_id,
            "object": delivery.object,
            "action": delivery.action,
            "inbox_key": key,
            "change_source": delivery.change_source,
        },
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


class EventPoster:
    """Posts events to one Prefect API. `post`/`send` never raise: `post` returns True once
    Prefect answered 2xx, False (with one WARNING line naming the reason) otherwise; `send`
    returns None or that reason. Thread-safe (one pooled `httpx.Client`)."""

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
        if self.events_url is None:
            error = "no Prefect API URL (PREFECT_API_URL is not set)"
        else:
            try:
                response = self._client.post(
                    self.events_url,
                    json=[dict(event)],
                    headers=self._headers,
                    timeout=POST_TIMEOUT_S,
                )
            except httpx.TimeoutException:
                error = f"Prefect did not answer within {POST_TIMEOUT_S:g} s"
            except httpx.HTTPError as exc:
                error = f"Prefect unreachable: {type(exc).__name__}"
            else:
                if 200 <= response.status_code < 300:
                    self.last_error = None
                    return None
                error = f"Prefect answered HTTP {response.status_code}"
        self.last_error = error
        log.warning(
            "event %s (%s) not posted to %s: %s",
            event.get("event"),
            event.get("id"),
            self.shown_url,
            error,
        )
        return error

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def __enter__(self) -> EventPoster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
