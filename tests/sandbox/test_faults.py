"""Fault injection and request counters, on a tiny app served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from sandbox.faults import (
    FaultInjector,
    FaultMiddleware,
    FaultRule,
    RequestCounters,
    admin_router,
    route_template,
)
from sandbox.server import ServedApp


def _error_body(status: int) -> dict:
    return {"success": False, "error": f"injected {status}"}


class Harness:
    def __init__(self) -> None:
        self.injector = FaultInjector(seed=1)
        self.counters = RequestCounters()
        app = FastAPI()
        app.include_router(admin_router(self.injector, self.counters))

        @app.get("/api/v2/deals/{deal_id}")
        def get_deal(deal_id: int) -> dict:
            return {"success": True, "data": {"id": deal_id}}

        @app.get("/api/v2/deals")
        def list_deals() -> dict:
            return {"success": True, "data": []}

        self.served = ServedApp(FaultMiddleware(app, self.injector, self.counters, _error_body))


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    with h.served:
        yield h


@pytest.fixture()
def client(harness: Harness) -> Iterator[httpx.Client]:
    harness.injector.clear()
    harness.counters.reset()
    with httpx.Client(base_url=harness.served.url, timeout=5) as c:
        yield c
    harness.injector.clear()


def test_route_template_collapses_ids_hashes_and_planhat_keys() -> None:
    assert route_template("/api/v2/deals/17") == "/api/v2/deals/{id}"
    assert route_template("/companies/5f0c2a9b8e4d3c2b1a0f9e8d") == "/companies/{id}"
    assert route_template("/companies/srcid-8812") == "/companies/{id}"
    assert route_template("/api/v2/dealFields/" + "a" * 40) == "/api/v2/dealFields/{id}"
    assert route_template("/api/v2/deals") == "/api/v2/deals"


def test_rule_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="p_500 must be a probability"):
        FaultRule(p_500=1.5)
    with pytest.raises(ValueError, match="add up to"):
        FaultRule(p_500=0.6, p_503=0.6)
    with pytest.raises(ValueError, match="unknown fault keys \\['p_404'\\]"):
        FaultRule.from_dict({"p_404": 0.1})


def test_certain_503_on_one_route_only(harness: Harness, client: httpx.Client) -> None:
    harness.injector.add(route="/api/v2/deals/*", p_503=1.0)
    resp = client.get("/api/v2/deals/5")
    assert resp.status_code == 503
    assert resp.json() == {"success": False, "error": "injected 503"}
    assert client.get("/api/v2/deals").status_code == 200


def test_429_with_and_without_retry_after(harness: Harness, client: httpx.Client) -> None:
    harness.injector.add(method="GET", route="/api/v2/deals/1", p_429=1.0, retry_after_s=7)
    harness.injector.add(route="/api/v2/deals/2", p_429_no_retry_after=1.0)
    first = client.get("/api/v2/deals/1")
    assert (first.status_code, first.headers["retry-after"]) == (429, "7")
    second = client.get("/api/v2/deals/2")
    assert second.status_code == 429 and "retry-after" not in second.headers


def test_probabilities_are_roughly_honoured(harness: Harness, client: httpx.Client) -> None:
    harness.injector.add(p_500=0.3)
    statuses = [client.get("/api/v2/deals").status_code for _ in range(200)]
    failures = statuses.count(500)
    assert 30 <= failures <= 90, failures
    assert statuses.count(200) == 200 - failures


def test_dropped_connection_and_hang(harness: Harness, client: httpx.Client) -> None:
    harness.injector.add(route="/api/v2/deals/3", p_drop=1.0)
    with pytest.raises(httpx.TransportError):
        client.get("/api/v2/deals/3")
    harness.injector.add(route="/api/v2/deals/4", p_hang=1.0, hang_s=1)
    with pytest.raises(httpx.ReadTimeout):
        client.get("/api/v2/deals/4", timeout=0.3)


def test_latency_is_added(harness: Harness, client: httpx.Client) -> None:
    harness.injector.add(latency_ms=150)
    resp = client.get("/api/v2/deals/9")
    assert resp.status_code == 200
    assert resp.elapsed.total_seconds() >= 0.14


def test_counters_per_route_and_status(harness: Harness, client: httpx.Client) -> None:
    for deal_id in (1, 2, 3):
        client.get(f"/api/v2/deals/{deal_id}")
    harness.injector.add(route="/api/v2/deals", p_502=1.0)
    client.get("/api/v2/deals")
    snapshot = client.get("/_sandbox/counters").json()
    assert snapshot["routes"] == {"GET /api/v2/deals/{id}": 3, "GET /api/v2/deals": 1}
    assert snapshot["statuses"]["GET /api/v2/deals 502"] == 1
    assert harness.counters.get("GET /api/v2/deals/{id} 200") == 3
    assert snapshot["total"] == 4  # admin requests are not counted
    client.delete("/_sandbox/counters")
    assert harness.counters.total == 0


def test_faults_over_http_admin(harness: Harness, client: httpx.Client) -> None:
    bad = client.post("/_sandbox/faults", json={"route": "*", "p_bogus": 1})
    assert bad.status_code == 400 and "p_bogus" in bad.json()["error"]
    assert client.get("/_sandbox/faults").json() == []  # a bad rule changes nothing
    ok = client.post("/_sandbox/faults", json={"route": "/api/v2/deals", "p_500": 1.0})
    assert ok.status_code == 201
    assert client.get("/api/v2/deals").status_code == 500
    assert client.get("/_sandbox/faults").status_code == 200  # the admin prefix is never faulted
    client.put("/_sandbox/faults", json=[{"route": "/nothing"}])
    assert client.get("/api/v2/deals").status_code == 200
    client.delete("/_sandbox/faults")
    assert harness.injector.rules == []
