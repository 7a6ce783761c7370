"""Opening a store: URLs, schema creation and upgrades, SQLite's multi-process settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

import store.migrations as migrations
from store import (
    SCHEMA_VERSION,
    LinkRow,
    SchemaTooNewError,
    StateStore,
    StoreUnavailableError,
    StoreUrlError,
    database_url,
)
from store.schema import TABLES, inbox, schema_version
from store.testing import free_port


def test_a_new_database_gets_every_table_at_the_latest_version(store: StateStore) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    names = set(sa.inspect(store.engine).get_table_names())
    assert {t.name for t in TABLES} <= names


def test_opening_twice_is_a_no_op_and_keeps_the_data(
    open_store: Callable[[], StateStore],
) -> None:
    first = open_store()
    first.upsert_links("deal", [LinkRow(1, "ph-1", {"name": "Acme"})])
    second = open_store()
    assert second.schema_version() == SCHEMA_VERSION
    assert second.links_for("deal", [1])[1].values == {"name": "Acme"}
    with second.engine.connect() as conn:
        applied = conn.execute(sa.select(schema_version.c.version)).scalars().all()
    assert applied == list(range(1, SCHEMA_VERSION + 1))  # each migration recorded once


def test_the_migrated_database_matches_the_models(store: StateStore) -> None:
    inspector = sa.inspect(store.engine)
    for table in TABLES:
        columns = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
        primary = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert primary == [c.name for c in table.primary_key.columns], table.name
        uniques = {
            tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)
        } | {tuple(i["column_names"]) for i in inspector.get_indexes(table.name) if i["unique"]}
        expected = {
            tuple(c.name for c in constraint.columns)
            for constraint in table.constraints
            if isinstance(constraint, sa.UniqueConstraint)
        }
        assert expected <= uniques, table.name
        indexes = {tuple(i["column_names"]) for i in inspector.get_indexes(table.name)}
        assert {tuple(c.name for c in i.columns) for i in table.indexes} <= indexes


def test_an_upgrade_applies_only_the_missing_migrations(
    open_store: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store().upsert_links("note", [LinkRow(5, None, {"content": "hi"})])
    runs: list[int] = []
    nxt = migrations.LATEST + 1

    def extra_migration(conn: sa.Connection) -> None:
        runs.append(nxt)
        conn.execute(sa.text("ALTER TABLE links ADD COLUMN extra_test_column INTEGER"))

    extra = migrations.Migration(nxt, "test: add a column", extra_migration)
    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, extra))
    monkeypatch.setattr(migrations, "LATEST", nxt)
    upgraded = open_store()
    again = open_store()
    assert runs == [nxt]
    assert upgraded.schema_version() == again.schema_version() == nxt
    assert "extra_test_column" in {c["name"] for c in sa.inspect(again.engine).get_columns("links")}
    assert again.links_for("note", [5])[5].values == {"content": "hi"}


def test_a_database_of_the_first_version_is_upgraded_in_place(
    open_store: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as first_release:
        first_release.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        first_release.setattr(migrations, "LATEST", 1)
        old = open_store()
        old.upsert_links("deal", [LinkRow(8, "ph-8", {"value": 10})])
        old.inbox_add("pipedrive:v2:e8", {"n": 8})
        assert old.schema_version() == 1
    current = open_store()
    assert current.schema_version() == SCHEMA_VERSION
    assert current.links_for("deal", [8])[8].values == {"value": 10}
    assert current.inbox_counts()["pending"] == 1
    if SCHEMA_VERSION >= 2:
        current.cache_put("account", {"pipelines": []})
        assert current.cache_get("account") is not None


def test_version_3_moves_the_receivers_unposted_events_into_the_inbox(
    open_store: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before version 3 the receiver kept the keys of events it could not post in a cache
    document: those items stay owed, every other item counts as posted, the document goes."""
    with monkeypatch.context() as second_release:
        second_release.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
        second_release.setattr(migrations, "LATEST", 2)
        old = open_store()
        for key in ("posted", "unposted", "unposted-done", "person"):
            old.inbox_add(f"pipedrive:v2:{key}", {"key": key})
        with old.engine.begin() as conn:  # settled by a run (the version-2 columns only)
            conn.execute(
                sa.text("UPDATE inbox SET status = 'done' WHERE dedupe_key = :key"),
                {"key": "pipedrive:v2:unposted-done"},
            )
        old.cache_put(
            migrations.V2_UNPOSTED_EVENTS_KEY,
            {"keys": ["pipedrive:v2:unposted", "pipedrive:v2:unposted-done", "absent", 7]},
        )
        old.cache_put("account", {"pipelines": []})
        assert old.schema_version() == 2
    current = open_store()
    assert current.schema_version() == SCHEMA_VERSION >= 3
    assert [i.dedupe_key for i in current.inbox_not_posted(10)] == ["pipedrive:v2:unposted"]
    assert current.inbox_not_posted_count() == 1
    assert current.cache_get(migrations.V2_UNPOSTED_EVENTS_KEY) is None
    assert current.cache_get("account") is not None  # the rest of the cache is kept
    assert current.inbox_counts()["pending"] == 3
    with current.engine.connect() as conn:
        posted = conn.execute(
            sa.select(inbox.c.received_at, inbox.c.event_posted_at).where(
                inbox.c.dedupe_key == "pipedrive:v2:posted"
            )
        ).one()
    assert posted.event_posted_at == posted.received_at  # an aware UTC time, as stored
    assert current.inbox_mark_posted(["pipedrive:v2:unposted"]) == 1
    assert current.inbox_not_posted_count() == 0


