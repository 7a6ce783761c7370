"""Links: idempotent batch upserts keyed by the Pipedrive id, one-to-one pairs, last-synced
values and their hash (echo suppression and the three-way merge read them back)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_support import FakeClock

from store import LinkRow, StateStore, values_hash
from store.records import canonical_json


@contextmanager
def statements(store: StateStore) -> Iterator[list[int]]:
    """Counts the round trips to the database (an executemany counts once)."""
    calls: list[int] = []

    def count(*_args: Any) -> None:
        calls.append(1)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield calls
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)


def test_links_round_trip_with_their_values_and_hash(store: StateStore) -> None:
    values = {"name": "Acme", "seats": 12, "owner": None, "tags": ["a", "b"], "é": "ü"}
    written = store.upsert_links("deal", [LinkRow(101, "ph-101", values)])
    assert written.written == 1 and written.conflicts == []
    link = store.links_for("deal", [101, 102])[101]
    assert (link.pipedrive_id, link.planhat_id) == (101, "ph-101")
    assert link.values == values  # the explicit null kept
    assert link.values_hash == values_hash(values)
    assert link.synced_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert 102 not in store.links_for("deal", [102])


def test_replaying_the_same_upsert_creates_no_duplicate_and_changes_nothing(
    store: StateStore, clock: FakeClock
) -> None:
    rows = [LinkRow(i, f"ph-{i}", {"n": i}) for i in range(1, 301)]
    store.upsert_links("organization", rows)
    before = store.links_for("organization", range(1, 301))
    clock.advance(minutes=5)
    store.upsert_links("organization", rows)
    after = store.links_for("organization", range(1, 301))
    assert store.count_links("organization") == 300
    assert {k: (v.planhat_id, v.values, v.values_hash) for k, v in after.items()} == {
        k: (v.planhat_id, v.values, v.values_hash) for k, v in before.items()
    }
    assert all(v.synced_at == clock.now for v in after.values())


def test_an_update_replaces_the_values_and_keeps_a_known_planhat_id(store: StateStore) -> None:
    store.upsert_links("person", [LinkRow(7, "ph-7", {"email": "a@x.io", "phone": "1"})])
    store.upsert_links("person", [LinkRow(7, None, {"email": "b@x.io"})])  # Planhat named no id
    link = store.links_for("person", [7])[7]
    assert link.planhat_id == "ph-7"
    assert link.values == {"email": "b@x.io"}
    assert link.values_hash == values_hash({"email": "b@x.io"})
    store.upsert_links("person", [LinkRow(7, "ph-7b", {"email": "b@x.io"})])  # re-created
    assert store.links_for("person", [7])[7].planhat_id == "ph-7b"
    assert store.links_by_planhat("person", ["ph-7", "ph-7b"]).keys() == {"ph-7b"}


def test_a_planhat_id_linked_elsewhere_is_refused_and_reported(store: StateStore) -> None:
    store.upsert_links("organization", [LinkRow(1, "ph-A", {"name": "A"})])
    result = store.upsert_links(
        "organization",
        [
            LinkRow(2, "ph-A", {"name": "B"}),  # clashes with the stored link 1 ⇄ ph-A
            LinkRow(3, "ph-C", {"name": "C"}),
            LinkRow(4, "ph-C", {"name": "D"}),  # clashes with row 3 of the same batch
        ],
    )
    assert result.written == 1
    assert [(c.row.pipedrive_id, c.linked_pipedrive_id) for c in result.conflicts] == [
        (2, 1),
        (4, 3),
    ]
    assert "already linked to Pipedrive id 1" in result.conflicts[0].reason
    links = store.links_for("organization", [1, 2, 3, 4])
    assert {k: v.planhat_id for k, v in links.items()} == {1: "ph-A", 3: "ph-C"}
    assert links[1].values == {"name": "A"}


def test_the_id_map_of_an_object_type_names_each_links_planhat_id_or_none(
    store: StateStore,
) -> None:
    store.upsert_links("organization", [LinkRow(7, None, {"v": 1}), LinkRow(8, "ph-8", {})])
    store.upsert_links("deal", [LinkRow(9, "ph-9", {})])
    assert store.linked_planhat_ids("organization") == {7: None, 8: "ph-8"}
    assert store.linked_planhat_ids("person") == {}


def test_object_types_are_separate_and_within_a_batch_the_last_row_wins(
    store: StateStore,
) -> None:
    store.upsert_links("deal", [LinkRow(5, "ph-x", {"v": 1})])
    store.upsert_links(
        "note",
        [
            {"pipedrive_id": 5, "planhat_id": "ph-x", "values": {"v": "first"}},
            {"pipedrive_id": "5", "planhat_id": "ph-x", "values": {"v": "last"}},
        ],
    )
    assert store.links_for("deal", [5])[5].values == {"v": 1}
    assert store.links_for("note", [5])[5].values == {"v": "last"}
    assert store.linked_pipedrive_ids("note") == {5}
    assert store.linked_planhat_ids("note") == {5: "ph-x"}
    assert store.count_links() == 2


def test_bad_rows_are_refused_before_anything_is_written(store: StateStore) -> None:
    bad_rows: list[Any] = [
        LinkRow(0, "ph", {}),
        LinkRow(True, "ph", {}),  # type: ignore[arg-type]
        LinkRow(1, "", {}),
        LinkRow(1, "ph", {"x": float("nan")}),
        LinkRow(1, "ph", {"x": {1, 2}}),
        {"pipedrive_id": 1, "planhat": "typo"},
    ]
    for bad in bad_rows:
        with pytest.raises(ValueError):
            store.upsert_links("deal", [LinkRow(9, "ph-9", {}), bad])
    with pytest.raises(ValueError, match="object type"):
        store.upsert_links("Deals!", [LinkRow(9, "ph-9", {})])
    assert store.count_links() == 0  # nothing of a refused batch was stored


def test_a_backfill_batch_is_written_and_read_in_a_few_round_trips(store: StateStore) -> None:
    rows = [LinkRow(i, f"ph-{i}", {"name": f"org {i}", "n": i}) for i in range(1, 5001)]
    with statements(store) as calls:
        assert store.upsert_links("organization", rows).written == 5000
    assert len(calls) <= 25  # 5 chunks of 1,000 (and their savepoints), not 5,000 statements
    with statements(store) as calls:
        found = store.links_for("organization", range(1, 5001))
    assert len(found) == 5000 and found[4321].values == {"name": "org 4321", "n": 4321}
    assert len(calls) <= 10
    assert len(store.linked_pipedrive_ids("organization")) == 5000
    if store.dialect == "postgresql":  # planner statistics refreshed after the bulk write
        query = "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'links'"
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql(query).scalar() is not None


json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.dictionaries(st.text(min_size=1, max_size=12), json_values, max_size=6))
def test_any_json_values_come_back_equal_with_a_key_order_independent_hash(
    store: StateStore, values: dict[str, Any]
) -> None:
    store.upsert_links("deal", [LinkRow(1, "ph-1", values)])
    link = store.links_for("deal", [1])[1]
    assert link.values == values
    assert link.values_hash == values_hash(dict(reversed(list(values.items()))))


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=6))
def test_the_canonical_text_is_pythons_json_byte_for_byte(values: dict[str, Any]) -> None:
    # orjson writes the float-free values (the fast path); a different text would change every
    # stored hash, and with it re-send records that did not change
    expected = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(values) == expected


def test_the_canonical_text_refuses_what_json_cannot_carry() -> None:
    for bad in ({"x": float("nan")}, {"x": float("inf")}, {"x": {1, 2}}, {"x": datetime.now(UTC)}):
        with pytest.raises(ValueError, match="plain JSON"):
            canonical_json(bad)
