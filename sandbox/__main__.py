"""`python -m sandbox`: serve the sandbox Pipedrive and Planhat until interrupted.

This command line is a contract (scripts and benchmarks rely on it); flags are only ever added.

    python -m sandbox [--dataset small|demo|large] [--seed N] [--scale F]
                      [--pipedrive-port N] [--planhat-port M]
                      [--pipedrive-token T] [--planhat-token U]
                      [--host H] [--burst N] [--daily-budget N]
                      [--plan lite|growth|premium|ultimate] [--seats N] [--search-burst N]
                      [--webhook-time-scale F] [--webhook-ban-policy]
                      [--fault-target pipedrive|planhat|both] [--fault-route GLOB]
                      [--latency-ms MS] [--jitter-ms MS] [--p-500 P] [--p-502 P] [--p-503 P]
                      [--p-429 P] [--p-429-no-retry-after P] [--p-hang P] [--p-drop P]
                      [--json]

Defaults: dataset demo, seed 7, scale 1, host 127.0.0.1, Pipedrive on 8711, Planhat on 8712 (0
picks a free port), the documented sandbox tokens (see `sandbox.runner`), time scale 1, and
Pipedrive's limits for `--plan growth` with `--seats 10`: a burst of 40 requests per token per
rolling 2 s window (search 10) and a daily budget of 30,000 × 2 × 10 = 600,000 tokens for the
company. It prints both base URLs and tokens (with `--json`: one JSON object on one line, which
also names the dataset, seed, scale and counts), serves until SIGINT or SIGTERM and exits 0.

`--scale F` multiplies the data set's organizations, persons, deals and notes by F (each rounded,
at least 1; pipelines, stages, fields and users unchanged): `--dataset large --scale 0.25` serves
5,000 organizations, 15,000 persons, 12,500 deals and 25,000 notes. The same seed and scale always
give the same data.

Pipedrive's limits (`sandbox.ratelimit`): `--plan` and `--seats` derive the burst (Lite 20,
Growth 40, Premium 100, Ultimate 120) and the daily token budget (30,000 × plan multiplier
1/2/5/7 × seats) as Pipedrive does. `--burst N` and `--daily-budget N` override them: the burst
in requests per token per 2 s, the budget in tokens per company per day (every request costs its
endpoint's token cost; all tokens of the company share the budget).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys

from sandbox.ratelimit import (
    DEFAULT_PLAN,
    DEFAULT_SEATS,
    PLAN_BURST,
    PLAN_MULTIPLIER,
    SEARCH_BURST,
    daily_budget_for,
)
from sandbox.runner import (
    DEFAULT_DATASET,
    DEFAULT_HOST,
    DEFAULT_PIPEDRIVE_PORT,
    DEFAULT_PIPEDRIVE_TOKEN,
    DEFAULT_PLANHAT_PORT,
    DEFAULT_PLANHAT_TOKEN,
    DEFAULT_SEED,
    Sandbox,
)
from sandbox.server import bound_socket

FAULT_FLAGS = ("p_500", "p_502", "p_503", "p_429", "p_429_no_retry_after", "p_hang", "p_drop")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive scale factor")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port (0 picks a free one)")
    return value


LIMITS_HELP = """\
Pipedrive's rate limits, as Pipedrive documents them:
  daily budget  30,000 tokens x plan multiplier (lite 1, growth 2, premium 5, ultimate 7)
                x seats, per company: all its API tokens share it. Each request costs its
                endpoint's token cost (v2: get 1, list 10, write 5, delete 3, search 20;
                v1: get 2, list 20, write 10, delete 6, search 40). Once spent, every
                request is answered 429 until midnight UTC.
  burst         requests per token per rolling 2 s window (lite 20, growth 40,
                premium 100, ultimate 120; search 10).
  headers       x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset (burst),
                x-daily-ratelimit-token-limit, x-daily-ratelimit-token-remaining (budget),
                x-daily-requests-left (POST/PUT fair-use counter, 10,000 a day per token).
