"""Session-wide fixtures.

`sandbox_small`: the whole sandbox (Pipedrive and Planhat over the `small` data set) served on
free loopback ports once per test session. Tests that change its data or faults must undo what
they change (or use their own `Sandbox`).

`prefect_harness`: a temporary Prefect API for flow tests, started once per session (it takes
6-10 s; see docs/prefect.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox.runner import Sandbox


@pytest.fixture(scope="session")
def sandbox_small() -> Iterator[Sandbox]:
    from sandbox.runner import Sandbox

    with Sandbox("small", webhook_time_scale=0.01) as sb:
        yield sb


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API (its own SQLite database, a server subprocess), once per session.

    Starting it takes several seconds, so only flow tests ask for it. Sync flows skip the 1 s
    heartbeat join (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY` unset) while it runs.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tiers, by one rule: a test that needs the Prefect harness runs real flows end to end,
    so it belongs to the slow tier (`make test` runs it; `make test-fast` leaves it out)."""
    for item in items:
        if "prefect_harness" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
