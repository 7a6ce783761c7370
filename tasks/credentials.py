"""The run's credentials: read once from where the settings say they are (an environment
variable or a Prefect Secret block, which is a call to the Prefect API) into one object that
the clients are opened with, so that a run resolves each token once.

A `Credentials` never shows its tokens (`repr`, `str`); errors never contain them either
(`mappings.secrets` guards every message that names a setting).
"""

from __future__ import annotations

import os
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mappings.errors import Location, Problem, SettingsError
from mappings.schema import INTEGRATION_FILE
from mappings.secrets import ENV_NAME, hide_secrets, looks_like_secret
from store.records import token_fingerprint

if TYPE_CHECKING:
    from mappings.models import Settings


@dataclass(frozen=True, repr=False)
class Credentials:
    """Both services' tokens, resolved once per run."""

    pipedrive_token: str
    planhat_token: str

    def __repr__(self) -> str:
        return "Credentials(pipedrive_token='***', planhat_token='***')"

    __str__ = __repr__

    @property
    def pipedrive_fingerprint(self) -> str:
        """The only form of the Pipedrive token that is ever stored."""
        return token_fingerprint(self.pipedrive_token)


def resolve_credentials(settings: Settings) -> Credentials:
    """Both tokens, each read once (`SettingsError`, located, when one is not there)."""
    return Credentials(pipedrive_token(settings), planhat_token(settings))


def resolve_secret(env: str | None, block: str | None, what: str, location: Location) -> str:
    """A token or password from its environment variable or Prefect Secret block. Raises
    `SettingsError` (located at the setting) when it is not there; never shows the value."""
    if env:
        value = os.environ.get(env, "")
        if not value.strip():
            if looks_like_secret(env) or not ENV_NAME.match(env):  # never repeat a secret
                message = (
                    f"the environment variable name given ({len(env)} characters, not shown) "
                    f"is no variable name: it looks like the {what} itself; put the {what} in "
                    "an environment variable and name that variable here"
                )
            else:
                message = (
                    f"the environment variable {env} is not set; set it to the {what} "
                    f"(e.g. export {env}=...) before running"
                )
            raise SettingsError([Problem(location, message)])
        return value.strip()
    if block is None:  # the settings checks require one of the two
        raise SettingsError([Problem(location, f"no {what} is configured")])
    try:
        from prefect.blocks.system import Secret
    except ImportError:  # pragma: no cover - Prefect is a dependency
        raise SettingsError([Problem(location, "Prefect is not installed")]) from None
    try:
        secret = Secret.load(block)
    except Exception as exc:  # noqa: BLE001 - any failure means "not there"
        shown = hide_secrets(f"'{block}'")
        raise SettingsError(
            [
                Problem(
                    location,
                    f"the Prefect Secret block {shown} could not be loaded "
                    f"({type(exc).__name__}); create it with the {what} (prefect block create "
                    "secret) or use token_env",
                )
            ]
        ) from None
    if isinstance(secret, Coroutine):  # `load` is async inside a running event loop
        secret.close()
        raise RuntimeError("secrets are read outside a running event loop")
    value = secret.get()
    return str(value).strip()


def token_location(settings: Settings, service: str) -> Location:
    conn = getattr(settings.integration.connection, service)
    key = "token_env" if conn.token_env else "secret_block"
    return settings.locate(INTEGRATION_FILE, ("connection", service, key))


def pipedrive_token(settings: Settings) -> str:
    """The Pipedrive API token, from where `integration.yaml` says it is."""
    conn = settings.integration.connection.pipedrive
    return resolve_secret(
        conn.token_env,
        conn.secret_block,
        "Pipedrive API token",
        token_location(settings, "pipedrive"),
    )


def planhat_token(settings: Settings) -> str:
    """The Planhat API token, from where `integration.yaml` says it is."""
    conn = settings.integration.connection.planhat
    return resolve_secret(
        conn.token_env, conn.secret_block, "Planhat API token", token_location(settings, "planhat")
    )


def planhat_webhook_secret(settings: Settings) -> str | None:
    """The shared secret Planhat's automation webhooks carry (None: no Planhat webhook)."""
    hook = settings.integration.connection.receiver.planhat_webhook
    if hook is None:
        return None
    key = "secret_env" if hook.secret_env else "secret_block"
    where = settings.locate(INTEGRATION_FILE, ("connection", "receiver", "planhat_webhook", key))
    return resolve_secret(
        hook.secret_env, hook.secret_block, "Planhat webhook's shared secret", where
    )


def receiver_password(settings: Settings) -> str:
    """The receiver's basic-auth password (Pipedrive sends it with every webhook delivery)."""
    auth = settings.integration.connection.receiver.basic_auth
    key = "password_env" if auth.password_env else "password_secret_block"
    where = settings.locate(INTEGRATION_FILE, ("connection", "receiver", "basic_auth", key))
    return resolve_secret(
        auth.password_env, auth.password_secret_block, "receiver's basic-auth password", where
    )
