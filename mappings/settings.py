"""The settings files, their pydantic models, and THE loader: `load_settings(directory)`.

A settings directory holds (see the comments in each shipped file):

* `integration.yaml`: the "Integration Setup" page: connection, sections and directions,
  pipelines, license defaults, conflict policy, schedule, state store;
* `organization_company.yaml`, `person_enduser.yaml`, `deal_license.yaml`, `note_note.yaml`: the
  system-field map of each pair, every field with its direction;
* `custom_matches.yaml`: the custom matches (a Planhat custom field or attribute ⇄ any Pipedrive
  field, by label or 40-character key).

`integration.yaml` must be in the directory; any other file the directory lacks is taken from
the shipped defaults beside this module (so a user's directory can hold just `integration.yaml`
and `custom_matches.yaml`). `load_settings()` with no argument reads `$PDSYNC_SETTINGS_DIR`, else
this package's directory.

The loader checks everything that can be checked without the accounts: unknown keys, unknown
directions / objects / fields / conversions, two rules writing one target, templates, cron and
time zone, and a token written into a file (never allowed). Every problem is reported at once,
as `file:line:column: what was found; what is valid`, in a `SettingsError`. Names that only the
account knows (pipelines, custom-field labels) are resolved by `mappings.resolve`.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from mappings.errors import Location, Problem, SettingsError, suggest
from mappings.schema import (
    ADDRESS_PARTS,
    PAIRS,
    PIPEDRIVE_FIELDS,
    PIPEDRIVE_LINKS,
    PLANHAT_ATTRIBUTES,
    RESERVED,
    Direction,
    PlanhatObject,
)
from mappings.values import CONVERTERS
from mappings.yamlsource import Document, PathKey, read_yaml

__all__ = [
    "CUSTOM_MATCHES_FILE",
    "DATABASE_URL_ENV",
    "DEFAULT_DIR",
    "INTEGRATION_FILE",
    "SANDBOX_DIR",
    "SETTINGS_DIR_ENV",
    "CustomMatch",
    "FieldRule",
    "Integration",
    "RuleSpec",
    "Settings",
    "TemplatePart",
    "check_cron",
    "default_settings_dir",
    "load_settings",
    "looks_like_secret",
    "parse_template",
    "pipedrive_token",
    "planhat_token",
    "receiver_password",
    "resolve_secret",
    "token_location",
]

DEFAULT_DIR = Path(__file__).resolve().parent
SANDBOX_DIR = DEFAULT_DIR / "sandbox"
INTEGRATION_FILE = "integration.yaml"
CUSTOM_MATCHES_FILE = "custom_matches.yaml"
SETTINGS_DIR_ENV = "PDSYNC_SETTINGS_DIR"
DATABASE_URL_ENV = "PDSYNC_DATABASE_URL"
DEFAULT_STORE_URL = "sqlite:///.pdsync/state.db"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_KEY40 = re.compile(r"^[0-9a-f]{40}$")
#: Keys that would hold a secret: never allowed in a settings file.
_SECRET_KEYS = frozenset(
    {"token", "api_token", "apitoken", "api_key", "apikey", "password", "secret", "access_token",
     "bearer", "auth_token", "pipedrive_token", "planhat_token", "credentials"}
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_HEX_TEXT = re.compile(r"[0-9A-Fa-f-]+")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{20,}")
_SHOWABLE = re.compile(r"[A-Za-z0-9_.\- ]{1,64}")


def looks_like_secret(value: object) -> bool:
    """True for text that looks like a token or password rather than a name: the Pipedrive
    token format (40 hex digits) or any 24+ hex digits (dashes allowed: UUIDs too), a run of
    20+ letters and digits that switches between letters and digits 3+ times (base64 and random
    keys), or a run of 32+ such characters with mixed case. Names (PIPEDRIVE_API_TOKEN,
    pipedrive-api-token) never do."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    if _HEX_TEXT.fullmatch(text) and len(text.replace("-", "")) >= 24:
        return True
    for run in _ALNUM_RUN.findall(text):
        switches = sum(a.isdigit() != b.isdigit() for a, b in zip(run, run[1:], strict=False))
        if switches >= 3:
            return True
        if len(run) >= 32 and not run.isupper() and not run.islower():
            return True
    return False


def _found(value: Any) -> str:
    """A wrong value as an error shows it: quoted when it is a short plain name, else only
    described (so that a secret written in the wrong place is never repeated)."""
    if isinstance(value, str):
        if _SHOWABLE.fullmatch(value) and not looks_like_secret(value):
            return repr(value)
        return f"a value of {len(value)} characters (not shown)"
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    return f"a {'list' if isinstance(value, list) else 'mapping'}"


#: what each name setting holds, for the message when the secret itself is written there
_SECRET_OF = {
    "token_env": ("token", "an environment variable", "PIPEDRIVE_API_TOKEN"),
    "password_env": ("password", "an environment variable", "PDSYNC_WEBHOOK_PASSWORD"),
    "secret_block": ("token", "a Prefect Secret block", "pipedrive-api-token"),
    "password_secret_block": ("password", "a Prefect Secret block", "pdsync-webhook-password"),
}


