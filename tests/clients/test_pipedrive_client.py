"""The Pipedrive client against respx: header auth, both paging styles at their boundaries,
`ids` in calls of 100, the connection check, writes and webhooks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import orjson
import pytest
import respx
from clients_support import PD_TOKEN, pd_error, pd_response

from clients import AuthError, NotFoundError, PipedriveClient
from clients.errors import ApiError

MakePipedrive = Callable[..., PipedriveClient]


def cursor_pages(route: respx.Route, total: int, page_size: int = 500) -> None:
    """Serve `total` deals with v2 cursor paging, honouring the request's `limit`."""

    def handler(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params["limit"])
        start = int(request.url.params.get("cursor") or 0)
        ids = list(range(start + 1, min(start + limit, total) + 1))
        nxt = str(start + limit) if start + limit < total else None
        return pd_response([{"id": i} for i in ids], next_cursor=nxt)

    route.side_effect = handler


def offset_pages(route: respx.Route, total: int) -> None:
    """Serve `total` notes with v1 offset paging (`next_start` only when more exist)."""

    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["start"])
        limit = int(request.url.params["limit"])
        ids = list(range(start + 1, min(start + limit, total) + 1))
        more = start + limit < total
        pagination = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return pd_response([{"id": i} for i in ids], pagination=pagination)

    route.side_effect = handler


