"""Database URLs, engines and write transactions for the state store.

* `database_url(url)`: a SQLite file path or URL, or a PostgreSQL URL, normalized
  (`postgresql://` and `postgres://` use psycopg 3). Anything else is refused with an example.
* `make_engine(url)`: SQLite files get their parent directories, WAL (readers never block the
  writer), `synchronous=FULL` (a committed inbox row survives a power cut) and a busy timeout,
  so that several processes share one file; SQLAlchemy's pysqlite transaction handling is
  replaced by explicit `BEGIN` / `BEGIN IMMEDIATE` (the recipe of SQLAlchemy's SQLite docs), so
  a write transaction takes the write lock up front and cannot fail half-way on a lock upgrade.
* `write(engine, work)`: runs `work(conn)` in one write transaction, retried a few times with
  jittered backoff on transient conflicts (PostgreSQL deadlock, serialization failure or a
  unique violation from a concurrent insert; SQLite busy beyond the timeout). `work` must only
  touch the database, so that running it again is safe.
"""

from __future__ import annotations

import json
import logging
import operator
import random
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_OPTION = "pdsync_write"
BUSY_TIMEOUT_S = 30.0
WRITE_ATTEMPTS = 8
_URL_EXAMPLE = (
    "a SQLite file (e.g. .pdsync/state.db or sqlite:///.pdsync/state.db) or a PostgreSQL URL "
    "(e.g. postgresql+psycopg://user:password@host:5432/pdsync)"
)
_PG_TRANSIENT = {"40001", "40P01", "23505", "55P03"}
_SQLITE_TRANSIENT = {"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_SNAPSHOT"}


class StoreUrlError(ValueError):
    """The state store's URL is not one it can use."""


def database_url(url: str) -> sa.URL:
    """Parse and normalize the store's URL (see the module docstring)."""
    if not isinstance(url, str) or not url.strip():
        raise StoreUrlError(f"the state store needs a database URL: {_URL_EXAMPLE}")
    text = url.strip()
    if "://" not in text:
        return sa.URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        parsed = make_url(text)
    except sa.exc.ArgumentError:
        raise StoreUrlError(f"not a database URL; use {_URL_EXAMPLE}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise StoreUrlError(f"unsupported SQLite driver {parsed.drivername!r}; use sqlite://")
        if parsed.database and parsed.database != ":memory:":
            parsed = parsed.set(database=str(Path(parsed.database).expanduser()))
        return parsed
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
            return parsed.set(drivername="postgresql+psycopg")
        raise StoreUrlError(
            f"unsupported PostgreSQL driver {parsed.drivername!r}: pdsync uses psycopg 3 "
            "(postgresql+psycopg://...)"
        )
    raise StoreUrlError(f"unsupported database {backend!r}; use {_URL_EXAMPLE}")


def is_memory(url: sa.URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def json_text(value: Any) -> str:
    """The text of a JSON column: orjson's (a backfill writes one per link), or Python's json
    for what orjson refuses (integers beyond 64 bits). Every value is checked by
    `store.records.canonical_json` before it reaches a column, so NaN and the infinities (which
    orjson would write as null) never do. Read back with Python's json: orjson would turn
    integers beyond 64 bits into floats."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def make_engine(url: sa.URL) -> sa.Engine:
    """An engine for `url` (normalized by `database_url`), set up as the module says."""
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=5, json_serializer=json_text
        )
    if is_memory(url):
        # One connection shared by every user of this store: for tests and throwaway use only.
        engine = sa.create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_serializer=json_text,
        )
    else:
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False},
            json_serializer=json_text,
        )
    memory = is_memory(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if not memory:
                _use_wal(cursor)
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _use_wal(cursor: Any) -> None:
    """Switch the file to WAL (a setting kept in the file, so only its first opener changes
    it). The switch needs the file to itself, and SQLite answers "database is locked" at once,
    without waiting out the busy timeout, when another process opens the new file at the
    same moment: retried here until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.2)


def writer(engine: sa.Engine) -> sa.Engine:
    """The same engine (same pool), opening write transactions."""
    return engine.execution_options(**{WRITE_OPTION: True})


def execute_many(
    conn: sa.Connection, statement: sa.Insert, rows: Sequence[Mapping[str, Any]]
) -> None:
    """`conn.execute(statement, rows)` for a batch of rows that all have the same keys (the
    statement's columns), with the statement compiled once and the rows handed to the
    driver's `executemany`, each value bound by its column's type as SQLAlchemy would.

    SQLAlchemy's own executemany builds every row's parameters through the compiled
    statement, in Python: a quarter of the time of a backfill's link and run-log writes.
    Errors are SQLAlchemy's as usual (`sa.exc.IntegrityError` and so on, so `write` retries
    what is transient)."""
    if not rows:
        return
    dialect = conn.dialect
    first = rows[0]
    compiled = statement.compile(dialect=dialect, column_keys=list(first))
    names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
    keys = [compiled.binds[name].key for name in names]
    missing = [key for key in keys if key not in first]
    if missing or len(set(keys)) != len(first):
        raise ValueError(f"execute_many: the rows' keys {sorted(first)} are not the statement's")
    processors = [
        (i, process)
        for i, name in enumerate(names)
        if (process := compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
    ]
    values_of = operator.itemgetter(*keys)
    width, positional = len(first), compiled.positional
    encoded: list[Any] = []
    for row in rows:
        if len(row) != width:  # with every key present (else KeyError): the same keys
            raise ValueError(f"execute_many: every row needs the keys {sorted(first)}")
        values = values_of(row)
        if len(keys) == 1:
            values = (values,)
        if processors:
            values = list(values)
            for i, process in processors:
                values[i] = process(values[i])
        encoded.append(tuple(values) if positional else dict(zip(names, values, strict=True)))
    conn.exec_driver_sql(compiled.string, encoded)


def is_transient(exc: BaseException) -> bool:
    """A failure that the same transaction, run again, can get past."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _PG_TRANSIENT
    name = getattr(orig, "sqlite_errorname", None)
    if name is not None:
        return name in _SQLITE_TRANSIENT
    return "database is locked" in str(orig or exc)


def write(
    engine: sa.Engine, work: Callable[[sa.Connection], T], *, attempts: int = WRITE_ATTEMPTS
) -> T:
    """`work(conn)` in one write transaction on `writer(engine)`; committed if it returns,
    rolled back if it raises; retried on transient conflicts (at most `attempts` runs)."""
    delay = 0.02
    for attempt in range(1, attempts + 1):
        try:
            with writer(engine).begin() as conn:
                return work(conn)
        except sa.exc.DBAPIError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            log.debug("state store: transient conflict (%s), retry %d", exc.orig, attempt)
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")  # pragma: no cover
