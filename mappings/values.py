"""Field values: the empty-vs-null rule, the conversions, and the per-field hash. ONE place.

**Empty vs null** (`docs/design.md`, promise 4), in `receive_value` and `send_value` and nowhere
else:

* a field absent from the source record (`ABSENT`), or the empty string `""`, writes nothing;
* an explicit `null` writes `null` to the other side, in both directions;
* a multi-option (`set`) field is cleared with `null`, never `[]` (Pipedrive rejects `[]`): an
  empty list on either side is a cleared field, written as `null`;
* a conversion that cannot place a value (an owner with no Planhat team member, an option label
  Pipedrive does not have) writes nothing and raises `Unconvertible`, which the mappings report.

**Conversions** (`CONVERTERS`, chosen per field from the Pipedrive field type or a rule's
`convert:`): text, number, money (`{value, currency}` or a number), currency, date and datetime
(RFC 3339 and Pipedrive v1's `YYYY-MM-DD HH:MM:SS` UTC to Planhat's ISO form and back), enum
(option id ↔ label), set (option ids ↔ labels), a person's primary email and phone, address,
user (Pipedrive user ↔ Planhat team member by email), boolean, HTML, a note's subject, ids.

Values in Planhat's shape are the **canonical** form: `to_planhat` produces it from a Pipedrive
value, `canonical` brings a value read back from Planhat to it, and `field_hash` hashes it
stably (with the store's one hash, `store.records.values_hash`), so a value written and read
back hashes the same (no echo). Ids follow the store's one id rule (`field_id`).

Its size: the empty-vs-null rule and every converter are kept in one place on purpose
(design promise 4: one home for it), each converter a small class.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from store.records import as_pipedrive_id, values_hash

__all__ = [
    "ABSENT",
    "CONVERTERS",
    "Converter",
    "Unconvertible",
    "UserDirectory",
    "add_months",
    "field_hash",
    "field_id",
    "is_empty",
    "make_converter",
    "parse_time",
    "planhat_date",
    "planhat_datetime",
    "receive_value",
    "rfc3339",
    "send_value",
    "v1_time",
]


class _Absent:
    """The marker of a field that is not in a record (distinct from an explicit null)."""

    __slots__ = ()
    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


class Unconvertible(ValueError):
    """A value that cannot be written to the other side; the mappings (`mappings.receive`,
    `mappings.send`) report it and write nothing for that field."""


# --------------------------------------------------------------------------------------------
# The empty-vs-null rule
# --------------------------------------------------------------------------------------------


#: types of values that are never empty (`is_empty`)
_NEVER_EMPTY = frozenset({int, float, bool, type(None)})


def is_empty(value: Any) -> bool:
    """Absent, the empty string, or an empty string in a value's shape (`{"value": ""}`, a
    list of such): a value that must never overwrite anything. `None` is not empty (it is
    synced as null), nor is `[]` (a cleared multi-option field)."""
    kind = type(value)
    if kind is str:
        return not value
    if value is ABSENT:
        return True
    if kind in _NEVER_EMPTY:  # most raw values: spares the abstract Mapping check below
        return False
    if kind is dict or isinstance(value, Mapping):
        if "value" in value:  # {value, label/primary/currency...}: the value is what counts
            return is_empty(value["value"])
        return bool(value) and all(is_empty(v) for v in value.values())
    if isinstance(value, list | tuple):
        return bool(value) and all(is_empty(v) for v in value)
    return False


def receive_value(raw: Any, converter: Converter) -> Any:
    """A Pipedrive value in Planhat's canonical form: `ABSENT` (write nothing), `None` (write
    null) or the converted value. May raise `Unconvertible`."""
    if is_empty(raw):
        return ABSENT
    if raw is None:
        return None
    value = converter.to_planhat(raw)
    if type(value) is str and not value:
        return ABSENT
    return value


def send_value(value: Any, converter: Converter, current: Any = ABSENT) -> Any:
    """A canonical (Planhat-side) value as the Pipedrive field takes it: `ABSENT`, `None` or the
    converted value. `current` is the Pipedrive record's present raw value, when known (to keep
    a monetary field's currency or a person's other emails). May raise `Unconvertible`."""
    if is_empty(value):
        return ABSENT
    if value is None:
        return None
    return converter.to_pipedrive(value, current)


def canonical_value(value: Any, converter: Converter) -> Any:
    """A value read from Planhat in canonical form (`ABSENT` for absent or empty)."""
    if is_empty(value):
        return ABSENT
    if value is None:
        return None
    result = converter.canonical(value)
    if type(result) is str and not result:
        return ABSENT
    return result


def _canon_json(value: Any) -> Any:
    """A canonical value as plain JSON: whole floats as ints (`1.0` is `1`), mapping keys as
    text, tuples as lists, anything JSON cannot carry (a date, NaN) as its text."""
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, Mapping):
        return {str(k): _canon_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canon_json(v) for v in value]
    return str(value)


def field_hash(value: Any) -> str:
    """The hash of one canonical field value: `store.records.values_hash` (the one "no echo"
    hash, 64 hex digits) of its plain-JSON form, so `None` hashes too and `1.0` and `1` hash
    the same. Store it as the field's last synced value."""
    if value is ABSENT:
        raise ValueError("an absent field has no hash")
    return values_hash(_canon_json(value))


