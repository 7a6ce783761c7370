"""The connection: what was verified (company URL, token fingerprint, webhook), never a
secret: the raw token appears nowhere in the database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from store import Connection, StateStore, token_fingerprint
from store.schema import TABLES

TOKEN = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, like Pipedrive's
URL = "https://acme.pipedrive.com"


def test_the_connection_round_trips_with_a_fingerprint(store: StateStore) -> None:
    assert store.get_connection() is None
    verified = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    saved = store.save_connection(
        Connection.for_token(
            URL,
            TOKEN,
            webhook_id=991,
            receiver_credential_ref="prefect-secret/pdsync-receiver",
            verified_at=verified,
        )
    )
    got = store.get_connection()
    assert got == saved
    assert got is not None
    assert got.token_fingerprint == token_fingerprint(TOKEN)
    assert got.token_fingerprint.startswith("sha256:") and len(got.token_fingerprint) == 23
    assert (got.webhook_id, got.verified_at) == (991, verified)
    assert got.matches(URL, TOKEN)
    assert not got.matches(URL, TOKEN[::-1])  # a new token → the connect flow tests it
    assert not got.matches("https://other.pipedrive.com", TOKEN)


def test_saving_again_replaces_the_connection(store: StateStore) -> None:
    store.save_connection(Connection.for_token(URL, TOKEN, webhook_id=1))
    store.save_connection(Connection.for_token(URL, "f" * 40, webhook_id=2))
    got = store.get_connection()
    assert got is not None and got.webhook_id == 2 and got.matches(URL, "f" * 40)


def test_a_token_is_refused_where_a_fingerprint_belongs() -> None:
    with pytest.raises(ValueError, match="never keeps a token"):
        Connection(company_url=URL, token_fingerprint=TOKEN)
    with pytest.raises(ValueError, match="timezone-aware"):
        Connection.for_token(URL, TOKEN, verified_at=datetime(2026, 1, 1))


def _everything_stored(store: StateStore) -> str:
    with store.engine.connect() as conn:
        return "\n".join(
            repr(tuple(row)) for table in TABLES for row in conn.execute(sa.select(table))
        )


def test_the_raw_token_is_nowhere_in_the_database(store: StateStore) -> None:
    store.save_connection(
        Connection.for_token(URL, TOKEN, webhook_id=5, receiver_credential_ref="secret-block")
    )
    stored = _everything_stored(store)
    assert token_fingerprint(TOKEN) in stored  # the check can see the connection row
    assert TOKEN not in stored
    assert TOKEN[:16] not in stored and TOKEN[-16:] not in stored
    if store.dialect == "sqlite":
        store.close()  # checkpoint and let every byte reach the files
        database = Path(store.engine.url.database or "")
        files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]
        assert files
        for path in files:
            data = path.read_bytes()
            assert TOKEN.encode() not in data, path
            assert TOKEN.encode("utf-16-le") not in data, path


def test_cache_keeps_the_last_document_and_when_it_was_saved(store: StateStore) -> None:
    assert store.cache_get("account") is None
    store.cache_put("account", {"pipelines": [{"id": 1, "name": "Ünïcode"}]})
    store.cache_put("account", {"pipelines": [{"id": 2, "name": "New"}]})
    value, saved_at = store.cache_get("account")
    assert value == {"pipelines": [{"id": 2, "name": "New"}]}
    assert saved_at.tzinfo is not None
