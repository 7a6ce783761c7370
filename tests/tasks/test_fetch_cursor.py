"""Fetch as plain functions against an in-memory Pipedrive: a read's start is Pipedrive's clock
at its first page (the streamed sync caps cursors there: tests/tasks/test_stream.py), and deals
asked for by id that are gone say so."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from clients.pipedrive import ReadStart
from tasks.fetch import Fetched, fetch_deals_by_id
from tasks.select import missing_deal_skips

BEGAN = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def deal(deal_id: int, updated: str, **more: Any) -> dict[str, Any]:
    return {"id": deal_id, "update_time": updated, "status": "won", **more}


class FakePipedrive:
    """Pages of deals; the read's first page is answered at `BEGAN` by Pipedrive's clock."""

    def __init__(self, deals: list[dict[str, Any]], deleted: list[dict[str, Any]] = ()) -> None:
        self.deals, self.deleted = deals, list(deleted)
        self.calls: list[dict[str, Any]] = []

    def iter_deals(self, *, read_start: ReadStart | None = None, **params: Any) -> Iterator[Any]:
        self.calls.append(params)
        if read_start is not None and read_start.at is None:
            read_start.at = BEGAN
        source = self.deleted if params.get("status") == "deleted" else self.deals
        ids = params.get("ids")
        yield from (d for d in source if ids is None or d["id"] in ids)


def test_the_read_start_is_pipedrives_date_header() -> None:
    import httpx

    start = ReadStart()
    start.see(httpx.Response(200, headers={"date": "Sun, 29 Nov 2026 12:00:00 GMT"}))
    start.see(httpx.Response(200, headers={"date": "Sun, 29 Nov 2026 12:09:00 GMT"}))
    assert start.at == BEGAN  # the first page's
    missing = ReadStart()
    missing.see(httpx.Response(200))
    assert missing.at is None


def test_deals_that_are_gone_are_looked_for_among_the_deleted_and_reported() -> None:
    pipedrive = FakePipedrive(
        [deal(1, "2026-11-29T11:00:00Z")],
        deleted=[deal(2, "2026-11-29T11:00:00Z", status="deleted", is_deleted=True)],
    )
    fetched = Fetched()
    fetch_deals_by_id(pipedrive, [1, 2, 3], fetched)  # type: ignore[arg-type]  # a fake client
    assert sorted(fetched.deals) == [1, 2] and fetched.missing_deals == {3}
    assert [c.get("status") for c in pipedrive.calls] == [None, "deleted"]
    (skip,) = missing_deal_skips(fetched.missing_deals, licensed=[3])
    assert skip.pipedrive_id == 3 and "not found in Pipedrive" in (skip.reason or "")
    assert "license is kept" in (skip.reason or "")


def test_no_extra_call_when_every_deal_is_there() -> None:
    pipedrive = FakePipedrive([deal(1, "2026-11-29T11:00:00Z")])
    fetch_deals_by_id(pipedrive, [1], Fetched())  # type: ignore[arg-type]  # a fake client
    assert len(pipedrive.calls) == 1
