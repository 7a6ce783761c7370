"""`tasks.gctune.bulk_gc`: the collector set for a bulk run and restored after it, once for
runs that overlap in one process."""

from __future__ import annotations

import gc
import threading

import pytest

from tasks.gctune import GEN0_THRESHOLD, bulk_gc


def test_a_run_freezes_what_exists_and_collects_less_often_then_restores_both() -> None:
    before = gc.get_threshold()
    with bulk_gc():
        assert gc.get_threshold() == (max(GEN0_THRESHOLD, before[0]), *before[1:])
        assert gc.get_freeze_count() >= 1
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_overlapping_runs_restore_the_collector_only_when_the_last_one_leaves() -> None:
    before = gc.get_threshold()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[tuple[int, int, int]] = []

    def first() -> None:
        with bulk_gc():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with bulk_gc():
        second_in.set()
        first_out.wait(5)
        seen.append(gc.get_threshold())  # the first run has left; this one still runs
    thread.join(5)
    assert seen == [(max(GEN0_THRESHOLD, before[0]), *before[1:])]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_failing_run_restores_the_collector() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError), bulk_gc():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
