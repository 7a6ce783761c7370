"""The HTTP endpoints of the sandbox Pipedrive (v2 and v1), as plain Starlette handlers.

Handlers take the `Request` only and answer raw JSON bytes (orjson), so the hot path (paging
through deals) costs a cached query, a slice and a join of cached record JSON.

v2 (`/api/v2/...`): deals, persons, organizations (list with filters, get, create, patch,
delete), pipelines, stages, dealFields, personFields, organizationFields. Cursor paging.
v1 (`/api/v1/...` and `/v1/...`): users/me, users, notes, webhooks, and every v1 `*Fields` list
(activity, deal, lead, note, organization, person, product). Offset paging.

Its size: one route per endpoint of Pipedrive's v1 and v2 descriptions that the sandbox
serves, each short; the OpenAPI contract test reads them as one surface.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sandbox.pipedrive import views
from sandbox.pipedrive.common import (
    ApiError,
    ValidationFailed,
    error_response,
    json_response,
    not_found,
    parse_rfc3339_strict,
    parse_time,
    raw_json_response,
)
from sandbox.pipedrive.model import PINNED_FLAGS, PipedriveModel
from sandbox.pipedrive.store import Collection, Record, Selection
from sandbox.pipedrive.webhooks import WebhookRegistry, WebhookRequestError

Handler = Callable[[Request], Awaitable[Response]]

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_IDS = 100
MAX_CUSTOM_FIELDS = 15
SORTS = ("id", "update_time", "add_time")
DEAL_STATUS_FILTER = ("open", "won", "lost", "deleted")
DEAL_INCLUDE_FIELDS = (
    "next_activity_id",
    "last_activity_id",
    "first_won_time",
    "products_count",
    "files_count",
    "notes_count",
    "followers_count",
    "email_messages_count",
    "activities_count",
    "done_activities_count",
    "undone_activities_count",
    "participants_count",
    "last_incoming_mail_time",
    "last_outgoing_mail_time",
    "smart_bcc_email",
    "source_lead_id",
)
PERSON_INCLUDE_FIELDS = (
    "next_activity_id",
    "last_activity_id",
    "open_deals_count",
    "related_open_deals_count",
    "closed_deals_count",
    "related_closed_deals_count",
    "participant_open_deals_count",
    "participant_closed_deals_count",
    "email_messages_count",
    "activities_count",
    "done_activities_count",
    "undone_activities_count",
    "files_count",
    "notes_count",
    "followers_count",
    "won_deals_count",
    "related_won_deals_count",
    "lost_deals_count",
    "related_lost_deals_count",
    "last_incoming_mail_time",
    "last_outgoing_mail_time",
    "marketing_status",
    "doi_status",
    "smart_bcc_email",
)
ORGANIZATION_INCLUDE_FIELDS = (
    "next_activity_id",
    "last_activity_id",
    "open_deals_count",
    "related_open_deals_count",
    "closed_deals_count",
    "related_closed_deals_count",
    "email_messages_count",
    "people_count",
    "activities_count",
    "done_activities_count",
    "undone_activities_count",
    "files_count",
    "notes_count",
    "followers_count",
    "won_deals_count",
    "related_won_deals_count",
    "lost_deals_count",
    "related_lost_deals_count",
    "smart_bcc_email",
)
FIELD_INCLUDE_FIELDS = ("ui_visibility", "important_fields", "required_fields")
NOTE_SORTS = (
    "id",
    "user_id",
    "deal_id",
    "person_id",
    "org_id",
    "content",
    "add_time",
    "update_time",
)
_ENTITY_OF_FIELDS = {
    "dealFields": "deal",
    "personFields": "person",
    "organizationFields": "organization",
}
# Every `*Fields` list of Pipedrive's current v1 description (SPEC1), read by third-party clients
# at discovery: the seed's own fields for deal/person/organization, built-in catalogues otherwise.
_ENTITY_OF_V1_FIELDS = {
    "activityFields": "activity",
    "dealFields": "deal",
    "leadFields": "lead",
    "noteFields": "note",
    "organizationFields": "organization",
    "personFields": "person",
    "productFields": "product",
}


# -- parameter parsing -------------------------------------------------------------------------
def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be integer") from None


def _limit(request: Request) -> int:
    limit = _int_param(request, "limit")
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1:
        raise ValidationFailed("limit must be greater than or equal to 1")
    if limit > MAX_LIMIT:
        raise ValidationFailed(f"limit must be lower than or equal to {MAX_LIMIT}")
    return limit


def _enum_param(request: Request, name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise ValidationFailed(f"{name} must be one of {', '.join(allowed)}")
    return raw


def _list_param(request: Request, name: str) -> list[str] | None:
    raw = request.query_params.get(name)
    if raw is None or raw.strip() == "":
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _ids_param(request: Request) -> tuple[int, ...] | None:
    parts = _list_param(request, "ids")
    if parts is None:
        return None
    try:
        ids = tuple(sorted({int(p) for p in parts}))
    except ValueError:
        raise ValidationFailed("ids must be a comma-separated list of integers") from None
    if len(ids) > MAX_IDS:
        raise ValidationFailed(f"ids must contain at most {MAX_IDS} ids")
    return ids


def _time_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(parse_rfc3339_strict(raw).timestamp())
    except ValueError:
        raise ValidationFailed(
            f"{name} is not a valid datetime (RFC 3339, e.g. 2025-01-01T10:20:00Z)"
        ) from None


def _bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return False
    if raw.lower() not in ("true", "false", "1", "0"):
        raise ValidationFailed(f"{name} must be boolean")
    return raw.lower() in ("true", "1")


def _choices_param(request: Request, name: str, allowed: tuple[str, ...]) -> list[str]:
    parts = _list_param(request, name) or []
    bad = [p for p in parts if p not in allowed]
    if bad:
        raise ValidationFailed(f"{name} must be a comma-separated list of: {', '.join(allowed)}")
    return parts


def _path_id(request: Request) -> int:
    raw = request.path_params["id"]
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed("id must be integer") from None
    if value < 1:
        raise ValidationFailed("id must be greater than or equal to 1")
    return value


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationFailed("body is not valid JSON") from None


async def _v1_body(request: Request) -> Any:
    """v1 writes take JSON or form-encoded bodies (reference §1)."""
    content_type = request.headers.get("content-type", "")
    raw = await request.body()
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(400, "Body is not valid JSON") from None


# -- v2 cursors --------------------------------------------------------------------------------
def encode_cursor(sort_by: str, direction: str, key: tuple[Any, int]) -> str:
    """An opaque cursor shaped like Pipedrive's own (base64 of the last item's position)."""
    payload = {"field": sort_by, "fieldValue": key[0], "sortDirection": direction, "id": key[1]}
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor(cursor: str, sort_by: str, direction: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        if (
            not isinstance(payload, dict)
            or payload.get("field") != sort_by
            or payload.get("sortDirection") != direction
            or not isinstance(payload.get("id"), int)
        ):
            raise ValueError
        return (payload["fieldValue"], payload["id"])
    except (ValueError, binascii.Error, orjson.JSONDecodeError, UnicodeError):
        raise ValidationFailed("cursor is invalid (or belongs to another sort order)") from None


def _page_bytes(chunks: list[bytes], next_cursor: str | None) -> bytes:
    return b"".join(
        (
            b'{"success":true,"data":[',
            b",".join(chunks),
            b'],"additional_data":{"next_cursor":',
            orjson.dumps(next_cursor),
            b"}}",
        )
    )


class Api:
    """The endpoint handlers over one model and webhook registry."""

    def __init__(self, model: PipedriveModel, registry: WebhookRegistry) -> None:
        self.model = model
        self.registry = registry

    # -- rendering options (v2) ---------------------------------------------------------------
    def _renderer(
        self, request: Request, entity: str, include_allowed: tuple[str, ...]
    ) -> Callable[[Record], Record] | None:
        include = _choices_param(request, "include_fields", include_allowed)
        custom_keys = _list_param(request, "custom_fields")
        if custom_keys is not None and len(custom_keys) > MAX_CUSTOM_FIELDS:
            raise ValidationFailed(f"custom_fields accepts at most {MAX_CUSTOM_FIELDS} keys")
        option_labels = _bool_param(request, "include_option_labels")
        _bool_param(request, "include_labels")  # validated; the sandbox has no label catalogue
        if not include and custom_keys is None and not option_labels:
            return None
        model = self.model
        fields = model.field_by_code[entity]

        def render(record: Record) -> Record:
            out = dict(record)
            custom = dict(out.get("custom_fields") or {})
            if custom_keys is not None:
                custom = {k: v for k, v in custom.items() if k in custom_keys}
            if option_labels:
                for key, value in custom.items():
                    field = fields.get(key) or {}
                    labels = {o.get("id"): o.get("label") for o in field.get("options") or []}
                    if field.get("field_type") == "enum" and value is not None:
                        custom[key] = {"id": value, "label": labels.get(value)}
                    elif field.get("field_type") == "set" and value:
                        custom[key] = [{"id": v, "label": labels.get(v)} for v in value]
            out["custom_fields"] = custom
            for name in include:
                out[name] = self._included(entity, record, name)
            return out

        return render

    def _included(self, entity: str, record: Record, name: str) -> Any:
        model = self.model
        field = {"deal": "deal_id", "person": "person_id", "organization": "org_id"}[entity]
        if name == "first_won_time":
            return model.deal_first_won_time(record)
        if name == "notes_count":
            return model.notes_count(field, record["id"])
        if name == "people_count":
            return model.persons_count(record["id"])
        if name in (
            "open_deals_count",
            "won_deals_count",
            "lost_deals_count",
            "closed_deals_count",
        ):
            return model.deals_count(field, record["id"], name.split("_")[0])
        if name == "participants_count":
            return 1 if record.get("person_id") else 0
        if name == "followers_count":
            return 1
        if name == "smart_bcc_email":
            domain = model.company.get("domain", "sandbox")
            return f"{domain}+{entity}{record['id']}@pipedrivemail.com"
        if name == "marketing_status":
            return record.get("marketing_status", "no_consent")
        if name.endswith("_count"):
            return 0
        return None

    # -- generic v2 list / get ----------------------------------------------------------------
    def _list(
        self,
        request: Request,
        collection: Collection,
        query_key: tuple[Any, ...],
        predicate: Callable[[Record], bool] | None,
        render: Callable[[Record], Record] | None,
        ids: tuple[int, ...] | None = None,
        sorts: tuple[str, ...] = SORTS,
    ) -> Response:
        limit = _limit(request)
        sort_by = _enum_param(request, "sort_by", sorts, "id")
        direction = _enum_param(request, "sort_direction", ("asc", "desc"), "asc")
        cursor = request.query_params.get("cursor")
        after = decode_cursor(cursor, sort_by, direction) if cursor else None
        selection: Selection = collection.select(query_key, predicate, sort_by, ids)
        page, last = selection.page_after(after, limit, direction == "desc")
        if render is None:
            chunks = [collection.json_of(i) for i in page]
        else:
            chunks = [orjson.dumps(render(collection.records[i])) for i in page]
        next_cursor = encode_cursor(sort_by, direction, last) if last is not None else None
        return raw_json_response(_page_bytes(chunks, next_cursor))

    def _get(
        self,
        request: Request,
        collection: Collection,
        entity: str | None = None,
        include: tuple[str, ...] = (),
    ) -> Response:
        record_id = _path_id(request)
        render = self._renderer(request, entity, include) if entity else None
        record = collection.get(record_id)
        if record is None:
            return not_found()
        if render is None:
            payload = b'{"success":true,"data":' + collection.json_of(record_id) + b"}"
            return raw_json_response(payload)
        return json_response({"success": True, "data": render(record)})

    def _time_filters(
        self, request: Request, collection: Collection
    ) -> tuple[int | None, int | None, Callable[[Record], bool]]:
        since = _time_param(request, "updated_since")
        until = _time_param(request, "updated_until")
        times = collection.times_of

        def in_window(record: Record) -> bool:
            updated = times(record["id"])[1]
            return (since is None or updated >= since) and (until is None or updated < until)

        return since, until, in_window

    @staticmethod
    def _no_filter_id(request: Request) -> None:
        filter_id = _int_param(request, "filter_id")
        if filter_id is not None:
            raise ApiError(
                404, f"Filter with id {filter_id} was not found", error_info="Object was not found."
            )

    # -- v2 deals -----------------------------------------------------------------------------
    async def list_deals(self, request: Request) -> Response:
        self._no_filter_id(request)
        ids = _ids_param(request)
        statuses = _list_param(request, "status")
        if statuses is not None:
            bad = [s for s in statuses if s not in DEAL_STATUS_FILTER]
            if bad:
                raise ValidationFailed(f"status must be one of {', '.join(DEAL_STATUS_FILTER)}")
        wanted = frozenset(statuses) if statuses else None
        equal = {
            name: _int_param(request, name)
            for name in ("owner_id", "person_id", "org_id", "pipeline_id", "stage_id")
        }
        equal = {k: v for k, v in equal.items() if v is not None}
        since, until, in_window = self._time_filters(request, self.model.deals)
        render = self._renderer(request, "deal", DEAL_INCLUDE_FIELDS)

        def predicate(deal: Record) -> bool:
            if deal.get("is_archived"):
                return False
            if deal.get("is_deleted"):
                if wanted is None or "deleted" not in wanted:
                    return False
            elif wanted is not None and deal.get("status") not in wanted:
                return False
            for name, value in equal.items():
                if deal.get(name) != value:
                    return False
            return since is None and until is None or in_window(deal)

        key = ("deals", ids, wanted, tuple(sorted(equal.items())), since, until)
        return self._list(request, self.model.deals, key, predicate, render, ids)

    async def get_deal(self, request: Request) -> Response:
        return self._get(request, self.model.deals, "deal", DEAL_INCLUDE_FIELDS)

    async def create_deal(self, request: Request) -> Response:
        deal = self.model.create_deal(await _json_body(request))
        return json_response({"success": True, "data": deal})

    async def update_deal(self, request: Request) -> Response:
        deal_id = _path_id(request)
        deal = self.model.update_deal(deal_id, await _json_body(request))
        return json_response({"success": True, "data": deal})

    async def delete_deal(self, request: Request) -> Response:
        deal = self.model.delete_deal(_path_id(request))
        return json_response({"success": True, "data": {"id": deal["id"]}})

    # -- v2 persons ---------------------------------------------------------------------------
    async def list_persons(self, request: Request) -> Response:
        self._no_filter_id(request)
        ids = _ids_param(request)
        owner_id = _int_param(request, "owner_id")
        org_id = _int_param(request, "org_id")
        deal_id = _int_param(request, "deal_id")
        since, until, in_window = self._time_filters(request, self.model.persons)
        render = self._renderer(request, "person", PERSON_INCLUDE_FIELDS)
        deal_person = None
        if deal_id is not None:
            deal = self.model.deals.get(deal_id)
            deal_person = deal.get("person_id") if deal else None

        def predicate(person: Record) -> bool:
            if person.get("is_deleted"):
                return False
            if owner_id is not None and person.get("owner_id") != owner_id:
                return False
            if org_id is not None and person.get("org_id") != org_id:
                return False
            if deal_id is not None and person["id"] != deal_person:
                return False
            return since is None and until is None or in_window(person)

        key = ("persons", ids, owner_id, org_id, deal_id, deal_person, since, until)
        return self._list(request, self.model.persons, key, predicate, render, ids)

    async def get_person(self, request: Request) -> Response:
        return self._get(request, self.model.persons, "person", PERSON_INCLUDE_FIELDS)

    async def create_person(self, request: Request) -> Response:
        person = self.model.create_person(await _json_body(request))
        return json_response({"success": True, "data": person})

    async def update_person(self, request: Request) -> Response:
        person_id = _path_id(request)
        person = self.model.update_person(person_id, await _json_body(request))
        return json_response({"success": True, "data": person})

    async def delete_person(self, request: Request) -> Response:
        person = self.model.delete_person(_path_id(request))
        return json_response({"success": True, "data": {"id": person["id"]}})

    # -- v2 organizations ---------------------------------------------------------------------
    async def list_organizations(self, request: Request) -> Response:
        self._no_filter_id(request)
        ids = _ids_param(request)
        owner_id = _int_param(request, "owner_id")
        since, until, in_window = self._time_filters(request, self.model.organizations)
        render = self._renderer(request, "organization", ORGANIZATION_INCLUDE_FIELDS)

        def predicate(org: Record) -> bool:
            if org.get("is_deleted"):
                return False
            if owner_id is not None and org.get("owner_id") != owner_id:
                return False
            return since is None and until is None or in_window(org)

        key = ("organizations", ids, owner_id, since, until)
        return self._list(request, self.model.organizations, key, predicate, render, ids)

    async def get_organization(self, request: Request) -> Response:
        return self._get(
            request, self.model.organizations, "organization", ORGANIZATION_INCLUDE_FIELDS
        )

    async def create_organization(self, request: Request) -> Response:
        org = self.model.create_organization(await _json_body(request))
        return json_response({"success": True, "data": org})

    async def update_organization(self, request: Request) -> Response:
        org_id = _path_id(request)
        org = self.model.update_organization(org_id, await _json_body(request))
        return json_response({"success": True, "data": org})

    async def delete_organization(self, request: Request) -> Response:
        org = self.model.delete_organization(_path_id(request))
        return json_response({"success": True, "data": {"id": org["id"]}})

    # -- v2 pipelines and stages --------------------------------------------------------------
    async def list_pipelines(self, request: Request) -> Response:
        def predicate(pipeline: Record) -> bool:
            return not pipeline.get("is_deleted")

        return self._list(request, self.model.pipelines, ("pipelines",), predicate, None)

    async def get_pipeline(self, request: Request) -> Response:
        return self._get(request, self.model.pipelines)

    async def list_stages(self, request: Request) -> Response:
        pipeline_id = _int_param(request, "pipeline_id")

        def predicate(stage: Record) -> bool:
            if stage.get("is_deleted"):
                return False
            return pipeline_id is None or stage.get("pipeline_id") == pipeline_id

        return self._list(
            request,
            self.model.stages,
            ("stages", pipeline_id),
            predicate,
            None,
            sorts=(*SORTS, "order_nr"),
        )

    async def get_stage(self, request: Request) -> Response:
        return self._get(request, self.model.stages)

    # -- v2 fields ----------------------------------------------------------------------------
    def _v2_field(self, item: Record, include: list[str]) -> Record:
        out = {k: v for k, v in item.items() if k not in FIELD_INCLUDE_FIELDS or k in include}
        return out

    async def list_fields_v2(self, request: Request) -> Response:
        entity = _ENTITY_OF_FIELDS[request.url.path.rsplit("/", 1)[-1]]
        include = self._field_includes(request)
        limit = _limit(request)
        cursor = request.query_params.get("cursor")
        items = self.model.fields[entity]
        after = decode_cursor(cursor, "order_nr", "asc")[1] if cursor else -1
        start = after + 1
        page = items[start : start + limit]
        end = start + len(page)
        next_cursor = (
            encode_cursor("order_nr", "asc", (end - 1, end - 1)) if end < len(items) else None
        )
        data = [self._v2_field(item, include) for item in page]
        return json_response(
            {"success": True, "data": data, "additional_data": {"next_cursor": next_cursor}}
        )

    async def get_field_v2(self, request: Request) -> Response:
        entity = _ENTITY_OF_FIELDS[request.url.path.split("/")[-2]]
        include = self._field_includes(request)
        item = self.model.field_by_code[entity].get(request.path_params["field_code"])
        if item is None:
            return not_found()
        return json_response({"success": True, "data": self._v2_field(item, include)})

    @staticmethod
    def _field_includes(request: Request) -> list[str]:
        return _choices_param(request, "include_fields", FIELD_INCLUDE_FIELDS)

    # -- v1 users -----------------------------------------------------------------------------
    async def users_me(self, request: Request) -> Response:
        model = self.model
        me = model.users.get(model.me_user_id) or {"id": model.me_user_id}
        company = model.company
        data = {
            **views.user_v1(model, me),
            "company_id": company.get("id"),
            "company_name": company.get("name"),
            "company_domain": company.get("domain"),
            "company_country": company.get("country", "US"),
            "company_industry": company.get("industry", "Software"),
            "language": company.get("language", {"language_code": "en", "country_code": "US"}),
        }
        return json_response({"success": True, "data": data})

    async def list_users(self, request: Request) -> Response:
        users = [
            views.user_v1(self.model, u)
            for u in sorted(self.model.users.values(), key=lambda u: u["id"])
        ]
        return json_response({"success": True, "data": users})

    async def get_user(self, request: Request) -> Response:
        try:
            user_id = int(request.path_params["id"])
        except ValueError:
            return error_response(400, "User id must be an integer")
        user = self.model.users.get(user_id)
        if user is None:
            return error_response(404, "User not found", error_info="Object was not found.")
        return json_response({"success": True, "data": views.user_v1(self.model, user)})

    # -- v1 paging ----------------------------------------------------------------------------
    @staticmethod
    def _offset(request: Request) -> tuple[int, int]:
        try:
            start = int(request.query_params.get("start") or 0)
            limit = int(request.query_params.get("limit") or DEFAULT_LIMIT)
        except ValueError:
            raise ApiError(400, "start and limit must be integers") from None
        if start < 0 or limit < 1:
            raise ApiError(400, "start must be >= 0 and limit >= 1")
        return start, min(limit, MAX_LIMIT)

    @staticmethod
    def _pagination(start: int, limit: int, total: int) -> Record:
        more = start + limit < total
        pagination: Record = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return {"pagination": pagination}

    # -- v1 notes -----------------------------------------------------------------------------
    def _v1_int(self, request: Request, name: str) -> int | None:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise ApiError(400, f"{name} must be an integer") from None

    def _note_sort(self, request: Request) -> list[tuple[str, bool]]:
        raw = request.query_params.get("sort")
        if not raw:
            return [("id", False)]
        order = []
        for part in raw.split(","):
            words = part.split()
            if not words or len(words) > 2 or words[0] not in NOTE_SORTS:
                raise ApiError(
                    400,
                    f"Invalid sort: use field names from {', '.join(NOTE_SORTS)} with ASC or DESC",
                )
            direction = words[1].upper() if len(words) == 2 else "ASC"
            if direction not in ("ASC", "DESC"):
                raise ApiError(400, "Invalid sort direction: use ASC or DESC")
            order.append((words[0], direction == "DESC"))
        return order

    async def list_notes(self, request: Request) -> Response:
        start, limit = self._offset(request)
        equal: dict[str, Any] = {
            name: self._v1_int(request, name)
            for name in ("user_id", "deal_id", "person_id", "org_id", "project_id", "task_id")
        }
        if request.query_params.get("lead_id"):
            equal["lead_id"] = request.query_params["lead_id"]
        equal = {k: v for k, v in equal.items() if v is not None}
        pinned: dict[str, bool] = {}
        for flag in PINNED_FLAGS:
            raw = request.query_params.get(flag)
            if raw is not None and raw != "":
                if raw not in ("0", "1"):
                    raise ApiError(400, f"{flag} must be 0 or 1")
                pinned[flag] = raw == "1"
        since = None
        raw_since = request.query_params.get("updated_since")
        if raw_since:
            try:
                since = int(parse_time(raw_since).timestamp())
            except ValueError:
                raise ApiError(
                    400, "updated_since must be an RFC 3339 date-time (e.g. 2025-01-01T10:20:00Z)"
                ) from None
        dates: dict[str, str] = {}
        for name in ("start_date", "end_date"):
            raw = request.query_params.get(name)
            if raw:
                try:
                    parse_time(f"{raw}T00:00:00Z")
                except ValueError:
                    raise ApiError(400, f"{name} must be a date (YYYY-MM-DD)") from None
                dates[name] = raw
        order = self._note_sort(request)
        notes = self.model.notes

        def predicate(note: Record) -> bool:
            if not note.get("active_flag", True):
                return False
            for name, value in equal.items():
                if note.get(name) != value:
                    return False
            for flag, value in pinned.items():
                if bool(note.get(flag)) != value:
                    return False
            if since is not None and notes.times_of(note["id"])[1] < since:
                return False
            added = (note.get("add_time") or "")[:10]
            if "start_date" in dates and added < dates["start_date"]:
                return False
            return not ("end_date" in dates and added > dates["end_date"])

        key = (
            "notes",
            tuple(sorted(equal.items())),
            tuple(sorted(pinned.items())),
            since,
            tuple(sorted(dates.items())),
            tuple(order),
        )
        chosen = notes.sorted_records(key, predicate, order)
        page = chosen[start : start + limit]
        return json_response(
            {
                "success": True,
                "data": [views.note_v1(self.model, n) for n in page],
                "additional_data": self._pagination(start, limit, len(chosen)),
            }
        )

    def _note_id(self, request: Request) -> int:
        try:
            return int(request.path_params["id"])
        except ValueError:
            raise ApiError(400, "Note id must be an integer") from None

    async def get_note(self, request: Request) -> Response:
        note = self.model.notes.get(self._note_id(request))
        if note is None:
            return error_response(404, "Note not found", error_info="Object was not found.")
        return json_response({"success": True, "data": views.note_v1(self.model, note)})

    async def create_note(self, request: Request) -> Response:
        note = self.model.create_note(await _v1_body(request))
        return json_response({"success": True, "data": views.note_v1(self.model, note)})

    async def update_note(self, request: Request) -> Response:
        note_id = self._note_id(request)
        note = self.model.update_note(note_id, await _v1_body(request))
        return json_response({"success": True, "data": views.note_v1(self.model, note)})

    async def delete_note(self, request: Request) -> Response:
        self.model.delete_note(self._note_id(request))
        return json_response({"success": True, "data": True})

    # -- v1 fields ----------------------------------------------------------------------------
    async def list_fields_v1(self, request: Request) -> Response:
        entity = _ENTITY_OF_V1_FIELDS[request.url.path.rsplit("/", 1)[-1]]
        start, limit = self._offset(request)
        items = self.model.fields_v1[entity]
        return json_response(
            {
                "success": True,
                "data": items[start : start + limit],
                "additional_data": self._pagination(start, limit, len(items)),
            }
        )

    # -- v1 webhooks --------------------------------------------------------------------------
    async def list_webhooks(self, request: Request) -> Response:
        return json_response({"success": True, "status": "ok", "data": self.registry.list()})

    async def create_webhook(self, request: Request) -> Response:
        body = await _v1_body(request)
        if not isinstance(body, dict):
            return _webhook_error({"body": ["must be an object"]})
        try:
            hook = self.registry.create(body)
        except WebhookRequestError as exc:
            return _webhook_error(exc.errors, exc.status)
        return json_response({"success": True, "status": "ok", "data": hook}, 201)

    async def delete_webhook(self, request: Request) -> Response:
        try:
            webhook_id = int(request.path_params["id"])
        except ValueError:
            return _webhook_error({"id": ["must be an integer"]})
        if not self.registry.delete(webhook_id):
            return _webhook_error({"id": ["not found"]}, 404)
        return json_response({"success": True, "status": "ok"})

    # -- routing table ------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) for every endpoint; v1 paths are given without prefix."""
        v2 = [
            ("GET", "/deals", self.list_deals),
            ("POST", "/deals", self.create_deal),
            ("GET", "/deals/{id}", self.get_deal),
            ("PATCH", "/deals/{id}", self.update_deal),
            ("DELETE", "/deals/{id}", self.delete_deal),
            ("GET", "/persons", self.list_persons),
            ("POST", "/persons", self.create_person),
            ("GET", "/persons/{id}", self.get_person),
            ("PATCH", "/persons/{id}", self.update_person),
            ("DELETE", "/persons/{id}", self.delete_person),
            ("GET", "/organizations", self.list_organizations),
            ("POST", "/organizations", self.create_organization),
            ("GET", "/organizations/{id}", self.get_organization),
            ("PATCH", "/organizations/{id}", self.update_organization),
            ("DELETE", "/organizations/{id}", self.delete_organization),
            ("GET", "/pipelines", self.list_pipelines),
            ("GET", "/pipelines/{id}", self.get_pipeline),
            ("GET", "/stages", self.list_stages),
            ("GET", "/stages/{id}", self.get_stage),
        ]
        for name in _ENTITY_OF_FIELDS:
            v2.append(("GET", f"/{name}", self.list_fields_v2))
            v2.append(("GET", f"/{name}/{{field_code}}", self.get_field_v2))
        v1 = [
            ("GET", "/users/me", self.users_me),
            ("GET", "/users", self.list_users),
            ("GET", "/users/{id}", self.get_user),
            ("GET", "/notes", self.list_notes),
            ("POST", "/notes", self.create_note),
            ("GET", "/notes/{id}", self.get_note),
            ("PUT", "/notes/{id}", self.update_note),
            ("DELETE", "/notes/{id}", self.delete_note),
            ("GET", "/webhooks", self.list_webhooks),
            ("POST", "/webhooks", self.create_webhook),
            ("DELETE", "/webhooks/{id}", self.delete_webhook),
        ]
        for name in _ENTITY_OF_V1_FIELDS:
            v1.append(("GET", f"/{name}", self.list_fields_v1))
        routes: list[tuple[str, str, Handler]] = [
            (method, f"/api/v2{path}", handler) for method, path, handler in v2
        ]
        for prefix in ("/api/v1", "/v1"):
            routes += [(method, f"{prefix}{path}", handler) for method, path, handler in v1]
        return routes


def _webhook_error(errors: dict[str, list[str]], status: int = 400) -> Response:
    """The webhooks API's own error shape (SPEC1 `WebhooksBadRequestResponse`)."""
    return json_response({"success": False, "status": "error", "errors": errors}, status)


__all__ = ["Api", "decode_cursor", "encode_cursor"]
