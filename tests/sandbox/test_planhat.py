"""The sandbox Planhat over real HTTP: what a sync author would notice (planhat-api.md)."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from sandbox.dataset import PlanhatSeed
from sandbox.planhat import PlanhatSandbox
from sandbox.server import ServedApp

TOKEN = "ph-write-token-0123456789"
READ_ONLY = "ph-read-only-token-9876543210"
USERS = [
    {"_id": "64b7f0c2a1d3e9001f2c4a11", "email": "jonas@sales.example", "firstName": "Jonas",
     "lastName": "Berg", "nickName": "Jonas", "externalId": "pd-user-1"},
]  # fmt: skip

_unique = itertools.count(1)


def uid(prefix: str) -> str:
    """A key no other test uses (the served sandbox is shared by the module)."""
    return f"{prefix}-{next(_unique)}"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[PlanhatSandbox, str]]:
    sb = PlanhatSandbox(PlanhatSeed(users=USERS), [TOKEN], read_only_tokens=[READ_ONLY])
    with ServedApp(sb.asgi) as served:
        yield sb, served.url


@pytest.fixture(scope="module")
def client(sandbox: tuple[PlanhatSandbox, str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sandbox[1], headers={"authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as c:
        yield c


@pytest.fixture()
def sb(sandbox: tuple[PlanhatSandbox, str]) -> PlanhatSandbox:
    return sandbox[0]


def upsert(client: httpx.Client, model: str, items: list[Any], status: int = 200) -> dict:
    response = client.put(f"/{model}", json=items)
    assert response.status_code == status, response.text
    return response.json()


def company(client: httpx.Client, **fields: Any) -> dict:
    """Create one company and read it back."""
    fields.setdefault("name", uid("Company"))
    fields.setdefault("sourceId", uid("org"))
    body = upsert(client, "companies", [fields])
    return client.get(f"/companies/{body['insertsKeys'][0]['_id']}").json()


# --- auth -----------------------------------------------------------------------------------


def test_missing_or_unknown_token_is_401_and_never_echoed(sandbox: tuple[Any, str]) -> None:
    url = sandbox[1]
    secret = "not-a-known-token-5f3a9c"
    for headers in ({}, {"authorization": f"Bearer {secret}"}, {"authorization": secret}):
        response = httpx.get(f"{url}/companies", headers=headers)
        assert response.status_code == 401
        assert secret not in response.text
        assert all(secret not in value for value in response.headers.values())
    response = httpx.put(f"{url}/companies", json=[{"name": "x"}])
    assert response.status_code == 401


def test_basic_auth_with_the_token_as_user_name(sandbox: tuple[Any, str]) -> None:
    response = httpx.get(f"{sandbox[1]}/users", auth=(TOKEN, ""))
    assert response.status_code == 200
    assert response.json()[0]["email"] == "jonas@sales.example"
    wrong = base64.b64encode(b"someone-else:").decode()
    response = httpx.get(f"{sandbox[1]}/users", headers={"authorization": f"Basic {wrong}"})
    assert response.status_code == 401


def test_read_only_token_reads_but_gets_403_with_permission_errors_on_writes(
    sandbox: tuple[PlanhatSandbox, str], client: httpx.Client
) -> None:
    sb, url = sandbox
    existing = company(client)
    headers = {"authorization": f"Bearer {READ_ONLY}"}
    with httpx.Client(base_url=url, headers=headers) as ro:
        assert ro.get(f"/companies/{existing['_id']}").status_code == 200
        bulk = ro.put("/companies", json=[{"name": "Nope", "sourceId": uid("ro")}])
        assert bulk.status_code == 403
        assert bulk.json()["permissionErrors"] and bulk.json()["created"] == 0
        for response in (
            ro.post("/companies", json={"name": "Nope"}),
            ro.put(f"/companies/{existing['_id']}", json={"name": "Renamed"}),
            ro.delete(f"/companies/{existing['_id']}"),
        ):
            assert response.status_code == 403
            assert response.json()["permissionErrors"]
            assert READ_ONLY not in response.text
    assert client.get(f"/companies/{existing['_id']}").json()["name"] == existing["name"]


# --- bulk upsert ----------------------------------------------------------------------------


def test_bulk_upsert_create_update_unchanged_and_updated_at_moves(client: httpx.Client) -> None:
    source = uid("org")
    item = {"sourceId": source, "name": "Nordlicht", "phase": "Onboarding", "custom": {"Tier": 1}}

    created = upsert(client, "companies", [item])
    assert (created["created"], created["updated"], created["nonupdates"]) == (1, 0, 0)
    record_id = created["insertsKeys"][0]["_id"]
    assert created["upsertedIds"] == [record_id]
    assert len(record_id) == 24 and int(record_id, 16) >= 0
    first = client.get(f"/companies/{record_id}").json()
    assert first["createdAt"].endswith("Z") and len(first["createdAt"]) == 24

    updated = upsert(client, "companies", [{**item, "phase": "Live"}])
    assert (updated["created"], updated["updated"], updated["nonupdates"]) == (0, 1, 0)
    assert updated["updatesKeys"] == [{"_id": record_id, "sourceId": item["sourceId"]}]
    second = client.get(f"/companies/{record_id}").json()
    assert second["phase"] == "Live" and second["custom"] == {"Tier": 1}

    same = upsert(client, "companies", [{**item, "phase": "Live"}])
    assert (same["created"], same["updated"], same["nonupdates"]) == (0, 0, 1)
    assert same["updatesKeys"] == [] and same["upsertedIds"] == []
    third = client.get(f"/companies/{record_id}").json()

    assert first["updatedAt"] < second["updatedAt"] < third["updatedAt"]
    assert first["createdAt"] == third["createdAt"]
    assert set(same) == {
        "created", "createdErrors", "insertsKeys", "updated", "updatedErrors", "updatesKeys",
        "nonupdates", "modified", "upsertedIds", "permissionErrors",
    }  # fmt: skip


def test_matching_priority_id_then_source_id_then_external_id(client: httpx.Client) -> None:
    a = company(client, externalId=uid("ext"))
    b = company(client, externalId=uid("ext"))

    # sourceId wins over externalId: A is updated, B untouched
    body = upsert(client, "companies", [{"sourceId": a["sourceId"], "name": "A by sourceId"}])
    assert [k["_id"] for k in body["updatesKeys"]] == [a["_id"]]

    # an unknown sourceId falls through to externalId: B is adopted and takes the new sourceId
    new_source = uid("org")
    body = upsert(
        client, "companies", [{"sourceId": new_source, "externalId": b["externalId"], "name": "B"}]
    )
    assert body["created"] == 0 and [k["_id"] for k in body["updatesKeys"]] == [b["_id"]]
    assert client.get(f"/companies/srcid-{new_source}").json()["_id"] == b["_id"]

    # _id wins over sourceId: the item targets A, and B's sourceId cannot be taken (unique)
    body = upsert(client, "companies", [{"_id": a["_id"], "sourceId": new_source}], status=206)
    assert body["updated"] == 0 and "sourceId" in body["updatedErrors"][0]["error"]
    assert client.get(f"/companies/{a['_id']}").json()["sourceId"] == a["sourceId"]

    # neither key matches: a new record
    body = upsert(client, "companies", [{"sourceId": uid("org"), "name": "C"}])
    assert body["created"] == 1


def test_external_id_is_unique_per_company_for_company_owned_models(client: httpx.Client) -> None:
    one, two = company(client), company(client)
    ext = uid("person")
    people = [
        {"companyId": one["_id"], "externalId": ext, "email": "a@one.example"},
        {"companyId": two["_id"], "externalId": ext, "email": "b@two.example"},
    ]
    assert upsert(client, "endusers", people)["created"] == 2
    again = upsert(client, "endusers", [{**people[1], "firstName": "Bea"}])
    assert again["created"] == 0 and again["updated"] == 1
    stored = client.get("/endusers", params={"companyId": two["_id"]}).json()
    assert [p["name"] for p in stored] == ["Bea"]


def test_206_with_created_errors_for_a_license_without_company(client: httpx.Client) -> None:
    owner = company(client)
    good = {"sourceId": uid("deal"), "companyId": owner["_id"], "_currency": "EUR",
            "fromDate": "2025-03-01", "toDate": "2026-03-01", "value": 18000}  # fmt: skip
    bad = {"sourceId": uid("deal"), "_currency": "EUR", "fromDate": "2025-03-01", "value": 1}
    body = upsert(client, "licenses", [good, bad], status=206)
    assert body["created"] == 1
    assert body["createdErrors"] == [{"item": bad, "error": "companyId is required"}]
    assert client.get(f"/licenses/srcid-{bad['sourceId']}").status_code == 404


def test_license_autogenerated_fields(client: httpx.Client) -> None:
    owner = company(client, externalId=uid("ext"))
    source = uid("deal")
    body = upsert(client, "licenses", [{
        "sourceId": source, "companyId": f"extid-{owner['externalId']}", "product": "Pro",
        "_currency": "EUR", "fromDate": "2025-03-01T00:00:00.000Z",
        "toDate": "2026-03-01T00:00:00.000Z", "fixedPeriod": True, "value": 18000,
    }])  # fmt: skip
    assert body["created"] == 1
    lic = client.get(f"/licenses/srcid-{source}").json()
    assert lic["companyId"] == owner["_id"]  # extid- resolved to the company's _id
    assert lic["companyName"] == owner["name"]
    assert (lic["mrr"], lic["length"], lic["renewalDate"]) == (1500, 12, "2026-03-01T00:00:00.000Z")
    missing = {"sourceId": uid("deal"), "companyId": owner["_id"], "fromDate": "2025-01-01"}
    body = upsert(client, "licenses", [missing], status=206)
    assert body["createdErrors"][0]["error"] == "_currency is required"


def test_more_than_5000_items_or_a_non_array_body_is_400(client: httpx.Client) -> None:
    too_many = [{"name": f"x{i}"} for i in range(5001)]
    response = client.put("/companies", json=too_many)
    assert response.status_code == 400
    assert client.put("/companies", json={"name": "not an array"}).status_code == 400
    assert not [c for c in client.get("/companies", params={"limit": 5000}).json()
                if c["name"] == "x0"]  # fmt: skip


@pytest.mark.parametrize("bad", ["a string", 42, None, ["nested"]])
def test_a_payload_with_an_item_that_is_not_an_object_is_400_as_a_whole(
    client: httpx.Client, bad: Any
) -> None:
    good = {"name": "Kept Out", "sourceId": uid("org")}
    response = client.put("/companies", json=[good, bad])
    assert response.status_code == 400
    assert "item 1" in response.json()["message"] and "object" in response.json()["message"]
    assert client.get(f"/companies/srcid-{good['sourceId']}").status_code == 404  # none written


@pytest.mark.parametrize("key", ["sourceId", "externalId"])
def test_a_payload_naming_one_record_twice_is_400_as_a_whole(
    client: httpx.Client, key: str
) -> None:
    value = uid("dup")
    first = {"name": "First", key: value}
    other = {"name": "Other", "sourceId": uid("org")}
    response = client.put("/companies", json=[first, other, {"name": "Second", key: value}])
    assert response.status_code == 400
    message = response.json()["message"]
    assert "duplicate" in message and key in message and "items 0 and 2" in message
    assert client.get(f"/companies/srcid-{other['sourceId']}").status_code == 404
    # the same keys in separate calls are an ordinary create, then an update
    assert upsert(client, "companies", [first])["created"] == 1
    assert upsert(client, "companies", [{**first, "name": "Second"}])["updated"] == 1


def test_company_owned_keys_are_duplicates_only_within_one_company(client: httpx.Client) -> None:
    one, two = company(client), company(client)
    ext = uid("person")
    apart = [
        {"companyId": one["_id"], "externalId": ext, "email": f"{ext}@one.example"},
        {"companyId": two["_id"], "externalId": ext, "email": f"{ext}@two.example"},
    ]
    assert upsert(client, "endusers", apart)["created"] == 2
    twice = [apart[0], {**apart[0], "email": f"{ext}@again.example"}]
    response = client.put("/endusers", json=twice)
    assert response.status_code == 400 and "duplicate externalId" in response.json()["message"]


def test_a_missing_required_field_stays_a_per_item_error(client: httpx.Client) -> None:
    named = {"name": "Has Name", "sourceId": uid("org")}
    nameless = {"sourceId": uid("org")}
    body = upsert(client, "companies", [named, nameless], status=206)
    assert body["created"] == 1 and len(body["createdErrors"]) == 1


def test_a_5000_item_bulk_upsert_is_one_call(client: httpx.Client) -> None:
    prefix = uid("bulk")
    items = [{"sourceId": f"{prefix}-{i}", "name": f"Bulk {i}", "custom": {"n": i}}
             for i in range(5000)]  # fmt: skip
    first = client.put("/companies", json=items)
    second = client.put("/companies", json=items)
    assert first.json()["created"] == 5000 and second.json()["nonupdates"] == 5000
    # (how fast: bench/sandbox_pages.py prints it; tests assert no durations)


# --- end users and company resolution -------------------------------------------------------


def test_end_user_without_resolvable_company_is_dropped_silently(client: httpx.Client) -> None:
    source = uid("person")
    body = upsert(client, "endusers", [
        {"sourceId": source, "email": "lost@nowhere-known.example", "firstName": "Lost"},
        {"sourceId": uid("person"), "email": "x@y.example", "companyId": "extid-no-such-org"},
    ])  # fmt: skip
    assert body["created"] == 0 and body["createdErrors"] == [] and body["updatedErrors"] == []
    assert client.get(f"/endusers/srcid-{source}").status_code == 404
    # a single POST is ignored the same way: answered, not saved
    response = client.post("/endusers", json={"sourceId": source, "email": "lost@nowhere.example"})
    assert response.status_code == 200 and "_id" not in response.json()
    assert client.get(f"/endusers/srcid-{source}").status_code == 404


def test_end_user_company_resolved_by_srcid_extid_external_id_or_domain(
    client: httpx.Client,
) -> None:
    domain = f"{uid('acme')}.example"
    org = company(client, externalId=uid("ext"), domains=[domain])
    people = {
        "srcid": {"companyId": f"srcid-{org['sourceId']}"},
        "extid": {"companyId": f"extid-{org['externalId']}"},
        "companyExternalId": {"companyExternalId": org["externalId"]},
        "domain": {},
        "subdomain": {},
    }
    items = []
    for how, ref in people.items():
        host = f"mail.{domain}" if how == "subdomain" else domain
        items.append({"sourceId": uid(how), "email": f"{how}@{host}", "firstName": how,
                      "lastName": "Keller", **ref})  # fmt: skip
    body = upsert(client, "endusers", items)
    assert body["created"] == len(items)
    for item in items:
        person = client.get(f"/endusers/srcid-{item['sourceId']}").json()
        assert person["companyId"] == org["_id"]
        assert person["companyName"] == org["name"]
        assert person["name"] == f"{item['firstName']} Keller"
    by_email = client.get("/endusers", params={"email": f"DOMAIN@{domain}"}).json()
    assert [p["sourceId"] for p in by_email] == [items[3]["sourceId"]]


# --- reads ----------------------------------------------------------------------------------


def test_get_by_extid_and_srcid_with_url_encoded_values(client: httpx.Client) -> None:
    ext, src = uid("ext with/slash"), uid("pd org#")
    org = company(client, externalId=ext, sourceId=src)
    for key in (f"extid-{quote(ext, safe='')}", f"srcid-{quote(src, safe='')}", org["_id"]):
        response = client.get(f"/companies/{key}")
        assert response.status_code == 200, key
        assert response.json()["_id"] == org["_id"]
    assert client.get("/companies/extid-nope").status_code == 404
    assert client.get("/companies/000000000000000000000000").status_code == 404
    renamed = client.put(f"/companies/srcid-{quote(src, safe='')}", json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"


def test_list_paging_offset_limit_sort_select_and_caps() -> None:
    seed = PlanhatSeed(
        companies=[{"name": f"Co {i:05d}", "sourceId": str(i)} for i in range(5050)],
        endusers=[],
    )
    sb = PlanhatSandbox(seed, [TOKEN])
    company_id = sb.records("companies")[0]["_id"]
    sb.store.bulk_upsert(
        "endusers",
        [{"companyId": company_id, "email": f"p{i}@x.example", "sourceId": f"p{i}"}
         for i in range(2100)],
    )  # fmt: skip
    sb.store.bulk_upsert(
        "conversations",
        [{"companyId": company_id, "type": "note", "subject": f"n{i}"} for i in range(40)],
    )
    with (
        ServedApp(sb.asgi) as served,
        httpx.Client(base_url=served.url, headers={"authorization": f"Bearer {TOKEN}"}) as c,
    ):
        assert len(c.get("/companies").json()) == 100  # default page
        assert len(c.get("/companies", params={"limit": 9999}).json()) == 5000  # cap
        assert len(c.get("/endusers", params={"limit": 9999}).json()) == 2000
        assert len(c.get("/conversations").json()) == 30
        seen: list[str] = []
        offset = 0
        while True:
            page = c.get("/companies", params={"limit": 1000, "offset": offset}).json()
            seen += [p["sourceId"] for p in page]
            if len(page) < 1000:
                break
            offset += 1000
        assert seen == [str(i) for i in range(5050)]
        top = c.get("/companies", params={"sort": "-name", "limit": 2, "select": "name"}).json()
        assert top == [
            {"_id": top[0]["_id"], "name": "Co 05049"},
            {"_id": top[1]["_id"], "name": "Co 05048"},
        ]
        assert c.get("/companies", params={"sort": "name", "limit": 1}).json()[0]["name"] == (
            "Co 00000"
        )
        assert c.get("/companies", params={"offset": 6000}).json() == []
        lean = c.get("/leancompanies", params={"sourceId": "17"}).json()
        assert lean == [
            {"_id": lean[0]["_id"], "sourceId": "17", "name": "Co 00017", "slug": "co00017"}
        ]


def test_notes_are_conversations_and_notes_path_is_404(client: httpx.Client) -> None:
    org = company(client, externalId=uid("ext"))
    response = client.post("/notes", json={"companyId": org["_id"], "subject": "Kick-off"})
    assert response.status_code == 404
    assert client.get("/notes").status_code == 404
    note = {"type": "note", "companyId": f"extid-{org['externalId']}", "subject": "Kick-off",
            "description": "<p>Go-live on 1 April</p>", "externalId": uid("pd-note")}  # fmt: skip
    created = client.post("/conversations", json=note)
    assert created.status_code == 200
    assert created.json()["companyId"] == org["_id"] and created.json()["type"] == "note"
    listed = client.get("/conversations", params={"type": "note", "companyId": org["_id"]}).json()
    assert [n["subject"] for n in listed] == ["Kick-off"]
    assert client.get(f"/conversations/extid-{note['externalId']}").json()["subject"] == "Kick-off"
    odd = [
        {"companyId": org["_id"]},
        {"companyId": org["_id"], "type": "email", "subject": "reserved type"},
        {"companyId": org["_id"], "type": "Meeting", "subject": "unknown type"},
    ]
    body = upsert(client, "conversations", odd, status=206)
    assert [e["error"] for e in body["createdErrors"]] == [
        "type is required",
        "conversation type 'email' cannot be created over the API",
    ]
    fallback = client.get(f"/conversations/{body['insertsKeys'][0]['_id']}").json()
    assert fallback["type"] == "note"  # a type that does not exist falls back to note


def test_explicit_null_clears_a_field_and_absent_keeps_it(client: httpx.Client) -> None:
    org = company(client, phase="Onboarding", custom={"Industry": "Logistics", "Employees": 240})
    response = client.put(
        f"/companies/{org['_id']}", json={"phase": None, "custom": {"Employees": None}}
    )
    assert response.status_code == 200
    stored = client.get(f"/companies/{org['_id']}").json()
    assert "phase" in stored and stored["phase"] is None
    assert stored["custom"] == {"Industry": "Logistics", "Employees": None}
    assert stored["name"] == org["name"] and stored["sourceId"] == org["sourceId"]
    body = upsert(client, "companies", [{"sourceId": org["sourceId"], "phase": "Live"}])
    assert body["updated"] == 1
    stored = client.get(f"/companies/{org['_id']}").json()
    assert stored["phase"] == "Live" and stored["custom"]["Industry"] == "Logistics"
    bad = client.put(f"/companies/{org['_id']}", json={"name": None})
    assert bad.status_code == 400 and "name" in bad.json()["message"]


def test_delete_removes_the_record(client: httpx.Client, sb: PlanhatSandbox) -> None:
    org = company(client)
    assert client.delete(f"/companies/srcid-{org['sourceId']}").status_code == 200
    assert client.get(f"/companies/{org['_id']}").status_code == 404
    assert org["_id"] not in {c["_id"] for c in sb.records("companies")}
    assert client.delete(f"/companies/{org['_id']}").status_code == 404


# --- limits, faults, counters ---------------------------------------------------------------


def test_hard_rate_limit_answers_429_and_soft_quota_is_reported(
    client: httpx.Client, sb: PlanhatSandbox
) -> None:
    ok = client.get("/users")
    assert ok.headers["x-rate-limit-limit"] == "200"
    assert int(ok.headers["x-rate-limit-remaining"]) < 200
    sb.ratelimit.configure(per_second=3)
    sb.ratelimit.reset()
    try:
        assert client.get("/_sandbox/ratelimit").json()["per_second"] == 3
        statuses = [client.get("/users").status_code for _ in range(8)]
        assert statuses[:3] == [200, 200, 200] and 429 in statuses
        limited = client.get("/users")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    finally:
        restored = client.put("/_sandbox/ratelimit", json={"per_second": 150})
    assert restored.json() == {"per_second": 150, "per_minute_soft": 200}
    assert client.get("/users").status_code == 200


def test_faults_and_counters_over_the_admin_api(client: httpx.Client, sb: PlanhatSandbox) -> None:
    before = sb.counters.get("GET /leancompanies")
    rule = {"route": "/leancompanies", "p_503": 1.0}
    assert client.post("/_sandbox/faults", json=rule).status_code == 201
    try:
        response = client.get("/leancompanies")
        assert response.status_code == 503
    finally:
        client.delete("/_sandbox/faults")
    assert client.get("/leancompanies").status_code == 200
    assert sb.counters.get("GET /leancompanies") == before + 2
    assert sb.counters.get("GET /leancompanies 503") >= 1
    dump = client.get("/_sandbox/dump/companies")
    assert dump.status_code == 200 and len(dump.json()) == len(sb.records("companies"))