def _secret_written(field: str, value: str) -> PydanticCustomError:
    what, holder, example = _SECRET_OF.get(field, ("secret", "an environment variable", "X"))
    return PydanticCustomError(
        "secret_in_file",
        "{field} must name {holder}; the value given ({length} characters, not shown) looks "
        "like the {what} itself — a {what} must never be written in a settings file: put the "
        "{what} in {holder} and name that {kind} here (like {example})",
        {
            "field": field,
            "holder": holder,
            "length": len(value),
            "what": what,
            "kind": "variable" if "variable" in holder else "block",
            "example": example,
        },
    )


def _env_name(value: str | None, field: str = "token_env") -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and (
        looks_like_secret(value)
        or (not _ENV_NAME.match(value) and len(value) >= 16 and not value.isupper())
    ):
        raise _secret_written(field, value)
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise PydanticCustomError(
            "env_name",
            "found {found}; an environment variable name is letters, digits and _ "
            "(like PIPEDRIVE_API_TOKEN)",
            {"found": _found(value)},
        )
    return value


def _block_name(value: str | None, field: str = "secret_block") -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and looks_like_secret(value):
        raise _secret_written(field, value)
    if not isinstance(value, str) or not _BLOCK_NAME.match(value):
        raise PydanticCustomError(
            "block_name",
            "found {found}; a Prefect Secret block name is lowercase letters, digits and - "
            "(like pipedrive-api-token)",
            {
                "found": _found(value)
                if len(str(value)) < 16
                else f"a value of {len(str(value))} characters"
            },
        )
    return value


class _TokenSource(_Strict):
    """Where a token comes from: exactly one of an environment variable or a Prefect Secret
    block. Never the token itself."""

    token_env: str | None = None
    secret_block: str | None = None

    @field_validator("token_env", mode="before")
    @classmethod
    def _check_env(cls, value: Any, info: ValidationInfo) -> Any:
        return _env_name(value, info.field_name or "token_env")

    @field_validator("secret_block", mode="before")
    @classmethod
    def _check_block(cls, value: Any, info: ValidationInfo) -> Any:
        return _block_name(value, info.field_name or "secret_block")

    def source(self) -> str:
        return f"${self.token_env}" if self.token_env else f"Prefect Secret '{self.secret_block}'"


class PipedriveConnection(_TokenSource):
    company_url: str


class PlanhatConnection(_TokenSource):
    base_url: str = "https://api.planhat.com"


class BasicAuth(_Strict):
    username: str = "pdsync"
    password_env: str | None = None
    password_secret_block: str | None = None

    @field_validator("password_env", mode="before")
    @classmethod
    def _check_env(cls, value: Any, info: ValidationInfo) -> Any:
        return _env_name(value, info.field_name or "password_env")

    @field_validator("password_secret_block", mode="before")
    @classmethod
    def _check_block(cls, value: Any, info: ValidationInfo) -> Any:
        return _block_name(value, info.field_name or "password_secret_block")


class Receiver(_Strict):
    public_url: str | None = None
    basic_auth: BasicAuth = BasicAuth(password_env="PDSYNC_WEBHOOK_PASSWORD")  # noqa: S106


class Connection(_Strict):
    pipedrive: PipedriveConnection
    planhat: PlanhatConnection
    receiver: Receiver = Receiver()


class OrganizationsSection(_Strict):
    direction: Direction = "receive"
    sync_all: bool = False


class ContactsSection(_Strict):
    direction: Direction = "receive"


class DealsSection(_Strict):
    direction: Direction = "receive"
    pipelines: list[Annotated[int, Field(strict=True)] | str] = []


class NotesSection(_Strict):
    direction: Direction = "receive"
    scope: list[Literal["deal", "organization", "person"]] = ["deal", "organization"]


class LicenseDefaults(_Strict):
    length_months: int = Field(12, ge=1, le=120)
    product: str = "{title}"
    start_date: str = "won_time"


class Incremental(_Strict):
    cron: str = "*/15 * * * *"
    timezone: str = "UTC"
    overlap_seconds: int = Field(300, ge=0, le=86_400)
    #: webhook notifications already handled are deleted after this many days (pending never)
    inbox_retention_days: int = Field(7, ge=1, le=3650)


class Store(_Strict):
    url: str = DEFAULT_STORE_URL


ConflictPolicy = Literal["pipedrive_wins", "planhat_wins", "newest_wins"]


class Integration(_Strict):
    """`integration.yaml`."""

    version: Literal[1] = 1
    connection: Connection
    organizations: OrganizationsSection = OrganizationsSection()
    contacts: ContactsSection = ContactsSection()
    deals: DealsSection = DealsSection()
    notes: NotesSection = NotesSection()
    dry_run: bool = False
    license: LicenseDefaults = LicenseDefaults()
    conflict_policy: ConflictPolicy = "pipedrive_wins"
    incremental: Incremental = Incremental()
    store: Store = Store()

    def direction(self, section: str) -> Direction:
        return typing.cast(Direction, getattr(self, section).direction)


