"""Warm runs: flow runs of a deployment executed in this long-lived process, on threads, with no
Python start-up per run (the cost that dominated a webhook's latency: 1.7–3.9 s of importing
Prefect and the flows for ~0.4 s of work).

    warm = WarmRunner({deployment_id: deal_sync}, concurrency=4).start()   # polls every 0.25 s
    ...
    warm.stop()                                                            # waits for its runs

It does what Prefect's runner does for a run, in-process: it polls the Prefect API for the
deployments' scheduled runs that are due (`POST /deployments/get_scheduled_flow_runs`), moves
each to Pending (the server's orchestration decides: a run another worker took, or one over
the deployment's concurrency limit, is refused and left alone), then executes it with
Prefect's own flow engine (`prefect.flow_engine.run_flow` with the flow run object, as the
engine's subprocess does). States, task runs, logs and artifacts reach the Prefect UI exactly
as for any run.

Used by `pdsync serve` (the deal-sync and planhat-sync deployments, served warm; the other
three by Prefect's runner, a process each) and by `pdsync worker` (the same two deployments of
`prefect deploy`, beside a work pool's worker).

What a warm run cannot do: be killed mid-run. Cancelling one in the Prefect UI takes effect
when the run finishes (a deal-sync batch takes seconds); stopping the process (SIGINT or
SIGTERM) lets the running ones finish first.

A run whose process died (killed, out of memory, machine lost) is marked **Crashed**: warm runs
send Prefect a heartbeat every `HEARTBEAT_S` seconds (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, set
by `pdsync serve` and `pdsync worker`), and the automation `CRASH_DETECTOR` (created or updated
by `WarmRunner.start`) moves a run of these flows whose heartbeats stopped for `CRASHED_AFTER`
to Crashed; counting from its Running state too, so a process killed before its first
heartbeat reached Prefect is caught as well. The state store gives its notifications back
after `tasks.inbox.STALE_CLAIM`, and the next run or the incremental sync syncs them.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.events.schemas.automations import AutomationCore
    from prefect.flows import Flow

log = logging.getLogger(__name__)

#: seconds between two polls for due runs
POLL_S = 0.25
#: seconds between a warm run's heartbeats (Prefect's minimum is 30)
HEARTBEAT_S = 30
#: a run of the warm flows with no heartbeat for this long is marked Crashed
CRASHED_AFTER = timedelta(seconds=3 * HEARTBEAT_S)
#: the automation that does it (one per Prefect server, shared by every warm process)
CRASH_DETECTOR = "pdsync: runs whose process died"
_TERMINAL_EVENTS = ("Completed", "Failed", "Cancelled", "Crashed")


def crash_detector(flow_names: list[str]) -> AutomationCore:
    """The automation that marks a run of `flow_names` Crashed once its heartbeats stop (the
    recipe of Prefect's docs for runs whose infrastructure died)."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=CRASH_DETECTOR,
        description=(
            "pdsync's warm runs send a heartbeat every "
            f"{HEARTBEAT_S} s; a run of {', '.join(sorted(flow_names))} with none for "
            f"{CRASHED_AFTER.total_seconds():.0f} s lost its process: marked Crashed."
        ),
        trigger=EventTrigger(
            # from Running too: a run whose process died before its first heartbeat reached
            # the server (state changes are the server's own events) is caught as well
            after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
            expect={
                "prefect.flow-run.heartbeat",
                *(f"prefect.flow-run.{s}" for s in _TERMINAL_EVENTS),
            },
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "flow",
                "prefect.resource.name": sorted(flow_names),
            },
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=CRASHED_AFTER,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"no heartbeat for {CRASHED_AFTER.total_seconds():.0f} s: the process that "
                    "ran it died (its notifications are synced by a later run)"
                ),
            )
        ],
    )


def ensure_crash_detector(client: SyncPrefectClient, flow_names: list[str]) -> None:
    """Create the crash detector, or update it to `flow_names` (idempotent)."""
    wanted = crash_detector(flow_names)
    found = client.read_automations_by_name(CRASH_DETECTOR)
    if found:
        client.update_automation(found[0].id, wanted)
        for extra in found[1:]:  # two processes created it at once
            client.delete_automation(extra.id)
    else:
        client.create_automation(wanted)


