"""Enrich: bring in what the selected deals need (their organizations, persons and notes) and
decide the run's scope (`tasks.select.plan_scope`).

For a company resync everything the deals need is read fresh, by id or by `org_id`/`deal_id`;
for deal notifications, the deals' organizations and what the deals entering Planhat need (a
newly won deal: at most 6 Pipedrive calls; a batch of licensed deals' changes: 2 calls per 100
deals, the deals and their organizations). (The incremental sync and the backfill select and
enrich as they stream: `tasks.stream`.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import steplog
from tasks.context import SyncContext
from tasks.fetch import Fetched, fetch_deal_relations
from tasks.select import DealSelection, Scope, plan_scope


def entering(
    deals: Iterable[dict[str, Any]], licensed: set[int], linked_orgs: set[int]
) -> list[dict[str, Any]]:
    """The deals that enter Planhat now: no license yet, or an organization that is not a
    Planhat company yet."""
    return [
        d
        for d in deals
        if int(d["id"]) not in licensed
        or (isinstance(d.get("org_id"), int) and d["org_id"] not in linked_orgs)
    ]


def enrich(
    ctx: SyncContext,
    fetched: Fetched,
    selection: DealSelection,
    extra_orgs: Iterable[int] = (),
    *,
    entering_only: bool = False,
) -> Scope:
    """`entering_only` (deal notifications): every selected deal's organization is read fresh
    (one `ids` call per 100), but persons and notes only for the deals that enter Planhat
    (`entering`): a licensed deal's persons and notes are in Planhat already, and their own
    changes come with their own notifications (the incremental sync reads them)."""
    extra = [int(o) for o in extra_orgs]
    linked_orgs = ctx.store.linked_pipedrive_ids("organization")
    licensed = ctx.store.linked_pipedrive_ids("deal")
    deals = selection.selected
    refresh: set[int] = set()
    if entering_only:
        deals = entering(deals, licensed, linked_orgs)
        refresh = {d["org_id"] for d in selection.selected if isinstance(d.get("org_id"), int)}
    fetch_deal_relations(
        ctx.pipedrive,
        ctx.mappings,
        deals,
        fetched,
        org_ids=extra,
        refresh_organizations=refresh,
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
    entering_only: bool = False,
) -> Scope:
    scope = enrich(ctx, fetched, selection, extra_orgs or (), entering_only=entering_only)
    steplog.scoped(scope)
    return scope
