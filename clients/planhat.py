"""The Planhat client: bulk upsert per model, reads by key, paged lists, single writes
(`../shared/reference/planhat-api.md` §1-6).

    with PlanhatClient(token, base_url="https://api-eu3.planhat.com") as planhat:
        result = planhat.bulk_upsert("licenses", items)
        for outcome in result.failures:
            print(items[outcome.index]["sourceId"], outcome.error)

* Base URL configurable (Planhat has regional hosts, `https://api-<cluster>.planhat.com`);
  the token travels only as `Authorization: Bearer`.
* **Bulk upsert** (`PUT /<model>`): chunks of at most 5,000 items sent one after another, as
  Planhat advises; 200 and 206 answers become one `ItemOutcome` per input item (created,
  updated, unchanged, failed with Planhat's message, or unknown when Planhat's answer does not
  say). A 206 is never reported as success.
* Lists page by `offset` at each model's maximum page size (companies 5,000, users 10,000,
  others 2,000), sorted by `_id` so pages do not shift, until an empty page.
* Limits, retries, errors and request logging are `clients.http`'s, with Planhat's limits
  (150 requests per second, counted locally; 429s carry `Retry-After`).
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

from clients.errors import ApiError, BadRequestError, InvalidSettingError
from clients.http import (
    LOOPBACK_HOSTS,
    Clock,
    Closing,
    HttpClient,
    RetryPolicy,
    ServiceProfile,
    Sleep,
    shared_limiter,
)

Record = dict[str, Any]

DEFAULT_BASE_URL = "https://api.planhat.com"
BULK_MAX = 5000
PAGE_MAX = {"companies": 5000, "users": 10000, "nps": 10000, "tasks": 10000, "tickets": 10000}
PAGE_MAX_DEFAULT = 2000

PLANHAT = ServiceProfile(
    name="Planhat",
    window_s=1.0,
    requests_per_window=150,
    auth_help=(
        "Check the Planhat API token: it is created under Settings → Service Accounts "
        "(Private Apps) in Planhat and shown only once; create a new one if it was lost or "
        "revoked, and save it again."
    ),
    forbidden_help=(
        "The service account of this token lacks the permission; grant it in Planhat under "
        "Settings → Service Accounts."
    ),
    rate_limit_help="Planhat allows about 200 calls a minute; run the sync again in a minute.",
    daily_budget_help="Run the sync again later.",
    blocked_help="Wait a few minutes before the next run.",
)

_MODEL = re.compile(r"^[a-z][a-zA-Z]*$")
_URL_EXAMPLE = "https://api.planhat.com or your region's host, e.g. https://api-eu3.planhat.com"

Status = Literal["created", "updated", "unchanged", "failed", "unknown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemOutcome:
    """What Planhat did with one input item; `index` is its position in the caller's input.
    (A plain dataclass: a backfill makes one per record.)"""

    index: int
    status: Status
    id: str | None = None  # Planhat's `_id`, when its answer names it
    error: str | None = None  # Planhat's message (failed) or why the outcome is unknown


@dataclass(kw_only=True)
class BulkUpsertResult:
    """The outcome of one `bulk_upsert` call, over all its chunks."""

    model: str
    items: list[ItemOutcome]
    requests: int = 0
    partial: bool = False  # some chunk was answered 206 (partial failure)
    #: error entries Planhat sent that name no input item
    unattributed_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every item created, updated or unchanged, and no 206: only then a success."""
        return (
            not self.partial
            and not self.unattributed_errors
            and all(o.status in ("created", "updated", "unchanged") for o in self.items)
        )

    @property
    def failures(self) -> list[ItemOutcome]:
        """The failed items and those whose outcome Planhat did not report."""
        return [o for o in self.items if o.status in ("failed", "unknown")]

    def count(self, status: Status) -> int:
        return sum(1 for o in self.items if o.status == status)

    def summary(self) -> dict[str, int]:
        return {s: self.count(s) for s in ("created", "updated", "unchanged", "failed", "unknown")}


