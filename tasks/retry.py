"""When a task is worth retrying: only transient failures (the service unavailable after the
client's own bounded retries, or a burst-limit 429 that outlasted them). An authentication or
permission error, bad input or a spent daily budget fails at once: retrying cannot help, and the
error already says what to do."""

from __future__ import annotations

from typing import Any

from clients import RateLimitedError, UnavailableError


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, RateLimitedError):
        return not exc.daily_budget_spent
    return isinstance(exc, UnavailableError)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """A Prefect `retry_condition_fn`: retry the task only after a transient failure."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - classify whatever the task raised
        return is_transient(exc)
    return False
