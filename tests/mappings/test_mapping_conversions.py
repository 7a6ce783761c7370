"""A table per conversion: what a user sees in Planhat for each Pipedrive value (and back)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from mappings.values import (
    ABSENT,
    Unconvertible,
    UserDirectory,
    add_months,
    field_hash,
    field_id,
    make_converter,
    parse_time,
    planhat_date,
    planhat_datetime,
    receive_value,
    send_value,
)
from store.records import as_pipedrive_id, values_hash

# -- empty vs null: the one rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "written"),
    [
        (ABSENT, ABSENT),  # absent key: nothing written
        ("", ABSENT),  # empty string: nothing written
        (None, None),  # explicit null: null written
        ("Acme", "Acme"),
        ("  ", "  "),  # only "" counts as empty
    ],
)
def test_empty_writes_nothing_and_null_writes_null(raw: Any, written: Any) -> None:
    assert receive_value(raw, make_converter("text")) == written
    assert send_value(raw, make_converter("text")) == written


@pytest.mark.parametrize(
    "raw",
    [
        {"value": ""},  # an address Pipedrive holds as empty
        {"value": "", "formatted_address": ""},
        {"value": "", "country": "", "locality": ""},
        {"country": "", "locality": ""},  # no `value`, every part empty
        [{"value": "", "primary": True}],
    ],
)
def test_empty_strings_inside_a_value_are_empty_too(raw: Any) -> None:
    assert receive_value(raw, make_converter("address")) is ABSENT


def test_an_address_set_or_cleared_still_writes() -> None:
    address = make_converter("address")
    assert receive_value({"value": "Hauptstr. 1, Berlin"}, address) == "Hauptstr. 1, Berlin"
    assert receive_value({"value": None}, address) is None  # cleared: null
    assert receive_value({"formatted_address": "Berlin"}, address) == "Berlin"


def test_a_cleared_multi_option_field_is_null_on_both_sides() -> None:
    modules = make_converter("set", field_label="Modules", options=[{"id": 1, "label": "CRM"}])
    assert receive_value([], modules) is None  # Pipedrive [] → Planhat null
    assert send_value([], modules) is None  # Planhat [] → Pipedrive null, never []
    assert send_value(None, modules) is None


# -- times -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "planhat"),
    [
        ("2026-06-18T15:40:22Z", "2026-06-18T15:40:22.000Z"),  # v2 (RFC 3339)
        ("2026-06-18 15:40:22", "2026-06-18T15:40:22.000Z"),  # v1 (UTC, no zone)
        ("2026-06-18T15:40:22.318Z", "2026-06-18T15:40:22.318Z"),  # v2 webhook meta
        ("2026-06-18T17:40:22+02:00", "2026-06-18T15:40:22.000Z"),  # an offset
        ("2026-06-18T15:40:22.000Z", "2026-06-18T15:40:22.000Z"),  # Planhat's own form
        (1781797222000, "2026-06-18T15:40:22.000Z"),  # epoch milliseconds
    ],
)
def test_times_become_planhat_times(raw: Any, planhat: str) -> None:
    assert receive_value(raw, make_converter("datetime")) == planhat


@pytest.mark.parametrize(
    ("raw", "planhat"),
    [
        ("2026-06-30", "2026-06-30T00:00:00.000Z"),
        ("2026-06-18T23:59:59Z", "2026-06-18T00:00:00.000Z"),  # a time's UTC day
        ("2026-06-18 01:00:00", "2026-06-18T00:00:00.000Z"),
        ("2026-06-19T01:00:00+02:00", "2026-06-18T00:00:00.000Z"),
        ({"value": "2026-01-01", "until": "2026-12-31"}, "2026-01-01T00:00:00.000Z"),  # range
    ],
)
def test_dates_become_planhat_dates_at_utc_midnight(raw: Any, planhat: str) -> None:
    assert receive_value(raw, make_converter("date")) == planhat


def test_times_and_dates_go_back_in_each_pipedrive_format() -> None:
    value = "2026-06-18T15:40:22.000Z"
    assert send_value(value, make_converter("datetime")) == "2026-06-18T15:40:22Z"  # v2
    assert send_value(value, make_converter("datetime", v1_times=True)) == "2026-06-18 15:40:22"
    assert send_value("2026-06-30T00:00:00.000Z", make_converter("date")) == "2026-06-30"


def test_a_time_that_is_not_a_time_is_refused() -> None:
    with pytest.raises(Unconvertible, match="'next Tuesday' is not a date or time"):
        receive_value("next Tuesday", make_converter("datetime"))


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        ("2026-01-15", 12, "2027-01-15"),
        ("2026-01-31", 1, "2026-02-28"),  # the month has no 31st
        ("2024-02-29", 12, "2025-02-28"),
        ("2026-11-30", 3, "2027-02-28"),
    ],
)
def test_license_length_in_calendar_months(start: str, months: int, end: str) -> None:
    assert planhat_date(add_months(parse_time(start), months)) == planhat_date(end)


# -- money and currency ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "amount"),
    [
        (24000, 24000),  # a deal's value (v2 number)
        (24000.0, 24000),
        (1999.99, 1999.99),
        ({"value": 500, "currency": "USD"}, 500),  # a monetary custom field (v2)
        ({"value": None, "currency": "USD"}, None),
        ("2500", 2500),  # a v1 string
    ],
)
def test_money_becomes_an_amount(raw: Any, amount: Any) -> None:
    assert receive_value(raw, make_converter("money")) == amount


def test_money_goes_back_with_the_fields_currency() -> None:
    monetary = make_converter("money", money_object=True)
    current = {"value": 500, "currency": "EUR"}
    assert send_value(750, monetary, current) == {"value": 750, "currency": "EUR"}
    assert send_value(750, make_converter("money")) == 750  # a deal's own value


@pytest.mark.parametrize(("raw", "code"), [("USD", "USD"), (" eur ", "EUR")])
def test_currency_codes(raw: str, code: str) -> None:
    assert receive_value(raw, make_converter("currency")) == code


# -- option fields -----------------------------------------------------------------------------

TIERS = [{"id": 217, "label": "Enterprise"}, {"id": 218, "label": "Starter"}]


@pytest.mark.parametrize(
    "raw",
    [217, "217", {"id": 217, "label": "Enterprise"}],  # v2, v1, include_option_labels
)
def test_enum_option_ids_become_labels(raw: Any) -> None:
    assert receive_value(raw, make_converter("enum", field_label="Tier", options=TIERS)) == (
        "Enterprise"
    )


def test_enum_labels_go_back_as_option_ids() -> None:
    tier = make_converter("enum", field_label="Tier", options=TIERS)
    assert send_value("enterprise", tier) == 217
    with pytest.raises(Unconvertible) as caught:
        send_value("Gold", tier)
    assert str(caught.value) == (
        "'Gold' is not an option of the Pipedrive field 'Tier' (options: 'Enterprise', 'Starter')"
    )
    with pytest.raises(Unconvertible, match="999 is not an option of the Pipedrive field 'Tier'"):
        receive_value(999, tier)


MODULES = [{"id": 11, "label": "CRM sync"}, {"id": 12, "label": "Analytics"},
           {"id": 14, "label": "API access"}]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "labels"),
    [
        ([14, 11], ["CRM sync", "API access"]),  # v2 ids, listed in the field's option order
        ("14,11", ["CRM sync", "API access"]),  # v1 comma string
        ([{"id": 12, "label": "Analytics"}], ["Analytics"]),
        ([], None),  # cleared
    ],
)
def test_set_option_ids_become_labels(raw: Any, labels: Any) -> None:
    assert receive_value(raw, make_converter("set", field_label="Modules", options=MODULES)) == (
        labels
    )


@pytest.mark.parametrize(
    ("value", "ids"),
    [(["API access", "CRM sync"], [14, 11]), ("CRM sync;Analytics", [11, 12]), ([], None)],
)
def test_set_labels_go_back_as_option_ids(value: Any, ids: Any) -> None:
    assert send_value(value, make_converter("set", field_label="Modules", options=MODULES)) == ids


# -- a person's email and phone ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "primary"),
    [
        (  # OpenAPI v2 person example
            [{"value": "email1@email.com", "primary": True, "label": "work"},
             {"value": "email2@email.com", "primary": False, "label": "home"}],
            "email1@email.com",
        ),
        (  # the primary address is not the first one
            [{"value": "home@x.example", "primary": False, "label": "home"},
             {"value": "work@x.example", "primary": True, "label": "work"}],
            "work@x.example",
        ),
        ([{"value": "", "primary": True}], ABSENT),  # empty in its shape: writes nothing
        ([], None),  # no address any more: cleared
        ("lee@acme.example", "lee@acme.example"),
    ],
)  # fmt: skip
def test_the_primary_email_is_the_planhat_email(raw: Any, primary: Any) -> None:
    assert receive_value(raw, make_converter("primary_email")) == primary


def test_an_email_goes_back_replacing_only_the_primary_address() -> None:
    current = [
        {"value": "old@acme.example", "primary": True, "label": "work"},
        {"value": "me@home.example", "primary": False, "label": "home"},
    ]
    assert send_value("new@acme.example", make_converter("primary_email"), current) == [
        {"value": "new@acme.example", "primary": True, "label": "work"},
        {"value": "me@home.example", "primary": False, "label": "home"},
    ]
    assert send_value("+15550100", make_converter("primary_phone"), []) == [
        {"value": "+15550100", "primary": True, "label": "work"}
    ]


# -- address, owner, notes ---------------------------------------------------------------------


def test_an_address_is_its_one_line_text_and_goes_back_as_an_object() -> None:
    address = {"value": "123 Main St", "country": "USA", "locality": "Sunnyvale"}
    assert receive_value(address, make_converter("address")) == "123 Main St"
    assert send_value("1 Main St", make_converter("address")) == {"value": "1 Main St"}


PIPEDRIVE_USERS = [
    {"id": 913004, "name": "Dana Reyes", "email": "dana@seller.example", "active_flag": True},
    {"id": 913120, "name": "Jonas Berg", "email": "jonas@seller.example", "active_flag": True},
    {"id": 913200, "name": "Priya Raman", "email": "priya@seller.example", "active_flag": True},
]
PLANHAT_USERS = [
    {"_id": "64b7f0c2a1d3e9001f2c4a11", "email": "dana@seller.example"},
    {"_id": "64b7f0c2a1d3e9001f2c4a12", "email": "Jonas@Seller.example"},  # other letter case
    {"_id": "64b7f0c2a1d3e9001f2c4a13", "email": "chiara@seller.example"},  # no Pipedrive user
]


@pytest.mark.parametrize(
    ("raw", "planhat_id"),
    [
        (913004, "64b7f0c2a1d3e9001f2c4a11"),
        ({"id": 913004, "name": "Dana Reyes", "value": 913004}, "64b7f0c2a1d3e9001f2c4a11"),  # v1
        ("913120", "64b7f0c2a1d3e9001f2c4a12"),  # matched ignoring letter case
    ],
)
def test_an_owner_is_the_planhat_team_member_with_the_same_email(raw: Any, planhat_id: str) -> None:
    users = UserDirectory.build(PIPEDRIVE_USERS, PLANHAT_USERS)
    assert receive_value(raw, make_converter("user", users=users)) == planhat_id


def test_an_unmatched_owner_is_left_empty_and_reported() -> None:
    users = UserDirectory.build(PIPEDRIVE_USERS, PLANHAT_USERS)
    with pytest.raises(Unconvertible) as caught:
        receive_value(913200, make_converter("user", users=users))
    assert str(caught.value) == (
        "Pipedrive user 913200 (Priya Raman, priya@seller.example) has no Planhat team member "
        "with the same email; the field is left empty"
    )
    assert send_value("64b7f0c2a1d3e9001f2c4a12", make_converter("user", users=users)) == 913120
    with pytest.raises(Unconvertible, match="chiara@seller.example"):
        send_value("64b7f0c2a1d3e9001f2c4a13", make_converter("user", users=users))


@pytest.mark.parametrize(
    ("html", "subject"),
    [
        ("<p>Call with <b>Lee</b>: they want SSO &amp; SCIM.</p><p>Next</p>",
         "Call with Lee: they want SSO & SCIM."),
        ("Quick note: sent pricing.", "Quick note: sent pricing."),
        ("<h3>Workshop summary</h3><p>Walked through…</p>", "Workshop summary"),
        ("<p>Left a voicemail.&nbsp;Will try again.</p>", "Left a voicemail. Will try again."),
        ("<p>&lt;script&gt; in the CSV</p>", "<script> in the CSV"),
        ("<p>打ち合わせ済み。</p>", "打ち合わせ済み。"),
        ("<p></p>", ABSENT),
        ("<p>" + "x" * 150 + "</p>", "x" * 99 + "…"),
    ],
)  # fmt: skip
def test_a_notes_subject_is_its_first_line_of_text(html: str, subject: Any) -> None:
    assert receive_value(html, make_converter("subject")) == subject


def test_note_html_is_kept_as_it_is() -> None:
    html = "<ul><li>Budget approved</li><li>Needs SSO &amp; SCIM</li></ul>"
    assert receive_value(html, make_converter("html")) == html


@pytest.mark.parametrize(("raw", "flag"), [(True, True), (0, False), ("true", True), ("0", False)])
def test_booleans(raw: Any, flag: bool) -> None:
    assert receive_value(raw, make_converter("boolean")) is flag


@pytest.mark.parametrize(
    ("a", "b"),
    [(1, 1.0), ({"b": 1, "a": [1.0]}, {"a": [1], "b": 1}), ("Zoë", "Zoë")],
)
def test_the_field_hash_is_stable(a: Any, b: Any) -> None:
    assert field_hash(a) == field_hash(b)
    assert field_hash(None) != field_hash("")
    assert len(field_hash(a)) == 64


def test_the_field_hash_is_the_stores_one_hash() -> None:
    assert field_hash("Zoë") == values_hash("Zoë")
    assert field_hash({"a": [1.0]}) == values_hash({"a": [1]})


@pytest.mark.parametrize(
    ("raw", "pipedrive_id"),
    [
        (12, 12), ("12", 12), (" 12 ", 12), (12.0, 12), ({"value": 12, "name": "Acme"}, 12),
        ({"id": "12"}, 12), (True, None), (False, None), (0, None), (-3, None), ("-3", None),
        (1.5, None), (float("nan"), None), ("", None), ("12a", None), ("٤٢", None),
        (None, None), ([12], None), ({"value": {"value": 12}}, None),
    ],
)  # fmt: skip
def test_one_id_rule(raw: Any, pipedrive_id: int | None) -> None:
    assert field_id(raw) == pipedrive_id
    if not isinstance(raw, Mapping):
        assert as_pipedrive_id(raw) == pipedrive_id
    converter = make_converter("id")
    if pipedrive_id is None:
        with pytest.raises(Unconvertible):
            converter.to_planhat(raw)
    else:
        assert converter.to_planhat(raw) == pipedrive_id


def test_planhat_forms() -> None:
    assert planhat_datetime("2026-06-18 15:40:22") == "2026-06-18T15:40:22.000Z"
    assert planhat_date("2026-06-18T15:40:22Z") == "2026-06-18T00:00:00.000Z"
