"""The sandbox Pipedrive's data: collections of plain dicts, fast paged queries.

Records are stored in the shape the API serves them (v2 for deals, persons, organizations,
pipelines and stages; v1 for notes and users) and are never mutated in place: a write stores a
new dict (copy on write), so a record handed to a webhook payload or a response stays as it was.

Paging never scans a collection per page. A query (its filters and its sort) is evaluated once
per collection version into a sorted list of `(sort value, id)` keys; a cursor is a position in
that order (a key), found by bisection, so page N costs a slice. Each record's JSON is cached as
bytes, so a page of 500 records is assembled by joining 500 cached strings.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import orjson

from sandbox.pipedrive.common import epoch

Record = dict[str, Any]
SortKey = tuple[Any, int]

_QUERY_CACHE_SIZE = 64
_TIME_SORTS = ("add_time", "update_time")


class Selection:
    """The records a query selects, in ascending sort order."""

    __slots__ = ("keys", "ids")

    def __init__(self, keys: list[SortKey]) -> None:
        self.keys = keys
        self.ids = [key[1] for key in keys]

    def __len__(self) -> int:
        return len(self.ids)

    def page_after(
        self, after: SortKey | None, limit: int, descending: bool
    ) -> tuple[list[int], SortKey | None]:
        """The ids of one page after `after` (a key, None for the first page) and the key of the
        page's last record when more records follow (None on the last page)."""
        keys = self.keys
        if not descending:
            start = 0 if after is None else bisect_right(keys, after)
            end = min(start + limit, len(keys))
            ids = self.ids[start:end]
            return ids, (keys[end - 1] if end < len(keys) and ids else None)
        end = len(keys) if after is None else bisect_left(keys, after)
        start = max(end - limit, 0)
        ids = self.ids[start:end][::-1]
        return ids, (keys[start] if start > 0 and ids else None)


class Collection:
    """One kind of record, by id, with a version bumped on every write."""

    def __init__(self, name: str, records: Iterable[Record] = ()) -> None:
        self.name = name
        self.records: dict[int, Record] = {}
        self.version = 0
        self.lock = threading.RLock()
        self._json: dict[int, bytes] = {}
        self._times: dict[int, tuple[int, int]] = {}
        self._queries: OrderedDict[Hashable, tuple[int, Selection]] = OrderedDict()
        self._sorted: OrderedDict[Hashable, tuple[int, list[Record]]] = OrderedDict()
        for record in records:
            self._put(record)
        self.next_id = max(self.records, default=0) + 1

    # -- reads --------------------------------------------------------------------------------
    def get(self, record_id: int | None) -> Record | None:
        return None if record_id is None else self.records.get(record_id)

    def __len__(self) -> int:
        return len(self.records)

    def values(self) -> list[Record]:
        with self.lock:
            return list(self.records.values())

    def json_of(self, record_id: int) -> bytes:
        """The record serialized (cached until the record changes)."""
        cached = self._json.get(record_id)
        if cached is None:
            # A right-sized copy: orjson's own result keeps its (much larger) write buffer.
            cached = bytes(memoryview(orjson.dumps(self.records[record_id])))
            self._json[record_id] = cached
        return cached

    def sort_value(self, record: Record, field: str) -> Any:
        if field == "id":
            return record["id"]
        if field in _TIME_SORTS:
            times = self._times.get(record["id"])
            return times[0 if field == "add_time" else 1] if times else 0
        value = record.get(field)
        return value if value is not None else -1

    def select(
        self,
        key: Hashable,
        predicate: Callable[[Record], bool] | None,
        sort_by: str = "id",
        ids: Iterable[int] | None = None,
    ) -> Selection:
        """The records matching `predicate` (among `ids` if given), sorted by (`sort_by`, id).

        Cached per (`key`, `sort_by`) until the collection changes.
        """
        cache_key = (key, sort_by)
        with self.lock:
            hit = self._queries.get(cache_key)
            if hit is not None and hit[0] == self.version:
                self._queries.move_to_end(cache_key)
                return hit[1]
            if ids is None:
                candidates: Iterable[Record] = self.records.values()
            else:
                candidates = (self.records[i] for i in ids if i in self.records)
            chosen = [r for r in candidates if predicate is None or predicate(r)]
            if sort_by == "id":
                keys = sorted((r["id"], r["id"]) for r in chosen)
            else:
                keys = sorted((self.sort_value(r, sort_by), r["id"]) for r in chosen)
            selection = Selection(keys)
            self._queries[cache_key] = (self.version, selection)
            if len(self._queries) > _QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
            return selection

    def sorted_records(
        self,
        key: Hashable,
        predicate: Callable[[Record], bool] | None,
        order: list[tuple[str, bool]],
    ) -> list[Record]:
        """Matching records sorted by several (field, descending) keys (v1 `sort`); cached."""
        with self.lock:
            hit = self._sorted.get(key)
            if hit is not None and hit[0] == self.version:
                return hit[1]
            chosen = [r for r in self.records.values() if predicate is None or predicate(r)]
            chosen.sort(key=lambda r: r["id"])
            for field, descending in reversed(order):
                chosen.sort(key=self._v1_sort_key(field), reverse=descending)
            self._sorted[key] = (self.version, chosen)
            if len(self._sorted) > _QUERY_CACHE_SIZE:
                self._sorted.popitem(last=False)
            return chosen

    def _v1_sort_key(self, field: str) -> Callable[[Record], tuple[bool, Any]]:
        return lambda record: _nullable_key(self._v1_sort_value(record, field))

    def _v1_sort_value(self, record: Record, field: str) -> Any:
        if field in _TIME_SORTS:
            return self.sort_value(record, field)
        return record.get(field)

    # -- writes -------------------------------------------------------------------------------
    def new_id(self) -> int:
        with self.lock:
            record_id = self.next_id
            self.next_id += 1
            return record_id

    def put(self, record: Record) -> Record:
        """Store a new or replaced record (a new dict: stored records are never mutated)."""
        with self.lock:
            self._put(record)
            self.version += 1
            if record["id"] >= self.next_id:
                self.next_id = record["id"] + 1
        return record

    def _put(self, record: Record) -> None:
        record_id = record["id"]
        self.records[record_id] = record
        self._json.pop(record_id, None)
        self._times[record_id] = (epoch(record.get("add_time")), epoch(record.get("update_time")))

    def times_of(self, record_id: int) -> tuple[int, int]:
        """(add_time, update_time) of a record as epoch seconds."""
        return self._times.get(record_id, (0, 0))


def _nullable_key(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)
