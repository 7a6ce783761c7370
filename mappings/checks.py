"""The checks of the settings beyond their models, all without the accounts: the schedule (cron,
time zone), the license product template, the pipelines listed, where each token and password
come from, the receiver's URL (`check_integration`), and every field rule and custom match of a
Planhat object (`check_rules`: fields that exist, nothing reserved, one rule per target,
conversions that can go the rule's way). Each returns its located problems; none raises."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, TypeAdapter, ValidationError

from mappings.errors import Location, Problem, suggest
from mappings.models import DealsSection, Integration, RuleSpec, TemplatePart
from mappings.schema import (
    ADDRESS_PARTS,
    CUSTOM_FIELD_KEY,
    CUSTOM_MATCHES_FILE,
    PAIRS,
    PIPEDRIVE_FIELDS,
    PIPEDRIVE_LINKS,
    PLANHAT_ATTRIBUTES,
    RESERVED,
)
from mappings.yamlsource import Document, PathKey

__all__ = ["check_cron", "check_integration", "check_rules", "parse_template"]


_CRON_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, ("jan feb mar apr may jun jul aug sep oct nov dec")),
    ("day of week", 0, 7, ("sun mon tue wed thu fri sat")),
)


def check_cron(expression: str) -> str | None:
    """None if `expression` is a standard 5-field cron expression, else what is wrong."""
    parts = expression.split()
    if len(parts) != 5:
        return (
            f"found {len(parts)} fields in {expression!r}; a cron expression has 5: minute hour "
            "day-of-month month day-of-week (e.g. '*/15 * * * *')"
        )
    for text, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        words = names.split() if names else []
        for item in text.split(","):
            body, _, step = item.partition("/")
            if step and not step.isdigit():
                return f"the {name} field '{text}' has step '{step}'; a step is a number"
            if body == "*":
                continue
            for bound in body.split("-", 1):
                value = bound.lower()
                if value in words:
                    continue
                if not value.isdigit() or not low <= int(value) <= high:
                    return f"the {name} field '{text}' has '{bound}'; valid: {low}-{high}" + (
                        f" or {names[:3]}…{names[-3:]}" if names else ""
                    )
    return None


def _parts(model: type[BaseModel], data: Any) -> dict[str, Any]:
    """The fields of `model` that are valid on their own in `data` (their errors are reported
    by the full validation): so that one mistake does not hide the checks of the other parts."""
    if not isinstance(data, dict):
        return {}
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        try:
            value = data[name] if name in data else info.get_default(call_default_factory=True)
            # a field annotated `None` has no annotation object: pydantic reads it as NoneType
            annotation = type(None) if info.annotation is None else info.annotation
            out[name] = TypeAdapter(annotation).validate_python(value)
        except (ValidationError, KeyError, TypeError):
            continue
    return out


def check_integration(settings_doc: Document) -> list[Problem]:
    problems = []
    at = settings_doc.value_at
    parts = _parts(Integration, settings_doc.data)
    inc = parts.get("incremental")
    if inc is not None:
        wrong = check_cron(inc.cron)
        if wrong:
            problems.append(Problem(at(("incremental", "cron")), f"incremental.cron: {wrong}"))
        try:
            ZoneInfo(inc.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                Problem(
                    at(("incremental", "timezone")),
                    f"incremental.timezone: unknown time zone {inc.timezone!r}; use an IANA "
                    "name such as UTC, Europe/Berlin or America/New_York",
                )
            )
    lic = parts.get("license")
    if lic is not None:
        problems.extend(parse_template(lic.product, settings_doc, ("license", "product"))[1])
    deals = parts.get("deals")
    if deals is not None:
        problems.extend(_check_pipelines(settings_doc, deals))
    conn = parts.get("connection")
    if conn is None:
        return problems
    for name, source in (("pipedrive", conn.pipedrive), ("planhat", conn.planhat)):
        if (source.token_env is None) == (source.secret_block is None):
            problems.append(
                Problem(
                    settings_doc.key_at(("connection", name)),
                    f"connection.{name}: say where the token comes from with exactly one of "
                    "'token_env:' (an environment variable name) or 'secret_block:' (a Prefect "
                    "Secret block name)",
                )
            )
    auth = conn.receiver.basic_auth
    if (auth.password_env is None) == (auth.password_secret_block is None):
        problems.append(
            Problem(
                settings_doc.key_at(("connection", "receiver", "basic_auth")),
                "connection.receiver.basic_auth: say where the password comes from with exactly "
                "one of 'password_env:' or 'password_secret_block:'",
            )
        )
    hook = conn.receiver.planhat_webhook
    if hook is not None:
        if (hook.secret_env is None) == (hook.secret_block is None):
            problems.append(
                Problem(
                    settings_doc.key_at(("connection", "receiver", "planhat_webhook")),
                    "connection.receiver.planhat_webhook: say where the shared secret comes "
                    "from with exactly one of 'secret_env:' or 'secret_block:'",
                )
            )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}", hook.header):
            problems.append(
                Problem(
                    at(("connection", "receiver", "planhat_webhook", "header")),
                    "connection.receiver.planhat_webhook.header: an HTTP header name (letters, "
                    "digits and -), e.g. X-Pdsync-Secret",
                )
            )
    if conn.receiver.public_url is not None and not re.match(
        r"^https?://[^/\s]+", conn.receiver.public_url
    ):
        problems.append(
            Problem(
                at(("connection", "receiver", "public_url")),
                f"connection.receiver.public_url: found {conn.receiver.public_url!r}; use the "
                "full public address of the receiver, e.g. https://sync.example.com/pipedrive",
            )
        )
    return problems


def _check_pipelines(settings_doc: Document, deals: DealsSection) -> list[Problem]:
    problems = []
    at = settings_doc.value_at
    seen: dict[Any, int] = {}
    for i, value in enumerate(deals.pipelines):
        marker = value.casefold() if isinstance(value, str) else value
        if marker in seen:
            problems.append(
                Problem(
                    at(("deals", "pipelines", i)),
                    f"deals.pipelines: {value!r} is listed twice (also item {seen[marker] + 1})",
                )
            )
        seen.setdefault(marker, i)
    return problems


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def parse_template(
    text: str, doc: Document | None = None, path: PathKey = ()
) -> tuple[tuple[TemplatePart, ...], list[Problem]]:
    """`"{title} ({pipeline})"` → its parts. `{{` and `}}` are literal braces."""
    parts: list[TemplatePart] = []
    problems: list[Problem] = []
    pos = 0
    literal = ""

    def where(offset: int) -> Location | None:
        return doc.text_column(path, offset) if doc is not None else None

    for match in _PLACEHOLDER.finditer(text):
        literal += text[pos : match.start()]
        pos = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            literal += token[0]
        elif token in ("{", "}"):
            problems.append(
                Problem(
                    where(match.start()),
                    f"license.product: a lone '{token}' in the template {text!r}; write "
                    "{{ or }} for a brace, or {field} for a deal field",
                )
            )
        else:
            name = match.group(1).strip()
            if not name:
                problems.append(
                    Problem(
                        where(match.start()),
                        "license.product: an empty {} in the template; name a deal field, "
                        "e.g. {title}",
                    )
                )
                continue
            if literal:
                parts.append(TemplatePart(literal, False))
                literal = ""
            parts.append(TemplatePart(name, True, where(match.start())))
    literal += text[pos:]
    if literal:
        parts.append(TemplatePart(literal, False))
    return tuple(parts), problems


def check_rules(obj: str, specs: Sequence[RuleSpec]) -> list[Problem]:
    """Offline checks of one Planhat object's rules: fields exist, nothing reserved, one rule
    per target, conversions that can go the rule's way."""
    problems = []
    pair = PAIRS[obj]
    attributes = PLANHAT_ATTRIBUTES[obj]
    reserved = RESERVED[obj]
    pd_fields = PIPEDRIVE_FIELDS[pair.pipedrive]
    links = PIPEDRIVE_LINKS[pair.pipedrive]
    targets: dict[str, RuleSpec] = {}
    sends: dict[str, RuleSpec] = {}
    for spec in specs:
        where = spec.planhat_location
        name = spec.planhat_field
        # -- the Planhat side
        if spec.planhat_custom:
            if not name.strip() or name != name.strip():
                problems.append(
                    Problem(
                        where,
                        f"the Planhat custom field name {name!r} is empty or has spaces at its "
                        "ends; write the field's name as Planhat shows it",
                    )
                )
                continue
        elif name in reserved:
            problems.append(
                Problem(
                    where, f"{pair.planhat_title} field '{name}' cannot be mapped: {reserved[name]}"
                )
            )
            continue
        elif name not in attributes:
            valid = ", ".join(sorted(attributes, key=str.casefold))
            hint = (
                " (a Planhat custom field is written 'custom.<name>' in a field map, or "
                "'type: custom' in a custom match)"
                if spec.origin == "field map"
                else " (for a Planhat custom field use 'type: custom')"
            )
            problems.append(
                Problem(
                    where,
                    f"unknown Planhat {pair.planhat_title} field '{name}'"
                    f"{suggest(name, attributes)}; valid: {valid}{hint}",
                )
            )
            continue
        else:
            attr = attributes[name]
            if not attr.writable and spec.direction in ("receive", "both"):
                why = f" ({attr.note})" if attr.note else ""
                problems.append(
                    Problem(
                        spec.location,
                        f"Planhat computes {pair.planhat_title} field '{name}' itself{why}; it "
                        f"can only be sent to Pipedrive (direction: send), found direction "
                        f"'{spec.direction}'",
                    )
                )
        first = targets.get(spec.key)
        if first is not None and spec.direction != "none" and first.direction != "none":
            problems.append(
                Problem(
                    spec.planhat_location,
                    f"two rules write Planhat {pair.planhat_title} field '{spec.key}': this "
                    f"{spec.origin} and the {first.origin} at {first.location}; keep one",
                )
            )
        elif spec.direction != "none":
            targets[spec.key] = spec
        # -- the Pipedrive side (system fields only; labels and keys need the account)
        written = spec.pipedrive_field
        base, _, part = written.partition(".")
        if spec.origin == "field map" and not CUSTOM_FIELD_KEY.match(base):
            if base not in pd_fields:
                valid = ", ".join(sorted(pd_fields))
                problems.append(
                    Problem(
                        spec.pipedrive_location,
                        f"unknown Pipedrive {pair.pipedrive_title} field '{written}'"
                        f"{suggest(written, pd_fields)}; valid: {valid}, or a custom field's "
                        f"40-character key (custom fields by label go in {CUSTOM_MATCHES_FILE})",
                    )
                )
                continue
            if part:
                if pd_fields[base].kind != "address" or part not in ADDRESS_PARTS:
                    problems.append(
                        Problem(
                            spec.pipedrive_location,
                            f"'{written}': only an address field has parts; valid parts of an "
                            f"address: {', '.join(ADDRESS_PARTS)}",
                        )
                    )
                    continue
            sending = spec.direction in ("send", "both")
            if sending and (part or not pd_fields[base].writable or base in links):
                why = (
                    links[base]
                    if base in links
                    else "a part of an address is received only"
                    if part
                    else "Pipedrive sets it itself"
                )
                problems.append(
                    Problem(
                        spec.location,
                        f"Pipedrive {pair.pipedrive_title} field '{written}' cannot be written "
                        f"({why}); use direction: receive, found direction '{spec.direction}'",
                    )
                )
                continue
        if spec.convert == "subject" and spec.direction in ("send", "both"):
            problems.append(
                Problem(
                    spec.location,
                    f"convert: subject can only be received (direction: receive), found "
                    f"direction '{spec.direction}'",
                )
            )
        if spec.direction in ("send", "both") and spec.origin == "field map":
            other = sends.get(written)
            if other is not None:
                problems.append(
                    Problem(
                        spec.pipedrive_location,
                        f"two rules write Pipedrive {pair.pipedrive_title} field '{written}': "
                        f"this {spec.origin} and the {other.origin} at {other.location}; keep one",
                    )
                )
            else:
                sends[written] = spec
    return problems
