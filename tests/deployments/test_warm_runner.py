"""The warm runner's own rules, at the Prefect client seam (the end-to-end runs are in
test_notification_storm.py): room for runs, a run another taker got, a run it took but cannot
start."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import prefect.client.orchestration
import prefect.utilities.engine
import pytest
from prefect.exceptions import Abort

from deployments.warm import WarmRunner


class FakeClient:
    def __init__(self, due: list[Any], refuse: set[uuid.UUID] = frozenset()) -> None:  # type: ignore[assignment]
        self.due = due
        self.refuse = refuse
        self.asked_limits: list[int | None] = []

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_scheduled_flow_runs_for_deployments(self, **kw: Any) -> list[Any]:
        self.asked_limits.append(kw.get("limit"))
        return self.due

    def read_flow_run(self, run_id: uuid.UUID) -> Any:
        raise RuntimeError("Prefect answered 500")


def test_a_run_taken_but_not_startable_is_crashed_and_one_taken_elsewhere_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    client = FakeClient([SimpleNamespace(id=mine), SimpleNamespace(id=theirs)])
    proposed: list[tuple[uuid.UUID, str]] = []

    def propose(_client: Any, state: Any, flow_run_id: uuid.UUID) -> Any:
        proposed.append((flow_run_id, state.type.value))
        if state.type.value == "PENDING" and flow_run_id == theirs:
            raise Abort("another worker took it")
        return state

    monkeypatch.setattr(prefect.utilities.engine, "propose_state_sync", propose)
    monkeypatch.setattr(prefect.client.orchestration, "get_client", lambda **_: client)
    warm = WarmRunner({uuid.uuid4(): SimpleNamespace(name="deal-sync")}, concurrency=3)  # type: ignore[dict-item]
    assert warm.poll_once(client) == 1  # type: ignore[arg-type]
    assert client.asked_limits == [3]  # room for 3
    warm.stop()
    assert (mine, "CRASHED") in proposed  # taken (Pending) but its run could not be read
    assert (theirs, "CRASHED") not in proposed
    assert warm.running == 0 and warm.executed == 1
