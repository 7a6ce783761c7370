"""Opening the two clients from the settings, and reading what the settings need from the two
accounts through them (`mappings` itself does no I/O: `compile_mappings` takes these lists as
data).

    with open_pipedrive(settings) as pipedrive, open_planhat(settings) as planhat:
        account = fetch_account(pipedrive, planhat)     # pipelines, *Fields, users: once per run
    mappings = compile_mappings(settings, account)

Cost: Pipedrive 5 list calls (pipelines, three `*Fields`, users), Planhat 1 (users).
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from clients import (
    InvalidSettingError,
    PipedriveClient,
    PlanhatClient,
    check_planhat_token,
    check_token,
    parse_company_url,
)
from clients.http import is_loopback_url
from clients.planhat import parse_base_url
from mappings.errors import Problem, SettingsError
from mappings.models import INTEGRATION_FILE, Settings
from mappings.resolve import Account
from tasks.credentials import Credentials, pipedrive_token, planhat_token, token_location

__all__ = [
    "PLACEHOLDER_HOST",
    "connection_problems",
    "fetch_account",
    "hand_over",
    "open_pipedrive",
    "open_planhat",
    "taken_over",
]

#: The shipped integration.yaml's placeholder company URL: it must be replaced.
PLACEHOLDER_HOST = "yourcompany.pipedrive.com"


def connection_problems(settings: Settings) -> dict[str, list[Problem]]:
    """Per service ("pipedrive", "planhat"), every connection mistake that can be found without
    a network call, located in integration.yaml: the placeholder or an invalid URL, a token that
    is not set or not well-formed. Plain http is accepted for loopback addresses only."""
    conn = settings.integration.connection
    found: dict[str, list[Problem]] = {"pipedrive": [], "planhat": []}
    url = conn.pipedrive.company_url
    where = settings.locate(INTEGRATION_FILE, ("connection", "pipedrive", "company_url"))
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        host = ""
    if host == PLACEHOLDER_HOST:
        found["pipedrive"].append(
            Problem(
                where,
                f"connection.pipedrive.company_url is still the placeholder {url}: replace it "
                "with your Pipedrive address, as your browser shows it (e.g. "
                "https://acme.pipedrive.com)",
            )
        )
    else:
        try:
            parse_company_url(url, allow_local_http=is_loopback_url(url))
        except InvalidSettingError as exc:
            found["pipedrive"].append(Problem(where, f"connection.pipedrive.company_url: {exc}"))
    url = conn.planhat.base_url
    where = settings.locate(INTEGRATION_FILE, ("connection", "planhat", "base_url"))
    try:
        parse_base_url(url, allow_local_http=is_loopback_url(url))
    except InvalidSettingError as exc:
        found["planhat"].append(Problem(where, f"connection.planhat.base_url: {exc}"))
    for service, read, check in (
        ("pipedrive", pipedrive_token, check_token),
        ("planhat", planhat_token, check_planhat_token),
    ):
        try:
            check(read(settings))
        except SettingsError as exc:
            found[service].extend(exc.problems)
        except InvalidSettingError as exc:
            where = token_location(settings, service)
            source = getattr(conn, service).source()
            found[service].append(
                Problem(where, f"connection.{service}: the token in {source} is not usable: {exc}")
            )
    return found


def open_pipedrive(
    settings: Settings, credentials: Credentials | None = None, **client_options: Any
) -> PipedriveClient:
    """A `PipedriveClient` for the settings' company URL and token (from `credentials`, the
    run's, else read now); a connection mistake (`connection_problems`) raises
    `SettingsError` first."""
    problems = connection_problems(settings)["pipedrive"]
    if problems:
        raise SettingsError(problems)
    url = settings.integration.connection.pipedrive.company_url
    token = credentials.pipedrive_token if credentials else pipedrive_token(settings)
    return PipedriveClient(url, token, allow_local_http=is_loopback_url(url), **client_options)


def open_planhat(
    settings: Settings, credentials: Credentials | None = None, **client_options: Any
) -> PlanhatClient:
    """A `PlanhatClient` for the settings' base URL and token (as for Pipedrive)."""
    problems = connection_problems(settings)["planhat"]
    if problems:
        raise SettingsError(problems)
    url = settings.integration.connection.planhat.base_url
    return PlanhatClient(
        credentials.planhat_token if credentials else planhat_token(settings),
        base_url=url,
        allow_local_http=is_loopback_url(url),
        **client_options,
    )


#: how long an account handed over by a command stays fresh enough for the run it starts
HANDOVER_S = 60.0
_handed: dict[str, tuple[float, Account]] = {}
_handed_lock = threading.Lock()


def _identity(pipedrive: PipedriveClient, planhat: PlanhatClient) -> str:
    """The two accounts' identity (URLs and tokens), hashed: the tokens are never kept."""
    parts = [pipedrive.urls.company_url, *pipedrive.secrets, planhat.base_url, *planhat.secrets]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def hand_over(pipedrive: PipedriveClient, planhat: PlanhatClient, account: Account) -> None:
    """Keep the account a command just read (to check the settings before a run) for the run
    it starts in this process: `taken_over` gives it once, within `HANDOVER_S`, so that a run
    that must read the account fresh does not read it twice (6 calls)."""
    with _handed_lock:
        _handed[_identity(pipedrive, planhat)] = (time.monotonic(), account)


def taken_over(pipedrive: PipedriveClient, planhat: PlanhatClient) -> Account | None:
    """The account handed over for these two accounts, once, if it is fresh enough."""
    with _handed_lock:
        handed = _handed.pop(_identity(pipedrive, planhat), None)
    if handed is None or time.monotonic() - handed[0] > HANDOVER_S:
        return None
    return handed[1]


def fetch_account(pipedrive: PipedriveClient, planhat: PlanhatClient) -> Account:
    """The lists `compile_mappings` resolves names against, read once."""
    return Account(
        pipelines=list(pipedrive.iter_pipelines()),
        deal_fields=list(pipedrive.iter_deal_fields()),
        organization_fields=list(pipedrive.iter_organization_fields()),
        person_fields=list(pipedrive.iter_person_fields()),
        pipedrive_users=list(pipedrive.iter_users()),
        planhat_users=list(planhat.iter_records("users")),
    )
