"""The sandbox Pipedrive as a user of its API sees it: auth, paging, filters, writes, limits.

Served over real HTTP (uvicorn on a loopback port). The module's sandbox runs on the `small`
generated data set; tests that write create their own records (or undo what they change).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.data import generate
from sandbox.pipedrive.app import PipedriveSandbox
from sandbox.pipedrive.testing import ENUM_FIELD, SET_FIELD, minimal_seed
from sandbox.server import ServedApp

TOKEN = "5f2b8c1d9e0a4b3c7d6e5f4a3b2c1d0e9f8a7b6c"
OTHER_TOKEN = "ffffffffffffffffffffffffffffffffffffffff"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[PipedriveSandbox, str]]:
    seed, _ = generate("small")
    pd = PipedriveSandbox(seed, [TOKEN], burst=10_000, webhook_time_scale=0.01)
    served = ServedApp(pd.asgi).start()
    try:
        yield pd, served.url
    finally:
        served.stop()
        pd.close()


@pytest.fixture
def pd(sandbox: tuple[PipedriveSandbox, str]) -> PipedriveSandbox:
    return sandbox[0]


@pytest.fixture
def api(sandbox: tuple[PipedriveSandbox, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox[1], headers={"x-api-token": TOKEN}, timeout=10) as c:
        yield c


def all_pages(api: httpx.Client, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Follow v2 cursors; (items, number of requests)."""
    items: list[dict[str, Any]] = []
    cursor = None
    requests = 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.get(path, params=query)
        requests += 1
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["data"]
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            return items, requests


# -- auth ---------------------------------------------------------------------------------------
UNAUTHORIZED = {
    "success": False,
    "error": "unauthorized access",
    "errorCode": 401,
    "error_info": "Please check developers.pipedrive.com",
}


@pytest.mark.parametrize(
    ("path", "headers", "params"),
    [
        ("/api/v2/deals", {}, {}),
        ("/api/v2/deals", {"x-api-token": OTHER_TOKEN}, {}),
        ("/api/v2/deals", {}, {"api_token": OTHER_TOKEN}),
        ("/api/v1/users/me", {"x-api-token": OTHER_TOKEN}, {}),
        ("/v1/notes", {}, {"api_token": OTHER_TOKEN}),
    ],
)
def test_missing_or_unknown_token_gets_pipedrives_401(
    sandbox: tuple[PipedriveSandbox, str],
    path: str,
    headers: dict[str, str],
    params: dict[str, str],
) -> None:
    response = httpx.get(sandbox[1] + path, headers=headers, params=params)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response.headers["x-401-by-gw"] == "true"
    assert OTHER_TOKEN not in response.text


def test_token_works_in_header_and_in_query_and_is_never_echoed(
    sandbox: tuple[PipedriveSandbox, str],
) -> None:
    url = sandbox[1]
    by_header = httpx.get(f"{url}/api/v1/users/me", headers={"x-api-token": TOKEN})
    by_query = httpx.get(f"{url}/v1/users/me", params={"api_token": TOKEN})
    assert by_header.status_code == by_query.status_code == 200
    assert by_header.json()["data"]["id"] == by_query.json()["data"]["id"]
    # An error answer with the token in the URL does not repeat it either.
    bad = httpx.get(f"{url}/api/v2/deals", params={"api_token": TOKEN, "limit": "nope"})
    assert bad.status_code == 400
    for response in (by_header, by_query, bad):
        assert TOKEN not in response.text


def test_users_me_is_the_seed_admin_with_company(pd: PipedriveSandbox, api: httpx.Client) -> None:
    me = api.get("/api/v1/users/me").json()["data"]
    assert me["id"] == pd.model.me_user_id
    assert me["is_you"] is True
    assert me["company_domain"] == pd.model.company["domain"]
    users = api.get("/api/v1/users").json()["data"]
    assert {u["id"] for u in users} == {u["id"] for u in pd.model.users.values()}
    assert [u["id"] for u in users if u["is_you"]] == [me["id"]]


def test_unknown_path_answers_like_the_gateway(api: httpx.Client) -> None:
    response = api.get("/api/v2/nothing-here")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


