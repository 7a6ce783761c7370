"""Enrich: bring in what the selected deals need (their organizations, persons and notes) and
decide the run's scope (`tasks.select.plan_scope`).

How much is read depends on how the run started:

* `deal` (one notification) and `resync` (one company): everything the deals need is read fresh,
  by id or by `org_id`/`deal_id` (a won-deal notification: at most 6 Pipedrive calls).
* `incremental`: the changed-since-cursor lists already hold what changed; only deals won since
  the last run (no license yet) bring their organization, persons and notes in.
* `full` (the backfill): every list was read whole; nothing more is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import steplog
from tasks.context import SyncContext
from tasks.fetch import Fetched, fetch_deal_relations
from tasks.select import DealSelection, Scope, plan_scope

Mode = Literal["deal", "incremental", "full", "resync"]


def enrich(
    ctx: SyncContext,
    fetched: Fetched,
    selection: DealSelection,
    mode: Mode,
    extra_orgs: Iterable[int] = (),
) -> Scope:
    extra = [int(o) for o in extra_orgs]
    linked_orgs = ctx.store.linked_pipedrive_ids("organization")
    licensed = ctx.store.linked_pipedrive_ids("deal")
    if mode == "full":
        needing = []
    elif mode == "incremental":
        needing = [d for d in selection.selected if int(d["id"]) not in licensed]
    else:
        needing = list(selection.selected)
    complete = set(fetched.organizations) if mode == "full" else set()
    fetch_deal_relations(
        ctx.pipedrive, ctx.mappings, needing, fetched, org_ids=extra, complete_orgs=complete
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
    mode: Mode,
    extra_orgs: list[int] | None = None,
) -> Scope:
    scope = enrich(ctx, fetched, selection, mode, extra_orgs or ())
    steplog.scoped(scope)
    return scope
