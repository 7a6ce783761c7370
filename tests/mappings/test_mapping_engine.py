"""What the engine makes of realistic records: the same Planhat record whichever shape the
Pipedrive record came in (v2 REST, v1 webhook, v2 webhook, legacy v1 REST), and what is skipped
and reported. Bodies from the reference (§7), the captured fixtures and the OpenAPI examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mappings_support import write_settings

from mappings.engine import (
    company_to_organization,
    conversation_to_note,
    deal_to_license,
    enduser_to_person,
    license_to_deal,
    normalize_v1_webhook_deal,
    normalize_webhook,
    note_to_conversation,
    organization_to_company,
    person_to_enduser,
    select_deals,
)
from mappings.resolve import Account, Mappings, compile_mappings
from mappings.settings import load_settings

FIXTURES = Path(__file__).resolve().parents[1] / "reference" / "fixtures"
TIER = "9f1c2e7d40aa51b36c8e0d2f4b7a19c3e5d60b21"
FEE = "5b0e8d1a27c94f36a1e2d7c80b59f4a3d6e1c702"
SINCE = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"
ROLE = "bead0000bead0000bead0000bead0000bead0000"

ACCOUNT = Account(
    pipelines=[{"id": 1, "name": "Sales"}, {"id": 3, "name": "Renewals"}],
    deal_fields=[
        {"field_code": "title", "field_name": "Title", "field_type": "varchar"},
        {"field_code": "value", "field_name": "Value", "field_type": "monetary"},
        {"field_code": "won_time", "field_name": "Won time", "field_type": "date"},
        {"field_code": TIER, "field_name": "Contract tier", "field_type": "enum",
         "is_custom_field": True,
         "options": [{"id": 217, "label": "Enterprise"}, {"id": 218, "label": "Growth"}]},
        {"field_code": FEE, "field_name": "Implementation fee", "field_type": "monetary",
         "is_custom_field": True},
    ],
    organization_fields=[
        {"field_code": "name", "field_name": "Name", "field_type": "varchar"},
        {"field_code": "industry", "field_name": "Industry", "field_type": "enum",
         "options": [{"id": 2, "label": "Software"}, {"id": 3, "label": "Retail"}]},
        {"field_code": SINCE, "field_name": "Customer since", "field_type": "date",
         "is_custom_field": True},
    ],
    person_fields=[
        {"field_code": "name", "field_name": "Name", "field_type": "varchar"},
        {"field_code": ROLE, "field_name": "Role in buying process", "field_type": "enum",
         "is_custom_field": True,
         "options": [{"id": 31, "label": "Champion"}, {"id": 32, "label": "Decision maker"}]},
    ],
    pipedrive_users=[
        {"id": 913004, "name": "Dana Reyes", "email": "dana@seller.example"},
        {"id": 1, "name": "User Name", "email": "user@email.com"},
    ],
    planhat_users=[
        {"_id": "64b7f0c2a1d3e9001f2c4a11", "email": "Dana@Seller.example"},
        {"_id": "64b7f0c2a1d3e9001f2c4a99", "email": "user@email.com"},
    ],
)  # fmt: skip

CUSTOM_MATCHES = """\
custom_matches:
  - {type: custom, planhat_object: license, planhat_field: Tier, pipedrive_field: Contract tier,
     direction: receive}
  - {type: custom, planhat_object: license, planhat_field: Implementation fee,
     pipedrive_field: Implementation fee, direction: receive}
  - {type: custom, planhat_object: company, planhat_field: Industry, pipedrive_field: Industry,
     direction: both}
  - {type: custom, planhat_object: company, planhat_field: Customer since,
     pipedrive_field: Customer since, direction: receive}
  - {type: custom, planhat_object: enduser, planhat_field: Role,
     pipedrive_field: Role in buying process, direction: both}