ConvertKind = Literal[
    "text", "number", "money", "currency", "date", "datetime", "enum", "set", "primary_email",
    "primary_phone", "address", "user", "boolean", "html", "subject", "id", "raw",
]  # fmt: skip
assert set(typing.get_args(ConvertKind)) == set(CONVERTERS)


class FieldRule(_Strict):
    """One line of a field map: a Planhat field, a Pipedrive field, a direction."""

    planhat: str
    pipedrive: str
    direction: Direction
    convert: ConvertKind | None = None


class FieldMap(_Strict):
    """A pair's field-map file."""

    pipedrive_object: Literal["organization", "person", "deal", "note"]
    planhat_object: Literal["company", "enduser", "license", "note"]
    fields: list[FieldRule] = []


class CustomMatch(_Strict):
    """One custom match: `type: custom` (a Planhat custom field, by name) or `type: attribute`
    (a Planhat system field), ⇄ a Pipedrive field by label or 40-character key."""

    type: Literal["custom", "attribute"]
    planhat_object: Literal["company", "enduser", "license", "note"]
    planhat_field: str
    pipedrive_field: Annotated[str, Field(min_length=1)]
    direction: Direction
    convert: ConvertKind | None = None

    @field_validator("pipedrive_field", mode="before")
    @classmethod
    def _key_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class CustomMatches(_Strict):
    custom_matches: list[CustomMatch] = []


# --------------------------------------------------------------------------------------------
# What the loader hands on
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    """A field rule or custom match, with where it was written (for later, located errors)."""

    planhat_object: PlanhatObject
    planhat_field: str  # attribute name, or the custom field's name
    planhat_custom: bool
    pipedrive_field: str  # as written: a system field (maybe `address.country`), label or key
    direction: Direction
    convert: str | None
    origin: str  # "field map" or "custom match"
    location: Location  # the rule (list item)
    pipedrive_location: Location  # its Pipedrive field value
    planhat_location: Location

    @property
    def key(self) -> str:
        """The Planhat-side key of the field: `name`, or `custom.<name>`."""
        return f"custom.{self.planhat_field}" if self.planhat_custom else self.planhat_field


@dataclass(frozen=True)
class TemplatePart:
    """A literal piece of a template, or a `{placeholder}` with its location."""

    text: str
    placeholder: bool
    location: Location | None = None


@dataclass(frozen=True)
class Settings:
    """Everything the files say, validated as far as possible without the accounts."""

    directory: Path
    integration: Integration
    rules: dict[str, tuple[RuleSpec, ...]]  # by Planhat object: field-map rules, then matches
    files: dict[str, str]  # part → the file it was read from (as shown in messages)
    documents: dict[str, Document] = field(repr=False, default_factory=dict)
    product_template: tuple[TemplatePart, ...] = ()
    store_url: str = DEFAULT_STORE_URL

    def locate(self, file: str, path: PathKey, *, key: bool = False) -> Location:
        doc = self.documents[file]
        return doc.key_at(path) if key else doc.value_at(path)

    def pipelines(self) -> list[tuple[int | str, Location]]:
        """The selected pipelines as written (ids or names), with their locations."""
        return [
            (value, self.locate(INTEGRATION_FILE, ("deals", "pipelines", i)))
            for i, value in enumerate(self.integration.deals.pipelines)
        ]


# --------------------------------------------------------------------------------------------
# Pydantic errors → located messages
# --------------------------------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, Sequence):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_at(root: type[BaseModel], path: PathKey) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for item in path:
        if model is None:
            return None
        if isinstance(item, int):
            continue
        info = model.model_fields.get(str(item))
        model = _model_of(info.annotation) if info is not None else None
    return model


def _where(path: PathKey) -> str:
    out = ""
    for item in path:
        out += f" #{item + 1}" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out or "the top level"


