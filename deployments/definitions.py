"""The five deployments of one-machine mode: the same as prefect.yaml's, without a work pool.

* `deal-sync/deal-sync`: the event trigger on `pipedrive.deal.*` events whose resource carries
  the label `pdsync.starts-run: yes` (deal id and inbox key templated from the event): the
  receiver gives that label to a notification only when no other waiting one already asked
  for a run, since a run takes every waiting notification. At most `deal_concurrency` runs
  at once, the others queued. Served warm (`deployments.warm`): no process per run;
* `planhat-sync/planhat-sync`: the event trigger on `planhat.*` events (Planhat's automation
  webhooks, `deployments.planhat_events`) labelled `pdsync.starts-run: yes`; a run takes every
  waiting Planhat notification. At most `PLANHAT_SYNC_CONCURRENCY` at once. Served warm;
* `incremental-sync/incremental-sync`: the settings' schedule (`incremental.cron`,
  `.timezone`), one at a time (a run due while one runs is cancelled);
* `company-resync/company-resync`: ad hoc, the Prefect UI's Run form (a `company` field) or
  `pdsync resync`;
* `connect/connect`: ad hoc.

A test checks that prefect.yaml declares the same trigger, schedule and limits.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any
from uuid import UUID

from deployments.events import STARTS_RUN_LABEL, STARTS_RUN_YES

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.events import DeploymentEventTrigger
    from prefect.runner import Runner

    from deployments.warm import WarmRunner
    from mappings.models import Settings

DEAL_EVENTS = "pipedrive.deal.*"
DEAL_RESOURCES = "pipedrive.deal.*"
#: the resource label of the notifications that start a run (`deployments.events`)
STARTS_RUN = (STARTS_RUN_LABEL, STARTS_RUN_YES)
DEAL_SYNC_CONCURRENCY = 4
PLANHAT_EVENTS = "planhat.*"
PLANHAT_RESOURCES = "planhat.*"
PLANHAT_SYNC_CONCURRENCY = 2
DEPLOYMENT_NAMES = (
    "deal-sync/deal-sync",
    "planhat-sync/planhat-sync",
    "incremental-sync/incremental-sync",
    "company-resync/company-resync",
    "connect/connect",
)


def deal_trigger() -> DeploymentEventTrigger:
    """The deal-sync trigger: a `pipedrive.deal.*` event labelled `pdsync.starts-run: yes`
    starts one run with the event's deal id and inbox key (the same trigger as in
    prefect.yaml)."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="pipedrive deal notification",
        expect={DEAL_EVENTS},
        match={"prefect.resource.id": DEAL_RESOURCES, STARTS_RUN[0]: STARTS_RUN[1]},
        for_each={"prefect.resource.id"},
        posture="Reactive",
        threshold=1,
        within=0,
        parameters={
            "deal_id": "{{ event.payload.deal_id }}",
            "inbox_key": "{{ event.payload.inbox_key }}",
        },
    )


def planhat_trigger() -> DeploymentEventTrigger:
    """The planhat-sync trigger: a `planhat.*` event labelled `pdsync.starts-run: yes` starts
    one run with the event's inbox key (the same trigger as in prefect.yaml)."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="planhat automation webhook",
        expect={PLANHAT_EVENTS},
        match={"prefect.resource.id": PLANHAT_RESOURCES, STARTS_RUN[0]: STARTS_RUN[1]},
        for_each={"prefect.resource.id"},
        posture="Reactive",
        threshold=1,
        within=0,
        parameters={"inbox_key": "{{ event.payload.inbox_key }}"},
    )


def _built(
    deployment: RunnerDeployment | Coroutine[Any, Any, RunnerDeployment],
) -> RunnerDeployment:
    """`Flow.to_deployment` builds synchronously outside an event loop and returns a coroutine
    inside one; these deployments are built outside one (the Runner is started afterwards)."""
    if isinstance(deployment, Coroutine):
        deployment.close()
        raise RuntimeError("build_deployments must be called outside a running event loop")
    return deployment


def build_deployments(
    settings: Settings,
    settings_dir: str | None,
    *,
    deal_concurrency: int = DEAL_SYNC_CONCURRENCY,
) -> list[RunnerDeployment]:
    """The five deployments of one-machine mode (the same as prefect.yaml's, without a pool).
    `settings_dir` (absolute) becomes every deployment's default `settings_dir` parameter."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron
    from prefect.types.entrypoint import EntrypointType

    from flows.company_resync import company_resync
    from flows.connect import connect
    from flows.deal_sync import deal_sync
    from flows.incremental_sync import incremental_sync
    from flows.planhat_sync import planhat_sync

    params: dict[str, Any] = {"settings_dir": settings_dir} if settings_dir else {}
    module = EntrypointType.MODULE_PATH  # importable from any working directory
    inc = settings.integration.incremental
    built = [
        deal_sync.to_deployment(
            "deal-sync",
            triggers=[deal_trigger()],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=deal_concurrency, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
            ),
            parameters=params,
            tags=["pdsync", "webhook"],
            entrypoint_type=module,
        ),
        planhat_sync.to_deployment(
            "planhat-sync",
            triggers=[planhat_trigger()],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=PLANHAT_SYNC_CONCURRENCY,
                collision_strategy=ConcurrencyLimitStrategy.ENQUEUE,
            ),
            parameters=params,
            tags=["pdsync", "webhook"],
            entrypoint_type=module,
        ),
        incremental_sync.to_deployment(
            "incremental-sync",
            schedules=[Cron(inc.cron, timezone=inc.timezone)],
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
            ),
            parameters={"full": False, **params},
            tags=["pdsync", "scheduled"],
            entrypoint_type=module,
        ),
        company_resync.to_deployment(
            "company-resync",
            parameters=params,
            tags=["pdsync", "ad-hoc"],
            entrypoint_type=module,
        ),
        connect.to_deployment(
            "connect",
            parameters=params,
            tags=["pdsync", "ad-hoc"],
            entrypoint_type=module,
        ),
    ]
    return [_built(deployment) for deployment in built]


def register(
    settings: Settings, settings_dir: str | None, deal_concurrency: int
) -> tuple[Runner, WarmRunner]:
    """Prefect's `Runner` with the incremental-sync, company-resync and connect deployments
    (a process per run), and a `WarmRunner` for the deal-sync and planhat-sync deployments
    (runs in this process): their triggers and schedule exist on the server when this
    returns."""
    from prefect.runner import Runner

    from deployments.warm import WarmRunner
    from flows.deal_sync import deal_sync
    from flows.planhat_sync import planhat_sync

    deal, planhat, *others = build_deployments(
        settings, settings_dir, deal_concurrency=deal_concurrency
    )
    runner = Runner(pause_on_shutdown=True, limit=len(others))
    for deployment in others:
        runner.add_deployment(deployment)
    deal_id, planhat_id = deal.apply(), planhat.apply()
    if not isinstance(deal_id, UUID) or not isinstance(planhat_id, UUID):  # in an event loop
        raise RuntimeError("register must be called outside a running event loop")
    warm = WarmRunner(
        {deal_id: deal_sync, planhat_id: planhat_sync},
        concurrency=deal_concurrency + PLANHAT_SYNC_CONCURRENCY,
    )
    return runner, warm
