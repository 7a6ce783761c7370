"""What an operator sees of a run in Prefect: the product's log lines in the run's log (no
credential in them), and artifacts that count and group (read back from the Prefect API)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from pipeline_support import pipeline_ids
from prefect import flow

from flows.deal_sync import deal_sync
from flows.incremental_sync import incremental_sync
from flows.runlog import PRODUCT_LOGGERS, RunLogHandler, redact, register_secrets
from sandbox.runner import Sandbox

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _api_logs(flow_run_id: str, expect: str, timeout_s: float = 60.0) -> list[Any]:
    """The run's log lines as the Prefect API returns them, once a line containing `expect` is
    there (logs reach the API in batches; the wait only catches a hang)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
            )
            if any(expect in log.message for log in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.2)


def _artifacts(flow_run_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in found}


def _won_deal(sb: Sandbox) -> dict[str, Any]:
    pid = pipeline_ids(sb)["New business"]
    return next(
        d
        for d in sb.pipedrive_seed.deals
        if d["status"] == "won" and d["pipeline_id"] == pid and d["org_id"]
    )


# -- the run's log -------------------------------------------------------------------------------


def test_a_deal_sync_runs_product_lines_are_in_its_prefect_log_without_tokens(
    sb: Sandbox, settings: str
) -> None:
    deal = _won_deal(sb)
    report = deal_sync(deal_id=deal["id"], settings_dir=settings)
    logs = _api_logs(report["run_id"], "Deal sync: deal")
    product = [log for log in logs if log.name.split(".")[0] in PRODUCT_LOGGERS]
    messages = "\n".join(log.message for log in product)
    assert f"read from Pipedrive (deal {deal['id']})" in messages, messages
    assert "deals: 1 selected" in messages
    assert "wrote to Planhat, deals → licenses: 1 created (1 write call)" in messages
    assert "to write to Planhat: 1 license, 1 company," in messages
    assert any(
        line.startswith(f"Deal sync: deal {deal['id']}: ") and "deals → licenses: 1 created" in line
        for line in messages.splitlines()
    ), messages
    assert all(log.level >= logging.INFO for log in product)
    # lines logged inside a task belong to that task run, the others to the flow run
    assert any(log.task_run_id is not None for log in product)
    everything = json.dumps([log.model_dump(mode="json") for log in logs])
    assert sb.pipedrive_token not in everything and sb.planhat_token not in everything


def test_a_credential_in_a_product_line_is_redacted_in_the_run_log(sb: Sandbox) -> None:
    token = sb.pipedrive_token

    @flow(name="leaky-line")
    def leaky() -> str:
        from prefect.runtime import flow_run

        logging.getLogger("clients.example").info("calling with token %s", token)
        logging.getLogger("tasks.example").info("GET /v1/deals?api_token=abcdef0123456789&x=1")
        return str(flow_run.id)

    logs = _api_logs(leaky(), "api_token=")
    messages = [log.message for log in logs if log.name.endswith(".example")]
    assert messages == [
        "calling with token [redacted]",
        "GET /v1/deals?api_token=[redacted]&x=1",
    ]


def test_lines_outside_a_run_are_not_sent_and_do_not_warn(
    monkeypatch: pytest.MonkeyPatch, recwarn: pytest.WarningsRecorder
) -> None:
    import prefect.logging.handlers

    handler = next(h for h in logging.getLogger("tasks").handlers if isinstance(h, RunLogHandler))
    sent: list[Any] = []
    monkeypatch.setattr(prefect.logging.handlers, "emit_api_log", sent.append)
    handler.emit(logging.LogRecord("tasks.x", logging.INFO, __file__, 1, "outside", None, None))
    assert sent == []
    assert not [w for w in recwarn if "flow run id" in str(w.message)]


def test_registered_secrets_and_inline_credentials_are_redacted() -> None:
    register_secrets("a-registered-secret-value", None, "short")
    text = redact(
        "a-registered-secret-value; Authorization: Bearer abc.def-123; "
        "https://user:hunter2hunter2@example.com/x; short stays"
    )
    assert text == (
        "[redacted]; Authorization: Bearer [redacted]; "
        "https://user:[redacted]@example.com/x; short stays"
    )


# -- the run's artifacts -------------------------------------------------------------------------


def test_a_backfills_artifacts_group_the_reasons_and_list_every_skip(
    sb: Sandbox, settings: str
) -> None:
    report = incremental_sync(full=True, settings_dir=settings)
    artifacts = _artifacts(report["run_id"])
    assert {"sync-summary", "sync-counts", "sync-skips-and-failures"} <= set(artifacts)

    summary = artifacts["sync-summary"].data
    lost = sum(r["count"] for r in report["reasons"] if r["reason"].endswith("is lost, not won"))
    assert lost > 1  # the small data set has several lost deals: one line counts them all
    assert f"| {lost} | deal | skipped | deal # is lost, not won |" in summary
    assert "1 × " not in summary
    assert "The full list, one row per record" in summary
    assert "sync-skips-and-failures" in summary

    table = artifacts["sync-skips-and-failures"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert len(rows) == report["problems"] > 20  # every one, not the first 20
    assert {row["action"] for row in rows} <= {"skipped", "conflict", "failed"}
    counts = artifacts["sync-counts"].data
    counts = json.loads(counts) if isinstance(counts, str) else counts
    deal_row = next(row for row in counts if row["object"] == "deal")
    assert deal_row["skipped"] == report["counts"]["deal"]["skipped"]


def test_the_summary_never_cuts_silently() -> None:
    from store.records import ReasonCount, RunReport
    from tasks.report import SUMMARY_REASONS, summary_markdown

    reasons = [
        ReasonCount("note", "failed", f"Planhat: error number {i}", 1)
        for i in range(SUMMARY_REASONS + 7)
    ] + [ReasonCount("deal", "skipped", f"deal {i} is lost, not won", 1) for i in range(30)]
    report = RunReport(
        run_id="r1",
        counts={"deal": {"skipped": 30}, "note": {"failed": SUMMARY_REASONS + 7}},
        reasons=reasons,
        problems=[],  # the table listed none of them (say, over its limit)
        problems_total=SUMMARY_REASONS + 37,
    )
    text = summary_markdown("Sync", report, dry_run=False, problems_at="artifact `x`")
    assert "| 30 | deal | skipped | deal # is lost, not won |" in text
    assert f"… and {7 + 1} more reasons (in the full list)" in text
    assert f"the first 0 of {SUMMARY_REASONS + 37}" in text and "run id `r1`" in text
    assert "| **notes → notes** | · | · | · | · | · | 57 | 57 |" in text
