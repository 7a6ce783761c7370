"""Selection and scope as plain functions (no Prefect, no HTTP): which deals become licenses and
which organizations, persons and notes belong in Planhat."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from mappings.resolve import account_from_seed, compile_mappings
from mappings.settings import SANDBOX_DIR, load_settings
from sandbox.data import generate
from tasks.fetch import Fetched, since_with_overlap
from tasks.select import plan_scope, select_won_deals

PD, PH = generate("small", 7)
MAPPINGS = compile_mappings(load_settings(SANDBOX_DIR), account_from_seed(PD, PH.users))
SELECTED = MAPPINGS.pipeline_ids


def fetched_everything() -> Fetched:
    fetched = Fetched()
    fetched.add("deals", PD.deals)
    fetched.add("organizations", PD.organizations)
    fetched.add("persons", PD.persons)
    fetched.add("notes", PD.notes)
    return fetched


def test_only_won_deals_in_selected_pipelines_are_selected_and_the_rest_say_why() -> None:
    selection = select_won_deals(PD.deals, MAPPINGS)
    assert selection.selected
    assert all(d["status"] == "won" and d["pipeline_id"] in SELECTED for d in selection.selected)
    assert len(selection.selected) + len(selection.skipped) == len(PD.deals)
    assert all(a.action == "skipped" and a.reason for a in selection.skipped)


def test_a_licensed_deal_that_no_longer_qualifies_keeps_its_license() -> None:
    lost = next(d for d in PD.deals if d["status"] == "lost")
    selection = select_won_deals([lost], MAPPINGS, licensed_deal_ids=[lost["id"]])
    assert "license is kept" in (selection.skipped[0].reason or "")


def test_scope_brings_only_customers_not_the_whole_crm() -> None:
    fetched = fetched_everything()
    selection = select_won_deals(fetched.deals.values(), MAPPINGS)
    scope = plan_scope(fetched, selection, MAPPINGS, linked_orgs=[])
    customer_orgs = {d["org_id"] for d in selection.selected if d["org_id"]}
    assert {o["id"] for o in scope.organizations} == customer_orgs
    assert len(scope.organizations) < len(PD.organizations)
    assert {p["org_id"] for p in scope.persons} <= customer_orgs
    won_ids = {d["id"] for d in selection.selected}
    assert all(n["deal_id"] in won_ids or n["org_id"] in customer_orgs for n in scope.notes)


def test_already_linked_companies_stay_in_scope_and_sync_all_takes_every_organization() -> None:
    fetched = fetched_everything()
    nothing = select_won_deals([], MAPPINGS)
    linked = [PD.organizations[0]["id"]]
    scope = plan_scope(fetched, nothing, MAPPINGS, linked_orgs=linked)
    assert [o["id"] for o in scope.organizations] == linked
    everything = dataclasses.replace(MAPPINGS, sync_all_organizations=True)
    assert len(plan_scope(fetched, nothing, everything, linked_orgs=[]).organizations) == len(
        PD.organizations
    )


def test_cursor_overlap_reads_the_boundary_again() -> None:
    cursor = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert since_with_overlap(cursor, 300) == datetime(2026, 1, 1, 11, 55, 0, tzinfo=UTC)
    assert since_with_overlap(None, 300) is None


def test_fetched_keeps_each_id_once_and_the_newest_update_time() -> None:
    fetched = Fetched()
    fetched.add("deals", [PD.deals[0], PD.deals[0], PD.deals[1]])
    assert len(fetched.deals) == 2
    newest = max(PD.deals[0]["update_time"], PD.deals[1]["update_time"])
    assert fetched.newest["deals"].strftime("%Y-%m-%dT%H:%M:%SZ") == newest
