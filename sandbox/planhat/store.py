"""The sandbox Planhat's data: four models in memory, with Planhat's keys, rules and derivations.

Pure Python, no HTTP (`sandbox.planhat.app` serves it). Facts come from
`reference/planhat-api.md`; where that file says [U] the choice made here is marked `[U]`.

* Records are plain dicts in Planhat's read shape, keyed by `_id` (24-hex, deterministic from a
  counter), with `createdAt`/`updatedAt` as ISO strings with milliseconds and `Z`.
* Indexes per model: `_id`, `sourceId` (unique per model), `(companyId, externalId)` (unique per
  company; companies: `externalId` unique overall), records per company, and for companies
  their related domains and slugs.
* Bulk upsert matches on `_id`, then `sourceId`, then `externalId` (scoped to the item's
  company on company-owned models); an unmatched item creates a record when the model's
  required fields are present. Conversations (notes) follow their own documented rule: an
  update needs `_id`, so an item without one always creates a record, and their `sourceId`/
  `externalId` are not unique (whether Planhat honours them as match keys there is
  unverified: the sandbox takes the rule that makes a client's mistake visible, a duplicate).
  End users whose company cannot be resolved are dropped silently, as Planhat does.
* A write replaces the stored dict with a new one (copy on write), so a dict handed out for
  serialisation never changes under the serialiser; every store method runs under `lock`.
* `listeners` are called, under the lock, with `(model, old, new)` after every create (`old`
  None) and every update that changed a value of the record written (the sandbox's
  Automations, `sandbox.planhat.automations`); seeding, deletes and the values derived on
  other records (rollups, `companyName`) call none. A listener must be quick and not raise.

Its size: the four Planhat models' rules (keys, matching, validation, derived fields,
rollups) share one store and its lock; split, every rule would cross modules.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

Record = dict[str, Any]
#: `(model, old record or None when created, new record)`, after a create or a changing update.
Listener = Callable[[str, Record | None, Record], None]

MODELS = ("companies", "endusers", "licenses", "conversations")
COMPANY_OWNED = frozenset({"endusers", "licenses", "conversations"})
#: (default, maximum) page size of `GET /<model>`.
PAGE_SIZES = {
    "companies": (100, 5000),
    "endusers": (100, 2000),
    "licenses": (100, 2000),
    "conversations": (30, 2000),
    "users": (100, 10000),
}
MAX_BULK = 5000
#: Built-in conversation types that must not be created over the API (P9).
RESERVED_TYPES = frozenset({"email", "chat", "ticket", "call"})

# Fields the API sets itself: whatever a client sends for them is ignored.
_SYSTEM_FIELDS = frozenset({"_id", "createdAt", "updatedAt", "createDate", "__v", "companyName"})
_COMPUTED = {
    "companies": frozenset({"mrr", "arr"}),
    "endusers": frozenset(),
    "licenses": frozenset({"length", "renewalDate", "arr"}),
    "conversations": frozenset(),
}
_DATE_FIELDS = {
    "companies": (),
    "endusers": (),
    "licenses": ("fromDate", "toDate"),
    "conversations": ("date", "outDate"),
}
_KEY_FIELDS = ("sourceId", "externalId")
_SLUG_DROP = re.compile(r"[^a-z0-9]+")


class ItemError(ValueError):
    """Planhat refuses one item (a bulk error entry, or a 400 for a single write)."""


def _result_keys(record: Record) -> Record:
    """An `insertsKeys`/`updatesKeys` entry: the `_id` and the keys the record carries.

    Planhat's answers name the matching key beside `_id` (e.g. `{"_id", "externalId"}`, as
    public SDKs' fixtures show), which is what lets a caller map outcomes to its input items.
    """
    keys = {"_id": record["_id"]}
    for field in ("sourceId", "externalId"):
        if record.get(field) not in (None, ""):
            keys[field] = record[field]
    return keys


def empty_bulk_result() -> dict[str, Any]:
    return {
        "created": 0,
        "createdErrors": [],
        "insertsKeys": [],
        "updated": 0,
        "updatedErrors": [],
        "updatesKeys": [],
        "nonupdates": 0,
        "modified": [],
        "upsertedIds": [],
        "permissionErrors": [],
    }


# --- time and dates ---------------------------------------------------------------------------


def iso_ms(ms: int) -> str:
    """Epoch milliseconds → `2025-03-01T09:30:00.000Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class MonotonicClock:
    """Wall-clock milliseconds that strictly increase from one call to the next."""

    def __init__(self) -> None:
        self._last = 0

    def now_ms(self) -> int:
        ms = time.time_ns() // 1_000_000
        if ms <= self._last:
            ms = self._last + 1
        self._last = ms
        return ms


@lru_cache(maxsize=65536)
def _parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_date(value: Any, field: str) -> datetime:
    """An ISO date or datetime (or epoch milliseconds) as an aware UTC datetime."""
    if isinstance(value, bool):
        raise ItemError(f"{field} must be a date")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if not isinstance(value, str) or not value.strip():
        raise ItemError(f"{field} must be a date")
    parsed = _parse_iso(value)
    if parsed is None:
        raise ItemError(f"{field} is not a valid date: {value!r}")
    return parsed


def format_date(d: datetime) -> str:
    """`2025-03-01T00:00:00.000Z` (Planhat's stored form of a date)."""
    return (
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
        f".{d.microsecond // 1000:03d}Z"
    )


def _add_months(value: datetime, months: int) -> datetime:
    month0 = value.month - 1 + months
    year, month = value.year + month0 // 12, month0 % 12 + 1
    for day in (value.day, 30, 29, 28):
        try:
            return value.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise AssertionError("unreachable")


@lru_cache(maxsize=65536)
def months_between(start: datetime, end: datetime) -> float:
    """Calendar months from `start` to `end`, with a fraction for the part month."""
    whole = (end.year - start.year) * 12 + (end.month - start.month)
    anchor = _add_months(start, whole)
    if anchor > end:
        whole -= 1
        anchor = _add_months(start, whole)
    following = _add_months(start, whole + 1)
    return whole + (end - anchor) / (following - anchor)


def _number(value: float) -> float | int:
    """Round to cents; a whole number comes back as an int (`1250`, not `1250.0`)."""
    value = round(value, 2)
    return int(value) if float(value).is_integer() else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _key(value: Any) -> str | None:
    """A `sourceId`/`externalId` as stored: strings, numbers cast to strings, empty = none."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value or None
    return None


def _domain(value: Any) -> str | None:
    """`https://www.Acme.com/about` → `acme.com`."""
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0].split(":", 1)[0]
    if value.startswith("www."):
        value = value[4:]
    return value or None


