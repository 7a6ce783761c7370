"""Nothing lost, nothing stuck: the receive path after a lost state store, a crash between a
Planhat write and its links, a change made while a stream is read, notes updated twice, a dry
run, empty address shapes and a deleted deal. Real flows against the sandbox."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pipeline_support import by_source, pipedrive, pipeline_ids, write_settings

import clients.pipedrive
import tasks.fetch
from flows.deal_sync import deal_sync
from flows.incremental_sync import incremental_sync
from sandbox.runner import Sandbox
from store import StateStore

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

MODELS = ("companies", "endusers", "licenses", "conversations")


def _won_deal(sb: Sandbox) -> dict[str, Any]:
    pid = pipeline_ids(sb)["New business"]
    return next(
        d
        for d in sb.pipedrive_seed.deals
        if d["status"] == "won"
        and d["pipeline_id"] == pid
        and d["org_id"]
        and any(n["deal_id"] == d["id"] for n in sb.pipedrive_seed.notes)
    )


def _planhat_writes(sb: Sandbox) -> dict[str, int]:
    routes = sb.planhat.counters.snapshot()["routes"]
    return {k: v for k, v in routes.items() if k.split()[0] in ("PUT", "POST", "DELETE")}


def _no_duplicates(sb: Sandbox) -> dict[str, int]:
    """Records per model, after checking that no `sourceId` is held twice."""
    sizes = {}
    for model in MODELS:
        records = sb.planhat.records(model)
        twice = [k for k, n in Counter(r.get("sourceId") for r in records).items() if n > 1]
        assert twice == [], f"{model}: sourceIds held twice: {twice[:5]}"
        sizes[model] = len(records)
    return sizes


def _store(settings: str) -> StateStore:
    from mappings.loading import load_settings

    return StateStore(load_settings(settings).store_url)


def _forget_everything(settings: str) -> None:
    for path in Path(settings).glob("state.db*"):
        path.unlink()


def test_a_lost_store_is_recovered_by_adopting_what_planhat_holds(
    sb: Sandbox, settings: str
) -> None:
    incremental_sync(full=True, settings_dir=settings)
    first = _no_duplicates(sb)
    assert first["licenses"] and first["conversations"]
    _forget_everything(settings)

    report = incremental_sync(full=True, settings_dir=settings)  # adopts every record
    assert _no_duplicates(sb) == first
    assert all("created" not in actions for actions in report["counts"].values())
    with _store(settings) as store:
        for object_type in ("organization", "person", "deal", "note"):
            links = store.links_for(object_type, store.linked_pipedrive_ids(object_type))
            assert links and all(link.planhat_id for link in links.values()), object_type

    sb.planhat.counters.reset()
    report = incremental_sync(full=True, settings_dir=settings)  # nothing left to write
    assert _planhat_writes(sb) == {}
    assert all(set(actions) <= {"unchanged", "skipped"} for actions in report["counts"].values())


@pytest.mark.parametrize("crash_after", ["organization", "note"])
def test_a_crash_between_a_planhat_write_and_its_links_freezes_nothing(
    sb: Sandbox, settings: str, monkeypatch: pytest.MonkeyPatch, crash_after: str
) -> None:
    real = StateStore.upsert_links

    def crash(self: StateStore, object_type: str, rows: Any, **kw: Any) -> Any:
        if object_type == crash_after:
            raise RuntimeError("simulated crash: the process died before saving the links")
        return real(self, object_type, rows, **kw)

    deal = _won_deal(sb)
    monkeypatch.setattr(StateStore, "upsert_links", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        deal_sync(deal_id=deal["id"], settings_dir=settings)
    monkeypatch.setattr(StateStore, "upsert_links", real)

    report = deal_sync(deal_id=deal["id"], settings_dir=settings)
    sizes = _no_duplicates(sb)
    assert sizes["licenses"] == 1 and sizes["conversations"] >= 1
    assert report["counts"]["deal"] == {"created": 1} or crash_after == "note"
    assert not [o for o, actions in report["counts"].items() if "failed" in actions], report
    sb.planhat.counters.reset()
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    assert _planhat_writes(sb) == {}  # everything linked, with its id: nothing sent again


def test_a_change_made_while_a_stream_is_read_lands_on_the_next_run(
    sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With overlap 0: deal X (page 1) changes after page 1 was read, then deal Y (page 2)
    changes a second later and is read with its new time. A cursor moved to Y's time would
    pass X's change for good."""
    settings = str(
        write_settings(tmp_path / "s", sb, pipelines=["New business"], incremental={
            "cron": "*/5 * * * *", "timezone": "UTC", "overlap_seconds": 0})
    )  # fmt: skip
    page = 20
    monkeypatch.setattr(clients.pipedrive, "PAGE_SIZE", page)
    monkeypatch.setattr(tasks.fetch, "PAGE_SIZE", page)
    deals = sorted(sb.pipedrive_seed.deals, key=lambda d: d["id"])
    assert len(deals) > 2 * page
    target = next(
        d
        for d in deals[:page]
        if d["status"] == "won"
        and d["pipeline_id"] == pipeline_ids(sb)["New business"]
        and d["org_id"]
    )
    later = deals[2 * page]
    changed: list[str] = []

    def change_during_the_read(stream: str, read: int, done: bool) -> None:
        if stream == "deals" and read == page and not done and not changed:
            with pipedrive(sb) as pd:
                pd.patch(f"/api/v2/deals/{target['id']}", json={"title": "Changed mid-read"})
                time.sleep(1.2)  # Pipedrive's times are whole seconds
                pd.patch(f"/api/v2/deals/{later['id']}", json={"value": 4242})
            changed.append("done")

    with tasks.fetch.page_progress(change_during_the_read):
        incremental_sync(full=True, settings_dir=settings)
    assert changed
    license_ = by_source(sb.planhat.records("licenses"))[str(target["id"])]
    assert license_["product"] == target["title"]  # the backfill read page 1 before the change

    incremental_sync(settings_dir=settings)
    license_ = by_source(sb.planhat.records("licenses"))[str(target["id"])]
    assert license_["product"] == "Changed mid-read"


