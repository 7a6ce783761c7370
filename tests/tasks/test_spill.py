"""The licenses of a streamed run wait on disk (`tasks.spill`), not in memory."""

from __future__ import annotations

from pathlib import Path

from planhat_fake import FakePlanhat
from test_stream import MAPPINGS, PD

from store import StateStore
from tasks.spill import Spill
from tasks.stream import StreamSync


def test_records_come_back_exactly_once_ready_oldest_first() -> None:
    spill = Spill()
    try:
        records = [
            {"id": i, "org_id": i % 3, "value": i * 1.5, "big": 2**80, "custom": {"x": [i]}}
            for i in range(1, 13)
        ]
        for r in records:
            spill.add(r["org_id"] or None, r, ready=not r["org_id"])
        assert (spill.waiting, spill.ready, len(spill)) == (8, 4, 12)
        assert spill.take(3) == records[2:9:3]  # the ready ones (no organization), oldest first
        assert spill.release([1, 7]) == 4 and spill.release([1]) == 0
        assert spill.take(10) == [r for r in records if r["org_id"] == 1] + [records[11]]
        assert spill.take(10) == [] and (spill.waiting, spill.ready) == (4, 0)
        assert spill.take(3, waiting_too=True) == [r for r in records if r["org_id"] == 2][:3]
        assert spill.take(3, waiting_too=True) == [records[10]] and len(spill) == 0
    finally:
        spill.close()


def test_a_backfills_licenses_wait_for_their_company_on_disk(tmp_path: Path) -> None:
    deals = [dict(d) for d in PD.deals]
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store:
        run = StreamSync(
            None,  # type: ignore[arg-type]  # deals are selected without a Pipedrive call
            FakePlanhat(),  # type: ignore[arg-type]
            store,
            MAPPINGS,
            run_id="run-1",
            full=True,
        )
        try:
            run.take_deals([deals])
            # no organization is written yet: the selected deals wait on disk, none in memory
            assert run.pending.waiting > 0
            assert len(run.pending) == run.summary.selected and run.held == 0
        finally:
            run.pending.close()