# -- v2 paging ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big() -> Iterator[tuple[PipedriveSandbox, httpx.Client]]:
    """1,001 hand-made deals: pages of 500 are 500, 500 and 1."""
    sandbox = PipedriveSandbox(minimal_seed(1001), [TOKEN], burst=10_000)
    served = ServedApp(sandbox.asgi).start()
    client = httpx.Client(base_url=served.url, headers={"x-api-token": TOKEN}, timeout=10)
    try:
        yield sandbox, client
    finally:
        client.close()
        served.stop()
        sandbox.close()


def test_paging_all_deals_takes_ceil_n_over_500_requests_and_returns_each_once(
    big: tuple[PipedriveSandbox, httpx.Client],
) -> None:
    sandbox, api = big
    sandbox.counters.reset()
    deals, requests = all_pages(api, "/api/v2/deals", limit=500)
    assert requests == math.ceil(1001 / 500) == 3
    assert sandbox.counters.get("GET /api/v2/deals") == 3
    assert sandbox.counters.get("GET /api/v2/deals 200") == 3
    ids = [d["id"] for d in deals]
    assert len(ids) == len(set(ids)) == 1001
    assert ids == sorted(ids)


def test_exact_multiple_of_the_page_size_ends_without_an_empty_page(
    big: tuple[PipedriveSandbox, httpx.Client],
) -> None:
    _, api = big
    ids = ",".join(str(i) for i in range(1, 101))
    first = api.get("/api/v2/deals", params={"ids": ids, "limit": 50}).json()
    assert len(first["data"]) == 50 and first["additional_data"]["next_cursor"]
    second = api.get(
        "/api/v2/deals",
        params={"ids": ids, "limit": 50, "cursor": first["additional_data"]["next_cursor"]},
    ).json()
    assert len(second["data"]) == 50
    assert second["additional_data"]["next_cursor"] is None


def test_default_page_is_100_and_limit_above_500_is_refused(
    big: tuple[PipedriveSandbox, httpx.Client],
) -> None:
    _, api = big
    assert len(api.get("/api/v2/deals").json()["data"]) == 100
    for bad in (
        {"limit": 501},
        {"limit": 0},
        {"limit": "x"},
        {"cursor": "not-a-cursor"},
        {"sort_by": "title"},
        {"sort_direction": "up"},
        {"status": "closed"},
        {"updated_since": "2025-01-01"},
        {"ids": "1,two"},
    ):
        response = api.get("/api/v2/deals", params=bad)
        assert response.status_code == 400, bad
        body = response.json()
        assert body["success"] is False and body["code"] == "ERR_SCHEMA_VALIDATION_FAILED"
        assert body["data"] is None


def test_descending_update_time_paging_is_stable_across_pages(
    big: tuple[PipedriveSandbox, httpx.Client],
) -> None:
    _, api = big
    deals, requests = all_pages(
        api, "/api/v2/deals", limit=97, sort_by="update_time", sort_direction="desc"
    )
    assert requests == math.ceil(1001 / 97)
    keys = [(d["update_time"], d["id"]) for d in deals]
    assert keys == sorted(keys, reverse=True)
    assert len({d["id"] for d in deals}) == 1001


def test_a_write_between_pages_neither_skips_nor_repeats(
    big: tuple[PipedriveSandbox, httpx.Client],
) -> None:
    _, api = big
    first = api.get("/api/v2/deals", params={"limit": 400}).json()
    created = api.post("/api/v2/deals", json={"title": "Late arrival"}).json()["data"]
    rest, _ = all_pages(
        api, "/api/v2/deals", limit=400, cursor=first["additional_data"]["next_cursor"]
    )
    ids = [d["id"] for d in first["data"] + rest]
    assert len(ids) == len(set(ids))
    assert created["id"] == ids[-1] == 1002  # new ids continue after the seed's max id
    api.delete(f"/api/v2/deals/{created['id']}")


