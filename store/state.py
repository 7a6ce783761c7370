"""`StateStore`: the sync's memory, in one database (a SQLite file, or PostgreSQL).

    store = StateStore("sqlite:///.pdsync/state.db")      # or postgresql+psycopg://...
    known = store.links_for("deal", [101, 102])           # {101: Link(...)}
    store.upsert_links("deal", [LinkRow(101, "ph_1", {"value": 1200})])
    store.advance_cursor("deals", last_update, seen_ids=[101], pushed=result.ok)
    store.inbox_add(delivery.inbox_key, payload)         # True the first time only
    store.log_actions(run_id, [RunAction("deal", "skipped", 7, reason="deal is open")])
    store.run_report(run_id).counts_table()

Guarantees, on both backends and with any number of processes sharing the database:

* **Schema**: created or upgraded when the store opens (`store.migrations`); opening twice, or
  from two processes at once, is safe.
* **Batches**: every method takes and returns many records in a few statements (chunks of
  1,000), never one round trip per record; each write method is one transaction: all of it
  is stored or none of it.
* **Links** are one-to-one per object type: (object type, Pipedrive id) and (object type,
  Planhat id) are each unique; upserting the same rows again changes nothing but `synced_at`.
* **Cursors** only move forward, and only when the caller says the push succeeded.
* **Inbox**: one row per dedupe key however often it is added; each pending item is claimed by
  exactly one `inbox_claim` (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one atomic
  `UPDATE ... RETURNING` under the database's write lock). An item's Prefect event is owed
  from `inbox_add` until `inbox_mark_posted` (`inbox_not_posted` lists the owed ones).
* **Secrets**: the connection keeps the token's fingerprint (`Connection.for_token` hashes
  it); no `StateStore` method takes a token, and the URL's password is never shown.

A `StateStore` may be shared by the threads of one process. Do not carry one across `fork`:
open a new one in the child (or call `close()` first).

Its size: one class, the state store's whole API (links, cursors, inbox, connection, run
log, cache), each method one transaction over `store.schema`'s tables.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

import store.db as db
import store.migrations as migrations
from store.records import (
    ACTIONS,
    INBOX_STATUSES,
    PROBLEM_ACTIONS,
    Action,
    Connection,
    Cursor,
    InboxItem,
    Link,
    LinkConflict,
    LinkRow,
    LinkWrite,
    ReasonCount,
    RunAction,
    RunLogEntry,
    RunReport,
    aware_utc,
    canonical_json,
    check_object_type,
    check_pipedrive_id,
    check_planhat_id,
    clip,
    now_utc,
    values_hash,
)
from store.schema import cache, connections, cursors, inbox, links, run_log

log = logging.getLogger(__name__)

CHUNK = 1000
# Any constant 64-bit number: the advisory lock that serializes deal claims on PostgreSQL.
PG_CLAIM_LOCK = 0x7064_7379_6E63_0002
#: the inbox keys of Planhat's automation webhooks start with this (`deployments.planhat_events`)
PLANHAT_KEY_PREFIX = "planhat:"
#: the notifications a run takes: deal notifications, or Planhat's
RunSource = Literal["deal", "planhat"]
RUN_SOURCES: tuple[RunSource, ...] = get_args(RunSource)
STATISTICS_MIN_WRITE = 1000
T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _among(
    column: sa.ColumnElement[Any], values: Sequence[Any], dialect: str
) -> sa.ColumnElement[bool]:
    """`column IN values`; on PostgreSQL `column = ANY(:array)`: one parameter, so the
    prepared statement's plan probes the index even before the table has statistics (with an
    IN list of separate parameters it scanned every row: 50 ms per lookup at 100,000 links)."""
    if dialect == "postgresql":
        array = sa.literal(list(values), postgresql.ARRAY(column.type))
        return column == sa.any_(array)
    return column.in_(values)


def _seen_key(value: int | str) -> tuple[int, int | str]:
    return (0, value) if isinstance(value, int) else (1, str(value))


def _check_seen_id(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"seen ids are integers or strings, got {value!r}")
    return value


def _check_stream(stream: str) -> str:
    if not isinstance(stream, str) or not stream or len(stream) > 100:
        raise ValueError(f"stream name must be a string of 1-100 characters, got {stream!r}")
    return stream


def _check_run_id(run_id: Any) -> str:
    if isinstance(run_id, uuid.UUID):
        run_id = str(run_id)
    if not isinstance(run_id, str) or not run_id or len(run_id) > 64:
        raise ValueError(f"run id must be a string of 1-64 characters, got {run_id!r}")
    return run_id


def _check_dedupe_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 200:
        raise ValueError(f"dedupe key must be a string of 1-200 characters, got {key!r}")
    return key


class StoreUnavailableError(RuntimeError):
    """The store's database cannot be reached or opened (the message names the URL, password
    hidden, and the reason)."""


class StateStore:
    """The state store at `url` (see the module docstring for what it guarantees).

    `url`: a SQLite file path or `sqlite:///path` (parent directories are created), or
    `postgresql+psycopg://user:password@host:port/db`. `clock` returns the current UTC time
    (tests inject one). The schema is created or upgraded before the constructor returns.
    """

    def __init__(self, url: str, *, clock: Callable[[], datetime] = now_utc) -> None:
        self._url = db.database_url(url)
        self._clock = clock
        try:
            self._engine = db.make_engine(self._url)
        except OSError as exc:
            raise StoreUnavailableError(
                f"cannot open the state store at {self.url}: {exc}"
            ) from exc
        try:
            migrations.upgrade(self._engine)
        except sa.exc.OperationalError as exc:
            self._engine.dispose()
            reason = str(exc.orig or exc).strip().splitlines()[0]
            raise StoreUnavailableError(
                f"cannot open the state store at {self.url}: {reason}"
            ) from None
        except BaseException:
            self._engine.dispose()
            raise
        self._insert = (
            postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        )

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._engine.dialect.name

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (for diagnostics and tests; the methods are the interface)."""
        return self._engine

    def schema_version(self) -> int:
        """The database's schema version (`store.migrations.LATEST` once open)."""
        with self._engine.connect() as conn:
            return migrations.current_version(conn)

    def close(self) -> None:
        """Close every pooled connection. The store can still be used afterwards (it
        reconnects)."""
        self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"

    def _now(self) -> datetime:
        return aware_utc(self._clock(), "clock()")

    def _write(self, work: Callable[[sa.Connection], T]) -> T:
        return db.write(self._engine, work)

    def _keep_statistics_fresh(self, table: sa.Table, written: int) -> None:
        """After a large write on PostgreSQL, ANALYZE `table` when its statistics lag far
        behind (more rows changed since the last analysis than 1,000 + its size then: the
        table about doubled).

        A backfill grows `links` by tens of thousands of rows a minute, faster than autovacuum
        (once a minute) re-analyzes it; with no statistics the planner reads every link of an
        object type for a lookup of 500 ids (36 ms instead of 2 ms at 100,000 links). The
        check is one catalog query, the analysis a sample of at most 30,000 rows; concurrent
        reads and writes go on meanwhile."""
        if self.dialect != "postgresql" or written < STATISTICS_MIN_WRITE:
            return
        query = sa.text(
            "SELECT s.n_mod_since_analyze, greatest(c.reltuples, 0) FROM pg_stat_user_tables s "
            "JOIN pg_class c ON c.oid = s.relid WHERE s.relid = to_regclass(:name)"
        )
        with self._engine.connect() as conn:
            row = conn.execute(query, {"name": table.name}).first()
            changed, size = (row[0] or 0, row[1] or 0) if row is not None else (0, 0)
            if changed + written > STATISTICS_MIN_WRITE + size:
                conn.exec_driver_sql(f'ANALYZE "{table.name}"')
                conn.commit()

    # -- links ------------------------------------------------------------------------------------
    @staticmethod
    def _link(row: Any) -> Link:
        return Link(
            object_type=row.object_type,
            pipedrive_id=row.pipedrive_id,
            planhat_id=row.planhat_id,
            values=row.synced_values,
            values_hash=row.synced_hash,
            synced_at=row.synced_at,
        )

    def links_for(self, object_type: str, pipedrive_ids: Iterable[int]) -> dict[int, Link]:
        """The links of these Pipedrive records, keyed by Pipedrive id; ids without a link are
        absent from the result. One query per 1,000 ids."""
        object_type = check_object_type(object_type)
        ids = sorted({check_pipedrive_id(i) for i in pipedrive_ids})
        found: dict[int, Link] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                query = sa.select(links).where(
                    links.c.object_type == object_type,
                    _among(links.c.pipedrive_id, chunk, self.dialect),
                )
                for row in conn.execute(query):
                    found[row.pipedrive_id] = self._link(row)
        return found

    def links_by_planhat(self, object_type: str, planhat_ids: Iterable[str]) -> dict[str, Link]:
        """The links of these Planhat records, keyed by Planhat id (the send direction's and
        the company resync's lookup); ids without a link are absent."""
        object_type = check_object_type(object_type)
        ids = sorted({i for i in (check_planhat_id(p) for p in planhat_ids) if i is not None})
        found: dict[str, Link] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                query = sa.select(links).where(
                    links.c.object_type == object_type,
                    _among(links.c.planhat_id, chunk, self.dialect),
                )
                for row in conn.execute(query):
                    found[row.planhat_id] = self._link(row)
        return found

    def linked_planhat_ids(self, object_type: str) -> dict[int, str | None]:
        """Every link of this object type as Pipedrive id → Planhat id (None when not known):
        an id map, without the synced values (a streamed run starts from it)."""
        object_type = check_object_type(object_type)
        with self._engine.connect() as conn:
            query = sa.select(links.c.pipedrive_id, links.c.planhat_id).where(
                links.c.object_type == object_type
            )
            return {pipedrive_id: planhat_id for pipedrive_id, planhat_id in conn.execute(query)}

    def linked_pipedrive_ids(self, object_type: str) -> set[int]:
        """Every Pipedrive id of this object type that has a link (e.g. the organizations whose
        persons and notes an incremental run keeps current)."""
        object_type = check_object_type(object_type)
        with self._engine.connect() as conn:
            query = sa.select(links.c.pipedrive_id).where(links.c.object_type == object_type)
            return set(conn.execute(query).scalars())

    def count_links(self, object_type: str | None = None) -> int:
        """The number of links, of one object type or of all."""
        query = sa.select(sa.func.count()).select_from(links)
        if object_type is not None:
            query = query.where(links.c.object_type == check_object_type(object_type))
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def upsert_links(
        self,
        object_type: str,
        rows: Iterable[LinkRow | Mapping[str, Any]],
        *,
        synced_at: datetime | None = None,
    ) -> LinkWrite:
        """Insert or update links keyed by (object type, Pipedrive id), in one transaction.

        Each row's `values` replace the stored last-synced values (and their hash); a row whose
        `planhat_id` is None keeps the Planhat id already stored. Within `rows` the last row
        for a Pipedrive id wins. A row whose Planhat id is already linked to a *different*
        Pipedrive record of this type is not written: it comes back in `conflicts` (links stay
        one-to-one; the caller reports it). Writing the same rows again is a no-op apart from
        `synced_at`. Safe with concurrent writers: no duplicate link can arise, and a write
        that races another is retried as a whole.
        """
        object_type = check_object_type(object_type)
        when = aware_utc(synced_at, "synced_at") if synced_at is not None else self._now()
        latest: dict[int, tuple[LinkRow, dict[str, Any], str]] = {}
        for raw in rows:
            row = LinkRow.coerce(raw)
            pipedrive_id = check_pipedrive_id(row.pipedrive_id)
            planhat_id = check_planhat_id(row.planhat_id)
            if not isinstance(row.values, Mapping):
                raise ValueError(f"link values must be a mapping, got {type(row.values).__name__}")
            values = dict(row.values)
            if set(map(type, values)) - {str} and not all(isinstance(k, str) for k in values):
                raise ValueError("link values must be keyed by field name (strings)")
            digest = values_hash(values)
            if (pipedrive_id, planhat_id) != (row.pipedrive_id, row.planhat_id):
                row = LinkRow(pipedrive_id, planhat_id, row.values)
            latest[pipedrive_id] = (row, values, digest)
        ordered = [latest[k] for k in sorted(latest)]  # one lock order for every writer
        if not ordered:
            return LinkWrite(written=0, conflicts=[])

        insert = self._insert(links)
        statement = insert.on_conflict_do_update(
            index_elements=[links.c.object_type, links.c.pipedrive_id],
            set_={
                "planhat_id": sa.func.coalesce(insert.excluded.planhat_id, links.c.planhat_id),
                "synced_values": insert.excluded.synced_values,
                "synced_hash": insert.excluded.synced_hash,
                "synced_at": insert.excluded.synced_at,
            },
        )
        # Within the batch, a Planhat id goes to the first row (in Pipedrive id order) naming it.
        batch_conflicts: list[LinkConflict] = []
        params: list[dict[str, Any]] = []
        row_of: dict[int, LinkRow] = {}  # Pipedrive id → its row (for a conflict's report)
        claimed: dict[str, int] = {}
        for row, values, digest in ordered:
            if row.planhat_id is not None:
                holder = claimed.setdefault(row.planhat_id, row.pipedrive_id)
                if holder != row.pipedrive_id:
                    batch_conflicts.append(LinkConflict(row=row, linked_pipedrive_id=holder))
                    continue
            params.append(
                {
                    "object_type": object_type,
                    "pipedrive_id": row.pipedrive_id,
                    "planhat_id": row.planhat_id,
                    "synced_values": values,
                    "synced_hash": digest,
                    "synced_at": when,
                }
            )
            row_of[row.pipedrive_id] = row

        def held_elsewhere(
            conn: sa.Connection, chunk: Sequence[dict[str, Any]]
        ) -> dict[int, LinkConflict]:
            """The rows of `chunk` whose Planhat id is stored for another Pipedrive id."""
            wanted = sorted({p["planhat_id"] for p in chunk if p["planhat_id"] is not None})
            query = sa.select(links.c.planhat_id, links.c.pipedrive_id).where(
                links.c.object_type == object_type,
                _among(links.c.planhat_id, wanted, conn.dialect.name),
            )
            holders = {ph: pd for ph, pd in conn.execute(query)}
            return {
                p["pipedrive_id"]: LinkConflict(
                    row=row_of[p["pipedrive_id"]], linked_pipedrive_id=holder
                )
                for p in chunk
                if (holder := holders.get(p["planhat_id"])) is not None
                and holder != p["pipedrive_id"]
            }

        def work(conn: sa.Connection) -> LinkWrite:
            conflicts = list(batch_conflicts)
            written = 0
            for chunk in _chunks(params):
                # Optimistic: a Planhat id linked elsewhere is rare, so write the chunk (in a
                # savepoint) and look the holders up only when the unique constraint on
                # (object type, Planhat id) objects: one statement per chunk, not two.
                try:
                    with conn.begin_nested():
                        db.execute_many(conn, statement, chunk)
                    written += len(chunk)
                    continue
                except sa.exc.IntegrityError as exc:
                    clash = exc
                refused = held_elsewhere(conn, chunk)
                if not refused:
                    raise clash  # not explained by a stored link: `db.write` retries it all
                conflicts.extend(refused.values())
                rest = [p for p in chunk if p["pipedrive_id"] not in refused]
                if rest:
                    db.execute_many(conn, statement, rest)  # a new clash: all is retried
                written += len(rest)
            conflicts.sort(key=lambda c: c.row.pipedrive_id)
            return LinkWrite(written=written, conflicts=conflicts)

        result = self._write(work)
        self._keep_statistics_fresh(links, result.written)
        if result.conflicts:
            log.warning(
                "state store: %d %s link(s) not written: Planhat id already linked elsewhere",
                len(result.conflicts),
                object_type,
            )
        return result

    # -- cursors ----------------------------------------------------------------------------------
    @staticmethod
    def _cursor(row: Any) -> Cursor:
        return Cursor(
            stream=row.stream,
            value=row.value,
            seen_ids=frozenset(row.seen_ids or ()),
            updated_at=row.updated_at,
        )

    def get_cursor(self, stream: str) -> Cursor | None:
        """The stream's cursor, or None before its first successful push."""
        stream = _check_stream(stream)
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(cursors).where(cursors.c.stream == stream)).first()
        return self._cursor(row) if row is not None else None

    def all_cursors(self) -> dict[str, Cursor]:
        """Every stream's cursor, keyed by stream name."""
        with self._engine.connect() as conn:
            return {r.stream: self._cursor(r) for r in conn.execute(sa.select(cursors))}

    def advance_cursor(
        self,
        stream: str,
        value: datetime,
        *,
        pushed: bool,
        seen_ids: Iterable[int | str] = (),
    ) -> bool:
        """Move the stream's cursor to `value` (timezone-aware) once its records are pushed.

        `pushed` is the caller's word that everything up to `value` reached the other side:
        when False nothing changes (the next run re-reads from the old cursor). The cursor
        never moves back: a `value` older than the stored one is ignored (a slower, older run
        finishing last cannot rewind it). At the same `value`, `seen_ids` are added to the
        stored ones; at a newer `value` they replace them.

        Returns True when the stored cursor is at `value` afterwards.
        """
        stream = _check_stream(stream)
        value = aware_utc(value, "cursor value")
        seen = {_check_seen_id(i) for i in seen_ids}
        if not pushed:
            log.info("state store: cursor %s stays put (push did not succeed)", stream)
            return False
        now = self._now()
        insert = self._insert(cursors)

        def encode(ids: set[int | str]) -> list[int | str]:
            return sorted(ids, key=_seen_key)

        def work(conn: sa.Connection) -> bool:
            locked = sa.select(cursors).where(cursors.c.stream == stream).with_for_update()
            current = conn.execute(locked).first()
            if current is None:
                created = conn.execute(
                    insert.on_conflict_do_nothing(index_elements=[cursors.c.stream])
                    .values(stream=stream, value=value, seen_ids=encode(seen), updated_at=now)
                    .returning(cursors.c.stream)
                ).first()
                if created is not None:
                    return True
                current = conn.execute(locked).first()
                assert current is not None
            if value < current.value:
                return False
            merged = seen if value > current.value else seen | set(current.seen_ids or ())
            conn.execute(
                sa.update(cursors)
                .where(cursors.c.stream == stream)
                .values(value=value, seen_ids=encode(merged), updated_at=now)
            )
            return True

        return self._write(work)

    def reset_cursor(self, stream: str) -> bool:
        """Forget the stream's cursor (its next run reads from the beginning). True if there
        was one."""
        stream = _check_stream(stream)
        return (
            self._write(
                lambda conn: conn.execute(sa.delete(cursors).where(cursors.c.stream == stream))
            ).rowcount
            == 1
        )

    # -- inbox ------------------------------------------------------------------------------------
    @staticmethod
    def _item(row: Any) -> InboxItem:
        return InboxItem(
            id=row.id,
            dedupe_key=row.dedupe_key,
            payload=row.payload,
            status=row.status,
            attempts=row.attempts,
            received_at=row.received_at,
            last_error=row.last_error,
            claimed_at=row.claimed_at,
            processed_at=row.processed_at,
            deal_id=row.deal_id,
            run_requested_at=row.run_requested_at,
        )

    def inbox_add(
        self,
        dedupe_key: str,
        payload: Mapping[str, Any],
        *,
        event_due: bool = True,
        deal_id: int | None = None,
    ) -> bool:
        """Store a webhook delivery durably (committed before this returns) as `pending`.

        Returns True when the key is new, False when an item with this key is already stored
        (a redelivery: nothing changes, whatever its status). `dedupe_key` is the delivery's
        event key (the receiver's `Delivery.inbox_key`). The item's Prefect event is owed
        until `inbox_mark_posted`; with `event_due=False` (a delivery that gets no event)
        nothing is owed from the start. `deal_id`: the deal of a deal notification (what
        `inbox_claim_deals` claims by)."""
        dedupe_key = _check_dedupe_key(dedupe_key)
        if deal_id is not None:
            deal_id = check_pipedrive_id(deal_id)
        if not isinstance(payload, Mapping):
            raise ValueError(f"payload must be a JSON object, got {type(payload).__name__}")
        document = json.loads(canonical_json(payload))  # plain JSON, or ValueError now
        now = self._now()
        row: dict[str, Any] = {
            "dedupe_key": dedupe_key,
            "payload": document,
            "status": "pending",
            "attempts": 0,
            "received_at": now,
        }
        if deal_id is not None:
            row["deal_id"] = deal_id
        if not event_due:
            row["event_posted_at"] = now
        statement = (
            self._insert(inbox)
            .on_conflict_do_nothing(index_elements=[inbox.c.dedupe_key])
            .values(**row)
            .returning(inbox.c.id)
        )  # rowcount is not reliable with RETURNING; the returned row is
        return self._write(lambda conn: conn.execute(statement).first() is not None)

    def inbox_mark_posted(self, dedupe_keys: Iterable[str]) -> int:
        """Record that the Prefect event of these items was posted (or that they need none):
        they leave `inbox_not_posted`. Returns how many changed (items already marked, and
        keys not stored, are left as they are)."""
        keys = sorted({_check_dedupe_key(k) for k in dedupe_keys})

        def work(conn: sa.Connection) -> int:
            changed = 0
            for chunk in _chunks(keys):
                statement = (
                    sa.update(inbox)
                    .where(
                        _among(inbox.c.dedupe_key, chunk, self.dialect),
                        inbox.c.event_posted_at.is_(None),
                    )
                    .values(event_posted_at=self._now())
                )
                changed += conn.execute(statement).rowcount
            return changed

        return self._write(work) if keys else 0

    @staticmethod
    def _not_posted() -> sa.ColumnElement[bool]:
        return sa.and_(inbox.c.status == "pending", inbox.c.event_posted_at.is_(None))

    def inbox_not_posted(self, limit: int = 100) -> list[InboxItem]:
        """Up to `limit` pending items whose Prefect event is owed (never posted), oldest
        first. Items a run or the incremental sync already settled are not among them."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        query = sa.select(inbox).where(self._not_posted()).order_by(inbox.c.id).limit(limit)
        with self._engine.connect() as conn:
            return [self._item(row) for row in conn.execute(query)]

    def inbox_not_posted_count(self) -> int:
        """How many pending items' Prefect events are owed."""
        query = sa.select(sa.func.count()).select_from(inbox).where(self._not_posted())
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def inbox_event_owed(self, dedupe_key: str) -> bool:
        """True when the item with this key is pending and its Prefect event is owed."""
        query = sa.select(inbox.c.id).where(
            inbox.c.dedupe_key == _check_dedupe_key(dedupe_key), self._not_posted()
        )
        with self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    def _claim(self, condition: sa.ColumnElement[bool], limit: int) -> list[InboxItem]:
        pick = (
            sa.select(inbox.c.id)
            .where(inbox.c.status == "pending", condition)
            .order_by(inbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            sa.update(inbox)
            .where(inbox.c.id.in_(pick.scalar_subquery()))
            .values(status="processing", attempts=inbox.c.attempts + 1, claimed_at=self._now())
            .returning(*inbox.c)
        )
        rows = self._write(lambda conn: list(conn.execute(statement)))
        return sorted((self._item(r) for r in rows), key=lambda i: i.id)

    def inbox_claim(self, limit: int = 100) -> list[InboxItem]:
        """Claim up to `limit` pending items, oldest first: each becomes `processing`, its
        `attempts` goes up by one, and it is returned to this caller only: concurrent claimers
        (threads or processes) never get the same item. Finish each with `inbox_done` or
        `inbox_failed`; `inbox_requeue_stale` returns items of a crashed worker."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        return self._claim(sa.true(), limit)

    def _deal_waiting(self) -> sa.ColumnElement[bool]:
        return sa.and_(inbox.c.status == "pending", inbox.c.deal_id.is_not(None))

    def _waiting(self, source: RunSource) -> sa.ColumnElement[bool]:
        """The waiting notifications a run of `source` takes: deal notifications (`deal`), or
        Planhat's automation webhooks (`planhat`: keys starting `planhat:`)."""
        if source == "deal":
            return self._deal_waiting()
        if source == "planhat":
            return sa.and_(
                inbox.c.status == "pending", inbox.c.dedupe_key.startswith(PLANHAT_KEY_PREFIX)
            )
        raise ValueError(f"source must be one of {', '.join(RUN_SOURCES)}, got {source!r}")

    def inbox_request_run(
        self, dedupe_key: str, fresh_within: timedelta, *, source: RunSource = "deal"
    ) -> bool:
        """Decide whether the notification with this key must start a run: yes (True, and its
        `run_requested_at` is set) when it is pending and no other waiting notification of the
        same `source` (deal notifications, or Planhat's) asked for a run in the last
        `fresh_within` (that run, not started yet, will take this one too: a run claims every
        waiting notification of its source). False for items that are not pending
        notifications of that source. One transaction under the claim lock, so of
        notifications arriving together one asks."""
        key = _check_dedupe_key(dedupe_key)
        since = self._now() - fresh_within
        waiting = self._waiting(source)

        def work(conn: sa.Connection) -> bool:
            self._claim_lock(conn)
            asked = conn.execute(
                sa.select(inbox.c.id)
                .where(waiting, inbox.c.dedupe_key != key, inbox.c.run_requested_at >= since)
                .limit(1)
            ).first()
            if asked is not None:
                return False
            statement = (
                sa.update(inbox)
                .where(inbox.c.dedupe_key == key, waiting)
                .values(run_requested_at=self._now())
            )
            return bool(conn.execute(statement).rowcount)

        return self._write(work)

    def inbox_unasked(
        self, older_than: timedelta, *, source: RunSource = "deal"
    ) -> InboxItem | None:
        """The oldest waiting notification of `source`, received more than `older_than` ago,
        when none of its source asked for a run within `older_than` (so no run is on its way
        to take them: the serve loop asks again). None otherwise."""
        since = self._now() - older_than
        waiting = self._waiting(source)
        asked = sa.select(inbox.c.id).where(waiting, inbox.c.run_requested_at >= since)
        query = (
            sa.select(inbox)
            .where(waiting, inbox.c.received_at < since, ~sa.exists(asked))
            .order_by(inbox.c.id)
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return self._item(row) if row is not None else None

    def inbox_mark_run_requested(self, dedupe_key: str) -> bool:
        """Record that a run was asked for on behalf of this waiting notification."""
        statement = (
            sa.update(inbox)
            .where(
                inbox.c.dedupe_key == _check_dedupe_key(dedupe_key),
                sa.or_(self._waiting("deal"), self._waiting("planhat")),
            )
            .values(run_requested_at=self._now())
        )
        return bool(self._write(lambda conn: conn.execute(statement).rowcount))

    def inbox_claim_planhat(self, limit: int = 500) -> list[InboxItem]:
        """Claim, as `inbox_claim` does, up to `limit` waiting Planhat notifications (keys
        starting `planhat:`), oldest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        return self._claim(inbox.c.dedupe_key.startswith(PLANHAT_KEY_PREFIX), limit)

    def inbox_deal_pace(self, window: timedelta) -> tuple[int, int]:
        """(deal notifications received in the last `window`, deals waiting): how fast they
        come and how many a claim would take now."""
        since = self._now() - window
        arrivals = sa.select(sa.func.count()).where(
            inbox.c.deal_id.is_not(None), inbox.c.received_at >= since
        )
        waiting = sa.select(sa.func.count(sa.distinct(inbox.c.deal_id))).where(self._deal_waiting())
        with self._engine.connect() as conn:
            return int(conn.execute(arrivals).scalar() or 0), int(
                conn.execute(waiting).scalar() or 0
            )

    def _claim_lock(self, conn: sa.Connection) -> None:
        """Serialize deal claims across processes (SQLite: its write lock already does)."""
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_CLAIM_LOCK})

    def inbox_claim_deals(
        self, max_deals: int, *, first: str | None = None, deals: Iterable[int] = ()
    ) -> list[InboxItem]:
        """Claim, as `inbox_claim` does, every waiting notification of up to `max_deals` deals
        (oldest first; the deal of the item keyed `first` and the `deals` given before the
        others), skipping any deal that has a notification in `processing`: a deal is never
        in two runs at once, and its duplicates and later notifications go together. Returns
        the claimed items (several per deal possibly), oldest first."""
        if isinstance(max_deals, bool) or not isinstance(max_deals, int) or max_deals < 1:
            raise ValueError(f"max_deals must be a positive integer, got {max_deals!r}")
        key = _check_dedupe_key(first) if first is not None else None
        preferred = sorted({check_pipedrive_id(d) for d in deals})

        def work(conn: sa.Connection) -> list[InboxItem]:
            self._claim_lock(conn)
            busy = sa.select(inbox.c.deal_id).where(
                inbox.c.status == "processing", inbox.c.deal_id.is_not(None)
            )
            waiting = self._deal_waiting() & inbox.c.deal_id.not_in(busy)
            rank: list[sa.ColumnElement[bool]] = []
            if preferred:
                rank.append(inbox.c.deal_id.in_(preferred))
            if key is not None:
                rank.append(inbox.c.dedupe_key == key)
            first_seen = sa.func.min(inbox.c.id)
            order = [sa.func.max(sa.case((c, 1), else_=0)).desc() for c in rank]
            chosen = [
                row[0]
                for row in conn.execute(
                    sa.select(inbox.c.deal_id)
                    .where(waiting)
                    .group_by(inbox.c.deal_id)
                    .order_by(*order, first_seen)
                    .limit(max_deals)
                )
            ]
            if not chosen:
                return []
            statement = (
                sa.update(inbox)
                .where(self._deal_waiting(), inbox.c.deal_id.in_(chosen))
                .values(status="processing", attempts=inbox.c.attempts + 1, claimed_at=self._now())
                .returning(*inbox.c)
            )
            return sorted((self._item(r) for r in conn.execute(statement)), key=lambda i: i.id)

        return self._write(work)

    def inbox_get(self, dedupe_key: str) -> InboxItem | None:
        """The item with this key, whatever its status."""
        query = sa.select(inbox).where(inbox.c.dedupe_key == _check_dedupe_key(dedupe_key))
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return self._item(row) if row is not None else None

    def _finish(self, ids: Iterable[int], values: dict[str, Any]) -> int:
        id_list = sorted({int(i) for i in ids})

        def work(conn: sa.Connection) -> int:
            changed = 0
            for chunk in _chunks(id_list):
                statement = (
                    sa.update(inbox)
                    .where(_among(inbox.c.id, chunk, self.dialect), inbox.c.status == "processing")
                    .values(**values)
                )
                changed += conn.execute(statement).rowcount
            return changed

        return self._write(work) if id_list else 0

    def inbox_done(self, item_ids: Iterable[int]) -> int:
        """Mark claimed (`processing`) items `done`; returns how many changed (items not in
        `processing` are left as they are)."""
        return self._finish(item_ids, {"status": "done", "processed_at": self._now()})

    def inbox_failed(self, item_ids: Iterable[int], error: str, *, retry: bool = False) -> int:
        """Record `error` on claimed items: back to `pending` for another attempt when `retry`,
        else `failed` for good. Returns how many changed (only `processing` items do)."""
        values: dict[str, Any] = {"last_error": clip(error)}
        if retry:
            values.update(status="pending", claimed_at=None)
        else:
            values.update(status="failed", processed_at=self._now())
        return self._finish(item_ids, values)

    def inbox_requeue_stale(self, older_than: timedelta) -> int:
        """Return to `pending` the items claimed more than `older_than` ago and never finished
        (their worker died); returns how many. Their next claim counts another attempt."""
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise ValueError("older_than must be a non-negative timedelta")
        now = self._now()
        statement = (
            sa.update(inbox)
            .where(inbox.c.status == "processing", inbox.c.claimed_at < now - older_than)
            .values(
                status="pending",
                claimed_at=None,
                last_error=f"claim expired: not finished within {older_than}",
            )
        )
        return self._write(lambda conn: conn.execute(statement).rowcount)

    def inbox_purge(self, finished_before: datetime) -> int:
        """Delete `done` items processed before `finished_before` (keeps the table small; a
        redelivery of a purged event is stored again, and the sync, being idempotent, changes
        nothing). Returns how many were deleted."""
        cutoff = aware_utc(finished_before, "finished_before")
        statement = sa.delete(inbox).where(inbox.c.status == "done", inbox.c.processed_at < cutoff)
        return self._write(lambda conn: conn.execute(statement).rowcount)

    def inbox_counts(self) -> dict[str, int]:
        """The number of items per status (every status present, 0 included)."""
        query = sa.select(inbox.c.status, sa.func.count()).group_by(inbox.c.status)
        counts: dict[str, int] = dict.fromkeys(INBOX_STATUSES, 0)
        with self._engine.connect() as conn:
            counts.update({status: int(n) for status, n in conn.execute(query)})
        return counts

    # -- cache ------------------------------------------------------------------------------------
    def cache_put(self, key: str, value: Mapping[str, Any]) -> None:
        """Keep a JSON document under `key` (replacing the previous one), stamped now."""
        if not isinstance(key, str) or not key or len(key) > 100:
            raise ValueError(f"cache key must be a string of 1-100 characters, got {key!r}")
        document = json.loads(canonical_json(dict(value)))  # plain JSON, or ValueError now
        row = {"key": key, "value": document, "saved_at": self._now()}
        insert = self._insert(cache).values(**row)
        statement = insert.on_conflict_do_update(
            index_elements=[cache.c.key],
            set_={"value": insert.excluded.value, "saved_at": insert.excluded.saved_at},
        )
        self._write(lambda conn: conn.execute(statement))

    def cache_get(self, key: str) -> tuple[dict[str, Any], datetime] | None:
        """The document kept under `key` and when it was saved, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(cache.c.value, cache.c.saved_at).where(cache.c.key == key)
            ).first()
        return None if row is None else (dict(row.value), row.saved_at)

    def cache_delete(self, key: str) -> bool:
        """Forget the document kept under `key`; True when there was one."""
        statement = sa.delete(cache).where(cache.c.key == key)
        return bool(self._write(lambda conn: conn.execute(statement).rowcount))

    # -- connection -------------------------------------------------------------------------------
    def save_connection(self, connection: Connection) -> Connection:
        """Store the verified connection (replacing the one of the same name); returns it with
        `updated_at` set. Only the token's fingerprint is stored (`Connection` refuses
        anything else)."""
        if not isinstance(connection, Connection):
            raise ValueError("save_connection takes a store.Connection")
        now = self._now()
        row = {
            "name": connection.name,
            "company_url": connection.company_url,
            "token_fingerprint": connection.token_fingerprint,
            "webhook_id": connection.webhook_id,
            "receiver_credential_ref": connection.receiver_credential_ref,
            "verified_at": connection.verified_at,
            "updated_at": now,
        }
        insert = self._insert(connections).values(**row)
        statement = insert.on_conflict_do_update(
            index_elements=[connections.c.name],
            set_={k: insert.excluded[k] for k in row if k != "name"},
        )
        self._write(lambda conn: conn.execute(statement))
        return replace(connection, updated_at=now)

    def get_connection(self, name: str = "default") -> Connection | None:
        """The stored connection of this name, or None before the first successful connect."""
        query = sa.select(connections).where(connections.c.name == name)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return Connection(
            name=row.name,
            company_url=row.company_url,
            token_fingerprint=row.token_fingerprint,
            webhook_id=row.webhook_id,
            receiver_credential_ref=row.receiver_credential_ref,
            verified_at=row.verified_at,
            updated_at=row.updated_at,
        )

    # -- run log ----------------------------------------------------------------------------------
    def log_actions(self, run_id: str, rows: Iterable[RunAction | Mapping[str, Any]]) -> int:
        """Record what run `run_id` did with each record, in one transaction.

        A record is identified by (object type, Pipedrive id), else (object type, Planhat id);
        logging it again in the same run replaces its line (a retried task does not count a
        record twice, and the last outcome stands). Lines without either id are all kept.
        Returns the number of lines written."""
        run_id = _check_run_id(run_id)
        now = self._now()
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        checked: object = object()  # the last object type checked: a batch's lines share it
        for raw in rows:
            row = RunAction.coerce(raw)
            if row.object_type is not checked:
                checked = object_type = check_object_type(row.object_type)
            if row.action not in ACTIONS:
                raise ValueError(f"action must be one of {', '.join(ACTIONS)}; got {row.action!r}")
            pipedrive_id = (
                check_pipedrive_id(row.pipedrive_id) if row.pipedrive_id is not None else None
            )
            planhat_id = check_planhat_id(row.planhat_id)
            if pipedrive_id is not None:
                key = f"pd:{pipedrive_id}"
            elif planhat_id is not None:
                key = f"ph:{planhat_id}"
            else:
                key = f"row:{uuid.uuid4().hex}"
            latest[(object_type, key)] = {
                "run_id": run_id,
                "object_type": object_type,
                "record_key": key,
                "pipedrive_id": pipedrive_id,
                "planhat_id": planhat_id,
                "action": row.action,
                "reason": clip(row.reason),
                "at": now,
            }
        params = [latest[k] for k in sorted(latest)]
        if not params:
            return 0
        insert = self._insert(run_log)
        statement = insert.on_conflict_do_update(
            index_elements=[run_log.c.run_id, run_log.c.object_type, run_log.c.record_key],
            set_={k: insert.excluded[k] for k in ("pipedrive_id", "planhat_id", "action", "reason")}
            | {"at": insert.excluded.at},
        )

        def work(conn: sa.Connection) -> int:
            for chunk in _chunks(params):
                db.execute_many(conn, statement, chunk)
            return len(params)

        written = self._write(work)
        self._keep_statistics_fresh(run_log, written)
        return written

    def run_report(
        self,
        run_id: str,
        *,
        problem_limit: int = 1000,
        reason_group: Callable[[str], str] | None = None,
    ) -> RunReport:
        """Counts per object type and action, the skips/conflicts/failures grouped by reason,
        and the first `problem_limit` of them one by one (in the order they were logged).

        `reason_group` maps a reason to its group's text (e.g. with the record's id replaced:
        `tasks.reasons.reason_group`); the reasons are then counted per group, read row by row,
        so that memory holds the groups, not one entry per record; a group of one text shows
        that text. Without it, equal texts are counted together."""
        run_id = _check_run_id(run_id)
        in_run = run_log.c.run_id == run_id
        problem = run_log.c.action.in_(PROBLEM_ACTIONS)
        counts: dict[str, dict[str, int]] = {}
        with self._engine.connect() as conn:
            query = (
                sa.select(run_log.c.object_type, run_log.c.action, sa.func.count())
                .where(in_run)
                .group_by(run_log.c.object_type, run_log.c.action)
            )
            for object_type, action, n in conn.execute(query):
                counts.setdefault(object_type, {})[action] = int(n)
            reasons = self._reasons(conn, sa.and_(in_run, problem), reason_group)
            query = sa.select(run_log).where(in_run, problem).order_by(run_log.c.id)
            problems = [
                self._log_entry(r) for r in conn.execute(query.limit(max(0, problem_limit)))
            ]
        return RunReport(
            run_id=run_id,
            counts=counts,
            reasons=reasons,
            problems=problems,
            problems_total=sum(r.count for r in reasons),
        )

    @staticmethod
    def _reasons(
        conn: sa.Connection, where: sa.ColumnElement[bool], group: Callable[[str], str] | None
    ) -> list[ReasonCount]:
        """The problem lines' reasons counted per (object type, action, group), most frequent
        first (see `run_report`)."""
        columns = (run_log.c.object_type, run_log.c.action, run_log.c.reason)
        if group is None:
            n_col = sa.func.count().label("n")
            query = (
                sa.select(*columns, n_col)
                .where(where)
                .group_by(*columns)
                .order_by(n_col.desc(), run_log.c.object_type, run_log.c.action)
            )
            return [ReasonCount(o, a, r, int(n)) for o, a, r, n in conn.execute(query)]
        # key → [count, the first text, whether the group holds another text]
        groups: dict[tuple[str, Action, str | None], list[Any]] = {}
        rows = conn.execution_options(yield_per=2000).execute(sa.select(*columns).where(where))
        for object_type, action, reason in rows:
            key = (object_type, action, None if reason is None else group(reason))
            entry = groups.get(key)
            if entry is None:
                groups[key] = [1, reason, False]
                continue
            entry[0] += 1
            if not entry[2] and reason != entry[1]:
                entry[2] = True
        ordered = sorted(
            groups.items(), key=lambda item: (-item[1][0], item[0][0], item[0][1], item[0][2] or "")
        )
        return [
            ReasonCount(object_type, action, text if several else first, count)
            for (object_type, action, text), (count, first, several) in ordered
        ]

    @staticmethod
    def _log_entry(row: Any) -> RunLogEntry:
        return RunLogEntry(
            run_id=row.run_id,
            object_type=row.object_type,
            action=row.action,
            pipedrive_id=row.pipedrive_id,
            planhat_id=row.planhat_id,
            reason=row.reason,
            at=row.at,
        )

    def record_history(
        self, object_type: str, pipedrive_id: int, *, since: datetime | None = None
    ) -> list[RunLogEntry]:
        """What the runs did with one Pipedrive record, oldest first (`since`: logged at or
        after): which run synced a deal, whichever notification started that run."""
        object_type = check_object_type(object_type)
        query = sa.select(run_log).where(
            run_log.c.object_type == object_type,
            run_log.c.pipedrive_id == check_pipedrive_id(pipedrive_id),
        )
        if since is not None:
            query = query.where(run_log.c.at >= aware_utc(since, "since"))
        with self._engine.connect() as conn:
            return [self._log_entry(r) for r in conn.execute(query.order_by(run_log.c.id))]


__all__ = ["StateStore", "StoreUnavailableError"]
