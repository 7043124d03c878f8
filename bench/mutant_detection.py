"""Detection strength: how fast each strategy finds each seeded bug, side by side.

For every seeded bug (kern.mutants) that is not argued harmless, on the first of its
probe scenarios that its base policy passes (a finding's scenario cannot tell a seeded
bug apart): executions and seconds to the first violation for DPOR (within the
scenario's stated bound; deterministic, one run), and the median over 20 seeds for PCT
(depth 3) and random sampling, each capped at --runs executions ("-" if a seed never
found it within the cap; the count of seeds that did is shown).

    python bench/mutant_detection.py             # a few minutes on 2 cores
    python bench/mutant_detection.py --seeds 5 --runs 500
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from faultline.check.explore import CheckConfig, check_scenario
from faultline.kern.mutants import MUTANTS
from faultline.scenario.loader import load_scenario


def first_violation(scenario: str, cfg: CheckConfig) -> tuple[int | None, float]:
    """(executions to the first violation or None, seconds)."""
    t0 = time.perf_counter()
    r = check_scenario(load_scenario(scenario), cfg)
    took = time.perf_counter() - t0
    return (r.executions if r.verdict == "violation" else None), took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=2000, help="cap per sampled seed")
    ap.add_argument("mutants", nargs="*", help="seeded bugs to measure (default: all)")
    args = ap.parse_args()
    print(f"{'mutant':<24} {'scenario':<22} {'dpor exec':>9} {'s':>6}   "
          f"{'pct med exec':>12} {'s':>6} {'found':>5}   {'random med exec':>15} {'s':>6} "
          f"{'found':>5}")
    for name, cls in MUTANTS.items():
        if cls.not_a_bug or (args.mutants and name not in args.mutants):
            continue
        scenario = next(p for p in cls.probes
                        if load_scenario(p).expect.get(cls.base) != "violation")
        d_exec, d_s = first_violation(scenario, CheckConfig(
            policy=name, strategy="dpor", shrink=False))
        cells = []
        for strategy in ("pct", "random"):
            execs, secs = [], []
            for seed in range(1, args.seeds + 1):
                e, s = first_violation(scenario, CheckConfig(
                    policy=name, strategy=strategy, runs=args.runs, seed=seed, depth=3,
                    shrink=False))
                if e is not None:
                    execs.append(e)
                    secs.append(s)
            cells.append((f"{statistics.median(execs):,.0f}" if execs else "-",
                          f"{statistics.median(secs):.2f}" if secs else "-",
                          f"{len(execs)}/{args.seeds}"))
        (pe, ps, pf), (re_, rs, rf) = cells
        print(f"{name:<24} {scenario:<22} {d_exec if d_exec is not None else '-':>9} "
              f"{d_s:>6.2f}   {pe:>12} {ps:>6} {pf:>5}   {re_:>15} {rs:>6} {rf:>5}")


if __name__ == "__main__":
    main()
