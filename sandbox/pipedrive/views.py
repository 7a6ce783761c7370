"""The v1 views of the sandbox's records (reference §3.7, §4.3, §9.2).

The store holds deals, persons and organizations in the v2 shape. v1 appears in three places:
* the v1 `*Fields` lists, derived from the seed's v2 field lists;
* notes (stored in v1) with their embedded `deal`/`person`/`organization`/`user` objects;
* v1 webhook payloads, whose `current`/`previous` use the v1 WEBHOOK shape: plain int ids,
  `user_id` for the owner, `*_name` beside the ids, `YYYY-MM-DD HH:MM:SS` times, `visible_to`
  as a string, custom fields at the root in the v1 value format (enum "12", set "1,2",
  monetary value + `_currency`, daterange + `_until`, address + part siblings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.pipedrive.common import iso_to_v1, v1_to_iso

if TYPE_CHECKING:
    from sandbox.pipedrive.model import PipedriveModel

Record = dict[str, Any]

# v1 field ids are company-wide integers; v2 field items have none, so the sandbox numbers them.
_V1_FIELD_ID_BASE = {
    "deal": 12000,
    "person": 9000,
    "organization": 4000,
    "activity": 14000,
    "note": 15000,
    "product": 16000,
    "lead": 17000,
}
_ADDRESS_PARTS = (
    "subpremise",
    "street_number",
    "route",
    "sublocality",
    "locality",
    "admin_area_level_1",
    "admin_area_level_2",
    "country",
    "postal_code",
)
_CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def v1_field(entity: str, index: int, item: Record, created: str) -> Record:
    """One v1 `*Fields` item from a v2 one (reference §3.7)."""
    options = item.get("options")
    subfields = item.get("subfields")
    is_custom = bool(item.get("is_custom_field"))
    ui = item.get("ui_visibility") or {}
    view: Record = {
        "id": item.get("id") or _V1_FIELD_ID_BASE.get(entity, 1000) + index + 1,
        "key": item["field_code"],
        "name": item.get("field_name"),
        "order_nr": index,
        "field_type": item.get("field_type"),
        "add_time": created,
        "update_time": created,
        "last_updated_by_user_id": None,
        "created_by_user_id": None,
        "active_flag": True,
        "edit_flag": is_custom,
        "index_visible_flag": True,
        "details_visible_flag": bool(ui.get("details_visible_flag", True)),
        "add_visible_flag": bool(ui.get("add_visible_flag", True)),
        "important_flag": False,
        "bulk_edit_allowed": True,
        "searchable_flag": False,
        "filtering_allowed": True,
        "sortable_flag": True,
        "mandatory_flag": False,
        "options": (
            [
                {
                    "id": option["id"],
                    "label": option.get("label"),
                    **({"color": option["color"]} if option.get("color") else {}),
                }
                for option in options
            ]
            if options
            else None
        ),
        "options_deleted": [],
        "is_subfield": False,
    }
    if subfields:
        view["subfields"] = [
            {
                "key": sub.get("field_code"),
                "name": sub.get("field_name"),
                "field_type": sub.get("field_type"),
            }
            for sub in subfields
        ]
    return view


def custom_fields_v1(model: PipedriveModel, entity: str, custom: Record | None) -> Record:
    """v2 `custom_fields` → v1 root keys in the v1 value format (reference §3.7 table)."""
    out: Record = {}
    types = model.custom_field_types[entity]
    for key, value in (custom or {}).items():
        field_type = types.get(key)
        if field_type == "enum":
            out[key] = None if value is None else str(_option_id(value))
        elif field_type == "set":
            out[key] = None if not value else ",".join(str(_option_id(v)) for v in value)
        elif field_type == "monetary":
            value = value if isinstance(value, dict) else {"value": value, "currency": None}
            out[key] = value.get("value")
            out[f"{key}_currency"] = value.get("currency")
        elif field_type in ("daterange", "timerange"):
            value = value if isinstance(value, dict) else {"value": value, "until": None}
            out[key] = value.get("value")
            out[f"{key}_until"] = value.get("until")
        elif field_type == "time":
            out[key] = value.get("value") if isinstance(value, dict) else value
            if isinstance(value, dict):
                for extra in ("timezone_id", "timezone_name"):
                    if extra in value:
                        out[f"{key}_{extra}"] = value[extra]
        elif field_type == "address":
            if isinstance(value, dict):
                out[key] = value.get("value")
                for part in _ADDRESS_PARTS:
                    out[f"{key}_{part}"] = value.get(part)
                out[f"{key}_formatted_address"] = value.get("formatted_address", value.get("value"))
            else:
                out[key] = value
        else:
            out[key] = value
    return out


def _option_id(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def _formatted(value: Any, currency: str | None) -> str:
    amount = value or 0
    sign = _CURRENCY_SIGNS.get(currency or "", f"{currency} " if currency else "")
    text = f"{amount:,.2f}".rstrip("0").rstrip(".") if isinstance(amount, float) else f"{amount:,}"
    return f"{sign}{text}"


def deal_webhook_v1(model: PipedriveModel, deal: Record) -> Record:
    """A deal as v1 webhooks carry it (fixtures/webhook-v1-updated-deal.json)."""
    owner = model.users.get(deal.get("owner_id"))
    person = model.persons.get(deal.get("person_id")) if deal.get("person_id") else None
    org = model.organizations.get(deal.get("org_id")) if deal.get("org_id") else None
    stage = model.stages.get(deal.get("stage_id")) if deal.get("stage_id") else None
    currency = deal.get("currency")
    value = deal.get("value") or 0
    probability = deal.get("probability")
    weighted = value * probability / 100 if probability is not None else value
    won, lost, closed = deal.get("won_time"), deal.get("lost_time"), deal.get("close_time")
    labels = deal.get("label_ids") or []
    view: Record = {
        "id": deal["id"],
        "title": deal.get("title"),
        "creator_user_id": deal.get("creator_user_id", deal.get("owner_id")),
        "user_id": deal.get("owner_id"),
        "person_id": deal.get("person_id"),
        "org_id": deal.get("org_id"),
        "stage_id": deal.get("stage_id"),
        "pipeline_id": deal.get("pipeline_id"),
        "value": deal.get("value"),
        "currency": currency,
        "add_time": iso_to_v1(deal.get("add_time")),
        "update_time": iso_to_v1(deal.get("update_time")),
        "stage_change_time": iso_to_v1(deal.get("stage_change_time")),
        "status": deal.get("status"),
        "active": deal.get("status") == "open" and not deal.get("is_deleted"),
        "deleted": bool(deal.get("is_deleted")),
        "is_archived": bool(deal.get("is_archived")),
        "archive_time": iso_to_v1(deal.get("archive_time")),
        "probability": probability,
        "lost_reason": deal.get("lost_reason"),
        "visible_to": str(deal.get("visible_to")) if deal.get("visible_to") is not None else None,
        "close_time": iso_to_v1(closed),
        "won_time": iso_to_v1(won),
        "lost_time": iso_to_v1(lost),
        "first_won_time": iso_to_v1(model.deal_first_won_time(deal)),
        "expected_close_date": deal.get("expected_close_date"),
        "local_won_date": won[:10] if won else None,
        "local_lost_date": lost[:10] if lost else None,
        "local_close_date": closed[:10] if closed else None,
        "label": ",".join(str(label) for label in labels) if labels else None,
        "origin": deal.get("origin"),
        "origin_id": deal.get("origin_id"),
        "channel": deal.get("channel"),
        "channel_id": deal.get("channel_id"),
        "arr": deal.get("arr"),
        "mrr": deal.get("mrr"),
        "acv": deal.get("acv"),
        "arr_currency": currency if deal.get("arr") is not None else None,
        "mrr_currency": currency if deal.get("mrr") is not None else None,
        "acv_currency": currency if deal.get("acv") is not None else None,
        "owner_name": owner.get("name") if owner else None,
        "person_name": person.get("name") if person else None,
        "org_name": org.get("name") if org else None,
        "person_hidden": False,
        "org_hidden": False,
        "formatted_value": _formatted(value, currency),
        "weighted_value": weighted,
        "weighted_value_currency": currency,
        "formatted_weighted_value": _formatted(weighted, currency),
        "cc_email": f"{model.company.get('domain', 'sandbox')}+deal{deal['id']}@pipedrivemail.com",
        "stage_order_nr": stage.get("order_nr") if stage else None,
        "rotten_time": None,
        "next_activity_id": None,
        "next_activity_date": None,
        "next_activity_time": None,
        "next_activity_subject": None,
        "next_activity_type": None,
        "next_activity_duration": None,
        "next_activity_note": None,
        "last_activity_id": None,
        "last_activity_date": None,
        "last_incoming_mail_time": None,
        "last_outgoing_mail_time": None,
        "activities_count": 0,
        "done_activities_count": 0,
        "undone_activities_count": 0,
        "email_messages_count": 0,
        "files_count": 0,
        "products_count": 0,
        "notes_count": model.notes_count("deal_id", deal["id"]),
        "followers_count": 1,
        "participants_count": 1 if deal.get("person_id") else 0,
    }
    view.update(custom_fields_v1(model, "deal", deal.get("custom_fields")))
    return view


def _contacts_v1(items: list[Record] | None) -> list[Record]:
    if not items:
        return [{"value": "", "primary": True}]
    return [
        {
            "label": item.get("label", "work"),
            "value": item.get("value"),
            "primary": bool(item.get("primary")),
        }
        for item in items
    ]


def person_webhook_v1(model: PipedriveModel, person: Record) -> Record:
    owner = model.users.get(person.get("owner_id"))
    org = model.organizations.get(person.get("org_id")) if person.get("org_id") else None
    emails = person.get("emails") or []
    primary_email = next((e.get("value") for e in emails if e.get("primary")), None)
    labels = person.get("label_ids") or []
    view: Record = {
        "id": person["id"],
        "company_id": model.company.get("id"),
        "owner_id": person.get("owner_id"),
        "owner_name": owner.get("name") if owner else None,
        "org_id": person.get("org_id"),
        "org_name": org.get("name") if org else None,
        "name": person.get("name"),
        "first_name": person.get("first_name"),
        "last_name": person.get("last_name"),
        "email": _contacts_v1(emails),
        "phone": _contacts_v1(person.get("phones")),
        "primary_email": primary_email,
        "add_time": iso_to_v1(person.get("add_time")),
        "update_time": iso_to_v1(person.get("update_time")),
        "visible_to": str(person["visible_to"]) if person.get("visible_to") is not None else None,
        "active_flag": not person.get("is_deleted"),
        "label": labels[0] if labels else None,
        "label_ids": labels,
        "picture_id": person.get("picture_id"),
        "cc_email": f"{model.company.get('domain', 'sandbox')}@pipedrivemail.com",
        "open_deals_count": model.deals_count("person_id", person["id"], "open"),
        "closed_deals_count": model.deals_count("person_id", person["id"], "closed"),
        "won_deals_count": model.deals_count("person_id", person["id"], "won"),
        "lost_deals_count": model.deals_count("person_id", person["id"], "lost"),
        "notes_count": model.notes_count("person_id", person["id"]),
        "activities_count": 0,
        "done_activities_count": 0,
        "undone_activities_count": 0,
        "email_messages_count": 0,
        "files_count": 0,
        "followers_count": 1,
        "next_activity_date": None,
        "next_activity_time": None,
        "next_activity_id": None,
        "last_activity_id": None,
        "last_activity_date": None,
        "last_incoming_mail_time": None,
        "last_outgoing_mail_time": None,
    }
    view.update(custom_fields_v1(model, "person", person.get("custom_fields")))
    return view


def organization_webhook_v1(model: PipedriveModel, org: Record) -> Record:
    owner = model.users.get(org.get("owner_id"))
    address = org.get("address") if isinstance(org.get("address"), dict) else None
    labels = org.get("label_ids") or []
    view: Record = {
        "id": org["id"],
        "company_id": model.company.get("id"),
        "owner_id": org.get("owner_id"),
        "owner_name": owner.get("name") if owner else None,
        "name": org.get("name"),
        "address": address.get("value") if address else None,
    }
    for part in _ADDRESS_PARTS:
        view[f"address_{part}"] = address.get(part) if address else None
    view["address_formatted_address"] = address.get("value") if address else None
    view.update(
        {
            "add_time": iso_to_v1(org.get("add_time")),
            "update_time": iso_to_v1(org.get("update_time")),
            "visible_to": str(org["visible_to"]) if org.get("visible_to") is not None else None,
            "active_flag": not org.get("is_deleted"),
            "label": labels[0] if labels else None,
            "label_ids": labels,
            "website": org.get("website"),
            "linkedin": org.get("linkedin"),
            "industry": org.get("industry"),
            "annual_revenue": org.get("annual_revenue"),
            "employee_count": org.get("employee_count"),
            "cc_email": f"{model.company.get('domain', 'sandbox')}@pipedrivemail.com",
            "people_count": model.persons_count(org["id"]),
            "open_deals_count": model.deals_count("org_id", org["id"], "open"),
            "closed_deals_count": model.deals_count("org_id", org["id"], "closed"),
            "won_deals_count": model.deals_count("org_id", org["id"], "won"),
            "lost_deals_count": model.deals_count("org_id", org["id"], "lost"),
            "notes_count": model.notes_count("org_id", org["id"]),
            "activities_count": 0,
            "done_activities_count": 0,
            "undone_activities_count": 0,
            "email_messages_count": 0,
            "files_count": 0,
            "followers_count": 1,
            "next_activity_date": None,
            "next_activity_time": None,
            "next_activity_id": None,
            "last_activity_id": None,
            "last_activity_date": None,
        }
    )
    view.update(custom_fields_v1(model, "organization", org.get("custom_fields")))
    return view


def note_v1(model: PipedriveModel, note: Record) -> Record:
    """A note as v1 REST serves it: the stored note plus its embedded objects (SPEC1 example)."""
    deal = model.deals.get(note.get("deal_id")) if note.get("deal_id") else None
    person = model.persons.get(note.get("person_id")) if note.get("person_id") else None
    org = model.organizations.get(note.get("org_id")) if note.get("org_id") else None
    user = model.users.get(note.get("user_id")) if note.get("user_id") else None
    view = dict(note)
    view["deal"] = {"title": deal.get("title")} if deal else None
    view["person"] = {"name": person.get("name")} if person else None
    view["organization"] = {"name": org.get("name")} if org else None
    view["user"] = (
        {
            "email": user.get("email"),
            "name": user.get("name"),
            "icon_url": user.get("icon_url"),
            "is_you": user.get("id") == model.me_user_id,
        }
        if user
        else None
    )
    return view


def note_webhook_v2(note: Record) -> Record:
    """A note as v2 webhooks carry it: v2-like (RFC 3339 times, `is_deleted`); reference §8.4
    leaves the exact shape unverified."""
    data: Record = {
        "id": note["id"],
        "content": note.get("content"),
        "user_id": note.get("user_id"),
        "deal_id": note.get("deal_id"),
        "person_id": note.get("person_id"),
        "org_id": note.get("org_id"),
        "lead_id": note.get("lead_id"),
        "project_id": note.get("project_id"),
        "add_time": v1_to_iso(note.get("add_time")),
        "update_time": v1_to_iso(note.get("update_time")),
        "is_deleted": not note.get("active_flag", True),
        "last_update_user_id": note.get("last_update_user_id"),
    }
    for key, value in note.items():
        if key.startswith("pinned_to_"):
            data[key] = bool(value)
    return data


def user_v1(model: PipedriveModel, user: Record) -> Record:
    return {**user, "is_you": user.get("id") == model.me_user_id}
