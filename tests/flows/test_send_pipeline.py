"""The send direction end to end: real Prefect flows against the sandbox Pipedrive and Planhat,
with `organizations: both`. A Planhat edit reaches Pipedrive through the incremental sync's
scan, is never reverted by a Pipedrive change to another field nor by a company resync, and a
change bounces at most once (the sandboxes' write counters)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipeline_support import by_source, pipedrive, pipeline_ids, write_settings

from flows.company_resync import company_resync
from flows.deal_sync import deal_sync
from flows.incremental_sync import incremental_sync
from sandbox.runner import Sandbox

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def writes(counters: Any) -> int:
    routes = counters.snapshot()["routes"]
    return sum(n for route, n in routes.items() if route.split(" ")[0] in WRITES)


def planhat(sb: Sandbox) -> httpx.Client:
    return httpx.Client(
        base_url=sb.planhat_url,
        headers={"Authorization": f"Bearer {sb.planhat_token}"},
        timeout=30,
    )


@pytest.fixture()
def both(sb: Sandbox, tmp_path: Path) -> str:
    return str(
        write_settings(
            tmp_path / "both",
            sb,
            pipelines=["New business"],
            organizations={"direction": "both"},
        )
    )


def _won_deal(sb: Sandbox) -> dict[str, Any]:
    pid = pipeline_ids(sb)["New business"]
    return next(
        d
        for d in sb.pipedrive_seed.deals
        if d["status"] == "won" and d["pipeline_id"] == pid and d["org_id"]
    )


def _company(sb: Sandbox, org_id: int) -> dict[str, Any]:
    return by_source(sb.planhat.records("companies"))[str(org_id)]


def _rename_in_planhat(sb: Sandbox, company_id: str, name: str) -> None:
    with planhat(sb) as ph:
        ph.put(f"/companies/{company_id}", json={"name": name}).raise_for_status()


def _org(sb: Sandbox, org_id: int) -> dict[str, Any]:
    with pipedrive(sb) as pd:
        data: dict[str, Any] = pd.get(f"/api/v2/organizations/{org_id}").json()["data"]
        return data


def test_a_planhat_edit_reaches_pipedrive_and_nothing_bounces_back(sb: Sandbox, both: str) -> None:
    incremental_sync(full=True, settings_dir=both)
    org_id = _won_deal(sb)["org_id"]
    company = _company(sb, org_id)
    with planhat(sb) as ph:
        ph.put(
            f"/companies/{company['_id']}", json={"name": "Renamed in Planhat"}
        ).raise_for_status()
    report = incremental_sync(settings_dir=both)
    assert _org(sb, org_id)["name"] == "Renamed in Planhat"
    assert report["counts"]["organization_sent"] == {"updated": 1}
    # the next runs: the Pipedrive change reads back equal to what was synced, nothing moves
    sb.pipedrive.counters.reset()
    sb.planhat.counters.reset()
    incremental_sync(settings_dir=both)
    incremental_sync(settings_dir=both)
    assert writes(sb.pipedrive.counters) == 0 and writes(sb.planhat.counters) == 0
    # a scan of N unchanged companies: ceil(N / 5000) list calls
    companies = len(sb.planhat.records("companies"))
    assert sb.planhat.counters.get("GET /companies") == 2 * math.ceil(companies / 5000)


def test_a_deal_notification_and_a_resync_never_revert_a_planhat_edit(
    sb: Sandbox, both: str
) -> None:
    deal = _won_deal(sb)
    org_id = deal["org_id"]
    deal_sync(deal_id=deal["id"], settings_dir=both)
    company = _company(sb, org_id)
    with planhat(sb) as ph:
        ph.put(
            f"/companies/{company['_id']}", json={"name": "Renamed in Planhat"}
        ).raise_for_status()
    with pipedrive(sb) as pd:
        pd.patch(
            f"/api/v2/organizations/{org_id}", json={"website": "https://changed.example"}
        ).raise_for_status()
    deal_sync(deal_id=deal["id"], settings_dir=both)
    company = _company(sb, org_id)
    assert company["name"] == "Renamed in Planhat" and company["web"] == "https://changed.example"
    assert _org(sb, org_id)["name"] == "Renamed in Planhat"  # merged in the same run
    _rename_in_planhat(sb, company["_id"], "Renamed again")
    report = company_resync(company=company["_id"], settings_dir=both)
    assert _company(sb, org_id)["name"] == "Renamed again"
    assert _org(sb, org_id)["name"] == "Renamed again"
    assert report["counts"]["organization_sent"] == {"updated": 1}
