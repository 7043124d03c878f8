"""SPIN beside faultline: the verdict and the cost of each (scenario, policy) pair.

For rw-race-shadow, shared-shadow-inval and cow-rename under every policy the Promela
model expresses (faultline.spin.model.SWITCHES): SPIN's verdict (the property violated),
states stored, transitions and seconds (spin -a + gcc + pan), beside faultline's verdict
(optimal DPOR within the scenario's stated preemption bound, stopping at the first
violation, no shrinking), executions and seconds.
Prints figures only; it asserts nothing (tests/test_spin.py does).

    python bench/spin_vs_faultline.py                 # ~8 min on one core
    python bench/spin_vs_faultline.py --jobs 2 --markdown
    python bench/spin_vs_faultline.py --scenario cow-rename --policy sbusy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from table import print_table

from faultline.spin.compare import PAIRS, FaultlineFigures, PairResult, compare_all
from faultline.spin.run import SpinResult

COLUMNS = ("scenario", "policy", "SPIN verdict", "states", "transitions", "SPIN s",
           "faultline verdict", "executions", "faultline s", "agree")


def spin_cells(r: SpinResult) -> list[str]:
    rep = r.report
    verdict = "pass" if rep.violation is None else f"violation: {rep.violation}"
    return [verdict, f"{rep.states_stored:,}", f"{rep.transitions:,}", f"{r.seconds:.2f}"]


def faultline_cells(f: FaultlineFigures) -> list[str]:
    verdict = "pass" if f.verdict == "pass" else f"violation: {f.kind}"
    bound = f" (<= {f.preemption_bound})" if f.preemption_bound is not None else ""
    return [verdict + bound, f"{f.executions:,}", f"{f.seconds:.2f}"]


def row_of(r: PairResult) -> list[str]:
    return [r.scenario, r.policy, *spin_cells(r.spin), *faultline_cells(r.faultline),
            "yes" if r.agree else "no"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes (the seconds are per pair, so >1 inflates them "
                         "when the cores are shared)")
    ap.add_argument("--scenario", action="append", help="only these scenarios")
    ap.add_argument("--policy", action="append", help="only these policies")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    pairs = [(s, p) for s, p in PAIRS if (not args.scenario or s in args.scenario)
             and (not args.policy or p in args.policy)]
    results = compare_all(pairs, jobs=args.jobs,
                          done=lambda r: print(f"done: {r.scenario} {r.policy}",
                                               file=sys.stderr, flush=True))
    rows = [row_of(r) for r in results]
    print_table(COLUMNS, rows, args.markdown)
    agree = sum(r.agree for r in results)
    print(f"\n{agree} of {len(results)} pairs agree within the stated bounds; "
          f"{len(results) - agree} disagree.  SPIN s: spin -a + gcc + pan.")


if __name__ == "__main__":
    main()
