"""Inbox retention: handled notifications go after `incremental.inbox_retention_days`; pending
and failed ones never do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from store import StateStore
from tasks.inbox import purge_handled

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_handled_notifications_older_than_the_retention_are_purged(tmp_path: Path) -> None:
    moment = [NOW - timedelta(days=10)]
    with StateStore(f"sqlite:///{tmp_path / 's.db'}", clock=lambda: moment[0]) as store:
        for key in ("old-done", "old-pending", "old-failed"):
            store.inbox_add(key, {"meta": {"id": key}})
        claimed = {i.dedupe_key: i.id for i in store.inbox_claim(10)}
        store.inbox_done([claimed["old-done"]])
        store.inbox_failed([claimed["old-failed"]], "Pipedrive was down")
        store.inbox_requeue_stale(timedelta(0))  # old-pending back to pending
        moment[0] = NOW - timedelta(days=1)
        store.inbox_add("recent-done", {"meta": {"id": "recent"}})
        store.inbox_done([i.id for i in store.inbox_claim(10) if i.dedupe_key == "recent-done"])

        assert purge_handled(store, retention_days=7, now=NOW) == 1
        assert store.inbox_get("old-done") is None
        for key in ("old-pending", "old-failed", "recent-done"):
            assert store.inbox_get(key) is not None, key
        assert purge_handled(store, retention_days=7, now=NOW) == 0
