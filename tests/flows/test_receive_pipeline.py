"""The receive pipeline end to end: real Prefect flows against the sandbox Pipedrive and Planhat.

Each test gets its own sandbox and state store, so the Planhat side starts empty and the
counters count only that test's calls.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import (
    by_source,
    pipedrive,
    pipeline_ids,
    write_settings,
)

from flows.company_resync import company_resync
from flows.deal_sync import deal_sync
from flows.incremental_sync import incremental_sync
from mappings.loading import load_settings
from sandbox.runner import Sandbox

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _deal(sb: Sandbox, *, status: str, pipeline: str, with_org: bool = True) -> dict[str, Any]:
    pid = pipeline_ids(sb)[pipeline]
    for deal in sb.pipedrive_seed.deals:
        if (
            deal["status"] == status
            and deal["pipeline_id"] == pid
            and (bool(deal["org_id"]) == with_org)
        ):
            return deal
    raise AssertionError(f"the small data set has no {status} deal in {pipeline}")


def _reset_counters(sb: Sandbox) -> None:
    sb.pipedrive.counters.reset()
    sb.planhat.counters.reset()


def test_a_won_deal_becomes_license_company_end_users_and_notes(sb: Sandbox, settings: str) -> None:
    deal = _deal(sb, status="won", pipeline="New business")
    org = next(o for o in sb.pipedrive_seed.organizations if o["id"] == deal["org_id"])
    report = deal_sync(deal_id=deal["id"], settings_dir=settings)

    licenses = by_source(sb.planhat.records("licenses"))
    companies = by_source(sb.planhat.records("companies"))
    assert set(licenses) == {str(deal["id"])}
    lic = licenses[str(deal["id"])]
    company = companies[str(org["id"])]
    assert company["name"] == org["name"]
    assert lic["companyId"] == company["_id"]
    assert lic["value"] == deal["value"] and lic["_currency"] == deal["currency"]
    assert lic["fromDate"][:10] == deal["won_time"][:10]
    assert lic["fixedPeriod"] is True and lic["product"] == deal["title"]
    # the organization's persons with an email are its end users
    expected_users = {
        str(p["id"]) for p in sb.pipedrive_seed.persons if p["org_id"] == org["id"] and p["emails"]
    }
    users = by_source(sb.planhat.records("endusers"))
    assert expected_users and expected_users <= set(users)
    assert all(u["companyId"] == company["_id"] for u in users.values())
    # the notes on the deal and on the organization
    expected_notes = {
        str(n["id"])
        for n in sb.pipedrive_seed.notes
        if n["deal_id"] == deal["id"] or n["org_id"] == org["id"]
    }
    notes = by_source(sb.planhat.records("conversations"))
    assert set(notes) == expected_notes
    assert all(n["type"] == "note" and n["companyId"] == company["_id"] for n in notes.values())
    assert report["counts"]["deal"]["created"] == 1


@pytest.mark.parametrize(
    ("status", "pipeline", "reason"),
    [
        ("open", "New business", "is open, not won"),
        ("lost", "New business", "is lost, not won"),
        ("won", "Renewals & upsell", "which is not selected"),
    ],
)
def test_deals_that_do_not_qualify_write_nothing_and_say_why(
    sb: Sandbox, settings: str, status: str, pipeline: str, reason: str
) -> None:
    deal = _deal(sb, status=status, pipeline=pipeline)
    _reset_counters(sb)
    report = deal_sync(deal_id=deal["id"], settings_dir=settings)
    assert sb.planhat.counters.snapshot()["routes"].get("PUT /licenses", 0) == 0
    assert sb.planhat.records("licenses") == [] and sb.planhat.records("companies") == []
    assert any(reason in (r["reason"] or "") for r in report["reasons"])
    assert report["counts"]["deal"] == {"skipped": 1}


def test_the_same_notification_three_times_makes_one_license_and_then_writes_nothing(
    sb: Sandbox, settings: str
) -> None:
    deal = _deal(sb, status="won", pipeline="New business")
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    writes_after_first = sb.planhat.counters.snapshot()["routes"]
    for _ in range(2):
        report = deal_sync(deal_id=deal["id"], settings_dir=settings)
        assert set(report["counts"]["deal"]) == {"unchanged"}
    assert len(sb.planhat.records("licenses")) == 1
    routes = sb.planhat.counters.snapshot()["routes"]
    puts = {k: v for k, v in routes.items() if k.startswith("PUT")}
    assert puts == {k: v for k, v in writes_after_first.items() if k.startswith("PUT")}


def test_out_of_order_notifications_converge_to_the_current_deal(
    sb: Sandbox, settings: str
) -> None:
    deal = _deal(sb, status="won", pipeline="New business")
    with pipedrive(sb) as pd:
        pd.patch(f"/api/v2/deals/{deal['id']}", json={"value": 111}).raise_for_status()
        pd.patch(f"/api/v2/deals/{deal['id']}", json={"value": 222}).raise_for_status()
    # the second notification is handled first, then the (late) first one
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    assert by_source(sb.planhat.records("licenses"))[str(deal["id"])]["value"] == 222


def test_notes_none_reads_no_note_from_pipedrive(sb: Sandbox, tmp_path: Path) -> None:
    settings = write_settings(
        tmp_path / "s", sb, pipelines=["New business"], notes={"direction": "none"}
    )
    deal = _deal(sb, status="won", pipeline="New business")
    _reset_counters(sb)
    deal_sync(deal_id=deal["id"], settings_dir=str(settings))
    incremental_sync(full=True, settings_dir=str(settings))
    routes = sb.pipedrive.counters.snapshot()["routes"]
    assert not [k for k in routes if "/notes" in k]
    assert sb.planhat.records("conversations") == []
    assert sb.planhat.records("licenses")


def test_unselecting_a_pipeline_or_losing_a_deal_deletes_nothing(
    sb: Sandbox, tmp_path: Path
) -> None:
    both = write_settings(tmp_path / "both", sb, pipelines=["New business", "Renewals & upsell"])
    incremental_sync(full=True, settings_dir=str(both))
    before = {k: len(sb.planhat.records(k)) for k in ("companies", "licenses", "endusers")}
    assert before["licenses"] > 1
    renewal = _deal(sb, status="won", pipeline="Renewals & upsell")
    won = _deal(sb, status="won", pipeline="New business")
    one = write_settings(tmp_path / "both", sb, pipelines=["New business"])  # same store
    with pipedrive(sb) as pd:
        pd.patch(f"/api/v2/deals/{renewal['id']}", json={"value": 999}).raise_for_status()
        pd.patch(f"/api/v2/deals/{won['id']}", json={"status": "lost"}).raise_for_status()
    report = incremental_sync(settings_dir=str(one))
    after = {k: len(sb.planhat.records(k)) for k in ("companies", "licenses", "endusers")}
    assert after == before
    licenses = by_source(sb.planhat.records("licenses"))
    assert licenses[str(renewal["id"])]["value"] == renewal["value"]  # no longer updated
    assert str(won["id"]) in licenses  # a lost deal keeps its license
    kept = [r["count"] for r in report["reasons"] if "license is kept" in (r["reason"] or "")]
    assert sum(kept) >= 2


def test_empty_is_ignored_and_null_is_synced_end_to_end(sb: Sandbox, settings: str) -> None:
    deal = _deal(sb, status="won", pipeline="New business")
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    org_id = deal["org_id"]
    with pipedrive(sb) as pd:
        fields = pd.get("/api/v2/organizationFields", params={"limit": 500}).json()["data"]
        industry = next(f["field_code"] for f in fields if f["field_name"] == "Industry segment")
        options = next(f["options"] for f in fields if f["field_code"] == industry)
        pd.patch(
            f"/api/v2/organizations/{org_id}", json={"custom_fields": {industry: options[0]["id"]}}
        ).raise_for_status()
        deal_sync(deal_id=deal["id"], settings_dir=settings)
        company = by_source(sb.planhat.records("companies"))[str(org_id)]
        assert company["custom"]["Industry segment"] == options[0]["label"]
        # an explicit null at the source is written as null
        pd.patch(
            f"/api/v2/organizations/{org_id}", json={"custom_fields": {industry: None}}
        ).raise_for_status()
        deal_sync(deal_id=deal["id"], settings_dir=settings)
        company = by_source(sb.planhat.records("companies"))[str(org_id)]
        assert company["custom"]["Industry segment"] is None
        # an empty string never overwrites the other side
        pd.patch(f"/api/v2/organizations/{org_id}", json={"website": ""}).raise_for_status()
    before = by_source(sb.planhat.records("companies"))[str(org_id)].get("web")
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    assert by_source(sb.planhat.records("companies"))[str(org_id)].get("web") == before


def test_company_resync_brings_a_change_made_after_the_last_sync(
    sb: Sandbox, settings: str
) -> None:
    deal = _deal(sb, status="won", pipeline="New business")
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    company = by_source(sb.planhat.records("companies"))[str(deal["org_id"])]
    with pipedrive(sb) as pd:
        pd.patch(
            f"/api/v2/organizations/{deal['org_id']}", json={"name": "Renamed in Pipedrive"}
        ).raise_for_status()
    report = company_resync(company=company["_id"], settings_dir=settings)
    assert by_source(sb.planhat.records("companies"))[str(deal["org_id"])]["name"] == (
        "Renamed in Pipedrive"
    )
    assert report["counts"]["organization"].get("updated") == 1


def test_one_won_deal_notification_costs_at_most_6_pipedrive_and_4_planhat_calls(
    sb: Sandbox, settings: str
) -> None:
    deals = [
        d
        for d in sb.pipedrive_seed.deals
        if d["status"] == "won"
        and d["pipeline_id"] == pipeline_ids(sb)["New business"]
        and d["org_id"]
    ]
    deal_sync(deal_id=deals[0]["id"], settings_dir=settings)  # caches the account's lists
    _reset_counters(sb)
    deal_sync(deal_id=deals[1]["id"], settings_dir=settings)
    assert 1 <= sb.pipedrive.counters.total <= 6
    assert 1 <= sb.planhat.counters.total <= 4


@pytest.mark.slow
def test_demo_backfill_holds_exactly_the_expected_set_at_minimum_calls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with Sandbox("demo", burst=1_000_000) as sb:
        monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", sb.pipedrive_token)
        monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", sb.planhat_token)
        settings = write_settings(
            tmp_path / "s", sb, pipelines=["New business", "Renewals & upsell"]
        )
        report = incremental_sync(full=True, settings_dir=str(settings))

        seed = sb.pipedrive_seed
        selected = {pipeline_ids(sb)[n] for n in ("New business", "Renewals & upsell")}
        won = [d for d in seed.deals if d["status"] == "won" and d["pipeline_id"] in selected]
        licensed = [d for d in won if d["org_id"]]
        orgs = {d["org_id"] for d in licensed}
        persons = {p["id"]: p for p in seed.persons}
        users = {p["id"] for p in seed.persons if p["org_id"] in orgs and p["emails"]}
        users |= {
            d["person_id"] for d in licensed if d["person_id"] and persons[d["person_id"]]["emails"]
        }
        won_ids = {d["id"] for d in won}
        deal_org = {d["id"]: d["org_id"] for d in seed.deals if d["org_id"]}
        person_org = {p["id"]: p["org_id"] for p in seed.persons if p["org_id"] in orgs}
        for d in licensed:
            if d["person_id"] and d["person_id"] not in person_org:
                person_org[d["person_id"]] = d["org_id"]

        def company_of(note: dict[str, Any]) -> int | None:
            for org in (
                note["org_id"],
                deal_org.get(note["deal_id"]),
                person_org.get(note["person_id"]),
            ):
                if org in orgs:
                    return org
            return None

        notes = {
            n["id"]
            for n in seed.notes
            if (n["deal_id"] in won_ids or n["org_id"] in orgs) and company_of(n) is not None
        }

        assert set(by_source(sb.planhat.records("companies"))) == {str(o) for o in orgs}
        assert set(by_source(sb.planhat.records("licenses"))) == {str(d["id"]) for d in licensed}
        assert set(by_source(sb.planhat.records("endusers"))) == {str(u) for u in users}
        assert set(by_source(sb.planhat.records("conversations"))) == {str(n) for n in notes}

        # calls: Σ ceil(n/500) per listed section + the account's lists; Σ ceil(n/5000) upserts
        pages = sum(
            math.ceil(max(n, 1) / 500)
            for n in (len(seed.deals), len(seed.organizations), len(seed.persons), len(seed.notes))
        )
        account_lists = 5  # pipelines, 3 × *Fields, users
        minimum_pd = pages + account_lists
        minimum_ph = 4 + 1  # one upsert per model, Planhat users
        # organizations go both ways in these settings: the scan lists Planhat's companies
        assert load_settings(settings).integration.organizations.direction == "both"
        minimum_ph += math.ceil(len(orgs) / 5000)
        used = sb.pipedrive.counters.total + sb.planhat.counters.total
        assert used <= math.floor((minimum_pd + minimum_ph) * 1.05), (
            sb.pipedrive.counters.snapshot()["routes"],
            sb.planhat.counters.snapshot()["routes"],
        )
        assert report["problems"] >= 0


def test_a_notification_run_syncs_every_waiting_deal_notification_and_the_rest_waits(
    sb: Sandbox, settings: str
) -> None:
    from mappings.loading import load_settings
    from store import StateStore

    store = StateStore(load_settings(settings).store_url)
    first = _deal(sb, status="won", pipeline="New business")
    other = next(
        d
        for d in sb.pipedrive_seed.deals
        if d["status"] == "won" and d["id"] != first["id"] and d["org_id"]
    )
    for key, deal in (("e1", first), ("e2", other), ("e3", first)):  # e3: a later change
        store.inbox_add(
            f"pipedrive:v2:{key}", {"meta": {"entity_id": str(deal["id"])}}, deal_id=deal["id"]
        )
    store.inbox_add("pipedrive:v2:person", {"meta": {"entity": "person", "entity_id": "1"}})
    report = deal_sync(deal_id=first["id"], settings_dir=settings, inbox_key="pipedrive:v2:e1")
    assert sorted(report["deals"]) == sorted({first["id"], other["id"]})
    assert report["notifications"] == 3
    for key in ("e1", "e2", "e3"):
        assert store.inbox_get(f"pipedrive:v2:{key}").status == "done"
    assert store.inbox_get("pipedrive:v2:person").status == "pending"  # not a deal's
    again = deal_sync(deal_id=first["id"], settings_dir=settings, inbox_key="pipedrive:v2:e1")
    assert again["deals"] == []  # synced by the first run: nothing waits
    incremental_sync(settings_dir=settings)  # covers every change made before it started
    assert store.inbox_get("pipedrive:v2:person").status == "done"
