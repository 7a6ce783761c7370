"""Benchmark: the state store's links at backfill scale, on SQLite and PostgreSQL.

Prints the time to upsert 100,000 links (ten mapped fields each) in batches of 5,000 (one
Planhat bulk upsert's worth), to upsert them all again (the replay, every row an update), and
to read them back: all at once, and in lookups of 500 ids (one Pipedrive page). PostgreSQL
comes from `PDSYNC_TEST_POSTGRES_URL` (a database it may wipe) or a throwaway server
(`store.testing`); without either it is skipped with the reason. Figures only; nothing is
asserted.

    .venv/bin/python bench/store_links.py [--links N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from store import LinkRow, StateStore, database_url
from store.schema import TABLE_NAMES
from store.testing import PostgresUnavailable, TemporaryPostgres

BATCH = 5000
PAGE = 500


def rows(n: int, version: int) -> list[LinkRow]:
    return [
        LinkRow(
            i,
            f"64f{i:021x}",
            {
                "name": f"Organization {i}",
                "externalId": str(i),
                "owner": None,
                "phase": "customer",
                "mrr": 1200.5 + i,
                "country": "DE",
                "custom.Industry": "Software",
                "custom.Seats": i % 500,
                "custom.Renewal": "2026-12-31",
                "version": version,
            },
        )
        for i in range(1, n + 1)
    ]


def timed(label: str, n: int, work: Callable[[], object]) -> None:
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    print(f"  {label:<44} {seconds:7.2f} s  ({n / seconds:>9,.0f} links/s)")


def run(name: str, url: str, n: int) -> None:
    print(f"{name}: {n:,} links")
    first, second = rows(n, 1), rows(n, 2)
    ids = [r.pipedrive_id for r in first]
    with StateStore(url) as store:

        def upsert(batch_rows: list[LinkRow]) -> None:
            for start in range(0, n, BATCH):
                store.upsert_links("organization", batch_rows[start : start + BATCH])

        timed(f"upsert, new links, batches of {BATCH:,}", n, lambda: upsert(first))
        timed("upsert again, every link updated", n, lambda: upsert(second))
        timed("read back, one call", n, lambda: store.links_for("organization", ids))
        timed(
            f"read back, lookups of {PAGE} ids",
            n,
            lambda: [store.links_for("organization", ids[s : s + PAGE]) for s in range(0, n, PAGE)],
        )
        assert store.count_links("organization") == n


def wipe(url: str) -> None:
    engine = sa.create_engine(database_url(url), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for table in TABLE_NAMES:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}" CASCADE')
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=100_000)
    n = parser.parse_args().links
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite (file, WAL)", f"sqlite:///{Path(tmp) / 'state.db'}", n)
    given = os.environ.get("PDSYNC_TEST_POSTGRES_URL")
    if given:
        wipe(given)
        run("PostgreSQL (PDSYNC_TEST_POSTGRES_URL)", given, n)
        wipe(given)
        return
    try:
        with TemporaryPostgres() as server:
            version = server.bin_dir.parent.name if server.bin_dir else "?"
            run(f"PostgreSQL {version} (throwaway, fsync off)", server.create_database("bench"), n)
    except PostgresUnavailable as exc:
        print(f"PostgreSQL: skipped: {exc}")


if __name__ == "__main__":
    main()
