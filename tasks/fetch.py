"""Fetch: read from Pipedrive what one run needs, in as few calls as the API allows.

What a deal notification or a company resync needs, in batches (the incremental sync and the
backfill read their streams page by page in `tasks.stream`, with the helpers here):

* **deals by id** (`fetch_deals_by_id`), a company's organization and deals
  (`fetch_organization_deals`);
* **what a set of deals needs** (`fetch_deal_relations`): their organizations (`ids` filter,
  100 a call), the persons of those organizations (`org_id`), the deals' own persons outside
  them (`ids`), and their notes (`deal_id`, `org_id`), skipping whatever the caller already
  holds. A single webhook costs at most 6 calls this way.

A section whose direction is `none` or `send` is never read (design §1).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients import PipedriveClient
from clients.pipedrive import PAGE_SIZE
from mappings.kinds import KINDS
from mappings.resolve import Mappings
from mappings.values import parse_time
from tasks import steplog
from tasks.context import SyncContext

log = logging.getLogger(__name__)

Record = dict[str, Any]

#: section (as in the settings) → the stream (cursor name) and the Pipedrive collection
STREAMS: dict[str, str] = {k.section: k.stream for k in KINDS}


class Fetched:
    """Pipedrive records of one run (v2 shapes; notes v1), each id once.

    Batch containers are plain classes, not dataclasses: Prefect walks dataclasses, lists and
    dicts passed to a task (looking for futures), which for a backfill would mean traversing
    every record at every task call."""

    def __init__(self) -> None:
        self.deals: dict[int, Record] = {}
        self.organizations: dict[int, Record] = {}
        self.persons: dict[int, Record] = {}
        self.notes: dict[int, Record] = {}
        #: deals asked for by id that Pipedrive no longer has, even among its deleted ones
        self.missing_deals: set[int] = set()

    def add(self, stream: str, records: Iterable[Record]) -> int:
        """Add records of a stream, last copy of an id wins; returns how many were read."""
        bucket: dict[int, Record] = getattr(self, stream)
        n = 0
        for record in records:
            n += 1
            record_id = record.get("id")
            if isinstance(record_id, int):
                bucket[record_id] = record
        return n


#: A progress listener: `listener(stream, records_read, done)`, called by the streamed sync
#: after each full page it read and once when a stream is read to its end.
PageListener = Callable[[str, int, bool], None]
_page_listeners: list[PageListener] = []


@contextmanager
def page_progress(listener: PageListener) -> Iterator[None]:
    """Call `listener` for every page the streamed sync reads in this process while the block
    runs (the CLI's progress bar). Optional: without a listener nothing changes."""
    _page_listeners.append(listener)
    try:
        yield
    finally:
        _page_listeners.remove(listener)


def notify_page(stream: str, read: int, done: bool) -> None:
    """Tell the page listeners (`page_progress`) that `read` records of `stream` are read."""
    for listener in list(_page_listeners):
        try:
            listener(stream, read, done)
        except Exception:  # a display problem never fails a sync
            log.debug("page progress listener failed", exc_info=True)


def page_size() -> int:
    """Records per page of a list read (Pipedrive's maximum; tests make it smaller)."""
    return PAGE_SIZE


def update_time(record: Record) -> datetime | None:
    """A record's `update_time` (v2 RFC 3339 or v1 `YYYY-MM-DD HH:MM:SS`, UTC) as a datetime."""
    value = record.get("update_time")
    if not value:
        return None
    try:
        return parse_time(value)
    except Exception:  # noqa: BLE001 - a malformed time only loses the cursor hint
        return None


_TIME_TEXT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\dZ?")
_KEY_FORMAT = "%Y-%m-%d%H:%M:%S"


def time_key(record: Record) -> str | None:
    """A record's `update_time` as text that sorts in time order, `YYYY-MM-DDHH:MM:SS` (UTC,
    whole seconds): both of Pipedrive's forms are cut, not parsed (a stream compares every
    record's); anything else goes through `update_time`. `key_time` turns it back."""
    value = record.get("update_time")
    if type(value) is str and len(value) in (19, 20) and _TIME_TEXT.fullmatch(value):
        return value[:10] + value[11:19]
    when = update_time(record)
    return None if when is None else when.strftime(_KEY_FORMAT)


def key_time(key: str) -> datetime:
    """The time of a `time_key`."""
    return datetime.strptime(key, _KEY_FORMAT).replace(tzinfo=UTC)


def since_with_overlap(cursor: datetime | None, overlap_s: int) -> datetime | None:
    """Where an incremental read starts: the cursor minus the overlap window (same-second and
    late-committed updates at the boundary are read again rather than lost)."""
    if cursor is None:
        return None
    return (cursor - timedelta(seconds=overlap_s)).astimezone(UTC)


def receiving_sections(mappings: Mappings) -> list[str]:
    """The sections read from Pipedrive: direction receive or both."""
    return [section for section in STREAMS if mappings.receives(section)]


def fetch_deals_by_id(pipedrive: PipedriveClient, deal_ids: Sequence[int], into: Fetched) -> int:
    """The deals' current state (v2, 100 ids a call): fresh state wins over notification order.
    Deals the list does not return are looked for among the deleted ones (one more call, only
    then), so that the run says why it wrote nothing; those not found at all are noted in
    `into.missing_deals`."""
    ids = sorted({int(i) for i in deal_ids} - set(into.deals))
    if not ids:
        return 0
    read = into.add("deals", pipedrive.iter_deals(ids=ids))
    gone = [i for i in ids if i not in into.deals]
    if gone:
        read += into.add("deals", pipedrive.iter_deals(ids=gone, status="deleted"))
        into.missing_deals.update(i for i in gone if i not in into.deals)
    return read


def fetch_deal_relations(
    pipedrive: PipedriveClient,
    mappings: Mappings,
    deals: Sequence[Record],
    into: Fetched,
    *,
    org_ids: Iterable[int] = (),
    refresh_organizations: Iterable[int] = (),
    already: set[tuple[str, int]] | None = None,
) -> None:
    """Everything `deals` (and the extra organizations `org_ids`) bring into Planhat that
    `into` does not hold yet: the organizations, their persons (and each deal's own person),
    and the notes on the deals and the organizations, per the settings' directions and note
    scope. `refresh_organizations`: more organizations read in the same `ids` call (not their
    persons or notes). `already`: the reads this run made before (an organization's persons, a
    deal's notes...), skipped and recorded (a deal-sync run's later batches: each once a run)."""
    done: set[tuple[str, int]] = already if already is not None else set()
    wanted_orgs = {d["org_id"] for d in deals if isinstance(d.get("org_id"), int)}
    wanted_orgs |= {int(i) for i in org_ids}
    if mappings.receives("organizations"):
        missing = sorted((wanted_orgs | set(refresh_organizations)) - set(into.organizations))
        if missing:
            into.add("organizations", pipedrive.iter_organizations(ids=missing))
    if mappings.receives("contacts"):
        for org_id in sorted(wanted_orgs):
            if ("persons of organization", org_id) not in done:
                into.add("persons", pipedrive.iter_persons(org_id=org_id))
                done.add(("persons of organization", org_id))
        own = sorted(
            {d["person_id"] for d in deals if isinstance(d.get("person_id"), int)}
            - set(into.persons)
            - {i for what, i in done if what == "person"}
        )
        if own:
            into.add("persons", pipedrive.iter_persons(ids=own))
            done.update(("person", i) for i in own)
    if mappings.receives("notes"):
        scope = mappings.notes_scope
        if "deal" in scope:
            for deal in deals:
                if ("notes of deal", int(deal["id"])) not in done:
                    into.add("notes", pipedrive.iter_notes(deal_id=int(deal["id"])))
                    done.add(("notes of deal", int(deal["id"])))
        if "organization" in scope:
            for org_id in sorted(wanted_orgs):
                if ("notes of organization", org_id) not in done:
                    into.add("notes", pipedrive.iter_notes(org_id=org_id))
                    done.add(("notes of organization", org_id))


# -- Prefect tasks: thin wrappers (retries are the clients': one budget, see clients.http) --


@task(
    name="fetch deals by id",
    cache_policy=NO_CACHE,
)
def fetch_deals_task(ctx: SyncContext, deal_ids: Sequence[int]) -> Fetched:
    fetched = Fetched()
    if ctx.mappings.receives("deals"):
        fetch_deals_by_id(ctx.pipedrive, deal_ids, fetched)
    steplog.fetched_records(fetched, ", ".join(f"deal {i}" for i in list(deal_ids)[:5]))
    return fetched


def fetch_organization_deals(pipedrive: PipedriveClient, org_id: int, into: Fetched) -> int:
    """A company resync: the organization and every deal of it (selection keeps the won ones)."""
    into.add("organizations", pipedrive.iter_organizations(ids=[org_id]))
    return into.add("deals", pipedrive.iter_deals(org_id=org_id))


@task(
    name="fetch a company's organization and deals",
    cache_policy=NO_CACHE,
)
def fetch_company_task(ctx: SyncContext, org_id: int) -> Fetched:
    fetched = Fetched()
    if ctx.mappings.receives("organizations") or ctx.mappings.receives("deals"):
        fetch_organization_deals(ctx.pipedrive, org_id, fetched)
    if int(org_id) not in fetched.organizations:
        raise LookupError(
            f"Pipedrive has no organization {org_id} (deleted, or not visible to the token's "
            "user): nothing to resync"
        )
    steplog.fetched_records(fetched, f"organization {org_id} and its deals")
    return fetched


def resolve_organization_id(ctx: SyncContext, company: str | int) -> int:
    """The Pipedrive organization of a resync request: a Pipedrive organization id (digits), or
    a Planhat company `_id` (through the links, else the company's `sourceId`)."""
    text = str(company).strip()
    if text.isdigit():
        return int(text)
    if not text:
        raise ValueError("company: give a Planhat company id or a Pipedrive organization id")
    link = ctx.store.links_by_planhat("organization", [text]).get(text)
    if link is not None:
        return link.pipedrive_id
    record = ctx.planhat.get("companies", text)
    source = str(record.get("sourceId") or "")
    if source.isdigit():
        return int(source)
    raise LookupError(
        f"Planhat company {text} ({record.get('name')!r}) is not linked to a Pipedrive "
        "organization (its sourceId holds no organization id): resync it by its Pipedrive "
        "organization id instead"
    )


@task(name="resolve the company", cache_policy=NO_CACHE)
def resolve_company_task(ctx: SyncContext, company: str) -> int:
    return resolve_organization_id(ctx, company)
