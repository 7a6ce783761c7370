"""Helpers shared by the state-store tests (fixtures are in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from store.schema import TABLE_NAMES


class FakeClock:
    """A settable UTC clock for the store (`clock=`)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def wipe_postgres(url: str) -> None:
    """Drop the store's tables, so that the next store starts on an empty database."""
    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sa.pool.NullPool
    )
    try:
        with engine.begin() as conn:
            for name in TABLE_NAMES:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    finally:
        engine.dispose()
