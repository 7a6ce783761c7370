"""`store.db.execute_many`: the store's batch writes (links, run log) bound by the driver's
executemany, stored exactly as SQLAlchemy's own executemany stores them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from store import StateStore, db
from store.schema import links, run_log

WHEN = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)


def _link(pipedrive_id: int, values: Any, object_type: str = "person") -> dict[str, Any]:
    return {
        "object_type": object_type,
        "pipedrive_id": pipedrive_id,
        "planhat_id": None if pipedrive_id % 2 else f"ph-{pipedrive_id}",
        "synced_values": values,
        "synced_hash": "0" * 64,
        "synced_at": WHEN,
    }


VALUES = [
    {"name": "Ada", "custom": {"Size": 3, "Tags": ["a", "é"]}, "phone": None},
    {"n": 2**70, "x": 1.5, "flag": True},
    {},
]


def _stored(store: StateStore, table: sa.Table, where: sa.ColumnElement[bool]) -> list[Any]:
    """The rows as the database holds them (JSON as text, datetimes as the driver gives them),
    without the ids that differ between the two writes."""
    columns = [sa.cast(c, sa.Text) if isinstance(c.type, sa.JSON) else c for c in table.c]
    with store.engine.connect() as conn:
        query = sa.select(*columns).where(where).order_by(table.c.id)
        return [tuple(row)[1:] for row in conn.execute(query)]


def test_links_are_stored_as_sqlalchemys_executemany_stores_them(store: StateStore) -> None:
    statement = sa.insert(links)
    ours = [_link(10 + i, v) for i, v in enumerate(VALUES)]
    theirs = [_link(10 + i, v, "organization") for i, v in enumerate(VALUES)]
    with db.writer(store.engine).begin() as conn:
        db.execute_many(conn, statement, ours)
        conn.execute(statement, theirs)
    mine = _stored(store, links, links.c.object_type == "person")
    sqlalchemys = _stored(store, links, links.c.object_type == "organization")
    assert [row[1:] for row in mine] == [row[1:] for row in sqlalchemys]  # all but the type
    assert [row[1] for row in mine] == [10, 11, 12]


def test_an_upsert_with_nulls_is_stored_as_sqlalchemy_stores_it(store: StateStore) -> None:
    def line(run: str, n: int, reason: str | None) -> dict[str, Any]:
        return {
            "run_id": run, "object_type": "deal", "record_key": f"pd:{n}", "pipedrive_id": n,
            "planhat_id": None, "action": "skipped", "reason": reason, "at": WHEN,
        }  # fmt: skip

    insert = store._insert(run_log)  # the dialect's insert, as the store upserts
    statement = insert.on_conflict_do_update(
        index_elements=[run_log.c.run_id, run_log.c.object_type, run_log.c.record_key],
        set_={"reason": insert.excluded.reason},
    )
    with db.writer(store.engine).begin() as conn:
        db.execute_many(conn, statement, [line("a", 1, None), line("a", 2, "open")])
        db.execute_many(conn, statement, [line("a", 2, None)])  # the conflict: updated
        conn.execute(statement, [line("b", 1, None), line("b", 2, None)])
    mine = _stored(store, run_log, run_log.c.run_id == "a")
    sqlalchemys = _stored(store, run_log, run_log.c.run_id == "b")
    assert [row[1:] for row in mine] == [row[1:] for row in sqlalchemys]


def test_rows_with_other_keys_are_refused_and_nothing_is_written(store: StateStore) -> None:
    statement = sa.insert(links)
    extra = _link(1, {}) | {"surprise": 1}
    short = {k: v for k, v in _link(2, {}).items() if k != "synced_hash"}
    for rows in ([_link(3, {}), short], [extra], [_link(4, {}), extra]):
        with pytest.raises(ValueError, match="keys"), db.writer(store.engine).begin() as conn:
            db.execute_many(conn, statement, rows)
    assert store.count_links() == 0
