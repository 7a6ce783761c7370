"""The product's log lines in each flow run's log (the Prefect UI's Logs tab, the API's /logs).

Prefect sends only its own loggers (`prefect.flow_runs`, `prefect.task_runs`) to the API. The
product logs with the standard `logging` module on the loggers of its packages (`clients`,
`tasks`, `flows`, `store`, `mappings`, each module `logging.getLogger(__name__)`), so
`attach_run_logging()` gives those loggers a handler that sends their lines to the run they
belong to, at INFO unless a level is set (`PDSYNC_LOG_LEVEL=DEBUG` also sends the clients'
per-request lines).

It runs when the `flows` package is imported, which every way of starting a flow does: a
process worker or `prefect.serve` loading an entrypoint of prefect.yaml (`flows/....py`, which
imports `flows.common`), `pdsync serve`, and the `pdsync` commands that run flows in their own
process. Nothing to configure (`PREFECT_LOGGING_EXTRA_LOGGERS` is not needed, and setting it
too does not send a line twice).

A line logged outside a flow or task run (the receiver, `pdsync check`, a test calling `.fn`)
is not sent anywhere by this handler: Prefect's own API handler would warn about each one.
Every line sent is scrubbed of credentials first: the tokens the run's clients use
(`register_secrets`), the value of every environment variable whose name says it holds a
secret (`..._TOKEN`, `..._PASSWORD`, `..._SECRET`, `..._API_KEY`), and `api_token=` query
values or `Authorization` header values written out in a message.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable

from prefect.logging.handlers import APILogHandler

#: the packages whose loggers reach the run's log
PRODUCT_LOGGERS = ("clients", "tasks", "flows", "store", "mappings")
LEVEL_ENV = "PDSYNC_LOG_LEVEL"
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8

_SECRET_ENV = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|API_KEY|APIKEY)$", re.IGNORECASE)
_INLINE_SECRETS = (
    re.compile(r"(?i)(api_token=)[^&\s\"']+"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:basic|bearer)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(x-api-token[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(://[^/\s:@]+:)[^@\s/]+(@)"),
)
_registered: set[str] = set()
_lock = threading.Lock()


def register_secrets(*values: str | None) -> None:
    """Scrub these values (e.g. the tokens a run's clients use) from every line sent."""
    with _lock:
        _registered.update(v for v in values if v and len(v) >= MIN_SECRET_LENGTH)


def _env_secrets() -> Iterable[str]:
    for name, value in list(os.environ.items()):
        value = value.strip()
        if len(value) >= MIN_SECRET_LENGTH and _SECRET_ENV.search(name):
            yield value


def redact(text: str) -> str:
    """`text` without any known secret or inline credential."""
    with _lock:
        secrets = set(_registered)
    secrets.update(_env_secrets())
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leftovers
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _INLINE_SECRETS:
        if pattern.groups == 2:
            text = pattern.sub(rf"\g<1>{REDACTED}\g<2>", text)
        else:
            text = pattern.sub(rf"\g<1>{REDACTED}", text)
    return text


class RunLogHandler(APILogHandler):
    """Prefect's API log handler for the product's loggers: only lines logged inside a flow or
    task run are sent (to that run), each one scrubbed of credentials."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "flow_run_id", None) is None and not _in_a_run():
            return
        super().emit(record)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _in_a_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def _level() -> int:
    name = os.environ.get(LEVEL_ENV, "").strip().upper()
    level = logging.getLevelName(name) if name else logging.INFO
    return level if isinstance(level, int) else logging.INFO


def attach_run_logging() -> None:
    """Send the product loggers' lines to the run's log (idempotent). A logger that already
    sends to the API (`PREFECT_LOGGING_EXTRA_LOGGERS`) keeps its handler; a logger whose level
    is set (by the user's logging configuration) keeps that level."""
    level = _level()
    for name in PRODUCT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)
        if not any(isinstance(h, APILogHandler) for h in logger.handlers):
            logger.addHandler(RunLogHandler())


__all__ = [
    "PRODUCT_LOGGERS",
    "RunLogHandler",
    "attach_run_logging",
    "redact",
    "register_secrets",
]
