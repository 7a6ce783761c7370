"""Selection and scope as plain functions (no Prefect, no HTTP): which deals become licenses and
which organizations, persons and notes belong in Planhat."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from deployments.sandbox_settings import SANDBOX_DIR, account_from_seed
from mappings.loading import load_settings
from mappings.resolve import compile_mappings
from sandbox.data import generate
from tasks.fetch import Fetched, since_with_overlap
from tasks.select import note_in_scope, plan_scope, select_deals, select_won_deals

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


def test_select_deals_says_why_each_other_deal_is_not_selected() -> None:
    mappings = dataclasses.replace(
        MAPPINGS, pipeline_ids=frozenset({1}), pipeline_names={1: "Sales", 3: "Renewals"}
    )
    won = {"id": 4821, "status": "won", "pipeline_id": 1, "is_deleted": False}
    deals = [
        won,
        {**won, "id": 2, "status": "open"},
        {**won, "id": 3, "pipeline_id": 3},
        {**won, "id": 4, "is_deleted": True},
        {**won, "id": "5", "pipeline_id": "3"},  # ids as text: the same id rule
    ]
    selected, skipped = select_deals(deals, mappings)
    assert [d["id"] for d in selected] == [4821]
    assert [(i.record_id, i.message) for i in skipped] == [
        (2, "deal 2 is open, not won"),
        (3, "deal 3 is in pipeline 'Renewals', which is not selected"),
        (4, "deal 4 is deleted in Pipedrive"),
        (5, "deal 5 is in pipeline 'Renewals', which is not selected"),
    ]


def test_a_note_is_in_scope_when_it_hangs_on_an_object_of_notes_scope() -> None:
    scoped = dataclasses.replace(MAPPINGS, notes_scope=frozenset({"deal", "organization"}))
    on_deal = {"id": 1, "deal_id": 77, "org_id": None, "person_id": None}
    on_org = {"id": 2, "deal_id": None, "org_id": 5, "person_id": None}
    on_person = {"id": 3, "deal_id": None, "org_id": None, "person_id": 88}
    assert [note_in_scope(n, scoped) for n in (on_deal, on_org, on_person)] == [True, True, False]
    persons_only = dataclasses.replace(MAPPINGS, notes_scope=frozenset({"person"}))
    assert note_in_scope(on_person, persons_only) and not note_in_scope(on_deal, persons_only)


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


def test_fetched_keeps_each_id_once_the_last_copy_winning() -> None:
    fetched = Fetched()
    later = {**PD.deals[0], "title": "the later copy"}
    assert fetched.add("deals", [PD.deals[0], later, PD.deals[1]]) == 3
    assert len(fetched.deals) == 2
    assert fetched.deals[PD.deals[0]["id"]]["title"] == "the later copy"
