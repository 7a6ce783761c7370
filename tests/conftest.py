"""Session-wide fixtures.

`sandbox_small`: the whole sandbox (Pipedrive and Planhat over the `small` data set) served on
free loopback ports once per test session. Tests that change its data or faults must undo what
they change (or use their own `Sandbox`).
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
