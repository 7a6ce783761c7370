"""What every sync flow shares: opening the run's context and closing it, and the run id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows import runlog
from tasks import steplog
from tasks.context import SyncContext, open_sync_context


@task(
    name="load settings and connect",
    cache_policy=NO_CACHE,
)
def open_context_task(settings_dir: str | None = None, fresh_account: bool = False) -> SyncContext:
    """Settings validated, both clients and the store open, mappings resolved. A scheduled run
    reads the account's lists fresh; a webhook run reuses the cached ones (fewest calls)."""
    if fresh_account:
        ctx = open_sync_context(settings_dir, account_max_age_s=None)
    else:
        ctx = open_sync_context(settings_dir)
    runlog.register_secrets(*ctx.pipedrive.secrets, *ctx.planhat.secrets)
    steplog.context_opened(ctx)
    return ctx


@contextmanager
def finish(ctx: SyncContext) -> Iterator[SyncContext]:
    try:
        yield ctx
    finally:
        ctx.close()


def run_id() -> str:
    """This flow run's id (a fresh one outside Prefect, e.g. when a flow's `.fn` is called)."""
    return str(flow_run.id or uuid.uuid4())
