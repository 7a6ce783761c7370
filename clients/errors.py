"""Typed errors of the Pipedrive and Planhat clients.

Every message says what happened and what the user can do about it, and none contains a token:
the HTTP layer builds them from the method, the path (never the query string) and the service's
own error text, with the client's secrets scrubbed out. No error keeps a reference to the httpx
request or response (whose headers carry the token).

    ClientError
    ├── InvalidSettingError (also a ValueError)  bad URL or token, found before any network call
    └── ApiError                                 the service answered with an error, or not at all
        ├── AuthError            401: the token is wrong, deleted, or its user was removed
        ├── ForbiddenError       403: no permission, or a plan limit
        │   └── BlockedError     403 HTML page from Cloudflare: too many calls despite 429s
        ├── NotFoundError        404
        ├── GoneError            410
        ├── BadRequestError      400, 422 and other 4xx: the service's own message
        ├── RateLimitedError     429 that persisted past the retry budget, or a spent daily budget
        └── UnavailableError     5xx, timeouts and dropped connections that retries did not cure
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the clients raise."""


class InvalidSettingError(ClientError, ValueError):
    """A connection setting (URL or token) is malformed; nothing was sent anywhere."""


class ApiError(ClientError):
    """An API call failed. `service`, `status` (None when there was no answer), `method` and
    `path` (without query) say which call; `detail` is the service's own error text, if any."""

    def __init__(
        self,
        message: str,
        *,
        service: str,
        method: str,
        path: str,
        status: int | None = None,
        detail: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.service = service
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        self.attempts = attempts

    def __reduce__(self) -> tuple[object, ...]:  # picklable (Prefect may persist exceptions)
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[ApiError], message: str, state: dict[str, object]) -> ApiError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class AuthError(ApiError):
    """401: the service does not accept the token."""


class ForbiddenError(ApiError):
    """403: the token's user may not do this (or a plan limit was reached)."""


class BlockedError(ForbiddenError):
    """403 with Cloudflare's HTML page: Pipedrive's firewall blocks this token for a while."""


class NotFoundError(ApiError):
    """404: no such record (or no such path)."""


class GoneError(ApiError):
    """410: the resource was removed for good."""


class BadRequestError(ApiError):
    """400, 422 and other client errors: the service's message says what it refused."""


class RateLimitedError(ApiError):
    """429 that did not clear within the retry budget, or the daily budget is spent."""

    def __init__(
        self,
        message: str,
        *,
        service: str,
        method: str,
        path: str,
        status: int | None = None,
        detail: str | None = None,
        attempts: int = 1,
        daily_budget_spent: bool = False,
        waited_s: float = 0.0,
    ) -> None:
        super().__init__(
            message,
            service=service,
            method=method,
            path=path,
            status=status,
            detail=detail,
            attempts=attempts,
        )
        self.daily_budget_spent = daily_budget_spent
        self.waited_s = waited_s


class UnavailableError(ApiError):
    """5xx, a timeout or a dropped connection, still failing after the allowed retries (or not
    retried because the request was a create that may already have reached the server)."""


__all__ = [
    "ApiError",
    "AuthError",
    "BadRequestError",
    "BlockedError",
    "ClientError",
    "ForbiddenError",
    "GoneError",
    "InvalidSettingError",
    "NotFoundError",
    "RateLimitedError",
    "UnavailableError",
]