def parse_base_url(url: str, *, allow_local_http: bool = False) -> str:
    """Planhat's API origin: `https://<host>.planhat.com` (regional hosts allowed), no path.
    With `allow_local_http` (the sandbox) also `http://127.0.0.1:<port>`."""
    try:
        parts = urlsplit((url or "").strip())
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise InvalidSettingError(
            f"The Planhat API URL is not a valid URL. Use {_URL_EXAMPLE}."
        ) from None
    shown = f"{parts.scheme}://{host}" if parts.scheme and host else "The URL given"
    local = allow_local_http and host in LOOPBACK_HOSTS and parts.scheme in ("http", "https")
    bad = (
        parts.query
        or parts.fragment
        or parts.username is not None
        or parts.path.strip("/")
        or (
            not local
            and (
                parts.scheme != "https"
                or port not in (None, 443)
                or not (host == "planhat.com" or host.endswith(".planhat.com"))
            )
        )
    )
    if bad:
        raise InvalidSettingError(f"{shown} is not a Planhat API URL. Use {_URL_EXAMPLE}.")
    if local:
        netloc = f"[{host}]" if ":" in host else host
        return f"{parts.scheme}://{netloc}" + (f":{port}" if port else "")
    return f"https://{host}"


def check_planhat_token(token: str) -> str:
    """The token, if it is non-empty visible ASCII without spaces (surrounding spaces removed)."""
    token = token.strip() if isinstance(token, str) else ""
    if not token or not all("!" <= ch <= "~" for ch in token):
        raise InvalidSettingError(
            "The Planhat API token is empty or contains spaces or non-ASCII characters. Copy it "
            "again from Planhat: Settings → Service Accounts (Private Apps)."
        )
    return token


def extid(external_id: str | int) -> str:
    """The path key of a record by its `externalId`: `extid-<externalId>`."""
    return f"extid-{external_id}"


def srcid(source_id: str | int) -> str:
    """The path key of a record by its `sourceId`: `srcid-<sourceId>`."""
    return f"srcid-{source_id}"


def _key_segment(key: str) -> str:
    """A record key as a URL path segment: the prefix kept, the value part URL-encoded."""
    key = str(key)
    if not key:
        raise ValueError("a Planhat record key must not be empty")
    for prefix in ("extid-", "srcid-"):
        if key.startswith(prefix):
            return prefix + quote(key[len(prefix) :], safe="")
    return quote(key, safe="")


def _check_model(model: str) -> str:
    if not isinstance(model, str) or not _MODEL.match(model):
        raise ValueError(f"not a Planhat model name: {model!r} (e.g. 'companies', 'licenses')")
    return model


def _item_keys(item: Any, model: str) -> list[tuple[str, str]]:
    """The keys Planhat matches an item on, strongest first: `_id`, `sourceId`, `externalId`
    (and for end users `email`)."""
    if type(item) is not dict and not isinstance(item, Mapping):
        return []
    keys = []
    for key_name in ("_id", "sourceId", "externalId"):
        value = item.get(key_name)
        if value is not None and value != "":
            keys.append((key_name, str(value)))
    if model == "endusers" and isinstance(item.get("email"), str) and item["email"]:
        keys.append(("email", item["email"].strip().lower()))
    return keys


def _entry_message(entry: Any) -> str:
    if isinstance(entry, Mapping):
        for key in ("error", "message", "msg", "reason"):
            text = entry.get(key)
            if isinstance(text, str) and text:
                return text
    return str(entry)[:300]


