"""THE loader: `load_settings(directory)` reads a settings directory into `Settings`.

A settings directory holds (see the comments in each shipped file):

* `integration.yaml`: the "Integration Setup" page: connection, sections and directions,
  pipelines, license defaults, conflict policy, schedule, state store;
* `organization_company.yaml`, `person_enduser.yaml`, `deal_license.yaml`, `note_note.yaml`: the
  system-field map of each pair, every field with its direction;
* `custom_matches.yaml`: the custom matches (a Planhat custom field or attribute ⇄ any Pipedrive
  field, by label or 40-character key).

`integration.yaml` must be in the directory; any other file the directory lacks is taken from
the shipped defaults in `mappings/` (so a user's directory can hold just `integration.yaml`
and `custom_matches.yaml`). `load_settings()` with no argument reads `$PDSYNC_SETTINGS_DIR`, else
the shipped defaults.

The loader checks everything that can be checked without the accounts: unknown keys, unknown
directions / objects / fields / conversions, two rules writing one target, templates, cron and
time zone, and a token written into a file (never allowed). Every problem is reported at once,
as `file:line:column: what was found; what is valid`, in a `SettingsError`. Names that only the
account knows (pipelines, custom-field labels) are resolved by `mappings.resolve`.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mappings.checks import check_integration, check_rules, parse_template
from mappings.errors import Problem, SettingsError
from mappings.models import (
    CUSTOM_MATCHES_FILE,
    DATABASE_URL_ENV,
    DEFAULT_DIR,
    INTEGRATION_FILE,
    SETTINGS_DIR_ENV,
    CustomMatch,
    CustomMatches,
    FieldMap,
    FieldRule,
    Integration,
    RuleSpec,
    Settings,
    TemplatePart,
)
from mappings.schema import PAIRS, PlanhatObject
from mappings.secrets import secret_scan, without_secrets
from mappings.translate import problems_from
from mappings.yamlsource import Document, read_yaml

__all__ = ["default_settings_dir", "load_settings"]


def _valid_items(model: type[BaseModel], items: Any) -> list[Any]:
    """The items of a list that are valid on their own (None in place of the others, so that
    positions stay right); their errors are reported by the full validation."""
    out: list[Any] = []
    for item in items if isinstance(items, list) else []:
        try:
            out.append(model.model_validate(item))
        except ValidationError:
            out.append(None)
    return out


def _partial_map(data: dict[str, Any], obj: str) -> FieldMap | None:
    pair = PAIRS[obj]
    rules = _valid_items(FieldRule, data.get("fields"))
    return FieldMap.model_construct(
        pipedrive_object=pair.pipedrive, planhat_object=pair.planhat, fields=rules
    )


def _partial_matches(data: dict[str, Any]) -> CustomMatches:
    return CustomMatches.model_construct(
        custom_matches=_valid_items(CustomMatch, data.get("custom_matches"))
    )


def _rule_specs(
    obj: str, doc: Document, fmap: FieldMap | None, matches: Sequence[tuple[int, CustomMatch]],
    matches_doc: Document | None,
) -> list[RuleSpec]:  # fmt: skip
    specs = []
    if fmap is not None:
        for i, rule in enumerate(fmap.fields):
            if rule is None:
                continue
            path = ("fields", i)
            planhat = rule.planhat
            custom = planhat.startswith("custom.")
            specs.append(
                RuleSpec(
                    planhat_object=typing.cast(PlanhatObject, obj),
                    planhat_field=planhat[len("custom.") :] if custom else planhat,
                    planhat_custom=custom,
                    pipedrive_field=rule.pipedrive,
                    direction=rule.direction,
                    convert=rule.convert,
                    origin="field map",
                    location=doc.key_at(path),
                    pipedrive_location=doc.value_at((*path, "pipedrive")),
                    planhat_location=doc.value_at((*path, "planhat")),
                )
            )
    if matches_doc is not None:
        for i, match in matches:
            path = ("custom_matches", i)
            specs.append(
                RuleSpec(
                    planhat_object=typing.cast(PlanhatObject, obj),
                    planhat_field=match.planhat_field,
                    planhat_custom=match.type == "custom",
                    pipedrive_field=match.pipedrive_field,
                    direction=match.direction,
                    convert=match.convert,
                    origin="custom match",
                    location=matches_doc.key_at(path),
                    pipedrive_location=matches_doc.value_at((*path, "pipedrive_field")),
                    planhat_location=matches_doc.value_at((*path, "planhat_field")),
                )
            )
    return specs


def default_settings_dir() -> Path:
    """`$PDSYNC_SETTINGS_DIR`, else the shipped settings beside this module."""
    env = os.environ.get(SETTINGS_DIR_ENV, "").strip()
    return Path(env) if env else DEFAULT_DIR


def _store_url(integration: Integration) -> str:
    """The state store URL: `$PDSYNC_DATABASE_URL` wins; a relative SQLite path is taken from
    the working directory and made absolute (so one run uses one file)."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip() or integration.store.url
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix) :]
        if rest and rest != ":memory:" and not Path(rest).is_absolute():
            return prefix + str((Path.cwd() / rest).resolve())
    return url


