"""The Pipedrive client: v2 for deals, persons, organizations, pipelines, stages and field lists;
v1 for users/me, notes and webhooks (`../shared/reference/pipedrive-api.md` §0).

    with PipedriveClient("https://acme.pipedrive.com/v1", token) as pipedrive:
        me = pipedrive.check_connection()
        for deal in pipedrive.iter_deals(updated_since=cursor, status="won"):
            ...

* The connection is the user's company URL (as the seed says: "copy the URL from your browser
  and add /v1") and a 40-character token, both checked before any network call
  (`parse_company_url`, `check_token`). The token travels only in the `x-api-token` header.
* Lists are generators of records (plain dicts, as Pipedrive sends them), read at the maximum
  page size (500): v2 by cursor, v1 by offset. Many records by id: the `ids` filter, 100 ids
  per call. Memory stays at one page.
* Limits, retries, errors and request logging are `clients.http`'s, with Pipedrive's limits:
  a 2-second burst window reported in `x-ratelimit-*`, and a daily budget.

Its size: one class over every Pipedrive endpoint the product calls (v2 lists, v1 notes,
users and webhooks, the writes of the send direction), each a few lines over one paging
helper; split by endpoint it would be many files of one method.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict

from clients.errors import ApiError, InvalidSettingError, NotFoundError
from clients.http import (
    LOOPBACK_HOSTS,
    Clock,
    Closing,
    HttpClient,
    Params,
    RetryPolicy,
    ServiceProfile,
    Sleep,
    shared_limiter,
)

Record = dict[str, Any]

PAGE_SIZE = 500  # the maximum `limit` of v1 and v2 lists
IDS_PER_CALL = 100  # the maximum of v2's `ids` filter
TOKEN_LENGTH = 40

PIPEDRIVE = ServiceProfile(
    name="Pipedrive",
    window_s=2.0,
    remaining_header="x-ratelimit-remaining",
    reset_header="x-ratelimit-reset",
    limit_header="x-ratelimit-limit",
    # the company's daily token budget (refuses every request once 0), and the legacy fair-use
    # counter of POST/PUT requests per user (reference §5)
    daily_left_headers=("x-daily-ratelimit-token-remaining",),
    daily_write_left_headers=("x-daily-requests-left",),
    auth_help=(
        "The token is wrong, was deleted, or its user was removed from Pipedrive. Create a new "
        "token in Pipedrive under Settings → API (Personal preferences → API) and save it again."
    ),
    forbidden_help=(
        "The token's user lacks the permission for this, or the company's plan limit was "
        "reached; use the token of a Pipedrive admin user."
    ),
    rate_limit_help=(
        "Other integrations may be using the same token's burst limit, or the company's daily "
        "API budget may be spent (it resets at midnight, Pipedrive server time; see Company "
        "settings → API usage). Run the sync again later."
    ),
    daily_budget_help=(
        "Every request is refused until the budget resets at midnight, Pipedrive server time "
        "(usage: Company settings → API usage in Pipedrive). The sync catches up on its first "
        "run after the reset."
    ),
    blocked_help=(
        "Pipedrive does this when a client keeps calling after rate-limit (429) answers. Wait "
        "at least a few minutes before the next run, and check that no other integration "
        "hammers the API with the same token."
    ),
)

_URL_EXAMPLE = "https://yourcompany.pipedrive.com (optionally followed by /v1)"
_SUFFIXES = ("", "/v1", "/api/v1", "/api/v2")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _time_window(
    updated_since: datetime | str | None, updated_until: datetime | str | None
) -> dict[str, str | None]:
    """v2's `updated_since`/`updated_until` filters, RFC 3339."""
    return {
        "updated_since": rfc3339(updated_since) if updated_since is not None else None,
        "updated_until": rfc3339(updated_until) if updated_until is not None else None,
    }


class PipedriveUrls(BaseModel):
    """Where a Pipedrive account's API lives: the one place v1 and v2 base URLs are built."""

    model_config = ConfigDict(frozen=True)

    company_url: str  # e.g. https://acme.pipedrive.com
    v1: str  # company_url + /api/v1
    v2: str  # company_url + /api/v2