--burst and --daily-budget override what --plan and --seats derive."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def pipedrive_limits(args: argparse.Namespace) -> tuple[int, int]:
    """(burst, daily token budget) from the flags: explicit values win over the plan's."""
    burst = args.burst if args.burst is not None else PLAN_BURST[args.plan]
    budget = (
        args.daily_budget
        if args.daily_budget is not None
        else daily_budget_for(args.plan, args.seats)
    )
    return burst, budget


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Serve local stand-ins for the Pipedrive and Planhat APIs with generated data.",
        epilog=LIMITS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        choices=("small", "demo", "large"),
        default=DEFAULT_DATASET,
        help="generated data set (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="data generator seed (default: %(default)s)"
    )
    parser.add_argument(
        "--scale",
        type=_scale,
        default=1.0,
        metavar="F",
        help="multiply the data set's organizations, persons, deals and notes by F (rounded, at "
        "least 1 each; pipelines unchanged), e.g. 0.25 for a quarter (default: 1)",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--pipedrive-port",
        type=_port,
        default=DEFAULT_PIPEDRIVE_PORT,
        help="Pipedrive port, 0 for a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--planhat-port",
        type=_port,
        default=DEFAULT_PLANHAT_PORT,
        help="Planhat port, 0 for a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--pipedrive-token",
        default=DEFAULT_PIPEDRIVE_TOKEN,
        help="the Pipedrive API token the sandbox accepts",
    )
    parser.add_argument(
        "--planhat-token",
        default=DEFAULT_PLANHAT_TOKEN,
        help="the Planhat bearer token the sandbox accepts",
    )
    parser.add_argument(
        "--burst",
        type=_non_negative,
        default=None,
        help="Pipedrive burst limit: requests per token per rolling 2 s window "
        "(default: the plan's, 40 for growth)",
    )
    parser.add_argument(
        "--daily-budget",
        type=_non_negative,
        default=None,
        help="Pipedrive daily token budget of the company, shared by all its tokens; each "
        "request costs its endpoint's token cost (default: 30,000 x plan multiplier x seats)",
    )
    parser.add_argument(
        "--plan",
        choices=tuple(PLAN_MULTIPLIER),
        default=DEFAULT_PLAN,
        help="Pipedrive plan whose burst and budget multiplier apply (default: %(default)s)",
    )
    parser.add_argument(
        "--seats",
        type=_positive,
        default=DEFAULT_SEATS,
        help="Pipedrive seats of the company, for the daily budget (default: %(default)s)",
    )
    parser.add_argument(
        "--search-burst",
        type=_positive,
        default=SEARCH_BURST,
        help="Pipedrive search requests per token per 2 s (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-time-scale",
        type=float,
        default=1.0,
        help="multiplies webhook retry delays (3, 30, 150 s) and timeout",
    )
    parser.add_argument(
        "--webhook-ban-policy",
        action="store_true",
        help="ban a webhook after 10 failed first attempts, as Pipedrive does",
    )
    faults = parser.add_argument_group("faults (applied to --fault-target)")
    faults.add_argument("--fault-target", choices=("pipedrive", "planhat", "both"), default="both")
    faults.add_argument(
        "--fault-route", default="*", help="shell pattern on the path (default: all)"
    )
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added latency per request")
    faults.add_argument("--jitter-ms", type=float, default=0.0, help="random extra latency, up to")
    for name in FAULT_FLAGS:
        faults.add_argument(
            "--" + name.replace("_", "-"),
            type=_probability,
            default=0.0,
            help=f"probability of a {name[2:].replace('_', ' ')} fault",
        )
    parser.add_argument(
        "--json", action="store_true", help="print the addresses and tokens as one JSON line"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Both ports are bound now and held until served: a port looked up free and bound after
    # the data set is generated could be taken meanwhile (any outgoing connection may).
    sockets: list[socket.socket] = []
    for flag, port in (
        ("--pipedrive-port", args.pipedrive_port),
        ("--planhat-port", args.planhat_port),
    ):
        try:
            sockets.append(bound_socket(args.host, port))
        except OSError:
            for sock in sockets:
                sock.close()
            print(
                f"python -m sandbox: error: port {port} on {args.host} is in use; "
                f"choose another with {flag} (0 picks a free one)",
                file=sys.stderr,
            )
            return 1
    pipedrive_port, planhat_port = (int(sock.getsockname()[1]) for sock in sockets)
    burst, daily_budget = pipedrive_limits(args)
    sandbox = Sandbox(
        args.dataset,
        args.seed,
        host=args.host,
        pipedrive_port=pipedrive_port,
        planhat_port=planhat_port,
        pipedrive_token=args.pipedrive_token,
        planhat_token=args.planhat_token,
        burst=burst,
        daily_budget=daily_budget,
        webhook_time_scale=args.webhook_time_scale,
        webhook_ban_policy=args.webhook_ban_policy,
        scale=args.scale,
    )
    limits = sandbox.pipedrive.ratelimit
    limits.plan, limits.seats = args.plan, args.seats
    limits.configure(search_burst=args.search_burst)
    rule = {name: getattr(args, name) for name in FAULT_FLAGS}
    if any(rule.values()) or args.latency_ms or args.jitter_ms:
        try:
            sandbox.add_fault(
                args.fault_target,
                route=args.fault_route,
                latency_ms=args.latency_ms,
                jitter_ms=args.jitter_ms,
                **rule,
            )
        except ValueError as exc:
            print(f"python -m sandbox: error: {exc}", file=sys.stderr)
            return 2
    info = {
        "dataset": args.dataset,
        "seed": args.seed,
        "scale": args.scale,
        "pipedrive_url": sandbox.pipedrive_url,
        "pipedrive_token": args.pipedrive_token,
        "planhat_url": sandbox.planhat_url,
        "planhat_token": args.planhat_token,
        "counts": sandbox.summary(),
        "pipedrive_limits": {
            "plan": args.plan,
            "seats": args.seats,
            "burst": burst,
            "search_burst": args.search_burst,
            "daily_budget": daily_budget,
        },
    }

    def announce() -> None:
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            counts = ", ".join(f"{v} {k}" for k, v in info["counts"].items())
            scaled = f", scale {args.scale:g}" if args.scale != 1 else ""
            print(
                f"Sandbox data set '{args.dataset}' (seed {args.seed}{scaled}): {counts}\n"
                f"Pipedrive  {sandbox.pipedrive_url}  (company URL; APIs at /api/v1, /api/v2)\n"
                f"           token: {args.pipedrive_token}\n"
                f"           limits: {burst} requests per 2 s per token, {daily_budget:,} "
                f"tokens a day for the company ({args.plan}, {args.seats} seats)\n"
                f"Planhat    {sandbox.planhat_url}\n"
                f"           token: {args.planhat_token}\n"
                f"Admin: <url>/_sandbox/faults, /_sandbox/counters, /_sandbox/deliveries. "
                f"Ctrl-C stops.",
                flush=True,
            )

    try:
        asyncio.run(sandbox.serve_forever(on_started=announce, sockets=sockets))
    except OSError as exc:
        print(
            f"python -m sandbox: cannot serve: {exc} (is the port in use? try --pipedrive-port 0)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
