"""`pdsync worker`: deal-sync and planhat-sync runs of `prefect deploy` deployments, executed
warm in this process (beside the work pool's own worker, which runs the other deployments a
process each).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deployments.commands.common import SettingsDir, errors_to_exit_status, settings_arg
from deployments.render import out
from deployments.warm import HEARTBEAT_S

if TYPE_CHECKING:
    from uuid import UUID

    from prefect import Flow

__all__ = ["worker"]


def worker(
    settings: SettingsDir = None,
    deployment: Annotated[
        str,
        typer.Option(help="The deal-sync deployment, as FLOW/DEPLOYMENT."),
    ] = "deal-sync/deal-sync",
    concurrency: Annotated[
        int, typer.Option(min=1, help="At most this many deal-sync runs at once.")
    ] = 4,
    planhat_deployment: Annotated[
        str,
        typer.Option(
            help="The planhat-sync deployment (Planhat's automation webhooks), as "
            "FLOW/DEPLOYMENT, run warm too when it exists; empty: not run here.",
        ),
    ] = "planhat-sync/planhat-sync",
) -> None:
    """Run deal-sync (and planhat-sync) flow runs warm: in this process, with no Python
    start-up per run.

    For deployments made with prefect deploy --all (prefect.yaml puts deal-sync on the work
    pool's `webhooks` queue): run this beside `prefect worker start --pool pdsync --work-queue
    default`, which runs the other deployments. Polls the Prefect API (PREFECT_API_URL) every
    0.25 s for due deal-sync runs and executes them on threads; the Prefect UI shows them as
    any run. Several may run at once, on several machines: each run is taken by one of them.
    Ctrl-C or SIGTERM stop it once its runs in progress are done.

    **Example**

    ```
    PREFECT_API_URL=http://prefect:4200/api pdsync worker --settings /etc/pdsync
    ```
    """
    directory = settings_arg(settings)
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_S))  # dead → Crashed
    with errors_to_exit_status():
        run_worker(directory, deployment, concurrency, planhat_deployment)


def run_worker(
    settings_dir: str | None, deployment: str, concurrency: int, planhat_deployment: str = ""
) -> None:
    from prefect.client.orchestration import get_client

    from deployments.serve import ServeError, wait_for_signal
    from deployments.warm import WarmRunner
    from flows.deal_sync import deal_sync
    from flows.planhat_sync import planhat_sync
    from mappings.loading import load_settings

    settings = load_settings(settings_dir)  # a settings error stops it here, located
    os.environ["PDSYNC_SETTINGS_DIR"] = str(settings.directory)  # for runs left on default
    if not os.environ.get("PREFECT_API_URL"):
        raise ServeError("PREFECT_API_URL is not set: give the Prefect API the deployments are on")
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except Exception as exc:  # noqa: BLE001 - not found, or Prefect unreachable
            raise ServeError(
                f"deployment {deployment!r} not found on the Prefect API ({type(exc).__name__}): "
                "run prefect deploy --all first"
            ) from None
        flow_name = client.read_flow(found.flow_id).name
        planhat = None
        if planhat_deployment:
            try:
                planhat = client.read_deployment_by_name(planhat_deployment)
            except Exception:  # noqa: BLE001 - not deployed (an older prefect.yaml): deal-sync only
                out.print(
                    f"pdsync worker: {planhat_deployment} not found: Planhat's webhooks are "
                    "not run here (prefect deploy --all creates it)",
                    markup=False,
                )
            else:
                if client.read_flow(planhat.flow_id).name != planhat_sync.name:
                    raise ServeError(
                        f"deployment {planhat_deployment!r} does not run {planhat_sync.name}"
                    )
    if flow_name != deal_sync.name:
        raise ServeError(
            f"deployment {deployment!r} runs the flow {flow_name!r}: pdsync worker runs "
            f"{deal_sync.name} deployments only (the others run on a work pool's worker)"
        )
    import prefect.main  # noqa: F401 - Prefect's logging set-up (its console handler)

    if logging.getLogger("deployments").level == logging.NOTSET:
        logging.getLogger("deployments").setLevel(logging.INFO)  # a line per run
    flows: dict[UUID, Flow[..., Any]] = {found.id: deal_sync}
    names = [deployment]
    if planhat is not None:
        flows[planhat.id] = planhat_sync
        names.append(planhat_deployment)
        concurrency += 1
    warm = WarmRunner(flows, concurrency=concurrency).start()
    out.print(
        f"pdsync worker: running {' and '.join(names)} warm, up to {concurrency} at once. "
        "Ctrl-C stops.",
        markup=False,
    )
    try:
        wait_for_signal()
    finally:
        warm.stop()
    out.print("pdsync worker: stopped", markup=False)
