"""One retry budget: the clients' policy is the only retry layer, and it gives up on an
unreachable service within seconds, counting the attempts it really made."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import httpx
import pytest
import respx
from clients_support import FakeTime
from prefect import Task

import flows
import tasks
from clients import AuthError, PipedriveClient, RetryPolicy, UnavailableError

MakePipedrive = Callable[..., PipedriveClient]


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")])
def test_an_unreachable_host_fails_within_the_budget_with_the_true_attempt_count(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime, exc: Exception
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(side_effect=exc)
    client = make_pipedrive(retry=RetryPolicy())  # the default policy, as a sync run uses it
    with pytest.raises(UnavailableError) as caught:
        client.get_deal(1)
    assert fake_time.slept <= RetryPolicy().max_unreachable_s <= 15
    attempts = route.call_count
    assert attempts >= 2  # it did retry a refused connection
    assert caught.value.attempts == attempts
    assert f"after {attempts} attempts" in str(caught.value)


def test_an_auth_error_is_never_retried(
    make_pipedrive: MakePipedrive, pd_router: respx.Router, fake_time: FakeTime
) -> None:
    route = pd_router.get("/api/v2/deals/1").mock(
        return_value=httpx.Response(401, json={"success": False, "error": "unauthorized"})
    )
    with pytest.raises(AuthError):
        make_pipedrive(retry=RetryPolicy()).get_deal(1)
    assert route.call_count == 1 and fake_time.sleeps == []


def _prefect_tasks() -> list[Task[..., object]]:
    found: list[Task[..., object]] = []
    for package in (tasks, flows):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            found += [v for v in vars(module).values() if isinstance(v, Task)]
    return found


def test_no_prefect_task_retries_on_top_of_the_clients() -> None:
    """Task retries would multiply the clients' attempts (3 task runs × 6 attempts each)."""
    found = _prefect_tasks()
    assert len(found) >= 10
    assert [t.name for t in found if t.retries] == []
