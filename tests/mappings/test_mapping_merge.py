"""The three-way merge against the last synced values: no echo, one-sided changes win, real
conflicts follow the policy and are reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mappings_support import account, field_code, write_settings

from mappings.loading import load_settings
from mappings.merge import (
    field_hashes,
    pipedrive_patch,
    pipedrive_values,
    planhat_patch,
    planhat_values,
    three_way_merge,
)
from mappings.resolve import Mappings, compile_mappings
from mappings.values import field_hash


def merge(
    base: dict[str, Any],
    pd: dict[str, Any],
    ph: dict[str, Any],
    policy: str = "pipedrive_wins",
    **kw: Any,
):  # noqa: ANN201
    return three_way_merge(field_hashes(base), pd, ph, policy, **kw)


@pytest.mark.parametrize(
    ("base", "pd", "ph", "to_planhat", "to_pipedrive"),
    [
        ({"name": "A"}, {"name": "A"}, {"name": "A"}, {}, {}),  # unchanged: no echo
        ({"name": "A"}, {"name": "B"}, {"name": "A"}, {"name": "B"}, {}),  # Pipedrive only
        ({"name": "A"}, {"name": "A"}, {"name": "C"}, {}, {"name": "C"}),  # Planhat only
        ({"name": "A"}, {"name": "D"}, {"name": "D"}, {}, {}),  # both, to the same value
        ({"name": "A"}, {"name": None}, {"name": "A"}, {"name": None}, {}),  # null is a change
        ({"name": "A"}, {}, {"name": "C"}, {}, {"name": "C"}),  # absent: no information
        ({}, {"name": "A"}, {}, {"name": "A"}, {}),  # never synced, only one side has it
        ({}, {"name": "A"}, {"name": "A"}, {}, {}),  # never synced, already equal
    ],
)
def test_one_sided_changes_win_and_unchanged_values_are_not_written(
    base: dict[str, Any], pd: dict[str, Any], ph: dict[str, Any],
    to_planhat: dict[str, Any], to_pipedrive: dict[str, Any],
) -> None:  # fmt: skip
    result = merge(base, pd, ph)
    assert (result.to_planhat, result.to_pipedrive, result.conflicts) == (
        to_planhat, to_pipedrive, [],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "pd_time", "ph_time", "winner"),
    [
        ("pipedrive_wins", None, None, "pipedrive"),
        ("planhat_wins", None, None, "planhat"),
        ("newest_wins", "2026-06-18T15:40:22Z", "2026-06-18T15:40:23.000Z", "planhat"),
        ("newest_wins", "2026-06-18 15:40:24", "2026-06-18T15:40:23.000Z", "pipedrive"),
        ("newest_wins", None, "2026-06-18T15:40:23.000Z", "pipedrive"),  # unknown time
    ],
)
def test_a_field_changed_on_both_sides_follows_the_policy_and_is_reported(
    policy: str, pd_time: str | None, ph_time: str | None, winner: str
) -> None:
    result = merge(
        {"name": "A"}, {"name": "B"}, {"name": "C"}, policy,
        pipedrive_updated=pd_time, planhat_updated=ph_time,
    )  # fmt: skip
    (conflict,) = result.conflicts
    assert (conflict.key, conflict.pipedrive_value, conflict.planhat_value) == ("name", "B", "C")
    assert conflict.winner == winner
    if winner == "pipedrive":
        assert (result.to_planhat, result.to_pipedrive) == ({"name": "B"}, {})
        assert result.base == {"name": field_hash("B")}
    else:
        assert (result.to_planhat, result.to_pipedrive) == ({}, {"name": "C"})
        assert result.base == {"name": field_hash("C")}


def test_a_first_sync_with_different_values_is_a_conflict() -> None:
    values_for_planhat, values_for_pipedrive, conflicts = merge({}, {"name": "B"}, {"name": "C"})
    assert values_for_planhat == {"name": "B"} and values_for_pipedrive == {}
    assert [c.key for c in conflicts] == ["name"]


def test_what_was_written_does_not_come_back() -> None:
    base = {"name": "A", "web": "a.example", "custom.Tier": "Growth"}
    pd = {"name": "B", "web": "a.example", "custom.Tier": "Growth"}
    ph = {"name": "A", "web": "b.example", "custom.Tier": "Enterprise"}
    first = merge(base, pd, ph)
    assert first.to_planhat == {"name": "B"}
    assert first.to_pipedrive == {"web": "b.example", "custom.Tier": "Enterprise"}
    # Both writes happen; the next run sees the same values on both sides.
    pd2, ph2 = {**pd, **first.to_pipedrive}, {**ph, **first.to_planhat}
    second = three_way_merge(first.base, pd2, ph2, "pipedrive_wins")
    assert (second.to_planhat, second.to_pipedrive, second.conflicts) == ({}, {}, [])
    assert second.base == first.base


def test_directions_limit_the_merge(tmp_path: Path) -> None:
    mappings = _both_ways_mappings(tmp_path)
    rules = mappings.rules["company"]
    base = {"country": "Germany", "name": "A"}
    result = three_way_merge(
        field_hashes(base),
        {"country": "Germany", "name": "A"},
        {"country": "France", "name": "A"},  # country is receive-only: never sent back
        "planhat_wins",
        rules=rules,
    )
    assert (result.to_planhat, result.to_pipedrive) == ({}, {})
    assert result.base["country"] == field_hash("Germany")


def _both_ways_mappings(tmp_path: Path) -> Mappings:
    d = write_settings(
        tmp_path,
        """\
        version: 1
        connection:
          pipedrive: {company_url: https://acme.pipedrive.com, token_env: PIPEDRIVE_API_TOKEN}
          planhat: {token_env: PLANHAT_API_TOKEN}
        organizations: {direction: both}
        deals: {direction: receive, pipelines: [New business]}
        conflict_policy: newest_wins
        """,
        custom_matches_yaml="""\
        custom_matches:
          - {type: custom, planhat_object: company, planhat_field: Segment,
             pipedrive_field: Industry segment, direction: both}
          - {type: custom, planhat_object: company, planhat_field: Budget,
             pipedrive_field: Annual budget, direction: both}
        """,
    )
    return compile_mappings(load_settings(d), account())


def test_a_two_way_organization_round(tmp_path: Path) -> None:
    """The pipeline's round for one linked pair: values on both sides, the merge, the bodies."""
    mappings = _both_ways_mappings(tmp_path)
    segment = field_code("organization", "Industry segment")
    budget = field_code("organization", "Annual budget")
    from mappings_support import option_id

    organization = {
        "id": 12, "name": "Nordlicht Logistics GmbH", "owner_id": 10471201,
        "update_time": "2026-06-18T15:40:22Z", "website": "https://nordlicht.example",
        "custom_fields": {segment: option_id("organization", "Industry segment", "Logistics"),
                          budget: {"value": 1000, "currency": "EUR"}},
    }  # fmt: skip
    company = {
        "_id": "c12", "sourceId": "12", "name": "Nordlicht Logistics", "web":
        "https://nordlicht.example", "owner": None, "updatedAt": "2026-06-19T08:00:00.000Z",
        "custom": {"Segment": "Retail & E-commerce", "Budget": 2500},
    }  # fmt: skip
    base = field_hashes(pipedrive_values("company", organization, mappings))
    organization["name"] = "Nordlicht Logistics SE"  # edited in Pipedrive since the last sync
    result = three_way_merge(
        base,
        pipedrive_values("company", organization, mappings),
        planhat_values("company", company, mappings),
        mappings.conflict_policy,
        rules=mappings.rules["company"],
        pipedrive_updated=organization["update_time"],
        planhat_updated=company["updatedAt"],
    )
    # name changed on both sides: Planhat's record is newer. owner/segment/budget: Planhat only.
    assert [c.key for c in result.conflicts] == ["name"]
    assert result.to_planhat == {}
    assert planhat_patch("company", result.to_planhat, source_id=12) == {"sourceId": "12"}
    assert pipedrive_patch("company", result.to_pipedrive, mappings, current=organization) == {
        "id": 12,
        "name": "Nordlicht Logistics",
        "owner_id": None,
        "custom_fields": {
            segment: option_id("organization", "Industry segment", "Retail & E-commerce"),
            budget: {"value": 2500, "currency": "EUR"},
        },
    }
