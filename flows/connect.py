"""The connect flow: check the Pipedrive URL and token, ensure the deal webhook to the
receiver, and store the connection (fingerprint only). Run it when the URL or token change."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from prefect import flow

from flows.params import SettingsDir, form
from mappings.loading import load_settings
from store import StateStore
from tasks.account import open_pipedrive
from tasks.connect import connect_task


@flow(name="connect", description="Check the Pipedrive connection and ensure its webhook.")
def connect(
    force_check: Annotated[
        bool,
        form(
            "Test the token again",
            "Test the Pipedrive token even if it did not change since the last check (it is "
            "always tested when it changed).",
        ),
    ] = False,
    settings_dir: SettingsDir = None,
) -> dict[str, Any]:
    settings = load_settings(settings_dir)
    with open_pipedrive(settings) as pipedrive, StateStore(settings.store_url) as store:
        result = connect_task(settings, pipedrive, store, force_check)
    return asdict(result)
