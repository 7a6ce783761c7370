"""Enrich: bring in what the selected deals need (their organizations, persons and notes) and
decide the run's scope (`tasks.select.plan_scope`).

For a deal notification and a company resync everything the deals need is
read fresh, by id or by `org_id`/`deal_id` (a won-deal notification: at most 6 Pipedrive
calls). (The incremental sync and the backfill select and enrich as they stream:
`tasks.stream`.)
"""

from __future__ import annotations

from collections.abc import Iterable

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import steplog
from tasks.context import SyncContext
from tasks.fetch import Fetched, fetch_deal_relations
from tasks.select import DealSelection, Scope, plan_scope


def enrich(
    ctx: SyncContext,
    fetched: Fetched,
    selection: DealSelection,
    extra_orgs: Iterable[int] = (),
) -> Scope:
    extra = [int(o) for o in extra_orgs]
    linked_orgs = ctx.store.linked_pipedrive_ids("organization")
    licensed = ctx.store.linked_pipedrive_ids("deal")
    fetch_deal_relations(
        ctx.pipedrive,
        ctx.mappings,
        selection.selected,
        fetched,
        org_ids=extra,
        already=ctx.relations_read,
    )
    return plan_scope(
        fetched,
        selection,
        ctx.mappings,
        linked_orgs=linked_orgs,
        licensed_deals=licensed,
        extra_orgs=extra,
    )


@task(
    name="enrich: organizations, persons, notes",
    cache_policy=NO_CACHE,
)
def enrich_task(
    ctx: SyncContext,
    fetched: Fetched,
    selection: DealSelection,
    extra_orgs: list[int] | None = None,
) -> Scope:
    scope = enrich(ctx, fetched, selection, extra_orgs or ())
    steplog.scoped(scope)
    return scope