def parse_bulk_answer(
    model: str,
    items: Sequence[Any],
    body: Any,
    status_code: int,
    *,
    offset: int = 0,
    item_keys: Sequence[list[tuple[str, str]]] | None = None,
) -> tuple[list[ItemOutcome], list[str]]:
    """One chunk's answer as one outcome per item (`index`: `offset` + the position in the
    chunk), plus the error messages Planhat sent that name no item.

    Planhat's answer lists error entries (`createdErrors`, `updatedErrors`,
    `permissionErrors`, usually with the failed `item`), the keys of inserted and updated
    records (`insertsKeys`, `updatesKeys`: `_id`, sometimes with the key that matched) and a
    count of unchanged ones (`nonupdates`). Items are matched to entries by their keys; what
    the keys cannot place is placed by the counts when only one reading is possible (e.g. all
    remaining items created), and is otherwise `unknown`, never guessed. `item_keys`: each
    item's `_item_keys`, when the caller has them already.
    """
    body = body if isinstance(body, Mapping) else {}
    n = len(items)
    status: list[Status | None] = [None] * n
    ids: list[str | None] = [None] * n
    errors: list[str | None] = [None] * n
    by_key: dict[tuple[str, str], list[int]] = {}
    if item_keys is None:
        item_keys = [_item_keys(item, model) for item in items]
    for i, keys in enumerate(item_keys):
        for key in keys:
            by_key.setdefault(key, []).append(i)

    def claim(keys: Iterable[tuple[str, str]]) -> int | None:
        for key in keys:
            for i in by_key.get(key, ()):
                if status[i] is None:
                    return i
        return None

    unattributed: list[str] = []
    for list_name in ("createdErrors", "updatedErrors", "permissionErrors"):
        for entry in body.get(list_name) or []:
            message = _entry_message(entry)
            index = None
            if isinstance(entry, Mapping):
                item = entry.get("item", entry.get("record", entry.get("data")))
                if isinstance(item, Mapping):
                    index = next(
                        (i for i in range(n) if status[i] is None and items[i] == item), None
                    )
                    if index is None:
                        index = claim(_item_keys(item, model))
                if index is None:
                    index = claim(_item_keys(entry, model))
            if index is None:
                unattributed.append(message)
            else:
                status[index], errors[index] = "failed", message

    unplaced: dict[str, list[str | None]] = {"created": [], "updated": []}
    placements: tuple[tuple[Status, str], ...] = (
        ("created", "insertsKeys"),
        ("updated", "updatesKeys"),
    )
    for outcome, list_name in placements:
        for entry in body.get(list_name) or []:
            keyed = type(entry) is dict or isinstance(entry, Mapping)
            record_id = entry.get("_id") if keyed else entry
            record_id = None if record_id is None else str(record_id)
            index = claim(_item_keys(entry, model)) if keyed else None
            if index is None:
                unplaced[outcome].append(record_id)
            else:
                status[index], ids[index] = outcome, record_id

    nonupdates = int(body.get("nonupdates") or 0)
    # An item sent with its `_id` is never created, and had it been updated its `_id` would be
    # in `updatesKeys` (placed above): left over, it is unchanged.
    for i in range(n):
        if not nonupdates:
            break
        if status[i] is None and isinstance(items[i], Mapping):
            if items[i].get("_id") not in (None, ""):
                status[i], ids[i] = "unchanged", str(items[i]["_id"])
                nonupdates -= 1

    rest = [i for i in range(n) if status[i] is None]
    counts: dict[Status, int] = {
        "created": len(unplaced["created"]),
        "updated": len(unplaced["updated"]),
        "unchanged": nonupdates,
        "failed": len(unattributed),
    }
    accounted = sum(counts.values())
    kinds = [k for k, v in counts.items() if v]
    if rest and accounted == len(rest) and len(kinds) == 1:
        kind = kinds[0]
        for j, i in enumerate(rest):
            status[i] = kind
            if kind in ("created", "updated"):
                ids[i] = unplaced[kind][j]
            elif kind == "failed":
                errors[i] = unattributed[j]
        if kind == "failed":
            unattributed = []
        rest = []
    if rest:
        if accounted == len(rest):
            why = (
                "Planhat saved this item but its answer does not say whether it created, updated "
                "or left it unchanged"
            )
        elif accounted < len(rest):
            why = (
                f"Planhat's answer accounts for only {accounted} of the {len(rest)} items it "
                "does not name by key, so this one may not have been saved"
            )
            if model == "endusers":
                why += " (Planhat drops end users whose company it cannot resolve; send companyId)"
        else:
            why = "Planhat's answer does not match the items sent"
        for i in rest:
            status[i], errors[i] = "unknown", why
    if status_code == 206 and all(s != "failed" for s in status) and not unattributed:
        unattributed.append("Planhat answered 206 (partial failure) without naming the failures")
    outcomes = [
        ItemOutcome(index=offset + i, status=_placed(status[i]), id=ids[i], error=errors[i])
        for i in range(n)
    ]
    return outcomes, unattributed


