"""Connection settings are checked before any network call: the company URL table, the
40-character token rule, and Planhat's base URL. Bad input gets a message with an accepted
example and never repeats a secret."""

from __future__ import annotations

import httpx
import pytest
from clients_support import PD_TOKEN, PH_TOKEN

from clients import (
    InvalidSettingError,
    PipedriveClient,
    PlanhatClient,
    check_planhat_token,
    check_token,
    parse_company_url,
)
from clients.planhat import parse_base_url

ACME = (
    "https://acme.pipedrive.com",
    "https://acme.pipedrive.com/api/v1",
    "https://acme.pipedrive.com/api/v2",
)
API = (
    "https://api.pipedrive.com",
    "https://api.pipedrive.com/api/v1",
    "https://api.pipedrive.com/api/v2",
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://acme.pipedrive.com", ACME),
        ("https://acme.pipedrive.com/", ACME),
        ("https://acme.pipedrive.com/v1", ACME),
        ("https://acme.pipedrive.com/v1/", ACME),
        ("https://acme.pipedrive.com/v1//", ACME),
        ("https://acme.pipedrive.com/api/v1", ACME),
        ("https://acme.pipedrive.com/api/v1/", ACME),
        ("https://acme.pipedrive.com/api/v2", ACME),
        ("https://acme.pipedrive.com/api/v2/", ACME),
        ("  https://ACME.Pipedrive.com/V1  ", ACME),
        ("https://acme.pipedrive.com:443/v1", ACME),
        ("https://api.pipedrive.com/v1", API),
        ("https://api.pipedrive.com/v1/", API),
        ("https://api.pipedrive.com/api/v2", API),
        (
            "https://my-team-42.pipedrive.com/v1",
            (
                "https://my-team-42.pipedrive.com",
                "https://my-team-42.pipedrive.com/api/v1",
                "https://my-team-42.pipedrive.com/api/v2",
            ),
        ),
    ],
)
def test_accepted_company_urls_give_v1_and_v2_bases(given: str, expected: tuple) -> None:
    urls = parse_company_url(given)
    assert (urls.company_url, urls.v1, urls.v2) == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        "acme.pipedrive.com",  # no scheme
        "http://acme.pipedrive.com/v1",  # not https
        "https://acme.pipedrive.com/v2",  # v2 lives only under /api/v2
        "https://acme.pipedrive.com/api",
        "https://acme.pipedrive.com/pipeline/1",  # a page of the app, not the API
        "https://acme.pipedrive.com/v1/deals",
        "https://pipedrive.com/v1",
        "https://www.pipedrive.com/v1",
        "https://acme.pipedrive.com.evil.example/v1",  # look-alike host
        "https://acme.evil.example/v1",
        "https://a.b.pipedrive.com/v1",
        "https://acme.pipedrive.com:8443/v1",
        "https://user:pw@acme.pipedrive.com/v1",
        "https://acme.pipedrive.com/v1#x",
        "http://127.0.0.1:8711",  # the sandbox, without the flag
        "http://localhost:8711/api/v1",
        "ftp://acme.pipedrive.com",
        "https://[::1",  # not even a URL
    ],
)
def test_rejected_company_urls_show_an_accepted_example(given: str) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        parse_company_url(given)
    message = str(caught.value)
    assert "https://yourcompany.pipedrive.com" in message
    assert "/v1" in message


def test_the_local_flag_admits_only_loopback_http() -> None:
    urls = parse_company_url("http://127.0.0.1:8711/v1", allow_local_http=True)
    assert (urls.v1, urls.v2) == ("http://127.0.0.1:8711/api/v1", "http://127.0.0.1:8711/api/v2")
    assert parse_company_url("http://localhost:9/", allow_local_http=True).v2 == (
        "http://localhost:9/api/v2"
    )
    with pytest.raises(InvalidSettingError):
        parse_company_url("http://10.0.0.5:8711", allow_local_http=True)
    with pytest.raises(InvalidSettingError):
        parse_company_url("http://acme.pipedrive.com", allow_local_http=True)


def test_a_url_carrying_the_token_is_refused_without_repeating_it() -> None:
    for given in (
        f"https://acme.pipedrive.com/v1?api_token={PD_TOKEN}",
        f"https://acme.pipedrive.com/v1/{PD_TOKEN}",
        PD_TOKEN,  # the token pasted into the URL field
        f"https://{PD_TOKEN}:x@acme.pipedrive.com/v1",
    ):
        with pytest.raises(InvalidSettingError) as caught:
            parse_company_url(given)
        assert PD_TOKEN not in str(caught.value)
        assert PD_TOKEN not in repr(caught.value)


def test_token_must_be_exactly_40_characters() -> None:
    assert check_token(PD_TOKEN) == PD_TOKEN
    assert check_token(f"  {PD_TOKEN}\n") == PD_TOKEN  # pasted with a newline
    for bad, length in ((PD_TOKEN[:-1], 39), (PD_TOKEN + "0", 41), ("", 0)):
        with pytest.raises(
            InvalidSettingError, match=f"exactly 40 characters; the one given has {length}"
        ):
            check_token(bad)
    with pytest.raises(InvalidSettingError, match="spaces"):
        check_token(PD_TOKEN[:20] + " " + PD_TOKEN[21:])
    with pytest.raises(InvalidSettingError, match="ASCII"):
        check_token(PD_TOKEN[:39] + "é")


def test_bad_settings_fail_before_any_network_call() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={})

    transport = httpx.MockTransport(handler)
    with pytest.raises(InvalidSettingError, match="exactly 40"):
        PipedriveClient("https://acme.pipedrive.com/v1", PD_TOKEN[:30], transport=transport)
    with pytest.raises(InvalidSettingError, match="not a Pipedrive company URL"):
        PipedriveClient("https://acme.example.com/v1", PD_TOKEN, transport=transport)
    with pytest.raises(InvalidSettingError):
        PlanhatClient("", transport=transport)
    assert calls == []


def test_planhat_base_url_is_a_planhat_host() -> None:
    assert parse_base_url("https://api.planhat.com/") == "https://api.planhat.com"
    assert parse_base_url("https://api-eu3.planhat.com") == "https://api-eu3.planhat.com"
    assert parse_base_url("http://127.0.0.1:8712", allow_local_http=True) == "http://127.0.0.1:8712"
    for bad in (
        "http://api.planhat.com",
        "https://api.planhat.com/companies",
        "https://planhat.evil.example",
        "https://api.planhat.com?x=1",
        "http://127.0.0.1:8712",
    ):
        with pytest.raises(InvalidSettingError, match="https://api-eu3.planhat.com"):
            parse_base_url(bad)


def test_planhat_token_rule() -> None:
    assert check_planhat_token(f" {PH_TOKEN} ") == PH_TOKEN
    for bad in ("", "   ", "two words"):
        with pytest.raises(InvalidSettingError, match="Service Accounts"):
            check_planhat_token(bad)


def test_reprs_hide_the_tokens() -> None:
    pd = PipedriveClient("https://acme.pipedrive.com", PD_TOKEN)
    ph = PlanhatClient(PH_TOKEN)
    try:
        for text in (
            repr(pd),
            str(pd),
            repr(ph),
            str(ph),
            repr(pd.urls),
            repr(vars(pd)),
            repr(vars(ph)),
        ):
            assert PD_TOKEN not in text and PH_TOKEN not in text
        assert "acme.pipedrive.com" in repr(pd)
    finally:
        pd.close()
        ph.close()
