"""The Planhat client against respx: bulk upsert in chunks of 5,000 with per-item outcomes
(200 and 206), reads by key, offset paging, single writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import respx
from clients_support import PH_TOKEN

from clients import ApiError, PlanhatClient, UnavailableError, extid, srcid
from clients.planhat import parse_bulk_answer

MakePlanhat = Callable[..., PlanhatClient]


def oid(n: int) -> str:
    return f"{n:024x}"


def planhat_bulk(request: httpx.Request) -> httpx.Response:
    """A Planhat-like bulk upsert that creates every item and names it by `_id` only."""
    items = orjson.loads(request.content)
    keys = [{"_id": oid(int(item["sourceId"]))} for item in items]
    return httpx.Response(
        200,
        json={
            "created": len(items),
            "createdErrors": [],
            "insertsKeys": keys,
            "updated": 0,
            "updatedErrors": [],
            "updatesKeys": [],
            "nonupdates": 0,
            "modified": [],
            "upsertedIds": [k["_id"] for k in keys],
            "permissionErrors": [],
        },
    )


@pytest.mark.parametrize(
    ("count", "chunks"), [(1, [1]), (5000, [5000]), (5001, [5000, 1]), (12000, [5000, 5000, 2000])]
)
def test_bulk_upsert_chunks_at_5000_one_at_a_time(
    make_planhat: MakePlanhat, ph_router: respx.Router, count: int, chunks: list[int]
) -> None:
    route = ph_router.put("/licenses").mock(side_effect=planhat_bulk)
    items = ({"sourceId": str(i), "companyId": "c"} for i in range(count))  # a generator
    result = make_planhat().bulk_upsert("licenses", items)
    assert [len(orjson.loads(c.request.content)) for c in route.calls] == chunks
    assert result.requests == len(chunks)
    assert result.ok and result.summary()["created"] == count
    assert [o.index for o in result.items] == list(range(count))
    assert [o.id for o in result.items] == [oid(i) for i in range(count)]  # maps back to input


def test_bulk_upsert_sends_bearer_auth_and_a_json_array(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    route = ph_router.put("/companies").mock(side_effect=planhat_bulk)
    make_planhat().bulk_upsert("companies", [{"sourceId": "1", "name": "Acme", "phase": None}])
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {PH_TOKEN}"
    assert PH_TOKEN not in str(request.url)
    assert orjson.loads(request.content) == [{"sourceId": "1", "name": "Acme", "phase": None}]


def test_nothing_to_upsert_sends_nothing(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    route = ph_router.put("/companies").mock(side_effect=planhat_bulk)
    result = make_planhat().bulk_upsert("companies", [])
    assert route.call_count == 0 and result.items == [] and result.ok


def test_a_206_is_parsed_per_item_and_never_success(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    items = [{"sourceId": "1", "name": "A"}, {"sourceId": "2"}, {"sourceId": "3", "name": "C"}]
    ph_router.put("/companies").mock(
        return_value=httpx.Response(
            206,
            json={
                "created": 2,
                "createdErrors": [{"item": {"sourceId": "2"}, "error": "name is required"}],
                "insertsKeys": [{"_id": oid(1)}, {"_id": oid(3)}],
                "updated": 0,
                "updatedErrors": [],
                "updatesKeys": [],
                "nonupdates": 0,
                "modified": [],
                "upsertedIds": [oid(1), oid(3)],
                "permissionErrors": [],
            },
        )
    )
    result = make_planhat().bulk_upsert("companies", items)
    assert not result.ok and result.partial
    assert [(o.index, o.status, o.id, o.error) for o in result.items] == [
        (0, "created", oid(1), None),
        (1, "failed", None, "name is required"),
        (2, "created", oid(3), None),
    ]
    assert [o.index for o in result.failures] == [1]


def test_a_206_without_named_failures_is_still_not_success(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    ph_router.put("/endusers").mock(
        return_value=httpx.Response(
            206, json={"created": 1, "insertsKeys": [{"_id": oid(1)}], "nonupdates": 0}
        )
    )
    result = make_planhat().bulk_upsert("endusers", [{"sourceId": "1", "companyId": "c"}])
    assert result.partial and not result.ok
    assert result.unattributed_errors


def test_keys_in_the_answer_place_mixed_outcomes_exactly() -> None:
    items = [
        {"sourceId": "a"},
        {"externalId": "b"},
        {"sourceId": "c"},
        {"_id": oid(9)},
        {"sourceId": "e"},
    ]
    body = {
        "created": 1,
        "insertsKeys": [{"_id": oid(3), "sourceId": "c"}],
        "updated": 2,
        "updatesKeys": [{"_id": oid(2), "externalId": "b"}, {"_id": oid(1), "sourceId": "a"}],
        "nonupdates": 1,
        "updatedErrors": [{"item": {"sourceId": "e"}, "error": "companyId is not valid"}],
    }
    outcomes, unattributed = parse_bulk_answer("licenses", items, body, 206)
    assert [(o.status, o.id) for o in outcomes] == [
        ("updated", oid(1)),
        ("updated", oid(2)),
        ("created", oid(3)),
        ("unchanged", oid(9)),
        ("failed", None),
    ]
    assert outcomes[4].error == "companyId is not valid" and unattributed == []


def test_all_unchanged_when_nothing_changed() -> None:
    items = [{"sourceId": str(i)} for i in range(4)]
    outcomes, _ = parse_bulk_answer("companies", items, {"nonupdates": 4}, 200)
    assert {o.status for o in outcomes} == {"unchanged"}


def test_mixed_outcomes_named_only_by_id_are_unknown_not_guessed() -> None:
    items = [{"sourceId": "1"}, {"sourceId": "2"}]
    body = {
        "created": 1,
        "insertsKeys": [{"_id": oid(1)}],
        "updated": 1,
        "updatesKeys": [{"_id": oid(2)}],
        "nonupdates": 0,
    }
    outcomes, _ = parse_bulk_answer("companies", items, body, 200)
    assert [o.status for o in outcomes] == ["unknown", "unknown"]
    assert "does not say whether it created, updated" in (outcomes[0].error or "")


def test_silently_dropped_end_users_are_not_reported_as_saved() -> None:
    items = [{"sourceId": "1", "email": "a@x.io"}, {"sourceId": "2", "email": "b@nowhere.io"}]
    body = {"created": 1, "insertsKeys": [{"_id": oid(1)}], "nonupdates": 0}
    outcomes, _ = parse_bulk_answer("endusers", items, body, 200)
    assert [o.status for o in outcomes] == ["unknown", "unknown"]
    assert "may not have been saved" in (outcomes[1].error or "")
    assert "companyId" in (outcomes[1].error or "")


def test_error_entries_matched_by_item_equality_or_key() -> None:
    items = [{"sourceId": "1", "x": 1}, {"sourceId": "1", "x": 2}, {"name": "no key"}]
    body = {
        "createdErrors": [
            {"item": {"sourceId": "1", "x": 2}, "error": "dup"},
            {"item": {"name": "no key"}, "error": "needs a key"},
        ],
        "insertsKeys": [{"_id": oid(1), "sourceId": "1"}],
        "created": 1,
    }
    outcomes, unattributed = parse_bulk_answer("companies", items, body, 206)
    assert [(o.status, o.error) for o in outcomes] == [
        ("created", None),
        ("failed", "dup"),
        ("failed", "needs a key"),
    ]
    assert unattributed == []


def test_unnamed_errors_are_kept() -> None:
    outcomes, unattributed = parse_bulk_answer(
        "companies",
        [{"sourceId": "1"}, {"sourceId": "2"}],
        {"createdErrors": [{"error": "boom"}], "insertsKeys": [{"_id": oid(1), "sourceId": "1"}]},
        206,
    )
    assert [o.status for o in outcomes] == ["created", "failed"]
    assert outcomes[1].error == "boom" and unattributed == []


def test_a_chunk_refused_with_400_fails_its_items_and_the_next_chunk_still_goes(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    route = ph_router.put("/companies").mock(
        side_effect=[
            httpx.Response(400, json={"message": "duplicate sourceId in payload"}),
            httpx.Response(200, json={"created": 1, "insertsKeys": [{"_id": oid(5)}]}),
        ]
    )
    result = make_planhat().bulk_upsert(
        "companies", [{"sourceId": "1"}, {"sourceId": "1"}, {"sourceId": "5"}], chunk_size=2
    )
    assert route.call_count == 2
    assert [o.status for o in result.items] == ["failed", "failed", "created"]
    assert "duplicate sourceId in payload" in (result.items[0].error or "")
    assert not result.ok


def test_keyed_chunks_are_retried_unkeyed_ones_are_not(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    keyed = ph_router.put("/licenses").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"nonupdates": 1})]
    )
    assert make_planhat().bulk_upsert("licenses", [{"sourceId": "1"}]).ok
    assert keyed.call_count == 2
    unkeyed = ph_router.put("/conversations").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"created": 1})]
    )
    with pytest.raises(UnavailableError, match="not retried"):
        make_planhat().bulk_upsert("conversations", [{"type": "note", "companyId": "c"}])
    assert unkeyed.call_count == 1  # a retry could create the note twice


def test_get_by_id_extid_and_srcid_url_encodes_the_value(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"_id": oid(1)})

    ph_router.route(method="GET").mock(side_effect=handler)
    client = make_planhat()
    client.get("companies", oid(1))
    client.get("companies", extid("ACME/42 x"))
    client.get("endusers", srcid("a+b@c.io"))
    assert seen == [
        f"/companies/{oid(1)}",
        "/companies/extid-ACME%2F42%20x",
        "/endusers/srcid-a%2Bb%40c.io",
    ]


def test_model_names_are_checked(make_planhat: MakePlanhat) -> None:
    with pytest.raises(ValueError, match="not a Planhat model"):
        make_planhat().get("../admin", "x")


def test_not_found(make_planhat: MakePlanhat, ph_router: respx.Router) -> None:
    from clients import NotFoundError

    ph_router.get("/companies/srcid-404").mock(return_value=httpx.Response(404, json="Not Found"))
    with pytest.raises(NotFoundError, match="/companies/srcid-404"):
        make_planhat().get("companies", srcid(404))


def _offset_lists(total: int, cap: int) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        limit = min(int(request.url.params["limit"]), cap)
        offset = int(request.url.params["offset"])
        return httpx.Response(
            200, json=[{"_id": oid(i)} for i in range(offset, min(offset + limit, total))]
        )

    return handler


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        ("companies", 5000),
        ("endusers", 2000),
        ("licenses", 2000),
        ("conversations", 2000),
        ("users", 10000),
    ],
)
def test_lists_page_at_each_models_maximum(
    make_planhat: MakePlanhat, ph_router: respx.Router, model: str, limit: int
) -> None:
    route = ph_router.get(f"/{model}").mock(side_effect=_offset_lists(limit + 1, limit))
    records = list(make_planhat().iter_records(model))
    assert len(records) == limit + 1 == len({r["_id"] for r in records})
    params = [c.request.url.params for c in route.calls]
    # a short last page of a length no server cap has (1) ends the listing at once
    assert [p["limit"] for p in params] == [str(limit)] * 2
    assert [p["offset"] for p in params] == ["0", str(limit)]
    assert params[0]["sort"] == "_id"


def test_a_short_page_of_a_round_length_is_confirmed_by_an_empty_page(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    # 2,500 records: the second page holds 500, which could be a server cap: ask once more
    route = ph_router.get("/endusers").mock(side_effect=_offset_lists(2500, 2000))
    assert len(list(make_planhat().iter_records("endusers"))) == 2500
    assert [c.request.url.params["offset"] for c in route.calls] == ["0", "2000", "2500"]


def test_a_page_capped_below_our_limit_loses_nothing(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    ph_router.get("/conversations").mock(side_effect=_offset_lists(2500, cap=1000))
    assert len(list(make_planhat().iter_records("conversations", filters={"type": "note"}))) == 2500


def test_list_filters(make_planhat: MakePlanhat, ph_router: respx.Router) -> None:
    route = ph_router.get("/endusers").mock(return_value=httpx.Response(200, json=[]))
    list(
        make_planhat().iter_records(
            "endusers", company_id=["a", "b"], select=["email", "name"], filters={"email": "x@y.io"}
        )
    )
    params = route.calls.last.request.url.params
    assert (params["companyId"], params["select"], params["email"]) == (
        "a,b",
        "email,name",
        "x@y.io",
    )


def test_an_ignored_offset_stops_instead_of_looping(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    same_page = [{"_id": oid(i)} for i in range(100)]  # a round length: could be a cap
    ph_router.get("/companies").mock(return_value=httpx.Response(200, json=same_page))
    with pytest.raises(ApiError, match="same page twice"):
        list(make_planhat().iter_records("companies"))


def test_create_update_and_a_silently_dropped_end_user(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    created = ph_router.post("/companies").mock(
        return_value=httpx.Response(200, json={"_id": oid(7), "name": "Acme"})
    )
    updated = ph_router.put("/companies/srcid-8812").mock(
        return_value=httpx.Response(200, json={"_id": oid(7), "name": "Acme Ltd"})
    )
    ph_router.post("/endusers").mock(  # Planhat echoes an end user it could not place
        return_value=httpx.Response(200, json={"email": "x@nowhere.io"})
    )
    client = make_planhat()
    assert client.create("companies", {"name": "Acme", "sourceId": "8812"})["_id"] == oid(7)
    assert client.update("companies", srcid(8812), {"name": "Acme Ltd"})["name"] == "Acme Ltd"
    assert orjson.loads(updated.calls.last.request.content) == {"name": "Acme Ltd"}
    assert created.call_count == 1
    with pytest.raises(ApiError, match="did not save.*companyId"):
        client.create("endusers", {"email": "x@nowhere.io"})


def test_a_create_is_not_retried_after_a_timeout(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    route = ph_router.post("/conversations").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"_id": oid(1)})]
    )
    with pytest.raises(UnavailableError):
        make_planhat().create("conversations", {"type": "note", "companyId": "c"})
    assert route.call_count == 1


def test_permission_errors_on_bulk_raise_with_planhats_message(
    make_planhat: MakePlanhat, ph_router: respx.Router
) -> None:
    from clients import ForbiddenError

    body: dict[str, Any] = {
        "created": 0,
        "permissionErrors": [
            {"model": "companies", "error": "the service account may not upsert companies"}
        ],
    }
    ph_router.put("/companies").mock(return_value=httpx.Response(403, json=body))
    with pytest.raises(ForbiddenError, match="may not upsert companies"):
        make_planhat().bulk_upsert("companies", [{"sourceId": "1"}])
