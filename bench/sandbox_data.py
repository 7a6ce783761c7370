"""Benchmark: time and peak memory to generate each sandbox data set (prints figures).

.venv/bin/python bench/sandbox_data.py [--size large] [--seed 7]
"""

from __future__ import annotations

import argparse
import resource
import time

from sandbox.data import SIZES, generate, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="large")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    pipedrive, _ = generate(args.size, args.seed)
    elapsed = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"generate({args.size!r}, {args.seed}): {elapsed:.2f} s, peak RSS {peak_mib:.0f} MiB")
    print("  " + ", ".join(f"{k} {v}" for k, v in summary(pipedrive).items()))


if __name__ == "__main__":
    main()