class WarmRunner:
    """Executes the due flow runs of `flows` (deployment id → its flow) in this process, at most
    `concurrency` at once. `start()` polls on a thread of its own; `stop()` ends polling and
    waits for the runs in progress."""

    def __init__(
        self,
        flows: Mapping[UUID, Flow[..., Any]],
        *,
        concurrency: int,
        poll_s: float = POLL_S,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.flows = dict(flows)
        self.concurrency = concurrency
        self.poll_s = poll_s
        self.executed = 0
        # the caller's Prefect settings (API URL...) are context variables: every thread of
        # this runner starts from a copy of them
        self._context = contextvars.copy_context()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="pdsync-warm-run")
        self._running: dict[UUID, Future[None]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll_loop, name="pdsync-warm", daemon=True)

    def start(self) -> WarmRunner:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 120.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)

    # -- polling --------------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        self._context.copy().run(self._poll_forever)

    def _poll_forever(self) -> None:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            names = sorted({flow.name for flow in self.flows.values()})
            try:
                ensure_crash_detector(client, names)
            except Exception as exc:  # noqa: BLE001 - runs still run; dead ones stay Running
                log.warning("warm runs: the crash detector automation was not saved (%s)", exc)
            while not self._stop.is_set():
                try:
                    self.poll_once(client)
                except Exception as exc:  # noqa: BLE001 - Prefect unreachable: poll again
                    log.warning("warm runs: polling Prefect failed (%s); trying again", exc)
                    self._stop.wait(5.0)
                self._stop.wait(self.poll_s)

    def poll_once(self, client: SyncPrefectClient) -> int:
        """Take the due runs there is room for; returns how many were started."""
        free = self.concurrency - self.running
        if free <= 0 or not self.flows:
            return 0
        due = client.get_scheduled_flow_runs_for_deployments(
            deployment_ids=list(self.flows), scheduled_before=datetime.now(UTC), limit=free
        )
        started = 0
        for flow_run in due:
            if flow_run.id in self._running or not self._take(client, flow_run.id):
                continue
            future = self._pool.submit(self._context.copy().run, self._execute, flow_run.id)
            with self._lock:
                self._running[flow_run.id] = future
            future.add_done_callback(self._finished_callback(flow_run.id))
            started += 1
        return started

    def _finished_callback(self, run_id: UUID) -> Callable[[Future[None]], None]:
        def finished(_: Future[None]) -> None:
            with self._lock:
                self._running.pop(run_id, None)
                self.executed += 1

        return finished

    @staticmethod
    def _take(client: SyncPrefectClient, run_id: UUID) -> bool:
        """Move the run to Pending: True when this process may execute it."""
        from prefect.exceptions import Abort
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state_sync

        try:
            state = propose_state_sync(client, Pending(), flow_run_id=run_id)
        except Abort:  # another worker took it, or it was cancelled meanwhile
            return False
        return state.is_pending()

    # -- one run --------------------------------------------------------------------------------
    def _execute(self, run_id: UUID) -> None:
        from prefect.client.orchestration import get_client
        from prefect.flow_engine import run_flow

        started = time.monotonic()
        try:
            with get_client(sync_client=True) as client:
                flow_run: FlowRun = client.read_flow_run(run_id)
            flow = self.flows[flow_run.deployment_id] if flow_run.deployment_id else None
            if flow is None:
                raise LookupError(f"flow run {run_id} is not of a deployment this process serves")
        except Exception as exc:  # noqa: BLE001 - taken (Pending) but not startable: crash it
            log.warning("warm run %s could not start: %s", run_id, exc)
            self._crash(run_id, f"could not start in the warm process: {exc}")
            return
        log.info("%s run '%s' started (warm)", flow.name, flow_run.name)
        state: Any = None
        try:
            state = run_flow(flow, flow_run=flow_run, return_type="state", error_logger=log)
        except BaseException:  # noqa: BLE001 - the engine has recorded the run's state
            log.exception("%s run '%s' ended with an error", flow.name, flow_run.name)
        log.info(
            "%s run '%s' %s in %.2f s",
            flow.name,
            flow_run.name,
            getattr(state, "name", "ended"),
            time.monotonic() - started,
        )

    @staticmethod
    def _crash(run_id: UUID, message: str) -> None:
        """Mark a run this process took but cannot run Crashed (it would hold its deployment's
        concurrency slot in Pending otherwise)."""
        from prefect.client.orchestration import get_client
        from prefect.states import Crashed
        from prefect.utilities.engine import propose_state_sync

        try:
            with get_client(sync_client=True) as client:
                propose_state_sync(client, Crashed(message=message), flow_run_id=run_id)
        except Exception as exc:  # noqa: BLE001 - Prefect unreachable: the detector may see it
            log.warning("warm run %s could not be marked crashed: %s", run_id, exc)
