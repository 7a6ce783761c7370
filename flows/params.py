"""What the Prefect UI's Run form shows for each flow parameter: a title and a description.

Prefect builds a deployment's `parameter_openapi_schema` from the flow's signature, with every
title set to the parameter's name and a description only from a Google-style docstring; the
`json_schema_extra` of a pydantic `Field` in `Annotated[...]` is laid over that schema last, so
it is what sets both here (for `pdsync serve`, `prefect deploy` and `to_deployment` alike).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field


def form(title: str, description: str) -> Any:
    """A parameter's title and description in the Run form (`Annotated[type, form(...)]`)."""
    return Field(json_schema_extra={"title": title, "description": description})


#: every flow's last parameter: optional, the machine's own settings unless given
SettingsDir = Annotated[
    str | None,
    form(
        "Settings directory (optional)",
        "Leave empty to use the settings of the machine that runs the flow: "
        "$PDSYNC_SETTINGS_DIR, else mappings/ in its working directory (pdsync serve fills in "
        "the directory it was started with). Otherwise: a directory on that machine holding "
        "integration.yaml and the field maps.",
    ),
]
