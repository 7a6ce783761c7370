"""The sandbox Planhat: an ASGI app that answers like `https://api.planhat.com`.

Endpoints (`reference/planhat-api.md` §1-6):

* `GET|POST|PUT /<model>` and `GET|PUT|DELETE /<model>/<id>` for `companies`, `endusers`,
  `licenses` and `conversations` (notes are conversations with `type: "note"`; there is no
  `/notes`). `<id>` is the `_id`, `extid-<externalId>` or `srcid-<sourceId>` (URL-encoded).
  `PUT /<model>` with an array is the bulk upsert: 200, 206 with per-item errors, or 400 for a
  payload refused as a whole (see `bad_bulk_payload`).
* `GET /users` (team members), `GET /leancompanies` (`externalId`, `sourceId`, `status` filters).
* Auth: `Authorization: Bearer <token>`, or basic auth with the token as user name. 401 for a
  missing or unknown token; 403 with `permissionErrors` when a read-only token writes.
* Rate limits (`PlanhatRateLimit`), fault injection and request counters (`FaultMiddleware`).
* Automations with an outbound webhook step (`sandbox.planhat.automations`): every create,
  and every update that changes a value, of a record of a configured model POSTs a small JSON
  body (ids, event, changed fields) to the automation's URL with its headers, in the background.
* Admin (never limited, faulted, counted or authenticated): `/_sandbox/faults`,
  `/_sandbox/counters`, `GET|PUT /_sandbox/ratelimit`, `GET /_sandbox/dump/<model>`,
  `GET|PUT|DELETE /_sandbox/automations` (`{"automations": [...]}`; a bad body is a 400 that
  changes nothing) and `GET|DELETE /_sandbox/automations/deliveries` (one entry per attempt).

Python API: `PlanhatSandbox(seed, tokens, automation_time_scale=1.0)`; serve `.asgi`;
`set_automations`, `automations`, `automation_deliveries`, `clear_automation_deliveries`,
`wait_for_automation_deliveries`, `wait_automations_idle`; `close()` stops the delivery thread.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.dataset import PlanhatSeed
from sandbox.faults import (
    ADMIN_PREFIX,
    FaultInjector,
    FaultMiddleware,
    RequestCounters,
    admin_router,
    send_json,
)
from sandbox.planhat.automations import AutomationDeliverer, automations_router
from sandbox.planhat.store import (
    COMPANY_OWNED,
    MAX_BULK,
    MODELS,
    PAGE_SIZES,
    ItemError,
    PlanhatStore,
    Record,
    empty_bulk_result,
)
from sandbox.ratelimit import PlanhatRateLimit

_READ_ONLY_KEY = "planhat.read_only"
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_LEAN_FIELDS = ("_id", "externalId", "sourceId", "name", "slug")


def error_body(status: int) -> str:
    """Planhat's transport-level errors are short texts (P4: "an object or a string")."""
    return _PHRASES.get(status, "Error")


