"""The clients end to end against the sandbox (real HTTP, the real APIs' shapes), with faults
injected: paging, limits, 429 storms, 5xx, hangs, dropped connections, bulk upserts.

Tests that only read use the session's `sandbox_small`; tests that write, fault or re-limit use
this module's own sandbox, and undo their faults."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest

from clients import (
    AuthError,
    NotFoundError,
    PipedriveClient,
    PlanhatClient,
    RateLimitedError,
    RetryPolicy,
    UnavailableError,
    srcid,
)
from sandbox.runner import Sandbox

FAST_RETRY = RetryPolicy(
    max_attempts=6, max_total_wait_s=30, backoff_base_s=0.05, backoff_max_s=0.5
)


def pipedrive_of(sb: Sandbox, **kwargs: object) -> PipedriveClient:
    return PipedriveClient(sb.pipedrive_url, sb.pipedrive_token, allow_local_http=True, **kwargs)  # type: ignore[arg-type]


def planhat_of(sb: Sandbox, **kwargs: object) -> PlanhatClient:
    return PlanhatClient(sb.planhat_token, base_url=sb.planhat_url, allow_local_http=True, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def own() -> Iterator[Sandbox]:
    with Sandbox("small", webhook_time_scale=0.01) as sb:
        yield sb


@pytest.fixture()
def sb(own: Sandbox) -> Iterator[Sandbox]:
    own.clear_faults()
    own.pipedrive.counters.reset()
    own.planhat.counters.reset()
    yield own
    own.clear_faults()
    own.pipedrive.ratelimit.configure(burst=40, window_s=2.0, daily_budget=1_000_000)
    own.pipedrive.ratelimit.reset()
    own.planhat.ratelimit.configure(per_second=150)
    own.planhat.ratelimit.reset()


# -- Pipedrive: reads -----------------------------------------------------------------------------
def test_check_connection_against_the_sandbox(sandbox_small: Sandbox) -> None:
    with pipedrive_of(sandbox_small) as pd:
        user = pd.check_connection()
    assert user.id == sandbox_small.pipedrive_seed.me_user_id
    assert user.company_domain == sandbox_small.pipedrive_seed.company["domain"]


def test_a_wrong_token_is_an_auth_error_after_one_request(sb: Sandbox) -> None:
    with PipedriveClient(sb.pipedrive_url, "f" * 40, allow_local_http=True) as pd:
        with pytest.raises(AuthError, match="removed from Pipedrive"):
            pd.check_connection()
    assert sb.pipedrive.counters.get("GET /api/v1/users/me") == 1


def test_every_list_reads_every_record_once(sandbox_small: Sandbox) -> None:
    seed = sandbox_small.pipedrive_seed
    with pipedrive_of(sandbox_small) as pd:
        deals = [d["id"] for d in pd.iter_deals()]
        orgs = [o["id"] for o in pd.iter_organizations()]
        persons = [p["id"] for p in pd.iter_persons()]
        notes = [n["id"] for n in pd.iter_notes()]
        assert len(list(pd.iter_pipelines())) == len(seed.pipelines)
        assert len(list(pd.iter_stages())) == len(seed.stages)
        assert len(list(pd.iter_deal_fields())) == len(seed.deal_fields)
        assert len(list(pd.iter_organization_fields())) == len(seed.organization_fields)
        assert len(list(pd.iter_person_fields())) == len(seed.person_fields)
    live = [d for d in seed.deals if not d.get("is_deleted") and not d.get("is_archived")]
    assert sorted(deals) == sorted(d["id"] for d in live) and len(set(deals)) == len(deals)
    assert (
        len(set(orgs))
        == len(orgs)
        == len([o for o in seed.organizations if not o.get("is_deleted")])
    )
    assert (
        len(set(persons))
        == len(persons)
        == len([p for p in seed.persons if not p.get("is_deleted")])
    )
    assert (
        len(set(notes)) == len(notes) == len([n for n in seed.notes if n.get("active_flag", True)])
    )


def test_filters_and_ids_against_the_sandbox(sandbox_small: Sandbox) -> None:
    seed = sandbox_small.pipedrive_seed
    won = {
        d["id"]
        for d in seed.deals
        if d["status"] == "won" and not d.get("is_deleted") and not d.get("is_archived")
    }
    some_persons = [p["id"] for p in seed.persons if not p.get("is_deleted")][:101]
    deal = next(d for d in seed.deals if d.get("org_id") and not d.get("is_deleted"))
    with pipedrive_of(sandbox_small) as pd:
        assert {d["id"] for d in pd.iter_deals(status="won")} == won
        before = sandbox_small.pipedrive.counters.get("GET /api/v2/persons")
        got = [p["id"] for p in pd.iter_persons(ids=some_persons)]
        assert sorted(got) == sorted(some_persons)
        assert sandbox_small.pipedrive.counters.get("GET /api/v2/persons") - before == 2
        notes = list(pd.iter_notes(deal_id=deal["id"]))
        assert all(n["deal_id"] == deal["id"] for n in notes)
        assert pd.get_deal(deal["id"])["id"] == deal["id"]
        since = list(pd.iter_deals(updated_since="2100-01-01T00:00:00Z"))
        assert since == []


# -- Pipedrive: limits ----------------------------------------------------------------------------
@pytest.mark.slow
def test_a_lowered_burst_limit_is_never_hit(sb: Sandbox) -> None:
    """The limiter reads x-ratelimit-remaining/reset and waits: zero 429s, no retries."""
    sb.pipedrive.ratelimit.configure(burst=4, window_s=1.0)
    sb.pipedrive.ratelimit.reset()
    deal_ids = [d["id"] for d in sb.pipedrive_seed.deals if not d.get("is_deleted")][:14]
    with pipedrive_of(sb) as pd:
        for deal_id in deal_ids:
            pd.get_deal(deal_id)
    assert sb.pipedrive.counters.get("GET /api/v2/deals/{id}") == 14
    assert sb.pipedrive.counters.get("GET /api/v2/deals/{id} 429") == 0


def test_a_429_storm_ends_in_success_with_few_requests(sb: Sandbox) -> None:
    sb.add_fault("pipedrive", route="/api/v2/deals", p_429_no_retry_after=0.6)
    with pipedrive_of(sb, retry=FAST_RETRY) as pd:
        deals = list(pd.iter_deals())
    assert deals
    total = sb.pipedrive.counters.get("GET /api/v2/deals")
    refused = sb.pipedrive.counters.get("GET /api/v2/deals 429")
    assert total == 1 + refused and refused <= FAST_RETRY.max_attempts - 1


@pytest.mark.slow
def test_a_persistent_429_storm_ends_in_one_clear_error(sb: Sandbox) -> None:
    sb.add_fault("pipedrive", route="/api/v2/deals", p_429=1.0, retry_after_s=1)
    started = time.monotonic()
    with pipedrive_of(sb, retry=RetryPolicy(max_attempts=3, max_total_wait_s=10)) as pd:
        with pytest.raises(RateLimitedError, match="after 3 attempts") as caught:
            list(pd.iter_deals())
    assert sb.pipedrive.counters.get("GET /api/v2/deals") == 3  # counted: no hot loop
    assert time.monotonic() - started >= 1.9  # honoured Retry-After: 1 s, twice
    assert caught.value.attempts == 3


def test_the_burst_limit_itself_is_survived(sb: Sandbox) -> None:
    """Another client hammering the same token leaves us 0 in the window: Pipedrive's own 429
    (no Retry-After; remaining 0 + reset) is waited out."""
    sb.pipedrive.ratelimit.configure(burst=2, window_s=1.0)
    sb.pipedrive.ratelimit.reset()
    import httpx

    with httpx.Client(
        base_url=sb.pipedrive_url, headers={"x-api-token": sb.pipedrive_token}
    ) as other:
        for _ in range(2):
            other.get("/api/v2/pipelines")
    with pipedrive_of(sb, retry=FAST_RETRY) as pd:
        assert list(pd.iter_pipelines())
    assert sb.pipedrive.counters.get("GET /api/v2/pipelines 429") == 1
    assert sb.pipedrive.counters.get("GET /api/v2/pipelines 200") == 3


def test_a_spent_daily_budget_stops_at_once(sb: Sandbox) -> None:
    sb.pipedrive.ratelimit.configure(daily_budget=1)
    sb.pipedrive.ratelimit.reset()
    with pipedrive_of(sb, retry=FAST_RETRY) as pd:
        pd.check_connection()
        with pytest.raises(RateLimitedError, match="daily API budget is spent") as caught:
            list(pd.iter_deals())
    assert caught.value.daily_budget_spent
    assert "x-daily-ratelimit-token-remaining: 0" in str(caught.value)
    assert sb.pipedrive.counters.get("GET /api/v2/deals") == 1


def test_the_daily_budget_is_spent_in_tokens_and_stops_writes_too(sb: Sandbox) -> None:
    """The sandbox charges each endpoint's token cost; the client reads the budget headers and
    stops, without retrying, on the first request after the budget ran out (a write too)."""
    # users/me 2 + a v2 list page 10 + a deal (v2 get 1) = 13: the next request is refused
    sb.pipedrive.ratelimit.configure(daily_budget=13)
    sb.pipedrive.ratelimit.reset()
    with pipedrive_of(sb, retry=FAST_RETRY) as pd:
        pd.check_connection()
        first = next(pd.iter_deals())
        pd.get_deal(first["id"])
        assert sb.pipedrive.ratelimit.spent(str(sb.pipedrive_seed.company["id"])) == 13
        with pytest.raises(RateLimitedError) as caught:
            pd.create_note({"content": "<p>over budget</p>", "deal_id": first["id"]})
    assert caught.value.daily_budget_spent and caught.value.attempts == 1
    assert "midnight" in str(caught.value)
    assert sb.pipedrive.counters.get("POST /api/v1/notes 429") == 1
    assert sb.pipedrive.counters.get("POST /api/v1/notes") == 1  # not retried


# -- Pipedrive: transient faults ------------------------------------------------------------------
def test_5xx_faults_are_retried_to_success(sb: Sandbox) -> None:
    sb.add_fault("pipedrive", route="/api/v2/persons*", p_503=0.3, p_500=0.1, p_502=0.1)
    with pipedrive_of(sb, retry=FAST_RETRY) as pd:
        persons = list(pd.iter_persons())
        for person in persons[:10]:
            assert pd.get_person(person["id"])["id"] == person["id"]
    expected = len([p for p in sb.pipedrive_seed.persons if not p.get("is_deleted")])
    assert len({p["id"] for p in persons}) == expected
    failed = sum(
        sb.pipedrive.counters.get(f"GET /api/v2/persons{s} {c}")
        for s in ("", "/{id}")
        for c in (500, 502, 503)
    )
    assert failed > 0  # the faults did happen, and were cured


def test_dropped_connections_are_retried_to_success(sb: Sandbox) -> None:
    sb.add_fault("pipedrive", route="/api/v2/organizations", p_drop=0.5)
    with pipedrive_of(sb, retry=FAST_RETRY) as pd:
        orgs = list(pd.iter_organizations())
    assert len(orgs) == len([o for o in sb.pipedrive_seed.organizations if not o.get("is_deleted")])
    assert sb.pipedrive.counters.get("GET /api/v2/organizations") >= 1


@pytest.mark.slow
def test_a_hang_times_out_and_is_retried(sb: Sandbox) -> None:
    sb.add_fault("pipedrive", route="/api/v2/pipelines", p_hang=0.5, hang_s=1.5)
    with pipedrive_of(sb, retry=FAST_RETRY, timeout_s=0.4) as pd:
        for _ in range(4):
            assert list(pd.iter_pipelines())
    assert sb.pipedrive.counters.get("GET /api/v2/pipelines") > 4  # some hung, all recovered


def test_a_create_is_not_retried_after_a_server_error(sb: Sandbox) -> None:
    sb.add_fault("pipedrive", route="/api/v1/notes", method="POST", p_503=1.0)
    deal = next(d for d in sb.pipedrive_seed.deals if not d.get("is_deleted"))
    with pipedrive_of(sb, retry=FAST_RETRY) as pd:
        with pytest.raises(UnavailableError, match="not retried"):
            pd.create_note({"content": "<p>hello</p>", "deal_id": deal["id"]})
    assert sb.pipedrive.counters.get("POST /api/v1/notes") == 1


def test_writes_and_webhooks_end_to_end(sb: Sandbox) -> None:
    with pipedrive_of(sb) as pd:
        org = pd.create_organization({"name": "Client Test Org"})
        assert pd.update_organization(org["id"], {"name": "Client Test Org 2"})["name"] == (
            "Client Test Org 2"
        )
        person = pd.create_person({"name": "Lee Client", "org_id": org["id"]})
        assert pd.update_person(person["id"], {"name": "Lee C."})["name"] == "Lee C."
        deal = pd.create_deal({"title": "Client deal", "org_id": org["id"]})
        assert pd.update_deal(deal["id"], {"status": "won"})["status"] == "won"
        note = pd.create_note({"content": "<p>a</p>", "deal_id": deal["id"]})
        assert pd.update_note(note["id"], {"content": "<p>b</p>"})["id"] == note["id"]
        before = len(pd.list_webhooks())
        hook = pd.create_webhook(
            subscription_url="https://hooks.example/pd",
            name="pdsync test",
            http_auth_user="pd",
            http_auth_password="pw",
        )
        assert hook["version"] == "2.0" and hook["name"] == "pdsync test"
        assert len(pd.list_webhooks()) == before + 1
        pd.delete_webhook(hook["id"])
        assert len(pd.list_webhooks()) == before


# -- Planhat --------------------------------------------------------------------------------------
def test_planhat_bulk_upsert_created_then_unchanged_then_partial(sb: Sandbox) -> None:
    companies = [{"sourceId": f"cl-{i}", "name": f"Client Co {i}"} for i in range(3)]
    with planhat_of(sb) as ph:
        first = ph.bulk_upsert("companies", companies)
        assert first.ok and [o.status for o in first.items] == ["created"] * 3
        ids = [o.id for o in first.items]
        assert ph.get("companies", srcid("cl-1"))["_id"] == ids[1]  # mapped back correctly

        again = ph.bulk_upsert("companies", companies)
        assert again.ok and [o.status for o in again.items] == ["unchanged"] * 3

        changed = [
            {"sourceId": "cl-0", "name": "Renamed Co"},
            {"sourceId": "cl-new"},  # no name
            {"sourceId": "cl-2", "name": "Client Co 2"},
        ]
        partial = ph.bulk_upsert("companies", changed)
    assert partial.partial and not partial.ok
    assert partial.items[1].status == "failed" and partial.items[1].error
    # Planhat names the matching key beside `_id`, so a mixed answer maps exactly
    assert (partial.items[0].status, partial.items[0].id) == ("updated", ids[0])
    assert partial.items[2].status == "unchanged"
    assert sb.planhat.counters.get("PUT /companies 206") == 1


def test_planhat_chunk_refused_as_a_whole_fails_its_items_with_planhats_message(
    sb: Sandbox,
) -> None:
    """The sandbox answers 400 to a chunk that names one record twice; the client reports each
    item of that chunk failed with Planhat's message, and the other chunks still go."""
    items = [
        {"sourceId": "whole-0", "name": "Whole 0"},
        {"sourceId": "whole-1", "name": "Whole 1"},
        {"sourceId": "whole-dup", "name": "Dup A"},  # second chunk: sourceId twice
        {"sourceId": "whole-dup", "name": "Dup B"},
        {"sourceId": "whole-4", "name": "Whole 4"},
    ]
    with planhat_of(sb, retry=FAST_RETRY) as ph:
        result = ph.bulk_upsert("companies", items, chunk_size=2)
        with pytest.raises(NotFoundError):
            ph.get("companies", srcid("whole-dup"))  # nothing of the refused chunk was written
    assert result.requests == 3 and not result.ok
    assert [o.status for o in result.items] == ["created", "created", "failed", "failed", "created"]
    for outcome in result.items[2:4]:
        assert outcome.error and "duplicate sourceId 'whole-dup'" in outcome.error
        assert "HTTP 400" in outcome.error
    assert sb.planhat.counters.get("PUT /companies 400") == 1  # a 400 is not retried


