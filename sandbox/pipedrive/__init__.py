"""The sandbox Pipedrive: API v1 and v2 over a `PipedriveSeed` (see `app.PipedriveSandbox`)."""

from __future__ import annotations

from typing import Any

__all__ = ["PipedriveSandbox"]


def __getattr__(name: str) -> Any:
    if name == "PipedriveSandbox":
        from sandbox.pipedrive.app import PipedriveSandbox

        return PipedriveSandbox
    raise AttributeError(f"module 'sandbox.pipedrive' has no attribute {name!r}")
