"""The company-resync flow: Planhat's "Sync with Pipedrive" for one company. Re-fetches that
organization, its persons, notes and won deals in selected pipelines, and pushes them now."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow

from flows.common import finish, open_context_task, run_id
from flows.params import SettingsDir, form
from tasks.enrich import enrich_task
from tasks.fetch import fetch_company_task, resolve_company_task
from tasks.push import push_task
from tasks.report import report_task
from tasks.select import select_task


@flow(
    name="company-resync",
    description="Sync one company with Pipedrive now: its "
    "organization, persons, notes and won deals.",
)
def company_resync(
    company: Annotated[
        str,
        form(
            "Company",
            "A Planhat company id (24 hex characters, e.g. 64f1c0ffee0123456789abcd) or a "
            "Pipedrive organization id (digits, e.g. 1042).",
        ),
    ],
    settings_dir: SettingsDir = None,
) -> dict[str, Any]:
    """`company`: a Planhat company id, or a Pipedrive organization id."""
    ctx = open_context_task(settings_dir)
    with finish(ctx):
        org_id = resolve_company_task(ctx, company)
        fetched = fetch_company_task(ctx, org_id)
        selection = select_task(ctx, fetched)
        scope = enrich_task(ctx, fetched, selection, extra_orgs=[org_id])
        results = push_task(ctx, scope, force=True)
        return report_task(ctx, run_id(), f"Company resync: organization {org_id}", scope, results)