def test_planhat_bulk_chunks_5001_items_in_two_requests(sb: Sandbox) -> None:
    items = ({"sourceId": f"bulk-{i}", "name": f"Bulk {i}"} for i in range(5001))
    with planhat_of(sb) as ph:
        result = ph.bulk_upsert("companies", items)
        listed = sum(
            1
            for c in ph.iter_records("companies")
            if str(c.get("sourceId", "")).startswith("bulk-")
        )
    assert result.ok and result.requests == 2 and len(result.items) == 5001
    assert sb.planhat.counters.get("PUT /companies") == 2
    assert listed == 5001
    assert len({o.id for o in result.items}) == 5001


def test_planhat_end_users_without_a_company_are_not_reported_saved(sb: Sandbox) -> None:
    with planhat_of(sb) as ph:
        company = ph.bulk_upsert("companies", [{"sourceId": "eu-co", "name": "EU Co"}]).items[0]
        users = [
            {"sourceId": "eu-1", "email": "a@nowhere-at-all.example", "companyId": company.id},
            {"sourceId": "eu-2", "email": "b@nowhere-at-all.example"},
        ]
        result = ph.bulk_upsert("endusers", users)
    assert not result.ok
    assert [o.status for o in result.items] != ["created", "created"]
    assert result.items[1].status in ("failed", "unknown")


