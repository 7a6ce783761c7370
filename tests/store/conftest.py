"""Fixtures of the state-store tests: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from `PDSYNC_TEST_POSTGRES_URL` when set (a database the tests may wipe: its
store tables are dropped before each test), else from a throwaway cluster that
`store.testing.TemporaryPostgres` starts once per session (initdb in a temp dir, free port,
run as the `postgres` user when we are root) and stops at the end. When neither can be had the
PostgreSQL cases are skipped with the reason on a developer machine, and FAIL when `CI=true`:
a backend CI did not run is not tested.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_support import FakeClock, wipe_postgres

from store import StateStore
from store.testing import PostgresUnavailable, TemporaryPostgres

ENV_URL = "PDSYNC_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL backend not tested: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: every backend must run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL database for this session (see the module docstring)."""
    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    server = TemporaryPostgres()
    try:
        server.start()
    except (PostgresUnavailable, OSError) as exc:
        _unavailable(str(exc))
    try:
        yield server.create_database("pdsync_test")
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database: a SQLite file in the test's temp dir, or the session's
    PostgreSQL database with the store's tables dropped."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'pdsync.db'}"
    url = request.getfixturevalue("postgres_url")
    wipe_postgres(url)
    return url


@pytest.fixture()
def empty_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database with the store's tables dropped."""
    wipe_postgres(postgres_url)
    return postgres_url


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture()
def open_store(store_url: str, clock: FakeClock) -> Iterator[Callable[[], StateStore]]:
    """Opens stores on the test's database (each closed at the end of the test)."""
    opened: list[StateStore] = []

    def make() -> StateStore:
        opened.append(StateStore(store_url, clock=clock))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


@pytest.fixture()
def store(open_store: Callable[[], StateStore]) -> StateStore:
    """A store on an empty database (SQLite file or PostgreSQL), with the test's clock."""
    return open_store()
