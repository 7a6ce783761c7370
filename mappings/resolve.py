"""Settings + the account's lists → the compiled `Mappings` the engine applies.

Once per run, the pipeline fetches the lists (`tasks.account.fetch_account`: pipelines, the
three `*Fields` lists, Pipedrive users, Planhat team members) and calls

    mappings = compile_mappings(load_settings(), account)

which resolves every name the files use against the account, or raises `SettingsError` with
each located problem: a pipeline name or custom-field label that does not exist or that two
pipelines / fields share (found, and what is valid), a template placeholder that names no deal
field, a start-date field that is not a date, two rules writing one Pipedrive field.

Names match exactly; failing that, ignoring letter case and repeated spaces when that finds
exactly one. A 40-character key or a numeric id always matches exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mappings.errors import Location, Problem, SettingsError, suggest
from mappings.kinds import KINDS
from mappings.models import INTEGRATION_FILE, RuleSpec, Settings, TemplatePart
from mappings.schema import (
    ADDRESS_PARTS,
    CUSTOM_FIELD_KEY,
    PAIRS,
    PIPEDRIVE_FIELDS,
    PIPEDRIVE_LINKS,
    PLANHAT_ATTRIBUTES,
    REQUIRED,
    Direction,
)
from mappings.values import (
    KIND_OF_FIELD_TYPE,
    Converter,
    UserDirectory,
    make_converter,
)

__all__ = [
    "Account",
    "FieldCatalog",
    "LicensePlan",
    "Mappings",
    "Rule",
    "compile_mappings",
]

Record = dict[str, Any]


def _norm(name: str) -> str:
    return " ".join(str(name).split()).casefold()


@dataclass(frozen=True)
class Account:
    """What one run knows of both accounts: fetched once, then every name resolves here."""

    pipelines: Sequence[Record] = ()
    deal_fields: Sequence[Record] = ()
    organization_fields: Sequence[Record] = ()
    person_fields: Sequence[Record] = ()
    pipedrive_users: Sequence[Record] = ()
    planhat_users: Sequence[Record] = ()

    def fields(self, entity: str) -> Sequence[Record]:
        return {
            "deal": self.deal_fields,
            "organization": self.organization_fields,
            "person": self.person_fields,
        }.get(entity, ())


@dataclass(frozen=True)
class FieldCatalog:
    """One entity's fields (v2 `field_code`/`field_name`, or v1 `key`/`name`), by key and label."""

    entity: str
    by_key: Mapping[str, Record]
    by_label: Mapping[str, tuple[str, ...]]  # normalised label → keys

    @classmethod
    def build(cls, entity: str, items: Iterable[Mapping[str, Any]]) -> FieldCatalog:
        by_key: dict[str, Record] = {}
        by_label: dict[str, list[str]] = {}
        for item in items:
            key = item.get("field_code") or item.get("key")
            if not key:
                continue
            key, label = str(key), str(item.get("field_name") or item.get("name") or key)
            by_key[key] = {
                "key": key,
                "label": label,
                "field_type": item.get("field_type"),
                "options": item.get("options") or [],
                "custom": bool(item.get("is_custom_field", item.get("edit_flag", False))),
            }
            by_label.setdefault(_norm(label), []).append(key)
        return cls(entity, by_key, {k: tuple(v) for k, v in by_label.items()})

    def field_type(self, key: str) -> str | None:
        item = self.by_key.get(key)
        return item["field_type"] if item else None

    def label(self, key: str) -> str:
        item = self.by_key.get(key)
        return item["label"] if item else key

    def find(self, name: str) -> tuple[Record | None, str | None]:
        """(the field, None) or (None, why not): by key, else by label."""
        if name in self.by_key:
            return self.by_key[name], None
        if CUSTOM_FIELD_KEY.match(name):
            return None, f"no {self.entity} field has the key {name}"
        exact = [k for k, f in self.by_key.items() if f["label"] == name]
        keys = exact or list(self.by_label.get(_norm(name), ()))
        if len(keys) == 1:
            return self.by_key[keys[0]], None
        if len(keys) > 1:
            listed = ", ".join(f"{k} ({self.by_key[k]['field_type']})" for k in keys)
            return None, (
                f"{len(keys)} Pipedrive {self.entity} fields are labelled '{name}' ({listed}); "
                "write the 40-character key of the one you mean instead"
            )
        labels = sorted({f["label"] for f in self.by_key.values()}, key=str.casefold)
        return None, (
            f"no Pipedrive {self.entity} field is labelled '{name}'{suggest(name, labels)}; "
            f"this account's {self.entity} fields: " + ", ".join(f"'{s}'" for s in labels)
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled field rule: where to read and write, how to convert, which ways."""

    key: str  # the Planhat-side key: `name` or `custom.<name>`
    planhat_field: str
    planhat_custom: bool
    pipedrive_field: str  # a system field or a custom field's key
    pipedrive_part: str | None  # `country` of `address.country`
    pipedrive_custom: bool
    pipedrive_label: str
    converter: Converter
    receive: bool  # Pipedrive → Planhat allowed (section and rule)
    send: bool  # Planhat → Pipedrive allowed
    required: bool  # Planhat cannot create the record without it
    origin: str
    location: Location | None = None

    @property
    def arrow(self) -> str:
        return {(True, True): "⇄", (True, False): "←", (False, True): "→"}.get(
            (self.receive, self.send), "·"
        )


@dataclass(frozen=True)
class LicensePlan:
    """How a deal becomes a license (the `license:` settings, resolved)."""

    length_months: int
    template: tuple[TemplatePart, ...]
    placeholders: Mapping[str, Rule]  # placeholder name → how to read it (text)
    start_field: str  # a deal system field or custom key
    start_custom: bool
    start_label: str


@dataclass(frozen=True)
class Mappings:
    """The settings, resolved against one account: everything the engine needs."""

    settings: Settings
    directions: Mapping[str, Direction]  # section → direction
    rules: Mapping[
        str, tuple[Rule, ...]
    ]  # Planhat object → rules (those of direction none left out)
    catalogs: Mapping[str, FieldCatalog]  # deal / organization / person
    pipeline_ids: frozenset[int]
    pipeline_names: Mapping[int, str]  # every pipeline of the account
    users: UserDirectory
    license: LicensePlan
    notes_scope: frozenset[str]
    conflict_policy: str
    dry_run: bool
    sync_all_organizations: bool
    problems: tuple[Problem, ...] = field(default=())  # warnings (nothing that stops a run)

    def receives(self, section: str) -> bool:
        return self.directions[section] in ("receive", "both")

    def sends(self, section: str) -> bool:
        return self.directions[section] in ("send", "both")

    def receive_rules(self, obj: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules[obj] if r.receive)

    def send_rules(self, obj: str) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules[obj] if r.send)


# --------------------------------------------------------------------------------------------
# Compiling
# --------------------------------------------------------------------------------------------


def _allowed(direction: str, section_direction: str) -> tuple[bool, bool]:
    rule_r, rule_s = direction in ("receive", "both"), direction in ("send", "both")
    sec_r, sec_s = section_direction in ("receive", "both"), section_direction in ("send", "both")
    return rule_r and sec_r, rule_s and sec_s


def _resolve_pipelines(
    settings: Settings, pipelines: Sequence[Record], problems: list[Problem]
) -> frozenset[int]:
    live = [p for p in pipelines if not p.get("is_deleted")]
    listing = ", ".join(f"'{p.get('name')}' (id {p.get('id')})" for p in live) or "none"
    ids: set[int] = set()
    wanted = settings.pipelines()
    deals_on = settings.integration.deals.direction != "none"
    if not wanted and deals_on:
        where = settings.locate(INTEGRATION_FILE, ("deals", "pipelines"))
        problems.append(
            Problem(
                where,
                "deals.pipelines is empty: no won deal would become a license. Name the "
                f"pipelines to sync (by name or id); this account's pipelines: {listing}",
            )
        )
    for value, where in wanted:
        if isinstance(value, int):
            match = [p for p in live if p.get("id") == value]
            if not match:
                problems.append(
                    Problem(
                        where,
                        f"deals.pipelines: no pipeline has the id {value}; this account's "
                        f"pipelines: {listing}",
                    )
                )
                continue
        else:
            match = [p for p in live if p.get("name") == value]
            if not match:
                match = [p for p in live if _norm(p.get("name") or "") == _norm(value)]
            if not match:
                names = [str(p.get("name")) for p in live]
                problems.append(
                    Problem(
                        where,
                        f"deals.pipelines: no pipeline is named '{value}'{suggest(value, names)}; "
                        f"this account's pipelines: {listing}",
                    )
                )
                continue
            if len(match) > 1:
                ids_text = ", ".join(str(p.get("id")) for p in match)
                problems.append(
                    Problem(
                        where,
                        f"deals.pipelines: {len(match)} pipelines are named '{value}' (ids "
                        f"{ids_text}); write the id of the one you mean instead",
                    )
                )
                continue
        ids.add(int(match[0]["id"]))
    return frozenset(ids)


def _converter_for(
    kind: str, label: str, item: Record | None, users: UserDirectory, v1: bool
) -> Converter:
    options = item.get("options") if item else None
    money_object = bool(item and item.get("custom") and item.get("field_type") == "monetary")
    return make_converter(
        kind,
        field_label=label,
        options=options,
        users=users,
        money_object=money_object,
        v1_times=v1,
    )


def _compile_rule(
    spec: RuleSpec,
    settings: Settings,
    catalogs: Mapping[str, FieldCatalog],
    users: UserDirectory,
    problems: list[Problem],
) -> Rule | None:
    obj = spec.planhat_object
    pair = PAIRS[obj]
    entity = pair.pipedrive
    section_direction = settings.integration.direction(pair.section)
    receive, send = _allowed(spec.direction, section_direction)
    catalog = catalogs.get(entity)
    written = spec.pipedrive_field
    system = PIPEDRIVE_FIELDS[entity]
    base, _, part = written.partition(".")
    item: Record | None = None
    if spec.origin == "field map" and base in system:
        key, custom, kind = base, False, system[base].kind
        item = catalog.by_key.get(base) if catalog else None
        label = item["label"] if item else base
        if part and part not in ADDRESS_PARTS:  # pragma: no cover - checked by the loader
            return None
        if part:
            kind = "text"  # an address part is a plain string
    else:
        part = ""
        if catalog is None:  # notes: v1 only, no custom fields by label
            if written in system:
                key, custom, kind, label = written, False, system[written].kind, written
            else:
                valid = ", ".join(sorted(system))
                problems.append(
                    Problem(
                        spec.pipedrive_location,
                        f"unknown Pipedrive note field '{written}'{suggest(written, system)}; "
                        f"valid: {valid}",
                    )
                )
                return None
        else:
            found, why = catalog.find(written)
            if found is None:
                problems.append(Problem(spec.pipedrive_location, f"{spec.origin}: {why}"))
                return None
            item = found
            key, label = found["key"], found["label"]
            custom = found["custom"] and key not in system
            if key in system and not custom:
                kind = system[key].kind
            else:
                kind = KIND_OF_FIELD_TYPE.get(str(found["field_type"]), "raw")
            if send and (
                (key in system and (not system[key].writable or key in PIPEDRIVE_LINKS[entity]))
                or (key not in system and not found["custom"])
            ):
                problems.append(
                    Problem(
                        spec.location,
                        f"Pipedrive {entity} field '{label}' cannot be written (Pipedrive or the "
                        f"sync sets it); use direction: receive, found '{spec.direction}'",
                    )
                )
                return None
    if spec.convert:
        kind = spec.convert
    if kind in ("enum", "set") and item is not None and not item.get("options"):
        problems.append(
            Problem(
                spec.location,
                f"the Pipedrive {entity} field '{label}' has no options, so it cannot convert as "
                f"{kind}; leave out convert: or choose an option field",
            )
        )
        return None
    if not spec.planhat_custom:
        attr = PLANHAT_ATTRIBUTES[obj].get(spec.planhat_field)
        if attr is not None and attr.kinds and kind not in attr.kinds and kind != "raw":
            problems.append(
                Problem(
                    spec.location,
                    f"Planhat {pair.planhat_title} field '{spec.planhat_field}' takes "
                    f"{' or '.join(attr.kinds)} values, but the Pipedrive field '{label}' "
                    f"converts as {kind}; choose a matching Pipedrive field, or set convert:",
                )
            )
            return None
    converter = _converter_for(kind, label, item, users, v1=entity == "note")
    if converter.receive_only and send:
        send = False
    required = spec.key in REQUIRED[obj]
    return Rule(
        key=spec.key,
        planhat_field=spec.planhat_field,
        planhat_custom=spec.planhat_custom,
        pipedrive_field=key,
        pipedrive_part=part or None,
        pipedrive_custom=custom,
        pipedrive_label=label + (f": {part.replace('_', ' ')}" if part else ""),
        converter=converter,
        receive=receive,
        send=send,
        required=required,
        origin=spec.origin,
        location=spec.location,
    )


def _template_rules(
    settings: Settings, catalog: FieldCatalog | None, users: UserDirectory, problems: list[Problem]
) -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    system = PIPEDRIVE_FIELDS["deal"]
    for part in settings.product_template:
        if not part.placeholder or part.text in out:
            continue
        name = part.text
        if name == "pipeline":
            continue  # the pipeline's name, from the account's list
        item: Record | None = None
        if name in system:
            key, custom, kind, label = name, False, system[name].kind, name
        else:
            found, why = catalog.find(name) if catalog else (None, f"unknown deal field '{name}'")
            if found is None:
                problems.append(
                    Problem(
                        part.location,
                        f"license.product: the placeholder {{{name}}} names no deal field: {why}; "
                        "a placeholder is a deal field ({title}, {currency}, {value}, ...), a "
                        "custom field's label or key, or {pipeline}",
                    )
                )
                continue
            item = found
            key, label = found["key"], found["label"]
            custom = found["custom"] and key not in system
            kind = (
                system[key].kind
                if key in system
                else KIND_OF_FIELD_TYPE.get(str(found["field_type"]), "raw")
            )
        if kind in ("date", "datetime"):
            kind = "date"
        converter = (
            _UserName(users) if kind == "user" else _converter_for(kind, label, item, users, False)
        )
        out[name] = Rule(
            key=f"template.{name}", planhat_field="product", planhat_custom=False,
            pipedrive_field=key, pipedrive_part=None, pipedrive_custom=custom,
            pipedrive_label=label, converter=converter, receive=True, send=False,
            required=False, origin="license.product", location=part.location,
        )  # fmt: skip
    return out


class _UserName(Converter):
    """A Pipedrive user id → the user's name (for the product template)."""

    name = "user name"
    receive_only = True

    def __init__(self, users: UserDirectory) -> None:
        self.users = users

    def to_planhat(self, raw: Any) -> Any:
        user_id = raw.get("value", raw.get("id")) if isinstance(raw, Mapping) else raw
        user = self.users.pipedrive_users.get(int(user_id)) if str(user_id).isdigit() else None
        return str(user.get("name") or "") if user else ""


_START_FIELDS = ("won_time", "close_time", "add_time", "expected_close_date", "first_won_time")


def _start_field(
    settings: Settings, catalog: FieldCatalog | None, problems: list[Problem]
) -> tuple[str, bool, str]:
    name = settings.integration.license.start_date
    where = settings.locate(INTEGRATION_FILE, ("license", "start_date"))
    if name in _START_FIELDS:
        return name, False, name
    found, why = catalog.find(name) if catalog else (None, f"unknown deal field '{name}'")
    if found is None:
        problems.append(
            Problem(
                where,
                f"license.start_date: {why}; valid: {', '.join(_START_FIELDS)} or a date custom "
                "field's label or key",
            )
        )
        return "won_time", False, "won_time"
    if found["field_type"] not in ("date", "daterange") and found["key"] not in _START_FIELDS:
        problems.append(
            Problem(
                where,
                f"license.start_date: the deal field '{found['label']}' is a "
                f"{found['field_type']} field, not a date; valid: {', '.join(_START_FIELDS)} or a "
                "date custom field",
            )
        )
        return "won_time", False, "won_time"
    return found["key"], bool(found["custom"]), found["label"]


def compile_mappings(settings: Settings, account: Account) -> Mappings:
    """Resolve the settings against the account. Raises `SettingsError` with every located
    problem; on success nothing the engine does can fail for a settings reason."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    catalogs = {
        entity: FieldCatalog.build(entity, account.fields(entity))
        for entity in ("deal", "organization", "person")
    }
    users = UserDirectory.build(account.pipedrive_users, account.planhat_users)
    pipeline_ids = _resolve_pipelines(settings, account.pipelines, problems)
    rules: dict[str, tuple[Rule, ...]] = {}
    for obj, specs in settings.rules.items():
        compiled: list[Rule] = []
        sends: dict[tuple[str, str | None], Rule] = {}
        for spec in specs:
            if spec.direction == "none":
                continue
            rule = _compile_rule(spec, settings, catalogs, users, problems)
            if rule is None:
                continue
            if rule.send:
                other = sends.get((rule.pipedrive_field, rule.pipedrive_part))
                if other is not None:
                    problems.append(
                        Problem(
                            spec.pipedrive_location,
                            f"two rules write Pipedrive {PAIRS[obj].pipedrive} field "
                            f"'{rule.pipedrive_label}': this {rule.origin} and the "
                            f"{other.origin} at {other.location}; keep one",
                        )
                    )
                    continue
                sends[(rule.pipedrive_field, rule.pipedrive_part)] = rule
            if rule.receive or rule.send:
                compiled.append(rule)
        rules[obj] = tuple(compiled)
    deal_catalog = catalogs["deal"]
    placeholders = _template_rules(settings, deal_catalog, users, problems)
    start_key, start_custom, start_label = _start_field(settings, deal_catalog, problems)
    if problems:
        raise SettingsError(problems)
    for user in users.unmatched_pipedrive:
        warnings.append(
            Problem(
                None,
                f"Pipedrive user {user.get('name')} <{user.get('email')}> has no Planhat team "
                "member with the same email: fields they own are left empty in Planhat",
            )
        )
    integ = settings.integration
    if integ.organizations.direction in ("send", "none"):
        dependent = [
            k.section
            for k in KINDS
            if k.section != "organizations" and integ.direction(k.section) in ("receive", "both")
        ]
        if dependent:
            warnings.append(
                Problem(
                    settings.locate(INTEGRATION_FILE, ("organizations", "direction")),
                    f"organizations are not received ({integ.organizations.direction}), but "
                    f"{', '.join(dependent)} are: their records reach Planhat only when the "
                    "organization's company is already there",
                )
            )
    return Mappings(
        settings=settings,
        directions={k.section: integ.direction(k.section) for k in KINDS},
        rules=rules,
        catalogs=catalogs,
        pipeline_ids=pipeline_ids,
        pipeline_names={int(p["id"]): str(p.get("name")) for p in account.pipelines if "id" in p},
        users=users,
        license=LicensePlan(
            length_months=integ.license.length_months,
            template=settings.product_template,
            placeholders=placeholders,
            start_field=start_key,
            start_custom=start_custom,
            start_label=start_label,
        ),
        notes_scope=frozenset(integ.notes.scope),
        conflict_policy=integ.conflict_policy,
        dry_run=integ.dry_run,
        sync_all_organizations=integ.organizations.sync_all,
        problems=tuple(warnings),
    )
