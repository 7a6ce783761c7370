"""Local, faithful stand-ins for Pipedrive and Planhat (for the demo, the tests and benchmarks).

* `sandbox.Sandbox` — both apps over one generated data set, served in-process or by
  `python -m sandbox` (see `sandbox/__main__.py` for the flags).
* `sandbox.pipedrive.app.PipedriveSandbox`, `sandbox.planhat.app.PlanhatSandbox` — the ASGI apps.
* `sandbox.data.generate(size, seed)` — the deterministic data sets `small`, `demo`, `large`.
* `sandbox.faults` — fault injection and request counters, also under `/_sandbox/` over HTTP.

The sandbox knows nothing of the product: it only speaks the real APIs' shapes.
Names are loaded lazily so that importing one part never imports the others.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Sandbox": "sandbox.runner",
    "DEFAULT_PIPEDRIVE_PORT": "sandbox.runner",
    "DEFAULT_PLANHAT_PORT": "sandbox.runner",
    "DEFAULT_PIPEDRIVE_TOKEN": "sandbox.runner",
    "DEFAULT_PLANHAT_TOKEN": "sandbox.runner",
    "DEFAULT_DATASET": "sandbox.runner",
    "DEFAULT_SEED": "sandbox.runner",
    "FaultRule": "sandbox.faults",
    "generate": "sandbox.data",
    "SIZES": "sandbox.data",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
