"""What every sync run works with: the settings resolved against the account, both clients and
the state store, opened once per run (`open_sync_context`) and closed at its end.

The account lists the mappings resolve names against (pipelines, the three `*Fields` lists,
users) cost 5 Pipedrive calls and 1 Planhat call. A run that must stay within a handful of calls
(one webhook) reuses the lists cached in the state store by an earlier run when they are younger
than `account_max_age_s`; the incremental sync always reads them fresh and refreshes the cache.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clients import PipedriveClient, PlanhatClient
from clients.http import Closing
from mappings.loading import load_settings
from mappings.models import Settings
from mappings.resolve import Account, Mappings, compile_mappings
from store import StateStore
from tasks.account import fetch_account, open_pipedrive, open_planhat, taken_over
from tasks.credentials import Credentials, resolve_credentials

log = logging.getLogger(__name__)

ACCOUNT_CACHE_KEY = "account"
DEFAULT_ACCOUNT_MAX_AGE_S = 3600.0


class SyncContext(Closing):
    """One run's settings, mappings, clients and store. Close it (or use `with`).

    A plain class on purpose, like the batch containers the tasks pass along: Prefect walks
    every dataclass, list and dict given to a task looking for futures, which would cost a
    full traversal of a backfill's records at each task call."""

    def __init__(
        self,
        settings: Settings,
        mappings: Mappings,
        pipedrive: PipedriveClient,
        planhat: PlanhatClient,
        store: StateStore,
        account_from_cache: bool = False,
    ) -> None:
        self.settings = settings
        self.mappings = mappings
        self.pipedrive = pipedrive
        self.planhat = planhat
        self.store = store
        self.account_from_cache = account_from_cache
        #: the relation reads this run made (an organization's persons, a deal's notes...):
        #: a deal-sync run's later batches do not repeat them (`tasks.fetch`)
        self.relations_read: set[tuple[str, int]] = set()

    @property
    def dry_run(self) -> bool:
        return self.mappings.dry_run

    def close(self) -> None:
        self.pipedrive.close()
        self.planhat.close()
        self.store.close()


def _cache_scope(settings: Settings, credentials: Credentials) -> str:
    """The cached lists belong to one Pipedrive company and token (and one Planhat tenant)."""
    conn = settings.integration.connection
    return "|".join(
        (
            conn.pipedrive.company_url.rstrip("/"),
            credentials.pipedrive_fingerprint,
            conn.planhat.base_url.rstrip("/"),
        )
    )


def load_account(
    settings: Settings,
    pipedrive: PipedriveClient,
    planhat: PlanhatClient,
    store: StateStore,
    credentials: Credentials,
    *,
    max_age_s: float | None,
) -> tuple[Account, bool]:
    """The account lists: from the store's cache when fresh enough (`max_age_s`; None never
    uses the cache), else read from both services and cached. Returns (account, from cache)."""
    scope = _cache_scope(settings, credentials)
    if max_age_s is not None:
        cached = store.cache_get(ACCOUNT_CACHE_KEY)
        if cached is not None:
            value, saved_at = cached
            fresh = datetime.now(UTC) - saved_at <= timedelta(seconds=max_age_s)
            if fresh and value.get("scope") == scope:
                return Account(**value["account"]), True
    account = taken_over(pipedrive, planhat) or fetch_account(pipedrive, planhat)
    store.cache_put(ACCOUNT_CACHE_KEY, {"scope": scope, "account": asdict(account)})
    return account, False


def open_sync_context(
    settings_dir: str | Path | None = None,
    *,
    account_max_age_s: float | None = DEFAULT_ACCOUNT_MAX_AGE_S,
    **client_options: Any,
) -> SyncContext:
    """Load and validate the settings, open both clients and the store, resolve the mappings.

    Raises `mappings.errors.SettingsError` (located messages) on invalid settings and the
    clients' typed errors (e.g. `AuthError` with what to do) on a connection problem; nothing
    is written in either case.
    """
    settings = load_settings(settings_dir)
    credentials = resolve_credentials(settings)  # once per run
    pipedrive = open_pipedrive(settings, credentials, **client_options)
    planhat = open_planhat(settings, credentials, **client_options)
    store = StateStore(settings.store_url)
    try:
        account, cached = load_account(
            settings, pipedrive, planhat, store, credentials, max_age_s=account_max_age_s
        )
        mappings = compile_mappings(settings, account)
    except BaseException:
        pipedrive.close()
        planhat.close()
        store.close()
        raise
    for problem in mappings.problems:
        log.warning("settings: %s", problem)
    return SyncContext(settings, mappings, pipedrive, planhat, store, account_from_cache=cached)
