"""The settings files as pydantic models, and what the loader hands on.

* `Integration` (`integration.yaml`: connection, sections and directions, pipelines, license
  defaults, conflict policy, schedule, state store), `FieldMap` (a pair's field-map file: one
  `FieldRule` per field), `CustomMatches` (`custom_matches.yaml`: one `CustomMatch` each);
* `Settings`: everything the files say, validated as far as possible without the accounts, with
  each rule as a located `RuleSpec` and the license product template as `TemplatePart`s.

The models refuse unknown keys and a secret written where its *name* belongs
(`mappings.secrets`); `mappings.loading` reads the files into them.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mappings.errors import Location
from mappings.schema import CUSTOM_MATCHES_FILE, INTEGRATION_FILE, Direction, PlanhatObject
from mappings.secrets import block_name, env_name
from mappings.values import CONVERTERS
from mappings.yamlsource import Document, PathKey

__all__ = [
    "CUSTOM_MATCHES_FILE",
    "DATABASE_URL_ENV",
    "DEFAULT_DIR",
    "DEFAULT_STORE_URL",
    "INTEGRATION_FILE",
    "SETTINGS_DIR_ENV",
    "BasicAuth",
    "ConflictPolicy",
    "Connection",
    "ContactsSection",
    "ConvertKind",
    "CustomMatch",
    "CustomMatches",
    "DealsSection",
    "FieldMap",
    "FieldRule",
    "Incremental",
    "Integration",
    "LicenseDefaults",
    "NotesSection",
    "OrganizationsSection",
    "PipedriveConnection",
    "PlanhatConnection",
    "Receiver",
    "RuleSpec",
    "Settings",
    "Store",
    "TemplatePart",
]

#: the shipped settings: this package's directory
DEFAULT_DIR = Path(__file__).resolve().parent
SETTINGS_DIR_ENV = "PDSYNC_SETTINGS_DIR"
DATABASE_URL_ENV = "PDSYNC_DATABASE_URL"
DEFAULT_STORE_URL = "sqlite:///.pdsync/state.db"


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _TokenSource(_Strict):
    """Where a token comes from: exactly one of an environment variable or a Prefect Secret
    block. Never the token itself."""

    token_env: str | None = None
    secret_block: str | None = None

    @field_validator("token_env", mode="before")
    @classmethod
    def _check_env(cls, value: Any, info: ValidationInfo) -> Any:
        return env_name(value, info.field_name or "token_env")

    @field_validator("secret_block", mode="before")
    @classmethod
    def _check_block(cls, value: Any, info: ValidationInfo) -> Any:
        return block_name(value, info.field_name or "secret_block")

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
        return env_name(value, info.field_name or "password_env")

    @field_validator("password_secret_block", mode="before")
    @classmethod
    def _check_block(cls, value: Any, info: ValidationInfo) -> Any:
        return block_name(value, info.field_name or "password_secret_block")


class PlanhatWebhook(_Strict):
    """Planhat's automation webhooks (`POST /webhooks/planhat`): the header that carries the
    shared secret, and where the secret comes from (exactly one of the two)."""

    header: str = "X-Pdsync-Secret"
    secret_env: str | None = None
    secret_block: str | None = None

    @field_validator("secret_env", mode="before")
    @classmethod
    def _check_env(cls, value: Any, info: ValidationInfo) -> Any:
        return env_name(value, info.field_name or "secret_env")

    @field_validator("secret_block", mode="before")
    @classmethod
    def _check_block(cls, value: Any, info: ValidationInfo) -> Any:
        return block_name(value, info.field_name or "secret_block")


class Receiver(_Strict):
    public_url: str | None = None
    basic_auth: BasicAuth = BasicAuth(password_env="PDSYNC_WEBHOOK_PASSWORD")  # noqa: S106
    #: None: the receiver takes no Planhat webhook (the incremental sync's scan still runs)
    planhat_webhook: PlanhatWebhook | None = None


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
