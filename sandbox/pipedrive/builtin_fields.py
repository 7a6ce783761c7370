"""The built-in fields of the entities whose `*Fields` lists the sandbox serves but whose records
it does not hold (activities, notes, products, leads), in the seed's v2 field shape.

Third-party clients read every `*Fields` list at discovery (`GET /v1/noteFields` and friends,
SPEC1), so each must answer with a plausible catalogue. The keys and types follow the examples
and record schemas of Pipedrive's v1 description (e.g. `noteFields`: `content` text,
`pinned_to_deal_flag` an enum of Yes 1 / No 0); none is a custom field.
"""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]

_YES_NO = [{"id": 1, "label": "Yes"}, {"id": 0, "label": "No"}]
_BUSY_FREE = [{"id": 1, "label": "Busy"}, {"id": 0, "label": "Free"}]
_DONE = [{"id": 1, "label": "Done"}, {"id": 0, "label": "To do"}]
_VISIBLE_TO = [
    {"id": 1, "label": "Owner & followers"},
    {"id": 3, "label": "Entire company"},
    {"id": 5, "label": "Owner's visibility group"},
    {"id": 7, "label": "Owner's visibility group and sub-groups"},
]


def _field(code: str, name: str, field_type: str, options: list[Record] | None = None) -> Record:
    return {
        "field_name": name,
        "field_code": code,
        "description": "",
        "field_type": field_type,
        "options": options,
        "subfields": None,
        "is_custom_field": False,
        "is_optional_response_field": False,
    }


BUILTIN_FIELDS: dict[str, list[Record]] = {
    "activity": [
        _field("subject", "Subject", "varchar"),
        _field("type", "Type", "varchar_options"),
        _field("due_date", "Due date", "date"),
        _field("due_time", "Due time", "time"),
        _field("duration", "Duration", "time"),
        _field("busy_flag", "Free/busy", "enum", _BUSY_FREE),
        _field("done", "Done", "enum", _DONE),
        _field("user_id", "Assigned to user", "user"),
        _field("deal_id", "Deal", "deal"),
        _field("lead_id", "Lead", "lead"),
        _field("person_id", "Contact person", "people"),
        _field("org_id", "Organization", "org"),
        _field("project_id", "Project", "project"),
        _field("location", "Location", "address"),
        _field("public_description", "Description", "text"),
        _field("note", "Note", "text"),
        _field("add_time", "Add time", "date"),
        _field("update_time", "Update time", "date"),
        _field("marked_as_done_time", "Marked as done time", "date"),
    ],
    "note": [
        _field("content", "Content", "text"),
        _field("pinned_to_deal_flag", "Note is pinned to deal", "enum", _YES_NO),
        _field("pinned_to_person_flag", "Note is pinned to person", "enum", _YES_NO),
        _field("pinned_to_organization_flag", "Note is pinned to organization", "enum", _YES_NO),
        _field("pinned_to_lead_flag", "Note is pinned to lead", "enum", _YES_NO),
        _field("user_id", "Creator", "user"),
        _field("deal_id", "Deal", "deal"),
        _field("person_id", "Person", "people"),
        _field("org_id", "Organization", "org"),
        _field("lead_id", "Lead", "lead"),
        _field("add_time", "Add time", "date"),
        _field("update_time", "Update time", "date"),
    ],
    "product": [
        _field("name", "Name", "varchar"),
        _field("code", "Product code", "varchar"),
        _field("description", "Description", "text"),
        _field("unit", "Unit", "varchar"),
        _field("tax", "Tax", "double"),
        _field("category", "Category", "enum", []),
        _field("owner_id", "Owner", "user"),
        _field("prices", "Prices", "monetary"),
        _field("is_linkable", "Linkable", "boolean"),
        _field("visible_to", "Visible to", "visible_to", _VISIBLE_TO),
        _field("billing_frequency", "Billing frequency", "billing_frequency"),
        _field("add_time", "Add time", "date"),
        _field("update_time", "Update time", "date"),
    ],
    "lead": [
        _field("title", "Title", "varchar"),
        _field("owner_id", "Owner", "user"),
        _field("person_id", "Person", "people"),
        _field("organization_id", "Organization", "org"),
        _field("value", "Value", "monetary"),
        _field("expected_close_date", "Expected close date", "date"),
        _field("label_ids", "Labels", "set", []),
        _field("source_name", "Source", "varchar"),
        _field("channel", "Source channel", "enum", []),
        _field("visible_to", "Visible to", "visible_to", _VISIBLE_TO),
        _field("add_time", "Lead created", "date"),
        _field("update_time", "Update time", "date"),
    ],
}


def shape_v1(entity: str, view: Record, admin_user_id: int) -> Record:
    """A v1 field item as this entity's list describes it (SPEC1): `noteFields` and
    `productFields` leave `options` out when there are none (not nullable there), and
    `productFields` names the creating user of built-in fields (not nullable there either)."""
    if entity in ("note", "product") and view.get("options") is None:
        view = {k: v for k, v in view.items() if k != "options"}
    if entity == "product":
        for key in ("created_by_user_id", "last_updated_by_user_id"):
            if view.get(key) is None:
                view[key] = admin_user_id
    return view


__all__ = ["BUILTIN_FIELDS", "shape_v1"]
