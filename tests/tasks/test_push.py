"""Convert and push against an in-memory Planhat (`planhat_fake`) and a real SQLite store:
every link holds the Planhat id, notes go by `_id`, a dry run reports what a real run writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from planhat_fake import FakePlanhat

from mappings.rows import MappedBatch
from store import StateStore
from tasks.push import DRY_RUN_ID, push_mapped


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as s:
        yield s


def batch(*records: dict[str, Any]) -> MappedBatch:
    return MappedBatch(records=list(records), ids=[int(r["sourceId"]) for r in records])


def company(pid: int, name: str = "Acme") -> dict[str, Any]:
    return {"sourceId": str(pid), "externalId": str(pid), "name": name}


def note(pid: int, company_id: str, text: str = "hello") -> dict[str, Any]:
    return {"sourceId": str(pid), "externalId": str(pid), "type": "note",
            "companyId": company_id, "description": text}  # fmt: skip


def enduser(pid: int, company_id: str) -> dict[str, Any]:
    return {"sourceId": str(pid), "externalId": str(pid), "companyId": company_id,
            "email": f"p{pid}@acme.example", "firstName": "P"}  # fmt: skip


def test_a_record_planhat_already_holds_is_adopted_with_its_id(store: StateStore) -> None:
    planhat = FakePlanhat()
    held = planhat.bulk_upsert("companies", [company(1), company(2, "Beta")]).items
    planhat.calls.clear()
    # the store knows nothing (lost, or a crash before the links): Planhat answers "unchanged"
    # without naming the ids, so they are looked up, once, in the lean company list
    result = push_mapped(
        planhat, store, "organization", batch(company(1), company(2, "Beta")), dry_run=False
    )
    assert [a.action for a in result.actions] == ["unchanged", "unchanged"]
    assert planhat.calls == {"PUT /companies": 1, "GET /leancompanies": 1}
    links = store.links_for("organization", [1, 2])
    assert {k: v.planhat_id for k, v in links.items()} == {1: held[0].id, 2: held[1].id}
    assert result.planhat_ids == {1: held[0].id, 2: held[1].id}
    assert result.created == set()
    planhat.calls.clear()
    again = push_mapped(
        planhat, store, "organization", batch(company(1), company(2, "Beta")), dry_run=False
    )
    assert planhat.calls == {} and {a.action for a in again.actions} == {"unchanged"}


def test_children_are_adopted_by_their_companys_list(store: StateStore) -> None:
    planhat = FakePlanhat()
    company_id = planhat.bulk_upsert("companies", [company(1)]).items[0].id
    assert company_id
    user_id = planhat.bulk_upsert("endusers", [enduser(10, company_id)]).items[0].id
    planhat.calls.clear()
    result = push_mapped(planhat, store, "person", batch(enduser(10, company_id)), dry_run=False)
    assert [a.action for a in result.actions] == ["unchanged"]
    assert store.links_for("person", [10])[10].planhat_id == user_id
    assert planhat.calls == {"PUT /endusers": 1, "GET /endusers": 1}


def test_a_saved_record_whose_id_cannot_be_found_is_failed_not_linked(
    store: StateStore,
) -> None:
    planhat = FakePlanhat()
    planhat.bulk_upsert("companies", [company(1)])
    planhat.hidden.add("companies")
    result = push_mapped(planhat, store, "organization", batch(company(1)), dry_run=False)
    assert [a.action for a in result.actions] == ["failed"]
    assert "sent again next run" in (result.actions[0].reason or "")
    assert store.links_for("organization", [1]) == {}
    assert result.planhat_ids == {}


def test_a_linked_note_is_updated_by_its_id_alone(store: StateStore) -> None:
    planhat = FakePlanhat()
    company_id = planhat.bulk_upsert("companies", [company(1)]).items[0].id
    assert company_id
    first = push_mapped(planhat, store, "note", batch(note(5, company_id)), dry_run=False)
    assert [a.action for a in first.actions] == ["created"]
    planhat.calls.clear()
    for text in ("second", "third"):
        push_mapped(planhat, store, "note", batch(note(5, company_id, text)), dry_run=False)
    notes = planhat.records("conversations")
    assert len(notes) == 1 and notes[0]["description"] == "third"
    assert planhat.calls == {"PUT /conversations": 2}  # no look-up: the link holds the id


def test_an_unlinked_note_of_an_existing_company_is_looked_up_first(store: StateStore) -> None:
    planhat = FakePlanhat()
    company_id = planhat.bulk_upsert("companies", [company(1)]).items[0].id
    assert company_id
    planhat.bulk_upsert("conversations", [note(5, company_id)])  # written, links lost
    planhat.calls.clear()
    result = push_mapped(
        planhat, store, "note", batch(note(5, company_id, "edited")), dry_run=False
    )
    assert [a.action for a in result.actions] == ["updated"]
    notes = planhat.records("conversations")
    assert len(notes) == 1 and notes[0]["description"] == "edited"
    assert planhat.calls == {"GET /conversations": 1, "PUT /conversations": 1}


def test_notes_of_a_company_created_by_this_run_need_no_look_up(store: StateStore) -> None:
    planhat = FakePlanhat()
    created = push_mapped(planhat, store, "organization", batch(company(1)), dry_run=False)
    company_id = created.planhat_ids[1]
    assert created.created == {company_id}
    planhat.calls.clear()
    push_mapped(
        planhat,
        store,
        "note",
        batch(note(5, company_id), note(6, company_id)),
        dry_run=False,
        fresh_companies=created.created,
    )
    assert planhat.calls == {"PUT /conversations": 1}


def test_a_dry_run_counts_the_children_of_companies_it_would_create(store: StateStore) -> None:
    planhat = FakePlanhat()
    companies = push_mapped(planhat, store, "organization", batch(company(1)), dry_run=True)
    stand_in = companies.planhat_ids[1]
    assert stand_in.startswith(DRY_RUN_ID) and companies.created == {stand_in}
    users = push_mapped(planhat, store, "person", batch(enduser(10, stand_in)), dry_run=True)
    notes = push_mapped(
        planhat,
        store,
        "note",
        batch(note(5, stand_in)),
        dry_run=True,
        fresh_companies=companies.created,
    )
    for result in (companies, users, notes):
        assert [(a.action, a.reason) for a in result.actions] == [
            ("created", "dry run: would be created")
        ]
    assert planhat.calls == {}  # nothing written, nothing to look up
    assert store.count_links() == 0


def test_a_note_deleted_in_planhat_is_created_again_not_stuck(store: StateStore) -> None:
    planhat = FakePlanhat()
    company_id = planhat.bulk_upsert("companies", [company(1)]).items[0].id
    assert company_id
    first = push_mapped(planhat, store, "note", batch(note(5, company_id)), dry_run=False)
    old_id = first.planhat_ids[5]
    planhat.store.delete("conversations", planhat.store.find("conversations", old_id))
    planhat.calls.clear()
    again = push_mapped(planhat, store, "note", batch(note(5, company_id, "edited")), dry_run=False)
    assert [a.action for a in again.actions] == ["created"]
    (recreated,) = planhat.records("conversations")
    assert recreated["_id"] != old_id and recreated["description"] == "edited"
    assert store.links_for("note", [5])[5].planhat_id == recreated["_id"]
    # by its stale _id (refused), looked up by its keys (none), created: three calls, once
    assert planhat.calls == {"PUT /conversations": 2, "GET /conversations": 1}
    planhat.calls.clear()
    push_mapped(planhat, store, "note", batch(note(5, company_id, "edited")), dry_run=False)
    assert planhat.calls == {}