def test_a_note_changed_twice_stays_one_conversation(sb: Sandbox, settings: str) -> None:
    deal = _won_deal(sb)
    note = next(n for n in sb.pipedrive_seed.notes if n["deal_id"] == deal["id"])
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    with pipedrive(sb) as pd:
        for text in ("Second version", "Third version"):
            pd.put(f"/api/v1/notes/{note['id']}", json={"content": text}).raise_for_status()
            deal_sync(deal_id=deal["id"], settings_dir=settings)
    copies = [
        c for c in sb.planhat.records("conversations") if c.get("sourceId") == str(note["id"])
    ]
    assert len(copies) == 1
    assert "Third version" in str(copies[0].get("description"))


def test_a_dry_run_reports_what_the_real_run_then_writes(sb: Sandbox, tmp_path: Path) -> None:
    directory = tmp_path / "s"
    dry = str(write_settings(directory, sb, pipelines=["New business"], dry_run=True))
    dry_report = incremental_sync(full=True, settings_dir=dry)
    assert _planhat_writes(sb) == {}
    assert all(not sb.planhat.records(m) for m in MODELS)
    real = str(write_settings(directory, sb, pipelines=["New business"], dry_run=False))
    real_report = incremental_sync(full=True, settings_dir=real)
    assert real_report["counts"]["note"].get("created")  # children of new companies count too
    assert dry_report["counts"] == real_report["counts"]


def test_an_empty_address_keeps_planhats_value(sb: Sandbox, settings: str) -> None:
    deal = _won_deal(sb)
    with pipedrive(sb) as pd:
        pd.patch(
            f"/api/v2/organizations/{deal['org_id']}",
            json={"address": {"value": "Hauptstraße 1, 10115 Berlin"}},
        ).raise_for_status()
        deal_sync(deal_id=deal["id"], settings_dir=settings)
        company = by_source(sb.planhat.records("companies"))[str(deal["org_id"])]
        assert company["address"] == "Hauptstraße 1, 10115 Berlin"
        pd.patch(
            f"/api/v2/organizations/{deal['org_id']}", json={"address": {"value": ""}}
        ).raise_for_status()
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    company = by_source(sb.planhat.records("companies"))[str(deal["org_id"])]
    assert company["address"] == "Hauptstraße 1, 10115 Berlin"


