"""The sandbox's generated data: deterministic, in the real APIs' shapes, realistically awkward."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.data import REFERENCE_TIME, SIZES, generate, scaled_counts, summary
from sandbox.dataset import PipedriveSeed, PlanhatSeed

HASH40 = re.compile(r"^[0-9a-f]{40}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
V1_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# The keys of a v2 deal / organization / person / pipeline / stage (SPEC2 `GET` item schemas).
DEAL_KEYS = {
    "id", "title", "creator_user_id", "owner_id", "person_id", "org_id", "pipeline_id",
    "stage_id", "value", "currency", "add_time", "update_time", "stage_change_time",
    "is_deleted", "is_archived", "archive_time", "status", "probability", "lost_reason",
    "visible_to", "close_time", "won_time", "lost_time", "expected_close_date", "label_ids",
    "origin", "origin_id", "channel", "channel_id", "source_lead_id", "arr", "mrr", "acv",
    "custom_fields",
}  # fmt: skip
ORG_KEYS = {
    "id", "name", "owner_id", "add_time", "update_time", "is_deleted", "visible_to", "address",
    "label_ids", "website", "linkedin", "industry", "annual_revenue", "employee_count",
    "custom_fields",
}  # fmt: skip
PERSON_KEYS = {
    "id", "name", "first_name", "last_name", "owner_id", "org_id", "add_time", "update_time",
    "emails", "phones", "is_deleted", "visible_to", "label_ids", "picture_id", "custom_fields",
}  # fmt: skip
PIPELINE_KEYS = {
    "id", "name", "order_nr", "is_deleted", "is_deal_probability_enabled", "add_time",
    "update_time",
}  # fmt: skip
STAGE_KEYS = {
    "id", "order_nr", "name", "is_deleted", "deal_probability", "pipeline_id",
    "is_deal_rot_enabled", "days_to_rotten", "add_time", "update_time",
}  # fmt: skip
FIELD_KEYS = {
    "field_code", "field_name", "field_type", "is_custom_field", "is_optional_response_field",
    "options", "subfields", "description",
}  # fmt: skip
# v1 note (without the embedded objects the API adds) and v1 user.
NOTE_KEYS = {
    "id", "user_id", "deal_id", "person_id", "org_id", "lead_id", "project_id", "task_id",
    "content", "add_time", "update_time", "active_flag", "pinned_to_deal_flag",
    "pinned_to_organization_flag", "pinned_to_person_flag", "pinned_to_lead_flag",
    "pinned_to_project_flag", "pinned_to_task_flag", "last_update_user_id",
}  # fmt: skip
USER_KEYS = {
    "id", "name", "default_currency", "locale", "lang", "email", "phone", "activated",
    "last_login", "created", "modified", "has_created_company", "access", "active_flag",
    "timezone_name", "timezone_offset", "role_id", "icon_url", "is_you", "is_deleted",
    "is_admin",
}  # fmt: skip
CUSTOM_TYPES = {
    "varchar", "text", "double", "monetary", "enum", "set", "date", "phone", "address", "user",
    "org",
}  # fmt: skip
ADDRESS_KEYS = {
    "value", "country", "admin_area_level_1", "admin_area_level_2", "locality", "sublocality",
    "route", "street_number", "subpremise", "postal_code",
}  # fmt: skip

ENTITIES = (
    ("deals", "deal_fields"),
    ("organizations", "organization_fields"),
    ("persons", "person_fields"),
)

# sha256 of `small` with seed 7 (see `fingerprint`). The data set is a contract: tests and demos
# of the whole project rely on it, so changing it must be deliberate. When you change the
# generator on purpose, update this value.
SMALL_SEED7_FINGERPRINT = "e1b52a910c1844654201a4e8fab5ac8d33a4d184b9838a51b4836905d1347fda"


@pytest.fixture(scope="module")
def small() -> tuple[PipedriveSeed, PlanhatSeed]:
    return generate("small", 7)


@pytest.fixture(scope="module")
def demo() -> tuple[PipedriveSeed, PlanhatSeed]:
    return generate("demo", 7)


@pytest.fixture(scope="module")
def large() -> tuple[PipedriveSeed, PlanhatSeed]:
    return generate("large", 7)


def fingerprint(pd: PipedriveSeed, ph: PlanhatSeed) -> str:
    payload = json.dumps(
        [dataclasses.asdict(pd), dataclasses.asdict(ph)], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def parse_v1(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def custom_fields(fields: list[dict]) -> list[dict]:
    return [f for f in fields if f["is_custom_field"]]


# ---- interface and determinism ---------------------------------------------------------------


def test_sizes_are_the_documented_ones() -> None:
    assert SIZES == ("small", "demo", "large")


def test_unknown_size_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="small, demo, large"):
        generate("huge")


def test_same_size_and_seed_give_identical_data(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    again = generate("small", 7)
    assert again == small
    assert fingerprint(*again) == fingerprint(*small)


def test_demo_is_deterministic_too(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    assert generate("demo", 7) == demo


def test_another_seed_gives_other_data(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd, _ = small
    other, _ = generate("small", 8)
    assert [d["title"] for d in other.deals] != [d["title"] for d in pd.deals]
    # Custom field codes differ per account, like real Pipedrive companies.
    codes = {f["field_code"] for f in custom_fields(pd.deal_fields)}
    assert codes.isdisjoint(f["field_code"] for f in custom_fields(other.deal_fields))


def test_data_does_not_depend_on_the_clock_or_the_process(
    small: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    """The same (size, seed) gives the same bytes on every machine and run."""
    assert fingerprint(*small) == SMALL_SEED7_FINGERPRINT, (
        "generate('small', 7) changed; if deliberate, update SMALL_SEED7_FINGERPRINT"
    )


def test_generation_leaves_the_garbage_collector_as_it_was() -> None:
    assert gc.isenabled()
    generate("small")
    assert gc.isenabled()
    gc.disable()
    try:
        generate("small")
        assert not gc.isenabled()
    finally:
        gc.enable()


# ---- counts ------------------------------------------------------------------------------------


def test_small_counts(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    counts = summary(small[0])
    assert counts["organizations"] == 40
    assert counts["persons"] == 120
    assert counts["deals"] == 80
    assert counts["notes"] == 150
    assert counts["pipelines"] == 2
    assert counts["deals_open"] + counts["deals_won"] + counts["deals_lost"] == 80
    assert sum(v for k, v in counts.items() if k.startswith("deals_in_pipeline_")) == 80


def test_demo_counts(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    counts = summary(demo[0])
    assert (counts["organizations"], counts["persons"], counts["deals"], counts["notes"]) == (
        200,
        600,
        500,
        1000,
    )
    assert counts["pipelines"] == 4
    assert all(counts[f"deals_in_pipeline_{p['id']}"] > 0 for p in demo[0].pipelines)


# ---- scale -------------------------------------------------------------------------------------

SCALED = ("organizations", "persons", "deals", "notes")
UNSCALED = ("users", "pipelines", "stages", "deal_fields", "organization_fields", "person_fields")


def test_scale_one_is_the_unscaled_data_set(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    assert generate("small", 7, 1) == small
    assert generate("small", 7, scale=1.0) == small


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ("demo", 0.25, (50, 150, 125, 250)),
        ("demo", 0.5, (100, 300, 250, 500)),
        ("small", 0.25, (10, 30, 20, 38)),  # 37.5 notes round to 38
        ("small", 2, (80, 240, 160, 300)),
        ("small", 0.001, (1, 1, 1, 1)),  # never an empty collection
    ],
)
def test_scale_multiplies_the_record_counts_only(
    small: tuple[PipedriveSeed, PlanhatSeed],
    demo: tuple[PipedriveSeed, PlanhatSeed],
    size: str,
    scale: float,
    expected: tuple[int, int, int, int],
) -> None:
    pd, ph = generate(size, 7, scale)
    base_pd, base_ph = small if size == "small" else demo
    counts = summary(pd)
    assert tuple(counts[name] for name in SCALED) == expected
    assert {k: v for k, v in scaled_counts(size, scale).items() if k in SCALED} == dict(
        zip(SCALED, expected, strict=True)
    )
    for name in UNSCALED:  # pipelines, stages, fields and users are the size's own
        assert getattr(pd, name) == getattr(base_pd, name), name
    assert ph == base_ph
    assert counts["deals_open"] + counts["deals_won"] + counts["deals_lost"] == expected[2]


def test_scaled_counts_of_large_without_generating() -> None:
    assert scaled_counts("large", 0.25) == {
        "organizations": 5_000,
        "persons": 15_000,
        "deals": 12_500,
        "notes": 25_000,
        "pipelines": 4,
    }
    assert scaled_counts("large") == {
        "organizations": 20_000,
        "persons": 60_000,
        "deals": 50_000,
        "notes": 100_000,
        "pipelines": 4,
    }


def test_same_seed_and_scale_give_identical_data() -> None:
    first = generate("demo", 7, 0.25)
    assert generate("demo", 7, 0.25) == first
    assert fingerprint(*generate("demo", 7, 0.25)) == fingerprint(*first)
    other_seed, _ = generate("demo", 8, 0.25)
    assert [d["title"] for d in other_seed.deals] != [d["title"] for d in first[0].deals]
    other_scale, _ = generate("demo", 7, 0.3)
    assert len(other_scale.deals) != len(first[0].deals)


def test_a_scaled_data_set_keeps_the_invariants() -> None:
    pd, _ = generate("demo", 7, 0.25)
    stage_pipeline = {s["id"]: s["pipeline_id"] for s in pd.stages}
    org_ids = {o["id"] for o in pd.organizations}
    person_ids = {p["id"] for p in pd.persons}
    deal_ids = {d["id"] for d in pd.deals}
    for deal in pd.deals:
        assert stage_pipeline[deal["stage_id"]] == deal["pipeline_id"]
        assert deal["org_id"] is None or deal["org_id"] in org_ids
        assert deal["person_id"] is None or deal["person_id"] in person_ids
    for note in pd.notes:
        assert note["deal_id"] is None or note["deal_id"] in deal_ids
        assert note["org_id"] is None or note["org_id"] in org_ids
        assert note["person_id"] is None or note["person_id"] in person_ids
    for collection in ("organizations", "persons", "deals", "notes"):
        ids = [r["id"] for r in getattr(pd, collection)]
        assert ids == sorted(set(ids)), collection


@pytest.mark.parametrize("scale", [0, -1, float("nan"), float("inf")])
def test_a_scale_must_be_a_positive_number(scale: float) -> None:
    with pytest.raises(ValueError, match="scale must be a positive number"):
        generate("small", 7, scale)


def test_summary_counts_what_it_says(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = small[0]
    counts = summary(pd)
    assert counts["users"] == len(pd.users)
    assert counts["stages"] == len(pd.stages)
    assert counts["deal_fields"] == len(pd.deal_fields)
    assert counts["deals_won"] == sum(d["status"] == "won" for d in pd.deals)
    for pipeline in pd.pipelines:
        assert counts[f"deals_in_pipeline_{pipeline['id']}"] == sum(
            d["pipeline_id"] == pipeline["id"] for d in pd.deals
        )


# ---- shapes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("collection", "keys"),
    [
        ("deals", DEAL_KEYS),
        ("organizations", ORG_KEYS),
        ("persons", PERSON_KEYS),
        ("pipelines", PIPELINE_KEYS),
        ("stages", STAGE_KEYS),
        ("notes", NOTE_KEYS),
        ("users", USER_KEYS),
    ],
)
def test_records_carry_the_api_keys(
    small: tuple[PipedriveSeed, PlanhatSeed], collection: str, keys: set[str]
) -> None:
    for record in getattr(small[0], collection):
        assert set(record) == keys, record["id"]


def test_v2_records_have_v2_types(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = demo[0]
    for collection in ("deals", "organizations", "persons"):
        for record in getattr(pd, collection):
            assert type(record["id"]) is int
            assert type(record["owner_id"]) is int
            assert type(record["visible_to"]) is int and record["visible_to"] in (1, 3, 5, 7)
            assert all(type(i) is int for i in record["label_ids"])
            assert record["is_deleted"] is False
            assert RFC3339.match(record["add_time"]) and RFC3339.match(record["update_time"])
            assert isinstance(record["custom_fields"], dict)
            for key in ("org_id", "person_id"):
                assert record.get(key) is None or type(record[key]) is int
    for deal in pd.deals:
        assert isinstance(deal["value"], int | float) and deal["value"] >= 0
        assert re.fullmatch(r"[A-Z]{3}", deal["currency"])
        assert deal["status"] in ("open", "won", "lost")
        assert deal["is_archived"] is False
        for key in ("close_time", "won_time", "lost_time", "stage_change_time"):
            assert deal[key] is None or RFC3339.match(deal[key])
        assert deal["expected_close_date"] is None or DATE.match(deal["expected_close_date"])
    for org in pd.organizations:
        assert org["address"] is None or set(org["address"]) == ADDRESS_KEYS


def test_ids_are_unique_and_follow_creation_order(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = demo[0]
    for collection in ("deals", "organizations", "persons", "notes"):
        records = getattr(pd, collection)
        ids = [r["id"] for r in records]
        assert ids == sorted(set(ids)), collection
        adds = [r["add_time"] for r in records]
        assert adds == sorted(adds), collection
        # Deleted records leave gaps: an id is not a position.
        assert ids[-1] > len(ids), collection


def test_field_lists_have_the_v2_item_shape(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = small[0]
    for _, fields_name in ENTITIES:
        fields = getattr(pd, fields_name)
        codes = [f["field_code"] for f in fields]
        assert len(codes) == len(set(codes))
        for item in fields:
            assert set(item) == FIELD_KEYS
            assert isinstance(item["field_name"], str) and item["field_name"]
            assert isinstance(item["is_custom_field"], bool)
            assert isinstance(item["is_optional_response_field"], bool)
            if item["is_custom_field"]:
                assert HASH40.match(item["field_code"])
            else:
                assert not HASH40.match(item["field_code"])
            if item["field_type"] in ("enum", "set") and item["is_custom_field"]:
                assert item["options"] and all(type(o["id"]) is int for o in item["options"])
            if item["field_type"] in ("monetary", "address"):
                assert item["subfields"], item["field_name"]
                assert all(
                    set(sub) == {"field_code", "field_name", "field_type"}
                    for sub in item["subfields"]
                )


def test_field_lists_describe_the_system_fields(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = small[0]
    system = {f["field_code"] for f in pd.deal_fields if not f["is_custom_field"]}
    expected = {
        "title", "value", "status", "pipeline_id", "stage_id", "org_id", "person_id", "owner_id",
        "won_time", "lost_time", "close_time", "expected_close_date",
    }  # fmt: skip
    assert expected <= system
    assert {"name", "owner_id", "address"} <= {
        f["field_code"] for f in pd.organization_fields if not f["is_custom_field"]
    }
    assert {"name", "org_id", "emails", "phones"} <= {
        f["field_code"] for f in pd.person_fields if not f["is_custom_field"]
    }
    # Fields that only come with `include_fields` are flagged and absent from the records.
    optional = {f["field_code"] for f in pd.deal_fields if f["is_optional_response_field"]}
    assert optional and optional.isdisjoint(pd.deals[0])
    labels = next(f for f in pd.deal_fields if f["field_code"] == "label_ids")
    label_ids = {o["id"] for o in labels["options"]}
    assert all(set(d["label_ids"]) <= label_ids for d in pd.deals)


def test_every_custom_field_type_on_every_entity(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = small[0]
    for _, fields_name in ENTITIES:
        types = {f["field_type"] for f in custom_fields(getattr(pd, fields_name))}
        assert CUSTOM_TYPES <= types, fields_name
    names = {f["field_name"] for f in custom_fields(pd.deal_fields)}
    assert {"Contract tier", "Modules", "Renewal date", "Implementation fee",
            "Customer success manager"} <= names  # fmt: skip
    assert "Industry segment" in {f["field_name"] for f in custom_fields(pd.organization_fields)}


def test_custom_values_have_the_v2_format(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = demo[0]
    user_ids = {u["id"] for u in pd.users}
    org_ids = {o["id"] for o in pd.organizations}
    for collection, fields_name in ENTITIES:
        fields = custom_fields(getattr(pd, fields_name))
        records = getattr(pd, collection)
        for record in records:
            assert set(record["custom_fields"]) == {f["field_code"] for f in fields}
        for field in fields:
            ftype, code = field["field_type"], field["field_code"]
            option_ids = {o["id"] for o in field["options"] or ()}
            for record in records:
                value = record["custom_fields"][code]
                if value is None:
                    continue
                if ftype == "enum":
                    assert value in option_ids
                elif ftype == "set":
                    assert isinstance(value, list) and value and set(value) <= option_ids
                elif ftype == "date":
                    assert DATE.match(value)
                elif ftype == "monetary":
                    assert set(value) == {"value", "currency"}
                    assert isinstance(value["value"], int | float)
                    assert re.fullmatch(r"[A-Z]{3}", value["currency"])
                elif ftype == "address":
                    assert set(value) == ADDRESS_KEYS and value["value"]
                elif ftype == "user":
                    assert value in user_ids
                elif ftype == "org":
                    assert value in org_ids and value != record.get("org_id", record["id"])
                elif ftype == "double":
                    assert isinstance(value, float)
                else:
                    assert isinstance(value, str) and value, ftype


def test_every_custom_field_has_nulls_and_values(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = small[0]
    for collection, fields_name in ENTITIES:
        records = getattr(pd, collection)
        for field in custom_fields(getattr(pd, fields_name)):
            values = [r["custom_fields"][field["field_code"]] for r in records]
            assert None in values, (collection, field["field_name"])
            assert any(v is not None for v in values), (collection, field["field_name"])


# ---- references --------------------------------------------------------------------------------


def test_stages_belong_to_their_pipelines(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = demo[0]
    pipeline_of = {s["pipeline_id"]: None for s in pd.stages}
    assert set(pipeline_of) == {p["id"] for p in pd.pipelines}
    stage_pipeline = {s["id"]: s["pipeline_id"] for s in pd.stages}
    for deal in pd.deals:
        assert stage_pipeline[deal["stage_id"]] == deal["pipeline_id"], deal["id"]


def test_references_point_at_existing_records(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = demo[0]
    users = {u["id"] for u in pd.users}
    orgs = {o["id"] for o in pd.organizations}
    persons = {p["id"] for p in pd.persons}
    deals = {d["id"] for d in pd.deals}
    for record in pd.deals + pd.organizations + pd.persons:
        assert record["owner_id"] in users
    for deal in pd.deals:
        assert deal["creator_user_id"] in users
        assert deal["org_id"] is None or deal["org_id"] in orgs
        assert deal["person_id"] is None or deal["person_id"] in persons
    for person in pd.persons:
        assert person["org_id"] is None or person["org_id"] in orgs
    for note in pd.notes:
        assert note["user_id"] in users and note["last_update_user_id"] in users
        assert note["deal_id"] is None or note["deal_id"] in deals
        assert note["person_id"] is None or note["person_id"] in persons
        assert note["org_id"] is None or note["org_id"] in orgs
        assert any(note[k] is not None for k in ("deal_id", "person_id", "org_id"))


def test_a_deals_person_usually_belongs_to_its_organization(
    demo: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    pd = demo[0]
    org_of = {p["id"]: p["org_id"] for p in pd.persons}
    both = [d for d in pd.deals if d["org_id"] and d["person_id"]]
    same = sum(org_of[d["person_id"]] == d["org_id"] for d in both)
    assert len(both) > len(pd.deals) // 2
    assert 0.85 <= same / len(both) < 1.0  # usually, but not always


def test_notes_on_a_deal_carry_its_organization_and_person(
    demo: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    pd = demo[0]
    deals = {d["id"]: d for d in pd.deals}
    on_deals = [n for n in pd.notes if n["deal_id"] is not None]
    assert on_deals
    for note in on_deals:
        deal = deals[note["deal_id"]]
        assert (note["org_id"], note["person_id"]) == (deal["org_id"], deal["person_id"])
        assert parse_v1(note["add_time"]) >= parse_iso(deal["add_time"])
    kinds = Counter(
        "deal" if n["deal_id"] else "person" if n["person_id"] else "org" for n in pd.notes
    )
    assert set(kinds) == {"deal", "person", "org"}


def test_owners_and_users(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = small[0]
    me = next(u for u in pd.users if u["id"] == pd.me_user_id)
    assert me["is_admin"] and me["active_flag"] and me["is_you"]
    assert sum(u["is_you"] for u in pd.users) == 1
    assert any(not u["active_flag"] for u in pd.users)  # a former employee still owns records
    for user in pd.users:
        assert V1_TIME.match(user["created"]) and V1_TIME.match(user["modified"])
        assert "@" in user["email"]
    assert set(pd.company) == {"id", "name", "domain"}
    owners = Counter(d["owner_id"] for d in pd.deals)
    assert len(owners) >= 4


# ---- realism ---------------------------------------------------------------------------------


def test_names_are_not_all_ascii(small: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = small[0]
    org_names = {o["name"] for o in pd.organizations}
    assert {"Müller & Søn GmbH", "Škoda Partners", "株式会社テスト", "Łódź Logistics"} <= org_names
    assert sum(not p["name"].isascii() for p in pd.persons) >= 10
    assert any(not d["title"].isascii() for d in pd.deals)


def test_persons_have_zero_to_several_emails_with_one_primary(
    demo: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    pd = demo[0]
    counts = Counter(len(p["emails"]) for p in pd.persons)
    assert counts[0] > 0 and counts[1] > 0 and counts[2] + counts[3] > 0
    for person in pd.persons:
        for key in ("emails", "phones"):
            items = person[key]
            assert all(set(i) == {"value", "primary", "label"} for i in items)
            if items:
                assert sum(i["primary"] for i in items) == 1, (person["id"], key)
    assert any(p["emails"] and not p["emails"][0]["primary"] for p in pd.persons)
    assert any(not p["phones"] for p in pd.persons)
    assert any(
        e["value"] != e["value"].lower() for p in pd.persons for e in p["emails"]
    )  # mixed-case addresses exist


def test_deals_without_organization_with_and_without_person(
    demo: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    pd = demo[0]
    no_org = [d for d in pd.deals if d["org_id"] is None]
    assert any(d["person_id"] is not None for d in no_org)
    assert any(d["person_id"] is None for d in no_org)
    assert any(p["org_id"] is None for p in pd.persons)


def test_status_times_are_consistent(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = demo[0]
    statuses = Counter(d["status"] for d in pd.deals)
    assert set(statuses) == {"open", "won", "lost"}
    for deal in pd.deals:
        add, update = parse_iso(deal["add_time"]), parse_iso(deal["update_time"])
        assert update >= add
        assert add <= parse_iso(deal["stage_change_time"]) <= update
        if deal["status"] == "won":
            assert deal["won_time"] == deal["close_time"] and deal["lost_time"] is None
            assert deal["lost_reason"] is None
        elif deal["status"] == "lost":
            assert deal["lost_time"] == deal["close_time"] and deal["won_time"] is None
            assert deal["lost_reason"]
        else:
            assert deal["close_time"] is deal["won_time"] is deal["lost_time"] is None
        if deal["close_time"]:
            assert add <= parse_iso(deal["close_time"]) <= update


def test_currencies_mostly_eur_and_usd(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    currencies = Counter(d["currency"] for d in demo[0].deals)
    assert currencies["EUR"] + currencies["USD"] >= 0.5 * sum(currencies.values())
    assert len(currencies) >= 5


def test_times_span_three_years_before_the_reference(
    demo: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    pd = demo[0]
    adds = [parse_iso(r["add_time"]) for r in pd.deals + pd.organizations + pd.persons]
    updates = [parse_iso(r["update_time"]) for r in pd.deals + pd.organizations + pd.persons]
    adds += [parse_v1(n["add_time"]) for n in pd.notes]
    updates += [parse_v1(n["update_time"]) for n in pd.notes]
    assert max(updates) < REFERENCE_TIME
    assert min(adds) >= REFERENCE_TIME - timedelta(days=3 * 366)
    assert max(adds) - min(adds) > timedelta(days=2 * 365)
    for record in pd.organizations + pd.persons:
        assert record["update_time"] >= record["add_time"]
    for note in pd.notes:
        assert note["update_time"] >= note["add_time"]
        assert V1_TIME.match(note["add_time"]) and V1_TIME.match(note["update_time"])


def test_several_records_are_updated_in_the_same_second(
    small: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    """Cursor boundaries must cope with ties: every collection has bursts of equal update_time."""
    pd = small[0]
    for collection in ("deals", "organizations", "persons", "notes"):
        ties = Counter(r["update_time"] for r in getattr(pd, collection))
        sizes = sorted(ties.values(), reverse=True)
        assert sizes[0] >= 8, collection  # one bulk edit
        assert sizes[1] >= 2, collection  # and smaller bursts
    adds = Counter(p["add_time"] for p in pd.persons)
    assert max(adds.values()) >= 2  # imports add several records in the same second


def test_demo_has_a_bulk_edit_bigger_than_the_default_page(
    demo: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    for collection in ("deals", "persons", "notes"):
        ties = Counter(r["update_time"] for r in getattr(demo[0], collection))
        assert max(ties.values()) > 100, collection  # the default page size is 100


def test_notes_are_html(demo: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    contents = [n["content"] for n in demo[0].notes]
    text = "".join(contents)
    for marker in ("<p>", "<b>", "<ul><li>", "&amp;", "&nbsp;", "&lt;script&gt;"):
        assert marker in text, marker
    assert any(not c.startswith("<") for c in contents)  # some notes are plain text
    assert any(len(c) > 1000 for c in contents)  # and a few are long
    assert "<script>" not in text
    assert all(n["active_flag"] is True for n in demo[0].notes)


def test_planhat_team_members_match_most_pipedrive_users(
    small: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    pd, ph = small
    assert ph.users and not (ph.companies or ph.endusers or ph.licenses or ph.conversations)
    for member in ph.users:
        assert set(member) == {"_id", "email", "firstName", "lastName", "nickName", "externalId"}
        assert re.fullmatch(r"[0-9a-f]{24}", member["_id"])
    assert len({m["_id"] for m in ph.users}) == len(ph.users)
    planhat_emails = {m["email"].lower() for m in ph.users}
    unmatched = [u for u in pd.users if u["email"].lower() not in planhat_emails]
    assert len(unmatched) == 1
    # One match only works case-insensitively, like real directories.
    exact = {m["email"] for m in ph.users}
    assert any(u["email"] not in exact and u not in unmatched for u in pd.users)
    # Owners can be mapped by email for most records.
    matched_ids = {u["id"] for u in pd.users if u not in unmatched}
    assert sum(d["owner_id"] in matched_ids for d in pd.deals) > 0.7 * len(pd.deals)


# ---- large -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_large_sizes_and_won_share(large: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd, _ = large
    counts = summary(pd)
    assert counts["organizations"] >= 20_000
    assert counts["persons"] >= 60_000
    assert counts["deals"] >= 50_000
    assert counts["notes"] >= 100_000
    assert counts["pipelines"] == 4
    assert 0.27 <= counts["deals_won"] / counts["deals"] <= 0.33
    assert counts["deals_lost"] > 0.1 * counts["deals"]


@pytest.mark.slow
def test_large_bulk_edit_spans_more_than_the_largest_page(
    large: tuple[PipedriveSeed, PlanhatSeed],
) -> None:
    for collection in ("deals", "persons", "notes"):
        ties = Counter(r["update_time"] for r in getattr(large[0], collection))
        assert max(ties.values()) > 500, collection  # the largest page size is 500


@pytest.mark.slow
def test_large_keeps_the_invariants(large: tuple[PipedriveSeed, PlanhatSeed]) -> None:
    pd = large[0]
    stage_pipeline = {s["id"]: s["pipeline_id"] for s in pd.stages}
    org_ids = {o["id"] for o in pd.organizations}
    person_ids = {p["id"] for p in pd.persons}
    for deal in pd.deals:
        assert stage_pipeline[deal["stage_id"]] == deal["pipeline_id"]
        assert deal["org_id"] is None or deal["org_id"] in org_ids
        assert deal["person_id"] is None or deal["person_id"] in person_ids
        assert deal["update_time"] >= deal["add_time"]
    for person in pd.persons:
        if person["emails"]:
            assert sum(e["primary"] for e in person["emails"]) == 1
    assert len({o["name"] for o in pd.organizations}) == len(pd.organizations)