# --------------------------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------------------------

_V2_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_V1_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_PH_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_DAY = re.compile(r"\d{4}-\d\d-\d\d")


@lru_cache(maxsize=8192)
def _parse_text(text: str) -> datetime:
    s = text.strip()
    try:
        if len(s) == 10:
            return datetime.combine(date.fromisoformat(s), datetime.min.time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        raise Unconvertible(f"{text!r} is not a date or time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_time(value: Any) -> datetime:
    """A time from either side as an aware UTC datetime: RFC 3339 (`…Z`, offsets, fractions),
    Pipedrive v1's `YYYY-MM-DD HH:MM:SS` (UTC), a `YYYY-MM-DD` date, a `datetime`/`date`, or
    epoch milliseconds (Planhat). Raises `Unconvertible` otherwise."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, Mapping) and "value" in value:  # daterange / time objects
        return parse_time(value["value"])
    raise Unconvertible(f"{value!r} is not a date or time")


def planhat_datetime(value: Any) -> str:
    """`2026-06-18T15:40:22.000Z`: Planhat's form of a time (from any accepted input)."""
    if type(value) is str:
        if _PH_TIME.fullmatch(value):
            return value
        if _V2_TIME.fullmatch(value):
            return value[:19] + ".000Z"
        if _V1_TIME.fullmatch(value):
            return f"{value[:10]}T{value[11:]}.000Z"
    t = parse_time(value)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def planhat_date(value: Any) -> str:
    """`2026-06-18T00:00:00.000Z`: Planhat's form of a date (UTC midnight; a time's UTC day)."""
    if type(value) is str and len(value) >= 10 and _DAY.fullmatch(value[:10]):
        if len(value) == 10 or _V2_TIME.fullmatch(value) or _V1_TIME.fullmatch(value):
            return value[:10] + "T00:00:00.000Z"
    t = parse_time(value)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T00:00:00.000Z"


def rfc3339(value: Any) -> str:
    """`2026-06-18T15:40:22Z` (Pipedrive v2)."""
    return parse_time(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_time(value: Any) -> str:
    """`2026-06-18 15:40:22` (Pipedrive v1, UTC)."""
    return parse_time(value).strftime("%Y-%m-%d %H:%M:%S")


def day(value: Any) -> str:
    """`2026-06-18` (a Pipedrive date field): the UTC day of a time."""
    if type(value) is str and len(value) >= 10 and _DAY.fullmatch(value[:10]):
        if len(value) == 10 or value.endswith("Z") or _V1_TIME.fullmatch(value):
            return value[:10]
    return parse_time(value).date().isoformat()


def add_months(start: datetime, months: int) -> datetime:
    """`start` plus whole calendar months; a day the target month lacks becomes its last day
    (Jan 31 + 1 month = Feb 28/29)."""
    month0 = start.month - 1 + months
    year, month = start.year + month0 // 12, month0 % 12 + 1
    following = date(year + (month == 12), month % 12 + 1, 1)
    last = (following - timedelta(days=1)).day
    return start.replace(year=year, month=month, day=min(start.day, last))


# --------------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserDirectory:
    """Pipedrive users ↔ Planhat team members, matched by email (letter case ignored), from the
    lists fetched once per run."""

    planhat_of: Mapping[int, str] = field(default_factory=dict)  # Pipedrive user id → Planhat _id
    pipedrive_of: Mapping[str, int] = field(default_factory=dict)  # Planhat _id → Pipedrive id
    pipedrive_users: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    planhat_users: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        pipedrive_users: Iterable[Mapping[str, Any]],
        planhat_users: Iterable[Mapping[str, Any]],
    ) -> UserDirectory:
        pd_users = {int(u["id"]): u for u in pipedrive_users if u.get("id") is not None}
        ph_users = {str(u["_id"]): u for u in planhat_users if u.get("_id")}
        by_email: dict[str, str] = {}
        for ph_id, user in ph_users.items():
            email = user.get("email")
            if isinstance(email, str) and email.strip():
                by_email.setdefault(email.strip().casefold(), ph_id)
        planhat_of: dict[int, str] = {}
        pipedrive_of: dict[str, int] = {}
        for pd_id, user in sorted(pd_users.items(), key=lambda kv: not kv[1].get("active_flag", 1)):
            email = user.get("email")
            match = by_email.get(email.strip().casefold()) if isinstance(email, str) else None
            if match is not None:
                planhat_of[pd_id] = match
                pipedrive_of.setdefault(match, pd_id)
        return cls(planhat_of, pipedrive_of, pd_users, ph_users)

    def describe_pipedrive(self, user_id: Any) -> str:
        user = self.pipedrive_users.get(user_id) if isinstance(user_id, int) else None
        if user is None:
            return f"Pipedrive user {user_id}"
        return f"Pipedrive user {user_id} ({user.get('name')}, {user.get('email')})"

    @property
    def unmatched_pipedrive(self) -> list[Mapping[str, Any]]:
        return [u for i, u in self.pipedrive_users.items() if i not in self.planhat_of]

    @property
    def unmatched_planhat(self) -> list[Mapping[str, Any]]:
        return [u for i, u in self.planhat_users.items() if i not in self.pipedrive_of]


# --------------------------------------------------------------------------------------------
# Converters
# --------------------------------------------------------------------------------------------


def field_id(raw: Any) -> int | None:
    """The Pipedrive id a field holds, as Pipedrive gives it: 12, "12", or a v1 REST object
    `{value: 12, name: …}` / `{id: 12, …}` around one; None when it holds none. The id rule
    itself is `store.records.as_pipedrive_id` (a positive int; numeric strings accepted, bools
    refused); `_int_id` is the raising twin the converters use."""
    if type(raw) is not int and isinstance(raw, Mapping):  # an int: most ids, as v2 gives them
        raw = raw.get("value", raw.get("id"))
    return as_pipedrive_id(raw)


def _int_id(raw: Any) -> int:
    """`field_id`, raising `Unconvertible` for a value that holds no id."""
    pipedrive_id = field_id(raw)
    if pipedrive_id is None:
        raise Unconvertible(f"{raw!r} is not an id")
    return pipedrive_id


def _number(raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise Unconvertible(f"{raw!r} is not a number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if raw != raw or raw in (float("inf"), float("-inf")):
            raise Unconvertible(f"{raw!r} is not a number")
        return int(raw) if raw.is_integer() else raw
    if isinstance(raw, str):
        try:
            return _number(float(raw.strip()))
        except ValueError:
            raise Unconvertible(f"{raw!r} is not a number") from None
    if isinstance(raw, Mapping) and "value" in raw:
        return _number(raw["value"])
    raise Unconvertible(f"{raw!r} is not a number")


class Converter:
    """One conversion between a Pipedrive field value and its Planhat value.

    `to_planhat(raw)` gets a present, non-empty, non-null Pipedrive value; `to_pipedrive(value,
    current)` a present, non-empty, non-null canonical value; `canonical(value)` a value read
    from Planhat. Each may raise `Unconvertible`. `receive_only` conversions cannot go back."""

    name: str = "raw"
    receive_only: bool = False

    def to_planhat(self, raw: Any) -> Any:
        return raw

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return value

    def canonical(self, value: Any) -> Any:
        return value

    def __repr__(self) -> str:
        return f"<{self.name}>"


class TextConverter(Converter):
    name = "text"

    def to_planhat(self, raw: Any) -> Any:
        if type(raw) is str:
            return raw
        if isinstance(raw, Mapping):  # time / daterange objects carry their text in `value`
            inner = raw.get("value")
            return None if inner is None else str(inner)
        if isinstance(raw, list):
            return ", ".join(str(v) for v in raw)
        if isinstance(raw, float) and raw.is_integer():
            return str(int(raw))
        return str(raw)

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return self.to_planhat(value)

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class NumberConverter(Converter):
    name = "number"

    def to_planhat(self, raw: Any) -> Any:
        return _number(raw)

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return _number(value)

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class MoneyConverter(Converter):
    """`{value, currency}` (a monetary custom field) or a number (a deal's value) → the amount."""

    name = "money"

    def __init__(self, as_object: bool = False) -> None:
        self.as_object = as_object

    def to_planhat(self, raw: Any) -> Any:
        if isinstance(raw, Mapping):
            amount = raw.get("value")
            return None if amount is None or amount == "" else _number(amount)
        return _number(raw)

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        amount = _number(value)
        if not self.as_object:
            return amount
        currency = current.get("currency") if isinstance(current, Mapping) else None
        return {"value": amount, "currency": currency} if currency else {"value": amount}

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class CurrencyConverter(Converter):
    name = "currency"

    def to_planhat(self, raw: Any) -> Any:
        if isinstance(raw, Mapping):  # Planhat may read `_currency` back as an object [U]
            raw = raw.get("_id") or raw.get("code") or raw.get("value")
            if raw is None:
                return None
        if not isinstance(raw, str):
            raise Unconvertible(f"{raw!r} is not a currency code")
        return raw.strip().upper()

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return self.to_planhat(value)

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class DateConverter(Converter):
    name = "date"

    def to_planhat(self, raw: Any) -> Any:
        if isinstance(raw, Mapping):  # daterange: its start
            raw = raw.get("value")
            if raw is None or raw == "":
                return None
        return planhat_date(raw)

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return day(value)

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class DateTimeConverter(Converter):
    name = "datetime"

    def __init__(self, v1: bool = False) -> None:
        self.v1 = v1  # notes are written through v1 (`YYYY-MM-DD HH:MM:SS`)

    def to_planhat(self, raw: Any) -> Any:
        return planhat_datetime(raw)

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return v1_time(value) if self.v1 else rfc3339(value)

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class EnumConverter(Converter):
    """An option id ↔ its label (Planhat holds the label)."""

    name = "enum"

    def __init__(self, field_label: str, options: Sequence[Mapping[str, Any]] = ()) -> None:
        self.field_label = field_label
        self.labels: dict[Any, str] = {}
        self.ids: dict[str, Any] = {}
        self.options: list[str] = []
        for option in options:
            oid, label = option.get("id"), option.get("label")
            if oid is None or label is None:
                continue
            self.labels[oid] = str(label)
            self.labels[str(oid)] = str(label)
            self.ids.setdefault(str(label).casefold(), oid)
            self.options.append(str(label))

    def _label(self, raw: Any) -> str:
        if type(raw) is not int and isinstance(raw, Mapping):
            if raw.get("label") is not None and raw.get("id") not in self.labels:
                return str(raw["label"])
            raw = raw.get("id")
        label = self.labels.get(raw)
        if label is None and isinstance(raw, str):  # an option id as text: " 217"
            label = self.labels.get(as_pipedrive_id(raw))
        if label is None:
            raise Unconvertible(
                f"{raw!r} is not an option of the Pipedrive field '{self.field_label}'"
            )
        return label

    def to_planhat(self, raw: Any) -> Any:
        return self._label(raw)

    def _option_id(self, label: Any) -> Any:
        oid = self.ids.get(str(label).strip().casefold())
        if oid is None:
            options = ", ".join(f"'{v}'" for v in self.options)
            raise Unconvertible(
                f"'{label}' is not an option of the Pipedrive field '{self.field_label}' "
                f"(options: {options})"
            )
        return oid

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return self._option_id(value)

    def canonical(self, value: Any) -> Any:
        return str(value)


class SetConverter(EnumConverter):
    """Option ids ↔ labels, as a list in the field's option order; an empty set is `None`."""

    name = "set"

    def __init__(self, field_label: str, options: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(field_label, options)
        self.order = {label.casefold(): i for i, label in enumerate(self.options)}

    def _sorted(self, labels: Iterable[str]) -> list[str]:
        unique = list(dict.fromkeys(labels))
        return sorted(unique, key=lambda s: (self.order.get(s.casefold(), len(self.order)), s))

    def to_planhat(self, raw: Any) -> Any:
        if isinstance(raw, str):  # v1: "12,14"
            raw = [part for part in raw.split(",") if part.strip()]
        elif not isinstance(raw, list | tuple):
            raw = [raw]
        if not raw:
            return None
        return self._sorted(self._label(item) for item in raw)

    def _items(self, value: Any) -> list[str]:
        if isinstance(value, str):
            sep = ";" if ";" in value else ","
            return [part.strip() for part in value.split(sep) if part.strip()]
        if isinstance(value, list | tuple):
            return [str(v) for v in value if v is not None and str(v) != ""]
        return [str(value)]

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        items = self._items(value)
        if not items:
            return None  # a set is cleared with null, never []
        return [self._option_id(item) for item in items]

    def canonical(self, value: Any) -> Any:
        items = self._items(value)
        return self._sorted(items) if items else None


class PrimaryContactConverter(Converter):
    """A person's `emails`/`phones` list ↔ the primary address/number (a plain string)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"primary_{kind}"

    def to_planhat(self, raw: Any) -> Any:
        if isinstance(raw, str):
            return raw.strip() or None
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, list | tuple):
            raise Unconvertible(f"{raw!r} is not a list of {self.kind}s")
        first = None
        for item in raw:
            value = item.get("value") if isinstance(item, Mapping) else item
            if not isinstance(value, str) or not value.strip():
                continue
            if isinstance(item, Mapping) and item.get("primary"):
                return value.strip()
            if first is None:
                first = value.strip()
        return first  # None when the list holds no address: the field was cleared

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        text = str(value).strip()
        items = (
            [dict(i) for i in current if isinstance(i, Mapping)]
            if isinstance(current, list)
            else []
        )
        items = [i for i in items if isinstance(i.get("value"), str) and i["value"].strip()]
        for item in items:
            if item.get("primary"):
                item["value"] = text
                return items
        if items:
            items[0]["value"], items[0]["primary"] = text, True
            return items
        return [{"value": text, "primary": True, "label": "work"}]

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class AddressConverter(Converter):
    """An address object ↔ its one-line text (`value`)."""

    name = "address"

    def to_planhat(self, raw: Any) -> Any:
        if isinstance(raw, Mapping):
            # `{"value": ""}` never gets here (empty); `{"value": null}` is a cleared address
            text = raw["value"] if "value" in raw else raw.get("formatted_address")
            return None if text is None else str(text)
        return str(raw)

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return {"value": str(value)}

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class UserConverter(Converter):
    """A Pipedrive user id ↔ the Planhat team member with the same email."""

    name = "user"

    def __init__(self, users: UserDirectory | None = None) -> None:
        self.users = users or UserDirectory()

    def to_planhat(self, raw: Any) -> Any:
        user_id = _int_id(raw)
        planhat_id = self.users.planhat_of.get(user_id)
        if planhat_id is None:
            raise Unconvertible(
                f"{self.users.describe_pipedrive(user_id)} has no Planhat team member with the "
                "same email; the field is left empty"
            )
        return planhat_id

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        if isinstance(value, Mapping):
            value = value.get("_id") or value.get("id")
        user_id = self.users.pipedrive_of.get(str(value))
        if user_id is None:
            user = self.users.planhat_users.get(str(value)) or {}
            raise Unconvertible(
                f"Planhat team member {value} ({user.get('email', 'unknown email')}) has no "
                "Pipedrive user with the same email; the field is left empty"
            )
        return user_id

    def canonical(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            value = value.get("_id") or value.get("id")
        return None if value is None else str(value)


class BooleanConverter(Converter):
    name = "boolean"

    def to_planhat(self, raw: Any) -> Any:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().casefold() in (
            "true",
            "1",
            "yes",
            "false",
            "0",
            "no",
        ):
            return raw.strip().casefold() in ("true", "1", "yes")
        raise Unconvertible(f"{raw!r} is not true or false")

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return self.to_planhat(value)

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


class HtmlConverter(TextConverter):
    name = "html"


_BLOCK = re.compile(r"<\s*(?:br\s*/?|/p|/li|/h\d|/div|/blockquote|li|p|div|tr|/tr)\b[^>]*>", re.I)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"[ \t\r\f\v\u00a0]+")
SUBJECT_LENGTH = 100


class SubjectConverter(Converter):
    """A note's HTML → a one-line subject: its first line of text, at most 100 characters."""

    name = "subject"
    receive_only = True

    def to_planhat(self, raw: Any) -> Any:
        text = html.unescape(_TAG.sub("", _BLOCK.sub("\n", str(raw))))
        for line in text.split("\n"):
            line = _SPACE.sub(" ", line).strip()
            if line:
                if len(line) > SUBJECT_LENGTH:
                    line = line[: SUBJECT_LENGTH - 1].rstrip() + "…"
                return line
        return ABSENT

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        raise Unconvertible("a note's subject is made from its text; it cannot be sent back")

    def canonical(self, value: Any) -> Any:
        return str(value)


class IdConverter(Converter):
    name = "id"

    def to_planhat(self, raw: Any) -> Any:
        return _int_id(raw)

    def to_pipedrive(self, value: Any, current: Any = ABSENT) -> Any:
        return _int_id(value)

    def canonical(self, value: Any) -> Any:
        return self.to_planhat(value)


#: The conversions a rule may name with `convert:` (the others are chosen from field types).
CONVERTERS: dict[str, str] = {
    "text": "plain text",
    "number": "a number",
    "money": "an amount (a monetary field's value)",
    "currency": "a 3-letter currency code",
    "date": "a date",
    "datetime": "a date and time (UTC)",
    "enum": "an option id ↔ its label",
    "set": "option ids ↔ their labels",
    "primary_email": "a person's primary email",
    "primary_phone": "a person's primary phone",
    "address": "an address ↔ its one-line text",
    "user": "a Pipedrive user ↔ the Planhat team member with the same email",
    "boolean": "true or false",
    "html": "HTML text",
    "subject": "a note's first line (receive only)",
    "id": "a record id",
    "raw": "the value as it is",
}

#: The conversion a Pipedrive field type needs (custom fields and custom matches).
KIND_OF_FIELD_TYPE: dict[str, str] = {
    "varchar": "text",
    "varchar_auto": "text",
    "varchar_options": "text",
    "text": "text",
    "phone": "text",
    "time": "text",
    "timerange": "text",
    "double": "number",
    "int": "number",
    "monetary": "money",
    "enum": "enum",
    "status": "text",
    "set": "set",
    "date": "date",
    "daterange": "date",
    "user": "user",
    "org": "id",
    "people": "id",
    "deal": "id",
    "stage": "id",
    "pipeline": "id",
    "boolean": "boolean",
    "address": "address",
    "visible_to": "number",
}


def make_converter(
    kind: str,
    *,
    field_label: str = "",
    options: Sequence[Mapping[str, Any]] | None = None,
    users: UserDirectory | None = None,
    money_object: bool = False,
    v1_times: bool = False,
) -> Converter:
    """The converter for a conversion name (see `CONVERTERS`), bound to its field's options or
    to the user directory."""
    if kind == "text":
        return TextConverter()
    if kind == "number":
        return NumberConverter()
    if kind == "money":
        return MoneyConverter(as_object=money_object)
    if kind == "currency":
        return CurrencyConverter()
    if kind == "date":
        return DateConverter()
    if kind == "datetime":
        return DateTimeConverter(v1=v1_times)
    if kind == "enum":
        return EnumConverter(field_label, options or ())
    if kind == "set":
        return SetConverter(field_label, options or ())
    if kind == "primary_email":
        return PrimaryContactConverter("email")
    if kind == "primary_phone":
        return PrimaryContactConverter("phone")
    if kind == "address":
        return AddressConverter()
    if kind == "user":
        return UserConverter(users)
    if kind == "boolean":
        return BooleanConverter()
    if kind == "html":
        return HtmlConverter()
    if kind == "subject":
        return SubjectConverter()
    if kind == "id":
        return IdConverter()
    if kind == "raw":
        return Converter()
    raise ValueError(f"unknown conversion {kind!r}; valid: {', '.join(CONVERTERS)}")
