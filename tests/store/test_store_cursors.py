"""Cursors: they move only after a successful push, only forward, and carry the ids seen at
their exact position (same-second updates are not lost at a cursor boundary)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from store import StateStore

T0 = datetime(2026, 2, 1, 9, 30, 15, tzinfo=UTC)


def test_a_stream_has_no_cursor_before_its_first_push(store: StateStore) -> None:
    assert store.get_cursor("deals") is None
    assert store.all_cursors() == {}


def test_the_cursor_moves_after_a_successful_push(store: StateStore) -> None:
    assert store.advance_cursor("deals", T0, pushed=True, seen_ids=[11, 12]) is True
    cursor = store.get_cursor("deals")
    assert cursor is not None
    assert cursor.value == T0 and cursor.seen_ids == {11, 12}
    assert store.all_cursors().keys() == {"deals"}


def test_the_cursor_does_not_move_when_the_push_failed(store: StateStore) -> None:
    assert store.advance_cursor("deals", T0, pushed=False) is False
    assert store.get_cursor("deals") is None  # a first run that failed leaves no cursor
    store.advance_cursor("deals", T0, pushed=True, seen_ids=[1])
    later = T0 + timedelta(hours=1)
    assert store.advance_cursor("deals", later, pushed=False, seen_ids=[2]) is False
    cursor = store.get_cursor("deals")
    assert cursor is not None and (cursor.value, cursor.seen_ids) == (T0, {1})


def test_the_cursor_never_moves_back(store: StateStore) -> None:
    store.advance_cursor("persons", T0, pushed=True, seen_ids=[1])
    assert store.advance_cursor("persons", T0 - timedelta(seconds=1), pushed=True) is False
    cursor = store.get_cursor("persons")
    assert cursor is not None and (cursor.value, cursor.seen_ids) == (T0, {1})


def test_seen_ids_add_up_at_the_same_second_and_reset_at_a_newer_one(store: StateStore) -> None:
    store.advance_cursor("notes", T0, pushed=True, seen_ids=[1, 2])
    store.advance_cursor("notes", T0, pushed=True, seen_ids=[3, "x-9"])
    cursor = store.get_cursor("notes")
    assert cursor is not None and cursor.seen_ids == {1, 2, 3, "x-9"}
    store.advance_cursor("notes", T0 + timedelta(seconds=1), pushed=True, seen_ids=[4])
    cursor = store.get_cursor("notes")
    assert cursor is not None and cursor.seen_ids == {4}


def test_times_are_kept_exactly_in_utc(store: StateStore) -> None:
    paris = timezone(timedelta(hours=1))
    local = datetime(2026, 2, 1, 10, 30, 15, 123456, tzinfo=paris)
    store.advance_cursor("organizations", local, pushed=True)
    cursor = store.get_cursor("organizations")
    assert cursor is not None
    assert cursor.value == local and cursor.value.tzinfo == UTC
    assert cursor.value.microsecond == 123456
    with pytest.raises(ValueError, match="timezone-aware"):
        store.advance_cursor("organizations", datetime(2026, 2, 1), pushed=True)


def test_streams_are_independent_and_a_reset_forgets_one(store: StateStore) -> None:
    store.advance_cursor("deals", T0, pushed=True)
    store.advance_cursor("persons", T0 + timedelta(days=1), pushed=True)
    assert store.reset_cursor("deals") is True
    assert store.reset_cursor("deals") is False
    assert store.get_cursor("deals") is None
    assert store.all_cursors().keys() == {"persons"}