def test_a_deleted_deal_says_so_and_keeps_its_license(sb: Sandbox, settings: str) -> None:
    deal = _won_deal(sb)
    deal_sync(deal_id=deal["id"], settings_dir=settings)
    with pipedrive(sb) as pd:
        pd.delete(f"/api/v2/deals/{deal['id']}").raise_for_status()
    report = deal_sync(deal_id=deal["id"], settings_dir=settings)
    assert report["counts"]["deal"] == {"skipped": 1}
    reasons = [r["reason"] for r in report["reasons"]]
    assert any("deleted in Pipedrive" in r and "license is kept" in r for r in reasons), reasons
    assert str(deal["id"]) in by_source(sb.planhat.records("licenses"))


# -- kill -9 at random points of a backfill ------------------------------------------------------

KILL_SEED = 20261129
KILLS = 10
_VOLATILE = frozenset({"_id", "createdAt", "updatedAt", "createDate", "companyId"})


def _planhat_state(sb: Sandbox) -> dict[str, dict[str, dict[str, Any]]]:
    """Planhat's records per model and `sourceId`, without what Planhat generates (ids and
    times), and with each record's company named by its `sourceId`."""
    companies = {c["_id"]: c.get("sourceId") for c in sb.planhat.records("companies")}
    state: dict[str, dict[str, dict[str, Any]]] = {}
    for model in MODELS:
        rows: dict[str, dict[str, Any]] = {}
        for record in sb.planhat.records(model):
            row = {k: v for k, v in record.items() if k not in _VOLATILE}
            if row.get("date") == record.get("createdAt"):
                row.pop("date")
            if "companyId" in record:
                row["company"] = companies.get(record["companyId"])
            rows[str(record.get("sourceId"))] = row
        state[model] = rows
    return state


def _calls(sb: Sandbox) -> int:
    return int(sb.pipedrive.counters.total + sb.planhat.counters.total)


@pytest.mark.slow
def test_kill_9_at_random_points_of_a_backfill_then_rerun_equals_a_fault_free_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os
    import random
    import signal
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    pipelines = ["New business", "Renewals & upsell"]
    with Sandbox("demo", burst=1_000_000) as reference:
        monkeypatch.setenv("SANDBOX_PIPEDRIVE_TOKEN", reference.pipedrive_token)
        monkeypatch.setenv("SANDBOX_PLANHAT_TOKEN", reference.planhat_token)
        ref_settings = write_settings(tmp_path / "ref", reference, pipelines=pipelines)
        incremental_sync(full=True, settings_dir=str(ref_settings))
        expected = _planhat_state(reference)
        calls_of_a_run = _calls(reference)
    assert expected["licenses"] and expected["conversations"]

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "PDSYNC_SETTINGS_DIR": "",
    }
    pdsync = str(Path(sys.executable).with_name("pdsync"))
    # a point is (the run's n-th API call, then a delay): most in the write phase, where a
    # kill falls between Planhat's answer and the links, the rest anywhere in the run
    rng = random.Random(KILL_SEED)
    writes_begin = calls_of_a_run - len(MODELS)
    points = [
        (rng.randint(writes_begin if i % 3 else 1, calls_of_a_run), rng.uniform(0, 0.3))
        for i in range(KILLS)
    ]
    with Sandbox("demo", burst=1_000_000) as sb:
        settings = str(write_settings(tmp_path / "s", sb, pipelines=pipelines))
        command = [pdsync, "sync", "--full", "--settings", settings]
        log = tmp_path / "runs.log"
        for point, delay in points:
            before = _calls(sb)
            sb.planhat.counters.reset()
            with log.open("a") as out:
                process = subprocess.Popen(command, env=env, stdout=out, stderr=out)  # noqa: S603
                while process.poll() is None and _calls(sb) - before < point:
                    time.sleep(0.001)
                time.sleep(delay)
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                process.wait(timeout=120)
            sizes = {m: len(sb.planhat.records(m)) for m in MODELS}
            print(  # noqa: T201
                f"kill at call {point} +{delay:.2f} s (exit {process.returncode}): Planhat "
                f"writes {_planhat_writes(sb)}, holds {sizes}"
            )
        sb.planhat.counters.reset()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)  # noqa: S603
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        print(f"rerun to the end: Planhat writes {_planhat_writes(sb)}")  # noqa: T201
        _no_duplicates(sb)
        assert _planhat_state(sb) == expected
        sb.planhat.counters.reset()
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)  # noqa: S603
        assert again.returncode == 0
        assert _planhat_writes(sb) == {}