def test_token_goes_only_in_the_x_api_token_header(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    route = pd_router.get("/api/v1/users/me").mock(
        return_value=pd_response({"id": 7, "name": "Dana", "company_domain": "acme"})
    )
    make_pipedrive().check_connection()
    request = route.calls.last.request
    assert request.headers["x-api-token"] == PD_TOKEN
    assert PD_TOKEN not in str(request.url)
    assert "api_token" not in str(request.url)


def test_check_connection_returns_the_user_and_company(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    pd_router.get("/api/v1/users/me").mock(
        return_value=pd_response(
            {
                "id": 7,
                "name": "Dana Reyes",
                "email": "dana@acme.example",
                "company_id": 55,
                "company_name": "Acme",
                "company_domain": "acme",
                "timezone_name": "UTC",
            }
        )
    )
    user = make_pipedrive().check_connection()
    assert (user.id, user.name, user.company_domain) == (7, "Dana Reyes", "acme")
    assert user.company_url == "https://acme.pipedrive.com"


def test_401_says_what_the_user_can_do(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    pd_router.get("/api/v1/users/me").mock(
        return_value=httpx.Response(
            401,
            json={
                "success": False,
                "error": "unauthorized access",
                "errorCode": 401,
                "error_info": "Please check developers.pipedrive.com",
            },
            headers={"x-401-by-gw": "true"},
        )
    )
    with pytest.raises(AuthError) as caught:
        make_pipedrive().check_connection()
    message = str(caught.value)
    for words in (
        "token is wrong",
        "deleted",
        "removed from Pipedrive",
        "Settings → API",
        "create a new",
        "save it again",
    ):
        assert words.lower() in message.lower(), words
    assert caught.value.status == 401 and caught.value.path == "/api/v1/users/me"
    assert len(pd_router.calls) == 1  # a 401 is not retried


@pytest.mark.parametrize("total", [0, 1, 499, 500, 501, 1000, 1001])
def test_v2_cursor_paging_reads_every_record_once_at_500(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, total: int
) -> None:
    route = pd_router.get("/api/v2/deals")
    cursor_pages(route, total)
    ids = [deal["id"] for deal in make_pipedrive().iter_deals()]
    assert ids == list(range(1, total + 1))
    assert route.call_count == max(1, -(-total // 500))
    assert {call.request.url.params["limit"] for call in route.calls} == {"500"}
    assert "cursor" not in route.calls[0].request.url.params


@pytest.mark.parametrize("total", [0, 1, 500, 501, 1500])
def test_v1_offset_paging_reads_every_note_once_at_500(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, total: int
) -> None:
    route = pd_router.get("/api/v1/notes")
    offset_pages(route, total)
    ids = [note["id"] for note in make_pipedrive().iter_notes(deal_id=9)]
    assert ids == list(range(1, total + 1))
    assert route.call_count == max(1, -(-total // 500))
    assert [c.request.url.params["start"] for c in route.calls] == [
        str(500 * i) for i in range(route.call_count)
    ]
    assert all(c.request.url.params["deal_id"] == "9" for c in route.calls)


def test_v1_paging_without_next_start_moves_by_the_page_length(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    pages = iter(
        [
            pd_response([{"id": 1}, {"id": 2}], pagination={"more_items_in_collection": True}),
            pd_response([{"id": 3}], pagination={"more_items_in_collection": False}),
        ]
    )
    route = pd_router.get("/api/v1/notes").mock(side_effect=lambda request: next(pages))
    assert [n["id"] for n in make_pipedrive().iter_notes(org_id=4)] == [1, 2, 3]
    assert route.calls[1].request.url.params["start"] == "2"


def test_paging_is_lazy_one_page_at_a_time(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    route = pd_router.get("/api/v2/deals")
    cursor_pages(route, 5000)
    deals = make_pipedrive().iter_deals()
    assert route.call_count == 0
    first = [next(deals) for _ in range(501)]
    assert first[-1]["id"] == 501 and route.call_count == 2


def test_a_repeated_cursor_stops_instead_of_looping(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    route = pd_router.get("/api/v2/organizations").mock(
        return_value=pd_response([{"id": 1}], next_cursor="same")
    )
    with pytest.raises(ApiError, match="same page cursor twice"):
        list(make_pipedrive().iter_organizations())
    assert route.call_count == 2


def test_deal_filters_are_sent_as_pipedrive_expects(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    route = pd_router.get("/api/v2/deals").mock(return_value=pd_response([], next_cursor=None))
    since = datetime(2026, 3, 1, 10, 20, 30, 987654, tzinfo=timezone(timedelta(hours=2)))
    list(
        make_pipedrive().iter_deals(
            updated_since=since,
            status=["won", "lost"],
            pipeline_id=3,
            sort_by="update_time",
            sort_direction="asc",
        )
    )
    params = route.calls.last.request.url.params
    # whole seconds in UTC (the fraction is dropped: earlier, never later)
    assert params["updated_since"] == "2026-03-01T08:20:30Z"
    assert params["status"] == "won,lost"
    assert params["pipeline_id"] == "3"
    assert (params["sort_by"], params["sort_direction"]) == ("update_time", "asc")


def test_a_naive_datetime_is_refused_before_any_call(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_pipedrive().iter_deals(updated_since=datetime(2026, 1, 1))
    assert not pd_router.calls


@pytest.mark.parametrize(("count", "calls"), [(0, 0), (1, 1), (100, 1), (101, 2), (250, 3)])
def test_many_by_id_in_calls_of_100(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, count: int, calls: int
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = [int(i) for i in request.url.params["ids"].split(",")]
        assert len(ids) <= 100
        return pd_response([{"id": i} for i in ids], next_cursor=None)

    route = pd_router.get("/api/v2/persons").mock(side_effect=handler)
    wanted = list(range(1000, 1000 + count))
    got = [p["id"] for p in make_pipedrive().iter_persons(ids=wanted + wanted[:5])]  # duplicates
    assert got == wanted
    assert route.call_count == calls


def test_ids_combine_with_other_filters(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    route = pd_router.get("/api/v2/deals").mock(return_value=pd_response([], next_cursor=None))
    list(make_pipedrive().iter_deals(ids=[5, 6], status="won"))
    params = route.calls.last.request.url.params
    assert (params["ids"], params["status"], params["limit"]) == ("5,6", "won", "500")


def test_every_list_endpoint_pages(make_pipedrive: MakePipedrive, pd_router: respx.Router) -> None:
    client = make_pipedrive()
    listings = {
        "/api/v2/pipelines": client.iter_pipelines,
        "/api/v2/stages": lambda: client.iter_stages(pipeline_id=2),
        "/api/v2/dealFields": client.iter_deal_fields,
        "/api/v2/organizationFields": client.iter_organization_fields,
        "/api/v2/personFields": client.iter_person_fields,
    }
    for path, listing in listings.items():
        route = pd_router.get(path)
        cursor_pages(route, 501)
        assert len(list(listing())) == 501, path
        assert route.call_count == 2, path
    route = pd_router.get("/api/v1/webhooks")
    offset_pages(route, 3)
    assert len(client.list_webhooks()) == 3


def test_get_one_deal_and_not_found(make_pipedrive: MakePipedrive, pd_router: respx.Router) -> None:
    pd_router.get("/api/v2/deals/4821").mock(
        return_value=pd_response({"id": 4821, "status": "won"})
    )
    pd_router.get("/api/v2/deals/9").mock(
        return_value=pd_error(404, "Entity was not found", error_info="Object was not found.")
    )
    client = make_pipedrive()
    assert client.get_deal(4821)["status"] == "won"
    with pytest.raises(NotFoundError, match="Entity was not found") as caught:
        client.get_deal(9)
    assert caught.value.path == "/api/v2/deals/9"


def test_success_false_with_200_is_an_error(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    pd_router.get("/api/v2/deals/1").mock(
        return_value=httpx.Response(200, json={"success": False, "error": "Something odd"})
    )
    with pytest.raises(ApiError, match="Something odd"):
        make_pipedrive().get_deal(1)


def test_writes_use_v2_patch_and_v1_notes(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    client = make_pipedrive()
    created = pd_router.post("/api/v2/organizations").mock(
        return_value=pd_response({"id": 11, "name": "Acme"}, status=201)
    )
    patched = pd_router.patch("/api/v2/organizations/11").mock(
        return_value=pd_response({"id": 11, "name": "Acme Ltd"})
    )
    pd_router.post("/api/v2/persons").mock(return_value=pd_response({"id": 12}))
    pd_router.patch("/api/v2/persons/12").mock(return_value=pd_response({"id": 12}))
    pd_router.post("/api/v2/deals").mock(return_value=pd_response({"id": 13}))
    pd_router.patch("/api/v2/deals/13").mock(return_value=pd_response({"id": 13}))
    note = pd_router.post("/api/v1/notes").mock(return_value=pd_response({"id": 14}))
    note_put = pd_router.put("/api/v1/notes/14").mock(return_value=pd_response({"id": 14}))

    assert client.create_organization({"name": "Acme"})["id"] == 11
    assert (
        client.update_organization(11, {"name": "Acme Ltd", "custom_fields": {"abc": None}})["name"]
        == "Acme Ltd"
    )
    assert client.create_person({"name": "Lee"})["id"] == 12
    assert client.update_person(12, {"name": "Lee N"})["id"] == 12
    assert client.create_deal({"title": "T"})["id"] == 13
    assert client.update_deal(13, {"status": "won"})["id"] == 13
    assert client.create_note({"content": "<p>hi</p>", "deal_id": 13})["id"] == 14
    assert client.update_note(14, {"content": "<p>bye</p>"})["id"] == 14
    assert orjson.loads(created.calls.last.request.content) == {"name": "Acme"}
    assert orjson.loads(patched.calls.last.request.content) == {
        "name": "Acme Ltd",
        "custom_fields": {"abc": None},
    }  # null is sent, not dropped
    assert patched.calls.last.request.headers["content-type"] == "application/json"
    assert orjson.loads(note.calls.last.request.content)["deal_id"] == 13
    assert note_put.call_count == 1


def test_webhook_create_is_version_2_with_basic_auth_and_a_name(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    route = pd_router.post("/api/v1/webhooks").mock(
        return_value=pd_response({"id": 204118, "version": "2.0"}, status=201)
    )
    deleted = pd_router.delete("/api/v1/webhooks/204118").mock(
        return_value=httpx.Response(200, json={"success": True, "status": "ok"})
    )
    client = make_pipedrive()
    hook = client.create_webhook(
        subscription_url="https://hooks.example/pd",
        name="pdsync",
        http_auth_user="pd",
        http_auth_password="s3cret",
        user_id=7,
    )
    assert hook["id"] == 204118
    body = orjson.loads(route.calls.last.request.content)
    assert body == {
        "subscription_url": "https://hooks.example/pd",
        "event_action": "*",
        "event_object": "deal",
        "name": "pdsync",
        "version": "2.0",
        "http_auth_user": "pd",
        "http_auth_password": "s3cret",
        "user_id": 7,
    }
    client.delete_webhook(204118)
    assert deleted.call_count == 1


def test_webhook_validation_errors_carry_pipedrive_message(
    make_pipedrive: MakePipedrive, pd_router: respx.Router
) -> None:
    pd_router.post("/api/v1/webhooks").mock(
        return_value=httpx.Response(
            400,
            json={
                "success": False,
                "status": "error",
                "errors": {"subscription_url": ["invalid or non-reachable URL"]},
            },
        )
    )
    from clients import BadRequestError

    with pytest.raises(BadRequestError, match="subscription_url: invalid or non-reachable URL"):
        make_pipedrive().create_webhook(
            subscription_url="http://x", name="n", http_auth_user="u", http_auth_password="p"
        )
    assert len(pd_router.calls) == 1


def test_connection_to_api_host_uses_api_prefixes(fake_time: object) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return pd_response({"id": 1})

    with PipedriveClient(
        "https://api.pipedrive.com/v1", PD_TOKEN, transport=httpx.MockTransport(handler)
    ) as client:
        client.check_connection()
        client.get_deal(1)
    assert seen == [
        "https://api.pipedrive.com/api/v1/users/me",
        "https://api.pipedrive.com/api/v2/deals/1",
    ]


def test_rfc3339_helper_keeps_strings_and_converts_to_utc() -> None:
    from clients.pipedrive import rfc3339

    assert rfc3339("2025-01-01T00:00:00Z") == "2025-01-01T00:00:00Z"
    assert rfc3339(datetime(2025, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)) == "2025-01-01T23:59:59Z"


def test_iter_users_lists_every_user_of_the_company(sandbox_small) -> None:  # type: ignore[no-untyped-def]
    from clients.pipedrive import PipedriveClient

    with PipedriveClient(
        sandbox_small.pipedrive_url, sandbox_small.pipedrive_token, allow_local_http=True
    ) as client:
        users = list(client.iter_users())
    assert {u["email"] for u in users} == {u["email"] for u in sandbox_small.pipedrive_seed.users}
