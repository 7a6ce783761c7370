"""Properties of the engine over generated records (the sandbox account's real field lists):

* an absent or empty source field never changes the target;
* a null source field always nulls the target (or, for a field Planhat requires, skips the
  record with the reason instead of sending what Planhat would refuse);
* receiving a record and sending it back unchanged changes nothing;
* a field whose direction excludes a side is never written to that side;
* a merged and written state merges to nothing the next time (no echo).
"""

from __future__ import annotations

import dataclasses
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mappings_support import account, seed, write_settings

from mappings.loading import load_settings
from mappings.merge import field_hashes, three_way_merge
from mappings.receive import organization_to_company, person_to_enduser
from mappings.resolve import Mappings, Rule, compile_mappings
from mappings.send import company_to_organization, enduser_to_person

COMPANY_ID = "66a1c3f09b2e4d0012ab0001"
ORG_ID = 7

# Every sandbox custom field, matched both ways (types: enum, set, date, monetary, double,
# user, org, varchar, text, phone, address).
_MATCHES = {
    "company": ("organization", [
        "Industry segment", "Tools in use", "Customer since", "Annual budget",
        "Employees (self-reported)", "Health score", "Parent company", "Account ID",
        "Onboarding notes", "Support hotline", "Billing address",
    ], ("coOwner", "Customer success manager")),
    "enduser": ("person", [
        "Role in buying process", "Preferred language", "Interests", "Last training date",
        "NPS score", "LinkedIn profile", "Bio", "Direct line", "Office address",
        "Account manager", "Previous employer", "Personal budget",
    ], None),
}  # fmt: skip


@lru_cache(maxsize=1)
def both_ways() -> Mappings:
    lines = ["custom_matches:"]
    for obj, (_entity, labels, attribute) in _MATCHES.items():
        for label in labels:
            lines.append(
                f'  - {{type: custom, planhat_object: {obj}, planhat_field: "{label}",'
                f' pipedrive_field: "{label}", direction: both}}'
            )
        if attribute:
            lines.append(
                f"  - {{type: attribute, planhat_object: {obj}, planhat_field: {attribute[0]},"
                f' pipedrive_field: "{attribute[1]}", direction: both}}'
            )
    directory = write_settings(
        Path(tempfile.mkdtemp(prefix="pdsync-props-")),
        """\
        version: 1
        connection:
          pipedrive: {company_url: https://acme.pipedrive.com, token_env: PIPEDRIVE_API_TOKEN}
          planhat: {token_env: PLANHAT_API_TOKEN}
        organizations: {direction: both}
        contacts: {direction: both}
        deals: {direction: receive, pipelines: [New business]}
        """,
        custom_matches_yaml="\n".join(lines) + "\n",
    )
    return compile_mappings(load_settings(directory), account())


# -- record strategies -------------------------------------------------------------------------

MISSING = object()  # the key is left out of the record
_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
_users = [u["id"] for u in seed()[0].users]


def _value(field_type: str, options: list[dict[str, Any]] | None) -> st.SearchStrategy[Any]:
    ids = [o["id"] for o in options or []]
    if field_type == "enum":
        return st.sampled_from(ids)
    if field_type == "set":
        return st.lists(st.sampled_from(ids), min_size=1, max_size=4, unique=True)
    if field_type == "date":
        return st.dates().map(lambda d: d.isoformat())
    if field_type == "monetary":
        return st.fixed_dictionaries(
            {"value": st.integers(0, 10**7) | st.floats(0, 1e7, allow_nan=False),
             "currency": st.sampled_from(["EUR", "USD", "JPY"])}
        )  # fmt: skip
    if field_type == "double":
        return st.floats(-1e9, 1e9, allow_nan=False) | st.integers(-(10**9), 10**9)
    if field_type == "user":
        return st.sampled_from(_users)
    if field_type == "org":
        return st.integers(1, 10**6)
    if field_type == "address":
        return st.fixed_dictionaries({"value": _text, "country": _text | st.none()})
    return _text


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value half of the time; else the key left out, an empty string, or null."""
    return st.one_of(strategy, st.sampled_from([MISSING, "", None]))


def _mostly(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Fields Planhat requires: present most of the time, so most records get through."""
    return st.one_of(strategy, strategy, strategy, _maybe(strategy))


