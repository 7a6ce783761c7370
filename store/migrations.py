"""Schema versions: an ordered list of migrations and the runner that applies them at start.

`upgrade(engine)` brings a database to `LATEST` and is safe to call any number of times and
from several processes at once: the check-and-apply runs in one transaction that holds the
database's migration lock (PostgreSQL: a transaction-scoped advisory lock; SQLite: the write
lock of `BEGIN IMMEDIATE`), so a second starter waits, then finds the work done. Both backends
run DDL transactionally: a migration that fails leaves the previous version intact.

Each migration is frozen DDL for its version. Never edit one that has shipped: change the
models in `store.schema` and append a migration that brings version N-1 to N (a test compares
a migrated database with the models).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from store.db import writer
from store.records import now_utc
from store.schema import UTCDateTime, schema_version

log = logging.getLogger(__name__)

# Any constant 64-bit number: the advisory lock key that serializes migrations on PostgreSQL.
PG_MIGRATION_LOCK = 0x7064_7379_6E63_0001


class SchemaTooNewError(RuntimeError):
    """The database was upgraded by a newer version of pdsync than this one."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sa.Connection], None]


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON()  # PostgreSQL `json`: kept as text, exactly


def _v1(conn: sa.Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "links",
        md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("pipedrive_id", sa.BigInteger, nullable=False),
        sa.Column("planhat_id", sa.String(64), nullable=True),
        sa.Column("synced_values", _json(), nullable=False),
        sa.Column("synced_hash", sa.String(64), nullable=False),
        sa.Column("synced_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("object_type", "pipedrive_id", name="uq_links_pipedrive"),
        sa.UniqueConstraint("object_type", "planhat_id", name="uq_links_planhat"),
    )
    sa.Table(
        "cursors",
        md,
        sa.Column("stream", sa.String(100), primary_key=True),
        sa.Column("value", UTCDateTime, nullable=False),
        sa.Column("seen_ids", _json(), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "inbox",
        md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("claimed_at", UTCDateTime, nullable=True),
        sa.Column("processed_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("dedupe_key", name="uq_inbox_dedupe_key"),
        sa.Index("ix_inbox_status_id", "status", "id"),
    )
    sa.Table(
        "connections",
        md,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("company_url", sa.String(500), nullable=False),
        sa.Column("token_fingerprint", sa.String(64), nullable=False),
        sa.Column("webhook_id", sa.BigInteger, nullable=True),
        sa.Column("receiver_credential_ref", sa.String(500), nullable=True),
        sa.Column("verified_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    sa.Table(
        "run_log",
        md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("record_key", sa.String(100), nullable=False),
        sa.Column("pipedrive_id", sa.BigInteger, nullable=True),
        sa.Column("planhat_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("run_id", "object_type", "record_key", name="uq_run_log_record"),
    )
    md.create_all(conn)


def _v2(conn: sa.Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "cache",
        md,
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", _json(), nullable=False),
        sa.Column("saved_at", UTCDateTime, nullable=False),
    )
    md.create_all(conn)


#: Where the receiver kept the inbox keys of events it could not post, before version 3: a
#: cache document `{"keys": [...]}` (version 3 moves them into `inbox.event_posted_at`).
V2_UNPOSTED_EVENTS_KEY = "receiver:unposted-events"


def _v3(conn: sa.Connection) -> None:
    """`inbox.event_posted_at`: when the item's Prefect event was posted (NULL: still owed).
    Items stored before count as posted, except those of the receiver's old backlog of
    unposted events (a cache document, removed here)."""
    column_type = UTCDateTime().compile(dialect=conn.dialect)
    conn.execute(sa.text(f"ALTER TABLE inbox ADD COLUMN event_posted_at {column_type}"))
    inbox = sa.table(
        "inbox",
        sa.column("dedupe_key", sa.String(200)),
        sa.column("received_at", UTCDateTime),
        sa.column("event_posted_at", UTCDateTime),
    )
    cache = sa.table("cache", sa.column("key", sa.String(100)), sa.column("value", _json()))
    conn.execute(sa.update(inbox).values(event_posted_at=inbox.c.received_at))
    found = conn.execute(
        sa.select(cache.c.value).where(cache.c.key == V2_UNPOSTED_EVENTS_KEY)
    ).scalar()
    keys = found.get("keys") if isinstance(found, dict) else None
    unposted = sorted({k for k in keys if isinstance(k, str)}) if isinstance(keys, list) else []
    for start in range(0, len(unposted), 500):
        chunk = unposted[start : start + 500]
        conn.execute(
            sa.update(inbox).where(inbox.c.dedupe_key.in_(chunk)).values(event_posted_at=None)
        )
    conn.execute(sa.delete(cache).where(cache.c.key == V2_UNPOSTED_EVENTS_KEY))


def _deal_of(payload: object) -> int | None:
    """The deal id of a stored Pipedrive delivery (v2 `meta.entity`/`entity_id`, v1
    `meta.object`/`id`), None for other objects (frozen here for this migration)."""
    meta = payload.get("meta") if isinstance(payload, dict) else None
    if not isinstance(meta, dict):
        return None
    obj = meta.get("entity", meta.get("object"))
    value = meta.get("entity_id", meta.get("id") if "entity" not in meta else None)
    if obj != "deal":
        return None
    text = str(value)
    return int(text) if text.isdigit() and 0 < int(text) < 2**63 else None


def _v4(conn: sa.Connection) -> None:
    """`inbox.deal_id` (the deal of a deal notification, so that a run claims every waiting
    notification of a deal at once and no deal is synced by two runs at once) and
    `inbox.run_requested_at` (when the item's event was sent to start a deal-sync run).
    Waiting items get their deal id from their stored body."""
    column_type = UTCDateTime().compile(dialect=conn.dialect)
    conn.execute(sa.text("ALTER TABLE inbox ADD COLUMN deal_id BIGINT"))
    conn.execute(sa.text(f"ALTER TABLE inbox ADD COLUMN run_requested_at {column_type}"))
    conn.execute(sa.text("CREATE INDEX ix_inbox_status_deal ON inbox (status, deal_id)"))
    inbox = sa.table(
        "inbox",
        sa.column("id", sa.BigInteger),
        sa.column("status", sa.String(16)),
        sa.column("payload", _json()),
        sa.column("deal_id", sa.BigInteger),
    )
    waiting = conn.execute(
        sa.select(inbox.c.id, inbox.c.payload).where(inbox.c.status.in_(["pending", "processing"]))
    )
    for item_id, payload in list(waiting):
        deal = _deal_of(payload)
        if deal is not None:
            conn.execute(sa.update(inbox).where(inbox.c.id == item_id).values(deal_id=deal))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "links, cursors, inbox, connections, run log", _v1),
    Migration(2, "cache of reusable API answers", _v2),
    Migration(3, "inbox: when each item's Prefect event was posted", _v3),
    Migration(4, "inbox: each notification's deal, and when it asked for a run", _v4),
)
LATEST = MIGRATIONS[-1].version

assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1)), "versions are 1..N"


def current_version(conn: sa.Connection) -> int:
    """The database's schema version: 0 for an empty database."""
    if not sa.inspect(conn).has_table(schema_version.name):
        return 0
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def _create_version_table(conn: sa.Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        schema_version.name,
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("applied_at", UTCDateTime, nullable=False),
    )
    md.create_all(conn, checkfirst=True)


def _check_not_newer(version: int) -> None:
    if version > LATEST:
        raise SchemaTooNewError(
            f"the state store is at schema version {version}, newer than this pdsync knows "
            f"({LATEST}): upgrade pdsync, or point it at another database"
        )


def upgrade(engine: sa.Engine) -> int:
    """Create or upgrade the schema to `LATEST`; returns the version found before.

    Idempotent; concurrent callers (threads or processes) serialize on the migration lock and
    all return once the database is at `LATEST`. `engine` comes from `store.db.make_engine`."""
    with engine.connect() as conn:
        found = current_version(conn)
        conn.rollback()
    _check_not_newer(found)
    if found == LATEST:
        return found
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
        _create_version_table(conn)
        found = current_version(conn)
        _check_not_newer(found)
        for migration in MIGRATIONS:
            if migration.version <= found:
                continue
            log.info("state store: applying schema migration %d", migration.version)
            migration.apply(conn)
            conn.execute(
                sa.insert(schema_version).values(
                    version=migration.version,
                    description=migration.description,
                    applied_at=now_utc(),
                )
            )
    return found