def _placed(status: Status | None) -> Status:
    if status is None:  # every item was placed above, if only as "unknown"
        raise AssertionError("an item left without an outcome")
    return status


class PlanhatClient(Closing):
    """Planhat's API for one tenant and token. Thread-safe; close it (or use `with`)."""

    def __init__(
        self,
        api_token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        allow_local_http: bool = False,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = parse_base_url(base_url, allow_local_http=allow_local_http)
        token = check_planhat_token(api_token)
        self._http = HttpClient(
            PLANHAT,
            headers={"authorization": f"Bearer {token}"},
            secrets=(token,),
            limiter=shared_limiter(PLANHAT, self.base_url, token, clock, sleep),
            transport=transport,
            timeout_s=timeout_s,
            retry=retry,
            clock=clock,
            sleep=sleep,
            rng=rng,
        )

    def __repr__(self) -> str:
        return f"PlanhatClient(base_url={self.base_url!r}, api_token='***')"

    def close(self) -> None:
        self._http.close()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The token this client sends, to scrub from log lines (never to show)."""
        return self._http.secrets

    # -- reads ---------------------------------------------------------------------------------
    def get(self, model: str, key: str) -> Record:
        """One record by `_id`, `extid(...)` or `srcid(...)`; `NotFoundError` if none."""
        url = f"{self.base_url}/{_check_model(model)}/{_key_segment(key)}"
        return self._record(self._http.request("GET", url))

    def iter_records(
        self,
        model: str,
        *,
        company_id: str | Sequence[str] | None = None,
        filters: Mapping[str, str] | None = None,
        select: Sequence[str] | None = None,
        sort: str = "_id",
    ) -> Iterator[Record]:
        """All records of `model` (e.g. "companies", "users"), page by page at the model's
        maximum size. `company_id` filters company-owned models; `filters` adds Planhat query
        filters (e.g. `{"email": …}` for end users, `{"type": "note"}` for conversations)."""
        url = f"{self.base_url}/{_check_model(model)}"
        params: dict[str, str | int] = {**(filters or {}), "sort": sort}
        if company_id is not None:
            params["companyId"] = (
                company_id if isinstance(company_id, str) else ",".join(company_id)
            )
        if select:
            params["select"] = ",".join(select)
        return self._offset_pages(url, params, PAGE_MAX.get(model, PAGE_MAX_DEFAULT))

    def iter_lean_companies(self) -> Iterator[Record]:
        """Every company in its lean form (`_id`, `externalId`, `sourceId`, `name`, `slug`):
        `GET /leancompanies`, the cheapest way to find companies by their keys."""
        return self._offset_pages(f"{self.base_url}/leancompanies", {}, PAGE_MAX["companies"])

    # -- single writes ---------------------------------------------------------------------------
    def create(self, model: str, record: Mapping[str, Any]) -> Record:
        """POST one record. Not retried once it may have reached Planhat (it could duplicate)."""
        url = f"{self.base_url}/{_check_model(model)}"
        saved = self._record(self._http.request("POST", url, json=dict(record)))
        if not saved.get("_id"):
            why = (
                " Planhat drops end users whose company it cannot resolve: send companyId."
                if model == "endusers"
                else ""
            )
            raise ApiError(
                f"Planhat answered POST /{model} but did not save the record (no _id in its "
                f"answer).{why}",
                service="Planhat",
                method="POST",
                path=f"/{model}",
                status=200,
            )
        return saved

    def update(self, model: str, key: str, fields: Mapping[str, Any]) -> Record:
        """PUT one record by `_id`, `extid(...)` or `srcid(...)`: only the fields given change."""
        url = f"{self.base_url}/{_check_model(model)}/{_key_segment(key)}"
        return self._record(self._http.request("PUT", url, json=dict(fields)))

    # -- bulk upsert -----------------------------------------------------------------------------
    def bulk_upsert(
        self, model: str, items: Iterable[Mapping[str, Any]], *, chunk_size: int = BULK_MAX
    ) -> BulkUpsertResult:
        """`PUT /<model>` in chunks of at most 5,000, one after another.

        Each item should carry the key Planhat matches on (`sourceId`, `externalId` or
        `_id`): an unkeyed item creates a record every time. A chunk whose items are all keyed
        is retried like any idempotent call; one with an unkeyed item is not retried once it
        may have reached Planhat. A chunk Planhat refuses as a whole (400) marks its items
        failed with Planhat's message and the next chunk still goes; other errors raise.
        """
        _check_model(model)
        if not 1 <= chunk_size <= BULK_MAX:
            raise ValueError(f"chunk_size must be between 1 and {BULK_MAX}")
        url = f"{self.base_url}/{model}"
        outcomes: list[ItemOutcome] = []
        unattributed: list[str] = []
        requests = 0
        partial = False
        iterator = iter(items)
        offset = 0
        while chunk := [dict(item) for item in itertools.islice(iterator, chunk_size)]:
            keys = [_item_keys(item, model) for item in chunk]
            keyed = all(keys)
            requests += 1
            try:
                response = self._http.request("PUT", url, json=chunk, idempotent=keyed)
            except BadRequestError as exc:
                outcomes.extend(
                    ItemOutcome(index=offset + i, status="failed", error=exc.message)
                    for i in range(len(chunk))
                )
                offset += len(chunk)
                continue
            partial = partial or response.status_code == 206
            chunk_outcomes, chunk_unattributed = parse_bulk_answer(
                model,
                chunk,
                self._http.json(response),
                response.status_code,
                offset=offset,
                item_keys=keys,
            )
            outcomes.extend(chunk_outcomes)
            unattributed.extend(chunk_unattributed)
            offset += len(chunk)
        return BulkUpsertResult(
            model=model,
            items=outcomes,
            requests=requests,
            partial=partial,
            unattributed_errors=unattributed,
        )

    # -- internals ---------------------------------------------------------------------------------
    def _record(self, response: httpx.Response) -> Record:
        body = self._http.json(response)
        return body if isinstance(body, dict) else {}

    def _offset_pages(
        self, url: str, params: Mapping[str, str | int], limit: int
    ) -> Iterator[Record]:
        # A page shorter than asked may mean that Planhat capped the page size below ours, and
        # stopping there would silently drop records; but a cap is a round size (30, 100, 500,
        # 2,000, ...), so a short page of another length is the last one. Otherwise the end is
        # the empty page after it (one more request, only then).
        path = httpx.URL(url).path
        offset = 0
        previous_first: Any = None
        while True:
            query = {**params, "limit": limit, "offset": offset}
            response = self._http.request("GET", url, params=query)
            page = self._http.json(response)
            if not isinstance(page, list):
                raise ApiError(
                    f"Planhat answered GET {path} with something other than a list of records.",
                    service="Planhat",
                    method="GET",
                    path=path,
                    status=response.status_code,
                )
            if not page:
                return
            first = page[0].get("_id") if isinstance(page[0], Mapping) else None
            if offset and first is not None and first == previous_first:
                raise ApiError(
                    f"Planhat returned the same page twice for GET {path} (offset ignored?); "
                    "stopped to avoid a loop.",
                    service="Planhat",
                    method="GET",
                    path=path,
                )
            previous_first = first
            yield from page
            offset += len(page)
            if len(page) < limit and (len(page) < 30 or len(page) % 10):
                return


__all__ = [
    "BULK_MAX",
    "BulkUpsertResult",
    "DEFAULT_BASE_URL",
    "ItemOutcome",
    "PAGE_MAX",
    "PAGE_MAX_DEFAULT",
    "PLANHAT",
    "PlanhatClient",
    "check_planhat_token",
    "extid",
    "parse_base_url",
    "parse_bulk_answer",
    "srcid",
]
