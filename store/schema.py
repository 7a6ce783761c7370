"""The state store's tables (sqlmodel), as the code reads and writes them.

The database itself is created and upgraded by `store.migrations` (frozen DDL per schema
version); a test checks that a freshly migrated database matches these models.

* `links`: one row per linked record pair: (object type, Pipedrive id) and (object type,
  Planhat id) are each unique; the last-synced value of each mapped field (JSON) and its hash.
* `cursors`: one row per stream: the position (a UTC time), the ids seen at that exact time.
* `inbox`: one row per webhook event (dedupe key unique), with its processing status and
  when its Prefect event was posted (`event_posted_at`, NULL while the event is owed).
* `connections`: the verified Pipedrive connection (token fingerprint only).
* `run_log`: one row per (run, object type, record): the action taken and why.
* `schema_version`: one row per applied migration.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps them as naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime given to the store: {value.isoformat()}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        """The bound value of the last datetime given, kept: a batch of rows (run log lines,
        links) carries one time, converted once rather than once a row."""
        convert = super().bind_processor(dialect)
        if convert is None:
            return None
        last: list[tuple[Any, Any]] = [(None, None)]

        def process(value: Any) -> Any:
            given, bound = last[0]
            if value is given and value is not None:
                return bound
            bound = convert(value)
            last[0] = (value, bound)
            return bound

        return process

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def id_type() -> sa.types.TypeEngine[int]:
    """BIGINT; INTEGER on SQLite (only `INTEGER PRIMARY KEY` numbers rows there)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def json_type() -> sa.types.TypeEngine[Any]:
    """JSON kept as text (PostgreSQL `json`, not `jsonb`): values come back exactly as
    Python's `json` wrote them (jsonb would turn 1e20 into an integer, and nothing queries
    inside these documents)."""
    return sa.JSON()


class LinkTable(SQLModel, table=True):
    __tablename__ = "links"
    __table_args__ = (
        sa.UniqueConstraint("object_type", "pipedrive_id", name="uq_links_pipedrive"),
        sa.UniqueConstraint("object_type", "planhat_id", name="uq_links_planhat"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=id_type())
    object_type: str = Field(max_length=32)
    pipedrive_id: int = Field(sa_type=sa.BigInteger)
    planhat_id: str | None = Field(default=None, max_length=64)
    synced_values: dict[str, Any] = Field(sa_type=json_type())
    synced_hash: str = Field(max_length=64)
    synced_at: datetime = Field(sa_type=UTCDateTime)


class CursorTable(SQLModel, table=True):
    __tablename__ = "cursors"

    stream: str = Field(primary_key=True, max_length=100)
    value: datetime = Field(sa_type=UTCDateTime)
    seen_ids: list[Any] = Field(sa_type=json_type())
    updated_at: datetime = Field(sa_type=UTCDateTime)


class InboxTable(SQLModel, table=True):
    __tablename__ = "inbox"
    __table_args__ = (
        sa.UniqueConstraint("dedupe_key", name="uq_inbox_dedupe_key"),
        sa.Index("ix_inbox_status_id", "status", "id"),
        sa.Index("ix_inbox_status_deal", "status", "deal_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=id_type())
    dedupe_key: str = Field(max_length=200)
    payload: dict[str, Any] = Field(sa_type=json_type())
    status: str = Field(max_length=16)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    received_at: datetime = Field(sa_type=UTCDateTime)
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    event_posted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deal_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    run_requested_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ConnectionTable(SQLModel, table=True):
    __tablename__ = "connections"

    name: str = Field(primary_key=True, max_length=64)
    company_url: str = Field(max_length=500)
    token_fingerprint: str = Field(max_length=64)
    webhook_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    receiver_credential_ref: str | None = Field(default=None, max_length=500)
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class RunLogTable(SQLModel, table=True):
    """`uq_run_log_record` (run_id first) is also the index by run id."""

    __tablename__ = "run_log"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "object_type", "record_key", name="uq_run_log_record"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=id_type())
    run_id: str = Field(max_length=64)
    object_type: str = Field(max_length=32)
    record_key: str = Field(max_length=100)
    pipedrive_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    planhat_id: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=16)
    reason: str | None = Field(default=None, sa_type=sa.Text)
    at: datetime = Field(sa_type=UTCDateTime)


class CacheTable(SQLModel, table=True):
    """Small documents a run may reuse instead of asking an API again (e.g. the account's
    pipelines and field lists, so that one webhook costs a handful of calls)."""

    __tablename__ = "cache"

    key: str = Field(primary_key=True, max_length=100)
    value: dict[str, Any] = Field(sa_type=json_type())
    saved_at: datetime = Field(sa_type=UTCDateTime)


class SchemaVersionTable(SQLModel, table=True):
    __tablename__ = "schema_version"

    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    description: str = Field(max_length=200)
    applied_at: datetime = Field(sa_type=UTCDateTime)


def _table(model: type[SQLModel]) -> sa.Table:
    """The table SQLModel built for a `table=True` model (it sets `__table__` at class creation,
    which the type stubs do not declare)."""
    table = vars(model).get("__table__")
    if not isinstance(table, sa.Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


links = _table(LinkTable)
cursors = _table(CursorTable)
inbox = _table(InboxTable)
connections = _table(ConnectionTable)
run_log = _table(RunLogTable)
cache = _table(CacheTable)
schema_version = _table(SchemaVersionTable)

TABLES: tuple[sa.Table, ...] = (links, cursors, inbox, connections, run_log, cache, schema_version)
TABLE_NAMES: tuple[str, ...] = tuple(t.name for t in TABLES)
