"""The store's value types: what goes in and what comes out, independent of the tables.

Plain frozen dataclasses (cheap enough for a backfill's tens of thousands of links), plus the
small pure functions the tasks and the receiver need to agree with the store on:
`values_hash` (echo suppression), `as_pipedrive_id` (the id rule), `token_fingerprint` (the
connection). The webhook inbox's dedupe key is the receiver's
(`deployments.events.parse_delivery`): the store takes it as given.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import orjson

JsonValue = Any  # a value `json.dumps` accepts: None, bool, int, float, str, list, dict
FieldValues = Mapping[str, JsonValue]

Action = Literal["created", "updated", "unchanged", "skipped", "conflict", "failed"]
ACTIONS: tuple[Action, ...] = get_args(Action)
PROBLEM_ACTIONS: tuple[Action, ...] = ("skipped", "conflict", "failed")

InboxStatus = Literal["pending", "processing", "done", "failed"]
INBOX_STATUSES: tuple[InboxStatus, ...] = get_args(InboxStatus)

FINGERPRINT_PREFIX = "sha256:"
FINGERPRINT_HEX = 16
_FINGERPRINT = re.compile(rf"^{FINGERPRINT_PREFIX}[0-9a-f]{{{FINGERPRINT_HEX}}}$")
_OBJECT_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ID_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: "٤٢".isdigit() is True

MAX_REASON = 2000  # characters kept of a reason or an error message


# -- helpers shared with the tasks ---------------------------------------------------------------
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_SCALARS = frozenset({str, int, bool, type(None)})
_NESTED = frozenset({dict, list})


def _without_floats(value: Any) -> bool:
    """True when `value` is made only of dicts keyed by strings, lists, strings, integers,
    booleans and None (exact types): then orjson writes exactly what Python's json writes.
    (Every link's values pass here: leaves are checked in the loop, not by a call each.)"""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            inner = type(item)
            if inner not in _SCALARS and (inner not in _NESTED or not _without_floats(item)):
                return False
        return True
    if kind is list:
        for item in value:
            inner = type(item)
            if inner not in _SCALARS and (inner not in _NESTED or not _without_floats(item)):
                return False
        return True
    return kind in _SCALARS


def _fast_canonical(values: Any) -> bytes | None:
    """`canonical_json`'s text as UTF-8, written by orjson, when that is byte for byte Python's
    (no floats, no integer beyond 64 bits, no lone surrogate); None otherwise."""
    if _without_floats(values):
        try:
            return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # an integer beyond 64 bits, a lone surrogate
            pass
    return None


def canonical_json(values: FieldValues) -> str:
    """The one JSON text of `values` that hashing uses: keys sorted, no spaces, UTF-8 kept:
    Python's `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`.

    Values without floats (nearly all) are written by orjson, whose text is then the same byte
    for byte and several times faster to make; anything else (floats, whose exponent forms
    differ, integers beyond 64 bits, lone surrogates) by Python's json.

    Raises `ValueError` for values JSON cannot carry faithfully (NaN, infinities, sets,
    datetimes...): convert them to strings or numbers first.
    """
    fast = _fast_canonical(values)
    return fast.decode() if fast is not None else _python_canonical(values)


def _python_canonical(values: Any) -> str:
    """`canonical_json`'s text as Python's json writes it (what `_fast_canonical` declines)."""
    try:
        return _CANONICAL.encode(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"field values must be plain JSON: {exc}") from None


def values_hash(values: JsonValue) -> str:
    """THE hash of synced values, for echo suppression ("no echo"): sha256 hex of
    `canonical_json`. The store keeps it beside a link's last-synced values (a whole record);
    `mappings.values.field_hash` is this hash of one field's canonical value. Equal values give
    equal hashes whatever the key order, so a task can tell "nothing changed since the last
    sync" without comparing field by field. Raises `ValueError` like `canonical_json`."""
    fast = _fast_canonical(values)
    text = fast if fast is not None else _python_canonical(values).encode("utf-8")
    return hashlib.sha256(text).hexdigest()


def token_fingerprint(token: str) -> str:
    """`sha256:` and the first 16 hex digits of the token's SHA-256: enough to notice that the
    token changed, useless for recovering it. The only form in which a token reaches the store.
    """
    if not isinstance(token, str) or not token:
        raise ValueError("token must be a non-empty string")
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    return FINGERPRINT_PREFIX + digest[:FINGERPRINT_HEX]


# -- validation ----------------------------------------------------------------------------------
def check_object_type(object_type: str) -> str:
    """Object types are short lowercase names ("organization", "person", "deal", "note"...)."""
    if not isinstance(object_type, str) or not _OBJECT_TYPE.match(object_type):
        raise ValueError(
            f"object type must be a lowercase name of at most 32 characters, got {object_type!r}"
        )
    return object_type


def as_pipedrive_id(value: Any) -> int | None:
    """THE Pipedrive id rule: a positive integer. Numeric strings (ASCII digits, surrounding
    spaces ignored: "42", " 42") and whole floats (42.0, as a JSON number may arrive)
    are accepted and converted; bools, zero, negatives, fractions and anything else are not
    ids (None). `check_pipedrive_id` is the raising twin."""
    if type(value) is int:  # most ids, as the APIs give them (a bool's type is bool)
        return value if value > 0 else None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not _ID_DIGITS.fullmatch(text):
            return None
        value = int(text)
    elif isinstance(value, float):
        if not value.is_integer():  # NaN and infinities are not integers either
            return None
        value = int(value)
    if isinstance(value, int) and value > 0:
        return value
    return None


def check_pipedrive_id(value: Any) -> int:
    """`as_pipedrive_id`, raising `ValueError` for a value that is not a Pipedrive id."""
    pipedrive_id = as_pipedrive_id(value)
    if pipedrive_id is None:
        raise ValueError(f"Pipedrive id must be a positive integer, got {value!r}")
    return pipedrive_id


def check_planhat_id(value: Any) -> str | None:
    """Planhat ids (`_id`) are non-empty strings of at most 64 characters, or None (unknown)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValueError(f"Planhat id must be a string of 1-64 characters, got {value!r}")
    return value


def aware_utc(value: datetime, what: str) -> datetime:
    """A timezone-aware datetime in UTC; naive datetimes are refused (their zone is a guess)."""
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


def clip(text: str | None) -> str | None:
    if text is None:
        return None
    text = str(text)
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


# -- links ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkRow:
    """One record to link, as the caller writes it after a successful push.

    `values` are the record's mapped fields as both sides now hold them (the full set the
    caller considers in sync: they replace what was stored), JSON values, `None` included.
    `planhat_id` may be None when Planhat's answer did not name the `_id`; a known id is
    then kept.
    """

    pipedrive_id: int
    planhat_id: str | None
    values: FieldValues = field(default_factory=dict)

    @classmethod
    def coerce(cls, row: LinkRow | Mapping[str, Any]) -> LinkRow:
        if isinstance(row, LinkRow):
            return row
        if not isinstance(row, Mapping):
            raise ValueError(f"a link row is a LinkRow or a mapping, got {type(row).__name__}")
        unknown = set(row) - {"pipedrive_id", "planhat_id", "values"}
        if unknown:
            raise ValueError(f"unknown link row keys: {sorted(unknown)}")
        return cls(row["pipedrive_id"], row.get("planhat_id"), row.get("values") or {})


@dataclass(frozen=True, slots=True)
class Link:
    """A stored link: the pair of ids and what was last synced between them."""

    object_type: str
    pipedrive_id: int
    planhat_id: str | None
    values: dict[str, JsonValue]
    values_hash: str
    synced_at: datetime


@dataclass(frozen=True, slots=True)
class LinkConflict:
    """A row `upsert_links` did not write: its Planhat id is already linked to another
    Pipedrive record of the same object type (links are one-to-one)."""

    row: LinkRow
    linked_pipedrive_id: int

    @property
    def reason(self) -> str:
        return (
            f"Planhat id {self.row.planhat_id} is already linked to Pipedrive id "
            f"{self.linked_pipedrive_id}"
        )


@dataclass(frozen=True, slots=True)
class LinkWrite:
    """What `upsert_links` did: rows written (inserted or updated) and rows refused."""

    written: int
    conflicts: list[LinkConflict]


# -- cursors -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cursor:
    """A stream's position: every record updated before `value` has been pushed; `seen_ids`
    are the ids already pushed whose update time equals `value` (same-second de-dup)."""

    stream: str
    value: datetime
    seen_ids: frozenset[int | str]
    updated_at: datetime


# -- inbox ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InboxItem:
    """One stored webhook delivery."""

    id: int
    dedupe_key: str
    payload: dict[str, Any]
    status: InboxStatus
    attempts: int
    received_at: datetime
    last_error: str | None = None
    claimed_at: datetime | None = None
    processed_at: datetime | None = None
    #: the Pipedrive deal of a deal notification (None for other objects)
    deal_id: int | None = None
    #: when this notification's event was sent to start a deal-sync run (None: it was not)
    run_requested_at: datetime | None = None


# -- connection ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Connection:
    """The Pipedrive connection as last verified. It holds the token's fingerprint, never the
    token (a value that is not a fingerprint is refused), and a *reference* to where the
    receiver's basic-auth credential is kept (e.g. a Prefect Secret block name), never the
    credential."""

    company_url: str
    token_fingerprint: str
    webhook_id: int | None = None
    receiver_credential_ref: str | None = None
    verified_at: datetime | None = None
    name: str = "default"
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.company_url, str) or not self.company_url:
            raise ValueError("company_url must be a non-empty string")
        if not isinstance(self.token_fingerprint, str) or not _FINGERPRINT.match(
            self.token_fingerprint
        ):
            raise ValueError(
                "token_fingerprint must come from token_fingerprint(token) "
                "('sha256:' and 16 hex digits); the store never keeps a token"
            )
        if self.webhook_id is not None and (
            isinstance(self.webhook_id, bool) or not isinstance(self.webhook_id, int)
        ):
            raise ValueError(f"webhook_id must be an integer, got {self.webhook_id!r}")
        if self.verified_at is not None:
            object.__setattr__(self, "verified_at", aware_utc(self.verified_at, "verified_at"))
        if not isinstance(self.name, str) or not self.name or len(self.name) > 64:
            raise ValueError("connection name must be a string of 1-64 characters")

    @classmethod
    def for_token(
        cls,
        company_url: str,
        token: str,
        *,
        webhook_id: int | None = None,
        receiver_credential_ref: str | None = None,
        verified_at: datetime | None = None,
        name: str = "default",
    ) -> Connection:
        """A connection for `token`, keeping only its fingerprint."""
        return cls(
            company_url=company_url,
            token_fingerprint=token_fingerprint(token),
            webhook_id=webhook_id,
            receiver_credential_ref=receiver_credential_ref,
            verified_at=verified_at,
            name=name,
        )

    def matches(self, company_url: str, token: str) -> bool:
        """True when `company_url` and `token` are the ones this connection was verified with
        (the connect flow tests them against Pipedrive again only when this is False)."""
        return self.company_url == company_url and self.token_fingerprint == token_fingerprint(
            token
        )


# -- run log -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunAction:
    """What a run did with one record: `created`, `updated`, `unchanged`, `skipped`,
    `conflict` or `failed`, with the reason (expected for the last three)."""

    object_type: str
    action: Action
    pipedrive_id: int | None = None
    planhat_id: str | None = None
    reason: str | None = None

    @classmethod
    def coerce(cls, row: RunAction | Mapping[str, Any]) -> RunAction:
        if isinstance(row, RunAction):
            return row
        if not isinstance(row, Mapping):
            raise ValueError(f"a run action is a RunAction or a mapping, got {type(row).__name__}")
        unknown = set(row) - {"object_type", "action", "pipedrive_id", "planhat_id", "reason"}
        if unknown:
            raise ValueError(f"unknown run action keys: {sorted(unknown)}")
        return cls(
            object_type=row["object_type"],
            action=row["action"],
            pipedrive_id=row.get("pipedrive_id"),
            planhat_id=row.get("planhat_id"),
            reason=row.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class RunLogEntry:
    """A stored run-log line."""

    run_id: str
    object_type: str
    action: Action
    pipedrive_id: int | None
    planhat_id: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ReasonCount:
    object_type: str
    action: Action
    reason: str | None
    count: int


@dataclass(frozen=True, slots=True)
class RunReport:
    """A run's outcome, built from its run log.

    `counts[object_type][action]` is the number of records (each record counted once, with
    the last action logged for it in this run); `reasons` groups the skips, conflicts and
    failures by reason, most frequent first; `problems` lists them one by one (at most the
    `limit` asked for; `problems_total` says how many there are).
    """

    run_id: str
    counts: dict[str, dict[str, int]]
    reasons: list[ReasonCount]
    problems: list[RunLogEntry]
    problems_total: int

    def total(self, action: Action | None = None, object_type: str | None = None) -> int:
        """Records counted, optionally of one action and/or one object type."""
        return sum(
            n
            for obj, by_action in self.counts.items()
            if object_type in (None, obj)
            for act, n in by_action.items()
            if action in (None, act)
        )

    def counts_table(self) -> list[dict[str, Any]]:
        """One row per object type with a column per action and a total: the shape Prefect's
        `create_table_artifact(table=...)` takes."""
        rows = []
        for obj in sorted(self.counts):
            row: dict[str, Any] = {"object": obj}
            row.update({act: self.counts[obj].get(act, 0) for act in ACTIONS})
            row["total"] = sum(self.counts[obj].values())
            rows.append(row)
        return rows

    def problems_table(self) -> list[dict[str, Any]]:
        """One row per skip, conflict or failure, with its ids and reason."""
        return [
            {
                "object": p.object_type,
                "action": p.action,
                "pipedrive_id": p.pipedrive_id,
                "planhat_id": p.planhat_id,
                "reason": p.reason or "",
            }
            for p in self.problems
        ]


def now_utc() -> datetime:
    return datetime.now(UTC)
