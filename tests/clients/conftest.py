"""Fixtures of the client tests: a fake clock whose sleep advances it (retry tests never really
sleep), respx routers used as the clients' transport (so nothing else's HTTP is intercepted),
and clients wired to them."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import respx
from clients_support import PD_TOKEN, PD_URL, PH_TOKEN, PH_URL, FakeTime

from clients import PipedriveClient, PlanhatClient, RetryPolicy


@pytest.fixture()
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture()
def pd_router() -> Iterator[respx.Router]:
    router = respx.Router(base_url=PD_URL, assert_all_called=False)
    yield router


@pytest.fixture()
def ph_router() -> Iterator[respx.Router]:
    router = respx.Router(base_url=PH_URL, assert_all_called=False)
    yield router


@pytest.fixture()
def make_pipedrive(
    pd_router: respx.Router, fake_time: FakeTime
) -> Iterator[Callable[..., PipedriveClient]]:
    made: list[PipedriveClient] = []

    def make(**kwargs: Any) -> PipedriveClient:
        options: dict[str, Any] = {
            "transport": httpx.MockTransport(pd_router.handler),
            "clock": fake_time.clock,
            "sleep": fake_time.sleep,
            "rng": random.Random(3),
            "retry": RetryPolicy(max_attempts=5, max_total_wait_s=60),
        }
        options.update(kwargs)
        client = PipedriveClient(f"{PD_URL}/v1", PD_TOKEN, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture()
def make_planhat(
    ph_router: respx.Router, fake_time: FakeTime
) -> Iterator[Callable[..., PlanhatClient]]:
    made: list[PlanhatClient] = []

    def make(**kwargs: Any) -> PlanhatClient:
        options: dict[str, Any] = {
            "transport": httpx.MockTransport(ph_router.handler),
            "clock": fake_time.clock,
            "sleep": fake_time.sleep,
            "rng": random.Random(3),
            "retry": RetryPolicy(max_attempts=5, max_total_wait_s=60),
        }
        options.update(kwargs)
        client = PlanhatClient(PH_TOKEN, base_url=PH_URL, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
