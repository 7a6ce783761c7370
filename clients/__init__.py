"""Pipedrive and Planhat HTTP clients (httpx): paging, limits, retries, typed errors.

They know nothing of Prefect, of mappings or of the other system. Both share one HTTP layer
(`clients.http`: the rate limiter, the retry policy and the DEBUG request log), parametrised by
each service's limits. Records are plain dicts as the services send them; lists are generators
that hold one page at a time. Tokens travel only in headers and appear in no URL, log line,
error message or repr.

    PipedriveClient(company_url, token).iter_deals(updated_since=..., status="won")
    PlanhatClient(token, base_url=...).bulk_upsert("licenses", items)
"""

from clients.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    BlockedError,
    ClientError,
    ForbiddenError,
    GoneError,
    InvalidSettingError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
)
from clients.http import RetryPolicy
from clients.pipedrive import (
    PipedriveClient,
    PipedriveUrls,
    PipedriveUser,
    check_token,
    parse_company_url,
)
from clients.planhat import (
    BulkUpsertResult,
    ItemOutcome,
    PlanhatClient,
    check_planhat_token,
    extid,
    srcid,
)

__all__ = [
    "ApiError",
    "AuthError",
    "BadRequestError",
    "BlockedError",
    "BulkUpsertResult",
    "ClientError",
    "ForbiddenError",
    "GoneError",
    "InvalidSettingError",
    "ItemOutcome",
    "NotFoundError",
    "PipedriveClient",
    "PipedriveUrls",
    "PipedriveUser",
    "PlanhatClient",
    "RateLimitedError",
    "RetryPolicy",
    "UnavailableError",
    "check_planhat_token",
    "check_token",
    "extid",
    "parse_company_url",
    "srcid",
]