def _contacts(min_size: int = 0) -> st.SearchStrategy[Any]:
    item = st.fixed_dictionaries(
        {"value": _text, "primary": st.booleans(), "label": st.sampled_from(["work", "home"])}
    )
    return st.lists(item, min_size=min_size, max_size=3)


def _record(entity: str, system: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    pd, _ = seed()
    fields = {"organization": pd.organization_fields, "person": pd.person_fields}[entity]
    custom = {
        f["field_code"]: _maybe(_value(f["field_type"], f.get("options")))
        for f in fields
        if f["is_custom_field"]
    }

    def build(parts: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
        base, cf = parts
        record = {k: v for k, v in base.items() if v is not MISSING}
        record["custom_fields"] = {k: v for k, v in cf.items() if v is not MISSING}
        return record

    return st.tuples(st.fixed_dictionaries(system), st.fixed_dictionaries(custom)).map(build)


organizations = _record(
    "organization",
    {
        "id": st.just(ORG_ID),
        "name": _mostly(_text),
        "owner_id": _maybe(st.sampled_from(_users)),
        "address": _maybe(_value("address", None)),
        "website": _maybe(_text),
    },
)
persons = _record(
    "person",
    {
        "id": st.just(41),
        "org_id": st.just(ORG_ID),
        "first_name": _maybe(_text),
        "last_name": _maybe(_text),
        "emails": _mostly(_contacts(min_size=1)),
        "phones": _maybe(_contacts()),
        "job_title": _maybe(_text),
    },
)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _receive(obj: str, record: dict[str, Any], mappings: Mappings) -> Any:
    if obj == "company":
        return organization_to_company([record], mappings)
    return person_to_enduser([record], mappings, company_ids={ORG_ID: COMPANY_ID})


def _source(record: dict[str, Any], rule: Rule) -> dict[str, Any]:
    """The part of the record a rule reads from (the record, or its custom_fields)."""
    return record["custom_fields"] if rule.pipedrive_custom else record


def _written(batch: Any) -> dict[str, Any] | None:
    return batch.values[0] if batch.records else None


# -- the properties ----------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), obj=st.sampled_from(["company", "enduser"]))
def test_an_absent_or_empty_source_field_never_changes_the_target(
    data: st.DataObject, obj: str
) -> None:
    mappings = both_ways()
    record = data.draw(organizations if obj == "company" else persons)
    rule = data.draw(st.sampled_from(mappings.receive_rules(obj)))
    emptied = {**record, "custom_fields": dict(record["custom_fields"])}
    source = _source(emptied, rule)
    if data.draw(st.booleans()):
        source.pop(rule.pipedrive_field, None)
    else:
        source[rule.pipedrive_field] = ""
    before = _written(_receive(obj, record, mappings))
    after = _written(_receive(obj, emptied, mappings))
    if after is None:  # the record cannot be created (e.g. no email): it is not sent at all
        return
    # Every target read from that source field (an address and its parts) is left alone ...
    same_source = {
        r.key
        for r in mappings.receive_rules(obj)
        if (r.pipedrive_field, r.pipedrive_custom) == (rule.pipedrive_field, rule.pipedrive_custom)
    }
    assert not same_source & set(after)
    # ... and nothing else changes.
    if before is not None:
        assert {k: v for k, v in before.items() if k not in same_source} == after


@PROPERTY
@given(data=st.data(), obj=st.sampled_from(["company", "enduser"]))
def test_a_null_source_field_always_nulls_the_target(data: st.DataObject, obj: str) -> None:
    mappings = both_ways()
    record = data.draw(organizations if obj == "company" else persons)
    rule = data.draw(st.sampled_from(mappings.receive_rules(obj)))
    nulled = {**record, "custom_fields": dict(record["custom_fields"])}
    _source(nulled, rule)[rule.pipedrive_field] = None
    batch = _receive(obj, nulled, mappings)
    if rule.required:
        assert batch.records == []
        assert f"it has no {rule.key}" in batch.skipped[0].message
        return
    if not batch.records:  # skipped for another required field
        assert batch.skipped
        return
    body = batch.records[0]
    target = body.get("custom", {}) if rule.planhat_custom else body
    assert rule.planhat_field in target and target[rule.planhat_field] is None


@PROPERTY
@given(data=st.data(), obj=st.sampled_from(["company", "enduser"]))
def test_receive_then_send_of_an_unchanged_record_changes_nothing(
    data: st.DataObject, obj: str
) -> None:
    mappings = both_ways()
    record = data.draw(organizations if obj == "company" else persons)
    received = _receive(obj, record, mappings)
    if not received.records:
        return
    planhat_record = {"_id": "x1", **received.records[0]}
    if obj == "company":
        sent = company_to_organization([planhat_record], mappings, current={ORG_ID: record})
    else:
        sent = enduser_to_person([planhat_record], mappings, current={41: record})
    assert sent.records == []
    assert not [i for i in sent.issues if "not an option" in i.message]


@PROPERTY
@given(data=st.data(), obj=st.sampled_from(["company", "enduser"]))
def test_a_field_whose_direction_excludes_a_side_is_never_written_to_it(
    data: st.DataObject, obj: str
) -> None:
    base = both_ways()
    ways = data.draw(
        st.lists(st.sampled_from([(True, False), (False, True), (True, True)]),
                 min_size=len(base.rules[obj]), max_size=len(base.rules[obj]))
    )  # fmt: skip
    rules = tuple(
        dataclasses.replace(rule, receive=r, send=s and rule.send)
        for rule, (r, s) in zip(base.rules[obj], ways, strict=True)
    )
    mappings = dataclasses.replace(base, rules={**base.rules, obj: rules})
    record = data.draw(organizations if obj == "company" else persons)
    received = _receive(obj, record, mappings)
    receivable = {r.key for r in rules if r.receive}
    for values in received.values:
        assert set(values) - {"product", "fromDate", "toDate", "fixedPeriod"} <= receivable
    planhat_record = {
        "_id": "x1", "sourceId": str(record["id"]), "companyId": COMPANY_ID,
        "name": "Changed", "email": "changed@x.example", "firstName": "Changed",
        "owner": None, "web": "https://changed.example", "phone": "+1 555",
        "custom": {r.planhat_field: None for r in rules if r.planhat_custom},
    }  # fmt: skip
    sent = (
        company_to_organization([planhat_record], mappings, current={ORG_ID: record})
        if obj == "company"
        else enduser_to_person([planhat_record], mappings, current={41: record})
    )
    sendable = {(r.pipedrive_field, r.pipedrive_custom) for r in rules if r.send}
    for body in sent.records:
        for key in body:
            if key == "custom_fields":
                assert all((code, True) in sendable for code in body[key])
            elif key != "id":
                assert (key, False) in sendable


@PROPERTY
@given(data=st.data())
def test_a_merged_and_written_state_merges_to_nothing_next_time(data: st.DataObject) -> None:
    mappings = both_ways()
    keys = [r.key for r in mappings.rules["company"]]
    values = st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["a", "b"]))
    side = st.dictionaries(st.sampled_from(keys), values)
    base, pd, ph = data.draw(side), data.draw(side), data.draw(side)
    policy = data.draw(st.sampled_from(["pipedrive_wins", "planhat_wins", "newest_wins"]))
    rules = mappings.rules["company"]
    first = three_way_merge(field_hashes(base), pd, ph, policy, rules=rules)
    pd2, ph2 = {**pd, **first.to_pipedrive}, {**ph, **first.to_planhat}
    second = three_way_merge(first.base, pd2, ph2, policy, rules=rules)
    assert second.to_planhat == {} and second.to_pipedrive == {} and second.conflicts == []
