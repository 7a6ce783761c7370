"""What every `pdsync` command shares: the --settings and --json options, the settings checked
before a flow starts, Prefect's environment for in-process runs, and errors → exit status
(0 done; 1 a run or connection failure; 2 a usage or settings error)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from deployments.render import err

__all__ = [
    "EPHEMERAL_STARTUP_TIMEOUT_S",
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "JsonOut",
    "SettingsDir",
    "errors_to_exit_status",
    "fail",
    "preflight",
    "prefect_environment",
    "print_json",
    "settings_arg",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

SettingsDir = Annotated[
    Path | None,
    typer.Option(
        "--settings",
        metavar="DIR",
        help="The settings directory (integration.yaml and the field maps). "
        "Default: $PDSYNC_SETTINGS_DIR, else mappings/.",
        show_default=False,
    ),
]
JsonOut = Annotated[
    bool, typer.Option("--json", help="Print the result as one JSON object (for scripts).")
]


# -- errors → exit status ---------------------------------------------------------------------


def _settings_problems(exc: Any) -> NoReturn:
    for problem in exc.problems:
        err.print(str(problem), markup=False)
    n = len(exc.problems)
    err.print(
        f"\nInvalid settings ({n} problem{'s' if n != 1 else ''}): nothing ran. Fix them and "
        "run again (pdsync check shows the settings as understood).",
        markup=False,
    )
    raise typer.Exit(EXIT_USAGE)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    err.print(f"pdsync: {message}", markup=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def errors_to_exit_status() -> Iterator[None]:
    """Settings errors → 2 with the located messages; run and connection errors → 1 with the
    typed error's message; Ctrl-C → 130."""
    from clients import ApiError, InvalidSettingError
    from mappings.errors import SettingsError

    try:
        yield
    except typer.Exit:
        raise
    except SettingsError as exc:
        _settings_problems(exc)
    except InvalidSettingError as exc:
        fail(str(exc), EXIT_USAGE)
    except ApiError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("pdsync: interrupted", markup=False)
        raise typer.Exit(130) from None
    except Exception as exc:  # noqa: BLE001 - a run failure: its own message, no traceback
        if os.environ.get("PDSYNC_DEBUG"):
            raise
        name = type(exc).__name__
        text = str(exc) or name
        if name in _PLAIN_ERRORS:
            fail(text)
        hint = "" if os.environ.get("PDSYNC_VERBOSE") else " (PDSYNC_VERBOSE=1 shows the run's log)"
        fail(f"{name}: {text}{hint}")


_PLAIN_ERRORS = {"LookupError", "ServeError", "StoreUnavailableError", "StoreUrlError"}


def preflight(settings_dir: str | None, *, resolve: bool = False) -> None:
    """What can be checked before a flow starts, checked here, so that a command failing on its
    settings writes nothing anywhere (no Prefect flow run, no state store): the files, the URLs
    and that the tokens are set and well-formed; with `resolve`, also every pipeline and field
    name against both accounts (the mappings compiled, as `pdsync check` does; reads only).
    Raises `SettingsError` (exit 2) or the clients' errors (a refused token: exit 1)."""
    from mappings.errors import SettingsError
    from mappings.loading import load_settings
    from tasks.account import connection_problems

    settings = load_settings(settings_dir)
    problems = connection_problems(settings)
    if problems["pipedrive"] or problems["planhat"]:
        raise SettingsError([*problems["pipedrive"], *problems["planhat"]])
    if resolve:
        from mappings.resolve import compile_mappings
        from tasks.account import fetch_account, hand_over, open_pipedrive, open_planhat

        with open_pipedrive(settings) as pipedrive, open_planhat(settings) as planhat:
            account = fetch_account(pipedrive, planhat)
            compile_mappings(settings, account)
            hand_over(pipedrive, planhat, account)  # the run this command starts reads it once


def settings_arg(settings: Path | None) -> str | None:
    """The settings directory as the flows take it (absolute), checked to exist."""
    if settings is None:
        return None
    if not settings.is_dir():
        fail(f"--settings {settings}: no such directory", EXIT_USAGE)
    return str(settings.absolute())


#: seconds Prefect waits for its temporary local API (PREFECT_API_URL unset) to answer: a fresh
#: PREFECT_HOME creates and migrates its database first, which outlasts Prefect's default 20 s
#: on a small or busy machine
EPHEMERAL_STARTUP_TIMEOUT_S = 120


def prefect_environment() -> None:
    """Prefect's settings for flows run in this process (set before Prefect is imported; any
    the user set wins). No telemetry (server analytics, the client's usage data, their notice)
    and, when PREFECT_API_URL is unset, a temporary local API given time to create its
    database. In-process flow runs keep logging to the Prefect API (the UI shows every line),
    but the terminal shows only this command's own output: a failure is reported once, by its
    message, not also as the engine's traceback (PDSYNC_VERBOSE=1 shows the log lines here
    too)."""
    if not os.environ.get("PDSYNC_VERBOSE"):
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EPHEMERAL_STARTUP_TIMEOUT_S)
    )


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, sort_keys=True) + "\n")
