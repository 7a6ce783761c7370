"""Both ways, field by field (`tasks.twoway`, `tasks.scan`, `tasks.push`), against in-memory
Pipedrive and Planhat at the client seam (`pipedrive_fake`, `planhat_fake`: the sandboxes'
own models) and a real SQLite store: a change goes to the other side only where it changed,
conflicts follow the policy and are reported, null clears and empty never does, receive-only
fields are never written to Pipedrive, and a change bounces at most once (write counters)."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipedrive_fake import FakePipedrive
from planhat_fake import FakePlanhat

from deployments.sandbox_settings import SANDBOX_DIR, account_from_seed
from mappings.loading import load_settings
from mappings.receive import deal_to_license, organization_to_company
from mappings.resolve import Mappings, compile_mappings
from sandbox.data import generate
from store import StateStore
from store.records import RunAction
from tasks.push import PushResult, push_mapped
from tasks.scan import ScanSummary, scan_during_merge, scan_planhat
from tasks.twoway import COMPANIES_ONE_BY_ONE, TwoWay

ORG = 1  # Müller & Søn GmbH, in Hamburg, with a website


def settings_dir(
    tmp: Path,
    organizations: str = "both",
    policy: str = "pipedrive_wins",
    dry_run: bool = False,
    contacts: str = "receive",
    notes: str = "receive",
    deals: str = "receive",
) -> Path:
    target = tmp / "settings"
    shutil.copytree(SANDBOX_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    path = target / "integration.yaml"
    text = path.read_text()
    text = re.sub(r"(organizations:\n(?:  #.*\n)*  direction: )\w+", rf"\g<1>{organizations}", text)
    text = text.replace("conflict_policy: pipedrive_wins", f"conflict_policy: {policy}")
    text = text.replace("dry_run: false", f"dry_run: {str(dry_run).lower()}")
    text = text.replace("contacts:\n  direction: receive", f"contacts:\n  direction: {contacts}")
    text = text.replace("notes:\n  direction: receive", f"notes:\n  direction: {notes}")
    if deals != "receive":
        text = text.replace("deals:\n  direction: receive", f"deals:\n  direction: {deals}")
        matches = target / "custom_matches.yaml"
        po = "pipedrive_field: PO number,         direction: receive"
        assert po in matches.read_text()
        matches.write_text(matches.read_text().replace(po, po.replace("receive", "both")))
    path.write_text(text)
    return target


class World:
    """Both services, the store and the settings; the steps a run takes, one by one."""

    def __init__(
        self,
        tmp: Path,
        organizations: str = "both",
        policy: str = "pipedrive_wins",
        contacts: str = "receive",
        notes: str = "receive",
        deals: str = "receive",
    ):
        pd_seed, ph_seed = generate("small", 7)
        self.pipedrive = FakePipedrive(pd_seed)
        self.planhat = FakePlanhat()
        self.store = StateStore(f"sqlite:///{tmp / 'state.db'}")
        self.account = account_from_seed(pd_seed, ph_seed.users)
        self.mappings: Mappings = compile_mappings(
            load_settings(
                settings_dir(
                    tmp, organizations, policy, contacts=contacts, notes=notes, deals=deals
                )
            ),
            self.account,
        )
        self.actions: list[RunAction] = []

    def close(self) -> None:
        self.store.close()

    # -- the two sides, as people edit them ---------------------------------------------------
    def org(self, org_id: int = ORG) -> dict[str, Any]:
        record = self.pipedrive.model.organizations.get(org_id)
        assert record is not None
        return dict(record)

    def company(self, org_id: int = ORG) -> dict[str, Any]:
        record = self.planhat.store.find("companies", f"srcid-{org_id}")
        assert record is not None
        return dict(record)

    def edit_pipedrive(self, org_id: int = ORG, **fields: Any) -> None:
        self.pipedrive.model.update_organization(org_id, fields)

    def edit_planhat(self, org_id: int = ORG, **fields: Any) -> None:
        self.planhat.store.bulk_upsert("companies", [{"sourceId": str(org_id), **fields}])

    def set_times(self, *, pipedrive: str, planhat: str, org_id: int = ORG) -> None:
        self.pipedrive.model.organizations.put({**self.org(org_id), "update_time": pipedrive})
        company = self.planhat.store.find("companies", f"srcid-{org_id}")
        assert company is not None
        company["updatedAt"] = planhat

    # -- runs ------------------------------------------------------------------------------------
    def receive(
        self,
        *org_ids: int,
        force: bool = False,
        scan: ScanSummary | None = None,
        read: list[dict[str, Any]] | None = None,
    ) -> PushResult:
        """What a deal notification, the stream or a resync does with these organizations;
        `scan`: the run's scan follows, and a merge may begin it (as the stream's do); `read`:
        the organizations as read earlier (the stream's read-ahead), not now."""
        orgs = (
            read
            if read is not None
            else list(self.pipedrive.iter_organizations(ids=org_ids or (ORG,)))
        )
        reader = None
        if scan is not None:
            self.store.log_actions("run", [])  # the run exists
            reader = scan_during_merge(
                self.pipedrive,  # type: ignore[arg-type]  # fakes at the client seam
                self.planhat,  # type: ignore[arg-type]
                self.store,
                self.mappings,
                scan,
                run_id="run",
            )
        twoway = TwoWay.for_push(
            self.pipedrive,  # type: ignore[arg-type]
            self.planhat,  # type: ignore[arg-type]
            self.mappings,
            "organization",
            orgs,
            reader,
        )
        result = push_mapped(
            self.planhat,  # type: ignore[arg-type]
            self.store,
            "organization",
            organization_to_company(orgs, self.mappings),
            dry_run=self.mappings.dry_run,
            force=force,
            twoway=twoway,
        )
        self.actions += result.actions
        return result

    def receive_deal(self, deal_id: int) -> PushResult:
        """A won deal's license (its organization received first)."""
        deals = list(self.pipedrive.iter_deals(ids=[deal_id]))
        self.receive(deals[0]["org_id"])
        company_ids = {
            org: link.planhat_id
            for org, link in self.store.links_for("organization", [deals[0]["org_id"]]).items()
            if link.planhat_id
        }
        return push_mapped(
            self.planhat,  # type: ignore[arg-type]
            self.store,
            "deal",
            deal_to_license(deals, self.mappings, company_ids=company_ids),
            dry_run=False,
            twoway=TwoWay.for_push(
                self.pipedrive,  # type: ignore[arg-type]
                self.planhat,  # type: ignore[arg-type]
                self.mappings,
                "deal",
                deals,
            ),
        )

    def scan(self, begun: ScanSummary | None = None) -> ScanSummary:
        self.store.log_actions("run", [])  # the run exists
        return scan_planhat(
            self.pipedrive,  # type: ignore[arg-type]
            self.planhat,  # type: ignore[arg-type]
            self.store,
            self.mappings,
            run_id="run",
            summary=begun,
        )

    def logged(self) -> list[RunAction]:
        entries = self.store.run_report("run").problems
        return [
            RunAction(e.object_type, e.action, e.pipedrive_id, reason=e.reason) for e in entries
        ]

    def reset_counters(self) -> None:
        self.pipedrive.calls.clear()
        self.planhat.calls.clear()


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def planhat_writes(world: World) -> int:
    return sum(n for name, n in world.planhat.calls.items() if name.startswith("PUT"))


def test_a_planhat_edit_reaches_pipedrive_by_the_scan_and_bounces_no_further(world: World) -> None:
    world.receive()
    world.edit_planhat(name="Müller & Søn (renamed in Planhat)")
    world.reset_counters()
    summary = world.scan()
    assert world.org()["name"] == "Müller & Søn (renamed in Planhat)"
    assert world.pipedrive.writes() == 1 and planhat_writes(world) == 0
    assert summary.changed["organization"] == 1 and summary.to_pipedrive["organization"] == 1
    # The change comes back from Pipedrive (its webhook, the next incremental read): equal to
    # what was last synced, so nothing is written, and the next scan finds nothing either.
    world.reset_counters()
    again = world.receive()
    assert [a.action for a in again.actions] == ["unchanged"]
    world.scan()
    assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0


def test_a_pipedrive_change_to_one_field_never_reverts_a_planhat_edit_to_another(
    world: World,
) -> None:
    world.receive()
    world.edit_planhat(name="Renamed in Planhat")
    world.edit_pipedrive(website="https://mueller.example")
    world.reset_counters()
    world.receive()
    company = world.company()
    assert company["name"] == "Renamed in Planhat" and company["web"] == "https://mueller.example"
    # the merge read Planhat's side and sent its edit to Pipedrive in the same run
    assert world.org()["name"] == "Renamed in Planhat"
    assert world.pipedrive.writes() == 1
    # a change to a receive-only field (the city) sends that field alone
    world.edit_planhat(name="Renamed again")
    world.edit_pipedrive(address={**world.org()["address"], "locality": "Lübeck"})
    world.receive()
    assert world.company()["name"] == "Renamed again" and world.company()["city"] == "Lübeck"


def test_a_merge_that_reads_every_company_does_the_runs_scan_in_the_same_read(
    world: World,
) -> None:
    """An incremental run whose organizations changed in number merges them with Planhat's
    whole company list, which the run's scan then read again (issue 14): now the scan is done
    in the merge's read, and each side's edits still reach the other, once."""
    changed = list(range(1, COMPANIES_ONE_BY_ONE + 3))  # too many to read one by one
    other = COMPANIES_ONE_BY_ONE + 3  # linked, unchanged in Pipedrive: only the scan sees it
    world.receive(*changed, other)
    for org_id in changed:
        world.edit_pipedrive(org_id, website=f"https://org{org_id}.example")
    world.edit_planhat(ORG, name="Renamed in Planhat")  # one of the merge's records
    world.edit_planhat(other, name="Renamed in Planhat too")  # the scan's
    world.reset_counters()
    scan = ScanSummary()
    world.receive(*changed, scan=scan)
    world.scan(scan)
    assert world.planhat.calls["GET /companies"] == 1  # one read of the list, not two
    assert scan.done == {"organization"} and scan.scanned["organization"] == len(changed) + 1
    assert world.org(ORG)["name"] == "Renamed in Planhat"  # by the merge
    assert world.org(other)["name"] == "Renamed in Planhat too"  # by the scan
    assert world.pipedrive.writes() == 2  # each once
    assert all(world.company(o)["web"] == f"https://org{o}.example" for o in changed)
    assert scan.changed["organization"] == 1  # `other`: the merge's own are not the scan's
    world.reset_counters()  # settled: nothing more either way
    world.receive(*changed, other)
    world.scan()
    assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0


@pytest.mark.parametrize(
    ("policy", "kept"), [("planhat_wins", "Planhat"), ("pipedrive_wins", "Pipedrive")]
)
def test_what_the_scan_finds_in_a_merges_read_waits_for_the_stream_to_be_written(
    tmp_path: Path, policy: str, kept: str
) -> None:
    """A record the stream has read but not yet written, changed on both sides: the scan in
    an earlier chunk's merge must not merge it then (the stream's copy, older than that
    merge's write, would undo it), nor after the stream from the page it read then (older
    than what the stream's own merge of it wrote)."""
    world = World(tmp_path, policy=policy)
    try:
        first = list(range(1, COMPANIES_ONE_BY_ONE + 3))
        later = COMPANIES_ONE_BY_ONE + 3
        world.receive(*first, later)
        for org_id in first:
            world.edit_pipedrive(org_id, website=f"https://org{org_id}.example")
        world.edit_pipedrive(later, name="Pipedrive's name")
        world.edit_planhat(later, name="Planhat's name")
        read_ahead = list(world.pipedrive.iter_organizations(ids=[later]))
        world.reset_counters()
        scan = ScanSummary()
        world.receive(*first, scan=scan)  # its merge reads every company: the scan's pages
        world.receive(read=read_ahead, scan=scan)  # the stream's next chunk
        world.scan(scan)
        assert world.org(later)["name"] == f"{kept}'s name"  # the policy, on both sides
        assert world.company(later)["name"] == f"{kept}'s name"
        assert world.pipedrive.writes() == (1 if kept == "Planhat" else 0)
        assert len([a for a in world.logged() + world.actions if a.action == "conflict"]) == 1
        world.reset_counters()  # settled
        world.receive(*first, later)
        world.scan()
        assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0
    finally:
        world.close()


def test_a_resync_never_reverts_a_planhat_edit(world: World) -> None:
    world.receive()
    world.edit_planhat(name="Renamed in Planhat")
    world.receive(force=True)
    assert world.company()["name"] == "Renamed in Planhat"
    assert world.org()["name"] == "Renamed in Planhat"


@pytest.mark.parametrize(
    ("policy", "pipedrive_time", "planhat_time", "kept"),
    [
        ("pipedrive_wins", "2026-11-29T10:00:00Z", "2026-11-29T11:00:00.000Z", "pipedrive"),
        ("planhat_wins", "2026-11-29T11:00:00Z", "2026-11-29T10:00:00.000Z", "planhat"),
        ("newest_wins", "2026-11-29T10:00:00Z", "2026-11-29T11:00:00.000Z", "planhat"),
        ("newest_wins", "2026-11-29T11:00:00Z", "2026-11-29T10:00:00.000Z", "pipedrive"),
    ],
)
@pytest.mark.parametrize("found_by", ["receive", "scan"])
def test_a_field_changed_on_both_sides_follows_the_policy_and_is_reported(
    tmp_path: Path, policy: str, pipedrive_time: str, planhat_time: str, kept: str, found_by: str
) -> None:
    world = World(tmp_path, policy=policy)
    try:
        world.receive()
        world.edit_pipedrive(name="Pipedrive's name")
        world.edit_planhat(name="Planhat's name")
        world.set_times(pipedrive=pipedrive_time, planhat=planhat_time)
        if found_by == "receive":
            world.receive()
            conflicts = [a for a in world.actions if a.action == "conflict"]
        else:
            world.scan()
            conflicts = [a for a in world.logged() if a.action == "conflict"]
        winner = "Pipedrive's name" if kept == "pipedrive" else "Planhat's name"
        assert world.org()["name"] == winner and world.company()["name"] == winner
        assert len(conflicts) == 1
        reason = conflicts[0].reason or ""
        assert "Pipedrive 'Pipedrive's name'" in reason and "Planhat 'Planhat's name'" in reason
        assert f"{kept.capitalize()} kept ({policy})" in reason
        # settled: nothing more to write either way
        world.reset_counters()
        world.receive()
        world.scan()
        assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0
    finally:
        world.close()


def test_null_clears_both_ways_and_empty_never_does(world: World) -> None:
    world.receive()
    world.edit_planhat(web=None)  # cleared in Planhat
    world.scan()
    assert world.org()["website"] is None
    world.edit_pipedrive(website="https://back.example")
    world.receive()
    assert world.company()["web"] == "https://back.example"
    world.edit_pipedrive(website=None)  # cleared in Pipedrive
    world.receive()
    assert world.company()["web"] is None
    world.edit_pipedrive(website="https://again.example")
    world.receive()
    world.edit_planhat(web="")  # empty: never overwrites
    world.reset_counters()
    world.scan()
    assert world.org()["website"] == "https://again.example" and world.pipedrive.writes() == 0


def test_a_receive_only_field_is_never_written_to_pipedrive(world: World) -> None:
    world.receive()
    world.edit_planhat(city="Planhat City", country="Planhatland")  # receive-only fields
    world.reset_counters()
    summary = world.scan()
    assert world.pipedrive.writes() == 0 and summary.changed["organization"] == 0
    assert world.org()["address"]["locality"] == "Hamburg"


def test_a_scan_of_unchanged_records_reads_one_page_and_writes_nothing(world: World) -> None:
    world.receive(*range(1, 21))
    world.reset_counters()
    summary = world.scan()
    held = len(world.planhat.records("companies"))
    assert held >= 15 and summary.scanned["organization"] == held
    assert summary.changed["organization"] == 0
    assert world.planhat.calls == Counter({"GET /companies": 1})
    assert world.pipedrive.calls == Counter()


def test_a_write_pipedrive_refuses_is_reported_and_tried_again(world: World) -> None:
    world.receive()
    world.edit_planhat(name="Renamed in Planhat")
    world.pipedrive.refuse.add(("organization", ORG))
    summary = world.scan()
    assert summary.failed["organization"] == 1
    failed = [a for a in world.logged() if a.action == "failed"]
    assert failed and failed[0].object_type == "organization_sent"
    assert "Pipedrive refused name" in (failed[0].reason or "")
    assert world.org()["name"] == "Müller & Søn GmbH"
    world.pipedrive.refuse.clear()
    world.scan()
    assert world.org()["name"] == "Renamed in Planhat"


def test_a_dry_run_scan_writes_nothing_and_says_what_it_would(tmp_path: Path) -> None:
    world = World(tmp_path)
    try:
        world.receive()
        world.edit_planhat(name="Renamed in Planhat")
        dry = load_settings(settings_dir(tmp_path / "dry", dry_run=True))
        world.mappings = compile_mappings(dry, world.account)
        world.reset_counters()
        world.scan()
        assert world.pipedrive.writes() == 0 and world.org()["name"] == "Müller & Søn GmbH"
        report = world.store.run_report("run")
        assert report.counts.get("organization_sent", {}).get("updated") == 1
    finally:
        world.close()


def test_send_only_pairs_a_planhat_company_by_its_source_id(tmp_path: Path) -> None:
    world = World(tmp_path, organizations="send")
    try:
        # a company Planhat holds with the organization's id, never synced by us
        world.planhat.store.bulk_upsert(
            "companies", [{"sourceId": str(ORG), "name": "Planhat's own name", "web": None}]
        )
        summary = world.scan()
        assert summary.changed["organization"] == 1
        org = world.org()
        assert org["name"] == "Planhat's own name" and org["website"] is None
        world.reset_counters()
        world.scan()
        assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0
    finally:
        world.close()


# -- convergence under random edits ---------------------------------------------------------------

NAMES = st.sampled_from(["Alpha", "Beta", "Gamma ÄÖ", "Delta & Co"])
WEBS = st.sampled_from(["https://a.example", "https://b.example", None])
EDIT = st.one_of(
    st.tuples(st.just("pipedrive"), st.just("name"), NAMES),
    st.tuples(st.just("pipedrive"), st.just("website"), WEBS),
    st.tuples(st.just("planhat"), st.just("name"), NAMES),
    st.tuples(st.just("planhat"), st.just("web"), WEBS),
    st.tuples(st.just("run"), st.sampled_from(["receive", "scan", "resync"]), st.none()),
)


def both_sides(world: World) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    org, company = world.org(), world.company()
    return (org["name"], org["website"]), (company["name"], company.get("web"))


@pytest.mark.parametrize("policy", ["pipedrive_wins", "planhat_wins", "newest_wins"])
def test_random_edits_on_both_sides_converge_and_then_nothing_is_written(
    tmp_path_factory: pytest.TempPathFactory, policy: str
) -> None:
    @settings(
        max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(edits=st.lists(EDIT, max_size=8))
    def run(edits: list[tuple[str, str, Any]]) -> None:
        world = World(tmp_path_factory.mktemp("world"), policy=policy)
        try:
            world.receive()
            for side, name, value in edits:
                if side == "pipedrive":
                    world.edit_pipedrive(**{name: value})
                elif side == "planhat":
                    world.edit_planhat(**{name: value})
                elif name == "scan":
                    world.scan()
                else:
                    world.receive(force=name == "resync")
            # what every run does in turn: the stream (or a notification), then the scan
            world.receive()
            world.scan()
            pipedrive, planhat = both_sides(world)
            assert pipedrive == planhat
            world.reset_counters()
            world.receive()
            world.scan()
            assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0
            assert both_sides(world) == (pipedrive, planhat)
        finally:
            world.close()

    run()


# -- created in Planhat: created in Pipedrive once ------------------------------------------------


def _named(world: World, name: str) -> list[dict[str, Any]]:
    return [o for o in world.pipedrive.model.organizations.values() if o.get("name") == name]


def _born(world: World, name: str = "Born in Planhat AG") -> str:
    saved = world.planhat.bulk_upsert("companies", [{"name": name, "web": "https://born.example"}])
    planhat_id = saved.items[0].id
    assert planhat_id
    return planhat_id


def test_a_company_created_in_planhat_becomes_one_organization_linked_both_ways(
    world: World,
) -> None:
    planhat_id = _born(world)
    summary = world.scan()
    (org,) = _named(world, "Born in Planhat AG")
    assert org["website"] == "https://born.example"
    assert summary.created["organization"] == 1
    company = world.planhat.store.find("companies", planhat_id)
    assert company is not None and company["sourceId"] == str(org["id"])
    assert world.store.links_for("organization", [org["id"]])[org["id"]].planhat_id == planhat_id
    world.reset_counters()
    world.scan()
    world.receive(org["id"])  # Pipedrive's side comes back: nothing more to write either way
    world.scan()
    assert len(_named(world, "Born in Planhat AG")) == 1
    assert world.pipedrive.writes() == 0


class CrashAfter(Exception):
    """The process dies right after a step succeeded."""


@pytest.mark.parametrize("step", ["create", "link", "write-back"])
def test_a_crash_at_any_step_never_creates_the_organization_twice(
    world: World, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    _born(world)
    if step == "create":
        create = world.pipedrive.create_organization

        def create_then_die(fields: dict[str, Any]) -> dict[str, Any]:
            create(fields)
            raise CrashAfter

        monkeypatch.setattr(world.pipedrive, "create_organization", create_then_die)
    elif step == "link":
        upsert_links = world.store.upsert_links

        def link_then_die(*args: Any, **kwargs: Any) -> Any:
            upsert_links(*args, **kwargs)
            raise CrashAfter

        monkeypatch.setattr(world.store, "upsert_links", link_then_die)
    else:
        bulk = world.planhat.bulk_upsert

        def die_on_write_back(model: str, items: Any) -> Any:
            items = list(items)
            if any("_id" in i for i in items):
                raise CrashAfter
            return bulk(model, items)

        monkeypatch.setattr(world.planhat, "bulk_upsert", die_on_write_back)
    with pytest.raises(CrashAfter):
        world.scan()
    monkeypatch.undo()
    world.reset_counters()
    world.scan()
    if step == "write-back":  # linked already: only the sourceId is written, nothing looked up
        assert world.pipedrive.calls == Counter()
    world.scan()
    (org,) = _named(world, "Born in Planhat AG")
    company = next(c for c in world.planhat.records("companies") if c["name"] == org["name"])
    assert company["sourceId"] == str(org["id"])


def test_an_end_user_created_in_planhat_becomes_a_person_of_its_organization(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, contacts="both")
    try:
        world.receive()
        company = world.company()
        saved = world.planhat.bulk_upsert(
            "endusers",
            [{"companyId": company["_id"], "firstName": "Ada", "lastName": "Planhat",
              "email": "ada@born.example"}],
        )  # fmt: skip
        user_id = saved.items[0].id
        world.scan()
        (person,) = [
            p for p in world.pipedrive.model.persons.values() if p.get("name") == "Ada Planhat"
        ]
        assert person["org_id"] == ORG
        assert [e["value"] for e in person["emails"]] == ["ada@born.example"]
        user = world.planhat.store.find("endusers", user_id or "")
        assert user is not None and user["sourceId"] == str(person["id"])
        world.reset_counters()
        world.scan()
        assert world.pipedrive.writes() == 0
    finally:
        world.close()


def test_a_note_written_in_planhat_reaches_pipedrive_and_its_edits_follow(tmp_path: Path) -> None:
    world = World(tmp_path, notes="both")
    try:
        world.receive()
        company = world.company()
        saved = world.planhat.bulk_upsert(
            "conversations",
            [{"type": "note", "companyId": company["_id"], "description": "<p>From Planhat</p>"}],
        )
        conversation_id = saved.items[0].id or ""
        world.scan()
        (note,) = [
            n for n in world.pipedrive.model.notes.values() if "From Planhat" in n["content"]
        ]
        assert note["org_id"] == ORG
        conversation = world.planhat.store.find("conversations", conversation_id)
        assert conversation is not None and conversation["sourceId"] == str(note["id"])
        world.planhat.bulk_upsert(
            "conversations", [{"_id": conversation_id, "description": "<p>Edited in Planhat</p>"}]
        )
        world.reset_counters()
        world.scan()
        edited = world.pipedrive.model.notes.get(note["id"])
        assert edited is not None and edited["content"] == "<p>Edited in Planhat</p>"
        assert world.pipedrive.calls["PUT /notes"] == 1
        world.reset_counters()
        world.scan()
        assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0
    finally:
        world.close()


def test_a_license_field_mapped_both_ways_reaches_its_deal(tmp_path: Path) -> None:
    world = World(tmp_path, deals="both")
    try:
        deal_id = 12  # won in New business, PO number PO-2024-00012
        world.receive_deal(deal_id)
        (license_,) = [
            r for r in world.planhat.records("licenses") if r.get("sourceId") == str(deal_id)
        ]
        assert license_["custom"]["PO number"] == "PO-2024-00012"
        world.planhat.bulk_upsert(
            "licenses", [{"_id": license_["_id"], "custom": {"PO number": "PO-2026-0042"}}]
        )
        world.reset_counters()
        world.scan()
        deal = world.pipedrive.model.deals.get(deal_id)
        assert deal is not None
        po_key = next(
            k for k, v in deal["custom_fields"].items() if v == "PO-2026-0042"
        )  # written to the PO number field, and only it
        assert world.pipedrive.calls["PATCH /deals"] == 1 and po_key
        world.reset_counters()
        world.receive_deal(deal_id)  # the deal's notification of our write: nothing to write
        world.scan()
        assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0
    finally:
        world.close()


def test_contacts_send_only_pairs_end_users_and_keeps_a_persons_other_emails(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, contacts="send")
    try:
        world.receive()  # the company (organizations: both)
        company = world.company()
        # an end user Planhat holds for person 5 (two emails in Pipedrive), never synced by us
        world.planhat.bulk_upsert(
            "endusers",
            [{"sourceId": "5", "companyId": company["_id"], "email": "joerg@new.example",
              "firstName": "Jörg", "lastName": "Schäfer-Neu"}],
        )  # fmt: skip
        world.scan()
        person = world.pipedrive.model.persons.get(5)
        assert person is not None and person["last_name"] == "Schäfer-Neu"
        emails = [(e["value"], e["primary"]) for e in person["emails"]]
        assert ("joerg@new.example", True) in emails
        assert ("joerg.schaefer9@yahoo.co.jp", False) in emails  # the other address is kept
        world.reset_counters()
        world.scan()
        assert world.pipedrive.writes() == 0 and planhat_writes(world) == 0
    finally:
        world.close()
