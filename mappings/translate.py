"""Pydantic's validation errors → located problems: `file:line:column: what was found; what
is valid`, in words a user of the settings files understands (no pydantic vocabulary)."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from mappings.errors import Problem, suggest
from mappings.secrets import SECRET_KEYS
from mappings.yamlsource import Document, PathKey, path_text

__all__ = ["problems_from"]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType, list, tuple, Sequence):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_at(root: type[BaseModel], path: PathKey) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for item in path:
        if model is None:
            return None
        if isinstance(item, int):
            continue
        info = model.model_fields.get(str(item))
        model = _model_of(info.annotation) if info is not None else None
    return model


def _shown(doc: Document, path: PathKey, value: Any) -> str:
    raw = doc.raw(path)
    if raw is not None:
        return repr(raw)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def problems_from(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        # Walk the data alongside the error's path; union branch names etc. fall off the end.
        path: list[str | int] = []
        data: Any = doc.data
        rest: list[Any] = []
        for i, item in enumerate(loc):
            if isinstance(data, dict) and isinstance(item, str) and item in data:
                path.append(item)
                data = data[item]
            elif isinstance(data, list) and isinstance(item, int) and 0 <= item < len(data):
                path.append(item)
                data = data[item]
            else:
                rest = list(loc[i:])
                break
        ptuple = tuple(path)
        kind = error["type"]
        parent = path_text(ptuple)
        if kind == "extra_forbidden":
            key = ptuple[-1]
            if isinstance(key, str) and key.casefold() in SECRET_KEYS:
                continue  # reported by the secret scan
            owner = _model_at(model, ptuple[:-1])
            names = list(owner.model_fields) if owner else []
            where = path_text(ptuple[:-1])
            problems.append(
                Problem(
                    doc.key_at(ptuple),
                    f"unknown key '{key}' in {where}{suggest(key, names)}; valid keys: "
                    + ", ".join(names),
                )
            )
        elif kind == "missing":
            key = rest[0] if rest else (ptuple[-1] if ptuple else "?")
            problems.append(Problem(doc.value_at(ptuple), f"missing key '{key}' in {parent}"))
        elif kind in ("literal_error", "enum"):
            name = ptuple[-1] if ptuple and isinstance(ptuple[-1], str) else path_text(ptuple)
            expected = error.get("ctx", {}).get("expected", "")
            options = re.findall(r"'([^']*)'", expected)
            problems.append(
                Problem(
                    doc.value_at(ptuple),
                    f"unknown {name} {_shown(doc, ptuple, data)} in {path_text(ptuple[:-1])}"
                    f"{suggest(doc.raw(ptuple) or data, options)}; valid: {expected}",
                )
            )
        elif kind in ("secret_in_file",):
            where = path_text(ptuple[:-1]) if len(ptuple) > 1 else ""
            text = f"{where}.{error['msg']}" if where else error["msg"]
            problems.append(Problem(doc.value_at(ptuple), text))
        elif kind in ("env_name", "block_name", "value_error", "assertion_error"):
            msg = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
            problems.append(Problem(doc.value_at(ptuple), f"{parent}: {msg}"))
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            problems.append(
                Problem(
                    doc.value_at(ptuple),
                    f"{parent} must be a mapping of keys, found {_shown(doc, ptuple, data)}",
                )
            )
        elif kind == "list_type":
            problems.append(
                Problem(
                    doc.value_at(ptuple),
                    f"{parent} must be a list (one '- ' item per line), found "
                    f"{_shown(doc, ptuple, data)}",
                )
            )
        else:
            # Type errors of a scalar: say what was expected, in words.
            if rest and any(isinstance(r, str) for r in rest):
                expected_text = "a pipeline id (a number) or name (text)"
            else:
                expected_text = _EXPECTED.get(kind, error["msg"].lower())
            problems.append(
                Problem(
                    doc.value_at(ptuple),
                    f"{parent} must be {expected_text}, found {_shown(doc, ptuple, data)}",
                )
            )
    return problems


_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
    "greater_than_equal": "larger",
    "less_than_equal": "smaller",
    "string_too_short": "non-empty text",
}