def token_of(authorization: str) -> str | None:
    """The API token in an `Authorization` header: bearer, or basic with the token as user."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer":
        return credentials or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


class PlanhatAuth:
    """ASGI middleware: 401 unless the request carries a known token; marks read-only tokens."""

    def __init__(self, app: Any, tokens: Iterable[str], read_only_tokens: Iterable[str]) -> None:
        self.app = app
        self.read_only = frozenset(read_only_tokens)
        self.tokens = frozenset(tokens) | self.read_only

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        token = token_of(header)
        if token is None or token not in self.tokens:
            await send_json(send, 401, error_body(401))
            return
        scope[_READ_ONLY_KEY] = token in self.read_only
        await self.app(scope, receive, send)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _message(status: int, message: str) -> Response:
    return _json({"message": message}, status)


def _not_found() -> Response:
    return _json(error_body(404), 404)


def _permission_denied(request: Request, model: str, operation: str, bulk: bool) -> Response | None:
    """403 for a read-only token (None when the token may write)."""
    if not request.scope.get(_READ_ONLY_KEY):
        return None
    errors = [
        {
            "model": model,
            "operation": operation,
            "error": f"the service account of this token may not {operation} {model}",
        }
    ]
    if bulk:
        return _json({**empty_bulk_result(), "permissionErrors": errors}, 403)
    return _json({"message": "Forbidden", "permissionErrors": errors}, 403)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise ItemError("a JSON body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ItemError("the body is not valid JSON") from None


# The keys Planhat matches bulk items on (reference §4 "Matching"); a payload may name each
# record once.
_BULK_KEYS = ("_id", "sourceId", "externalId")


def bad_bulk_payload(model: str, items: list[Any]) -> str | None:
    """Why Planhat refuses a bulk upsert payload as a whole (400), or None when it does not.

    The reference (planhat-api.md §4, from Planhat's status-code table) documents 400 for a bad
    payload, "missing required key or duplicate", against 206 with per-item errors when only
    some items fail. The sandbox refuses the whole payload when

    * an item is not a JSON object: the payload is not an array of records at all; or
    * two items carry the same matching key (`_id`, `sourceId` or `externalId` with the same
      value): Planhat cannot upsert one record twice in one call, and which of the two should
      win is undefined ("duplicate"). On company-owned models (end users, licenses,
      conversations) `externalId` is unique per company only, so there two items are
      duplicates by `externalId` only if they also name the same `companyId`.

    A required field missing from *some* items (e.g. a company's `name`, an end user's
    `companyId`) stays a per-item error in `createdErrors` (206), as the rest of the payload is
    valid: the reference's "missing required key" is not specific enough to refuse more.
    """
    seen: dict[tuple[Any, ...], int] = {}
    owned = model in COMPANY_OWNED
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            return (
                f"Invalid payload: item {index} is {type(item).__name__}, not an object; "
                "a bulk upsert takes an array of objects"
            )
        for key in _BULK_KEYS:
            value = item.get(key)
            if value is None or value == "" or not isinstance(value, (str, int)):
                continue
            scope = item.get("companyId") if owned and key == "externalId" else None
            if not isinstance(scope, (str, int, type(None))):
                scope = repr(scope)
            first = seen.setdefault((key, value, scope), index)
            if first != index:
                return (
                    f"Invalid payload: duplicate {key} {value!r} in items {first} and {index}; "
                    "each record may appear only once in a bulk upsert"
                )
    return None


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ItemError(f"{name} must be an integer") from None


def _sort_key(field: str) -> Any:
    def key(record: Record) -> tuple[int, Any]:
        value = record.get(field)
        if value is None:
            return (0, "")
        if isinstance(value, bool):
            return (1, int(value))
        if isinstance(value, int | float):
            return (1, value)
        if isinstance(value, str):
            return (2, value)
        return (3, orjson.dumps(value))

    return key


def _page(request: Request, records: list[Record], model: str) -> list[Record]:
    """`sort`, `offset`, `limit` (clamped to the model's maximum) and `select`."""
    default, maximum = PAGE_SIZES[model]
    limit = min(max(_int_param(request, "limit", default), 0), maximum)
    offset = max(_int_param(request, "offset", 0), 0)
    sort = request.query_params.get("sort")
    if sort:
        field = sort.lstrip("-")
        records = sorted(records, key=_sort_key(field), reverse=sort.startswith("-"))
    page = records[offset : offset + limit]
    select = request.query_params.get("select")
    if select:
        fields = [f.strip() for f in select.split(",")]
        wanted = ["_id", *(f for f in fields if f and f != "_id")]
        page = [{f: r[f] for f in wanted if f in r} for r in page]
    return page


class PlanhatSandbox:
    """The sandbox Planhat: data store, FastAPI app, auth, rate limits, faults, counters."""

    def __init__(
        self,
        seed: PlanhatSeed,
        tokens: list[str],
        *,
        read_only_tokens: Iterable[str] = (),
        per_second: int = 150,
        per_minute_soft: int = 200,
        fault_seed: int = 0,
        automation_time_scale: float = 1.0,
    ) -> None:
        self.store = PlanhatStore(seed)
        self.deliverer = AutomationDeliverer(automation_time_scale, write_lock=self.store.lock)
        self.store.listeners.append(self.deliverer.on_change)
        self.faults = FaultInjector(fault_seed)
        self.counters = RequestCounters()
        self.app = self._build_app()
        self.auth = PlanhatAuth(self.app, tokens, read_only_tokens)
        self.ratelimit = PlanhatRateLimit(
            self.auth, per_second=per_second, per_minute_soft=per_minute_soft
        )
        self.asgi = FaultMiddleware(self.ratelimit, self.faults, self.counters, error_body)

    def records(self, model: str) -> list[Record]:
        """A deep copy of every stored record of `model` (or of the team, `"users"`)."""
        if model not in (*MODELS, "users"):
            raise KeyError(f"unknown Planhat model {model!r}; known: {', '.join(MODELS)}")
        with self.store.lock:
            copied: list[Record] = orjson.loads(orjson.dumps(self.store.records(model)))
            return copied

    # --- automations ---

    def set_automations(self, automations: Iterable[Any]) -> list[dict[str, Any]]:
        """Replace the automations (dicts as `PUT /_sandbox/automations` takes them, or
        `Automation`s); `AutomationError` (a `ValueError`) for a bad one, nothing changed."""
        self.deliverer.set(automations)
        return self.deliverer.configured()

    def automations(self) -> list[dict[str, Any]]:
        """The configured automations, in their JSON form."""
        return self.deliverer.configured()

    def automation_deliveries(self) -> list[dict[str, Any]]:
        """The delivery log: one entry per attempt (`id`, `automation`, `model`, `event`,
        `_id`, `attempt`, `url`, `status`, `error`, `ok`, `duration_ms`, `time`, `dropped`)."""
        return self.deliverer.log.entries()

    def clear_automation_deliveries(self) -> None:
        self.deliverer.log.clear()

    def wait_for_automation_deliveries(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least `n` attempts are logged (TimeoutError otherwise)."""
        return self.deliverer.log.wait_for(n, timeout)

    def wait_automations_idle(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until every fired delivery is done, retries included; the log then."""
        self.deliverer.wait_idle(timeout)
        return self.deliverer.log.entries()

    def close(self) -> None:
        """Stop the automations' delivery thread (idempotent)."""
        self.deliverer.close()

    # --- the HTTP app ---

    def _build_app(self) -> FastAPI:
        store = self.store
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        app.include_router(admin_router(self.faults, self.counters))
        app.include_router(automations_router(self.deliverer))

        @app.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
            return _json(error_body(exc.status_code), exc.status_code)

        # --- admin ---

        @app.get(f"{ADMIN_PREFIX}/ratelimit")
        async def get_ratelimit() -> Response:
            return _json(self.ratelimit.settings())

        @app.put(f"{ADMIN_PREFIX}/ratelimit")
        async def put_ratelimit(request: Request) -> Response:
            try:
                body = await _body(request)
            except ItemError as exc:
                return _message(400, str(exc))
            known = {"per_second", "per_minute_soft"}
            if not isinstance(body, dict) or not set(body) <= known:
                return _message(400, f"send an object with keys among {sorted(known)}")
            for key, value in body.items():
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    return _message(400, f"{key} must be a positive integer")
            self.ratelimit.configure(**body)
            self.ratelimit.reset()
            return _json(self.ratelimit.settings())

        @app.get(ADMIN_PREFIX + "/dump/{model}")
        async def dump(model: str) -> Response:
            if model not in (*MODELS, "users"):
                return _not_found()
            with store.lock:
                return _json(store.records(model))

        # --- team and lean companies ---

        @app.get("/users")
        async def list_users(request: Request) -> Response:
            try:
                with store.lock:
                    return _json(_page(request, store.users, "users"))
            except ItemError as exc:
                return _message(400, str(exc))

        @app.get("/users/{key:path}")
        async def get_user(key: str) -> Response:
            with store.lock:
                for user in store.users:
                    if user.get("_id") == key:
                        return _json(user)
            return _not_found()

        @app.get("/leancompanies")
        async def lean_companies(request: Request) -> Response:
            params = request.query_params
            filters = {k: params[k] for k in ("externalId", "sourceId", "status") if k in params}
            with store.lock:
                lean = [
                    {f: c[f] for f in _LEAN_FIELDS if f in c}
                    for c in store.cols["companies"].records.values()
                    if all(c.get(k) == v for k, v in filters.items())
                ]
                if "limit" in params or "offset" in params:
                    try:
                        offset = max(_int_param(request, "offset", 0), 0)
                        limit = max(_int_param(request, "limit", len(lean)), 0)
                    except ItemError as exc:
                        return _message(400, str(exc))
                    lean = lean[offset : offset + limit]
                return _json(lean)

        # --- the four models ---

        @app.get("/{model}")
        async def list_records(model: str, request: Request) -> Response:
            if model not in MODELS:
                return _not_found()
            try:
                with store.lock:
                    return _json(_page(request, self._filtered(model, request), model))
            except ItemError as exc:
                return _message(400, str(exc))

        @app.get("/{model}/{key:path}")
        async def get_record(model: str, key: str, request: Request) -> Response:
            if key == "":  # `/companies/` is `/companies`
                return await list_records(model, request)
            if model not in MODELS:
                return _not_found()
            with store.lock:
                record = store.find(model, key)
                return _not_found() if record is None else _json(record)

        @app.post("/{model}")
        async def create_record(model: str, request: Request) -> Response:
            if model not in MODELS:
                return _not_found()
            denied = _permission_denied(request, model, "create", bulk=False)
            if denied is not None:
                return denied
            try:
                item = await _body(request)
                if not isinstance(item, dict):
                    raise ItemError("the body must be a JSON object")
                with store.lock:
                    record = store.create(model, item)
                    if record is None:  # an end user Planhat cannot place: ignored, not saved
                        return _json(item)
                    return _json(record)
            except ItemError as exc:
                return _message(400, str(exc))

        @app.put("/{model}")
        async def bulk_upsert(model: str, request: Request) -> Response:
            if model not in MODELS:
                return _not_found()
            denied = _permission_denied(request, model, "upsert", bulk=True)
            if denied is not None:
                return denied
            try:
                items = await _body(request)
            except ItemError as exc:
                return _message(400, str(exc))
            if not isinstance(items, list):
                return _message(400, "the body of a bulk upsert must be a JSON array")
            if len(items) > MAX_BULK:
                return _message(
                    400, f"a bulk upsert takes at most {MAX_BULK} items, got {len(items)}"
                )
            invalid = bad_bulk_payload(model, items)
            if invalid is not None:
                return _message(400, invalid)  # nothing of the payload is written
            result = store.bulk_upsert(model, items)
            partial = result["createdErrors"] or result["updatedErrors"]
            return _json(result, 206 if partial else 200)

        @app.put("/{model}/{key:path}")
        async def update_record(model: str, key: str, request: Request) -> Response:
            if key == "":
                return await bulk_upsert(model, request)
            if model not in MODELS:
                return _not_found()
            denied = _permission_denied(request, model, "update", bulk=False)
            if denied is not None:
                return denied
            try:
                item = await _body(request)
                if not isinstance(item, dict):
                    raise ItemError("the body must be a JSON object")
                with store.lock:
                    current = store.find(model, key)
                    if current is None:
                        return _not_found()
                    return _json(store.update(model, current, item))
            except ItemError as exc:
                return _message(400, str(exc))

        @app.delete("/{model}/{key:path}")
        async def delete_record(model: str, key: str, request: Request) -> Response:
            if model not in MODELS:
                return _not_found()
            denied = _permission_denied(request, model, "delete", bulk=False)
            if denied is not None:
                return denied
            with store.lock:
                current = store.find(model, key)
                if current is None:
                    return _not_found()
                deleted = store.delete(model, current)
            return _json({"n": deleted, "ok": 1, "deletedCount": deleted})

        return app

    def _filtered(self, model: str, request: Request) -> list[Record]:
        """The records a list request may see: its filters applied, archived end users hidden."""
        store = self.store
        col = store.cols[model]
        params = request.query_params
        company_ids = params.get("companyId")
        if company_ids and model in COMPANY_OWNED:
            wanted = {store.resolve_company(ref.strip()) for ref in company_ids.split(",")}
            wanted.discard(None)
            records = [r for r in col.records.values() if r.get("companyId") in wanted]
        else:
            records = list(col.records.values())
        if model == "conversations" and params.get("type"):
            types = set(params["type"].split(","))
            records = [r for r in records if r.get("type") in types]
        if model == "endusers":
            email = params.get("email")
            if email:
                email = email.strip().lower()
                records = [r for r in records if str(r.get("email") or "").lower() == email]
            records = [r for r in records if not r.get("archived")]
        return records
