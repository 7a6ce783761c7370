"""Secrets never leak: over a paged read and failing calls, with every logger at DEBUG
(httpx's and httpcore's included), neither token appears in any log record, exception text or
request URL."""

from __future__ import annotations

import logging
import pickle
import traceback

import httpx
import pytest

from clients import ApiError, PipedriveClient, PlanhatClient, RetryPolicy
from sandbox.runner import Sandbox

FAST = RetryPolicy(max_attempts=2, max_total_wait_s=5, backoff_base_s=0.01, backoff_max_s=0.05)


class RecordingTransport(httpx.BaseTransport):
    """The real transport, remembering every URL it sent."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.urls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def rendered(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args), repr(record.__dict__)]
    if record.exc_info:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(parts)


def exception_texts(exc: BaseException) -> str:
    texts = [
        str(exc),
        repr(exc),
        "".join(traceback.format_exception(exc)),
        repr(vars(exc)),
        repr(pickle.loads(pickle.dumps(exc)).__dict__),  # noqa: S301 - our own bytes
    ]
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        texts.append(exception_texts(cause))
    return "\n".join(texts)


def test_no_token_in_logs_exceptions_or_urls(
    sandbox_small: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sb = sandbox_small
    pd_token, ph_token = sb.pipedrive_token, sb.planhat_token
    wrong_pd, wrong_ph = "e" * 40, "wrong-planhat-token-123"
    secrets = (pd_token, ph_token, wrong_pd, wrong_ph)
    transport = RecordingTransport()
    errors: list[BaseException] = []
    caplog.set_level(logging.DEBUG)  # the root: httpx, httpcore and ours
    caplog.set_level(logging.DEBUG, logger="clients")  # (`flows` sets ours to INFO on import)
    sb.add_fault("pipedrive", route="/api/v2/stages", p_503=1.0)
    try:
        with PipedriveClient(
            sb.pipedrive_url, pd_token, allow_local_http=True, transport=transport, retry=FAST
        ) as pd:
            assert len(list(pd.iter_persons())) > 0  # a paged read
            assert list(pd.iter_notes(deal_id=sb.pipedrive_seed.deals[0]["id"])) is not None
            for failing in (
                lambda: list(pd.iter_stages()),  # 503 twice
                lambda: pd.get_deal(999_999_999),
            ):  # 404
                with pytest.raises(ApiError) as caught:
                    failing()
                errors.append(caught.value)
                logging.getLogger("test").exception("call failed", exc_info=caught.value)
        with PipedriveClient(
            sb.pipedrive_url, wrong_pd, allow_local_http=True, transport=transport
        ) as bad:
            with pytest.raises(ApiError) as caught:
                bad.check_connection()
            errors.append(caught.value)
        with PlanhatClient(
            ph_token, base_url=sb.planhat_url, allow_local_http=True, transport=transport
        ) as ph:
            list(ph.iter_records("users"))
            with pytest.raises(ApiError) as caught:
                ph.get("companies", "srcid-does-not-exist")
            errors.append(caught.value)
        with PlanhatClient(
            wrong_ph, base_url=sb.planhat_url, allow_local_http=True, transport=transport
        ) as bad_ph:
            with pytest.raises(ApiError) as caught:
                bad_ph.bulk_upsert("companies", [{"sourceId": "1", "name": "x"}])
            errors.append(caught.value)
    finally:
        sb.clear_faults()

    ours = [r for r in caplog.records if r.name == "clients.http"]
    assert len(ours) >= 6  # the log was really on, and our lines are in it
    assert any("httpx" in r.name or "httpcore" in r.name for r in caplog.records)
    assert len(transport.urls) >= 6 and len(errors) == 5
    for secret in secrets:
        for record in caplog.records:
            assert secret not in rendered(record), record.name
        for error in errors:
            assert secret not in exception_texts(error)
        for url in transport.urls:
            assert secret not in url
    assert caplog.text  # and the formatted text as pytest shows it
    for secret in secrets:
        assert secret not in caplog.text


def test_a_service_echoing_the_token_is_scrubbed() -> None:
    """Even if an error body repeats the token, the error message does not."""
    token = "0123456789abcdef0123456789abcdef01234567"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"success": False, "error": f"bad token {request.headers['x-api-token']}"}
        )

    with PipedriveClient(
        "https://acme.pipedrive.com", token, transport=httpx.MockTransport(handler)
    ) as pd:
        with pytest.raises(ApiError) as caught:
            pd.get_deal(1)
    assert token not in str(caught.value) and "[redacted]" in str(caught.value)
    assert token not in (caught.value.detail or "")