def _shown(doc: Document, path: PathKey, value: Any) -> str:
    raw = doc.raw(path)
    if raw is not None:
        return repr(raw)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _problems_from(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        # Walk the data alongside the error's path; union branch names etc. fall off the end.
        path: list[str | int] = []
        data: Any = doc.data
        rest: list[Any] = []
        for i, item in enumerate(loc):
            if isinstance(data, dict) and isinstance(item, str) and item in data:
                path.append(item)
                data = data[item]
            elif isinstance(data, list) and isinstance(item, int) and 0 <= item < len(data):
                path.append(item)
                data = data[item]
            else:
                rest = list(loc[i:])
                break
        ptuple = tuple(path)
        kind = error["type"]
        parent = _where(ptuple)
        if kind == "extra_forbidden":
            key = ptuple[-1]
            if isinstance(key, str) and key.casefold() in _SECRET_KEYS:
                continue  # reported by the secret scan
            owner = _model_at(model, ptuple[:-1])
            names = list(owner.model_fields) if owner else []
            where = _where(ptuple[:-1])
            problems.append(
                Problem(
                    doc.key_at(ptuple),
                    f"unknown key '{key}' in {where}{suggest(key, names)}; valid keys: "
                    + ", ".join(names),
                )
            )
        elif kind == "missing":
            key = rest[0] if rest else (ptuple[-1] if ptuple else "?")
            problems.append(Problem(doc.value_at(ptuple), f"missing key '{key}' in {parent}"))
        elif kind in ("literal_error", "enum"):
            name = ptuple[-1] if ptuple and isinstance(ptuple[-1], str) else _where(ptuple)
            expected = error.get("ctx", {}).get("expected", "")
            options = re.findall(r"'([^']*)'", expected)
            problems.append(
                Problem(
                    doc.value_at(ptuple),
                    f"unknown {name} {_shown(doc, ptuple, data)} in {_where(ptuple[:-1])}"
                    f"{suggest(doc.raw(ptuple) or data, options)}; valid: {expected}",
                )
            )
        elif kind in ("secret_in_file",):
            where = _where(ptuple[:-1]) if len(ptuple) > 1 else ""
            text = f"{where}.{error['msg']}" if where else error["msg"]
            problems.append(Problem(doc.value_at(ptuple), text))
        elif kind in ("env_name", "block_name", "value_error", "assertion_error"):
            msg = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            problems.append(Problem(doc.value_at(ptuple), f"{parent}: {msg}"))
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            problems.append(
                Problem(
                    doc.value_at(ptuple),
                    f"{parent} must be a mapping of keys, found {_shown(doc, ptuple, data)}",
                )
            )
        elif kind == "list_type":
            problems.append(
                Problem(
                    doc.value_at(ptuple),
                    f"{parent} must be a list (one '- ' item per line), found "
                    f"{_shown(doc, ptuple, data)}",
                )
            )
        else:
            # Type errors of a scalar: say what was expected, in words.
            if rest and any(isinstance(r, str) for r in rest):
                expected_text = "a pipeline id (a number) or name (text)"
            else:
                expected_text = _EXPECTED.get(kind, error["msg"].lower())
            problems.append(
                Problem(
                    doc.value_at(ptuple),
                    f"{parent} must be {expected_text}, found {_shown(doc, ptuple, data)}",
                )
            )
    return problems


_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "greater_than_equal": "larger",
    "less_than_equal": "smaller",
    "string_too_short": "non-empty text",
}


# --------------------------------------------------------------------------------------------
# Checks beyond the models
# --------------------------------------------------------------------------------------------


def _walk(data: Any, path: PathKey = ()) -> Iterator[tuple[PathKey, Any]]:
    yield path, data
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _walk(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _walk(value, (*path, i))


def _secret_scan(doc: Document) -> list[Problem]:
    """A key that would hold a token or password: refused, without repeating its value."""
    problems = []
    for path, value in _walk(doc.data):
        if not path or not isinstance(path[-1], str) or path[-1].casefold() not in _SECRET_KEYS:
            continue
        length = len(str(value)) if value is not None else 0
        what = f"a value of {length} characters" if length else "no value"
        problems.append(
            Problem(
                doc.key_at(path),
                f"'{path[-1]}' in {_where(path[:-1])}: a token or password must never be written "
                f"in a settings file (found {what}). Put it in an environment variable and name "
                "that variable with 'token_env:' (for the receiver: 'password_env:'), or store "
                "it in a Prefect Secret block and name the block with 'secret_block:' "
                "('password_secret_block:')",
            )
        )
    return problems


_SECRET_CANDIDATE = re.compile(r"[A-Za-z0-9_-]{20,}")
#: the keys whose values may rightly be a 40-hex Pipedrive field key (which looks like a token)
_FIELD_KEY_KEYS = frozenset({"pipedrive", "pipedrive_field"})


def _field_keys(documents: Iterable[Document]) -> set[str]:
    """The Pipedrive custom-field keys written where field keys belong and nowhere else (so
    that messages may show them): a token written as a field key too is still hidden."""
    keys: set[str] = set()
    elsewhere: list[str] = []
    for doc in documents:
        for path, value in _walk(doc.data):
            elsewhere.extend(k for k in path[-1:] if isinstance(k, str))
            if not isinstance(value, str):
                continue
            base = value.partition(".")[0]
            if path and path[-1] in _FIELD_KEY_KEYS and _KEY40.match(base):
                keys.add(base)
                elsewhere.append(value[len(base) :])
            else:
                elsewhere.append(value)
    return {k for k in keys if not any(k in text for text in elsewhere)}


def _hide_secrets(text: str, allowed: set[str] | frozenset[str] = frozenset()) -> str:
    """`text` with whatever looks like a token or password replaced by its length."""

    def hide(match: re.Match[str]) -> str:
        found = match.group(0)
        if found in allowed or not looks_like_secret(found):
            return found
        return f"[{len(found)} characters that look like a secret, not shown]"

    return _SECRET_CANDIDATE.sub(hide, text)


def _without_secrets(problems: Iterable[Problem], documents: Iterable[Document]) -> list[Problem]:
    """The last guard of every loader error: no message repeats anything that looks like a
    token or password (a token written where a pipeline, a field or a URL belongs), except the
    Pipedrive field keys written as field keys."""
    allowed = _field_keys(documents)
    return [Problem(p.location, _hide_secrets(p.message, allowed)) for p in problems]


_CRON_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, ("jan feb mar apr may jun jul aug sep oct nov dec")),
    ("day of week", 0, 7, ("sun mon tue wed thu fri sat")),
)


