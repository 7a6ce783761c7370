"""Connect: check the Pipedrive connection and keep exactly one deal webhook pointing at the
receiver (design §1, "connect"; the incremental sync re-checks the webhook every run).

* The company URL and the token are checked locally first (40 characters, a Pipedrive URL); the
  token is tested against Pipedrive (`GET /v1/users/me`) only when the URL or the token's
  fingerprint changed since the stored connection. A wrong token fails with what to do, and
  nothing is stored.
* The webhook: version 2.0, every action on deals, basic auth. An existing webhook with the same
  URL and object is reused (one with other credentials is replaced); a missing one is created.
* The store keeps the company URL, the token's fingerprint (never the token), the webhook id,
  where the receiver's password lives, and when it was verified.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from clients import PipedriveClient
from mappings.errors import SettingsError
from mappings.models import Settings
from store import StateStore
from store.records import Connection, token_fingerprint
from tasks.credentials import pipedrive_token, receiver_password

log = logging.getLogger(__name__)

WEBHOOK_NAME = "pdsync: deal changes to Planhat"
WEBHOOK_OBJECT = "deal"


@dataclass
class ConnectResult:
    company_url: str
    user: str | None
    verified: bool  # tested against Pipedrive in this run
    webhook_id: int | None
    webhook: str  # "created" | "kept" | "replaced" | "not configured"


def receiver_credentials(settings: Settings) -> tuple[str, str, str] | None:
    """(url, username, password) of the receiver, or None when no public URL is configured.

    With the password in a Prefect Secret block that does not exist yet, a strong password is
    generated and saved there (the user never has to invent one)."""
    receiver = settings.integration.connection.receiver
    if not receiver.public_url:
        return None
    auth = receiver.basic_auth
    try:
        password = receiver_password(settings)
    except SettingsError:
        if not auth.password_secret_block:
            raise
        from prefect.blocks.system import Secret

        password = secrets.token_urlsafe(24)
        Secret(value=password).save(auth.password_secret_block, overwrite=False)
        log.info(
            "generated the receiver password into Prefect Secret %r", auth.password_secret_block
        )
    return receiver.public_url, auth.username, password


def credential_reference(settings: Settings) -> str | None:
    auth = settings.integration.connection.receiver.basic_auth
    if auth.password_env:
        return f"env:{auth.password_env}"
    if auth.password_secret_block:
        return f"prefect-secret:{auth.password_secret_block}"
    return None


def ensure_webhook(
    pipedrive: PipedriveClient, url: str, username: str, password: str
) -> tuple[int, str]:
    """Exactly one deal webhook to `url` with these credentials: (webhook id, what was done)."""
    ours = [
        w
        for w in pipedrive.list_webhooks()
        if w.get("subscription_url") == url
        and w.get("event_object") in (WEBHOOK_OBJECT, "*")
        and w.get("is_active", 1) not in (0, False)
    ]
    keep: dict[str, Any] | None = None
    for hook in ours:
        same_auth = hook.get("http_auth_user") in (None, username) and hook.get(
            "http_auth_password"
        ) in (None, password)
        if keep is None and same_auth and str(hook.get("version", "2.0")).startswith("2"):
            keep = hook
        else:
            pipedrive.delete_webhook(int(hook["id"]))
    if keep is not None:
        return int(keep["id"]), "kept"
    created = pipedrive.create_webhook(
        subscription_url=url,
        name=WEBHOOK_NAME,
        http_auth_user=username,
        http_auth_password=password,
        event_object=WEBHOOK_OBJECT,
        event_action="*",
    )
    return int(created["id"]), "replaced" if ours else "created"


def connect_account(
    settings: Settings, pipedrive: PipedriveClient, store: StateStore, *, force_check: bool = False
) -> ConnectResult:
    """Check the connection (when it changed), ensure the webhook, store the connection."""
    company_url = settings.integration.connection.pipedrive.company_url.rstrip("/")
    fingerprint = token_fingerprint(pipedrive_token(settings))
    stored = store.get_connection()
    changed = (
        stored is None
        or stored.company_url != company_url
        or stored.token_fingerprint != fingerprint
        or stored.verified_at is None
    )
    user = None
    if changed or force_check:
        me = pipedrive.check_connection()  # AuthError says what to do; nothing stored then
        user = f"{me.name} <{me.email}>" if me.email else me.name
    receiver = receiver_credentials(settings)
    webhook_id, webhook = (None, "not configured")
    if receiver is not None:
        webhook_id, webhook = ensure_webhook(pipedrive, *receiver)
    else:
        log.warning(
            "connection.receiver.public_url is not set: no Pipedrive webhook, so deals sync only "
            "on the incremental schedule"
        )
    store.save_connection(
        Connection(
            company_url=company_url,
            token_fingerprint=fingerprint,
            webhook_id=webhook_id,
            receiver_credential_ref=credential_reference(settings),
            verified_at=(
                datetime.now(UTC)
                if changed or force_check or stored is None  # `changed` when nothing is stored
                else stored.verified_at
            ),
        )
    )
    return ConnectResult(company_url, user, changed or force_check, webhook_id, webhook)


def check_webhook(settings: Settings, pipedrive: PipedriveClient, store: StateStore) -> str:
    """The incremental sync's check: recreate the webhook if Pipedrive deleted it (after 3 days
    of failed deliveries, or by hand). Does nothing before the first `connect`."""
    stored = store.get_connection()
    if stored is None or not settings.integration.connection.receiver.public_url:
        return "not connected"
    receiver = receiver_credentials(settings)
    if receiver is None:
        return "not connected"
    webhook_id, what = ensure_webhook(pipedrive, *receiver)
    if webhook_id != stored.webhook_id:
        store.save_connection(
            Connection(
                company_url=stored.company_url,
                token_fingerprint=stored.token_fingerprint,
                webhook_id=webhook_id,
                receiver_credential_ref=stored.receiver_credential_ref,
                verified_at=stored.verified_at,
            )
        )
        log.warning("the Pipedrive webhook was missing and has been %s (id %s)", what, webhook_id)
    return what


# -- Prefect tasks --------------------------------------------------------------------------------


@task(
    name="connect to Pipedrive",
    cache_policy=NO_CACHE,
)
def connect_task(
    settings: Settings, pipedrive: PipedriveClient, store: StateStore, force_check: bool = False
) -> ConnectResult:
    return connect_account(settings, pipedrive, store, force_check=force_check)


@task(
    name="check the webhook",
    cache_policy=NO_CACHE,
)
def check_webhook_task(settings: Settings, pipedrive: PipedriveClient, store: StateStore) -> str:
    return check_webhook(settings, pipedrive, store)
