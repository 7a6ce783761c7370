"""`python -m mappings validate`: check the settings against the accounts and print what would
be synced, without syncing (nothing is written anywhere).

    python -m mappings validate                       # $PDSYNC_SETTINGS_DIR or mappings/
    python -m mappings validate --settings DIR        # another settings directory
    python -m mappings validate --offline             # the files only, no account calls
    python -m mappings validate --sandbox             # deployments/sandbox_settings/ against an
                                                      # in-process sandbox (demo data set)

Exit status: 0 valid; 1 invalid (each problem printed as file:line:column: message, on stderr);
2 usage error. The same check as `pdsync check` (one implementation,
`deployments.commands.check.run_check`); this entry point only parses its arguments, prints
and exits its own way. `mappings` itself does no I/O: the check, which calls both accounts,
lives with the commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

__all__ = ["main"]


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
        help="start a sandbox (demo data) in this process and check "
        "deployments/sandbox_settings/ against it",
    )
    check.add_argument("--no-count", action="store_true", help="do not count the won deals")
    args = parser.parse_args(argv)

    # The entry point calls out to the check (I/O: both accounts, the sandbox); nothing in
    # `mappings` imports it.
    from clients import ApiError
    from deployments.commands.check import run_check
    from mappings.errors import SettingsError

    def write(text: str) -> None:
        out.write(text + "\n")

    try:
        run_check(
            args.settings,
            offline=args.offline,
            sandbox=args.sandbox,
            count=not args.no_count,
            write=write,
            refusal_as_problem=True,
        )
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