def check_cron(expression: str) -> str | None:
    """None if `expression` is a standard 5-field cron expression, else what is wrong."""
    parts = expression.split()
    if len(parts) != 5:
        return (
            f"found {len(parts)} fields in {expression!r}; a cron expression has 5: minute hour "
            "day-of-month month day-of-week (e.g. '*/15 * * * *')"
        )
    for text, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        words = names.split() if names else []
        for item in text.split(","):
            body, _, step = item.partition("/")
            if step and not step.isdigit():
                return f"the {name} field '{text}' has step '{step}'; a step is a number"
            if body == "*":
                continue
            for bound in body.split("-", 1):
                value = bound.lower()
                if value in words:
                    continue
                if not value.isdigit() or not low <= int(value) <= high:
                    return f"the {name} field '{text}' has '{bound}'; valid: {low}-{high}" + (
                        f" or {names[:3]}…{names[-3:]}" if names else ""
                    )
    return None


def _parts(model: type[BaseModel], data: Any) -> dict[str, Any]:
    """The fields of `model` that are valid on their own in `data` (their errors are reported
    by the full validation): so that one mistake does not hide the checks of the other parts."""
    if not isinstance(data, dict):
        return {}
    out = {}
    for name, info in model.model_fields.items():
        try:
            value = data[name] if name in data else info.get_default(call_default_factory=True)
            out[name] = TypeAdapter(info.annotation).validate_python(value)
        except (ValidationError, KeyError, TypeError):
            continue
    return out


def _check_integration(settings_doc: Document) -> list[Problem]:
    problems = []
    at = settings_doc.value_at
    parts = _parts(Integration, settings_doc.data)
    inc = parts.get("incremental")
    if inc is not None:
        wrong = check_cron(inc.cron)
        if wrong:
            problems.append(Problem(at(("incremental", "cron")), f"incremental.cron: {wrong}"))
        try:
            ZoneInfo(inc.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                Problem(
                    at(("incremental", "timezone")),
                    f"incremental.timezone: unknown time zone {inc.timezone!r}; use an IANA "
                    "name such as UTC, Europe/Berlin or America/New_York",
                )
            )
    lic = parts.get("license")
    if lic is not None:
        problems.extend(parse_template(lic.product, settings_doc, ("license", "product"))[1])
    deals = parts.get("deals")
    if deals is not None:
        problems.extend(_check_pipelines(settings_doc, deals))
    conn = parts.get("connection")
    if conn is None:
        return problems
    for name, source in (("pipedrive", conn.pipedrive), ("planhat", conn.planhat)):
        if (source.token_env is None) == (source.secret_block is None):
            problems.append(
                Problem(
                    settings_doc.key_at(("connection", name)),
                    f"connection.{name}: say where the token comes from with exactly one of "
                    "'token_env:' (an environment variable name) or 'secret_block:' (a Prefect "
                    "Secret block name)",
                )
            )
    auth = conn.receiver.basic_auth
    if (auth.password_env is None) == (auth.password_secret_block is None):
        problems.append(
            Problem(
                settings_doc.key_at(("connection", "receiver", "basic_auth")),
                "connection.receiver.basic_auth: say where the password comes from with exactly "
                "one of 'password_env:' or 'password_secret_block:'",
            )
        )
    if conn.receiver.public_url is not None and not re.match(
        r"^https?://[^/\s]+", conn.receiver.public_url
    ):
        problems.append(
            Problem(
                at(("connection", "receiver", "public_url")),
                f"connection.receiver.public_url: found {conn.receiver.public_url!r}; use the "
                "full public address of the receiver, e.g. https://sync.example.com/pipedrive",
            )
        )
    return problems


