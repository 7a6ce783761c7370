"""What the mappings (`mappings.receive`, `mappings.send`) make of realistic records: the same
Planhat record whether the Pipedrive record came from REST or a v2 webhook's `data`, and what is
skipped and reported. Bodies from the reference (§7) and the OpenAPI examples."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from mappings_support import write_settings

from mappings.loading import load_settings
from mappings.merge import pipedrive_patch
from mappings.receive import (
    deal_to_license,
    note_to_conversation,
    organization_to_company,
    person_to_enduser,
)
from mappings.resolve import Account, Mappings, compile_mappings
from mappings.send import (
    company_to_organization,
    conversation_to_note,
    enduser_to_person,
)

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


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("v2 REST", LICENSE),
        ("v2 webhook", LICENSE_NO_FEE),
    ],
)
def test_a_won_deal_becomes_the_same_license_from_both_v2_shapes(
    mappings: Mappings, shape: str, expected: dict[str, Any]
) -> None:
    deal = {"v2 REST": V2_REST_DEAL, "v2 webhook": V2_WEBHOOK["data"]}[shape]
    batch = deal_to_license([deal], mappings, company_ids=COMPANIES)
    assert batch.records == [expected]
    assert batch.issues == []


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


def test_a_deal_without_a_value_is_skipped_with_why(mappings: Mappings) -> None:
    deals = [V2_REST_DEAL, {**V2_REST_DEAL, "id": 4830, "value": None, "custom_fields": None}]
    from_list = deal_to_license(deals, mappings, company_ids=COMPANIES)
    assert len(from_list.records) == 1
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


def test_an_organization_becomes_a_company_keyed_by_its_id(mappings: Mappings) -> None:
    batch = organization_to_company([V2_ORG], mappings)
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


def test_a_person_becomes_an_end_user_of_its_company(mappings: Mappings) -> None:
    batch = person_to_enduser([V2_PERSON], mappings, company_ids=COMPANIES)
    assert batch.records == [ENDUSER]


def test_a_person_planhat_would_drop_is_skipped_and_reported(mappings: Mappings) -> None:
    no_email = {**V2_PERSON, "id": 2, "emails": []}
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
    body = V1_NOTE if shape == "v1 REST" else V2_WEBHOOK_NOTE["data"]
    batch = note_to_conversation([body], mappings, company_ids=COMPANIES)
    assert batch.records == [NOTE]


def test_a_notes_company_comes_from_its_deal_or_person(mappings: Mappings) -> None:
    on_deal = {**V1_NOTE, "id": 2, "org_id": None, "deal_id": 77}
    on_person = {**V1_NOTE, "id": 3, "org_id": None, "deal_id": None, "person_id": 88}
    nowhere = {**V1_NOTE, "id": 4, "org_id": None, "deal_id": 78, "person_id": None}
    batch = note_to_conversation(
        [on_deal, on_person, nowhere],
        mappings,
        company_ids=COMPANIES,
        deal_orgs={77: 352},
        person_orgs={88: 1},
    )
    assert [r["companyId"] for r in batch.records] == [
        "66a1c3f09b2e4d0012ab34cd",
        "66a1c3f09b2e4d0012ab0001",
    ]
    assert [i.message for i in batch.skipped] == [
        "note 4 has no organization, so no Planhat company"
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


def test_receive_only_fields_send_nothing(mappings: Mappings) -> None:
    values = {"value": 1, "custom.Tier": "Growth"}  # license fields mapped receive only
    assert pipedrive_patch("license", values, mappings) == {}


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
    assert [str(p) for p in mappings.problems if "not implemented" not in str(p)] == [
        f"{d}/integration.yaml:5:28: organizations are not received (none), but deals, notes "
        "are: their records reach Planhat only when the organization's company is already there"
    ]
    # Deals still become licenses of companies Planhat already has.
    assert len(deal_to_license([V2_REST_DEAL], mappings, company_ids=COMPANIES)) == 1


def test_sending_sections_compile_their_send_rules_without_a_warning(tmp_path: Path) -> None:
    d = write_settings(tmp_path, INTEGRATION)  # organizations, contacts, deals, notes: both
    mappings = compile_mappings(load_settings(d), ACCOUNT)
    assert [str(p) for p in mappings.problems if "not implemented" in str(p)] == []
    for obj in ("company", "enduser", "note"):
        assert mappings.send_rules(obj), obj
