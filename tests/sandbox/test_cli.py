"""`python -m sandbox`: the command line that scripts and benchmarks rely on. Each test starts
the sandbox as a process of its own (about a second each): the slow tier."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import httpx
import pytest

pytestmark = pytest.mark.slow  # processes of their own


def _start(*flags: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(  # noqa: S603 - our own module
        [
            sys.executable,
            "-m",
            "sandbox",
            "--dataset",
            "small",
            "--pipedrive-port",
            "0",
            "--planhat-port",
            "0",
            "--json",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"the sandbox did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc, json.loads(line)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_both_apis_and_stops_cleanly_on_a_signal(sig: signal.Signals) -> None:
    proc, info = _start("--pipedrive-token", "t" * 40, "--planhat-token", "ph-secret")
    try:
        assert info["dataset"] == "small" and info["counts"]["deals"] > 0
        me = httpx.get(
            f"{info['pipedrive_url']}/api/v1/users/me",
            headers={"x-api-token": "t" * 40},
            timeout=10,
        )
        assert me.status_code == 200 and me.json()["success"] is True
        denied = httpx.get(
            f"{info['pipedrive_url']}/api/v2/deals", headers={"x-api-token": "x" * 40}, timeout=10
        )
        assert denied.status_code == 401
        companies = httpx.get(
            f"{info['planhat_url']}/companies",
            headers={"authorization": "Bearer ph-secret"},
            timeout=10,
        )
        assert companies.status_code == 200 and isinstance(companies.json(), list)
    finally:
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0


def test_defaults_are_documented_ports_and_tokens() -> None:
    from sandbox.__main__ import build_parser
    from sandbox.runner import DEFAULT_PIPEDRIVE_TOKEN

    args = build_parser().parse_args([])
    assert (args.dataset, args.seed) == ("demo", 7)
    assert (args.pipedrive_port, args.planhat_port) == (8711, 8712)
    assert args.pipedrive_token == DEFAULT_PIPEDRIVE_TOKEN and len(DEFAULT_PIPEDRIVE_TOKEN) == 40


def test_scale_defaults_to_one_and_is_documented() -> None:
    from sandbox.__main__ import build_parser

    parser = build_parser()
    assert parser.parse_args([]).scale == 1
    assert parser.parse_args(["--scale", "0.25"]).scale == 0.25
    text = " ".join(parser.format_help().split())
    assert "--scale F" in text and "(default: 1)" in text


def test_scale_flag_serves_the_scaled_data_set() -> None:
    from sandbox.data import scaled_counts

    proc, info = _start("--scale", "0.5")
    try:
        expected = scaled_counts("small", 0.5)
        assert info["scale"] == 0.5
        for name in ("organizations", "persons", "deals", "notes", "pipelines"):
            assert info["counts"][name] == expected[name], name
        deals = httpx.get(
            f"{info['pipedrive_url']}/api/v2/deals",
            params={"limit": 500},
            headers={"x-api-token": info["pipedrive_token"]},
            timeout=10,
        ).json()
        assert len(deals["data"]) == expected["deals"] == 40
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_fault_flags_reach_the_apis() -> None:
    proc, info = _start("--fault-target", "planhat", "--p-503", "1")
    try:
        assert (
            httpx.get(
                f"{info['planhat_url']}/companies",
                timeout=10,
                headers={"authorization": f"Bearer {info['planhat_token']}"},
            ).status_code
            == 503
        )
        assert (
            httpx.get(
                f"{info['pipedrive_url']}/api/v2/deals",
                timeout=10,
                headers={"x-api-token": info["pipedrive_token"]},
            ).status_code
            == 200
        )
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize(
    ("flags", "burst", "budget"),
    [
        ([], 40, 600_000),  # growth, 10 seats
        (["--plan", "lite", "--seats", "2"], 20, 60_000),
        (["--plan", "ultimate", "--burst", "7", "--daily-budget", "500"], 7, 500),
        (["--burst", "3", "--daily-budget", "1000000"], 3, 1_000_000),  # the flags of old
    ],
)
def test_limit_flags_derive_or_override_pipedrives_limits(
    flags: list[str], burst: int, budget: int
) -> None:
    from sandbox.__main__ import build_parser, pipedrive_limits

    assert pipedrive_limits(build_parser().parse_args(flags)) == (burst, budget)


def test_the_served_limits_follow_the_plan_flags() -> None:
    proc, info = _start("--plan", "lite", "--seats", "2", "--search-burst", "4")
    try:
        assert info["pipedrive_limits"] == {
            "plan": "lite",
            "seats": 2,
            "burst": 20,
            "search_burst": 4,
            "daily_budget": 60_000,
        }
        url = info["pipedrive_url"]
        me = httpx.get(
            f"{url}/api/v1/users/me", headers={"x-api-token": info["pipedrive_token"]}, timeout=10
        )
        assert me.headers["x-ratelimit-limit"] == "20"
        assert me.headers["x-daily-ratelimit-token-limit"] == "60000"
        assert me.headers["x-daily-ratelimit-token-remaining"] == "59998"
        settings = httpx.get(f"{url}/_sandbox/ratelimit", timeout=10).json()
        assert (settings["plan"], settings["seats"], settings["search_burst"]) == ("lite", 2, 4)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_help_documents_the_limit_flags() -> None:
    from sandbox.__main__ import build_parser

    text = " ".join(build_parser().format_help().split())
    for flag in ("--burst", "--daily-budget", "--plan", "--seats", "--search-burst"):
        assert flag in text
    assert "rolling 2 s window" in text and "daily token budget" in text
    assert "x-daily-ratelimit-token-remaining" in text and "per company" in text


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--plan", "gold"], "invalid choice: 'gold'"),
        (["--seats", "0"], "not a positive integer"),
        (["--daily-budget", "-1"], "is negative"),
        (["--dataset", "huge"], "invalid choice: 'huge'"),
        (["--p-500", "2"], "not a probability"),
        (["--p-500", "0.7", "--p-503", "0.7"], "add up to"),
        (["--pipedrive-port", "70000"], "not a TCP port"),
        (["--scale", "0"], "not a positive scale factor"),
        (["--scale", "many"], "not a positive scale factor"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(flags: list[str], message: str) -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "sandbox", "--pipedrive-port", "0", "--planhat-port", "0", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_port_in_use_is_explained() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "sandbox",
                "--dataset",
                "small",
                "--pipedrive-port",
                str(port),
                "--planhat-port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "in use" in result.stderr
