"""Shared helpers of the sandbox Pipedrive: times, JSON answers and Pipedrive's error bodies.

Times: v2 speaks RFC 3339 (`2025-01-02T03:04:05Z`), v1 `YYYY-MM-DD HH:MM:SS` (UTC, no zone);
both with seconds precision, as Pipedrive writes them (reference §3.9).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."
GATEWAY_ERROR_INFO = "Please check developers.pipedrive.com"

# Pipedrive's v2 filters take whole-second RFC 3339 only: a fractional second is refused with
# ERR_SCHEMA_VALIDATION_FAILED "not a valid datetime" (observed live by third parties).
_RFC3339_STRICT = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
_RFC3339_LOOSE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$", re.IGNORECASE
)


def now() -> datetime:
    """The current UTC time, to the second (Pipedrive writes seconds precision)."""
    return datetime.now(UTC).replace(microsecond=0)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_time(text: str) -> datetime:
    """Any of the API's time formats (RFC 3339, v1 `YYYY-MM-DD HH:MM:SS`) as an aware UTC time."""
    if not isinstance(text, str) or not _RFC3339_LOOSE.match(text):
        raise ValueError(f"not a valid datetime: {text!r}")
    value = text.replace(" ", "T", 1)
    if value[-1] in "zZ":
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_rfc3339_strict(text: str) -> datetime:
    """A v2 filter time: whole-second RFC 3339 with a zone."""
    if not _RFC3339_STRICT.match(text):
        raise ValueError("not a valid datetime")
    return parse_time(text)


def epoch(text: str | None) -> int:
    """Seconds since the epoch of an API time string (0 for null)."""
    if not text:
        return 0
    return int(parse_time(text).timestamp())


def iso_to_v1(text: str | None) -> str | None:
    """`2025-01-02T03:04:05Z` → `2025-01-02 03:04:05` (None stays None)."""
    if not text:
        return None
    if len(text) == 20 and text[10] == "T" and text[19] == "Z":
        return f"{text[:10]} {text[11:19]}"
    return v1_time(parse_time(text))


def v1_to_iso(text: str | None) -> str | None:
    if not text:
        return None
    if len(text) == 19 and text[10] == " ":
        return f"{text[:10]}T{text[11:]}Z"
    return iso(parse_time(text))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def raw_json_response(payload: bytes, status: int = 200) -> Response:
    return Response(payload, status_code=status, media_type="application/json")


def error_body(status: int, error: str | None = None, **extra: Any) -> dict[str, Any]:
    """Pipedrive's error envelope (reference §6)."""
    if status == 401:
        return unauthorized_body()
    default = {
        400: "Bad request",
        402: "Company account is not open (possible reason: trialExpired, unpaid).",
        403: "You do not have permissions to do this.",
        404: "Entity was not found",
        405: "Method not allowed",
        410: "Resource is gone",
        422: "Unprocessable entity",
        429: "Request over limit",
        500: "An internal server error occurred",
        502: "Bad gateway",
        503: "Service unavailable",
        504: "Gateway timeout",
    }
    body: dict[str, Any] = {
        "success": False,
        "error": error or default.get(status, "Error"),
        "error_info": ERROR_INFO,
        "data": None,
        "additional_data": None,
    }
    if status == 429:
        body["errorCode"] = 429
    body.update(extra)
    return body


def unauthorized_body() -> dict[str, Any]:
    return {
        "success": False,
        "error": "unauthorized access",
        "errorCode": 401,
        "error_info": GATEWAY_ERROR_INFO,
    }


def error_response(status: int, error: str | None = None, **extra: Any) -> Response:
    return json_response(error_body(status, error, **extra), status)


def not_found(what: str = "Entity") -> Response:
    """v2's and v1's 404 body (reference §6)."""
    error = "Entity was not found" if what == "Entity" else f"{what} not found"
    return error_response(404, error, error_info="Object was not found.")


def validation_error(message: str) -> Response:
    """v2's answer to an invalid parameter or body (code ERR_SCHEMA_VALIDATION_FAILED)."""
    return error_response(400, f"Validation failed: {message}", code="ERR_SCHEMA_VALIDATION_FAILED")


class ApiError(Exception):
    """Raised by the handlers' helpers; turned into Pipedrive's error answer."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra

    def response(self) -> Response:
        return error_response(self.status, self.message, **self.extra)


class ValidationFailed(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, f"Validation failed: {message}", code="ERR_SCHEMA_VALIDATION_FAILED")