# -- v2 filters ---------------------------------------------------------------------------------
def test_deal_filters(pd: PipedriveSandbox, api: httpx.Client) -> None:
    live = [d for d in pd.model.deals.values() if not d["is_deleted"] and not d["is_archived"]]
    won, _ = all_pages(api, "/api/v2/deals", status="won", limit=500)
    assert {d["id"] for d in won} == {d["id"] for d in live if d["status"] == "won"}
    closed, _ = all_pages(api, "/api/v2/deals", status="won,lost", limit=500)
    assert {d["status"] for d in closed} == {"won", "lost"}
    pipeline = live[0]["pipeline_id"]
    in_pipeline, _ = all_pages(api, "/api/v2/deals", pipeline_id=pipeline)
    assert {d["id"] for d in in_pipeline} == {d["id"] for d in live if d["pipeline_id"] == pipeline}
    org_id = next(d["org_id"] for d in live if d["org_id"])
    by_org, _ = all_pages(api, "/api/v2/deals", org_id=org_id)
    assert by_org and all(d["org_id"] == org_id for d in by_org)
    person_id = next(d["person_id"] for d in live if d["person_id"])
    by_person, _ = all_pages(api, "/api/v2/deals", person_id=person_id)
    assert by_person and all(d["person_id"] == person_id for d in by_person)
    some = sorted(d["id"] for d in live[:5])
    by_ids, _ = all_pages(api, "/api/v2/deals", ids=",".join(map(str, some)))
    assert [d["id"] for d in by_ids] == some


