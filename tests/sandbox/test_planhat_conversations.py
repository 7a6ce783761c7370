"""The sandbox Planhat's rule for notes (conversations): an update needs `_id`; an item without
one is a create, whatever keys it carries (planhat-api.md §3.4). A client that updates notes by
their keys would duplicate them in a real Planhat, and does here too."""

from __future__ import annotations

from sandbox.dataset import PlanhatSeed
from sandbox.planhat.store import PlanhatStore


def _store_with_company() -> tuple[PlanhatStore, str]:
    store = PlanhatStore(PlanhatSeed())
    result = store.bulk_upsert("companies", [{"name": "Acme", "sourceId": "1"}])
    return store, result["insertsKeys"][0]["_id"]


def test_a_note_sent_twice_by_its_keys_is_two_notes() -> None:
    store, company = _store_with_company()
    note = {"type": "note", "companyId": company, "sourceId": "7", "externalId": "7"}
    first = store.bulk_upsert("conversations", [{**note, "subject": "v1"}])
    second = store.bulk_upsert("conversations", [{**note, "subject": "v2"}])
    assert first["created"] == 1 and second["created"] == 1 and second["updated"] == 0
    subjects = sorted(r["subject"] for r in store.cols["conversations"].records.values())
    assert subjects == ["v1", "v2"]


def test_a_note_sent_by_its_id_is_updated_in_place() -> None:
    store, company = _store_with_company()
    note = {"type": "note", "companyId": company, "sourceId": "7", "externalId": "7"}
    created = store.bulk_upsert("conversations", [{**note, "subject": "v1"}])
    planhat_id = created["insertsKeys"][0]["_id"]
    updated = store.bulk_upsert("conversations", [{"_id": planhat_id, "subject": "v2"}])
    again = store.bulk_upsert("conversations", [{"_id": planhat_id, "subject": "v2"}])
    assert updated["updated"] == 1 and updated["updatesKeys"][0]["_id"] == planhat_id
    assert again["nonupdates"] == 1
    records = list(store.cols["conversations"].records.values())
    assert [(r["_id"], r["subject"], r["sourceId"]) for r in records] == [(planhat_id, "v2", "7")]


def test_companies_still_match_on_their_source_id() -> None:
    store, company = _store_with_company()
    again = store.bulk_upsert("companies", [{"name": "Acme", "sourceId": "1"}])
    assert again["nonupdates"] == 1 and len(store.cols["companies"].records) == 1
