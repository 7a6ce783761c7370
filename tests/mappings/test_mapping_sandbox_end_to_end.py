"""Done when: the shipped settings (sandbox variant) load, validate against the sandbox account,
and map the demo data set's deals, organizations, persons and notes into records the sandbox
Planhat accepts with no item errors. Plus the validate command, as a user runs it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from mappings_support import write_settings

from deployments.commands.check import with_connection
from deployments.sandbox_settings import SANDBOX_DIR
from mappings.__main__ import main
from mappings.loading import load_settings
from mappings.receive import (
    deal_to_license,
    note_to_conversation,
    organization_to_company,
    person_to_enduser,
)
from mappings.resolve import compile_mappings
from sandbox.runner import Sandbox
from tasks.account import fetch_account, open_pipedrive, open_planhat
from tasks.select import note_in_scope, select_deals


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_the_demo_data_set_maps_into_records_planhat_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Sandbox("demo") as sb:
        monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", sb.pipedrive_token)
        monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", sb.planhat_token)
        settings = with_connection(
            load_settings(SANDBOX_DIR), pipedrive_url=sb.pipedrive_url, planhat_url=sb.planhat_url
        )
        with open_pipedrive(settings) as pipedrive, open_planhat(settings) as planhat:
            mappings = compile_mappings(settings, fetch_account(pipedrive, planhat))
            organizations = list(pipedrive.iter_organizations())
            persons = list(pipedrive.iter_persons())
            deals = list(pipedrive.iter_deals())
            notes = [n for n in pipedrive.iter_notes() if note_in_scope(n, mappings)]

            companies = organization_to_company(organizations, mappings)
            assert len(companies) == len(organizations) == 200
            result = planhat.bulk_upsert("companies", companies.records)
            assert result.ok and result.failures == []
            company_ids = {companies.ids[o.index]: o.id for o in result.items}

            won, not_selected = select_deals(deals, mappings)
            assert won and not_selected
            batches = {
                "endusers": person_to_enduser(persons, mappings, company_ids=company_ids),
                "licenses": deal_to_license(won, mappings, company_ids=company_ids),
                "conversations": note_to_conversation(
                    notes, mappings, company_ids=company_ids,
                    deal_orgs={d["id"]: d["org_id"] for d in deals if d["org_id"]},
                    person_orgs={p["id"]: p["org_id"] for p in persons if p["org_id"]},
                ),
            }  # fmt: skip
            planhat_ids: dict[str, list[str | None]] = {}
            for model, batch in batches.items():
                result = planhat.bulk_upsert(model, batch.records)
                assert result.failures == [] and not result.partial, (model, result.failures[:3])
                assert result.count("created") == len(batch.records) > 0
                planhat_ids[model] = [o.id for o in result.items]
                # Everything left out was left out for a reason the report can show.
                assert all(issue.message for issue in batch.skipped)
            # Planhat holds what was sent, with the license terms the settings ask for.
            licenses = {r["sourceId"]: r for r in sb.planhat.records("licenses")}
            assert len(licenses) == len(batches["licenses"])
            deal = next(d for d in won if str(d["id"]) in licenses)
            license_ = licenses[str(deal["id"])]
            assert license_["product"] == deal["title"]
            assert license_["fromDate"][:10] == deal["won_time"][:10]
            assert license_["length"] == 12 and license_["fixedPeriod"] is True
            assert license_["_currency"] == deal["currency"]
            assert license_["companyId"] == company_ids[deal["org_id"]]
            # Replaying the same records changes nothing and creates no duplicate (notes go by
            # their `_id`: Planhat updates a conversation by nothing else).
            for model, batch in batches.items():
                records = batch.records
                if model == "conversations":
                    records = [
                        {"_id": planhat_id, **{k: v for k, v in r.items() if k != "sourceId"}}
                        for planhat_id, r in zip(planhat_ids[model], records, strict=True)
                    ]
                again = planhat.bulk_upsert(model, records)
                assert again.count("unchanged") == len(batch.records), model
            assert len(sb.planhat.records("conversations")) == len(batches["conversations"])
            assert len(sb.planhat.records("licenses")) == len(licenses)


def test_validate_against_an_in_process_sandbox_prints_what_would_be_synced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SANDBOX_PIPEDRIVE_TOKEN", "SANDBOX_PLANHAT_TOKEN"):
        monkeypatch.setenv(name, "-")  # recorded, so the value the command sets is undone
        monkeypatch.delenv(name)
    code, out, err = run("validate", "--sandbox")
    assert (code, err) == (0, "")
    assert "won deals in: New business (id 1), Renewals & upsell (id 2)" in out
    (tier,) = [line for line in out.splitlines() if "custom.Contract tier" in line]
    assert tier.split() == ["custom.Contract", "tier", "←", "Contract", "tier", "(enum)",
                            "[custom", "match]"]  # fmt: skip
    assert "no match: Priya Raman <priya.raman@sandbox-sales.example>" in out
    assert (
        "Would sync    123 won deals as licenses (New business: 92, Renewals & upsell: 31)" in out
    )
    assert out.rstrip().endswith("Nothing was synced.")


def _pointed_at(tmp_path: Path, sb: Sandbox, pipelines: str = "[New business]") -> Path:
    return write_settings(
        tmp_path,
        f"""\
        version: 1
        connection:
          pipedrive: {{company_url: "{sb.pipedrive_url}", token_env: TEST_PD_TOKEN}}
          planhat: {{base_url: "{sb.planhat_url}", token_env: TEST_PH_TOKEN}}
        deals: {{pipelines: {pipelines}}}
        """,
    )


def test_validate_names_the_token_pipedrive_refused(
    tmp_path: Path, sandbox_small: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PD_TOKEN", "0" * 40)
    monkeypatch.setenv("TEST_PH_TOKEN", sandbox_small.planhat_token)
    d = _pointed_at(tmp_path, sandbox_small)
    code, out, err = run("validate", "--settings", str(d))
    assert code == 1 and out == ""
    line = (d / "integration.yaml").read_text().splitlines()[2]
    column = line.index("TEST_PD_TOKEN") + 1  # the port's width varies
    first = err.splitlines()[0]
    assert first.startswith(f"{d}/integration.yaml:3:{column}: Pipedrive refused: ")
    assert "0000000000" not in err


def test_validate_reports_a_pipeline_the_account_does_not_have(
    tmp_path: Path, sandbox_small: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PD_TOKEN", sandbox_small.pipedrive_token)
    monkeypatch.setenv("TEST_PH_TOKEN", sandbox_small.planhat_token)
    d = _pointed_at(tmp_path, sandbox_small, '["Enterprise – DACH"]')
    code, out, err = run("validate", "--settings", str(d), "--no-count")
    assert code == 1
    assert err.splitlines()[0] == (
        f"{d}/integration.yaml:5:21: deals.pipelines: no pipeline is named 'Enterprise – DACH'; "
        "this account's pipelines: 'New business' (id 1), 'Renewals & upsell' (id 2)"
    )
    assert err.rstrip().endswith("nothing can run until they are fixed.")


def test_validate_the_shipped_settings_says_what_to_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PDSYNC_SETTINGS_DIR", raising=False)
    monkeypatch.delenv("PIPEDRIVE_API_TOKEN", raising=False)
    monkeypatch.setenv("PLANHAT_API_TOKEN", "some-planhat-token")
    code, out, err = run("validate")
    assert code == 1 and out == ""
    assert err.splitlines()[:2] == [
        "mappings/integration.yaml:23:18: connection.pipedrive.company_url is still the "
        "placeholder https://yourcompany.pipedrive.com: replace it with your Pipedrive address, "
        "as your browser shows it (e.g. https://acme.pipedrive.com)",
        "mappings/integration.yaml:28:16: the environment variable PIPEDRIVE_API_TOKEN is not "
        "set; set it to the Pipedrive API token (e.g. export PIPEDRIVE_API_TOKEN=...) before "
        "running",
    ]


def test_validate_offline_and_invalid_files(tmp_path: Path) -> None:
    assert run("validate", "--offline")[0] == 0
    d = write_settings(tmp_path, "version: 2\n")
    code, out, err = run("validate", "--settings", str(d), "--offline")
    assert code == 1
    assert err.splitlines()[:2] == [
        f"{d}/integration.yaml:1:1: missing key 'connection' in the top level",
        f"{d}/integration.yaml:1:10: unknown version '2' in the top level; valid: 1",
    ]