def _check_pipelines(settings_doc: Document, deals: DealsSection) -> list[Problem]:
    problems = []
    at = settings_doc.value_at
    seen: dict[Any, int] = {}
    for i, value in enumerate(deals.pipelines):
        marker = value.casefold() if isinstance(value, str) else value
        if marker in seen:
            problems.append(
                Problem(
                    at(("deals", "pipelines", i)),
                    f"deals.pipelines: {value!r} is listed twice (also item {seen[marker] + 1})",
                )
            )
        seen.setdefault(marker, i)
    return problems


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def parse_template(
    text: str, doc: Document | None = None, path: PathKey = ()
) -> tuple[tuple[TemplatePart, ...], list[Problem]]:
    """`"{title} ({pipeline})"` → its parts. `{{` and `}}` are literal braces."""
    parts: list[TemplatePart] = []
    problems: list[Problem] = []
    pos = 0
    literal = ""

    def where(offset: int) -> Location | None:
        return doc.text_column(path, offset) if doc is not None else None

    for match in _PLACEHOLDER.finditer(text):
        literal += text[pos : match.start()]
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal += token[0]
        elif token in ("{", "}"):
            problems.append(
                Problem(
                    where(match.start()),
                    f"license.product: a lone '{token}' in the template {text!r}; write "
                    "{{ or }} for a brace, or {field} for a deal field",
                )
            )
        else:
            name = match.group(1).strip()
            if not name:
                problems.append(
                    Problem(
                        where(match.start()),
                        "license.product: an empty {} in the template; name a deal field, "
                        "e.g. {title}",
                    )
                )
                continue
            if literal:
                parts.append(TemplatePart(literal, False))
                literal = ""
            parts.append(TemplatePart(name, True, where(match.start())))
    literal += text[pos:]
    if literal:
        parts.append(TemplatePart(literal, False))
    return tuple(parts), problems


def _valid_items(model: type[BaseModel], items: Any) -> list[Any]:
    """The items of a list that are valid on their own (None in place of the others, so that
    positions stay right); their errors are reported by the full validation."""
    out: list[Any] = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(model.model_validate(item))
        except ValidationError:
            out.append(None)
    return out


def _partial_map(data: dict[str, Any], obj: str) -> FieldMap | None:
    pair = PAIRS[obj]
    rules = _valid_items(FieldRule, data.get("fields"))
    return FieldMap.model_construct(
        pipedrive_object=pair.pipedrive, planhat_object=pair.planhat, fields=rules
    )


def _partial_matches(data: dict[str, Any]) -> CustomMatches:
    return CustomMatches.model_construct(
        custom_matches=_valid_items(CustomMatch, data.get("custom_matches"))
    )


def _rule_specs(
    obj: str, doc: Document, fmap: FieldMap | None, matches: Sequence[tuple[int, CustomMatch]],
    matches_doc: Document | None,
) -> list[RuleSpec]:  # fmt: skip
    specs = []
    if fmap is not None:
        for i, rule in enumerate(fmap.fields):
            if rule is None:
                continue
            path = ("fields", i)
            planhat = rule.planhat
            custom = planhat.startswith("custom.")
            specs.append(
                RuleSpec(
                    planhat_object=typing.cast(PlanhatObject, obj),
                    planhat_field=planhat[len("custom.") :] if custom else planhat,
                    planhat_custom=custom,
                    pipedrive_field=rule.pipedrive,
                    direction=rule.direction,
                    convert=rule.convert,
                    origin="field map",
                    location=doc.key_at(path),
                    pipedrive_location=doc.value_at((*path, "pipedrive")),
                    planhat_location=doc.value_at((*path, "planhat")),
                )
            )
    if matches_doc is not None:
        for i, match in matches:
            path = ("custom_matches", i)
            specs.append(
                RuleSpec(
                    planhat_object=typing.cast(PlanhatObject, obj),
                    planhat_field=match.planhat_field,
                    planhat_custom=match.type == "custom",
                    pipedrive_field=match.pipedrive_field,
                    direction=match.direction,
                    convert=match.convert,
                    origin="custom match",
                    location=matches_doc.key_at(path),
                    pipedrive_location=matches_doc.value_at((*path, "pipedrive_field")),
                    planhat_location=matches_doc.value_at((*path, "planhat_field")),
                )
            )
    return specs