class PipedriveUser(BaseModel):
    """The token's user, from `GET /v1/users/me`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    name: str | None = None
    email: str | None = None
    company_id: int | None = None
    company_name: str | None = None
    company_domain: str | None = None

    @property
    def company_url(self) -> str | None:
        """`https://<company_domain>.pipedrive.com` (`company_domain` is a bare subdomain)."""
        return f"https://{self.company_domain}.pipedrive.com" if self.company_domain else None


def parse_company_url(url: str, *, allow_local_http: bool = False) -> PipedriveUrls:
    """The v1 and v2 base URLs of a company URL as a user pastes it.

    Accepted: `https://<company>.pipedrive.com` or `https://api.pipedrive.com`, followed by
    nothing, `/v1`, `/api/v1` or `/api/v2`, with or without trailing slashes. With
    `allow_local_http` (the sandbox), `http://127.0.0.1:<port>` and `http://localhost:<port>`
    too. Anything else raises `InvalidSettingError` with an accepted example. The message never
    repeats a query string or user info (a pasted `?api_token=` must not end up in a log).
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidSettingError(f"The Pipedrive company URL is empty. Use {_URL_EXAMPLE}.")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = (parts.hostname or "").lower()
    except ValueError:
        raise InvalidSettingError(
            f"The Pipedrive company URL is not a valid URL. Use {_URL_EXAMPLE}."
        ) from None
    # Only the scheme and host are ever repeated: a token pasted into the URL field, a path or
    # a query string could carry a secret.
    shown = f"{parts.scheme}://{host}"[:80] if parts.scheme and host else "The URL given"

    def refuse(why: str) -> InvalidSettingError:
        return InvalidSettingError(
            f"{shown} is not a Pipedrive company URL: {why}. Use {_URL_EXAMPLE}, e.g. "
            "https://acme.pipedrive.com/v1."
        )

    if parts.query or parts.fragment:
        raise refuse(
            "it has a query string or fragment (the API token goes in the token field, "
            "never in the URL)"
        )
    if parts.username is not None or parts.password is not None:
        raise refuse("it contains a user name or password")
    suffix = parts.path.rstrip("/").lower()
    if suffix not in _SUFFIXES:
        raise refuse("after the host it may only have /v1, /api/v1 or /api/v2")
    local = allow_local_http and host in LOOPBACK_HOSTS and parts.scheme in ("http", "https")
    if local:
        netloc = f"[{host}]" if ":" in host else host
        origin = f"{parts.scheme}://{netloc}" + (f":{port}" if port else "")
    else:
        if parts.scheme != "https":
            raise refuse("it must start with https://")
        if port not in (None, 443):
            raise refuse("it must not name a port")
        company, _, domain = host.partition(".")
        if domain != "pipedrive.com" or not _LABEL.match(company) or company == "www":
            raise refuse("its host must be <company>.pipedrive.com")
        origin = f"https://{host}"
    return PipedriveUrls(company_url=origin, v1=f"{origin}/api/v1", v2=f"{origin}/api/v2")


def check_token(token: str) -> str:
    """The token, if it is exactly 40 visible ASCII characters (surrounding spaces removed).

    Checked before any network call, like the seed's disabled save button. The message gives
    the length, never the token.
    """
    if not isinstance(token, str):
        raise InvalidSettingError("The Pipedrive API token must be text.")
    token = token.strip()
    if len(token) != TOKEN_LENGTH:
        raise InvalidSettingError(
            f"A Pipedrive API token is exactly {TOKEN_LENGTH} characters; the one given has "
            f"{len(token)}. Copy it again from Pipedrive: Settings → API "
            "(Personal preferences → API)."
        )
    if not all("!" <= ch <= "~" for ch in token):
        raise InvalidSettingError(
            "The Pipedrive API token contains spaces or characters that are not plain ASCII. "
            "Copy it again from Pipedrive: Settings → API (Personal preferences → API)."
        )
    return token


def rfc3339(value: datetime | str) -> str:
    """A time as Pipedrive's filters take it: whole-second RFC 3339 in UTC (`…T…Z`).

    A naive datetime is refused (Pipedrive's times are UTC; say so explicitly). Sub-second
    precision is dropped, which moves `updated_since` earlier, never later: nothing is missed.
    """
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("give a timezone-aware datetime (e.g. datetime.now(UTC))")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv(value: str | int | Iterable[str | int] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str | int):
        return str(value)
    joined = ",".join(str(v) for v in value)
    return joined or None


def _path(url: str) -> str:
    return httpx.URL(url).path


def _unique_ids(ids: Iterable[int | str]) -> list[int]:
    seen: dict[int, None] = {}
    for raw in ids:
        seen.setdefault(int(raw), None)
    return list(seen)