@pytest.mark.slow
def test_planhat_429s_are_waited_out(sb: Sandbox) -> None:
    sb.planhat.ratelimit.configure(per_second=3)
    sb.planhat.ratelimit.reset()
    with planhat_of(sb, retry=FAST_RETRY) as ph:
        ph.bulk_upsert("companies", [{"sourceId": "rl", "name": "RL"}])
        for _ in range(8):
            assert ph.get("companies", srcid("rl"))["name"] == "RL"
    limited = sb.planhat.counters.get("GET /companies/{id} 429")
    assert limited > 0 and sb.planhat.counters.get("GET /companies/{id} 200") == 8


def test_planhat_faults_retried_on_reads_and_keyed_bulk(sb: Sandbox) -> None:
    sb.add_fault("planhat", route="/companies*", p_500=0.3, p_503=0.2)
    with planhat_of(sb, retry=FAST_RETRY) as ph:
        result = ph.bulk_upsert(
            "companies", [{"sourceId": f"f-{i}", "name": f"F{i}"} for i in range(20)]
        )
        assert result.ok
        sb.clear_faults()
        assert ph.get("companies", srcid("f-3"))["name"] == "F3"


def test_planhat_wrong_token(sb: Sandbox) -> None:
    with PlanhatClient("nope", base_url=sb.planhat_url, allow_local_http=True) as ph:
        with pytest.raises(AuthError, match="Planhat rejected the API token"):
            ph.get("companies", srcid("x"))


# -- the done-when figure -------------------------------------------------------------------------
@pytest.mark.slow
def test_all_50000_large_deals_cost_exactly_100_requests_and_no_429() -> None:
    with Sandbox("large", burst=20) as large:
        total = len(large.pipedrive_seed.deals)
        with pipedrive_of(large) as pd:
            seen = [deal["id"] for deal in pd.iter_deals()]
        listed = len(
            [
                d
                for d in large.pipedrive_seed.deals
                if not d.get("is_deleted") and not d.get("is_archived")
            ]
        )
        assert total == 50_000 == listed
        assert len(seen) == len(set(seen)) == 50_000
        assert large.pipedrive.counters.get("GET /api/v2/deals") == math.ceil(50_000 / 500) == 100
        assert large.pipedrive.counters.get("GET /api/v2/deals 429") == 0
