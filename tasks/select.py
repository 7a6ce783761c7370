"""Select and scope: which deals become licenses, and which organizations, persons and notes
belong in Planhat (design §2.1-2.3).

* **Deals**: won, in a selected pipeline, not deleted (`select_deals`); every other deal is
  skipped with its reason. A deal that already has a license and no longer qualifies keeps it:
  the report says so, nothing is deleted.
* **Companies**: the organizations of selected deals, the organizations already linked to a
  Planhat company, and, with `organizations.sync_all`, every organization read. Planhat holds
  customers, not the whole CRM: nothing else is imported.
* **End users**: the persons of those organizations, and each selected deal's own person (placed
  under the deal's company when their own organization is not one).
* **Notes**: in `notes.scope` (`note_in_scope`), on a selected or licensed deal, a company's
  organization, or (scope `person`) an end user.

`select_deals` and `note_in_scope` are plain functions (no Prefect, no store): the mappings
(`mappings.receive`) map what this step selected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from mappings.resolve import Mappings
from mappings.rows import Issue, Records, rows, skip
from mappings.values import field_id
from store.records import RunAction
from tasks import steplog
from tasks.context import SyncContext
from tasks.fetch import Fetched

Record = dict[str, Any]


class Scope:
    """What one run writes to Planhat (Pipedrive records), and what it skipped, with why.
    (A plain class: see `tasks.fetch.Fetched`.)"""

    def __init__(self, deals: list[Record] | None = None, skipped: list[RunAction] | None = None):
        self.deals: list[Record] = deals or []
        self.organizations: list[Record] = []
        self.persons: list[Record] = []
        self.notes: list[Record] = []
        self.deal_orgs: dict[int, int] = {}  # deal id → its organization
        self.person_orgs: dict[int, int] = {}  # person id → company org
        self.skipped: list[RunAction] = skipped or []


def select_deals(deals: Records, mappings: Mappings) -> tuple[list[Record], list[Issue]]:
    """The deals that become licenses (won, in a selected pipeline, not deleted), and an issue
    naming the reason for each of the others (design §2.1)."""
    selected: list[Record] = []
    issues: list[Issue] = []
    for deal in rows(deals):
        deal_id = field_id(deal.get("id"))
        pipeline = field_id(deal.get("pipeline_id"))
        if deal.get("is_deleted") or deal.get("status") == "deleted":
            skip(issues, deal_id, f"deal {deal_id} is deleted in Pipedrive")
        elif deal.get("status") != "won":
            skip(issues, deal_id, f"deal {deal_id} is {deal.get('status') or 'not won'}, not won")
        elif pipeline not in mappings.pipeline_ids:
            name = mappings.pipeline_names.get(pipeline or -1, str(pipeline))
            skip(issues, deal_id, f"deal {deal_id} is in pipeline '{name}', which is not selected")
        else:
            selected.append(dict(deal))
    return selected, issues


def note_in_scope(note: Mapping[str, Any], mappings: Mappings) -> bool:
    """Whether a note belongs to the synced scope (`notes.scope`: deal, organization, person)."""
    scope = mappings.notes_scope
    return bool(
        ("deal" in scope and note.get("deal_id"))
        or ("organization" in scope and note.get("org_id"))
        or ("person" in scope and note.get("person_id"))
    )


class DealSelection:
    """The deals that become licenses, and a skip (with reason) for each of the others."""

    def __init__(
        self, selected: list[Record] | None = None, skipped: list[RunAction] | None = None
    ) -> None:
        self.selected: list[Record] = selected or []
        self.skipped: list[RunAction] = skipped or []


def select_won_deals(
    deals: Iterable[Record], mappings: Mappings, licensed_deal_ids: Iterable[int] = ()
) -> DealSelection:
    """Won deals in selected pipelines; the others skipped with the reason (design §2.1, §2.3)."""
    if not mappings.receives("deals"):
        return DealSelection()
    licensed = set(licensed_deal_ids)
    selected, issues = select_deals(list(deals), mappings)
    skipped = []
    for issue in issues:
        reason = issue.message
        if issue.record_id in licensed:
            reason += "; its license is kept and no longer updated (nothing is deleted)"
        skipped.append(RunAction("deal", "skipped", pipedrive_id=issue.record_id, reason=reason))
    return DealSelection(selected=selected, skipped=skipped)


def plan_scope(
    fetched: Fetched,
    selection: DealSelection,
    mappings: Mappings,
    *,
    linked_orgs: Iterable[int],
    licensed_deals: Iterable[int] = (),
    extra_orgs: Iterable[int] = (),
) -> Scope:
    """Everything of `fetched` that belongs in Planhat this run (see the module docstring).

    `linked_orgs`: organizations that already are Planhat companies; `licensed_deals`: deals
    that already have a license; `extra_orgs`: organizations brought in by name (a company
    resync)."""
    scope = Scope(deals=list(selection.selected), skipped=list(selection.skipped))
    company_orgs = set(linked_orgs) | {int(o) for o in extra_orgs}
    company_orgs |= {d["org_id"] for d in selection.selected if isinstance(d.get("org_id"), int)}
    if mappings.sync_all_organizations:
        company_orgs |= set(fetched.organizations)
    scope.deal_orgs = {
        int(d["id"]): d["org_id"]
        for d in fetched.deals.values()
        if isinstance(d.get("org_id"), int)
    }
    if mappings.receives("organizations"):
        scope.organizations = [o for i, o in fetched.organizations.items() if i in company_orgs]

    if mappings.receives("contacts"):
        own_company: dict[int, int] = {}  # a selected deal's person → the deal's organization
        for deal in selection.selected:
            person_id, org_id = deal.get("person_id"), deal.get("org_id")
            if isinstance(person_id, int) and isinstance(org_id, int):
                own_company.setdefault(person_id, org_id)
        for person_id, person in fetched.persons.items():
            org_id = person.get("org_id")
            if isinstance(org_id, int) and org_id in company_orgs:
                scope.persons.append(person)
                scope.person_orgs[person_id] = org_id
            elif person_id in own_company:
                # the deal's own person, outside the deal's organization: under its company
                scope.persons.append({**person, "org_id": own_company[person_id]})
                scope.person_orgs[person_id] = own_company[person_id]

    if mappings.receives("notes"):
        deal_ids = {int(d["id"]) for d in selection.selected} | set(licensed_deals)
        for note in fetched.notes.values():
            if not note_in_scope(note, mappings) or not note.get("active_flag", True):
                continue
            if (
                ("deal" in mappings.notes_scope and note.get("deal_id") in deal_ids)
                or ("organization" in mappings.notes_scope and note.get("org_id") in company_orgs)
                or ("person" in mappings.notes_scope and note.get("person_id") in scope.person_orgs)
            ):
                scope.notes.append(note)
    return scope


# -- Prefect tasks --------------------------------------------------------------------------------


def missing_deal_skips(deal_ids: Iterable[int], licensed: Iterable[int]) -> list[RunAction]:
    """A skip for each deal asked for by id that Pipedrive no longer has at all."""
    kept = set(licensed)
    return [
        RunAction(
            "deal",
            "skipped",
            pipedrive_id=deal_id,
            reason=f"deal {deal_id} was not found in Pipedrive (deleted more than 30 days ago, "
            "or not visible to the token's user)"
            + (
                "; its license is kept and no longer updated (nothing is deleted)"
                if deal_id in kept
                else ""
            ),
        )
        for deal_id in sorted(deal_ids)
    ]


@task(name="select won deals", cache_policy=NO_CACHE)
def select_task(ctx: SyncContext, fetched: Fetched) -> DealSelection:
    licensed = ctx.store.links_for("deal", [*fetched.deals, *fetched.missing_deals])
    selection = select_won_deals(fetched.deals.values(), ctx.mappings, licensed)
    selection.skipped += missing_deal_skips(fetched.missing_deals, licensed)
    steplog.selected(selection)
    return selection