def load_settings(directory: Path | str | None = None) -> Settings:
    """Read and validate a settings directory (see the module docstring). Raises
    `SettingsError` with every located problem; nothing may run on invalid settings."""
    base = Path(directory) if directory is not None else default_settings_dir()
    if not base.is_dir():
        raise SettingsError([Problem(None, f"{base}: no such settings directory")])
    problems: list[Problem] = []
    documents: dict[str, Document] = {}
    files: dict[str, str] = {}

    def source(name: str) -> Path:
        own = base / name
        return own if own.is_file() or name == INTEGRATION_FILE else DEFAULT_DIR / name

    def read(part: str, name: str) -> Document | None:
        path = source(name)
        try:
            doc = read_yaml(path)
        except SettingsError as exc:
            problems.extend(exc.problems)
            return None
        documents[name] = doc
        files[part] = doc.name
        problems.extend(secret_scan(doc))
        return doc

    def validate(doc: Document | None, model: type[BaseModel]) -> Any:
        if doc is None:
            return None
        data = doc.data if doc.data is not None else {}
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems.extend(problems_from(exc, doc, model))
            return None

    int_doc = read("integration", INTEGRATION_FILE)
    integration = validate(int_doc, Integration)
    template: tuple[TemplatePart, ...] = ()
    if int_doc is not None:
        problems.extend(check_integration(int_doc))
    if integration is not None and int_doc is not None:
        template = parse_template(integration.license.product, int_doc, ("license", "product"))[0]

    maps: dict[str, tuple[FieldMap | None, Document | None]] = {}
    for obj, pair in PAIRS.items():
        doc = read(obj, pair.file)
        fmap = validate(doc, FieldMap)
        if fmap is None and doc is not None and isinstance(doc.data, dict):
            fmap = _partial_map(doc.data, obj)
        if fmap is not None and doc is not None:
            expected = (pair.pipedrive, pair.planhat)
            if (fmap.pipedrive_object, fmap.planhat_object) != expected:
                problems.append(
                    Problem(
                        doc.value_at(("pipedrive_object",)),
                        f"{pair.file} maps Pipedrive {pair.pipedrive} ⇄ Planhat {pair.planhat}, "
                        f"found pipedrive_object: {fmap.pipedrive_object}, planhat_object: "
                        f"{fmap.planhat_object}",
                    )
                )
        maps[obj] = (fmap, doc)
    cm_doc = read("custom_matches", CUSTOM_MATCHES_FILE)
    matches = validate(cm_doc, CustomMatches)
    if matches is None and cm_doc is not None and isinstance(cm_doc.data, dict):
        matches = _partial_matches(cm_doc.data)

    rules: dict[str, tuple[RuleSpec, ...]] = {}
    for obj in PAIRS:
        fmap, doc = maps[obj]
        mine = (
            [
                (i, m)
                for i, m in enumerate(matches.custom_matches)
                if m is not None and m.planhat_object == obj
            ]
            if matches is not None
            else []
        )
        if doc is None:
            continue
        specs = _rule_specs(obj, doc, fmap, mine, cm_doc)
        problems.extend(check_rules(obj, specs))
        rules[obj] = tuple(specs)

    if problems or integration is None:
        raise SettingsError(without_secrets(problems, documents.values()))
    return Settings(
        directory=base,
        integration=integration,
        rules=rules,
        files=files,
        documents=documents,
        product_template=template,
        store_url=_store_url(integration),
    )