class ReadStart:
    """Pipedrive's clock when a paged read began: the `Date` header of the read's first page
    (whole seconds, rounded down by HTTP's format, so never later than the real moment).

    A cursor moved to the newest `update_time` a read saw must not pass this moment: a record
    changed on an already-read page while later pages were read would otherwise be skipped
    for good. Give one to a list call (`read_start=`) and read `at` once it has started."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at: datetime | None = None

    def see(self, response: httpx.Response) -> None:
        if self.at is not None:
            return
        try:
            when = parsedate_to_datetime(response.headers.get("date", ""))
        except (TypeError, ValueError):
            return
        if when.tzinfo is not None:
            self.at = when.astimezone(UTC)


class PipedriveClient(Closing):
    """Pipedrive's API for one company and token. Thread-safe; close it (or use `with`)."""

    def __init__(
        self,
        company_url: str,
        api_token: str,
        *,
        allow_local_http: bool = False,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.urls = parse_company_url(company_url, allow_local_http=allow_local_http)
        token = check_token(api_token)
        self._http = HttpClient(
            PIPEDRIVE,
            headers={"x-api-token": token},
            secrets=(token,),
            limiter=shared_limiter(PIPEDRIVE, self.urls.company_url, token, clock, sleep),
            transport=transport,
            timeout_s=timeout_s,
            retry=retry,
            clock=clock,
            sleep=sleep,
            rng=rng,
        )

    def __repr__(self) -> str:
        return f"PipedriveClient(company_url={self.urls.company_url!r}, api_token='***')"

    def close(self) -> None:
        self._http.close()

    @property
    def secrets(self) -> tuple[str, ...]:
        """The token this client sends, to scrub from log lines (never to show)."""
        return self._http.secrets

    # -- the connection ------------------------------------------------------------------------
    def check_connection(self) -> PipedriveUser:
        """`GET /v1/users/me`: the token's user. A wrong token raises `AuthError` (401)."""
        return PipedriveUser.model_validate(self._call("GET", f"{self.urls.v1}/users/me"))

    # -- v2 reads ------------------------------------------------------------------------------
    def iter_deals(
        self,
        *,
        updated_since: datetime | str | None = None,
        updated_until: datetime | str | None = None,
        status: str | Sequence[str] | None = None,
        pipeline_id: int | None = None,
        org_id: int | None = None,
        person_id: int | None = None,
        ids: Iterable[int] | None = None,
        sort_by: str | None = None,
        sort_direction: str | None = None,
        read_start: ReadStart | None = None,
    ) -> Iterator[Record]:
        """Deals (v2), all pages. `status`: open, won, lost, deleted (several allowed; none
        means all but deleted). `org_id`/`person_id`: the deals of one organization or person.
        `ids` fetches those deals in calls of 100 ids."""
        params = {
            **_time_window(updated_since, updated_until),
            "status": _csv(status),
            "pipeline_id": pipeline_id,
            "org_id": org_id,
            "person_id": person_id,
            "sort_by": sort_by,
            "sort_direction": sort_direction,
        }
        return self._iter_v2("/deals", params, ids, read_start)

    def iter_organizations(
        self,
        *,
        updated_since: datetime | str | None = None,
        updated_until: datetime | str | None = None,
        ids: Iterable[int] | None = None,
        sort_by: str | None = None,
        sort_direction: str | None = None,
        read_start: ReadStart | None = None,
    ) -> Iterator[Record]:
        """Organizations (v2), all pages; `ids` in calls of 100."""
        params = {
            **_time_window(updated_since, updated_until),
            "sort_by": sort_by,
            "sort_direction": sort_direction,
        }
        return self._iter_v2("/organizations", params, ids, read_start)

    def iter_persons(
        self,
        *,
        updated_since: datetime | str | None = None,
        updated_until: datetime | str | None = None,
        ids: Iterable[int] | None = None,
        org_id: int | None = None,
        deal_id: int | None = None,
        sort_by: str | None = None,
        sort_direction: str | None = None,
        read_start: ReadStart | None = None,
    ) -> Iterator[Record]:
        """Persons (v2), all pages; `ids` in calls of 100."""
        params = {
            **_time_window(updated_since, updated_until),
            "org_id": org_id,
            "deal_id": deal_id,
            "sort_by": sort_by,
            "sort_direction": sort_direction,
        }
        return self._iter_v2("/persons", params, ids, read_start)

    def iter_pipelines(self) -> Iterator[Record]:
        return self._iter_v2("/pipelines", {})

    def iter_stages(self, *, pipeline_id: int | None = None) -> Iterator[Record]:
        return self._iter_v2("/stages", {"pipeline_id": pipeline_id})

    def iter_deal_fields(self) -> Iterator[Record]:
        return self._iter_v2("/dealFields", {})

    def iter_organization_fields(self) -> Iterator[Record]:
        return self._iter_v2("/organizationFields", {})

    def iter_person_fields(self) -> Iterator[Record]:
        return self._iter_v2("/personFields", {})

    def get_deal(self, deal_id: int) -> Record:
        """One deal (v2, 1 token). A missing deal raises `NotFoundError`."""
        return self._get_one(f"{self.urls.v2}/deals/{int(deal_id)}")

    def get_organization(self, org_id: int) -> Record:
        return self._get_one(f"{self.urls.v2}/organizations/{int(org_id)}")

    def get_person(self, person_id: int) -> Record:
        return self._get_one(f"{self.urls.v2}/persons/{int(person_id)}")

    def get_note(self, note_id: int) -> Record:
        """One note (v1 only). A missing note raises `NotFoundError`."""
        return self._get_one(f"{self.urls.v1}/notes/{int(note_id)}")

    # -- v1 reads --------------------------------------------------------------------------------
    def iter_notes(
        self,
        *,
        deal_id: int | None = None,
        org_id: int | None = None,
        person_id: int | None = None,
        updated_since: datetime | str | None = None,
        sort: str | None = None,
        read_start: ReadStart | None = None,
    ) -> Iterator[Record]:
        """Notes (v1 only), all pages; filter by deal, organization or person. v1's note times
        are `YYYY-MM-DD HH:MM:SS` UTC, but its `updated_since` takes RFC 3339."""
        params = {
            "deal_id": deal_id,
            "org_id": org_id,
            "person_id": person_id,
            "updated_since": rfc3339(updated_since) if updated_since is not None else None,
            "sort": sort,
        }
        return self._iter_v1("/notes", params, read_start)

    def iter_users(self) -> Iterator[Record]:
        """Every user of the company (v1 `GET /users`, active or not): owners are mapped to
        Planhat team members by their email."""
        return self._iter_v1("/users", {})

    def list_webhooks(self) -> list[Record]:
        """The company's webhooks (v1; at most 40 per user). Records carry the basic-auth
        password Pipedrive stores: do not log them."""
        return list(self._iter_v1("/webhooks", {}))

    # -- writes (the send direction) ---------------------------------------------------------------
    def create_organization(self, fields: Mapping[str, Any]) -> Record:
        """POST (v2; needs `name`). Not retried once it may have reached Pipedrive."""
        return self._call("POST", f"{self.urls.v2}/organizations", json=dict(fields))

    def update_organization(self, org_id: int, fields: Mapping[str, Any]) -> Record:
        """PATCH (v2): only the fields given change; custom fields under `custom_fields`."""
        return self._call("PATCH", f"{self.urls.v2}/organizations/{int(org_id)}", json=dict(fields))

    def create_person(self, fields: Mapping[str, Any]) -> Record:
        return self._call("POST", f"{self.urls.v2}/persons", json=dict(fields))

    def update_person(self, person_id: int, fields: Mapping[str, Any]) -> Record:
        return self._call("PATCH", f"{self.urls.v2}/persons/{int(person_id)}", json=dict(fields))

    def create_deal(self, fields: Mapping[str, Any]) -> Record:
        return self._call("POST", f"{self.urls.v2}/deals", json=dict(fields))

    def update_deal(self, deal_id: int, fields: Mapping[str, Any]) -> Record:
        return self._call("PATCH", f"{self.urls.v2}/deals/{int(deal_id)}", json=dict(fields))

    def create_note(self, fields: Mapping[str, Any]) -> Record:
        """POST /v1/notes: `content` (HTML) and one of deal_id, person_id, org_id, …"""
        return self._call("POST", f"{self.urls.v1}/notes", json=dict(fields))

    def update_note(self, note_id: int, fields: Mapping[str, Any]) -> Record:
        """PUT /v1/notes/{id} (notes have no PATCH; the keys given change)."""
        return self._call("PUT", f"{self.urls.v1}/notes/{int(note_id)}", json=dict(fields))

    def create_webhook(
        self,
        *,
        subscription_url: str,
        name: str,
        http_auth_user: str,
        http_auth_password: str,
        event_object: str = "deal",
        event_action: str = "*",
        user_id: int | None = None,
    ) -> Record:
        """A webhook (version 2.0, basic auth, a name). Not retried once it may have reached
        Pipedrive; look for an existing one with `list_webhooks` before creating another."""
        body: Record = {
            "subscription_url": subscription_url,
            "event_action": event_action,
            "event_object": event_object,
            "name": name,
            "version": "2.0",
            "http_auth_user": http_auth_user,
            "http_auth_password": http_auth_password,
        }
        if user_id is not None:
            body["user_id"] = int(user_id)
        return self._call("POST", f"{self.urls.v1}/webhooks", json=body)

    def delete_webhook(self, webhook_id: int) -> None:
        self._call("DELETE", f"{self.urls.v1}/webhooks/{int(webhook_id)}")

    # -- internals -------------------------------------------------------------------------------
    def _envelope(
        self,
        method: str,
        url: str,
        params: Params | None = None,
        json: Any = None,
        read_start: ReadStart | None = None,
    ) -> Record:
        response = self._http.request(method, url, params=params, json=json)
        if read_start is not None:
            read_start.see(response)
        body = self._http.json(response)
        if not isinstance(body, dict) or body.get("success") is False:
            path = response.request.url.path
            detail = body.get("error") if isinstance(body, dict) else None
            raise ApiError(
                self._http.scrub(
                    f"Pipedrive answered {method} {path} with HTTP {response.status_code} but "
                    f"did not report success{': ' + str(detail) if detail else ''}."
                ),
                service="Pipedrive",
                method=method,
                path=path,
                status=response.status_code,
            )
        return body

    def _call(self, method: str, url: str, json: Any = None) -> Record:
        data = self._envelope(method, url, json=json).get("data")
        return data if isinstance(data, dict) else {}

    def _get_one(self, url: str) -> Record:
        data = self._envelope("GET", url).get("data")
        if not isinstance(data, dict):
            raise NotFoundError(
                f"Pipedrive returned no record for GET {_path(url)}.",
                service="Pipedrive",
                method="GET",
                path=_path(url),
                status=200,
            )
        return data

    def _iter_v2(
        self,
        path: str,
        params: Mapping[str, Any],
        ids: Iterable[int] | None = None,
        read_start: ReadStart | None = None,
    ) -> Iterator[Record]:
        base = {k: v for k, v in params.items() if v is not None}
        if ids is None:
            yield from self._cursor_pages(f"{self.urls.v2}{path}", base, read_start)
            return
        wanted = _unique_ids(ids)
        for start in range(0, len(wanted), IDS_PER_CALL):
            chunk = wanted[start : start + IDS_PER_CALL]
            yield from self._cursor_pages(
                f"{self.urls.v2}{path}", {**base, "ids": ",".join(map(str, chunk))}, read_start
            )

    def _cursor_pages(
        self, url: str, params: Mapping[str, Any], read_start: ReadStart | None = None
    ) -> Iterator[Record]:
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            query = {**params, "limit": PAGE_SIZE, "cursor": cursor}
            body = self._envelope("GET", url, params=query, read_start=read_start)
            yield from body.get("data") or []
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return
            if cursor in seen:
                raise ApiError(
                    f"Pipedrive returned the same page cursor twice for GET {_path(url)}; "
                    "stopped to avoid a loop.",
                    service="Pipedrive",
                    method="GET",
                    path=_path(url),
                )
            seen.add(cursor)

    def _iter_v1(
        self, path: str, params: Mapping[str, Any], read_start: ReadStart | None = None
    ) -> Iterator[Record]:
        url = f"{self.urls.v1}{path}"
        base = {k: v for k, v in params.items() if v is not None}
        start = 0
        while True:
            query = {**base, "start": start, "limit": PAGE_SIZE}
            body = self._envelope("GET", url, params=query, read_start=read_start)
            data = body.get("data") or []
            yield from data
            extra = body.get("additional_data") or {}
            pagination = extra.get("pagination") or extra
            if not pagination.get("more_items_in_collection"):
                return
            next_start = pagination.get("next_start")
            next_start = start + len(data) if next_start is None else int(next_start)
            if next_start <= start:
                raise ApiError(
                    f"Pipedrive's paging did not advance on GET /api/v1{path} (start {start});"
                    " stopped to avoid a loop.",
                    service="Pipedrive",
                    method="GET",
                    path=f"/api/v1{path}",
                )
            start = next_start


__all__ = [
    "IDS_PER_CALL",
    "PAGE_SIZE",
    "PIPEDRIVE",
    "PipedriveClient",
    "PipedriveUrls",
    "PipedriveUser",
    "ReadStart",
    "check_token",
    "parse_company_url",
    "rfc3339",
]
