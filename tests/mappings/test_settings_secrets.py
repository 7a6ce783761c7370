"""No settings error ever repeats a secret.

A token or password written where a name belongs (`token_env:`, `password_env:`,
`secret_block:`, `password_secret_block:`) is refused, located, and described by its length
only; and whatever mistake a settings file holds, a secret planted in it never appears in the
loader's error (every kind of error the loader produces is tried below).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mappings_support import BASE_INTEGRATION, write_settings

from mappings.errors import Location, SettingsError
from mappings.loading import load_settings
from mappings.secrets import looks_like_secret
from tasks.credentials import resolve_secret

#: a Pipedrive token (40 hex digits) that starts with a letter, so it is also a valid
#: environment variable name by syntax
HEX_TOKEN = "b3f1c9e07a2d4f68a1c5e9d3b7f20a4c6e8d1f35"
#: a random-looking key of another format
MIXED_TOKEN = "phk_Zq8Lr2Tx9Vb4Nm7Kc1Wd6Hy3Gf5Js0Pa"
#: a short password with punctuation (not "secret-looking", but not a name either)
SHORT_PASSWORD = "pw!Q9x%k"
SECRETS = [HEX_TOKEN, MIXED_TOKEN, HEX_TOKEN.upper(), "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"]


def _error(directory: Path) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        load_settings(directory)
    return caught.value


def _with_receiver(auth: str) -> str:
    return BASE_INTEGRATION.replace(
        "  planhat:\n", f"  receiver:\n    basic_auth: {{{auth}}}\n  planhat:\n"
    )


# -- a secret where a name belongs ------------------------------------------------------------
NAME_SETTINGS = {
    # setting: (integration.yaml with SECRET in it, line:column of the value, message start)
    "pipedrive token_env": (
        BASE_INTEGRATION.replace("token_env: PIPEDRIVE_API_TOKEN", "token_env: SECRET"),
        "5:16",
        "connection.pipedrive.token_env must name an environment variable; the value given",
    ),
    "planhat token_env": (
        BASE_INTEGRATION.replace("token_env: PLANHAT_API_TOKEN", "token_env: SECRET"),
        "7:16",
        "connection.planhat.token_env must name an environment variable; the value given",
    ),
    "pipedrive secret_block": (
        BASE_INTEGRATION.replace("token_env: PIPEDRIVE_API_TOKEN", "secret_block: SECRET"),
        "5:19",
        "connection.pipedrive.secret_block must name a Prefect Secret block; the value given",
    ),
    "password_env": (
        _with_receiver("password_env: SECRET"),
        "7:32",
        "connection.receiver.basic_auth.password_env must name an environment variable; the "
        "value given",
    ),
    "password_secret_block": (
        _with_receiver("password_secret_block: SECRET"),
        "7:41",
        "connection.receiver.basic_auth.password_secret_block must name a Prefect Secret block; "
        "the value given",
    ),
}


@pytest.mark.parametrize("secret", SECRETS, ids=["hex", "mixed", "HEX", "uuid"])
@pytest.mark.parametrize("setting", list(NAME_SETTINGS))
def test_a_secret_written_as_a_name_is_refused_located_and_not_shown(
    tmp_path: Path, setting: str, secret: str
) -> None:
    integration, where, start = NAME_SETTINGS[setting]
    d = write_settings(tmp_path, integration.replace("SECRET", secret))
    error = _error(d)
    (message,) = error.messages
    assert message.startswith(f"{d}/integration.yaml:{where}: {start} ({len(secret)} characters")
    what = "password" if "password" in setting else "token"
    assert f"looks like the {what} itself" in message
    assert secret not in str(error) and secret.lower() not in str(error).lower()


def test_the_whole_message_for_a_token_in_token_env(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION.replace("token_env: PIPEDRIVE_API_TOKEN", f"token_env: {HEX_TOKEN}"),
    )
    assert _error(d).messages == [
        f"{d}/integration.yaml:5:16: connection.pipedrive.token_env must name an environment "
        "variable; the value given (40 characters, not shown) looks like the token itself — a "
        "token must never be written in a settings file: put the token in an environment "
        "variable and name that variable here (like PIPEDRIVE_API_TOKEN)"
    ]


@pytest.mark.parametrize(
    "name",
    [
        "PIPEDRIVE_API_TOKEN",
        "pipedrive_api_token",
        "PDSYNC_PIPEDRIVE_API_TOKEN_PRODUCTION_EU_2",
        "PipedriveToken",
        "TOKEN_2024_Q3",
        "PD_TOKEN_DEADBEEF",
    ],
)
def test_real_variable_names_are_still_accepted(tmp_path: Path, name: str) -> None:
    d = write_settings(
        tmp_path,
        _with_receiver(f"password_env: {name}").replace(
            "token_env: PIPEDRIVE_API_TOKEN", f"token_env: {name}"
        ),
    )
    settings = load_settings(d)
    assert settings.integration.connection.pipedrive.token_env == name
    assert settings.integration.connection.receiver.basic_auth.password_env == name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (HEX_TOKEN, True),
        (HEX_TOKEN.upper(), True),
        ("8fe44a9e0fcd3df5839737b228d3ba669c6a8bb8", True),
        ("0f1e2d3c4b5a69788796a5b4", True),  # 24 hex digits
        ("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", True),
        (MIXED_TOKEN, True),
        ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", True),
        ("QwErTyUiOpAsDfGhJkLzXcVbNmQwErTyUi", True),  # 34 letters, mixed case
        ("0f1e2d3c4b5a6978", False),  # 16 hex digits: too short
        ("PIPEDRIVE_API_TOKEN", False),
        ("PDSYNC_WEBHOOK_PASSWORD", False),
        ("pipedrive-api-token", False),
        ("PDSYNC_PIPEDRIVE_API_TOKEN_PRODUCTION_EU_2", False),
        ("PIPEDRIVETOKEN2024PROD", False),
        ("Renewals & upsell", False),
        ("https://api.planhat.com", False),
        ("*/15 * * * *", False),
        ("America/Argentina/ComodRivadavia", False),
        (None, False),
        (40, False),
    ],
)
def test_what_looks_like_a_secret(value: object, expected: bool) -> None:
    assert looks_like_secret(value) is expected


# -- a planted secret never appears, whatever the mistake --------------------------------------
FIELD_MAP = """\
pipedrive_object: organization
planhat_object: company
fields:
{rows}
"""
CUSTOM_MATCHES = "custom_matches:\n{rows}\n"

B = BASE_INTEGRATION
CONN_PLANHAT = "  planhat:\n    token_env: PLANHAT_API_TOKEN\n"
#: case: (integration.yaml, other files, a fragment of the message the case must produce);
#: SECRET stands for the planted secret
ERROR_KINDS: dict[str, tuple[str, dict[str, str], str]] = {
    "secret key (token:)": (
        B.replace("    token_env: PIPEDRIVE_API_TOKEN\n", "    token: SECRET\n"),
        {},
        "'token' in connection.pipedrive: a token or password must never be written",
    ),
    "secret key (password:)": (
        _with_receiver("password: SECRET"),
        {},
        "'password' in connection.receiver.basic_auth",
    ),
    "secret key (api_key:, top level)": (B + "api_key: SECRET\n", {}, "'api_key' in the top level"),
    "token_env": (
        B.replace("token_env: PIPEDRIVE_API_TOKEN", "token_env: SECRET"),
        {},
        "looks like the token itself",
    ),
    "password_env": (_with_receiver("password_env: SECRET"), {}, "looks like the password"),
    "secret_block": (
        B.replace("token_env: PLANHAT_API_TOKEN", "secret_block: SECRET"),
        {},
        "connection.planhat.secret_block must name a Prefect Secret block",
    ),
    "password_secret_block": (
        _with_receiver("password_secret_block: SECRET"),
        {},
        "password_secret_block must name a Prefect Secret block",
    ),
    "invalid variable name (short password)": (
        B.replace("token_env: PIPEDRIVE_API_TOKEN", f"token_env: '{SHORT_PASSWORD}'"),
        {},
        "an environment variable name is letters, digits and _",
    ),
    "invalid block name (short password)": (
        _with_receiver(f"password_secret_block: '{SHORT_PASSWORD}'"),
        {},
        "a Prefect Secret block name is lowercase letters",
    ),
    "variable name of the wrong type": (
        B.replace("token_env: PIPEDRIVE_API_TOKEN", "token_env: {value: SECRET}"),
        {},
        "an environment variable name",
    ),
    "two token sources": (
        B.replace("token_env: PLANHAT_API_TOKEN", "token_env: X\n    secret_block: SECRET"),
        {},
        "connection.planhat.secret_block must name",
    ),
    "unknown key": (B.replace("  planhat:\n", "  SECRET: 1\n  planhat:\n"), {}, "unknown key"),
    "unknown key at the top level": (B + "SECRET: true\n", {}, "unknown key"),
    "missing key": (
        "version: 1\nconnection:\n  SECRET: {}\n",
        {},
        "missing key 'pipedrive' in connection",
    ),
    "unknown direction": (B + "contacts:\n  direction: SECRET\n", {}, "unknown direction"),
    "unknown conflict policy": (B + "conflict_policy: SECRET\n", {}, "unknown conflict_policy"),
    "unknown version": (B.replace("version: 1", "version: SECRET"), {}, "unknown version"),
    "unknown notes scope": (B + "notes:\n  scope: [deal, SECRET]\n", {}, "unknown"),
    "a mapping expected": (
        B.replace(CONN_PLANHAT, "  planhat: SECRET\n"),
        {},
        "connection.planhat must be a mapping of keys",
    ),
    "a list expected": (
        B.replace("[New business]", "SECRET"),
        {},
        "deals.pipelines must be a list",
    ),
    "true or false expected": (B + "dry_run: SECRET\n", {}, "dry_run must be true or false"),
    "a number expected": (
        B + "license:\n  length_months: SECRET\n",
        {},
        "license.length_months must be a whole number",
    ),
    "text expected": (
        B + "store:\n  url: [SECRET]\n",
        {},
        "store.url must be text",
    ),
    "cron with the wrong number of fields": (
        B + "incremental:\n  cron: SECRET\n",
        {},
        "incremental.cron: found 1 fields",
    ),
    "cron field out of range": (
        B + "incremental:\n  cron: '*/15 SECRET * * *'\n",
        {},
        "incremental.cron: the hour field",
    ),
    "unknown time zone": (
        B + "incremental:\n  timezone: SECRET\n",
        {},
        "incremental.timezone: unknown time zone",
    ),
    "template with a lone brace": (
        B + "license:\n  product: '{title} SECRET }'\n",
        {},
        "license.product: a lone '}'",
    ),
    "pipeline listed twice": (
        B.replace("[New business]", "[SECRET, SECRET]"),
        {},
        "is listed twice",
    ),
    "public url without a scheme": (
        B.replace(
            "  planhat:\n",
            "  receiver:\n    public_url: user:SECRET@sync.example.com\n  planhat:\n",
        ),
        {},
        "connection.receiver.public_url: found",
    ),
    "YAML syntax error": (B + "notes: [SECRET\n", {}, "this is not valid YAML"),
    "YAML syntax error in a value": (
        B + "dry_run: SECRET: x\n",
        {},
        "this is not valid YAML",
    ),
    "duplicate key": (B + "SECRET: 1\nSECRET: 2\n", {}, "appears twice in this mapping"),
    "unknown Planhat field": (
        B,
        {
            "organization_company_yaml": FIELD_MAP.format(
                rows="  - {planhat: SECRET, pipedrive: name, direction: both}"
            )
        },
        "unknown Planhat company field",
    ),
    "Planhat custom field with spaces": (
        B,
        {
            "organization_company_yaml": FIELD_MAP.format(
                rows='  - {planhat: "custom. SECRET", pipedrive: name, direction: both}'
            )
        },
        "is empty or has spaces at its ends",
    ),
    "unknown Pipedrive field (not a 40-hex key)": (
        B,
        {
            "organization_company_yaml": FIELD_MAP.format(
                rows="  - {planhat: web, pipedrive: 'SECRET!', direction: receive}"
            )
        },
        "unknown Pipedrive organization field",
    ),
    "Pipedrive field parts": (
        B,
        {
            "organization_company_yaml": FIELD_MAP.format(
                rows="  - {planhat: web, pipedrive: name.SECRET, direction: receive}"
            )
        },
        "only an address field has parts",
    ),
    "unknown field map object": (
        B,
        {"organization_company_yaml": "pipedrive_object: SECRET\nplanhat_object: company\n"},
        "unknown pipedrive_object",
    ),
    "unknown conversion": (
        B,
        {
            "organization_company_yaml": FIELD_MAP.format(
                rows="  - {planhat: web, pipedrive: website, direction: receive, convert: SECRET}"
            )
        },
        "unknown convert",
    ),
    "unknown key in a rule": (
        B,
        {
            "organization_company_yaml": FIELD_MAP.format(
                rows="  - {planhat: web, pipedrive: website, direction: receive, SECRET: 1}"
            )
        },
        "unknown key",
    ),
    "rules not a list": (
        B,
        {
            "organization_company_yaml": FIELD_MAP.format(rows="  SECRET").replace(
                "fields:\n", "fields:"
            )
        },
        "fields must be a list",
    ),
    "two rules write one Planhat field": (
        B,
        {
            "custom_matches_yaml": CUSTOM_MATCHES.format(
                rows="  - {type: custom, planhat_object: license, planhat_field: SECRET, "
                "pipedrive_field: Tier, direction: receive}\n"
                "  - {type: custom, planhat_object: license, planhat_field: SECRET, "
                "pipedrive_field: Modules, direction: receive}"
            )
        },
        "two rules write Planhat license field",
    ),
    "unknown Planhat attribute in a custom match": (
        B,
        {
            "custom_matches_yaml": CUSTOM_MATCHES.format(
                rows="  - {type: attribute, planhat_object: company, planhat_field: SECRET, "
                "pipedrive_field: Tier, direction: receive}"
            )
        },
        "unknown Planhat company field",
    ),
    "unknown custom match type and object": (
        B,
        {
            "custom_matches_yaml": CUSTOM_MATCHES.format(
                rows="  - {type: SECRET, planhat_object: SECRET, planhat_field: x, "
                "pipedrive_field: y, direction: SECRET}"
            )
        },
        "unknown type",
    ),
}


@pytest.mark.parametrize("secret", [HEX_TOKEN, MIXED_TOKEN], ids=["hex", "mixed"])
@pytest.mark.parametrize("case", list(ERROR_KINDS))
def test_no_settings_error_ever_contains_a_planted_secret(
    tmp_path: Path, case: str, secret: str
) -> None:
    integration, files, fragment = ERROR_KINDS[case]
    plant = secret if SHORT_PASSWORD not in integration else SHORT_PASSWORD
    d = write_settings(
        tmp_path,
        integration.replace("SECRET", secret),
        **{name: text.replace("SECRET", secret) for name, text in files.items()},
    )
    error = _error(d)
    assert any(fragment in m for m in error.messages), error.messages  # the case's own error
    assert all(isinstance(p.location, Location) for p in error.problems)  # still located
    assert plant not in str(error)
    assert all(plant not in m for m in error.messages)
    assert plant.lower() not in str(error).lower()


def test_a_field_key_written_as_a_field_key_is_still_shown(tmp_path: Path) -> None:
    """40 hex digits are also how Pipedrive custom-field keys look: where a field key belongs
    (and nowhere else in the files) a message may name it."""
    key = "0123456789abcdef0123456789abcdef01234567"
    rows = (
        f"  - {{planhat: web, pipedrive: '{key}', direction: send}}\n"
        f"  - {{planhat: name, pipedrive: '{key}', direction: send}}"
    )
    d = write_settings(
        tmp_path,
        B + "organizations:\n  direction: both\n",
        organization_company_yaml=FIELD_MAP.format(rows=rows),
    )
    messages = _error(d).messages
    assert any(f"field '{key}'" in m for m in messages), messages


def test_resolve_secret_never_repeats_a_secret_given_as_a_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where = Location("integration.yaml", 5, 16)
    monkeypatch.delenv(HEX_TOKEN, raising=False)
    with pytest.raises(SettingsError) as caught:
        resolve_secret(HEX_TOKEN, None, "Pipedrive API token", where)
    assert HEX_TOKEN not in str(caught.value)
    assert str(caught.value).startswith("integration.yaml:5:16: the environment variable name")

    from prefect.blocks.system import Secret

    def unreachable(name: str) -> None:
        raise ValueError(f"no block {name}")

    monkeypatch.setattr(Secret, "load", unreachable)
    with pytest.raises(SettingsError) as caught:
        resolve_secret(None, HEX_TOKEN, "Pipedrive API token", where)
    assert HEX_TOKEN not in str(caught.value)
    assert "could not be loaded (ValueError)" in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        resolve_secret(None, "pipedrive-api-token", "Pipedrive API token", where)
    assert "'pipedrive-api-token' could not be loaded" in str(caught.value)  # names are shown
