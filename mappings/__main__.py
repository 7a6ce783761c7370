"""`python -m mappings validate`: check the settings against the accounts and print what would
be synced, without syncing (nothing is written anywhere).

    python -m mappings validate                       # $PDSYNC_SETTINGS_DIR or mappings/
    python -m mappings validate --settings DIR        # another settings directory
    python -m mappings validate --offline             # the files only, no account calls
    python -m mappings validate --sandbox             # mappings/sandbox/ against an in-process
                                                      # sandbox (demo data set), nothing to run

Exit status: 0 valid; 1 invalid (each problem printed as file:line:column: message, on stderr);
2 usage error. Part of the CLI to come (issue 6); a module entry point until then.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from clients import ApiError, PipedriveClient
from mappings.account import connection_problems, fetch_account, open_pipedrive, open_planhat
from mappings.errors import Problem, SettingsError
from mappings.resolve import Mappings, compile_mappings
from mappings.schema import PAIRS
from mappings.settings import (
    CUSTOM_MATCHES_FILE,
    SANDBOX_DIR,
    Settings,
    default_settings_dir,
    load_settings,
    token_location,
)

__all__ = ["describe", "main", "with_connection"]


def with_connection(settings: Settings, *, pipedrive_url: str, planhat_url: str) -> Settings:
    """The same settings pointed at other service URLs (the in-process sandbox)."""
    conn = settings.integration.connection
    connection = conn.model_copy(
        update={
            "pipedrive": conn.pipedrive.model_copy(update={"company_url": pipedrive_url}),
            "planhat": conn.planhat.model_copy(update={"base_url": planhat_url}),
        }
    )
    integration = settings.integration.model_copy(update={"connection": connection})
    return dataclasses.replace(settings, integration=integration)


_WAYS = {"receive": "Pipedrive → Planhat", "send": "Planhat → Pipedrive", "both": "both ways",
         "none": "off: nothing fetched"}  # fmt: skip


def describe(mappings: Mappings, counts: dict[int, int] | None = None) -> str:
    """What the settings make the sync do, in words (the validate command's report)."""
    s = mappings.settings
    integ = s.integration
    conn = integ.connection
    lines = [f"Settings: {s.directory}"]
    for part, file in s.files.items():
        lines.append(f"  {part:<15} {file}")
    lines += [
        "",
        f"Pipedrive     {conn.pipedrive.company_url}  (token: {conn.pipedrive.source()})",
        f"Planhat       {conn.planhat.base_url}  (token: {conn.planhat.source()})",
    ]
    receiver = conn.receiver
    auth = receiver.basic_auth
    password = (
        f"${auth.password_env}" if auth.password_env else f"Secret '{auth.password_secret_block}'"
    )
    lines.append(
        f"Webhook       {receiver.public_url} (basic auth {auth.username}, password: {password})"
        if receiver.public_url
        else "Webhook       none (connection.receiver.public_url is null): scheduled runs only"
    )
    inc = integ.incremental
    lines += [
        f"Schedule      {inc.cron} ({inc.timezone}); each run re-reads {inc.overlap_seconds} s",
        f"State store   {s.store_url}",
        f"Conflicts     {integ.conflict_policy} (for fields synced both ways)",
        f"Dry run       {'yes: nothing will be written' if integ.dry_run else 'no'}",
        "",
        "Sections",
    ]
    for section, direction in mappings.directions.items():
        extra = ""
        if section == "organizations":
            extra = (
                "every organization"
                if mappings.sync_all_organizations
                else "organizations of the synced deals only"
            )
        elif section == "deals":
            names = ", ".join(
                f"{mappings.pipeline_names.get(i, i)} (id {i})"
                for i in sorted(mappings.pipeline_ids)
            )
            extra = f"won deals in: {names or 'no pipeline'}"
        elif section == "notes":
            extra = f"notes on: {', '.join(sorted(mappings.notes_scope))}"
        lines.append(f"  {section:<14} {direction:<8} {_WAYS[direction]:<22} {extra}".rstrip())
    lic = mappings.license
    template = integ.license.product
    lines += [
        "",
        f"Licenses      product {template!r}, from {lic.start_label}, {lic.length_months} "
        "months, fixed period",
    ]
    for obj, pair in PAIRS.items():
        rules = mappings.rules.get(obj, ())
        lines += ["", f"{pair.pipedrive.capitalize()} ⇄ {pair.planhat_title} "
                      f"({s.files.get(obj)}, {CUSTOM_MATCHES_FILE})"]  # fmt: skip
        if not rules:
            lines.append("  (no field is synced)")
        for rule in rules:
            kind = rule.converter.name
            origin = "  [custom match]" if rule.origin == "custom match" else ""
            lines.append(f"  {rule.key:<34} {rule.arrow} {rule.pipedrive_label}  ({kind}){origin}")
    users = mappings.users
    lines += [
        "",
        f"Users         {len(users.planhat_of)} of {len(users.pipedrive_users)} Pipedrive users "
        "have a Planhat team member with the same email",
    ]
    for user in users.unmatched_pipedrive:
        lines.append(
            f"  no match: {user.get('name')} <{user.get('email')}> (owner fields left empty)"
        )
    if counts is not None:
        total = sum(counts.values())
        per = ", ".join(
            f"{mappings.pipeline_names.get(i, i)}: {n}" for i, n in sorted(counts.items())
        )
        lines += ["", f"Would sync    {total} won deals as licenses ({per or 'none'})"]
    return "\n".join(lines)


def _count_won(pipedrive: PipedriveClient, mappings: Mappings) -> dict[int, int]:
    counts = {}
    for pipeline_id in sorted(mappings.pipeline_ids):
        counts[pipeline_id] = sum(
            1 for deal in pipedrive.iter_deals(status="won", pipeline_id=pipeline_id)
            if not deal.get("is_deleted")
        )  # fmt: skip
    return counts


def _validate(settings: Settings, out: TextIO, count: bool) -> int:
    pipedrive = planhat = None
    local = connection_problems(settings)
    if local["pipedrive"] or local["planhat"]:
        raise SettingsError([*local["pipedrive"], *local["planhat"]])
    try:
        pipedrive = open_pipedrive(settings)
        planhat = open_planhat(settings)
        service = "pipedrive"
        try:
            pipedrive.check_connection()
            service = "planhat"
            account = fetch_account(pipedrive, planhat)
        except ApiError as exc:
            where = token_location(settings, service)
            raise SettingsError(
                [Problem(where, f"{service.capitalize()} refused: {exc}")]
            ) from None
        mappings = compile_mappings(settings, account)
        counts = _count_won(pipedrive, mappings) if count else None
    finally:
        for client in (pipedrive, planhat):
            if client is not None:
                client.close()
    out.write(describe(mappings, counts) + "\n")
    for warning in mappings.problems:
        out.write(f"note: {warning}\n")
    out.write("\nValid: the settings load and resolve against both accounts. Nothing was synced.\n")
    return 0


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="python -m mappings", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate", help="check the settings against the accounts, sync nothing")
    check.add_argument("--settings", metavar="DIR", help="the settings directory")
    check.add_argument("--offline", action="store_true", help="check the files only")
    check.add_argument(
        "--sandbox",
        action="store_true",
        help="start a sandbox (demo data) in this process and check mappings/sandbox/ against it",
    )
    check.add_argument("--no-count", action="store_true", help="do not count the won deals")
    args = parser.parse_args(argv)

    directory = args.settings or (SANDBOX_DIR if args.sandbox else default_settings_dir())
    try:
        settings = load_settings(directory)
        if args.offline:
            out.write(
                f"The files in {settings.directory} are valid (not checked against the accounts).\n"
            )
            return 0
        if not args.sandbox:
            return _validate(settings, out, count=not args.no_count)
        from sandbox.runner import Sandbox

        with Sandbox("demo") as sb:
            conn = settings.integration.connection
            for name, value in ((conn.pipedrive.token_env, sb.pipedrive_token),
                                (conn.planhat.token_env, sb.planhat_token)):  # fmt: skip
                if name:
                    os.environ.setdefault(name, value)
            out.write(f"Sandbox (demo data) at {sb.pipedrive_url} and {sb.planhat_url}\n\n")
            local = with_connection(
                settings, pipedrive_url=sb.pipedrive_url, planhat_url=sb.planhat_url
            )
            return _validate(local, out, count=not args.no_count)
    except SettingsError as exc:
        for problem in exc.problems:
            err.write(f"{problem}\n")
        count = len(exc.problems)
        err.write(
            f"\nInvalid settings ({count} problem{'s' if count != 1 else ''}): nothing can run "
            "until they are fixed.\n"
        )
        return 1
    except ApiError as exc:
        err.write(f"{exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
