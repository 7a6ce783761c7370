"""Every kind of settings mistake gives its exact, located message: file, line, column, what
was found and what is valid. Nothing runs on an invalid configuration (the loader raises)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mappings_support import BASE_INTEGRATION, account, field_code, write_settings

from deployments.sandbox_settings import SANDBOX_DIR
from mappings.errors import SettingsError
from mappings.loading import load_settings
from mappings.models import DEFAULT_DIR
from mappings.resolve import compile_mappings
from tasks.credentials import pipedrive_token

SANDBOX_TOKEN = "8fe44a9e0fcd3df5839737b228d3ba669c6a8bb8"


def problems(directory: Path) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(directory)
    return caught.value.messages


def compile_problems(directory: Path, dataset: str = "small") -> list[str]:
    settings = load_settings(directory)
    with pytest.raises(SettingsError) as caught:
        compile_mappings(settings, account(dataset))
    return caught.value.messages


def test_the_shipped_settings_and_the_sandbox_settings_load() -> None:
    shipped = load_settings(DEFAULT_DIR)
    assert shipped.integration.contacts.direction == "receive"
    assert shipped.integration.license.length_months == 12
    assert shipped.integration.deals.pipelines == []
    sandbox = load_settings(SANDBOX_DIR)
    assert sandbox.integration.deals.pipelines == ["New business", "Renewals & upsell"]
    assert sandbox.files["custom_matches"].endswith("sandbox_settings/custom_matches.yaml")
    assert sandbox.files["company"].endswith("mappings/organization_company.yaml")


def test_unknown_key(tmp_path: Path) -> None:
    d = write_settings(tmp_path, BASE_INTEGRATION + "organizations:\n  sync_al: true\n")
    assert problems(d) == [
        f"{d}/integration.yaml:12:3: unknown key 'sync_al' in organizations (did you mean "
        "'sync_all'?); valid keys: direction, sync_all"
    ]


def test_unknown_key_at_the_top_level_and_in_a_rule(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION + "dryrun: true\n",
        note_note_yaml="""\
        pipedrive_object: note
        planhat_object: note
        fields:
          - {planhat: subject, pipedrive: content, direction: receive, conver: subject}
        """,
    )
    assert problems(d) == [
        f"{d}/integration.yaml:11:1: unknown key 'dryrun' in the top level (did you mean "
        "'dry_run'?); valid keys: version, connection, organizations, contacts, deals, notes, "
        "dry_run, license, conflict_policy, incremental, store",
        f"{d}/note_note.yaml:4:64: unknown key 'conver' in fields #1 (did you mean 'convert'?); "
        "valid keys: planhat, pipedrive, direction, convert",
    ]


def test_unknown_direction(tmp_path: Path) -> None:
    d = write_settings(tmp_path, BASE_INTEGRATION + "contacts:\n  direction: recieve\n")
    assert problems(d) == [
        f"{d}/integration.yaml:12:14: unknown direction 'recieve' in contacts (did you mean "
        "'receive'?); valid: 'receive', 'send', 'both' or 'none'"
    ]


def test_a_yaml_boolean_where_a_direction_belongs_is_quoted_as_typed(tmp_path: Path) -> None:
    d = write_settings(tmp_path, BASE_INTEGRATION + "notes:\n  direction: no\n")
    assert problems(d) == [
        f"{d}/integration.yaml:12:14: unknown direction 'no' in notes; valid: 'receive', "
        "'send', 'both' or 'none'"
    ]


def test_unknown_object(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        custom_matches_yaml="""\
        custom_matches:
          - type: custom
            planhat_object: companies
            planhat_field: Tier
            pipedrive_field: Industry segment
            direction: receive
        """,
    )
    assert problems(d) == [
        f"{d}/custom_matches.yaml:3:21: unknown planhat_object 'companies' in custom_matches #1 "
        "(did you mean 'company'?); valid: 'company', 'enduser', 'license' or 'note'"
    ]


def test_unknown_planhat_and_pipedrive_fields(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        organization_company_yaml="""\
        pipedrive_object: organization
        planhat_object: company
        fields:
          - {planhat: nmae, pipedrive: name, direction: both}
          - {planhat: web, pipedrive: webiste, direction: receive}
        """,
    )
    assert problems(d) == [
        f"{d}/organization_company.yaml:4:15: unknown Planhat company field 'nmae' (did you mean "
        "'name'?); valid: address, arr, city, coOwner, country, createdAt, customerFrom, "
        "customerTo, description, domains, externalId, h, mrr, name, owner, phase, "
        "phonePrimary, renewalDate, status, tags, updatedAt, web, zip (a Planhat custom field "
        "is written 'custom.<name>' in a field map, or 'type: custom' in a custom match)",
        f"{d}/organization_company.yaml:5:31: unknown Pipedrive organization field 'webiste' "
        "(did you mean 'website'?); valid: add_time, address, annual_revenue, employee_count, "
        "id, industry, is_deleted, label_ids, linkedin, name, owner_id, update_time, "
        "visible_to, website, or a custom field's 40-character key (custom fields by label go "
        "in custom_matches.yaml)",
    ]


def test_a_field_the_sync_sets_itself_cannot_be_mapped(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        custom_matches_yaml="""\
        custom_matches:
          - {type: attribute, planhat_object: license, planhat_field: fromDate,
             pipedrive_field: Contract start, direction: receive}
        """,
    )
    assert problems(d) == [
        f"{d}/custom_matches.yaml:2:63: license field 'fromDate' cannot be mapped: it comes "
        "from `license.start_date` in integration.yaml"
    ]


def test_a_computed_planhat_field_can_only_be_sent(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        custom_matches_yaml="""\
        custom_matches:
          - {type: attribute, planhat_object: company, planhat_field: mrr,
             pipedrive_field: Annual budget, direction: both}
        """,
    )
    assert problems(d) == [
        f"{d}/custom_matches.yaml:2:5: Planhat computes company field 'mrr' itself (the sum of "
        "the company's licenses); it can only be sent to Pipedrive (direction: send), found "
        "direction 'both'"
    ]


def test_two_rules_writing_one_planhat_field(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        custom_matches_yaml="""\
        custom_matches:
          - {type: attribute, planhat_object: company, planhat_field: name,
             pipedrive_field: Account ID, direction: receive}
          - {type: custom, planhat_object: license, planhat_field: Tier,
             pipedrive_field: Contract tier, direction: receive}
          - {type: custom, planhat_object: license, planhat_field: Tier,
             pipedrive_field: Modules, direction: receive}
        """,
    )
    assert problems(d) == [
        f"{d}/custom_matches.yaml:2:63: two rules write Planhat company field 'name': this "
        "custom match and the field map at mappings/organization_company.yaml:16:5; keep one",
        f"{d}/custom_matches.yaml:6:60: two rules write Planhat license field 'custom.Tier': "
        f"this custom match and the custom match at {d}/custom_matches.yaml:4:5; keep one",
    ]


def test_two_rules_writing_one_pipedrive_field_are_found_through_labels(tmp_path: Path) -> None:
    key = field_code("organization", "Industry segment")
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION + "organizations:\n  direction: both\n",
        custom_matches_yaml=f"""\
        custom_matches:
          - {{type: custom, planhat_object: company, planhat_field: Segment,
             pipedrive_field: Industry segment, direction: both}}
          - {{type: custom, planhat_object: company, planhat_field: Vertical,
             pipedrive_field: "{key}", direction: send}}
        """,
    )
    assert compile_problems(d) == [
        f"{d}/custom_matches.yaml:5:23: two rules write Pipedrive organization field 'Industry "
        f"segment': this custom match and the custom match at {d}/custom_matches.yaml:2:5; "
        "keep one"
    ]


def test_unknown_pipeline_name(tmp_path: Path) -> None:
    d = write_settings(tmp_path, BASE_INTEGRATION.replace("[New business]", "[New Busines, 9]"))
    assert compile_problems(d) == [
        f"{d}/integration.yaml:10:15: deals.pipelines: no pipeline is named 'New Busines' (did "
        "you mean 'New business'?); this account's pipelines: 'New business' (id 1), "
        "'Renewals & upsell' (id 2)",
        f"{d}/integration.yaml:10:28: deals.pipelines: no pipeline has the id 9; this "
        "account's pipelines: 'New business' (id 1), 'Renewals & upsell' (id 2)",
    ]


def test_ambiguous_pipeline_name(tmp_path: Path) -> None:
    from mappings.resolve import Account

    d = write_settings(tmp_path)
    base = account()
    twin = {**base.pipelines[1], "id": 7, "name": "New business"}
    with pytest.raises(SettingsError) as caught:
        compile_mappings(
            load_settings(d),
            Account(**{**base.__dict__, "pipelines": [*base.pipelines, twin]}),
        )
    assert caught.value.messages == [
        f"{d}/integration.yaml:10:15: deals.pipelines: 2 pipelines are named 'New business' "
        "(ids 1, 7); write the id of the one you mean instead"
    ]


def test_empty_pipelines_list_the_accounts_pipelines(tmp_path: Path) -> None:
    d = write_settings(tmp_path, BASE_INTEGRATION.replace("[New business]", "[]"))
    assert compile_problems(d) == [
        f"{d}/integration.yaml:10:14: deals.pipelines is empty: no won deal would become a "
        "license. Name the pipelines to sync (by name or id); this account's pipelines: "
        "'New business' (id 1), 'Renewals & upsell' (id 2)"
    ]


def test_unknown_custom_field_label(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        custom_matches_yaml="""\
        custom_matches:
          - {type: custom, planhat_object: license, planhat_field: Tier,
             pipedrive_field: Contract teir, direction: receive}
        """,
    )
    (message,) = compile_problems(d)
    assert message.startswith(
        f"{d}/custom_matches.yaml:3:23: custom match: no Pipedrive deal field is labelled "
        "'Contract teir' (did you mean 'Contract tier'?); this account's deal fields: "
        "'Billing contact phone', 'Contact person', 'Contract notes', 'Contract start', "
        "'Contract tier', "
    )


def test_ambiguous_custom_field_label(tmp_path: Path) -> None:
    from mappings.resolve import Account

    d = write_settings(
        tmp_path,
        custom_matches_yaml="""\
        custom_matches:
          - {type: custom, planhat_object: license, planhat_field: Tier,
             pipedrive_field: Contract tier, direction: receive}
        """,
    )
    base = account()
    twin = {
        **next(f for f in base.deal_fields if f["field_name"] == "Contract tier"),
        "field_code": "0123456789abcdef0123456789abcdef01234567",
        "field_type": "varchar",
        "options": None,
    }
    with pytest.raises(SettingsError) as caught:
        compile_mappings(
            load_settings(d),
            Account(**{**base.__dict__, "deal_fields": [*base.deal_fields, twin]}),
        )
    key = field_code("deal", "Contract tier")
    assert caught.value.messages == [
        f"{d}/custom_matches.yaml:3:23: custom match: 2 Pipedrive deal fields are labelled "
        f"'Contract tier' ({key} (enum), 0123456789abcdef0123456789abcdef01234567 (varchar)); "
        "write the 40-character key of the one you mean instead"
    ]


def test_unknown_custom_field_key(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        custom_matches_yaml="""\
        custom_matches:
          - {type: custom, planhat_object: enduser, planhat_field: Role,
             pipedrive_field: ffffffffffffffffffffffffffffffffffffffff, direction: receive}
        """,
    )
    assert compile_problems(d) == [
        f"{d}/custom_matches.yaml:3:23: custom match: no person field has the key "
        "ffffffffffffffffffffffffffffffffffffffff"
    ]


def test_a_token_written_in_the_file_is_refused_without_being_shown(tmp_path: Path) -> None:
    integration = BASE_INTEGRATION.replace(
        "    token_env: PIPEDRIVE_API_TOKEN\n", f"    token: {SANDBOX_TOKEN}\n"
    ).replace("    token_env: PLANHAT_API_TOKEN\n", f"    token_env: {SANDBOX_TOKEN}\n")
    d = write_settings(tmp_path, integration)
    messages = problems(d)
    assert messages == [
        f"{d}/integration.yaml:5:5: 'token' in connection.pipedrive: a token or password must "
        "never be written in a settings file (found a value of 40 characters). Put it in an "
        "environment variable and name that variable with 'token_env:' (for the receiver: "
        "'password_env:'), or store it in a Prefect Secret block and name the block with "
        "'secret_block:' ('password_secret_block:')",
        f"{d}/integration.yaml:7:16: connection.planhat.token_env must name an environment "
        "variable; the value given (40 characters, not shown) looks like the token itself — a "
        "token must never be written in a settings file: put the token in an environment "
        "variable and name that variable here (like PIPEDRIVE_API_TOKEN)",
    ]
    assert not any(SANDBOX_TOKEN in m for m in messages)


def test_a_receiver_password_in_the_file_is_refused(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION.replace(
            "  planhat:\n",
            "  receiver:\n    basic_auth: {username: pd, password: hunter2}\n  planhat:\n",
        ),
    )
    messages = problems(d)
    assert messages[0].startswith(
        f"{d}/integration.yaml:7:32: 'password' in connection.receiver.basic_auth: a token or "
        "password must never be written in a settings file (found a value of 7 characters)."
    )
    assert not any("hunter2" in m for m in messages)


def test_a_token_source_must_be_named(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION.replace(
            "    token_env: PLANHAT_API_TOKEN\n", "    base_url: https://api.planhat.com\n"
        ),
    )
    assert problems(d) == [
        f"{d}/integration.yaml:6:3: connection.planhat: say where the token comes from with "
        "exactly one of 'token_env:' (an environment variable name) or 'secret_block:' (a "
        "Prefect Secret block name)"
    ]


def test_a_missing_environment_variable_is_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPEDRIVE_API_TOKEN", raising=False)
    settings = load_settings(write_settings(tmp_path))
    with pytest.raises(SettingsError) as caught:
        pipedrive_token(settings)
    assert caught.value.messages == [
        f"{tmp_path}/integration.yaml:5:16: the environment variable PIPEDRIVE_API_TOKEN is not "
        "set; set it to the Pipedrive API token (e.g. export PIPEDRIVE_API_TOKEN=...) before "
        "running"
    ]
    monkeypatch.setenv("PIPEDRIVE_API_TOKEN", f" {SANDBOX_TOKEN}\n")
    assert pipedrive_token(settings) == SANDBOX_TOKEN


def test_yaml_syntax_error_and_duplicate_key(tmp_path: Path) -> None:
    d = write_settings(tmp_path / "a", BASE_INTEGRATION + "notes: [deal\n")
    assert problems(d) == [
        f"{d}/integration.yaml:12:1: this is not valid YAML: expected ',' or ']', but got "
        "'<stream end>' (while parsing a flow sequence)"
    ]
    d = write_settings(tmp_path / "b", BASE_INTEGRATION + "deals:\n  direction: none\n")
    assert problems(d) == [
        f"{d}/integration.yaml:11:1: key 'deals' appears twice in this mapping (first on line 8)"
    ]


def test_missing_connection(tmp_path: Path) -> None:
    d = write_settings(tmp_path, "version: 1\ndry_run: true\n")
    assert problems(d) == [f"{d}/integration.yaml:1:1: missing key 'connection' in the top level"]


def test_wrong_types_say_what_was_expected(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION.replace("[New business]", "[New business, 1.5]")
        + "dry_run: maybe\nlicense:\n  length_months: 0\n",
    )
    assert problems(d) == [
        f"{d}/integration.yaml:10:29: deals.pipelines #2 must be a pipeline id (a number) or "
        "name (text), found '1.5'",
        f"{d}/integration.yaml:11:10: dry_run must be true or false, found 'maybe'",
        f"{d}/integration.yaml:13:18: license.length_months must be larger, found '0'",
    ]


def test_template_schedule_and_time_zone_mistakes(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION
        + 'license:\n  product: "{title} plan }"\n'
        + 'incremental:\n  cron: "*/15 25 * * *"\n  timezone: Europe/Berln\n',
    )
    assert problems(d) == [
        f"{d}/integration.yaml:12:26: license.product: a lone '}}' in the template "
        "'{title} plan }'; write {{ or }} for a brace, or {field} for a deal field",
        f"{d}/integration.yaml:14:9: incremental.cron: the hour field '25' has '25'; valid: 0-23",
        f"{d}/integration.yaml:15:13: incremental.timezone: unknown time zone 'Europe/Berln'; "
        "use an IANA name such as UTC, Europe/Berlin or America/New_York",
    ]


def test_unknown_template_placeholder_and_start_date(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION + 'license:\n  product: "{title} – {Contract teir}"\n'
        "  start_date: Contract notes\n",
    )
    messages = compile_problems(d)
    assert messages[0].startswith(
        f"{d}/integration.yaml:12:23: license.product: the placeholder {{Contract teir}} names "
        "no deal field: no Pipedrive deal field is labelled 'Contract teir' (did you mean "
        "'Contract tier'?)"
    )
    assert messages[1] == (
        f"{d}/integration.yaml:13:15: license.start_date: the deal field 'Contract notes' is a "
        "text field, not a date; valid: won_time, close_time, add_time, expected_close_date, "
        "first_won_time or a date custom field"
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION + "contacts:\n  direction: sometimes\ndry_run: perhaps\n",
        custom_matches_yaml="""\
        custom_matches:
          - {type: custom, planhat_object: enduser, planhat_field: Role,
             pipedrive_field: Role in buying process, direction: sideways}
          - {type: attribute, planhat_object: enduser, planhat_field: nickname,
             pipedrive_field: Bio, direction: receive}
        """,
    )
    messages = problems(d)
    assert [m.split(": ", 1)[0] for m in messages] == [
        f"{d}/custom_matches.yaml:3:58",
        f"{d}/custom_matches.yaml:4:63",
        f"{d}/integration.yaml:12:14",
        f"{d}/integration.yaml:13:10",
    ]


def test_database_url_from_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    d = write_settings(tmp_path / "settings")
    monkeypatch.delenv("PDSYNC_DATABASE_URL", raising=False)
    assert load_settings(d).store_url == f"sqlite:///{tmp_path.resolve()}/.pdsync/state.db"
    monkeypatch.setenv("PDSYNC_DATABASE_URL", "postgresql+psycopg://sync@db/pdsync")
    assert load_settings(d).store_url == "postgresql+psycopg://sync@db/pdsync"


def test_settings_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = write_settings(tmp_path, BASE_INTEGRATION + "dry_run: true\n")
    monkeypatch.setenv("PDSYNC_SETTINGS_DIR", str(d))
    assert load_settings().integration.dry_run is True
    assert os.environ["PDSYNC_SETTINGS_DIR"] == str(d)


def test_a_conversion_the_field_cannot_make(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        custom_matches_yaml="""\
        custom_matches:
          - {type: custom, planhat_object: license, planhat_field: PO,
             pipedrive_field: PO number, direction: receive, convert: enum}
          - {type: attribute, planhat_object: company, planhat_field: coOwner,
             pipedrive_field: Account ID, direction: receive}
        """,
    )
    assert compile_problems(d) == [
        f"{d}/custom_matches.yaml:2:5: the Pipedrive deal field 'PO number' has no options, so "
        "it cannot convert as enum; leave out convert: or choose an option field",
        f"{d}/custom_matches.yaml:4:5: Planhat company field 'coOwner' takes user values, but the "
        "Pipedrive field 'Account ID' converts as text; choose a matching Pipedrive field, or set "
        "convert:",
    ]


def test_a_field_pipedrive_sets_itself_cannot_be_sent(tmp_path: Path) -> None:
    d = write_settings(
        tmp_path,
        BASE_INTEGRATION + "organizations:\n  direction: both\n",
        custom_matches_yaml="""\
        custom_matches:
          - {type: custom, planhat_object: company, planhat_field: Created,
             pipedrive_field: Organization created, direction: both}
        """,
    )
    assert compile_problems(d) == [
        f"{d}/custom_matches.yaml:2:5: Pipedrive organization field 'Organization created' "
        "cannot be written (Pipedrive or the sync sets it); use direction: receive, found 'both'"
    ]
