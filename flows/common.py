"""What every sync flow shares: opening the run's context and closing it, and the run id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.context import SyncContext, open_sync_context
from tasks.retry import retry_transient


@task(
    name="load settings and connect",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_transient,
)
def open_context_task(settings_dir: str | None = None, fresh_account: bool = False) -> SyncContext:
    """Settings validated, both clients and the store open, mappings resolved. A scheduled run
    reads the account's lists fresh; a webhook run reuses the cached ones (fewest calls)."""
    if fresh_account:
        return open_sync_context(settings_dir, account_max_age_s=None)
    return open_sync_context(settings_dir)


@contextmanager
def finish(ctx: SyncContext) -> Iterator[SyncContext]:
    try:
        yield ctx
    finally:
        ctx.close()


def run_id() -> str:
    """This flow run's id (a fresh one outside Prefect, e.g. when a flow's `.fn` is called)."""
    return str(flow_run.id or uuid.uuid4())
