"""Records that must wait, kept on disk rather than in memory.

A backfill reads deals before organizations (a deal decides which organizations are
companies), so every selected deal waits for its company's Planhat id: as many deals as the
account has won. `Spill` keeps them in a private temporary SQLite database (`sqlite3.connect("")`:
a file SQLite deletes when it is closed, with a small page cache; records pickled, so they come
back exactly as read) until a whole chunk of them can be written, so the run's memory stays
that of its id maps, its current pages and one chunk, whatever the account's size.
"""

from __future__ import annotations

import pickle  # noqa: S403 - our own records, written and read back by this process
import sqlite3
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]

#: keys per `IN (...)` when records are released by key (well under SQLite's variable limit)
KEYS_PER_QUERY = 500


class Spill:
    """Records on disk, each under an integer key (e.g. a deal under its organization's id) and
    either waiting or ready (e.g. its company is written). Not thread-safe: one run's writer
    uses it."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # a private temporary database, deleted on close
        self._db.execute(
            "CREATE TABLE held (seq INTEGER PRIMARY KEY, key INTEGER, ready INTEGER, body BLOB)"
        )
        self._db.execute("CREATE INDEX held_key ON held (key) WHERE ready = 0")
        self._db.execute("CREATE INDEX held_ready ON held (ready, seq)")
        self._waiting_keys: set[int] = set()
        self.waiting = 0  # records not ready yet
        self.ready = 0  # records ready, not taken yet

    def __len__(self) -> int:
        return self.waiting + self.ready

    def add(self, key: int | None, record: Record, *, ready: bool) -> None:
        """Keep a record under `key`, ready to be taken or waiting for `release(key)`."""
        body = pickle.dumps(record, pickle.HIGHEST_PROTOCOL)
        self._db.execute(
            "INSERT INTO held (key, ready, body) VALUES (?, ?, ?)", (key, int(ready), body)
        )
        if ready:
            self.ready += 1
        else:
            self.waiting += 1
            if key is not None:
                self._waiting_keys.add(key)

    def release(self, keys: Iterable[int]) -> int:
        """The records waiting under any of `keys` become ready; returns how many did."""
        wanted = sorted(k for k in set(keys) if k in self._waiting_keys)
        released = 0
        for start in range(0, len(wanted), KEYS_PER_QUERY):
            chunk = wanted[start : start + KEYS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            cursor = self._db.execute(
                f"UPDATE held SET ready = 1 WHERE ready = 0 AND key IN ({marks})",  # noqa: S608
                chunk,
            )
            released += cursor.rowcount
        self._waiting_keys.difference_update(wanted)
        self.waiting -= released
        self.ready += released
        return released

    def take(self, size: int, *, waiting_too: bool = False) -> list[Record]:
        """Up to `size` of the ready records (`waiting_too`: of every record), oldest first;
        gone from here once taken."""
        where = "" if waiting_too else "WHERE ready = 1"
        rows = self._db.execute(
            f"SELECT seq, ready, body FROM held {where} ORDER BY seq LIMIT ?",  # noqa: S608
            (size,),
        ).fetchall()
        self._db.executemany("DELETE FROM held WHERE seq = ?", [(seq,) for seq, _, _ in rows])
        ready = sum(1 for _, flag, _ in rows if flag)
        self.ready -= ready
        self.waiting -= len(rows) - ready
        if not self.waiting:
            self._waiting_keys.clear()
        return [pickle.loads(body) for _, _, body in rows]  # noqa: S301

    def close(self) -> None:
        self._db.close()
