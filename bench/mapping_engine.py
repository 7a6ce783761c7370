"""How long the mapping engine takes over the `large` data set (prints figures, asserts nothing).

    .venv/bin/python bench/mapping_engine.py [--seed N] [--repeat N]

Maps every organization (20,000), person (60,000), deal (50,000) and note (100,000) of the
`large` sandbox data set with the sandbox settings (deployments/sandbox_settings/: the shipped
field maps plus 20 custom matches), in memory: no HTTP, as the pipeline's convert task does. Also
the deal selection, and the pair hashes the state store would keep.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deployments.sandbox_settings import SANDBOX_DIR, account_from_seed  # noqa: E402
from mappings.loading import load_settings  # noqa: E402
from mappings.merge import field_hashes  # noqa: E402
from mappings.receive import (  # noqa: E402
    deal_to_license,
    note_to_conversation,
    organization_to_company,
    person_to_enduser,
)
from mappings.resolve import compile_mappings  # noqa: E402
from sandbox.data import generate  # noqa: E402
from tasks.select import select_deals  # noqa: E402


def timed(repeat: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    args = parser.parse_args()

    start = time.perf_counter()
    pd_seed, ph_seed = generate("large", args.seed)
    print(f"data set 'large' generated in {time.perf_counter() - start:.1f} s (not counted)")
    mappings = compile_mappings(
        load_settings(SANDBOX_DIR), account_from_seed(pd_seed, ph_seed.users)
    )
    company_ids = {o["id"]: f"66a1c3f0{o['id']:016x}" for o in pd_seed.organizations}
    deal_orgs = {d["id"]: d["org_id"] for d in pd_seed.deals if d["org_id"]}
    person_orgs = {p["id"]: p["org_id"] for p in pd_seed.persons if p["org_id"]}
    # Every deal as if it were won (the open and lost ones get their add time as won time), so
    # that the license mapping runs for all 50,000 (only deals without organization are skipped).
    as_won = [{**d, "won_time": d["won_time"] or d["add_time"]} for d in pd_seed.deals]
    rules = {obj: len(r) for obj, r in mappings.rules.items()}
    print(f"rules per object: {rules}\n")

    runs: list[tuple[str, int, Callable[[], Any]]] = [
        ("organizations → companies", len(pd_seed.organizations),
         lambda: organization_to_company(pd_seed.organizations, mappings)),
        ("persons → end users", len(pd_seed.persons),
         lambda: person_to_enduser(pd_seed.persons, mappings, company_ids=company_ids)),
        ("deals: select won + pipelines", len(pd_seed.deals),
         lambda: select_deals(pd_seed.deals, mappings)),
        ("deals → licenses (all, as won)", len(as_won),
         lambda: deal_to_license(as_won, mappings, company_ids=company_ids)),
        ("notes → notes", len(pd_seed.notes),
         lambda: note_to_conversation(pd_seed.notes, mappings, company_ids=company_ids,
                                      deal_orgs=deal_orgs, person_orgs=person_orgs)),
    ]  # fmt: skip
    print(f"{'mapping':<32} {'records':>8} {'mapped':>8} {'seconds':>8} {'per 100,000':>12}")
    results: dict[str, Any] = {}
    total_n, total_s = 0, 0.0
    for name, n, work in runs:
        seconds, result = timed(args.repeat, work)
        mapped = len(result[0]) if isinstance(result, tuple) else len(result)
        results[name] = result
        total_n += n
        total_s += seconds
        print(f"{name:<32} {n:>8,} {mapped:>8,} {seconds:>8.2f} {seconds * 100_000 / n:>10.2f} s")
    print(f"{'all of the above':<32} {total_n:>8,} {'':>8} {total_s:>8.2f} "
          f"{total_s * 100_000 / total_n:>10.2f} s")  # fmt: skip

    notes = results["notes → notes"]
    seconds, _ = timed(args.repeat, lambda: [field_hashes(v) for v in notes.values])
    print(f"{'field hashes of the notes':<32} {len(notes.values):>8,} {'':>8} {seconds:>8.2f} "
          f"{seconds * 100_000 / len(notes.values):>10.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