def test_updated_since_and_until_bound_update_time(pd: PipedriveSandbox, api: httpx.Client) -> None:
    times = sorted(d["update_time"] for d in pd.model.deals.values() if not d["is_deleted"])
    since, until = times[len(times) // 4], times[3 * len(times) // 4]
    window, _ = all_pages(api, "/api/v2/deals", updated_since=since, updated_until=until)
    assert window
    assert all(since <= d["update_time"] < until for d in window)
    expected = sum(
        1
        for d in pd.model.deals.values()
        if not d["is_deleted"] and not d["is_archived"] and since <= d["update_time"] < until
    )
    assert len(window) == expected
    # Pipedrive refuses fractional seconds in these filters.
    response = api.get("/api/v2/deals", params={"updated_since": "2025-01-01T10:20:00.123Z"})
    assert response.status_code == 400


def test_person_and_organization_filters(pd: PipedriveSandbox, api: httpx.Client) -> None:
    person = next(p for p in pd.model.persons.values() if p["org_id"] and not p["is_deleted"])
    by_org, _ = all_pages(api, "/api/v2/persons", org_id=person["org_id"])
    assert person["id"] in {p["id"] for p in by_org}
    assert all(p["org_id"] == person["org_id"] for p in by_org)
    deal = next(d for d in pd.model.deals.values() if d["person_id"])
    by_deal = api.get("/api/v2/persons", params={"deal_id": deal["id"]}).json()["data"]
    assert [p["id"] for p in by_deal] == [deal["person_id"]]
    owner = person["owner_id"]
    orgs, _ = all_pages(api, "/api/v2/organizations", owner_id=owner, limit=7)
    assert orgs and all(o["owner_id"] == owner for o in orgs)
    newest = api.get(
        "/api/v2/organizations",
        params={"sort_by": "update_time", "sort_direction": "desc", "limit": 3},
    )
    times = [o["update_time"] for o in newest.json()["data"]]
    assert times == sorted(times, reverse=True)


def test_pipelines_stages_and_fields(pd: PipedriveSandbox, api: httpx.Client) -> None:
    pipelines = api.get("/api/v2/pipelines").json()["data"]
    assert {p["id"] for p in pipelines} == {p["id"] for p in pd.model.pipelines.values()}
    stages = api.get("/api/v2/stages", params={"pipeline_id": pipelines[0]["id"]}).json()["data"]
    assert stages and all(s["pipeline_id"] == pipelines[0]["id"] for s in stages)
    assert api.get(f"/api/v2/stages/{stages[0]['id']}").json()["data"] == stages[0]
    fields, _ = all_pages(api, "/api/v2/dealFields", limit=7)
    assert [f["field_code"] for f in fields] == [f["field_code"] for f in pd.model.fields["deal"]]
    custom = next(f for f in fields if f["is_custom_field"] and f["field_type"] == "enum")
    assert len(custom["field_code"]) == 40 and custom["options"]
    one = api.get(f"/api/v2/dealFields/{custom['field_code']}").json()["data"]
    assert one["field_name"] == custom["field_name"]


def test_v1_fields_are_derived_from_the_v2_ones(pd: PipedriveSandbox, api: httpx.Client) -> None:
    for entity, path in (
        ("deal", "dealFields"),
        ("person", "personFields"),
        ("organization", "organizationFields"),
    ):
        v2 = pd.model.fields[entity]
        v1 = api.get(f"/api/v1/{path}", params={"limit": 500}).json()
        assert v1["additional_data"]["pagination"]["more_items_in_collection"] is False
        assert [f["key"] for f in v1["data"]] == [f["field_code"] for f in v2]
        for old, new in zip(v1["data"], v2, strict=True):
            assert old["name"] == new["field_name"]
            assert old["field_type"] == new["field_type"]
            assert old["edit_flag"] == new["is_custom_field"]
            assert (old["options"] or None) == (
                [
                    {k: o[k] for k in ("id", "label")}
                    | ({"color": o["color"]} if o.get("color") else {})
                    for o in new["options"]
                ]
                if new["options"]
                else None
            )


def test_option_labels_and_custom_field_selection(api: httpx.Client) -> None:
    fields = api.get("/api/v2/dealFields", params={"limit": 500}).json()["data"]
    enum = next(f for f in fields if f["field_type"] == "enum" and f["is_custom_field"])
    deals, _ = all_pages(api, "/api/v2/deals", limit=500)
    deal = next(d for d in deals if d["custom_fields"].get(enum["field_code"]) is not None)
    labelled = api.get(
        f"/api/v2/deals/{deal['id']}",
        params={"include_option_labels": "true", "custom_fields": enum["field_code"]},
    ).json()["data"]
    value = deal["custom_fields"][enum["field_code"]]
    label = next(o["label"] for o in enum["options"] if o["id"] == value)
    assert labelled["custom_fields"] == {enum["field_code"]: {"id": value, "label": label}}
    too_many = ",".join(f["field_code"] for f in fields[:16])
    assert api.get("/api/v2/deals", params={"custom_fields": too_many}).status_code == 400


# -- v2 writes ----------------------------------------------------------------------------------
def test_deal_lifecycle(pd: PipedriveSandbox, api: httpx.Client) -> None:
    max_id = max(pd.model.deals.records)
    created = api.post(
        "/api/v2/deals", json={"title": "Sandbox deal", "value": 1200, "currency": "EUR"}
    )
    assert created.status_code == 200
    deal = created.json()["data"]
    assert deal["id"] > max_id
    assert deal["status"] == "open" and deal["owner_id"] == pd.model.me_user_id
    assert deal["add_time"] == deal["update_time"] and deal["add_time"].endswith("Z")
    assert deal["stage_id"] and deal["pipeline_id"]

    won = api.patch(f"/api/v2/deals/{deal['id']}", json={"status": "won"}).json()["data"]
    assert won["won_time"] and won["close_time"] == won["won_time"]
    assert won["update_time"] >= deal["update_time"]
    assert api.get(f"/api/v2/deals/{deal['id']}").json()["data"] == won

    reopened = api.patch(f"/api/v2/deals/{deal['id']}", json={"status": "open"}).json()["data"]
    assert reopened["won_time"] is None and reopened["close_time"] is None

    bad = api.patch(f"/api/v2/deals/{deal['id']}", json={"lost_reason": "price"})
    assert bad.status_code == 400  # lost_reason only when lost

    deleted = api.delete(f"/api/v2/deals/{deal['id']}")
    assert deleted.json() == {"success": True, "data": {"id": deal["id"]}}
    listed = {d["id"] for d in all_pages(api, "/api/v2/deals", limit=500)[0]}
    assert deal["id"] not in listed
    gone = {d["id"] for d in all_pages(api, "/api/v2/deals", status="deleted", limit=500)[0]}
    assert deal["id"] in gone
    assert api.get(f"/api/v2/deals/{deal['id']}").json()["data"]["is_deleted"] is True
    assert api.delete(f"/api/v2/deals/{deal['id']}").status_code == 404
    assert api.patch(f"/api/v2/deals/{deal['id']}", json={"title": "x"}).status_code == 404


def test_deal_validation(pd: PipedriveSandbox, api: httpx.Client) -> None:
    assert api.post("/api/v2/deals", json={"value": 5}).status_code == 400  # no title
    assert api.post("/api/v2/deals", json={"title": "x", "user_id": 1}).status_code == 400
    assert api.post("/api/v2/deals", json={"title": "x", "value": "5"}).status_code == 400
    assert api.post("/api/v2/deals", json={"title": "x", "stage_id": 99999}).status_code == 400
    assert api.get("/api/v2/deals/999999").status_code == 404
    assert api.get("/api/v2/deals/abc").status_code == 400
    fields = {f["field_code"]: f for f in pd.model.fields["deal"]}
    set_field = next(
        k for k, f in fields.items() if f["field_type"] == "set" and f["is_custom_field"]
    )
    empty_set = api.post("/api/v2/deals", json={"title": "x", "custom_fields": {set_field: []}})
    assert empty_set.status_code == 400  # clear a set with null, never []
    # Refused writes change nothing, not even the id sequence.
    next_id = max(pd.model.deals.records) + 1
    created = api.post("/api/v2/deals", json={"title": "after refusals"}).json()["data"]
    assert created["id"] == next_id
    api.delete(f"/api/v2/deals/{created['id']}")


def test_custom_fields_patch_merges(big: tuple[PipedriveSandbox, httpx.Client]) -> None:
    _, api = big
    patched = api.patch("/api/v2/deals/5", json={"custom_fields": {ENUM_FIELD: 2, SET_FIELD: None}})
    custom = patched.json()["data"]["custom_fields"]
    assert custom[ENUM_FIELD] == 2 and custom[SET_FIELD] is None
    assert custom["c" * 40] == {"value": 5, "currency": "EUR"}  # untouched keys stay


def test_person_and_organization_writes(api: httpx.Client) -> None:
    org = api.post("/api/v2/organizations", json={"name": "Sandbox Org"}).json()["data"]
    person = api.post(
        "/api/v2/persons",
        json={
            "name": "Grace Hopper",
            "org_id": org["id"],
            "emails": [{"value": "g@example.test"}, {"value": "h@example.test", "label": "home"}],
        },
    ).json()["data"]
    assert person["first_name"] == "Grace" and person["last_name"] == "Hopper"
    assert person["emails"] == [
        {"value": "g@example.test", "primary": True, "label": "work"},
        {"value": "h@example.test", "primary": False, "label": "home"},
    ]
    patched = api.patch(
        f"/api/v2/persons/{person['id']}", json={"phones": [{"value": "+1 555", "primary": True}]}
    ).json()["data"]
    assert patched["phones"] == [{"value": "+1 555", "primary": True, "label": "work"}]
    assert patched["emails"] == person["emails"]
    renamed = api.patch(f"/api/v2/organizations/{org['id']}", json={"name": "Renamed"}).json()
    assert renamed["data"]["name"] == "Renamed"
    assert api.post("/api/v2/persons", json={"org_id": org["id"]}).status_code == 400
    assert api.delete(f"/api/v2/persons/{person['id']}").json()["data"] == {"id": person["id"]}
    assert api.delete(f"/api/v2/organizations/{org['id']}").status_code == 200
    listed = api.get("/api/v2/persons", params={"ids": str(person["id"])}).json()["data"]
    assert listed == []


# -- v1 notes -----------------------------------------------------------------------------------
def test_notes_offset_paging_boundaries(pd: PipedriveSandbox, api: httpx.Client) -> None:
    total = sum(1 for n in pd.model.notes.values() if n["active_flag"])
    first = api.get("/api/v1/notes", params={"limit": 100}).json()
    assert first["additional_data"]["pagination"] == {
        "start": 0,
        "limit": 100,
        "more_items_in_collection": True,
        "next_start": 100,
    }
    last = api.get("/api/v1/notes", params={"start": 100, "limit": 100}).json()
    assert len(last["data"]) == total - 100
    assert last["additional_data"]["pagination"] == {
        "start": 100,
        "limit": 100,
        "more_items_in_collection": False,
    }
    exact = api.get("/api/v1/notes", params={"start": total - 10, "limit": 10}).json()
    assert exact["additional_data"]["pagination"]["more_items_in_collection"] is False
    beyond = api.get("/api/v1/notes", params={"start": total + 5}).json()
    assert beyond["data"] == []
    capped = api.get("/api/v1/notes", params={"limit": 1000}).json()
    assert capped["additional_data"]["pagination"]["limit"] == 500
    ids = [n["id"] for n in first["data"] + last["data"]]
    assert len(ids) == len(set(ids)) == total


def test_notes_filters_and_sort(pd: PipedriveSandbox, api: httpx.Client) -> None:
    note = next(n for n in pd.model.notes.values() if n["deal_id"] and n["active_flag"])
    by_deal = api.get("/api/v1/notes", params={"deal_id": note["deal_id"]}).json()["data"]
    assert note["id"] in {n["id"] for n in by_deal}
    assert all(n["deal_id"] == note["deal_id"] for n in by_deal)
    newest = api.get("/api/v1/notes", params={"sort": "update_time DESC", "limit": 20}).json()
    times = [n["update_time"] for n in newest["data"]]
    assert times == sorted(times, reverse=True)
    since = sorted(n["update_time"] for n in pd.model.notes.values())[-10]
    recent = api.get(
        "/api/v1/notes", params={"updated_since": since.replace(" ", "T") + "Z", "limit": 500}
    ).json()["data"]
    assert recent and all(n["update_time"] >= since for n in recent)
    assert api.get("/api/v1/notes", params={"sort": "colour ASC"}).status_code == 400
    assert api.get("/api/v1/notes", params={"updated_since": "yesterday"}).status_code == 400


def test_note_lifecycle_with_html_and_embedded_objects(
    pd: PipedriveSandbox, api: httpx.Client
) -> None:
    deal = next(d for d in pd.model.deals.values() if d["org_id"] and not d["is_deleted"])
    html = '<p onclick="x()">Kick-off <b>done</b></p><script>alert(1)</script>'
    created = api.post(
        "/api/v1/notes", json={"content": html, "deal_id": deal["id"], "org_id": deal["org_id"]}
    )
    assert created.status_code == 200
    note = created.json()["data"]
    assert note["content"] == "<p>Kick-off <b>done</b></p>"  # sanitised, markup kept
    assert note["deal"] == {"title": deal["title"]}
    assert note["organization"]["name"] == pd.model.organizations.get(deal["org_id"])["name"]
    assert note["person"] is None
    assert note["user"]["is_you"] is True
    assert len(note["add_time"]) == 19 and note["add_time"][10] == " "
    form = api.put(
        f"/v1/notes/{note['id']}", data={"content": "<p>Edited</p>", "pinned_to_deal_flag": "1"}
    )
    assert form.json()["data"]["content"] == "<p>Edited</p>"
    assert form.json()["data"]["pinned_to_deal_flag"] is True
    assert api.post("/api/v1/notes", json={"content": "orphan"}).status_code == 400
    assert api.delete(f"/api/v1/notes/{note['id']}").json() == {"success": True, "data": True}
    listed = api.get("/api/v1/notes", params={"deal_id": deal["id"]}).json()["data"]
    assert note["id"] not in {n["id"] for n in listed}
    assert api.get("/api/v1/notes/999999").status_code == 404


# -- rate limits --------------------------------------------------------------------------------
def test_burst_limit_answers_429_with_headers(
    sandbox: tuple[PipedriveSandbox, str], api: httpx.Client
) -> None:
    url = sandbox[1]
    settings = httpx.get(f"{url}/_sandbox/ratelimit").json()
    try:
        assert (
            httpx.put(f"{url}/_sandbox/ratelimit", json={"burst": 3, "window_s": 30}).json()[
                "burst"
            ]
            == 3
        )
        httpx.delete(f"{url}/_sandbox/ratelimit")
        answers = [api.get("/api/v2/pipelines") for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
        limited = answers[-1]
        assert limited.headers["x-ratelimit-limit"] == "3"
        assert 0 < int(limited.headers["x-ratelimit-reset"]) <= 30
        assert "x-daily-requests-left" in limited.headers
        assert limited.json()["success"] is False
        assert TOKEN not in limited.text
    finally:
        httpx.put(f"{url}/_sandbox/ratelimit", json=settings)
        httpx.delete(f"{url}/_sandbox/ratelimit")
    assert api.get("/api/v2/pipelines").status_code == 200


def test_daily_budget_exhaustion(big: tuple[PipedriveSandbox, httpx.Client]) -> None:
    sandbox, api = big
    sandbox.ratelimit.configure(daily_budget=10)
    sandbox.ratelimit.reset()
    try:
        answers = [api.get("/api/v2/stages") for _ in range(3)]  # 5 tokens each
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert [a.headers["x-daily-ratelimit-token-remaining"] for a in answers] == ["5", "0", "0"]
        assert answers[-1].json()["success"] is False
    finally:
        sandbox.ratelimit.configure(daily_budget=1_000_000)
        sandbox.ratelimit.reset()


def test_all_tokens_of_the_company_share_its_daily_budget() -> None:
    seed = minimal_seed(3)
    sandbox = PipedriveSandbox(seed, [TOKEN, OTHER_TOKEN], daily_budget=25)
    try:
        with ServedApp(sandbox.asgi) as served, httpx.Client(base_url=served.url) as http:
            first = http.get("/api/v2/deals", headers={"x-api-token": TOKEN})
            second = http.get("/api/v2/deals", headers={"x-api-token": OTHER_TOKEN})
            assert first.headers["x-daily-ratelimit-token-remaining"] == "15"
            assert second.headers["x-daily-ratelimit-token-remaining"] == "5"
            # a token the company does not know is refused by the gateway, free of charge
            stranger = http.get("/api/v2/deals", headers={"x-api-token": "e" * 40})
            assert stranger.status_code == 401 and "x-ratelimit-limit" not in stranger.headers
            me = http.get("/v1/users/me", params={"api_token": TOKEN})
            assert me.headers["x-daily-ratelimit-token-remaining"] == "3"
            last = http.get("/api/v2/deals", headers={"x-api-token": OTHER_TOKEN})
            assert last.status_code == 200  # served while anything is left
            spent = http.get("/api/v2/deals", headers={"x-api-token": TOKEN})
            assert spent.status_code == 429
            assert spent.headers["x-daily-ratelimit-token-remaining"] == "0"
            settings = http.get("/_sandbox/ratelimit").json()
            assert settings["daily_budget"] == 25
            assert list(settings["tokens_spent"].values()) == [32]
    finally:
        sandbox.close()


def test_admin_sets_the_plan_and_seats(sandbox: tuple[PipedriveSandbox, str]) -> None:
    url = sandbox[1]
    saved = httpx.get(f"{url}/_sandbox/ratelimit").json()
    try:
        lite = httpx.put(f"{url}/_sandbox/ratelimit", json={"plan": "lite", "seats": 3}).json()
        assert (lite["burst"], lite["daily_budget"], lite["plan"], lite["seats"]) == (
            20,
            90_000,
            "lite",
            3,
        )
        bad = httpx.put(f"{url}/_sandbox/ratelimit", json={"plan": "gold"})
        assert bad.status_code == 400 and "plan" in bad.json()["error"]
        assert httpx.put(f"{url}/_sandbox/ratelimit", json={"seats": 0}).status_code == 400
        assert httpx.put(f"{url}/_sandbox/ratelimit", json={"tier": 1}).status_code == 400
    finally:
        restored = httpx.put(f"{url}/_sandbox/ratelimit", json=saved).json()
        assert restored["burst"] == saved["burst"]
        assert restored["daily_budget"] == saved["daily_budget"]


def test_injected_faults_look_like_pipedrive_errors(
    sandbox: tuple[PipedriveSandbox, str], api: httpx.Client
) -> None:
    pd, url = sandbox
    pd.faults.add(route="/api/v2/pipelines", p_503=1.0)
    try:
        response = api.get("/api/v2/pipelines")
        assert response.status_code == 503
        assert response.json()["success"] is False
        assert (
            httpx.get(f"{url}/_sandbox/counters").json()["statuses"]["GET /api/v2/pipelines 503"]
            >= 1
        )
    finally:
        pd.faults.clear()
