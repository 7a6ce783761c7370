"""The run log and the run report built from it (the flows publish it as artifacts)."""

from __future__ import annotations

import uuid

import pytest

from store import RunAction, StateStore


def backfill(store: StateStore, run_id: str) -> None:
    store.log_actions(
        run_id,
        [RunAction("organization", "created", n, f"ph-o{n}") for n in range(1, 4)]
        + [RunAction("person", "updated", 10, "ph-p10"), RunAction("person", "unchanged", 11)]
        + [RunAction("deal", "created", 100, "ph-l100")]
        + [RunAction("deal", "skipped", n, reason="deal is open") for n in (101, 102, 103)]
        + [RunAction("deal", "skipped", 104, reason="pipeline 3 is not selected")]
        + [RunAction("deal", "failed", 105, reason="Planhat: invalid currency")]
        + [RunAction("note", "conflict", 7, "ph-n7", reason="content changed on both sides")],
    )


def test_the_report_counts_each_object_and_action(store: StateStore) -> None:
    run_id = str(uuid.uuid4())
    backfill(store, run_id)
    report = store.run_report(run_id)
    assert report.counts == {
        "organization": {"created": 3},
        "person": {"updated": 1, "unchanged": 1},
        "deal": {"created": 1, "skipped": 4, "failed": 1},
        "note": {"conflict": 1},
    }
    assert report.total() == 12 and report.total("skipped") == 4
    assert report.total(object_type="deal") == 6
    table = {row["object"]: row for row in report.counts_table()}
    assert table["deal"] == {
        "object": "deal",
        "created": 1,
        "updated": 0,
        "unchanged": 0,
        "skipped": 4,
        "conflict": 0,
        "failed": 1,
        "total": 6,
    }


def test_the_report_lists_skips_conflicts_and_failures_with_reasons(store: StateStore) -> None:
    backfill(store, "run-1")
    report = store.run_report("run-1")
    assert [(r.object_type, r.action, r.reason, r.count) for r in report.reasons][0] == (
        "deal",
        "skipped",
        "deal is open",
        3,
    )
    assert report.problems_total == 6
    rows = report.problems_table()
    assert {(r["pipedrive_id"], r["action"], r["reason"]) for r in rows} >= {
        (104, "skipped", "pipeline 3 is not selected"),
        (105, "failed", "Planhat: invalid currency"),
        (7, "conflict", "content changed on both sides"),
    }
    assert len(store.run_report("run-1", problem_limit=2).problems) == 2


def test_reasons_are_counted_per_group_one_text_shown_as_itself(store: StateStore) -> None:
    store.log_actions(
        "run-1",
        [RunAction("deal", "skipped", i, reason=f"deal {i} is lost, not won") for i in (1, 2, 3)]
        + [RunAction("deal", "skipped", 4, reason="deal 4 is open")]
        + [RunAction("note", "failed", 5, reason=None)],
    )
    report = store.run_report("run-1", reason_group=lambda text: text.replace("4", "#"))
    assert [(r.object_type, r.action, r.reason, r.count) for r in report.reasons] == [
        ("deal", "skipped", "deal 4 is open", 1),  # a group of one text: that text
        ("deal", "skipped", "deal 1 is lost, not won", 1),
        ("deal", "skipped", "deal 2 is lost, not won", 1),
        ("deal", "skipped", "deal 3 is lost, not won", 1),
        ("note", "failed", None, 1),
    ]
    grouped = store.run_report("run-1", reason_group=lambda text: text.split(" is ")[-1])
    assert [(r.reason, r.count) for r in grouped.reasons] == [
        ("lost, not won", 3),
        ("deal 4 is open", 1),
        (None, 1),
    ]
    assert grouped.problems_total == 5


def test_a_record_logged_twice_in_a_run_counts_once_with_its_last_action(
    store: StateStore,
) -> None:
    store.log_actions("run-1", [RunAction("deal", "failed", 5, reason="Planhat 503")])
    store.log_actions("run-1", [RunAction("deal", "created", 5, "ph-5")])  # the task's retry
    report = store.run_report("run-1")
    assert report.counts == {"deal": {"created": 1}}
    assert report.problems == []


def test_runs_are_reported_separately(store: StateStore) -> None:
    backfill(store, "run-1")
    store.log_actions(
        "run-2", [{"object_type": "deal", "action": "unchanged", "pipedrive_id": 100}]
    )
    assert store.run_report("run-2").counts == {"deal": {"unchanged": 1}}
    assert store.run_report("run-1").total() == 12
    empty = store.run_report("never-ran")
    assert empty.counts == {} and empty.problems == [] and empty.counts_table() == []


def test_lines_without_ids_are_all_kept_and_bad_lines_refused(store: StateStore) -> None:
    store.log_actions(
        "run-1",
        [
            RunAction("deal", "skipped", reason="deal without an id in the payload"),
            RunAction("deal", "skipped", reason="deal without an id in the payload"),
        ],
    )
    assert store.run_report("run-1").counts == {"deal": {"skipped": 2}}
    with pytest.raises(ValueError, match="action must be one of"):
        store.log_actions("run-1", [RunAction("deal", "deleted", 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown run action keys"):
        store.log_actions("run-1", [{"object_type": "deal", "action": "created", "id": 1}])
    assert store.run_report("run-1").total() == 2


def test_long_reasons_are_clipped(store: StateStore) -> None:
    store.log_actions("r", [RunAction("deal", "failed", 1, reason="x" * 10_000)])
    [problem] = store.run_report("r").problems
    assert problem.reason is not None and len(problem.reason) == 2000


def test_a_records_history_names_the_runs_that_synced_it(store: StateStore, clock) -> None:  # type: ignore[no-untyped-def]
    backfill(store, "run-1")
    later = clock.advance(seconds=30)
    store.log_actions("run-2", [RunAction("deal", "updated", 100, "ph-l100")])
    history = store.record_history("deal", 100)
    assert [(h.run_id, h.action) for h in history] == [("run-1", "created"), ("run-2", "updated")]
    assert [h.run_id for h in store.record_history("deal", 100, since=later)] == ["run-2"]
    assert store.record_history("deal", 999) == []
