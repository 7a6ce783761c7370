"""The state store (sqlmodel): links, cursors, the webhook inbox, the connection, the run log.

    from store import StateStore, LinkRow, RunAction, Connection

    with StateStore(settings.store.url) as store:   # SQLite file or postgresql+psycopg://...
        links = store.links_for("deal", deal_ids)

One database, SQLite by default, PostgreSQL by URL, correct with several processes at once.
`store.state` documents each guarantee; `store.schema` the tables; `store.migrations` the
schema versions; `store.testing` a throwaway PostgreSQL server for tests and benchmarks.
"""

from store.db import StoreUrlError, database_url
from store.migrations import LATEST as SCHEMA_VERSION
from store.migrations import SchemaTooNewError
from store.records import (
    ACTIONS,
    INBOX_STATUSES,
    PROBLEM_ACTIONS,
    Action,
    Connection,
    Cursor,
    InboxItem,
    InboxStatus,
    Link,
    LinkConflict,
    LinkRow,
    LinkWrite,
    ReasonCount,
    RunAction,
    RunLogEntry,
    RunReport,
    canonical_json,
    token_fingerprint,
    values_hash,
)
from store.state import StateStore, StoreUnavailableError

__all__ = [
    "ACTIONS",
    "INBOX_STATUSES",
    "PROBLEM_ACTIONS",
    "SCHEMA_VERSION",
    "Action",
    "Connection",
    "Cursor",
    "InboxItem",
    "InboxStatus",
    "Link",
    "LinkConflict",
    "LinkRow",
    "LinkWrite",
    "ReasonCount",
    "RunAction",
    "RunLogEntry",
    "RunReport",
    "SchemaTooNewError",
    "StateStore",
    "StoreUnavailableError",
    "StoreUrlError",
    "canonical_json",
    "database_url",
    "token_fingerprint",
    "values_hash",
]
