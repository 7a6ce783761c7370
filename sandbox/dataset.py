"""The data a sandbox starts with: plain records in the real APIs' own shapes.

This is the contract between the data generator (`sandbox.data.generate`) and the two sandbox
apps. Every record is a plain dict exactly as the real API returns it (so an app serves it with
no conversion beyond the documented v1 views of v2 records):

Pipedrive (`PipedriveSeed`)
* `deals`, `organizations`, `persons`: the **v2** shape (`GET /api/v2/deals/{id}` etc.): ints for
  `owner_id`/`org_id`/`person_id`, RFC 3339 UTC times (`2025-01-02T03:04:05Z`), custom field
  values under `custom_fields` keyed by the 40-character hash (`field_code`), `visible_to` an int,
  `label_ids` an int list, persons' `emails`/`phones` as `[{value, primary, label}]`.
* `pipelines`, `stages`: the v2 shape.
* `deal_fields`, `organization_fields`, `person_fields`: the **v2** `*Fields` item shape
  (`field_code`, `field_name`, `field_type`, `options`, `subfields`, `is_custom_field`, ...).
  The v1 `*Fields` views are derived from them.
* `notes`: the **v1** note shape (`id`, `content` HTML, `deal_id`, `person_id`, `org_id`,
  `user_id`, `add_time`/`update_time` as `YYYY-MM-DD HH:MM:SS` UTC, `active_flag`, pinned flags)
  without the embedded `deal`/`person`/`organization`/`user` objects, which the API adds.
* `users`: the v1 user shape (`GET /api/v1/users` item); `me_user_id` is the user every sandbox
  token belongs to (an admin). `company` holds `id`, `name`, `domain` (the subdomain).

Planhat (`PlanhatSeed`): `users` (team members: `_id`, `email`, `firstName`, `lastName`,
`nickName`, `externalId`) and, usually empty, `companies`, `endusers`, `licenses`,
`conversations` in Planhat's read shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]


@dataclass
class PipedriveSeed:
    company: Record = field(
        default_factory=lambda: {"id": 5501234, "name": "Sandbox Sales Ltd", "domain": "sandbox"}
    )
    me_user_id: int = 0
    users: list[Record] = field(default_factory=list)
    pipelines: list[Record] = field(default_factory=list)
    stages: list[Record] = field(default_factory=list)
    deal_fields: list[Record] = field(default_factory=list)
    organization_fields: list[Record] = field(default_factory=list)
    person_fields: list[Record] = field(default_factory=list)
    organizations: list[Record] = field(default_factory=list)
    persons: list[Record] = field(default_factory=list)
    deals: list[Record] = field(default_factory=list)
    notes: list[Record] = field(default_factory=list)


@dataclass
class PlanhatSeed:
    users: list[Record] = field(default_factory=list)
    companies: list[Record] = field(default_factory=list)
    endusers: list[Record] = field(default_factory=list)
    licenses: list[Record] = field(default_factory=list)
    conversations: list[Record] = field(default_factory=list)
