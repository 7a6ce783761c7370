"""The kinds of object the sync moves: ONE table, read by everything else.

Each kind is named four ways by four parts of the product, and this table is where the names
meet: its settings section (`organizations`), its Pipedrive entity (`organization`: also the
object type of links and of the run log), its Pipedrive collection (`organizations`: also the
cursor stream of the incremental sync), and its Planhat object and API model (`company`,
`/companies`). It also says how Pipedrive lists it, which field-map file maps it and how people
call it. The order is the order of writing: a company before the end users, licenses and notes
that hang under it.

Adding a kind: one entry here, its field-map file, and its receive mapping
(`mappings.receive`); fetching, pushing, cursors, reports and the CLI read the rest from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PipedriveEntity = Literal["organization", "person", "deal", "note"]
PlanhatObject = Literal["company", "enduser", "license", "note"]
Section = Literal["organizations", "contacts", "deals", "notes"]
Stream = Literal["organizations", "persons", "deals", "notes"]


@dataclass(frozen=True)
class Kind:
    """One Pipedrive entity and the Planhat object it becomes."""

    pipedrive: PipedriveEntity  # the entity; also the object type of links and the run log
    section: Section  # its section in integration.yaml (direction, options)
    stream: Stream  # its Pipedrive collection; also its cursor's name
    pipedrive_list: str  # the PipedriveClient method that lists it (`updated_since=` paging)
    pipedrive_update: str  # the PipedriveClient method that writes fields of one record
    planhat: PlanhatObject  # the Planhat object the field maps name
    planhat_model: str  # Planhat's API model (the path: /companies, ...)
    file: str  # the field-map file
    pipedrive_title: str  # as people say it
    planhat_title: str

    @property
    def planhat_plural(self) -> str:
        return "companies" if self.planhat_title == "company" else self.planhat_title + "s"

    @property
    def label(self) -> str:
        """`organizations → companies`: how reports name what moved."""
        return f"{self.stream} → {self.planhat_plural}"

    @property
    def sent_type(self) -> str:
        """The run log's object type of what was written to Pipedrive (`organization_sent`)."""
        return f"{self.pipedrive}_sent"

    @property
    def sent_label(self) -> str:
        """`companies → organizations`: how reports name what was sent to Pipedrive."""
        return f"{self.planhat_plural} → {self.stream}"


KINDS: tuple[Kind, ...] = (
    Kind("organization", "organizations", "organizations", "iter_organizations",
         "update_organization", "company", "companies", "organization_company.yaml",
         "organization", "company"),
    Kind("person", "contacts", "persons", "iter_persons", "update_person",
         "enduser", "endusers", "person_enduser.yaml", "person", "end user"),
    Kind("deal", "deals", "deals", "iter_deals", "update_deal",
         "license", "licenses", "deal_license.yaml", "deal", "license"),
    Kind("note", "notes", "notes", "iter_notes", "update_note",
         "note", "conversations", "note_note.yaml", "note", "note"),
)  # fmt: skip

#: the same kinds, looked up by each of their names
BY_ENTITY: dict[str, Kind] = {k.pipedrive: k for k in KINDS}
BY_SECTION: dict[str, Kind] = {k.section: k for k in KINDS}
BY_STREAM: dict[str, Kind] = {k.stream: k for k in KINDS}
BY_PLANHAT: dict[str, Kind] = {k.planhat: k for k in KINDS}
BY_SENT_TYPE: dict[str, Kind] = {k.sent_type: k for k in KINDS}

__all__ = [
    "BY_ENTITY",
    "BY_PLANHAT",
    "BY_SENT_TYPE",
    "BY_SECTION",
    "BY_STREAM",
    "KINDS",
    "Kind",
    "PipedriveEntity",
    "PlanhatObject",
    "Section",
    "Stream",
]
