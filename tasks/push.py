"""Convert and push: Pipedrive records → Planhat bulk upserts, in dependency order, with links.

Order (design §3): companies first, then end users, licenses and notes, which carry their
company's Planhat `_id` (from this run's company upsert or from the links of earlier runs).

Every write is an upsert keyed by `sourceId` = the Pipedrive id (design §2.5). A linked record
sends only its keys and the fields whose value changed since the last sync (the link's values,
`mappings.merge.changed_fields`), so a Planhat edit to another field is never reverted; a record
with none is not sent at all: replaying a notification or a run writes nothing the second time,
and what we wrote does not come back as a change (no echo, §2.8). In a section that also sends,
`tasks.twoway.TwoWay` merges the changed records with Planhat's side first. After Planhat
answered, links are stored for every item it saved (the values both sides now hold), and each
item's outcome becomes a run-log action: created, updated, unchanged, conflict (with both
values), skipped (with why) or failed (with Planhat's message).

**Every link holds the Planhat `_id`.** Planhat names the `_id` of what it created or updated,
not of what it left unchanged; an item saved without one (a record already in Planhat that the
store does not know: a lost or older store, a crash between the write and the links) is looked
up by its keys, in batch (`find_planhat_ids`), and adopted. An item whose `_id` still cannot be
found is reported failed and sent again next run, never linked without an id.

**Notes are conversations**, which Planhat updates only by `_id` (an item without one is a
create): a linked note is sent by its `_id` (keys only on create), and a note not linked yet
whose company existed before this run is first looked up among its company's notes. A note
refused by the `_id` its link holds (deleted in Planhat, say) is looked up by its keys and
sent again, by the `_id` found or as a create, in the same run: never stuck.

**A dry run** writes nothing and reports what the real run would write, object by object: the
same actions (created, updated, unchanged), each with the reason "dry run: would be …". The
children of a company that would be created are converted under a stand-in id, so they count.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, ParamSpec

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients import PipedriveClient, PlanhatClient
from mappings.kinds import BY_ENTITY
from mappings.merge import changed_fields, flatten, unflatten
from mappings.receive import (
    deal_to_license,
    note_to_conversation,
    organization_to_company,
    person_to_enduser,
)
from mappings.resolve import Mappings
from mappings.rows import MappedBatch, Records
from store import StateStore
from store.records import LinkRow, RunAction, as_pipedrive_id
from tasks import steplog
from tasks.context import SyncContext
from tasks.select import Scope
from tasks.twoway import Plan, TwoWay, fold_conflicts, sends

P = ParamSpec("P")

#: the keys an item carries for Planhat to match it on (the Pipedrive id), strongest first
KEY_FIELDS = ("sourceId", "externalId")
#: companies per list call when looking records up by company
LOOKUP_COMPANIES_PER_CALL = 50
#: prefix of the stand-in id a dry run gives a record that would be created
DRY_RUN_ID = "dry-run:"


class PushResult:
    """One object type's push: an action per record, and the Planhat ids now known.
    (A plain class: see `tasks.fetch.Fetched`.)"""

    def __init__(self, object_type: str, actions: list[RunAction] | None = None) -> None:
        self.object_type = object_type
        self.actions: list[RunAction] = actions or []
        self.planhat_ids: dict[int, str] = {}
        #: Planhat ids this push created (stand-ins in a dry run): records nothing can hang
        #: under yet, which need no look-up of their children
        self.created: set[str] = set()
        self.requests = 0

    @property
    def failed(self) -> int:
        return sum(1 for a in self.actions if a.action == "failed")


def _issues_as_actions(object_type: str, batch: MappedBatch) -> list[RunAction]:
    return [
        RunAction(
            object_type, "skipped", pipedrive_id=as_pipedrive_id(i.record_id), reason=i.message
        )
        for i in batch.skipped
    ]


def _keys(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(f, str(record[f])) for f in KEY_FIELDS if record.get(f) not in (None, "")]


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def find_planhat_ids(
    planhat: PlanhatClient, model: str, bodies: Sequence[Mapping[str, Any]]
) -> list[str | None]:
    """The `_id` of the Planhat record that each body's keys (`sourceId`, `externalId`) name,
    or None, found in batch: companies in the lean company list (one call per 5,000),
    company-owned records in their companies' lists (one call per 50 companies and page),
    never one call per record."""
    if not bodies:
        return []
    found: dict[tuple[str, str], str] = {}

    def index(records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            if isinstance(record.get("_id"), str) and record["_id"]:
                for key in _keys(record):
                    found.setdefault(key, record["_id"])

    if model == "companies":
        index(planhat.iter_lean_companies())
    else:
        companies = sorted(
            {
                b["companyId"]
                for b in bodies
                if isinstance(b.get("companyId"), str)
                and b["companyId"]
                and not b["companyId"].startswith(DRY_RUN_ID)
            }
        )
        filters = {"type": "note"} if model == "conversations" else None
        for chunk in _chunks(companies, LOOKUP_COMPANIES_PER_CALL):
            index(
                planhat.iter_records(
                    model, company_id=chunk, filters=filters, select=["_id", *KEY_FIELDS]
                )
            )
    return [next((found[k] for k in _keys(b) if k in found), None) for b in bodies]


def _outgoing(model: str, body: Mapping[str, Any], planhat_id: str | None) -> Mapping[str, Any]:
    """The item as sent: a conversation Planhat already holds goes by its `_id` alone."""
    if model != "conversations" or not planhat_id:
        return body
    return {"_id": planhat_id, **{k: v for k, v in body.items() if k not in KEY_FIELDS}}


def _send(
    planhat: PlanhatClient,
    model: str,
    bodies: Mapping[int, Mapping[str, Any]],
    positions: Sequence[int],
    known: Mapping[int, str],
    result: PushResult,
) -> tuple[list[tuple[int, str | None, Any]], list[tuple[int, str]]]:
    """One bulk upsert of these records (`bodies` by position in the batch): (saved as
    (position, Planhat id or None, outcome), failed as (position, reason)); Planhat's errors
    that name no item, and the calls made, go into `result`."""
    upsert = planhat.bulk_upsert(
        model, [_outgoing(model, bodies[pos], known.get(pos)) for pos in positions]
    )
    result.requests += upsert.requests
    saved: list[tuple[int, str | None, Any]] = []
    failed: list[tuple[int, str]] = []
    for outcome in upsert.items:
        pos = positions[outcome.index]
        if outcome.status in ("created", "updated", "unchanged"):
            saved.append((pos, outcome.id or known.get(pos), outcome.status))
        else:  # failed, or Planhat did not say (e.g. an end user it dropped): retried next run
            failed.append(
                (pos, outcome.error or f"Planhat did not confirm saving this {model[:-1]}")
            )
    for message in upsert.unattributed_errors:
        result.actions.append(RunAction(result.object_type, "failed", reason=f"Planhat: {message}"))
    return saved, failed


def _one_line_per_record(push: Callable[P, PushResult]) -> Callable[P, PushResult]:
    """A record with a conflict is logged as such (`tasks.twoway.fold_conflicts`)."""

    @functools.wraps(push)
    def folded(*args: P.args, **kwargs: P.kwargs) -> PushResult:
        result = push(*args, **kwargs)
        result.actions = fold_conflicts(result.actions)
        return result

    return folded


@_one_line_per_record
def push_mapped(
    planhat: PlanhatClient,
    store: StateStore,
    object_type: str,
    batch: MappedBatch,
    *,
    dry_run: bool,
    force: bool = False,
    fresh_companies: Set[str] = frozenset(),
    twoway: TwoWay | None = None,
) -> PushResult:
    """Upsert a mapped batch into Planhat: a linked record sends only the fields that changed
    since the last sync (all of them with `force`: a company resync), a record with none is
    not sent; then record links and per-record actions. `fresh_companies`: companies created
    by this run (their notes need no look-up). `twoway`: the section also sends (both ways),
    so changed records are merged field by field with Planhat's (`tasks.twoway`); a record
    with a conflict is reported as such.
    In a dry run nothing is written anywhere but the run log (see the module docstring)."""
    kind = BY_ENTITY[object_type]
    model, singular = kind.planhat_model, kind.planhat_title
    result = PushResult(object_type, actions=_issues_as_actions(object_type, batch))
    links = store.links_for(object_type, batch.ids)
    known: dict[int, str] = {}  # position in the batch → the record's Planhat id
    plans: dict[int, Plan] = {}
    for pos, (pipedrive_id, body) in enumerate(zip(batch.ids, batch.records, strict=True)):
        link = links.get(pipedrive_id)
        if link is not None and link.planhat_id:
            known[pos] = link.planhat_id
            result.planhat_ids[pipedrive_id] = link.planhat_id
            synced = flatten(link.values)
            plan = Plan(body, synced, {})
            plan.for_planhat = dict(plan.now) if force else changed_fields(synced, plan.now)
            plans[pos] = plan
        else:
            plans[pos] = Plan(body, None, {})
    if twoway is not None:
        result.actions += twoway.merge(batch.ids, plans, known, force=force, dry_run=dry_run)
    to_send: list[int] = []
    settled: list[LinkRow] = []  # unchanged in Planhat, but a Pipedrive write synced fields
    for pos, plan in plans.items():
        if plan.synced_values is not None and not plan.for_planhat:
            pipedrive_id = batch.ids[pos]
            result.actions.append(RunAction(object_type, "unchanged", pipedrive_id, known.get(pos)))
            after = plan.after()
            if plan.merged and not dry_run and after != plan.synced_values:
                settled.append(LinkRow(pipedrive_id, known.get(pos), unflatten(after)))
            continue
        to_send.append(pos)
    if settled:
        store.upsert_links(object_type, settled)
    if not to_send:
        return result
    sending = {pos: plans[pos].body() for pos in to_send}
    if model == "conversations":
        unlinked = [
            pos
            for pos in to_send
            if pos not in known and sending[pos].get("companyId") not in fresh_companies
        ]
        bodies = [sending[pos] for pos in unlinked]
        for pos, planhat_id in zip(unlinked, find_planhat_ids(planhat, model, bodies), strict=True):
            if planhat_id:
                known[pos] = planhat_id
    if dry_run:
        for pos in to_send:
            pipedrive_id = batch.ids[pos]
            planhat_id = known.get(pos)
            verb: Any = "updated" if planhat_id else "created"
            if planhat_id is None:
                result.created.add(f"{DRY_RUN_ID}{object_type}:{pipedrive_id}")
                result.planhat_ids[pipedrive_id] = f"{DRY_RUN_ID}{object_type}:{pipedrive_id}"
            result.actions.append(
                RunAction(
                    object_type, verb, pipedrive_id, planhat_id, reason=f"dry run: would be {verb}"
                )
            )
        return result

    saved, failed = _send(planhat, model, sending, to_send, known, result)
    if model == "conversations":
        # A note sent by the `_id` its link holds and refused (deleted in Planhat, say) is
        # looked for again by its keys: updated by the `_id` found, else created anew.
        stale = [pos for pos, _ in failed if pos in known]
        if stale:
            bodies = [sending[pos] for pos in stale]
            found = dict(zip(stale, find_planhat_ids(planhat, model, bodies), strict=True))
            retry = {pos: planhat_id for pos, planhat_id in found.items() if planhat_id}
            failed = [(pos, reason) for pos, reason in failed if pos not in found]
            saved_again, failed_again = _send(planhat, model, sending, stale, retry, result)
            saved += saved_again
            failed += failed_again
    for pos, reason in failed:
        result.actions.append(
            RunAction(object_type, "failed", batch.ids[pos], known.get(pos), reason=reason)
        )

    nameless = [i for i, (_, planhat_id, _) in enumerate(saved) if not planhat_id]
    if nameless:
        bodies = [sending[saved[i][0]] for i in nameless]
        for i, planhat_id in zip(nameless, find_planhat_ids(planhat, model, bodies), strict=True):
            saved[i] = (saved[i][0], planhat_id, saved[i][2])
    rows: list[LinkRow] = []
    for pos, planhat_id, status in saved:
        pipedrive_id = batch.ids[pos]
        if not planhat_id:
            result.actions.append(
                RunAction(
                    object_type,
                    "failed",
                    pipedrive_id,
                    reason=f"Planhat saved this {singular} without naming its id, and no "
                    f"{singular} with sourceId {pipedrive_id} could be found; it is sent again "
                    "next run",
                )
            )
            continue
        rows.append(LinkRow(pipedrive_id, planhat_id, plans[pos].link_values()))
        result.planhat_ids[pipedrive_id] = planhat_id
        if status == "created":
            result.created.add(planhat_id)
        result.actions.append(RunAction(object_type, status, pipedrive_id, planhat_id))
    if rows:
        store.upsert_links(object_type, rows)
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
    pipedrive: PipedriveClient | None = None,
) -> list[PushResult]:
    """The whole push of one run, in dependency order (see the module docstring). `pipedrive`
    writes the send half of the sections that go both ways (required when one does)."""
    dry_run = mappings.dry_run

    def push(object_type: str, batch: MappedBatch, records: Records, **options: Any) -> PushResult:
        twoway = None
        if sends(mappings, object_type):
            if pipedrive is None:
                raise ValueError(f"{object_type}s are sent both ways: give the Pipedrive client")
            twoway = TwoWay(pipedrive, planhat, mappings, object_type, records)
        return push_mapped(
            planhat, store, object_type, batch, dry_run=dry_run, force=force, twoway=twoway,
            **options,
        )  # fmt: skip

    results: list[PushResult] = []
    companies = None
    if mappings.receives("organizations"):
        orgs = scope.organizations
        companies = push("organization", organization_to_company(orgs, mappings), orgs)
        results.append(companies)
    org_ids = {int(o["id"]) for o in scope.organizations}
    org_ids |= {o for o in scope.deal_orgs.values()} | set(scope.person_orgs.values())
    for note in scope.notes:
        if isinstance(note.get("org_id"), int):
            org_ids.add(note["org_id"])
    company_ids = company_ids_for(store, org_ids, companies)
    fresh = companies.created if companies is not None else set()
    if mappings.receives("contacts"):
        persons = scope.persons
        users = person_to_enduser(persons, mappings, company_ids=company_ids)
        results.append(push("person", users, persons))
    if mappings.receives("deals"):
        licenses = deal_to_license(scope.deals, mappings, company_ids=company_ids)
        results.append(push("deal", licenses, scope.deals))
    if mappings.receives("notes"):
        conversations = note_to_conversation(
            scope.notes,
            mappings,
            company_ids=company_ids,
            deal_orgs=scope.deal_orgs,
            person_orgs=scope.person_orgs,
        )
        results.append(push("note", conversations, scope.notes, fresh_companies=fresh))
    return results


# -- Prefect task ---------------------------------------------------------------------------------


@task(
    name="convert and push to Planhat",
    cache_policy=NO_CACHE,
)
def push_task(ctx: SyncContext, scope: Scope, force: bool = False) -> list[PushResult]:
    results = convert_and_push(
        ctx.planhat, ctx.store, ctx.mappings, scope, force=force, pipedrive=ctx.pipedrive
    )
    steplog.pushed(results, dry_run=ctx.dry_run)
    return results
