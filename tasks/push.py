"""Convert and push: Pipedrive records → Planhat bulk upserts, in dependency order, with links.

Order (design §3): companies first, then end users, licenses and notes, which carry their
company's Planhat `_id` (from this run's company upsert or from the links of earlier runs).

Every write is an upsert keyed by `sourceId` = the Pipedrive id (design §2.5). A record whose
mapped body equals what was last synced (the link's values hash) is not sent at all: replaying
a notification or a run writes nothing the second time, and what we wrote does not come back as
a change (no echo, §2.8). After Planhat answered, links are stored for every item it saved, and
each item's outcome becomes a run-log action: created, updated, unchanged, skipped (with why) or
failed (with Planhat's message).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients import PlanhatClient
from mappings.engine import (
    MappedBatch,
    deal_to_license,
    note_to_conversation,
    organization_to_company,
    person_to_enduser,
)
from mappings.resolve import Mappings
from store import StateStore
from store.records import LinkRow, RunAction, values_hash
from tasks.context import SyncContext
from tasks.retry import retry_transient
from tasks.select import Scope

#: Pipedrive object type (links, run log) → Planhat model
MODELS = {
    "organization": "companies",
    "person": "endusers",
    "deal": "licenses",
    "note": "conversations",
}


class PushResult:
    """One object type's push: an action per record, and the Planhat ids now known.
    (A plain class: see `tasks.fetch.Fetched`.)"""

    def __init__(self, object_type: str, actions: list[RunAction] | None = None) -> None:
        self.object_type = object_type
        self.actions: list[RunAction] = actions or []
        self.planhat_ids: dict[int, str] = {}
        self.requests = 0

    @property
    def failed(self) -> int:
        return sum(1 for a in self.actions if a.action == "failed")


def _issues_as_actions(object_type: str, batch: MappedBatch) -> list[RunAction]:
    return [
        RunAction(object_type, "skipped", pipedrive_id=_pid(i.record_id), reason=i.message)
        for i in batch.skipped
    ]


def _pid(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def push_mapped(
    planhat: PlanhatClient,
    store: StateStore,
    object_type: str,
    batch: MappedBatch,
    *,
    dry_run: bool,
    force: bool = False,
) -> PushResult:
    """Upsert a mapped batch into Planhat, skipping records unchanged since the last sync
    (unless `force`: a company resync sends everything), and record links and per-record
    actions. In a dry run nothing is written anywhere but the run log (each action says what
    would have happened)."""
    model = MODELS[object_type]
    result = PushResult(object_type, actions=_issues_as_actions(object_type, batch))
    links = store.links_for(object_type, batch.ids)
    to_send: list[int] = []  # positions in the batch
    for pos, (pipedrive_id, body) in enumerate(zip(batch.ids, batch.records, strict=True)):
        link = links.get(pipedrive_id)
        unchanged = link is not None and link.values_hash == values_hash(body)
        if not force and unchanged and link is not None and link.planhat_id:
            result.actions.append(
                RunAction(object_type, "unchanged", pipedrive_id, link.planhat_id)
            )
            result.planhat_ids[pipedrive_id] = link.planhat_id
        else:
            to_send.append(pos)
        if link is not None and link.planhat_id:
            result.planhat_ids.setdefault(pipedrive_id, link.planhat_id)
    if not to_send:
        return result
    if dry_run:
        for pos in to_send:
            pipedrive_id = batch.ids[pos]
            verb = "updated" if pipedrive_id in links else "created"
            result.actions.append(
                RunAction(object_type, "skipped", pipedrive_id, reason=f"dry run: would be {verb}")
            )
        return result

    upsert = planhat.bulk_upsert(model, [batch.records[pos] for pos in to_send])
    result.requests = upsert.requests
    saved: list[LinkRow] = []
    for outcome in upsert.items:
        pos = to_send[outcome.index]
        pipedrive_id, body = batch.ids[pos], batch.records[pos]
        planhat_id = outcome.id or result.planhat_ids.get(pipedrive_id)
        if outcome.status in ("created", "updated", "unchanged"):
            saved.append(LinkRow(pipedrive_id, planhat_id, body))
            if planhat_id:
                result.planhat_ids[pipedrive_id] = planhat_id
            result.actions.append(RunAction(object_type, outcome.status, pipedrive_id, planhat_id))
        else:  # failed, or Planhat did not say (e.g. an end user it dropped): retried next run
            reason = outcome.error or f"Planhat did not confirm saving this {model[:-1]}"
            result.actions.append(
                RunAction(object_type, "failed", pipedrive_id, planhat_id, reason=reason)
            )
    for message in upsert.unattributed_errors:
        result.actions.append(RunAction(object_type, "failed", reason=f"Planhat: {message}"))
    if saved:
        store.upsert_links(object_type, saved)
    return result


def company_ids_for(
    store: StateStore, org_ids: set[int], pushed: PushResult | None
) -> dict[int, str]:
    """Organization id → Planhat company `_id`, for every organization that is a company."""
    known = {
        org_id: link.planhat_id
        for org_id, link in store.links_for("organization", sorted(org_ids)).items()
        if link.planhat_id
    }
    if pushed is not None:
        known.update(pushed.planhat_ids)
    return known


def convert_and_push(
    planhat: PlanhatClient,
    store: StateStore,
    mappings: Mappings,
    scope: Scope,
    *,
    force: bool = False,
) -> list[PushResult]:
    """The whole push of one run, in dependency order (see the module docstring)."""
    dry_run = mappings.dry_run
    results: list[PushResult] = []
    companies = None
    if mappings.receives("organizations"):
        companies = push_mapped(
            planhat,
            store,
            "organization",
            organization_to_company(scope.organizations, mappings),
            dry_run=dry_run,
            force=force,
        )
        results.append(companies)
    org_ids = {int(o["id"]) for o in scope.organizations}
    org_ids |= {o for o in scope.deal_orgs.values()} | set(scope.person_orgs.values())
    for note in scope.notes:
        if isinstance(note.get("org_id"), int):
            org_ids.add(note["org_id"])
    company_ids = company_ids_for(store, org_ids, companies)
    if mappings.receives("contacts"):
        results.append(
            push_mapped(
                planhat,
                store,
                "person",
                person_to_enduser(scope.persons, mappings, company_ids=company_ids),
                dry_run=dry_run,
                force=force,
            )
        )
    if mappings.receives("deals"):
        results.append(
            push_mapped(
                planhat,
                store,
                "deal",
                deal_to_license(scope.deals, mappings, company_ids=company_ids),
                dry_run=dry_run,
                force=force,
            )
        )
    if mappings.receives("notes"):
        results.append(
            push_mapped(
                planhat,
                store,
                "note",
                note_to_conversation(
                    scope.notes,
                    mappings,
                    company_ids=company_ids,
                    deal_orgs=scope.deal_orgs,
                    person_orgs=scope.person_orgs,
                ),
                dry_run=dry_run,
                force=force,
            )
        )
    return results


# -- Prefect task ---------------------------------------------------------------------------------


@task(
    name="convert and push to Planhat",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_transient,
)
def push_task(ctx: SyncContext, scope: Scope, force: bool = False) -> list[PushResult]:
    return convert_and_push(ctx.planhat, ctx.store, ctx.mappings, scope, force=force)