# --- one model --------------------------------------------------------------------------------


class Collection:
    """The records of one model and their indexes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.owned = name in COMPANY_OWNED
        self.records: dict[str, Record] = {}
        self.by_source: dict[str, str] = {}
        # (companyId or "" for companies, externalId) -> _id
        self.by_ext: dict[tuple[str, str], str] = {}
        # externalId -> ids in creation order (for `extid-` lookups of company-owned models)
        self.ext_any: dict[str, dict[str, None]] = {}
        # companyId -> ids of this model's records under that company
        self.by_company: dict[str, dict[str, None]] = {}

    def scope(self, record: Record) -> str:
        return (record.get("companyId") or "") if self.owned else ""

    def add_index(self, record: Record) -> None:
        rid = record["_id"]
        source = _key(record.get("sourceId"))
        if source is not None:
            self.by_source[source] = rid
        ext = _key(record.get("externalId"))
        if ext is not None:
            self.by_ext[(self.scope(record), ext)] = rid
            self.ext_any.setdefault(ext, {})[rid] = None
        if self.owned and isinstance(record.get("companyId"), str):
            self.by_company.setdefault(record["companyId"], {})[rid] = None

    def drop_index(self, record: Record) -> None:
        rid = record["_id"]
        source = _key(record.get("sourceId"))
        if source is not None and self.by_source.get(source) == rid:
            del self.by_source[source]
        ext = _key(record.get("externalId"))
        if ext is not None:
            scoped = (self.scope(record), ext)
            if self.by_ext.get(scoped) == rid:
                del self.by_ext[scoped]
            ids = self.ext_any.get(ext)
            if ids is not None:
                ids.pop(rid, None)
                if not ids:
                    del self.ext_any[ext]
        if self.owned and isinstance(record.get("companyId"), str):
            ids = self.by_company.get(record["companyId"])
            if ids is not None:
                ids.pop(rid, None)
                if not ids:
                    del self.by_company[record["companyId"]]

    def find(self, key: str) -> Record | None:
        """A record by `_id`, `extid-<externalId>` or `srcid-<sourceId>` (first one, oldest)."""
        if key.startswith("extid-"):
            ids = self.ext_any.get(key[6:])
            return self.records[next(iter(ids))] if ids else None
        if key.startswith("srcid-"):
            rid = self.by_source.get(key[6:])
            return self.records[rid] if rid is not None else None
        return self.records.get(key)


# --- the store --------------------------------------------------------------------------------


class PlanhatStore:
    """Companies, end users, licenses and conversations of one Planhat tenant, plus its users."""

    def __init__(self, seed: Any, id_prefix: int = 0x66A1C3F0) -> None:
        self.lock = threading.RLock()
        self.clock = MonotonicClock()
        self._id_prefix = id_prefix
        self._counter = 0
        self.cols: dict[str, Collection] = {name: Collection(name) for name in MODELS}
        self.by_domain: dict[str, dict[str, None]] = {}
        self.slugs: dict[str, str] = {}
        self.users: list[Record] = []
        self.conversation_types: set[str] = {"note"}
        self._dirty_companies: set[str] = set()
        self._reserved: set[str] = set()
        self.listeners: list[Listener] = []
        self._load(seed)

    # --- ids and seed ---

    def new_id(self) -> str:
        while True:
            self._counter += 1
            rid = f"{self._id_prefix:08x}{self._counter:016x}"
            if rid not in self._reserved:
                return rid

    def _load(self, seed: Any) -> None:
        now = iso_ms(self.clock.now_ms())
        seeded = {
            model: [dict(raw) for raw in getattr(seed, model, None) or []]
            for model in (*MODELS, "users")
        }
        # No generated id may take one that a seed record already has.
        self._reserved = {r["_id"] for records in seeded.values() for r in records if "_id" in r}
        for user in seeded["users"]:
            user.setdefault("_id", self.new_id())
            self.users.append(user)
        for model in MODELS:
            for record in sorted(seeded[model], key=lambda r: "_id" not in r):
                record.setdefault("_id", self.new_id())
                record.setdefault("createdAt", now)
                record.setdefault("updatedAt", now)
                for field in _KEY_FIELDS:
                    if field in record and _key(record[field]) is not None:
                        record[field] = _key(record[field])
                if model == "companies" and not record.get("slug") and record.get("name"):
                    record["slug"] = self._free_slug(str(record["name"]))
                if model == "conversations" and isinstance(record.get("type"), str):
                    self.conversation_types.add(record["type"])
                self._commit(model, None, record)
        for model in COMPANY_OWNED:
            for record in self.cols[model].records.values():
                if "companyName" not in record:
                    record["companyName"] = self._company_name(record.get("companyId"))
        self._flush_rollups()

    # --- lookups ---

    def find(self, model: str, key: str) -> Record | None:
        return self.cols[model].find(key)

    def resolve_company(self, ref: Any) -> str | None:
        """A company reference (`_id`, `extid-…`, `srcid-…`) → the company's `_id`, if any."""
        if not isinstance(ref, str) or not ref:
            return None
        if ref.startswith(("extid-", "srcid-")):
            record = self.cols["companies"].find(ref)
            return record["_id"] if record is not None else None
        return ref if ref in self.cols["companies"].records else None

    def company_by_email(self, email: Any) -> str | None:
        """The company whose related `domains` hold the email's domain (or a parent domain)."""
        if not isinstance(email, str) or "@" not in email:
            return None
        domain = _domain(email.rsplit("@", 1)[1])
        while domain and "." in domain:
            ids = self.by_domain.get(domain)
            if ids:
                return next(iter(ids))
            domain = domain.split(".", 1)[1]
        return None

    def _company_name(self, company_id: Any) -> Any:
        company = self.cols["companies"].records.get(company_id) if company_id else None
        return company.get("name") if company is not None else None

    def _item_company(
        self, model: str, item: Record, allow_domain: bool
    ) -> tuple[str | None, bool]:
        """(resolved company `_id` or None, whether the item named a company at all)."""
        named = "companyId" in item or "companyExternalId" in item
        company = self.resolve_company(item.get("companyId"))
        if company is None and "companyExternalId" in item:
            ext = _key(item["companyExternalId"])
            if ext is not None:
                company = self.resolve_company("extid-" + ext)
        if company is None and model == "endusers" and allow_domain:
            company = self.company_by_email(item.get("email"))
        return company, named

    # --- writing ---

    def _fields(self, model: str, item: Record) -> Record:
        """The item's writable fields, normalised (keys as strings, dates as ISO)."""
        computed = _COMPUTED[model]
        fields = {k: v for k, v in item.items() if k not in _SYSTEM_FIELDS and k not in computed}
        for field in _KEY_FIELDS:
            if field in fields and fields[field] is not None:
                if isinstance(fields[field], dict | list | bool):
                    raise ItemError(f"{field} must be a string")
                fields[field] = _key(fields[field])
        for field in _DATE_FIELDS[model]:
            if fields.get(field) is not None:
                fields[field] = format_date(parse_date(fields[field], field))
        if "custom" in fields and fields["custom"] is not None:
            if not isinstance(fields["custom"], dict):
                raise ItemError("custom must be an object")
        if model == "conversations" and isinstance(fields.get("type"), str):
            kind = fields["type"]
            if kind and kind not in RESERVED_TYPES and kind not in self.conversation_types:
                fields["type"] = "note"  # a type that does not exist falls back to note (P9)
        if model == "companies" and "domains" in fields and fields["domains"] is not None:
            if not isinstance(fields["domains"], list):
                raise ItemError("domains must be an array of strings")
        return fields

    @staticmethod
    def _differs(record: Record, fields: Record) -> bool:
        for key, value in fields.items():
            if key == "custom" and isinstance(value, dict):
                current = record.get("custom")
                if not isinstance(current, dict):
                    return True
                if any(current.get(k) != v for k, v in value.items()):
                    return True
            elif record.get(key) != value:
                return True
        return False

    @staticmethod
    def _merge(record: Record, fields: Record) -> Record:
        merged = dict(record)
        for key, value in fields.items():
            current = merged.get(key)
            if key == "custom" and isinstance(value, dict) and isinstance(current, dict):
                merged["custom"] = {**current, **value}
            else:
                merged[key] = value
        return merged

    def _finish(self, model: str, record: Record, fields: Record, previous: Record | None) -> None:
        """Check Planhat's rules on the merged record and fill in autogenerated fields.

        `previous` is the stored record an update replaces (None when creating).
        """
        creating = previous is None
        if model == "companies":
            name = record.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ItemError("name is required")
            if creating:
                record.setdefault("domains", [])
                record.setdefault("status", "prospect")
                record.setdefault("mrr", 0)
                record.setdefault("arr", 0)
                if not record.get("slug"):
                    record["slug"] = self._free_slug(name)
            return
        company_id = record.get("companyId")
        if not company_id or company_id not in self.cols["companies"].records:
            raise ItemError("companyId is required")
        record["companyName"] = self._company_name(company_id)
        if model == "endusers":
            if not record.get("email"):
                raise ItemError("email is required")
            first, last = record.get("firstName"), record.get("lastName")
            if first or last:
                record["name"] = " ".join(str(part) for part in (first, last) if part)
            if creating:
                record.setdefault("createDate", record["createdAt"])
                record.setdefault("tags", [])
                record.setdefault("otherEmails", [])
                record.setdefault("featured", False)
                record.setdefault("archived", False)
        elif model == "licenses":
            self._finish_license(record, fields, creating)
        elif model == "conversations":
            kind = record.get("type")
            if not isinstance(kind, str) or not kind:
                raise ItemError("type is required")
            if kind in RESERVED_TYPES and (previous is None or previous.get("type") != kind):
                raise ItemError(f"conversation type {kind!r} cannot be created over the API")
            if creating:
                record.setdefault("createDate", record["createdAt"])
                record.setdefault("date", record["createdAt"])

    def _finish_license(self, record: Record, fields: Record, creating: bool) -> None:
        if not record.get("fromDate"):
            raise ItemError("fromDate is required")
        if not record.get("_currency"):
            raise ItemError("_currency is required")
        if record.get("fixedPeriod") is None:
            record["fixedPeriod"] = bool(record.get("toDate"))
        for field in ("value", "mrr"):
            if record.get(field) is not None and not _is_number(record[field]):
                raise ItemError(f"{field} must be a number")
        if record.get("value") is not None and record["value"] < 0:
            raise ItemError("value must not be negative")
        if record["fixedPeriod"]:
            if not record.get("toDate"):
                raise ItemError("toDate is required for a fixed period license")
            start = parse_date(record["fromDate"], "fromDate")
            end = parse_date(record["toDate"], "toDate")
            if end <= start:
                raise ItemError("toDate must be after fromDate")
            months = months_between(start, end)
            if "mrr" in fields and "value" not in fields and _is_number(fields["mrr"]):
                record["value"] = _number(fields["mrr"] * months)
            if record.get("value") is None:
                raise ItemError("value is required for a fixed period license")
            record["length"] = _number(months)
            record["mrr"] = _number(record["value"] / months)
            record["renewalDate"] = record["toDate"]
        else:
            if record.get("mrr") is None:
                raise ItemError("mrr is required when fixedPeriod is false")
            record["renewalDate"] = record.get("toDate")
        record["arr"] = _number(record["mrr"] * 12)
        if creating:
            record.setdefault("renewalStatus", "ongoing")
            record.setdefault("autoRenews", False)

    def _free_slug(self, name: str) -> str:
        base = _SLUG_DROP.sub("", name.lower()) or "company"
        slug, n = base, 1
        while slug in self.slugs:
            n += 1
            slug = f"{base}{n}"
        return slug

    def _check_unique(self, model: str, record: Record) -> None:
        if model == "conversations":
            return  # not match keys there: see the module docstring
        col = self.cols[model]
        rid = record["_id"]
        source = _key(record.get("sourceId"))
        if source is not None and col.by_source.get(source, rid) != rid:
            raise ItemError(f"duplicate sourceId {source!r}: another record of {model} has it")
        ext = _key(record.get("externalId"))
        if ext is not None and col.by_ext.get((col.scope(record), ext), rid) != rid:
            where = "another company" if model == "companies" else "another record of this company"
            raise ItemError(f"duplicate externalId {ext!r}: {where} has it")

    def _commit(self, model: str, old: Record | None, new: Record) -> None:
        col = self.cols[model]
        if old is not None:
            col.drop_index(old)
        col.records[new["_id"]] = new
        col.add_index(new)
        if model == "companies":
            self._index_company(old, new)
            if old is not None and old.get("name") != new.get("name"):
                for child_model in COMPANY_OWNED:
                    child_col = self.cols[child_model]
                    for child_id in child_col.by_company.get(new["_id"], ()):
                        child_col.records[child_id]["companyName"] = new.get("name")
        elif model == "licenses":
            for record in (old, new):
                if record is not None and record.get("companyId"):
                    self._dirty_companies.add(record["companyId"])

    def _index_company(self, old: Record | None, new: Record | None) -> None:
        if old is not None:
            for domain in old.get("domains") or ():
                ids = self.by_domain.get(_domain(domain) or "")
                if ids is not None:
                    ids.pop(old["_id"], None)
                    if not ids:
                        del self.by_domain[_domain(domain) or ""]
            if self.slugs.get(old.get("slug") or "") == old["_id"]:
                del self.slugs[old["slug"]]
        if new is not None:
            for domain in new.get("domains") or ():
                key = _domain(domain)
                if key:
                    self.by_domain.setdefault(key, {})[new["_id"]] = None
            if new.get("slug"):
                self.slugs.setdefault(new["slug"], new["_id"])

    def _flush_rollups(self) -> None:
        """Company `mrr`/`arr`: the sum over its licenses running today."""
        if not self._dirty_companies:
            return
        today = format_date(datetime.now(UTC))
        companies = self.cols["companies"].records
        licenses = self.cols["licenses"]
        for company_id in self._dirty_companies:
            company = companies.get(company_id)
            if company is None:
                continue
            mrr = 0.0
            for license_id in licenses.by_company.get(company_id, ()):
                lic = licenses.records[license_id]
                if not _is_number(lic.get("mrr")) or (lic.get("fromDate") or "") > today:
                    continue
                if lic.get("toDate") and lic["toDate"] <= today:
                    continue
                mrr += lic["mrr"]
            company["mrr"] = _number(mrr)
            company["arr"] = _number(mrr * 12)
        self._dirty_companies.clear()

    def _create(self, model: str, item: Record, company: str | None, now: str) -> Record | None:
        """Insert one item; None when Planhat drops it silently (an end user without company)."""
        if model in COMPANY_OWNED and company is None:
            if model == "endusers":
                return None
            named = item.get("companyId") or item.get("companyExternalId")
            raise ItemError("company not found" if named else "companyId is required")
        fields = self._fields(model, item)
        if company is not None:
            fields["companyId"] = company
        record = {"_id": "", **fields, "createdAt": now, "updatedAt": now}
        self._finish(model, record, fields, None)
        self._check_unique(model, record)
        record["_id"] = self.new_id()  # only once the item is valid: no gaps in the ids
        self._commit(model, None, record)
        for listener in self.listeners:
            listener(model, None, record)
        return record

    def _update(
        self, model: str, current: Record, item: Record, company: str | None, named: bool, now: str
    ) -> tuple[Record, bool]:
        """Apply one partial update: (the new record, whether any field changed)."""
        fields = self._fields(model, item)
        if model in COMPANY_OWNED:
            if named:
                if company is None:
                    named_ref = item.get("companyId") or item.get("companyExternalId")
                    raise ItemError("company not found" if named_ref else "companyId is required")
                fields["companyId"] = company
            else:
                fields.pop("companyId", None)
        changed = self._differs(current, fields)
        record = self._merge(current, fields)
        record["updatedAt"] = now  # moves on every write, changed or not
        self._finish(model, record, fields, current)
        self._check_unique(model, record)
        self._commit(model, current, record)
        if changed:
            for listener in self.listeners:
                listener(model, current, record)
        return record, changed

    def _match(self, model: str, item: Record, company: str | None) -> Record | None:
        if model == "conversations":
            return None  # an update needs `_id` (matched by the caller): this is a create
        col = self.cols[model]
        source = _key(item.get("sourceId"))
        if source is not None and source in col.by_source:
            return col.records[col.by_source[source]]
        ext = _key(item.get("externalId"))
        if ext is not None:
            scope = company if col.owned else ""
            if scope is not None:
                rid = col.by_ext.get((scope, ext))
                if rid is not None:
                    return col.records[rid]
        return None

    # --- public operations (each under the lock) ---

    def bulk_upsert(self, model: str, items: list[Any]) -> dict[str, Any]:
        """`PUT /<model>` with an array: Planhat's bulk-upsert response body."""
        result = empty_bulk_result()
        with self.lock:
            now = iso_ms(self.clock.now_ms())
            col = self.cols[model]
            for item in items:
                if not isinstance(item, dict):
                    error = {"item": item, "error": "an item must be a JSON object"}
                    result["createdErrors"].append(error)
                    continue
                company, named = (
                    self._item_company(model, item, allow_domain=True)
                    if col.owned
                    else (None, False)
                )
                if "_id" in item and item["_id"] is not None:
                    current = col.records.get(item["_id"]) if isinstance(item["_id"], str) else None
                    if current is None:
                        result["updatedErrors"].append(
                            {"item": item, "error": f"no {model} record with _id {item['_id']!r}"}
                        )
                        continue
                else:
                    current = self._match(model, item, company)
                try:
                    if current is None:
                        record = self._create(model, item, company, now)
                        if record is not None:
                            result["created"] += 1
                            result["insertsKeys"].append(_result_keys(record))
                            result["upsertedIds"].append(record["_id"])
                    else:
                        record, changed = self._update(model, current, item, company, named, now)
                        if changed:
                            result["updated"] += 1
                            result["updatesKeys"].append(_result_keys(record))
                        else:
                            result["nonupdates"] += 1
                except ItemError as exc:
                    key = "createdErrors" if current is None else "updatedErrors"
                    result[key].append({"item": item, "error": str(exc)})
            self._flush_rollups()
        return result

    def create(self, model: str, item: Record) -> Record | None:
        """`POST /<model>`: the stored record; None for an end user Planhat cannot place."""
        with self.lock:
            now = iso_ms(self.clock.now_ms())
            company, named = (
                self._item_company(model, item, allow_domain=True)
                if model in COMPANY_OWNED
                else (None, False)
            )
            record = self._create(model, item, company, now)
            self._flush_rollups()
            return record

    def update(self, model: str, current: Record, item: Record) -> Record:
        """`PUT /<model>/<id>`: only the fields sent change."""
        with self.lock:
            now = iso_ms(self.clock.now_ms())
            company, named = (None, False)
            if model in COMPANY_OWNED:
                company, named = self._item_company(model, item, allow_domain=False)
                if named and company is None and model == "endusers":
                    company = self.company_by_email(item.get("email") or current.get("email"))
            record, _ = self._update(model, current, item, company, named, now)
            self._flush_rollups()
            return record

    def delete(self, model: str, current: Record) -> int:
        """`DELETE /<model>/<id>`; deleting a company also deletes its records [U]."""
        with self.lock:
            deleted = self._delete(model, current)
            self._flush_rollups()
            return deleted

    def _delete(self, model: str, record: Record) -> int:
        col = self.cols[model]
        if record["_id"] not in col.records:
            return 0
        col.drop_index(record)
        del col.records[record["_id"]]
        deleted = 1
        if model == "companies":
            self._index_company(record, None)
            for child_model in COMPANY_OWNED:
                child_col = self.cols[child_model]
                for child_id in list(child_col.by_company.get(record["_id"], ())):
                    deleted += self._delete(child_model, child_col.records[child_id])
            self._dirty_companies.discard(record["_id"])
        elif model == "licenses" and record.get("companyId"):
            self._dirty_companies.add(record["companyId"])
        return deleted

    def records(self, model: str) -> list[Record]:
        with self.lock:
            if model == "users":
                return list(self.users)
            return list(self.cols[model].records.values())