def test_a_database_from_a_newer_pdsync_is_refused(
    open_store: Callable[[], StateStore],
) -> None:
    store = open_store()
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(schema_version).values(
                version=SCHEMA_VERSION + 1, description="future", applied_at=store._now()
            )
        )
    with pytest.raises(SchemaTooNewError, match="newer than this pdsync"):
        open_store()


def test_a_sqlite_path_gets_its_directories_and_multi_process_settings(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    with StateStore(str(path)) as store:
        assert path.exists()
        assert store.dialect == "sqlite"
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_urls_are_normalized_and_bad_ones_refused_with_an_example(tmp_path: Path) -> None:
    assert database_url("postgresql://u:p@db/pdsync").drivername == "postgresql+psycopg"
    assert database_url("postgres://u:p@db/pdsync").drivername == "postgresql+psycopg"
    assert database_url("~/x.db").database.endswith("/x.db")
    assert database_url(f"sqlite:///{tmp_path}/a.db").database == f"{tmp_path}/a.db"
    for bad in ("", "mysql://u@h/db", "postgresql+psycopg2://u@h/db"):
        with pytest.raises(StoreUrlError):
            database_url(bad)
    with pytest.raises(StoreUrlError, match=r"postgresql\+psycopg://"):
        database_url("mysql://u@h/db")


def test_the_store_never_shows_the_database_password(empty_postgres_url: str) -> None:
    url = database_url(empty_postgres_url)
    if not url.password:  # our throwaway server trusts local connections: any password works
        url = url.set(password="s3cret-pw")  # noqa: S106
    password = str(url.password)
    with StateStore(url.render_as_string(hide_password=False)) as store:
        assert store.links_for("deal", [1]) == {}
        assert password not in repr(store)
        assert password not in store.url


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    url = f"postgresql://pdsync:hunter2@127.0.0.1:{free_port()}/pdsync"  # nothing listens
    with pytest.raises(StoreUnavailableError, match="cannot open the state store at") as failure:
        StateStore(url)
    assert "hunter2" not in str(failure.value)
    assert "127.0.0.1" in str(failure.value)


def test_an_unwritable_sqlite_path_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailableError, match="cannot open the state store"):
        StateStore(str(blocker / "state.db"))


def test_version_4_gives_waiting_deal_notifications_their_deal(
    open_store: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as third_release:
        third_release.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:3])
        third_release.setattr(migrations, "LATEST", 3)
        old = open_store()
        v2 = {"meta": {"entity": "deal", "entity_id": "42", "id": "e1", "version": "2.0"}}
        v1 = {"meta": {"object": "deal", "id": 43, "action": "updated"}}
        person = {"meta": {"entity": "person", "entity_id": "9", "id": "e3", "version": "2.0"}}
        old.inbox_add("pipedrive:v2:e1", v2)
        old.inbox_add("pipedrive:v1:deal:43", v1)
        old.inbox_add("pipedrive:v2:e3", person)
        assert old.schema_version() == 3
    current = open_store()
    assert current.schema_version() == SCHEMA_VERSION >= 4
    items = current.inbox_claim_deals(10)
    assert sorted(i.deal_id or 0 for i in items) == [42, 43]
    assert current.inbox_counts() == {"pending": 1, "processing": 2, "done": 0, "failed": 0}