"""

INTEGRATION = """\
version: 1
connection:
  pipedrive: {company_url: https://acme.pipedrive.com, token_env: PIPEDRIVE_API_TOKEN}
  planhat: {token_env: PLANHAT_API_TOKEN}
organizations: {direction: both}
contacts: {direction: both}
deals: {direction: receive, pipelines: [Sales]}
notes: {direction: both, scope: [deal, organization]}
"""


@pytest.fixture(scope="module")
def mappings(tmp_path_factory: pytest.TempPathFactory) -> Mappings:
    d = write_settings(
        tmp_path_factory.mktemp("settings"), INTEGRATION, custom_matches_yaml=CUSTOM_MATCHES
    )
    return compile_mappings(load_settings(d), ACCOUNT)


COMPANIES = {352: "66a1c3f09b2e4d0012ab34cd", 1: "66a1c3f09b2e4d0012ab0001"}

# -- deals -------------------------------------------------------------------------------------

V1_REST_DEAL = {  # reference §7.1 (legacy v1 REST shape)
    "id": 4821, "title": "Acme Corp – annual licence",
    "creator_user_id": {"id": 913004, "name": "Dana Reyes", "email": "dana@seller.example",
                        "has_pic": False, "pic_hash": None, "active_flag": True, "value": 913004},
    "user_id": {"id": 913004, "name": "Dana Reyes", "email": "dana@seller.example",
                "has_pic": False, "pic_hash": None, "active_flag": True, "value": 913004},
    "person_id": {"active_flag": True, "name": "Lee Novak", "email": [{"label": "work",
                  "value": "lee@acme.example", "primary": True}], "owner_id": 913004,
                  "value": 7710},
    "org_id": {"name": "Acme Corp", "people_count": 3, "owner_id": 913004,
               "address": "1 Main St, Springfield", "active_flag": True,
               "cc_email": "acme@pipedrivemail.com", "value": 352},
    "pipeline_id": 1, "stage_id": 5, "value": 24000, "currency": "USD", "status": "won",
    "active": False, "deleted": False, "is_archived": False,
    "add_time": "2026-03-02 09:14:07", "update_time": "2026-06-18 15:40:22",
    "stage_change_time": "2026-06-18 15:40:22", "won_time": "2026-06-18 15:40:22",
    "first_won_time": "2026-06-18 15:40:22", "lost_time": None,
    "close_time": "2026-06-18 15:40:22", "expected_close_date": "2026-06-30",
    "lost_reason": None, "probability": None, "visible_to": "3", "label": "12",
    "person_name": "Lee Novak", "org_name": "Acme Corp", "owner_name": "Dana Reyes",
    "formatted_value": "$24,000",
    TIER: "217", FEE: 24000, f"{FEE}_currency": "USD",
}  # fmt: skip

V2_REST_DEAL = {  # the same deal from GET /api/v2/deals/4821 (reference §7.1, last paragraph)
    "id": 4821, "title": "Acme Corp – annual licence", "creator_user_id": 913004,
    "owner_id": 913004, "person_id": 7710, "org_id": 352, "pipeline_id": 1, "stage_id": 5,
    "value": 24000, "currency": "USD", "status": "won", "is_deleted": False,
    "is_archived": False, "add_time": "2026-03-02T09:14:07Z",
    "update_time": "2026-06-18T15:40:22Z", "stage_change_time": "2026-06-18T15:40:22Z",
    "won_time": "2026-06-18T15:40:22Z", "first_won_time": "2026-06-18T15:40:22Z",
    "lost_time": None, "close_time": "2026-06-18T15:40:22Z",
    "expected_close_date": "2026-06-30", "lost_reason": None, "probability": None,
    "visible_to": 3, "label_ids": [12],
    "custom_fields": {TIER: 217, FEE: {"value": 24000, "currency": "USD"}},
}  # fmt: skip

V1_WEBHOOK = {  # reference §7.2
    "v": 1, "matches_filters": {"current": [], "previous": []},
    "meta": {"v": 1, "action": "updated", "object": "deal", "id": 4821, "company_id": 5501234,
             "user_id": 913004, "host": "acme-sales.pipedrive.com", "timestamp": 1781797222,
             "timestamp_micro": 1781797222318440, "permitted_user_ids": [913004, 913120],
             "trans_pending": False, "is_bulk_update": False, "pipedrive_service_name": False,
             "change_source": "app", "matches_filters": {"current": [], "previous": []},
             "webhook_id": "204117"},
    "current": {"id": 4821, "title": "Acme Corp – annual licence", "status": "won",
                "user_id": 913004, "creator_user_id": 913004, "person_id": 7710, "org_id": 352,
                "owner_name": "Dana Reyes", "person_name": "Lee Novak", "org_name": "Acme Corp",
                "pipeline_id": 1, "stage_id": 5, "value": 24000, "currency": "USD",
                "won_time": "2026-06-18 15:40:22", "close_time": "2026-06-18 15:40:22",
                "lost_time": None, "update_time": "2026-06-18 15:40:22",
                "add_time": "2026-03-02 09:14:07", "visible_to": "3", "deleted": False,
                "active": False, "is_archived": False, TIER: "217"},
    "previous": {"id": 4821, "title": "Acme Corp – annual licence", "status": "open",
                 "user_id": 913004, "creator_user_id": 913004, "person_id": 7710, "org_id": 352,
                 "pipeline_id": 1, "stage_id": 5, "value": 24000, "currency": "USD",
                 "won_time": None, "close_time": None, "lost_time": None,
                 "update_time": "2026-06-17 11:02:09", "add_time": "2026-03-02 09:14:07",
                 "visible_to": "3", "deleted": False, "active": True, "is_archived": False,
                 TIER: "217"},
    "retry": 0, "event": "updated.deal",
}  # fmt: skip

V2_WEBHOOK = {  # reference §7.3
    "meta": {"action": "change", "entity": "deal", "entity_id": "4821",
             "id": "3f0b6a52-8c1d-4e7a-9b2f-6d5e4c3b2a19",
             "correlation_id": "a7d2c9e1-5b3f-4a60-8e14-2f9c7b1d0e53", "company_id": "5501234",
             "user_id": "913004", "webhook_id": "204118", "webhook_owner_id": "913004",
             "version": "2.0", "type": "general", "is_bulk_edit": False,
             "timestamp": "2026-06-18T15:40:22.318Z", "change_source": "app", "attempt": 1,
             "host": "acme-sales.pipedrive.com", "permitted_user_ids": ["913004", "913120"]},
    "data": {"id": 4821, "title": "Acme Corp – annual licence", "status": "won",
             "owner_id": 913004, "creator_user_id": 913004, "person_id": 7710, "org_id": 352,
             "pipeline_id": 1, "stage_id": 5, "value": 24000, "currency": "USD",
             "add_time": "2026-03-02T09:14:07Z", "update_time": "2026-06-18T15:40:22Z",
             "stage_change_time": "2026-06-18T15:40:22Z", "won_time": "2026-06-18T15:40:22Z",
             "close_time": "2026-06-18T15:40:22Z", "lost_time": None,
             "first_won_time": "2026-06-18T15:40:22Z", "expected_close_date": "2026-06-30",
             "lost_reason": None, "probability": None, "visible_to": "3", "label_ids": [12],
             "origin": "ManuallyCreated", "origin_id": None, "channel": None,
             "channel_id": None, "is_archived": False, "archive_time": None,
             "custom_fields": {TIER: 217}},
    "previous": {"status": "open", "won_time": None, "close_time": None,
                 "first_won_time": None},
}  # fmt: skip

LICENSE = {
    "sourceId": "4821",
    "externalId": "4821",
    "companyId": "66a1c3f09b2e4d0012ab34cd",
    "value": 24000,
    "_currency": "USD",
    "product": "Acme Corp – annual licence",
    "fromDate": "2026-06-18T00:00:00.000Z",
    "toDate": "2027-06-18T00:00:00.000Z",
    "fixedPeriod": True,
    "custom": {"Tier": "Enterprise", "Implementation fee": 24000},
}
# The webhooks carry no Implementation fee: absent, so the license's fee is left as it is.
LICENSE_NO_FEE = {**LICENSE, "custom": {"Tier": "Enterprise"}}


def _v1_rest(mappings: Mappings) -> dict[str, Any]:
    return normalize_v1_webhook_deal(V1_REST_DEAL, mappings.catalogs["deal"])


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("v2 REST", LICENSE),
        ("legacy v1 REST", LICENSE),
        ("v1 webhook", LICENSE_NO_FEE),
        ("v2 webhook", LICENSE_NO_FEE),
    ],
)
def test_a_won_deal_becomes_the_same_license_from_every_shape(
    mappings: Mappings, shape: str, expected: dict[str, Any]
) -> None:
    deal = {
        "v2 REST": lambda: V2_REST_DEAL,
        "legacy v1 REST": lambda: _v1_rest(mappings),
        "v1 webhook": lambda: normalize_webhook(V1_WEBHOOK, mappings).current,
        "v2 webhook": lambda: normalize_webhook(V2_WEBHOOK, mappings).current,
    }[shape]()
    batch = deal_to_license([deal], mappings, company_ids=COMPANIES)
    assert batch.records == [expected]
    assert batch.issues == []


def test_a_v1_webhook_deal_is_normalised_to_the_v2_shape(mappings: Mappings) -> None:
    v1 = normalize_webhook(V1_WEBHOOK, mappings).current
    v2 = normalize_webhook(V2_WEBHOOK, mappings).current
    assert v1 is not None and v2 is not None
    shared = ("id", "title", "status", "owner_id", "person_id", "org_id", "pipeline_id",
              "stage_id", "value", "currency", "add_time", "update_time", "won_time",
              "close_time", "lost_time", "visible_to", "is_archived", "custom_fields")  # fmt: skip
    for key in shared:
        assert v1[key] == v2[key], key
    assert v1["is_deleted"] is False
    assert not {"user_id", "owner_name", "org_name", "active", "deleted"} & set(v1)
    legacy = _v1_rest(mappings)
    assert legacy["owner_id"] == 913004 and legacy["person_id"] == 7710
    assert legacy["org_id"] == 352 and legacy["label_ids"] == [12]
    assert legacy["custom_fields"] == V2_REST_DEAL["custom_fields"]
    assert "formatted_value" not in legacy


def test_webhook_events_of_both_versions(mappings: Mappings) -> None:
    v1 = normalize_webhook(V1_WEBHOOK, mappings)
    assert (v1.version, v1.entity, v1.action, v1.entity_id) == (1, "deal", "change", 4821)
    assert v1.event_id == "v1:deal:4821:1781797222318440"
    assert v1.previous is not None and v1.previous["status"] == "open"
    v2 = normalize_webhook(V2_WEBHOOK, mappings)
    assert (v2.version, v2.entity, v2.action, v2.entity_id) == (2, "deal", "change", 4821)
    assert v2.event_id == "3f0b6a52-8c1d-4e7a-9b2f-6d5e4c3b2a19"
    assert v2.current is not None and v2.current["visible_to"] == 3  # "3" in the webhook
    assert v2.previous == {"status": "open", "won_time": None, "close_time": None,
                           "first_won_time": None}  # fmt: skip
    assert (
        v2.timestamp is not None and v2.timestamp.isoformat() == "2026-06-18T15:40:22.318000+00:00"
    )


def test_the_captured_webhook_fixtures() -> None:
    deal_body = json.loads((FIXTURES / "webhook-v1-updated-deal.json").read_text())
    event = normalize_webhook(deal_body)
    assert (event.version, event.entity, event.action, event.change_source) == (
        1, "deal", "change", "api",
    )  # fmt: skip
    current = event.current
    assert current is not None
    assert current["update_time"] == "2025-02-17T21:22:41Z"
    assert current["org_id"] is None and current["person_id"] is None
    assert current["label_ids"] == [] and current["visible_to"] == 3
    assert current["owner_id"] == 1234567890 and current["custom_fields"] == {}
    lead_body = json.loads((FIXTURES / "webhook-v2-change-lead.json").read_text())
    lead = normalize_webhook(lead_body)
    assert (lead.version, lead.entity, lead.action) == (2, "lead", "change")
    assert lead.entity_id == "123456789-1234-1234-1234-123456789012"  # a UUID stays text
    assert lead.previous == {"update_time": "2025-06-19T16:07:30.029Z", "value": None}


def test_a_deal_the_license_cannot_come_from_is_skipped_with_the_reason(
    mappings: Mappings,
) -> None:
    no_org = {**V2_REST_DEAL, "id": 4822, "org_id": None}
    unknown_org = {**V2_REST_DEAL, "id": 4823, "org_id": 999}
    not_won = {**V2_REST_DEAL, "id": 4824, "won_time": None}
    batch = deal_to_license([no_org, unknown_org, not_won], mappings, company_ids=COMPANIES)
    assert batch.records == []
    assert [(i.record_id, i.message) for i in batch.skipped] == [
        (4822, "deal 4822 has no organization, so no Planhat company: a license needs a company"),
        (4823, "deal 4823: organization 999 is not a Planhat company (yet): a license needs a "
               "company"),
        (4824, "deal 4824 has no won_time and no won_time: a license needs a start date"),
    ]  # fmt: skip


def test_only_won_deals_of_selected_pipelines_are_selected(mappings: Mappings) -> None:
    deals = [
        V2_REST_DEAL,
        {**V2_REST_DEAL, "id": 2, "status": "open"},
        {**V2_REST_DEAL, "id": 3, "pipeline_id": 3},
        {**V2_REST_DEAL, "id": 4, "is_deleted": True},
    ]
    selected, skipped = select_deals(deals, mappings)
    assert [d["id"] for d in selected] == [4821]
    assert [i.message for i in skipped] == [
        "deal 2 is open, not won",
        "deal 3 is in pipeline 'Renewals', which is not selected",
        "deal 4 is deleted in Pipedrive",
    ]


def test_product_template_and_start_date(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        INTEGRATION
        + 'license:\n  product: "{{{Contract tier}}} {title} ({pipeline})"\n'
        + "  start_date: expected_close_date\n  length_months: 24\n",
        custom_matches_yaml=CUSTOM_MATCHES,
    )
    mappings = compile_mappings(load_settings(d), ACCOUNT)
    without_date = {**V2_REST_DEAL, "id": 9, "expected_close_date": None}
    batch = deal_to_license([V2_REST_DEAL, without_date], mappings, company_ids=COMPANIES)
    first, second = batch.records
    assert first["product"] == "{Enterprise} Acme Corp – annual licence (Sales)"
    assert (first["fromDate"], first["toDate"]) == (
        "2026-06-30T00:00:00.000Z", "2028-06-30T00:00:00.000Z",
    )  # fmt: skip
    assert second["fromDate"] == "2026-06-18T00:00:00.000Z"  # falls back to won_time


def test_a_dataframe_maps_like_a_list(mappings: Mappings) -> None:
    deals = [V2_REST_DEAL, {**V2_REST_DEAL, "id": 4830, "value": None, "custom_fields": None}]
    from_list = deal_to_license(deals, mappings, company_ids=COMPANIES)
    from_frame = deal_to_license(pd.DataFrame(deals), mappings, company_ids=COMPANIES)
    assert from_frame.records == from_list.records
    assert [i.message for i in from_frame.issues] == [i.message for i in from_list.issues]
    assert from_list.skipped[0].message == (
        "deal 4830 cannot become a Planhat license: it has no value (from Value)"
    )


# -- organizations -----------------------------------------------------------------------------

V2_ORG = {  # OpenAPI v2 GET /organizations/{id} example
    "id": 1, "name": "Organization Name", "owner_id": 1, "org_id": 1,
    "add_time": "2021-01-01T00:00:00Z", "update_time": "2021-01-01T00:00:00Z",
    "address": {"value": "123 Main St", "country": "USA", "admin_area_level_1": "CA",
                "admin_area_level_2": "Santa Clara", "locality": "Sunnyvale",
                "sublocality": "Downtown", "route": "Main St", "street_number": "123",
                "subpremise": "123A", "postal_code": "94085"},
    "is_deleted": False, "visible_to": 7, "label_ids": [1, 2, 3],
    "website": "https://www.company.com", "linkedin": "https://linkedin.com/company",
    "industry": 2, "annual_revenue": 0, "employee_count": 10,
    "custom_fields": {SINCE: "2019-04-01"},
}  # fmt: skip

V1_WEBHOOK_ORG = {  # the same organization as a v1 webhook carries it (`current`)
    "id": 1, "company_id": 5501234, "owner_id": 1, "owner_name": "User Name",
    "name": "Organization Name", "address": "123 Main St", "address_subpremise": "123A",
    "address_street_number": "123", "address_route": "Main St",
    "address_sublocality": "Downtown", "address_locality": "Sunnyvale",
    "address_admin_area_level_1": "CA", "address_admin_area_level_2": "Santa Clara",
    "address_country": "USA", "address_postal_code": "94085",
    "address_formatted_address": "123 Main St", "add_time": "2021-01-01 00:00:00",
    "update_time": "2021-01-01 00:00:00", "visible_to": "7", "active_flag": True,
    "label": 1, "label_ids": [1, 2, 3], "website": "https://www.company.com",
    "industry": "2", "people_count": 3, "cc_email": "sandbox@pipedrivemail.com",
    SINCE: "2019-04-01",
}  # fmt: skip

COMPANY = {
    "sourceId": "1",
    "name": "Organization Name",
    "owner": "64b7f0c2a1d3e9001f2c4a99",
    "address": "123 Main St",
    "country": "USA",
    "city": "Sunnyvale",
    "zip": "94085",
    "web": "https://www.company.com",
    "custom": {"Industry": "Software", "Customer since": "2019-04-01T00:00:00.000Z"},
}


@pytest.mark.parametrize("shape", ["v2 REST", "v1 webhook"])
def test_an_organization_becomes_a_company_keyed_by_its_id(mappings: Mappings, shape: str) -> None:
    body = (
        V2_ORG
        if shape == "v2 REST"
        else normalize_webhook(
            {"meta": {"object": "organization", "action": "added", "id": 1},
             "current": V1_WEBHOOK_ORG, "previous": None},
            mappings,
        ).current
    )  # fmt: skip
    batch = organization_to_company([body], mappings)
    assert batch.records == [COMPANY]
    assert batch.ids == [1]
    assert batch.values[0]["custom.Industry"] == "Software"


def test_a_company_without_a_name_is_skipped(mappings: Mappings) -> None:
    batch = organization_to_company([{"id": 5, "name": None}], mappings)
    assert batch.records == []
    assert batch.skipped[0].message == (
        "organization 5 cannot become a Planhat company: it has no name (from Name)"
    )


# -- persons -----------------------------------------------------------------------------------

V2_PERSON = {  # OpenAPI v2 GET /persons/{id} example (Contact Sync fields included)
    "id": 1, "name": "Person Name", "first_name": "Person", "last_name": "Name",
    "owner_id": 1, "org_id": 1, "add_time": "2021-01-01T00:00:00Z",
    "update_time": "2021-01-01T00:00:00Z",
    "emails": [{"value": "email1@email.com", "primary": True, "label": "work"},
               {"value": "email2@email.com", "primary": False, "label": "home"}],
    "phones": [{"value": "12345", "primary": True, "label": "work"},
               {"value": "54321", "primary": False, "label": "home"}],
    "is_deleted": False, "visible_to": 7, "label_ids": [1, 2, 3], "picture_id": 1,
    "custom_fields": {ROLE: 31}, "notes": "Notes from contact sync",
    "birthday": "2000-12-31", "job_title": "Manager",
}  # fmt: skip

V1_WEBHOOK_PERSON = {  # the same person in a v1 webhook (`current`, PD-CAP shape)
    "id": 1, "company_id": 5501234, "owner_id": 1, "owner_name": "User Name", "org_id": 1,
    "org_name": "Organization Name", "name": "Person Name", "first_name": "Person",
    "last_name": "Name",
    "email": [{"label": "work", "value": "email1@email.com", "primary": True},
              {"label": "home", "value": "email2@email.com", "primary": False}],
    "phone": [{"label": "work", "value": "12345", "primary": True},
              {"label": "home", "value": "54321", "primary": False}],
    "primary_email": "email1@email.com", "add_time": "2021-01-01 00:00:00",
    "update_time": "2021-01-01 00:00:00", "visible_to": "7", "active_flag": True,
    "label": 1, "label_ids": [1, 2, 3], "job_title": "Manager", ROLE: "31",
}  # fmt: skip

ENDUSER = {
    "sourceId": "1",
    "companyId": "66a1c3f09b2e4d0012ab0001",
    "email": "email1@email.com",
    "firstName": "Person",
    "lastName": "Name",
    "phone": "12345",
    "position": "Manager",
    "custom": {"Role": "Champion"},
}


@pytest.mark.parametrize("shape", ["v2 REST", "v1 webhook"])
def test_a_person_becomes_an_end_user_of_its_company(mappings: Mappings, shape: str) -> None:
    body = (
        V2_PERSON
        if shape == "v2 REST"
        else normalize_webhook(
            {"meta": {"object": "person", "action": "updated", "id": 1},
             "current": V1_WEBHOOK_PERSON, "previous": V1_WEBHOOK_PERSON},
            mappings,
        ).current
    )  # fmt: skip
    batch = person_to_enduser([body], mappings, company_ids=COMPANIES)
    assert batch.records == [ENDUSER]


def test_a_person_planhat_would_drop_is_skipped_and_reported(mappings: Mappings) -> None:
    v1_without_email = {**V1_WEBHOOK_PERSON, "id": 2, "email": [{"value": "", "primary": True}]}
    no_email = normalize_webhook(
        {"meta": {"object": "person", "action": "added", "id": 2}, "current": v1_without_email},
        mappings,
    ).current
    no_org = {**V2_PERSON, "id": 3, "org_id": None}
    batch = person_to_enduser([no_email, no_org], mappings, company_ids=COMPANIES)
    assert batch.records == []
    assert [i.message for i in batch.skipped] == [
        "person 2 cannot become a Planhat end user: it has no email (from emails)",
        "person 3 has no organization, so no Planhat company",
    ]


# -- notes -------------------------------------------------------------------------------------

V1_NOTE = {  # OpenAPI v1 GET /notes/{id} example
    "id": 1, "active_flag": True, "add_time": "2019-12-09 13:59:21", "content": "abc",
    "deal": {"title": "Deal title"}, "lead_id": "adf21080-0e10-11eb-879b-05d71fb426ec",
    "deal_id": 1, "last_update_user_id": 1, "org_id": 1,
    "organization": {"name": "Organization name"}, "person": {"name": "Person name"},
    "person_id": 1, "project_id": 1, "project": {"title": "Project name"},
    "pinned_to_lead_flag": False, "pinned_to_deal_flag": True,
    "pinned_to_organization_flag": False, "pinned_to_person_flag": False,
    "pinned_to_project_flag": False, "update_time": "2019-12-09 14:26:11",
    "user": {"email": "user@email.com", "icon_url": "https://iconurl.net/profile_120x120_123.jpg",
             "is_you": True, "name": "User Name"},
    "user_id": 1,
}  # fmt: skip

V2_WEBHOOK_NOTE = {  # the same note in a v2 webhook (as the sandbox sends it; [U] upstream)
    "meta": {"action": "create", "entity": "note", "entity_id": "1", "id": "e-1",
             "version": "2.0", "change_source": "app"},
    "data": {"id": 1, "content": "abc", "user_id": 1, "deal_id": 1, "person_id": 1,
             "org_id": 1, "lead_id": None, "project_id": 1,
             "add_time": "2019-12-09T13:59:21Z", "update_time": "2019-12-09T14:26:11Z",
             "is_deleted": False, "last_update_user_id": 1, "pinned_to_deal_flag": True},
    "previous": None,
}  # fmt: skip

NOTE = {
    "sourceId": "1",
    "externalId": "1",
    "type": "note",
    "companyId": "66a1c3f09b2e4d0012ab0001",
    "subject": "abc",
    "description": "abc",
    "date": "2019-12-09T13:59:21.000Z",
}


@pytest.mark.parametrize("shape", ["v1 REST", "v2 webhook"])
def test_a_note_becomes_a_planhat_note(mappings: Mappings, shape: str) -> None:
    body = V1_NOTE if shape == "v1 REST" else normalize_webhook(V2_WEBHOOK_NOTE, mappings).current
    batch = note_to_conversation([body], mappings, company_ids=COMPANIES)
    assert batch.records == [NOTE]


def test_a_notes_company_comes_from_its_deal_or_person_and_scope_is_kept(
    mappings: Mappings,
) -> None:
    on_deal = {**V1_NOTE, "id": 2, "org_id": None, "deal_id": 77}
    on_person = {**V1_NOTE, "id": 3, "org_id": None, "deal_id": None, "person_id": 88}
    batch = note_to_conversation(
        [on_deal, on_person],
        mappings,
        company_ids=COMPANIES,
        deal_orgs={77: 352},
        person_orgs={88: 1},
    )
    assert [r["companyId"] for r in batch.records] == ["66a1c3f09b2e4d0012ab34cd"]
    assert [i.message for i in batch.skipped] == [
        "note 3 is outside notes.scope (deal, organization)"
    ]


# -- send: Planhat → Pipedrive -----------------------------------------------------------------


def test_a_company_goes_back_with_only_its_sendable_changed_fields(mappings: Mappings) -> None:
    company = {
        "_id": "66a1c3f09b2e4d0012ab0001", "sourceId": "1", "name": "Organization Name Ltd",
        "owner": "64b7f0c2a1d3e9001f2c4a99", "address": "123 Main St", "country": "Germany",
        "web": "https://www.company.com", "mrr": 1500,
        "custom": {"Industry": "Retail", "Customer since": "2020-01-01T00:00:00.000Z"},
    }  # fmt: skip
    batch = company_to_organization([company], mappings, current={1: V2_ORG})
    # country is receive-only (an address part), Customer since is receive-only: not sent.
    # Industry is a system field of organizations: its option id goes in the body's root.
    assert batch.records == [{"id": 1, "name": "Organization Name Ltd", "industry": 3}]
    assert batch.values == [{"name": "Organization Name Ltd", "custom.Industry": "Retail"}]


def test_a_new_company_becomes_a_new_organization(mappings: Mappings) -> None:
    company = {"_id": "abc", "name": "Brand New GmbH", "web": "https://brand.example"}
    batch = company_to_organization([company], mappings)
    assert batch.records == [{"name": "Brand New GmbH", "website": "https://brand.example"}]
    assert batch.ids == ["abc"]


def test_a_new_end_user_becomes_a_person_in_its_companys_organization(mappings: Mappings) -> None:
    user = {
        "_id": "u1", "companyId": "66a1c3f09b2e4d0012ab34cd", "email": "kim@acme.example",
        "firstName": "Kim", "lastName": "Lee", "phone": None, "custom": {"Role": "Decision maker"},
    }  # fmt: skip
    batch = enduser_to_person([user], mappings, org_ids={"66a1c3f09b2e4d0012ab34cd": 352})
    assert batch.records == [
        {
            "emails": [{"value": "kim@acme.example", "primary": True, "label": "work"}],
            "first_name": "Kim",
            "last_name": "Lee",
            "phones": None,
            "custom_fields": {ROLE: 32},
            "name": "Kim Lee",
            "org_id": 352,
        }
    ]


def test_receive_only_sections_send_nothing(mappings: Mappings) -> None:
    lic = {"_id": "l1", "sourceId": "4821", "value": 1, "custom": {"Tier": "Growth"}}
    assert license_to_deal([lic], mappings).records == []


def test_a_planhat_note_goes_back_as_a_pipedrive_note(mappings: Mappings) -> None:
    notes = [
        {"_id": "n1", "type": "note", "sourceId": "1", "description": "<p>abc, edited</p>"},
        {"_id": "n2", "type": "note", "companyId": "c-352", "description": "<p>New</p>"},
        {"_id": "n3", "type": "call", "companyId": "c-352", "description": "<p>Call</p>"},
    ]
    batch = conversation_to_note(
        notes, mappings, org_ids={"c-352": 352}, current={1: copy.deepcopy(V1_NOTE)}
    )
    assert batch.records == [
        {"id": 1, "content": "<p>abc, edited</p>"},
        {"content": "<p>New</p>", "org_id": 352},
    ]


def test_a_section_set_to_none_maps_nothing_and_dependents_are_warned(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        INTEGRATION.replace(
            "organizations: {direction: both}", "organizations: {direction: none}"
        ).replace("contacts: {direction: both}", "contacts: {direction: none}"),
    )
    mappings = compile_mappings(load_settings(d), ACCOUNT)
    assert not mappings.receives("contacts") and not mappings.sends("contacts")
    assert person_to_enduser([V2_PERSON], mappings, company_ids=COMPANIES).records == []
    assert organization_to_company([V2_ORG], mappings).records == []
    assert mappings.rules["company"] == () and mappings.rules["enduser"] == ()
    assert [str(p) for p in mappings.problems] == [
        f"{d}/integration.yaml:5:28: organizations are not received (none), but deals, notes "
        "are: their records reach Planhat only when the organization's company is already there"
    ]
    # Deals still become licenses of companies Planhat already has.
    assert len(deal_to_license([V2_REST_DEAL], mappings, company_ids=COMPANIES)) == 1