def _check_rules(obj: str, specs: Sequence[RuleSpec]) -> list[Problem]:
    """Offline checks of one Planhat object's rules: fields exist, nothing reserved, one rule
    per target, conversions that can go the rule's way."""
    problems = []
    pair = PAIRS[obj]
    attributes = PLANHAT_ATTRIBUTES[obj]
    reserved = RESERVED[obj]
    pd_fields = PIPEDRIVE_FIELDS[pair.pipedrive]
    links = PIPEDRIVE_LINKS[pair.pipedrive]
    targets: dict[str, RuleSpec] = {}
    sends: dict[str, RuleSpec] = {}
    for spec in specs:
        where = spec.planhat_location
        name = spec.planhat_field
        # -- the Planhat side
        if spec.planhat_custom:
            if not name.strip() or name != name.strip():
                problems.append(
                    Problem(
                        where,
                        f"the Planhat custom field name {name!r} is empty or has spaces at its "
                        "ends; write the field's name as Planhat shows it",
                    )
                )
                continue
        elif name in reserved:
            problems.append(
                Problem(
                    where, f"{pair.planhat_title} field '{name}' cannot be mapped: {reserved[name]}"
                )
            )
            continue
        elif name not in attributes:
            valid = ", ".join(sorted(attributes, key=str.casefold))
            hint = (
                " (a Planhat custom field is written 'custom.<name>' in a field map, or "
                "'type: custom' in a custom match)"
                if spec.origin == "field map"
                else " (for a Planhat custom field use 'type: custom')"
            )
            problems.append(
                Problem(
                    where,
                    f"unknown Planhat {pair.planhat_title} field '{name}'"
                    f"{suggest(name, attributes)}; valid: {valid}{hint}",
                )
            )
            continue
        else:
            attr = attributes[name]
            if not attr.writable and spec.direction in ("receive", "both"):
                why = f" ({attr.note})" if attr.note else ""
                problems.append(
                    Problem(
                        spec.location,
                        f"Planhat computes {pair.planhat_title} field '{name}' itself{why}; it "
                        f"can only be sent to Pipedrive (direction: send), found direction "
                        f"'{spec.direction}'",
                    )
                )
        first = targets.get(spec.key)
        if first is not None and spec.direction != "none" and first.direction != "none":
            problems.append(
                Problem(
                    spec.planhat_location,
                    f"two rules write Planhat {pair.planhat_title} field '{spec.key}': this "
                    f"{spec.origin} and the {first.origin} at {first.location}; keep one",
                )
            )
        elif spec.direction != "none":
            targets[spec.key] = spec
        # -- the Pipedrive side (system fields only; labels and keys need the account)
        written = spec.pipedrive_field
        base, _, part = written.partition(".")
        if spec.origin == "field map" and not _KEY40.match(base):
            if base not in pd_fields:
                valid = ", ".join(sorted(pd_fields))
                problems.append(
                    Problem(
                        spec.pipedrive_location,
                        f"unknown Pipedrive {pair.pipedrive_title} field '{written}'"
                        f"{suggest(written, pd_fields)}; valid: {valid}, or a custom field's "
                        f"40-character key (custom fields by label go in {CUSTOM_MATCHES_FILE})",
                    )
                )
                continue
            if part:
                if pd_fields[base].kind != "address" or part not in ADDRESS_PARTS:
                    problems.append(
                        Problem(
                            spec.pipedrive_location,
                            f"'{written}': only an address field has parts; valid parts of an "
                            f"address: {', '.join(ADDRESS_PARTS)}",
                        )
                    )
                    continue
            sending = spec.direction in ("send", "both")
            if sending and (part or not pd_fields[base].writable or base in links):
                why = (
                    links[base]
                    if base in links
                    else "a part of an address is received only"
                    if part
                    else "Pipedrive sets it itself"
                )
                problems.append(
                    Problem(
                        spec.location,
                        f"Pipedrive {pair.pipedrive_title} field '{written}' cannot be written "
                        f"({why}); use direction: receive, found direction '{spec.direction}'",
                    )
                )
                continue
        if spec.convert == "subject" and spec.direction in ("send", "both"):
            problems.append(
                Problem(
                    spec.location,
                    f"convert: subject can only be received (direction: receive), found "
                    f"direction '{spec.direction}'",
                )
            )
        if spec.direction in ("send", "both") and spec.origin == "field map":
            other = sends.get(written)
            if other is not None:
                problems.append(
                    Problem(
                        spec.pipedrive_location,
                        f"two rules write Pipedrive {pair.pipedrive_title} field '{written}': "
                        f"this {spec.origin} and the {other.origin} at {other.location}; keep one",
                    )
                )
            else:
                sends[written] = spec
    return problems


# --------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------


def default_settings_dir() -> Path:
    """`$PDSYNC_SETTINGS_DIR`, else the shipped settings beside this module."""
    env = os.environ.get(SETTINGS_DIR_ENV, "").strip()
    return Path(env) if env else DEFAULT_DIR


