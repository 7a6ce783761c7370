"""`Sandbox`: both sandbox apps over one generated data set, served together.

`Sandbox` builds both apps from one generated data set and serves them on loopback ports, in
this process (tests, benchmarks) or in the foreground (`python -m sandbox`). The sandbox knows
nothing of the product: it only speaks the real APIs' shapes (see `../shared/reference/`).

    with Sandbox(dataset="small") as sb:
        httpx.get(f"{sb.pipedrive_url}/api/v2/deals", headers={"x-api-token": sb.pipedrive_token})
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from sandbox.data import SIZES, generate, summary
from sandbox.faults import FaultRule
from sandbox.pipedrive.app import PipedriveSandbox
from sandbox.planhat.app import PlanhatSandbox
from sandbox.server import ServedApp, serve_together

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PIPEDRIVE_PORT = 8711
DEFAULT_PLANHAT_PORT = 8712
# 40 characters, like a real Pipedrive token (sha1 of "pdsync sandbox pipedrive").
DEFAULT_PIPEDRIVE_TOKEN = "8fe44a9e0fcd3df5839737b228d3ba669c6a8bb8"  # noqa: S105 (public)
DEFAULT_PLANHAT_TOKEN = "sandbox-planhat-token"  # noqa: S105 (public)
DEFAULT_DATASET = "demo"
DEFAULT_SEED = 7


class Sandbox:
    """Both sandbox apps over one generated data set.

    Ports default to free ones (0) in-process; `python -m sandbox` uses the fixed defaults.
    `scale` multiplies the data set's record counts (see `sandbox.data.generate`).
    """

    def __init__(
        self,
        dataset: str = "small",
        seed: int = DEFAULT_SEED,
        *,
        host: str = DEFAULT_HOST,
        pipedrive_port: int = 0,
        planhat_port: int = 0,
        pipedrive_token: str = DEFAULT_PIPEDRIVE_TOKEN,
        planhat_token: str = DEFAULT_PLANHAT_TOKEN,
        burst: int = 40,
        daily_budget: int = 1_000_000,
        webhook_time_scale: float = 1.0,
        webhook_ban_policy: bool = False,
        fault_seed: int = 0,
        scale: float = 1.0,
    ) -> None:
        if dataset not in SIZES:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(SIZES)}")
        self.dataset = dataset
        self.seed = seed
        self.scale = scale
        self.host = host
        self.pipedrive_token = pipedrive_token
        self.planhat_token = planhat_token
        self.pipedrive_seed, self.planhat_seed = generate(dataset, seed, scale)
        self.pipedrive = PipedriveSandbox(
            self.pipedrive_seed,
            [pipedrive_token],
            burst=burst,
            daily_budget=daily_budget,
            webhook_time_scale=webhook_time_scale,
            webhook_ban_policy=webhook_ban_policy,
            fault_seed=fault_seed,
        )
        self.planhat = PlanhatSandbox(self.planhat_seed, [planhat_token], fault_seed=fault_seed)
        self._ports = (pipedrive_port, planhat_port)
        self._served: list[ServedApp] = []

    # -- addresses -------------------------------------------------------------------------
    @property
    def pipedrive_url(self) -> str:
        """The company URL (`https://acme.pipedrive.com` for real); APIs under /api/v1, /api/v2."""
        return self._served[0].url if self._served else f"http://{self.host}:{self._ports[0]}"

    @property
    def planhat_url(self) -> str:
        return self._served[1].url if self._served else f"http://{self.host}:{self._ports[1]}"

    # -- faults ----------------------------------------------------------------------------
    def add_fault(self, target: str = "both", **rule: Any) -> None:
        """Add a fault rule (see `FaultRule`) to `pipedrive`, `planhat` or `both`."""
        if target not in ("pipedrive", "planhat", "both"):
            raise ValueError("target must be 'pipedrive', 'planhat' or 'both'")
        fault = FaultRule.from_dict(rule)
        if target in ("pipedrive", "both"):
            self.pipedrive.faults.add(fault)
        if target in ("planhat", "both"):
            self.planhat.faults.add(fault)

    def clear_faults(self) -> None:
        self.pipedrive.faults.clear()
        self.planhat.faults.clear()

    def summary(self) -> dict[str, int]:
        return summary(self.pipedrive_seed)

    # -- serving ---------------------------------------------------------------------------
    def start(self) -> Sandbox:
        """Serve both apps on background threads (in this process)."""
        self._served = [
            ServedApp(self.pipedrive.asgi, self.host, self._ports[0] or None).start(),
            ServedApp(self.planhat.asgi, self.host, self._ports[1] or None).start(),
        ]
        return self

    def stop(self) -> None:
        for served in self._served:
            served.stop()
        self.pipedrive.close()
        self.planhat.close()

    async def serve_forever(
        self,
        on_started: Callable[[], None] | None = None,
        sockets: list[socket.socket] | None = None,
    ) -> None:
        """Serve both apps in the foreground until SIGINT or SIGTERM.

        `on_started` runs once both are listening. `sockets`: Pipedrive's and Planhat's,
        already bound to the sandbox's ports (`sandbox.server.bound_socket`).
        """
        try:
            await serve_together(
                [
                    (self.pipedrive.asgi, self.host, self._ports[0]),
                    (self.planhat.asgi, self.host, self._ports[1]),
                ],
                on_started=on_started,
                sockets=sockets,
            )
        finally:
            self.pipedrive.close()
            self.planhat.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
