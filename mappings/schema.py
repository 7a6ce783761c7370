"""What the product knows about both systems' objects and fields, without asking either.

* The four pairs (the kinds of `mappings.kinds`): Pipedrive organization ⇄ Planhat company,
  person ⇄ end user, deal ⇄ license, note ⇄ note (a Planhat conversation of type `note`).
* Pipedrive's system fields per entity (v2 shapes; notes are v1 only): the conversion each
  needs and whether the API lets us write it. Custom fields (40-character keys) come from the
  account's `*Fields` lists at run time.
* Planhat's system attributes per object: writable ones, read-only ones Planhat computes (which
  can only be sent to Pipedrive), and the ones the sync itself sets (keys and links), which no
  rule may write.

Sources: `../shared/reference/pipedrive-api.md` §3.1-3.7 and `planhat-api.md` §3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mappings.kinds import (
    BY_PLANHAT,
    BY_SECTION,
    KINDS,
    Kind,
    PipedriveEntity,
    PlanhatObject,
    Section,
)

__all__ = [
    "ADDRESS_PARTS",
    "CUSTOM_FIELD_KEY",
    "CUSTOM_MATCHES_FILE",
    "DIRECTIONS",
    "INTEGRATION_FILE",
    "PAIRS",
    "PIPEDRIVE_FIELDS",
    "PLANHAT_ATTRIBUTES",
    "PLANHAT_OBJECTS",
    "Direction",
    "Pair",
    "PipedriveEntity",
    "PipedriveField",
    "PlanhatAttribute",
    "PlanhatObject",
    "Section",
    "pair_of_section",
]

Direction = Literal["receive", "send", "both", "none"]
DIRECTIONS: tuple[str, ...] = ("receive", "send", "both", "none")
PLANHAT_OBJECTS: tuple[str, ...] = tuple(k.planhat for k in KINDS)

#: The pairs of the field maps, keyed by Planhat object: the kinds of `mappings.kinds`.
Pair = Kind
PAIRS: dict[str, Kind] = dict(BY_PLANHAT)


#: the settings files besides the pairs' field maps
INTEGRATION_FILE = "integration.yaml"
CUSTOM_MATCHES_FILE = "custom_matches.yaml"
#: a Pipedrive custom field's key (40 hex digits), as the `*Fields` lists and field maps hold it
CUSTOM_FIELD_KEY = re.compile(r"^[0-9a-f]{40}$")


def pair_of_section(section: str) -> Kind:
    return BY_SECTION[section]


@dataclass(frozen=True)
class PipedriveField:
    kind: str  # the default conversion (see mappings.values.CONVERTERS)
    writable: bool


_R, _W = False, True

# Address-typed fields also offer their parts (`address.country`), for receiving only.
ADDRESS_PARTS: tuple[str, ...] = (
    "value", "country", "admin_area_level_1", "admin_area_level_2", "locality", "sublocality",
    "route", "street_number", "subpremise", "postal_code", "formatted_address",
)  # fmt: skip

PIPEDRIVE_FIELDS: dict[str, dict[str, PipedriveField]] = {
    "organization": {
        "id": PipedriveField("id", _R),
        "name": PipedriveField("text", _W),
        "owner_id": PipedriveField("user", _W),
        "address": PipedriveField("address", _W),
        "website": PipedriveField("text", _W),
        "linkedin": PipedriveField("text", _W),
        "industry": PipedriveField("enum", _W),
        "annual_revenue": PipedriveField("number", _W),
        "employee_count": PipedriveField("number", _W),
        "label_ids": PipedriveField("set", _W),
        "visible_to": PipedriveField("number", _W),
        "add_time": PipedriveField("datetime", _R),
        "update_time": PipedriveField("datetime", _R),
        "is_deleted": PipedriveField("boolean", _R),
    },
    "person": {
        "id": PipedriveField("id", _R),
        "name": PipedriveField("text", _W),
        "first_name": PipedriveField("text", _W),
        "last_name": PipedriveField("text", _W),
        "owner_id": PipedriveField("user", _W),
        "org_id": PipedriveField("id", _R),  # the link: set by the sync from the company
        "emails": PipedriveField("primary_email", _W),
        "phones": PipedriveField("primary_phone", _W),
        "label_ids": PipedriveField("set", _W),
        "visible_to": PipedriveField("number", _W),
        "picture_id": PipedriveField("id", _R),
        "job_title": PipedriveField("text", _W),  # Contact Sync accounts only
        "notes": PipedriveField("text", _W),  # Contact Sync accounts only
        "birthday": PipedriveField("date", _W),  # Contact Sync accounts only
        "postal_address": PipedriveField("address", _W),  # Contact Sync accounts only
        "add_time": PipedriveField("datetime", _R),
        "update_time": PipedriveField("datetime", _R),
        "is_deleted": PipedriveField("boolean", _R),
    },
    "deal": {
        "id": PipedriveField("id", _R),
        "title": PipedriveField("text", _W),
        "value": PipedriveField("money", _W),
        "currency": PipedriveField("currency", _W),
        "owner_id": PipedriveField("user", _W),
        "creator_user_id": PipedriveField("user", _R),
        "person_id": PipedriveField("id", _R),
        "org_id": PipedriveField("id", _R),
        "pipeline_id": PipedriveField("id", _R),
        "stage_id": PipedriveField("id", _R),
        "status": PipedriveField("text", _R),
        "probability": PipedriveField("number", _W),
        "lost_reason": PipedriveField("text", _W),
        "expected_close_date": PipedriveField("date", _W),
        "label_ids": PipedriveField("set", _W),
        "visible_to": PipedriveField("number", _W),
        "origin": PipedriveField("text", _R),
        "channel": PipedriveField("id", _W),
        "arr": PipedriveField("number", _R),
        "mrr": PipedriveField("number", _R),
        "acv": PipedriveField("number", _R),
        "add_time": PipedriveField("datetime", _R),
        "update_time": PipedriveField("datetime", _R),
        "stage_change_time": PipedriveField("datetime", _R),
        "close_time": PipedriveField("datetime", _R),
        "won_time": PipedriveField("datetime", _R),
        "lost_time": PipedriveField("datetime", _R),
        "first_won_time": PipedriveField("datetime", _R),
        "archive_time": PipedriveField("datetime", _R),
        "local_won_date": PipedriveField("date", _R),
        "local_lost_date": PipedriveField("date", _R),
        "local_close_date": PipedriveField("date", _R),
        "is_archived": PipedriveField("boolean", _R),
        "is_deleted": PipedriveField("boolean", _R),
    },
    "note": {  # v1 only (there is no v2 note)
        "id": PipedriveField("id", _R),
        "content": PipedriveField("html", _W),
        "add_time": PipedriveField("datetime", _W),
        "update_time": PipedriveField("datetime", _R),
        "user_id": PipedriveField("user", _W),
        "deal_id": PipedriveField("id", _R),
        "person_id": PipedriveField("id", _R),
        "org_id": PipedriveField("id", _R),
        "lead_id": PipedriveField("text", _R),
        "active_flag": PipedriveField("boolean", _R),
        "pinned_to_deal_flag": PipedriveField("boolean", _W),
        "pinned_to_organization_flag": PipedriveField("boolean", _W),
        "pinned_to_person_flag": PipedriveField("boolean", _W),
        "last_update_user_id": PipedriveField("user", _R),
    },
}


@dataclass(frozen=True)
class PlanhatAttribute:
    writable: bool
    kinds: tuple[str, ...] = ()  # conversions it accepts (empty: any)
    note: str = ""


_NUM = ("number", "money")
_DATE = ("date", "datetime")
_BOOL = ("boolean",)
_USER = ("user",)

PLANHAT_ATTRIBUTES: dict[str, dict[str, PlanhatAttribute]] = {
    "company": {
        "name": PlanhatAttribute(True),
        "owner": PlanhatAttribute(True, _USER),
        "coOwner": PlanhatAttribute(True, _USER),
        "externalId": PlanhatAttribute(True),
        "phase": PlanhatAttribute(True),
        "description": PlanhatAttribute(True),
        "address": PlanhatAttribute(True),
        "country": PlanhatAttribute(True),
        "city": PlanhatAttribute(True),
        "zip": PlanhatAttribute(True),
        "phonePrimary": PlanhatAttribute(True),
        "web": PlanhatAttribute(True),
        "tags": PlanhatAttribute(True),
        "domains": PlanhatAttribute(True),
        "status": PlanhatAttribute(False, note="set from the company's licenses"),
        "mrr": PlanhatAttribute(False, note="the sum of the company's licenses"),
        "arr": PlanhatAttribute(False, note="the sum of the company's licenses"),
        "h": PlanhatAttribute(False, note="the health score"),
        "renewalDate": PlanhatAttribute(False),
        "customerFrom": PlanhatAttribute(False),
        "customerTo": PlanhatAttribute(False),
        "createdAt": PlanhatAttribute(False),
        "updatedAt": PlanhatAttribute(False),
    },
    "enduser": {
        "email": PlanhatAttribute(True),
        "firstName": PlanhatAttribute(True),
        "lastName": PlanhatAttribute(True),
        "position": PlanhatAttribute(True),
        "phone": PlanhatAttribute(True),
        "externalId": PlanhatAttribute(True),
        "tags": PlanhatAttribute(True),
        "otherEmails": PlanhatAttribute(True),
        "featured": PlanhatAttribute(True, _BOOL),
        "primary": PlanhatAttribute(True, _BOOL),
        "archived": PlanhatAttribute(True, _BOOL),
        "name": PlanhatAttribute(False, note="made from firstName and lastName"),
        "companyName": PlanhatAttribute(False),
        "createDate": PlanhatAttribute(False),
        "updatedAt": PlanhatAttribute(False),
    },
    "license": {
        "value": PlanhatAttribute(True, _NUM),
        "mrr": PlanhatAttribute(True, _NUM),
        "_currency": PlanhatAttribute(True, ("currency", "text")),
        "renewalStatus": PlanhatAttribute(True),
        "autoRenews": PlanhatAttribute(True, _BOOL),
        "renewalPeriod": PlanhatAttribute(True, _NUM),
        "renewalUnit": PlanhatAttribute(True),
        "noticePeriod": PlanhatAttribute(True, _NUM),
        "noticeUnit": PlanhatAttribute(True),
        "length": PlanhatAttribute(False, note="computed from fromDate and toDate"),
        "renewalDate": PlanhatAttribute(False),
        "arr": PlanhatAttribute(False),
        "renewalMrr": PlanhatAttribute(False),
        "renewalArr": PlanhatAttribute(False),
        "isOverdue": PlanhatAttribute(False),
        "companyName": PlanhatAttribute(False),
    },
    "note": {
        "subject": PlanhatAttribute(True),
        "description": PlanhatAttribute(True),
        "date": PlanhatAttribute(True, _DATE),
        "tags": PlanhatAttribute(True),
        "activityTags": PlanhatAttribute(True),
        "starred": PlanhatAttribute(True, _BOOL),
        "pinned": PlanhatAttribute(True, _BOOL),
        "archived": PlanhatAttribute(True, _BOOL),
        "snippet": PlanhatAttribute(False),
        "createDate": PlanhatAttribute(False),
    },
}

#: Fields the sync sets itself (keys, links, the license terms): no rule may write them.
RESERVED: dict[str, dict[str, str]] = {
    "company": {"sourceId": "the sync sets it to the organization id", "_id": "Planhat's own id"},
    "enduser": {
        "sourceId": "the sync sets it to the person id",
        "companyId": "the sync sets it to the company of the person's organization",
        "_id": "Planhat's own id",
    },
    "license": {
        "sourceId": "the sync sets it to the deal id",
        "externalId": "the sync sets it to the deal id",
        "companyId": "the sync sets it to the company of the deal's organization",
        "product": "it comes from `license.product` in integration.yaml",
        "fromDate": "it comes from `license.start_date` in integration.yaml",
        "toDate": "it is fromDate plus `license.length_months` (integration.yaml)",
        "fixedPeriod": "licenses from deals always have a fixed period",
        "_id": "Planhat's own id",
    },
    "note": {
        "sourceId": "the sync sets it to the note id",
        "externalId": "the sync sets it to the note id",
        "companyId": "the sync sets it to the company of the note's organization",
        "type": "notes are conversations of type note",
        "_id": "Planhat's own id",
    },
}

#: Pipedrive fields the sync sets itself when sending (links), per entity.
PIPEDRIVE_LINKS: dict[str, dict[str, str]] = {
    "organization": {"id": "the organization's id is the company's sourceId"},
    "person": {
        "id": "the person's id is the end user's sourceId",
        "org_id": "the sync sets it from the end user's company",
    },
    "deal": {"id": "the deal's id is the license's sourceId"},
    "note": {
        "id": "the note's id is the note's sourceId",
        "org_id": "the sync sets it from the note's company",
        "deal_id": "a note keeps the deal it was written on",
        "person_id": "a note keeps the person it was written on",
    },
}

#: Planhat fields a record must have before it can be created (a record lacking one is skipped
#: and reported instead of being sent to fail).
REQUIRED: dict[str, tuple[str, ...]] = {
    "company": ("name",),
    "enduser": ("email", "companyId"),
    "license": ("companyId", "_currency", "fromDate", "toDate", "value"),
    "note": ("companyId", "description"),
}