def _store_url(integration: Integration) -> str:
    """The state store URL: `$PDSYNC_DATABASE_URL` wins; a relative SQLite path is taken from
    the working directory and made absolute (so one run uses one file)."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip() or integration.store.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not Path(rest).is_absolute():
            return prefix + str((Path.cwd() / rest).resolve())
    return url


def load_settings(directory: Path | str | None = None) -> Settings:
    """Read and validate a settings directory (see the module docstring). Raises
    `SettingsError` with every located problem; nothing may run on invalid settings."""
    base = Path(directory) if directory is not None else default_settings_dir()
    if not base.is_dir():
        raise SettingsError([Problem(None, f"{base}: no such settings directory")])
    problems: list[Problem] = []
    documents: dict[str, Document] = {}
    files: dict[str, str] = {}

    def source(name: str) -> Path:
        own = base / name
        return own if own.is_file() or name == INTEGRATION_FILE else DEFAULT_DIR / name

    def read(part: str, name: str) -> Document | None:
        path = source(name)
        try:
            doc = read_yaml(path)
        except SettingsError as exc:
            problems.extend(exc.problems)
            return None
        documents[name] = doc
        files[part] = doc.name
        problems.extend(_secret_scan(doc))
        return doc

    def validate(doc: Document | None, model: type[BaseModel]) -> Any:
        if doc is None:
            return None
        data = doc.data if doc.data is not None else {}
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, doc, model))
            return None

    int_doc = read("integration", INTEGRATION_FILE)
    integration = validate(int_doc, Integration)
    template: tuple[TemplatePart, ...] = ()
    if int_doc is not None:
        problems.extend(_check_integration(int_doc))
    if integration is not None and int_doc is not None:
        template = parse_template(integration.license.product, int_doc, ("license", "product"))[0]

    maps: dict[str, tuple[FieldMap | None, Document | None]] = {}
    for obj, pair in PAIRS.items():
        doc = read(obj, pair.file)
        fmap = validate(doc, FieldMap)
        if fmap is None and doc is not None and isinstance(doc.data, dict):
            fmap = _partial_map(doc.data, obj)
        if fmap is not None and doc is not None:
            expected = (pair.pipedrive, pair.planhat)
            if (fmap.pipedrive_object, fmap.planhat_object) != expected:
                problems.append(
                    Problem(
                        doc.value_at(("pipedrive_object",)),
                        f"{pair.file} maps Pipedrive {pair.pipedrive} ⇄ Planhat {pair.planhat}, "
                        f"found pipedrive_object: {fmap.pipedrive_object}, planhat_object: "
                        f"{fmap.planhat_object}",
                    )
                )
        maps[obj] = (fmap, doc)
    cm_doc = read("custom_matches", CUSTOM_MATCHES_FILE)
    matches = validate(cm_doc, CustomMatches)
    if matches is None and cm_doc is not None and isinstance(cm_doc.data, dict):
        matches = _partial_matches(cm_doc.data)

    rules: dict[str, tuple[RuleSpec, ...]] = {}
    for obj in PAIRS:
        fmap, doc = maps[obj]
        mine = (
            [
                (i, m)
                for i, m in enumerate(matches.custom_matches)
                if m is not None and m.planhat_object == obj
            ]
            if matches is not None
            else []
        )
        if doc is None:
            continue
        specs = _rule_specs(obj, doc, fmap, mine, cm_doc)
        problems.extend(_check_rules(obj, specs))
        rules[obj] = tuple(specs)

    if problems or integration is None:
        raise SettingsError(_without_secrets(problems, documents.values()))
    return Settings(
        directory=base,
        integration=integration,
        rules=rules,
        files=files,
        documents=documents,
        product_template=template,
        store_url=_store_url(integration),
    )


def resolve_secret(env: str | None, block: str | None, what: str, location: Location) -> str:
    """A token or password from its environment variable or Prefect Secret block. Raises
    `SettingsError` (located at the setting) when it is not there; never shows the value."""
    if env:
        value = os.environ.get(env, "")
        if not value.strip():
            if looks_like_secret(env) or not _ENV_NAME.match(env):  # never repeat a secret
                message = (
                    f"the environment variable name given ({len(env)} characters, not shown) "
                    f"is no variable name: it looks like the {what} itself; put the {what} in "
                    "an environment variable and name that variable here"
                )
            else:
                message = (
                    f"the environment variable {env} is not set; set it to the {what} "
                    f"(e.g. export {env}=...) before running"
                )
            raise SettingsError([Problem(location, message)])
        return value.strip()
    try:
        from prefect.blocks.system import Secret
    except ImportError:  # pragma: no cover - Prefect is a dependency
        raise SettingsError([Problem(location, "Prefect is not installed")]) from None
    try:
        secret = Secret.load(block)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - any failure means "not there"
        shown = _hide_secrets(f"'{block}'")
        raise SettingsError(
            [
                Problem(
                    location,
                    f"the Prefect Secret block {shown} could not be loaded "
                    f"({type(exc).__name__}); create it with the {what} (prefect block create "
                    "secret) or use token_env",
                )
            ]
        ) from None
    value = secret.get()  # type: ignore[union-attr]
    return str(value).strip()


def token_location(settings: Settings, service: str) -> Location:
    conn = getattr(settings.integration.connection, service)
    key = "token_env" if conn.token_env else "secret_block"
    return settings.locate(INTEGRATION_FILE, ("connection", service, key))


def pipedrive_token(settings: Settings) -> str:
    """The Pipedrive API token, from where `integration.yaml` says it is."""
    conn = settings.integration.connection.pipedrive
    return resolve_secret(
        conn.token_env,
        conn.secret_block,
        "Pipedrive API token",
        token_location(settings, "pipedrive"),
    )


def planhat_token(settings: Settings) -> str:
    """The Planhat API token, from where `integration.yaml` says it is."""
    conn = settings.integration.connection.planhat
    return resolve_secret(
        conn.token_env, conn.secret_block, "Planhat API token", token_location(settings, "planhat")
    )


def receiver_password(settings: Settings) -> str:
    """The receiver's basic-auth password (Pipedrive sends it with every webhook delivery)."""
    auth = settings.integration.connection.receiver.basic_auth
    key = "password_env" if auth.password_env else "password_secret_block"
    where = settings.locate(INTEGRATION_FILE, ("connection", "receiver", "basic_auth", key))
    return resolve_secret(
        auth.password_env, auth.password_secret_block, "receiver's basic-auth password", where
    )
