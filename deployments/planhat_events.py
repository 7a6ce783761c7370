"""Planhat automation webhooks → inbox keys and Prefect events (no I/O).

    delivery = parse_planhat_delivery(body)        # ValueError with the reason for a bad body
    delivery.inbox_key                             # the inbox's dedupe key, the same every retry
    event = planhat_event(delivery, starts_run=True)

Planhat has no "changed since" filter; its Automations can call a webhook when a record is
created or updated. The user sets up one automation per model the sync sends (README, "Planhat
automations") whose webhook step POSTs to the receiver's `/webhooks/planhat` with the shared
secret in a header and this JSON body (Planhat's template placeholders fill it):

    {"model": "companies", "event": "updated", "_id": "<the record's _id>",
     "sourceId": "<its sourceId>", "companyId": "<company-owned models>",
     "updatedAt": "<its updatedAt>", "id": "<a unique delivery id, optional>"}

`model` (or `object`, singular) must be one of the four the sync knows; `_id` a Planhat id;
`sourceId` a Pipedrive id or empty (a record created in Planhat). The inbox key is
`planhat:<id>` when the body has a delivery id, else `planhat:<model>:<_id>:<updatedAt>`: a
retry of one delivery is stored once. Only ids and small facts are kept, never the record: the
planhat-sync run reads the record fresh (`tasks.scan`).

The event: `planhat.<object>.<event>`, resource `planhat.<object>.<_id>` labelled
`pdsync.starts-run` (as deal notifications: one run takes every waiting Planhat notification,
so only the notification that asked for a run says yes), id `uuid5` of the inbox key. A body
that breaks a rule is refused with the field named, never its value.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deployments.events import STARTS_RUN_LABEL, STARTS_RUN_NO, STARTS_RUN_YES, event_id
from store.state import PLANHAT_KEY_PREFIX

#: where the receiver takes Planhat's automation webhooks
PLANHAT_PATH = "/webhooks/planhat"
#: the inbox keys of Planhat notifications start with this (the store claims them by it)
KEY_PREFIX = PLANHAT_KEY_PREFIX
#: Planhat's API models the sync sends to, and their singular
MODELS = {
    "companies": "company",
    "endusers": "enduser",
    "licenses": "license",
    "conversations": "conversation",
}
_BY_OBJECT = {singular: model for model, singular in MODELS.items()}
EVENTS = frozenset({"created", "updated"})
#: the action of the event that asks again for a run nobody started
WAITING_ACTION = "waiting"

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,99}")
_PLANHAT_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_SOURCE_ID = re.compile(r"[1-9][0-9]{0,9}")


def _refuse(reason: str) -> ValueError:
    return ValueError(f"not a Planhat automation webhook body: {reason}")


@dataclass(frozen=True, slots=True)
class PlanhatDelivery:
    """What the receiver keeps of one Planhat automation webhook: ids, never the record."""

    model: str  # companies, endusers, licenses, conversations
    event: str  # created, updated
    planhat_id: str
    source_id: int | None  # the Pipedrive id; None: created in Planhat
    company_id: str | None
    inbox_key: str

    @property
    def object(self) -> str:
        return MODELS[self.model]

    def describe(self) -> str:
        """`company 66a1… updated (Planhat)`: for log lines."""
        return f"{self.object} {self.planhat_id} {self.event} (Planhat)"


def parse_planhat_delivery(body: Any) -> PlanhatDelivery:
    """The facts of a Planhat automation webhook body (see the module docstring). Raises
    `ValueError` naming the field (never its value) for anything else."""
    if not isinstance(body, Mapping):
        raise ValueError(f"the body must be a JSON object, got {type(body).__name__}")
    model = body.get("model")
    if model is None and isinstance(body.get("object"), str):
        model = _BY_OBJECT.get(body["object"])
        if model is None:
            raise _refuse(f"object must be one of {', '.join(sorted(_BY_OBJECT))}")
    if model not in MODELS:
        raise _refuse(f"model must be one of {', '.join(sorted(MODELS))}")
    event = body.get("event", "updated")
    if event not in EVENTS:
        raise _refuse(f"event must be one of {', '.join(sorted(EVENTS))}")
    planhat_id = body.get("_id")
    if not isinstance(planhat_id, str) or not _PLANHAT_ID.fullmatch(planhat_id):
        raise _refuse("_id must be a Planhat id (1-64 letters and digits)")
    source = body.get("sourceId")
    source_id: int | None = None
    if isinstance(source, int) and not isinstance(source, bool) and 0 < source < 2**31:
        source_id = source
    elif isinstance(source, str) and _SOURCE_ID.fullmatch(source.strip()):
        source_id = int(source.strip())
    elif source not in (None, ""):
        # another system's id (not a Pipedrive one): a record the sync does not pair
        if not isinstance(source, str | int) or isinstance(source, bool):
            raise _refuse("sourceId must be a string, a number or null")
    company = body.get("companyId")
    if company not in (None, "") and (
        not isinstance(company, str) or not _PLANHAT_ID.fullmatch(company)
    ):
        raise _refuse("companyId must be a Planhat id or null")
    delivery_id = body.get("id")
    updated = body.get("updatedAt")
    if delivery_id not in (None, ""):
        if not isinstance(delivery_id, str) or not _TOKEN.fullmatch(delivery_id):
            raise _refuse("id (the delivery id) must be 1-100 letters, digits and . _ : + -")
        key = f"{KEY_PREFIX}{delivery_id}"
    elif isinstance(updated, str) and _TOKEN.fullmatch(updated):
        key = f"{KEY_PREFIX}{model}:{planhat_id}:{updated}"
    else:
        raise _refuse("neither a delivery id (id) nor the record's updatedAt to key it on")
    return PlanhatDelivery(
        model=str(model),
        event=str(event),
        planhat_id=planhat_id,
        source_id=source_id,
        company_id=company or None,
        inbox_key=key,
    )


def _resource(object_name: str, planhat_id: str, starts_run: bool) -> dict[str, str]:
    return {
        "prefect.resource.id": f"planhat.{object_name}.{planhat_id}",
        STARTS_RUN_LABEL: STARTS_RUN_YES if starts_run else STARTS_RUN_NO,
    }


def planhat_event(delivery: PlanhatDelivery, *, starts_run: bool = False) -> dict[str, Any]:
    """The Prefect event of a Planhat notification (see the module docstring)."""
    key = delivery.inbox_key
    return {
        "id": event_id(key),
        "occurred": datetime.now(UTC).isoformat(),
        "event": f"planhat.{delivery.object}.{delivery.event}",
        "resource": _resource(delivery.object, delivery.planhat_id, starts_run),
        "related": [],
        "payload": {
            "model": delivery.model,
            "object": delivery.object,
            "action": delivery.event,
            "planhat_id": delivery.planhat_id,
            "source_id": delivery.source_id,
            "inbox_key": key,
        },
    }


def planhat_waiting_event(inbox_key: str, delivery: PlanhatDelivery) -> dict[str, Any]:
    """The event that asks again for a planhat-sync run on behalf of a waiting notification:
    `planhat.<object>.waiting`, starts-run yes, a new random id each time."""
    event = planhat_event(delivery, starts_run=True)
    event["id"] = str(uuid.uuid4())
    event["event"] = f"planhat.{delivery.object}.{WAITING_ACTION}"
    event["payload"] = {**event["payload"], "action": WAITING_ACTION, "inbox_key": inbox_key}
    return event


def stored_planhat_event(
    dedupe_key: str, payload: Mapping[str, Any], *, starts_run: bool
) -> dict[str, Any] | None:
    """The event of a stored Planhat notification (None when its body is not one, or it is
    stored under another key than its own)."""
    try:
        delivery = parse_planhat_delivery(payload)
    except ValueError:
        return None
    if delivery.inbox_key != dedupe_key:
        return None
    return planhat_event(delivery, starts_run=starts_run)


__all__ = [
    "KEY_PREFIX",
    "MODELS",
    "PLANHAT_PATH",
    "PlanhatDelivery",
    "parse_planhat_delivery",
    "planhat_event",
    "planhat_waiting_event",
    "stored_planhat_event",
]
