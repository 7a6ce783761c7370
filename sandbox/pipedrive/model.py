"""The sandbox Pipedrive's data and its business rules (what a write does), transport-free.

Every create/change/delete goes through here and is announced to the listeners (the webhook
dispatcher) with the record before and after, in storage shape (v2 for deals, persons and
organizations; v1 for notes).

Its size: the Pipedrive account's data and its rules (ids, times, custom fields, soft
deletes, merges) behind one lock.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sandbox.dataset import PipedriveSeed
from sandbox.pipedrive.builtin_fields import BUILTIN_FIELDS, shape_v1
from sandbox.pipedrive.common import (
    ApiError,
    ValidationFailed,
    iso,
    now,
    parse_time,
    v1_time,
)
from sandbox.pipedrive.store import Collection
from sandbox.pipedrive.views import v1_field

Record = dict[str, Any]
Listener = Callable[[str, str, "Record | None", "Record | None"], None]
_T = TypeVar("_T")

ENTITIES = ("deal", "person", "organization")
VISIBLE_TO = (1, 3, 5, 7)
DEAL_STATUSES = ("open", "won", "lost")
NOTE_LINKS = ("deal_id", "person_id", "org_id", "lead_id", "project_id", "task_id")
PINNED_FLAGS = tuple(
    f"pinned_to_{what}_flag"
    for what in ("lead", "deal", "organization", "person", "project", "task")
)

_INT = "int"
_NUM = "number"
_STR = "string"
_BOOL = "bool"
_LIST_INT = "int[]"
_OBJ = "object"
_ANY = "any"

# Body keys each v2 write accepts (SPEC2 request bodies), with their types; `?` = nullable.
DEAL_BODY = {
    "title": _STR,
    "owner_id": _INT,
    "person_id": _INT + "?",
    "org_id": _INT + "?",
    "pipeline_id": _INT,
    "stage_id": _INT,
    "value": _NUM,
    "currency": _STR,
    "is_deleted": _BOOL,
    "is_archived": _BOOL,
    "archive_time": _STR + "?",
    "status": _STR,
    "probability": _NUM + "?",
    "lost_reason": _STR + "?",
    "visible_to": _INT,
    "close_time": _STR + "?",
    "won_time": _STR + "?",
    "lost_time": _STR + "?",
    "expected_close_date": _STR + "?",
    "label_ids": _LIST_INT,
    "custom_fields": _OBJ,
}
PERSON_BODY = {
    "name": _STR,
    "first_name": _STR + "?",
    "last_name": _STR + "?",
    "owner_id": _INT,
    "org_id": _INT + "?",
    "add_time": _STR,
    "emails": _ANY,
    "phones": _ANY,
    "visible_to": _INT,
    "label_ids": _LIST_INT,
    "postal_address": _OBJ + "?",
    "notes": _STR + "?",
    "im": _ANY,
    "birthday": _STR + "?",
    "job_title": _STR + "?",
    "marketing_status": _STR,
    "custom_fields": _OBJ,
}
ORGANIZATION_BODY = {
    "name": _STR,
    "owner_id": _INT,
    "add_time": _STR,
    "visible_to": _INT,
    "label_ids": _LIST_INT,
    "address": _OBJ + "?",
    "website": _STR + "?",
    "linkedin": _STR + "?",
    "industry": _INT + "?",
    "annual_revenue": _INT + "?",
    "employee_count": _INT + "?",
    "custom_fields": _OBJ,
}

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SCRIPT = re.compile(r"<(script|style|iframe|object|embed)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_LONE_TAG = re.compile(r"<(script|style|iframe|object|embed)\b[^>]*/?>", re.IGNORECASE)
_EVENT_ATTR = re.compile(r"\s+on[a-z]+\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+)", re.IGNORECASE)
_JS_URL = re.compile(r"(href|src)\s*=\s*([\"'])\s*javascript:[^\"']*\2", re.IGNORECASE)


def sanitize_html(content: str) -> str:
    """Pipedrive sanitises note HTML server-side: scripts, event handlers and javascript: URLs
    go; ordinary markup stays (reference §9.12)."""
    content = _SCRIPT.sub("", content)
    content = _LONE_TAG.sub("", content)
    content = _EVENT_ATTR.sub("", content)
    return _JS_URL.sub(r"\1=\2\2", content)


def _type_ok(value: Any, kind: str) -> bool:
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        return nullable
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == _NUM:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _LIST_INT:
        return isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
    if kind == _OBJ:
        return isinstance(value, dict)
    return True


_KIND_NAMES = {
    _INT: "integer",
    _NUM: "number",
    _STR: "string",
    _BOOL: "boolean",
    _LIST_INT: "array of integers",
    _OBJ: "object",
    _ANY: "value",
}


def check_body(body: Any, allowed: dict[str, str]) -> Record:
    """A v2 JSON body: an object whose keys are known and typed as the spec says."""
    if not isinstance(body, dict):
        raise ValidationFailed("body must be a JSON object")
    for key, value in body.items():
        kind = allowed.get(key)
        if kind is None:
            raise ValidationFailed(f"body: unknown property '{key}'")
        if not _type_ok(value, kind):
            raise ValidationFailed(f"{key} must be {_KIND_NAMES[kind.rstrip('?')]}")
    return body


class PipedriveModel:
    """All of the sandbox company's data, and what each API write does to it."""

    def __init__(self, seed: PipedriveSeed) -> None:
        self.company: Record = dict(seed.company)
        self.me_user_id = seed.me_user_id
        self.users = Collection("users", seed.users)
        self.pipelines = Collection("pipelines", seed.pipelines)
        self.stages = Collection("stages", seed.stages)
        self.organizations = Collection("organizations", seed.organizations)
        self.persons = Collection("persons", seed.persons)
        self.deals = Collection("deals", seed.deals)
        self.notes = Collection("notes", seed.notes)
        self.fields: dict[str, list[Record]] = {
            "deal": list(seed.deal_fields),
            "person": list(seed.person_fields),
            "organization": list(seed.organization_fields),
        }
        self.field_by_code = {
            entity: {f["field_code"]: f for f in items} for entity, items in self.fields.items()
        }
        self.custom_field_types = {
            entity: {
                f["field_code"]: f.get("field_type") for f in items if f.get("is_custom_field")
            }
            for entity, items in self.fields.items()
        }
        created = self._company_created()
        # v1 `*Fields` lists: the seed's deal, person and organization fields, and the built-in
        # catalogues of the entities the sandbox holds no records of (activity, note, ...).
        self.fields_v1 = {
            entity: [
                shape_v1(entity, v1_field(entity, i, item, created), self.me_user_id)
                for i, item in enumerate(items)
            ]
            for entity, items in {**BUILTIN_FIELDS, **self.fields}.items()
        }
        # Keys every new record gets (null unless written), from the seed's own records.
        self._templates: dict[str, list[str]] = {
            "deal": list(seed.deals[0]) if seed.deals else [],
            "person": list(seed.persons[0]) if seed.persons else [],
            "organization": list(seed.organizations[0]) if seed.organizations else [],
            "note": list(seed.notes[0]) if seed.notes else [],
        }
        self._first_won: dict[int, str] = {}
        self._indexes: dict[str, tuple[int, Any]] = {}
        self.listeners: list[Listener] = []

    def _company_created(self) -> str:
        times: list[str] = [r["add_time"] for r in self.pipelines.values() if r.get("add_time")]
        if not times:
            return iso(now())
        return min(times)

    # -- events -------------------------------------------------------------------------------
    def emit(
        self, entity: str, action: str, current: Record | None, previous: Record | None
    ) -> None:
        for listener in self.listeners:
            listener(entity, action, current, previous)

    # -- lookups ------------------------------------------------------------------------------
    def collection(self, entity: str) -> Collection:
        return {
            "deal": self.deals,
            "person": self.persons,
            "organization": self.organizations,
            "note": self.notes,
        }[entity]

    def user_default_currency(self) -> str:
        me = self.users.get(self.me_user_id) or {}
        return me.get("default_currency") or "USD"

    def deal_first_won_time(self, deal: Record) -> str | None:
        return (
            deal.get("first_won_time")
            or self._first_won.get(deal["id"])
            or (deal.get("won_time") if deal.get("status") == "won" else None)
        )

    def _index(self, name: str, collection: Collection, build: Callable[[], _T]) -> _T:
        """A derived index over `collection`, rebuilt only when the collection changed."""
        hit = self._indexes.get(name)
        if hit is not None and hit[0] == collection.version:
            return cast(_T, hit[1])  # what `build` made for this name
        value = build()
        self._indexes[name] = (collection.version, value)
        return value

    def notes_count(self, field: str, record_id: int) -> int:
        def build() -> dict[int, int]:
            counts: dict[int, int] = {}
            for note in self.notes.values():
                key = note.get(field)
                if key is not None and note.get("active_flag", True):
                    counts[key] = counts.get(key, 0) + 1
            return counts

        return self._index(f"notes_by_{field}", self.notes, build).get(record_id, 0)

    def deals_count(self, field: str, record_id: int, status: str) -> int:
        def build() -> dict[tuple[int, str], int]:
            counts: dict[tuple[int, str], int] = {}
            for deal in self.deals.values():
                key = deal.get(field)
                if key is None or deal.get("is_deleted"):
                    continue
                state = deal.get("status") or "open"
                for name in (state, "closed") if state in ("won", "lost") else (state,):
                    counts[(key, name)] = counts.get((key, name), 0) + 1
            return counts

        return self._index(f"deals_by_{field}", self.deals, build).get((record_id, status), 0)

    def persons_count(self, org_id: int) -> int:
        def build() -> dict[int, int]:
            counts: dict[int, int] = {}
            for person in self.persons.values():
                key = person.get("org_id")
                if key is not None and not person.get("is_deleted"):
                    counts[key] = counts.get(key, 0) + 1
            return counts

        return self._index("persons_by_org", self.persons, build).get(org_id, 0)

    def default_pipeline(self) -> Record | None:
        live = [p for p in self.pipelines.values() if not p.get("is_deleted")]
        return min(live, key=lambda p: (p.get("order_nr", 0), p["id"])) if live else None

    def first_stage(self, pipeline_id: int) -> Record | None:
        stages = [
            s
            for s in self.stages.values()
            if s.get("pipeline_id") == pipeline_id and not s.get("is_deleted")
        ]
        return min(stages, key=lambda s: (s.get("order_nr", 0), s["id"])) if stages else None

    def _check_ref(self, name: str, collection: Collection, record_id: Any) -> None:
        if record_id is None:
            return
        record = collection.get(record_id)
        if record is None or record.get("is_deleted") or record.get("active_flag") is False:
            raise ApiError(400, f"{name} with id {record_id} was not found")

    def _check_user(self, user_id: Any) -> None:
        if user_id is not None and self.users.get(user_id) is None:
            raise ApiError(400, f"User with id {user_id} was not found")

    def _check_custom_fields(self, entity: str, custom: Record) -> Record:
        """Validate v2 custom field values; unknown keys are ignored (as for deleted fields)."""
        fields = self.field_by_code[entity]
        out: Record = {}
        for key, value in custom.items():
            field = fields.get(key)
            if field is None or not field.get("is_custom_field"):
                continue
            field_type = field.get("field_type")
            option_ids = {o.get("id") for o in field.get("options") or []}
            if value is None:
                out[key] = None
                continue
            if field_type == "enum":
                if value not in option_ids or isinstance(value, bool):
                    raise ValidationFailed(f"custom_fields.{key}: {value!r} is not an option id")
            elif field_type == "set":
                if not isinstance(value, list) or not value:
                    raise ValidationFailed(
                        f"custom_fields.{key}: a set takes a non-empty array of option ids "
                        "(send null to clear it)"
                    )
                bad = [v for v in value if v not in option_ids or isinstance(v, bool)]
                if bad:
                    raise ValidationFailed(f"custom_fields.{key}: {bad} are not option ids")
            elif field_type == "monetary":
                if not isinstance(value, dict) or not _type_ok(value.get("value"), _NUM + "?"):
                    raise ValidationFailed(
                        f"custom_fields.{key}: a monetary value is {{value, currency}}"
                    )
            elif field_type in ("double", "int"):
                if not _type_ok(value, _NUM):
                    raise ValidationFailed(f"custom_fields.{key} must be a number")
            elif field_type in ("varchar", "text", "varchar_auto", "phone"):
                if not isinstance(value, str):
                    raise ValidationFailed(f"custom_fields.{key} must be a string")
            elif field_type == "date":
                if not isinstance(value, str) or not _DATE.match(value):
                    raise ValidationFailed(f"custom_fields.{key} must be a date (YYYY-MM-DD)")
            elif field_type in ("user", "org", "people"):
                if not _type_ok(value, _INT):
                    raise ValidationFailed(f"custom_fields.{key} must be an id")
            out[key] = value
        return out

    def _new_record(self, entity: str) -> Record:
        return dict.fromkeys(self._templates.get(entity, ()))

    def _custom_defaults(self, entity: str) -> Record:
        return dict.fromkeys(self.custom_field_types[entity])

    # -- deals --------------------------------------------------------------------------------
    def create_deal(self, body: Any) -> Record:
        body = check_body(body, DEAL_BODY)
        if not isinstance(body.get("title"), str) or not body["title"].strip():
            raise ValidationFailed("title is required")
        if body.get("is_deleted"):
            raise ValidationFailed("a deal cannot be created deleted")
        stamp = iso(now())
        deal = self._new_record("deal")
        deal.update(
            {
                "id": 0,  # allocated once the body is valid
                "title": None,
                "creator_user_id": self.me_user_id,
                "owner_id": self.me_user_id,
                "person_id": None,
                "org_id": None,
                "pipeline_id": None,
                "stage_id": None,
                "value": 0,
                "currency": self.user_default_currency(),
                "add_time": stamp,
                "update_time": stamp,
                "stage_change_time": None,
                "is_deleted": False,
                "is_archived": False,
                "archive_time": None,
                "status": "open",
                "probability": None,
                "lost_reason": None,
                "visible_to": 3,
                "close_time": None,
                "won_time": None,
                "lost_time": None,
                "expected_close_date": None,
                "label_ids": [],
                "origin": "API",
                "origin_id": None,
                "channel": None,
                "channel_id": None,
                "arr": None,
                "mrr": None,
                "acv": None,
                "custom_fields": self._custom_defaults("deal"),
            }
        )
        deal = self._apply_deal(deal, body, stamp, creating=True)
        deal["id"] = self.deals.new_id()
        self._remember_first_won(deal)
        self.deals.put(deal)
        self.emit("deal", "create", deal, None)
        return deal

    def update_deal(self, deal_id: int, body: Any) -> Record:
        body = check_body(body, DEAL_BODY)
        old = self.deals.get(deal_id)
        if old is None or old.get("is_deleted"):
            raise ApiError(404, "Entity was not found", error_info="Object was not found.")
        if body.get("is_deleted"):
            raise ValidationFailed("PATCH cannot delete a deal; use DELETE")
        if "title" in body and not (body["title"] or "").strip():
            raise ValidationFailed("title must not be empty")
        stamp = iso(now())
        new = self._apply_deal(dict(old), body, stamp, creating=False)
        new["update_time"] = stamp
        self._remember_first_won(new)
        self.deals.put(new)
        self.emit("deal", "change", new, old)
        return new

    def _apply_deal(self, deal: Record, body: Record, stamp: str, *, creating: bool) -> Record:
        for ref, collection, name in (
            ("person_id", self.persons, "Person"),
            ("org_id", self.organizations, "Organization"),
        ):
            if ref in body:
                self._check_ref(name, collection, body[ref])
        if "owner_id" in body:
            self._check_user(body["owner_id"])
        if "visible_to" in body and body["visible_to"] not in VISIBLE_TO:
            raise ValidationFailed(f"visible_to must be one of {list(VISIBLE_TO)}")
        if (
            "probability" in body
            and body["probability"] is not None
            and not (0 <= body["probability"] <= 100)
        ):
            raise ValidationFailed("probability must be between 0 and 100")
        if body.get("expected_close_date") is not None and not _DATE.match(
            body["expected_close_date"]
        ):
            raise ValidationFailed("expected_close_date must be a date (YYYY-MM-DD)")
        if "currency" in body and not re.match(r"^[A-Z]{3}$", body["currency"]):
            raise ValidationFailed("currency must be a 3-letter code")

        # Pipeline and stage: a stage implies its pipeline; a pipeline alone, its first stage.
        old_stage = deal.get("stage_id")
        if "stage_id" in body:
            stage = self.stages.get(body["stage_id"])
            if stage is None or stage.get("is_deleted"):
                raise ApiError(400, f"Stage with id {body['stage_id']} was not found")
            if "pipeline_id" in body and body["pipeline_id"] != stage.get("pipeline_id"):
                raise ValidationFailed("stage_id does not belong to pipeline_id")
            deal["stage_id"] = stage["id"]
            deal["pipeline_id"] = stage.get("pipeline_id")
        elif "pipeline_id" in body:
            pipeline = self.pipelines.get(body["pipeline_id"])
            if pipeline is None or pipeline.get("is_deleted"):
                raise ApiError(400, f"Pipeline with id {body['pipeline_id']} was not found")
            if deal.get("pipeline_id") != pipeline["id"] or deal.get("stage_id") is None:
                stage = self.first_stage(pipeline["id"])
                if stage is None:
                    raise ApiError(400, f"Pipeline with id {pipeline['id']} has no stages")
                deal["pipeline_id"] = pipeline["id"]
                deal["stage_id"] = stage["id"]
        elif creating:
            pipeline = self.default_pipeline()
            stage = self.first_stage(pipeline["id"]) if pipeline else None
            deal["pipeline_id"] = pipeline["id"] if pipeline else None
            deal["stage_id"] = stage["id"] if stage else None
        if not creating and deal.get("stage_id") != old_stage:
            deal["stage_change_time"] = stamp

        for key in ("won_time", "lost_time", "close_time", "archive_time"):
            if body.get(key) is not None:
                try:
                    body = {**body, key: _canonical_time(body[key])}
                except ValueError as exc:
                    raise ValidationFailed(f"{key}: {exc}") from None
        for key in (
            "title",
            "owner_id",
            "person_id",
            "org_id",
            "value",
            "currency",
            "probability",
            "visible_to",
            "expected_close_date",
            "label_ids",
        ):
            if key in body:
                deal[key] = body[key]
        if "is_archived" in body:
            deal["is_archived"] = body["is_archived"]
            deal["archive_time"] = (
                (body.get("archive_time") or stamp) if body["is_archived"] else None
            )
        elif "archive_time" in body:
            deal["archive_time"] = body["archive_time"]

        # Status and its times (won_time only when won, lost_* only when lost, close_time when
        # closed; reference §3.1).
        status = body.get("status", deal.get("status") or "open")
        if status not in DEAL_STATUSES:
            raise ValidationFailed(f"status must be one of {list(DEAL_STATUSES)}")
        if body.get("won_time") is not None and status != "won":
            raise ValidationFailed("won_time can only be set when the deal is won")
        if body.get("lost_time") is not None and status != "lost":
            raise ValidationFailed("lost_time can only be set when the deal is lost")
        if body.get("lost_reason") is not None and status != "lost":
            raise ValidationFailed("lost_reason can only be set when the deal is lost")
        if body.get("close_time") is not None and status == "open":
            raise ValidationFailed("close_time can only be set when the deal is won or lost")
        changed_status = status != deal.get("status") or creating
        deal["status"] = status
        if status == "won":
            if changed_status:
                deal["won_time"] = body.get("won_time") or stamp
                deal["lost_time"] = None
                deal["lost_reason"] = None
                deal["close_time"] = body.get("close_time") or deal["won_time"]
                if "first_won_time" in deal and not deal["first_won_time"]:
                    deal["first_won_time"] = deal["won_time"]
            else:
                for key in ("won_time", "close_time"):
                    if body.get(key):
                        deal[key] = body[key]
        elif status == "lost":
            if changed_status:
                deal["lost_time"] = body.get("lost_time") or stamp
                deal["won_time"] = None
                deal["close_time"] = body.get("close_time") or deal["lost_time"]
            else:
                for key in ("lost_time", "close_time"):
                    if body.get(key):
                        deal[key] = body[key]
            if "lost_reason" in body:
                deal["lost_reason"] = body["lost_reason"]
        else:
            if changed_status:
                deal["won_time"] = deal["lost_time"] = deal["close_time"] = None
                deal["lost_reason"] = None
        if "custom_fields" in body:
            custom = self._check_custom_fields("deal", body["custom_fields"])
            deal["custom_fields"] = {**(deal.get("custom_fields") or {}), **custom}
        return deal

    def _remember_first_won(self, deal: Record) -> None:
        if deal.get("status") == "won" and not deal.get("first_won_time"):
            self._first_won.setdefault(deal["id"], deal["won_time"])

    def delete_deal(self, deal_id: int) -> Record:
        return self._soft_delete("deal", deal_id)

    def _soft_delete(self, entity: str, record_id: int) -> Record:
        collection = self.collection(entity)
        old = collection.get(record_id)
        if old is None or old.get("is_deleted"):
            raise ApiError(404, "Entity was not found", error_info="Object was not found.")
        new = {**old, "is_deleted": True, "update_time": iso(now())}
        collection.put(new)
        self.emit(entity, "delete", None, old)
        return new

    # -- persons ------------------------------------------------------------------------------
    @staticmethod
    def _contacts(value: Any, key: str) -> list[Record]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValidationFailed(f"{key} must be an array of {{value, primary, label}}")
        items = []
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                raise ValidationFailed(f"{key} items must be objects with a string value")
            if "primary" in item and not isinstance(item["primary"], bool):
                raise ValidationFailed(f"{key}.primary must be a boolean")
            items.append(
                {
                    "value": item["value"],
                    "primary": bool(item.get("primary", False)),
                    "label": item.get("label") or "work",
                }
            )
        if items and not any(i["primary"] for i in items):
            items[0]["primary"] = True
        return items

    def create_person(self, body: Any) -> Record:
        body = check_body(body, PERSON_BODY)
        name = body.get("name")
        if not name and (body.get("first_name") or body.get("last_name")):
            name = " ".join(p for p in (body.get("first_name"), body.get("last_name")) if p)
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed("name is required")
        stamp = iso(now())
        person = self._new_record("person")
        person.update(
            {
                "id": 0,  # allocated once the body is valid
                "name": name,
                "first_name": None,
                "last_name": None,
                "owner_id": self.me_user_id,
                "org_id": None,
                "add_time": stamp,
                "update_time": stamp,
                "emails": [],
                "phones": [],
                "is_deleted": False,
                "visible_to": 3,
                "label_ids": [],
                "picture_id": None,
                "custom_fields": self._custom_defaults("person"),
            }
        )
        person = self._apply_person(person, {**body, "name": name}, stamp)
        if body.get("add_time"):
            try:
                person["add_time"] = _canonical_time(body["add_time"])
            except ValueError as exc:
                raise ValidationFailed(f"add_time: {exc}") from None
        person["id"] = self.persons.new_id()
        self.persons.put(person)
        self.emit("person", "create", person, None)
        return person

    def update_person(self, person_id: int, body: Any) -> Record:
        body = check_body(body, PERSON_BODY)
        body.pop("add_time", None)
        old = self.persons.get(person_id)
        if old is None or old.get("is_deleted"):
            raise ApiError(404, "Entity was not found", error_info="Object was not found.")
        if "name" in body and not (body["name"] or "").strip():
            raise ValidationFailed("name must not be empty")
        stamp = iso(now())
        new = self._apply_person(dict(old), body, stamp)
        new["update_time"] = stamp
        self.persons.put(new)
        self.emit("person", "change", new, old)
        return new

    def _apply_person(self, person: Record, body: Record, stamp: str) -> Record:
        if "org_id" in body:
            self._check_ref("Organization", self.organizations, body["org_id"])
        if "owner_id" in body:
            self._check_user(body["owner_id"])
        if "visible_to" in body and body["visible_to"] not in VISIBLE_TO:
            raise ValidationFailed(f"visible_to must be one of {list(VISIBLE_TO)}")
        for key in ("emails", "phones", "im"):
            if key in body:
                person[key] = self._contacts(body[key], key)
        if "name" in body:
            person["name"] = body["name"].strip()
            first, _, last = person["name"].partition(" ")
            person["first_name"] = first or None
            person["last_name"] = last or None
        for key in ("first_name", "last_name"):
            if key in body and "name" not in body:
                person[key] = body[key]
                person["name"] = " ".join(
                    p for p in (person.get("first_name"), person.get("last_name")) if p
                )
        for key in (
            "owner_id",
            "org_id",
            "visible_to",
            "label_ids",
            "postal_address",
            "notes",
            "birthday",
            "job_title",
            "marketing_status",
        ):
            if key in body:
                person[key] = body[key]
        if "custom_fields" in body:
            custom = self._check_custom_fields("person", body["custom_fields"])
            person["custom_fields"] = {**(person.get("custom_fields") or {}), **custom}
        return person

    def delete_person(self, person_id: int) -> Record:
        return self._soft_delete("person", person_id)

    # -- organizations ------------------------------------------------------------------------
    def create_organization(self, body: Any) -> Record:
        body = check_body(body, ORGANIZATION_BODY)
        if not isinstance(body.get("name"), str) or not body["name"].strip():
            raise ValidationFailed("name is required")
        stamp = iso(now())
        org = self._new_record("organization")
        org.update(
            {
                "id": 0,  # allocated once the body is valid
                "name": None,
                "owner_id": self.me_user_id,
                "add_time": stamp,
                "update_time": stamp,
                "is_deleted": False,
                "visible_to": 3,
                "address": None,
                "label_ids": [],
                "website": None,
                "linkedin": None,
                "industry": None,
                "annual_revenue": None,
                "employee_count": None,
                "custom_fields": self._custom_defaults("organization"),
            }
        )
        org = self._apply_organization(org, body)
        if body.get("add_time"):
            try:
                org["add_time"] = _canonical_time(body["add_time"])
            except ValueError as exc:
                raise ValidationFailed(f"add_time: {exc}") from None
        org["id"] = self.organizations.new_id()
        self.organizations.put(org)
        self.emit("organization", "create", org, None)
        return org

    def update_organization(self, org_id: int, body: Any) -> Record:
        body = check_body(body, ORGANIZATION_BODY)
        body.pop("add_time", None)
        old = self.organizations.get(org_id)
        if old is None or old.get("is_deleted"):
            raise ApiError(404, "Entity was not found", error_info="Object was not found.")
        if "name" in body and not (body["name"] or "").strip():
            raise ValidationFailed("name must not be empty")
        new = self._apply_organization(dict(old), body)
        new["update_time"] = iso(now())
        self.organizations.put(new)
        self.emit("organization", "change", new, old)
        return new

    def _apply_organization(self, org: Record, body: Record) -> Record:
        if "owner_id" in body:
            self._check_user(body["owner_id"])
        if "visible_to" in body and body["visible_to"] not in VISIBLE_TO:
            raise ValidationFailed(f"visible_to must be one of {list(VISIBLE_TO)}")
        if isinstance(body.get("address"), dict):
            address = body["address"]
            if not all(v is None or isinstance(v, str) for v in address.values()):
                raise ValidationFailed("address parts must be strings")
        for key in (
            "name",
            "owner_id",
            "visible_to",
            "label_ids",
            "address",
            "website",
            "linkedin",
            "industry",
            "annual_revenue",
            "employee_count",
        ):
            if key in body:
                org[key] = body[key].strip() if key == "name" else body[key]
        if "custom_fields" in body:
            custom = self._check_custom_fields("organization", body["custom_fields"])
            org["custom_fields"] = {**(org.get("custom_fields") or {}), **custom}
        return org

    def delete_organization(self, org_id: int) -> Record:
        return self._soft_delete("organization", org_id)

    # -- notes (v1) ---------------------------------------------------------------------------
    def _note_fields(self, body: Record, note: Record, *, creating: bool) -> Record:
        if "content" in body or creating:
            content = body.get("content")
            if not isinstance(content, str) or not content.strip():
                raise ApiError(400, "Note content is required")
            note["content"] = sanitize_html(content)
        for key, collection, name in (
            ("deal_id", self.deals, "Deal"),
            ("person_id", self.persons, "Person"),
            ("org_id", self.organizations, "Organization"),
        ):
            if key in body:
                value = _v1_int(body[key], key)
                self._check_ref(name, collection, value)
                note[key] = value
        for key in ("project_id", "task_id"):
            if key in body:
                note[key] = _v1_int(body[key], key)
        if "lead_id" in body:
            note["lead_id"] = body["lead_id"] or None
        if "user_id" in body:
            user_id = _v1_int(body["user_id"], "user_id")
            self._check_user(user_id)
            note["user_id"] = user_id
        if "add_time" in body and body["add_time"]:
            try:
                note["add_time"] = _canonical_v1_time(body["add_time"])
            except ValueError as exc:
                raise ApiError(400, f"add_time: {exc}") from None
        for flag in PINNED_FLAGS:
            if flag in body:
                value = body[flag]
                if value not in (0, 1, "0", "1", True, False):
                    raise ApiError(400, f"{flag} must be 0 or 1")
                note[flag] = value in (1, "1", True)
        if not any(note.get(key) for key in NOTE_LINKS):
            raise ApiError(
                400,
                "Note must be attached to a deal, person, organization, lead, project or task",
            )
        return note

    def create_note(self, body: Any) -> Record:
        if not isinstance(body, dict):
            raise ApiError(400, "Body must be an object")
        stamp = v1_time(now())
        note = self._new_record("note")
        note.update(
            {
                "id": 0,  # allocated once the body is valid
                "user_id": self.me_user_id,
                "deal_id": None,
                "person_id": None,
                "org_id": None,
                "lead_id": None,
                "project_id": None,
                "content": "",
                "add_time": stamp,
                "update_time": stamp,
                "active_flag": True,
            }
        )
        for flag in PINNED_FLAGS:
            note.setdefault(flag, False)
            if note[flag] is None:
                note[flag] = False
        note = self._note_fields(body, note, creating=True)
        note["last_update_user_id"] = note["user_id"]
        note["id"] = self.notes.new_id()
        self.notes.put(note)
        self.emit("note", "create", note, None)
        return note

    def update_note(self, note_id: int, body: Any) -> Record:
        if not isinstance(body, dict):
            raise ApiError(400, "Body must be an object")
        old = self.notes.get(note_id)
        if old is None or not old.get("active_flag", True):
            raise ApiError(404, "Note not found", error_info="Object was not found.")
        new = self._note_fields(body, dict(old), creating=False)
        new["update_time"] = v1_time(now())
        new["last_update_user_id"] = self.me_user_id
        self.notes.put(new)
        self.emit("note", "change", new, old)
        return new

    def delete_note(self, note_id: int) -> Record:
        old = self.notes.get(note_id)
        if old is None or not old.get("active_flag", True):
            raise ApiError(404, "Note not found", error_info="Object was not found.")
        new = {**old, "active_flag": False, "update_time": v1_time(now())}
        self.notes.put(new)
        self.emit("note", "delete", None, old)
        return new


def _canonical_time(text: str) -> str:
    return iso(parse_time(text))


def _canonical_v1_time(text: str) -> str:
    return v1_time(parse_time(text))


def _v1_int(value: Any, key: str) -> int | None:
    """A v1 id from JSON or a form body ("12" is fine there); null and "" unlink."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ApiError(400, f"{key} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{key} must be an integer") from None
