"""How much exploring each catalog scenario takes, three ways, measured in one run.

Per scenario and policy:
  * bounded:    stateless optimal DPOR within the scenario's stated preemption bound, or
                within --bound for a scenario that states none (what `check --strategy
                dpor` ran before stateful DPOR);
  * unbounded:  stateless optimal DPOR without a bound, stopped after --cap executions
                (retry loops make it endless: each extra trip round one is a new trace);
  * stateful:   the default for an unbounded check now (source-DPOR with state caching,
                docs/state-caching.md), stopped after --stateful-cap executions.
For each: executions, distinct states completed (stateful only), sleep-blocked runs,
runs cut at a cached state, whether it finished (exhaustive) and CPU seconds.  With
`spin` installed, SPIN's figures for the protocols its Promela model shares with the
catalog follow (states stored, seconds for spin -a, gcc and pan).
Prints figures only; asserts nothing.

    python bench/traces.py                                   # the three named in issue 12
    python bench/traces.py --all --policy sbusy --cap 2000   # the whole catalog
    python bench/traces.py --scenario rw-race-top --markdown
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from table import print_table

from faultline.check.explore import CACHE_STRIDE, CheckConfig, dpor_bounds, dpor_execution
from faultline.check.running.setup_image import SetupImage
from faultline.check.search import dpor
from faultline.rt.execution import Execution, Hooks
from faultline.scenario.loader import catalog_names, load_scenario
from faultline.scenario.spec import Scenario

DEFAULT = ("rw-race-shadow", "shared-shadow-inval", "cow-rename")
COLUMNS = ("scenario", "policy", "mode", "bound", "executions", "states", "blocked", "cut",
           "done", "CPU s")


def explore(scenario: Scenario, policy: str, bound: int | None, stateful: bool,
            cap: int | None) -> tuple[dpor.DporResult, float]:
    """One exploration as `check --strategy dpor` makes it; its result and CPU time."""
    cfg = CheckConfig(policy=policy, strategy="dpor", shrink=False)
    image = SetupImage()

    def make(rec: Hooks) -> Execution:
        return dpor_execution(scenario, cfg, rec, image)[0]
    t0 = time.process_time()
    r = dpor.explore(make, bound=bound, max_executions=cap, optimal=not stateful,
                     cache_states=stateful, cache_stride=CACHE_STRIDE, estimate=False)
    return r, time.process_time() - t0


def row(name: str, policy: str, mode: str, bound: int | None, r: dpor.DporResult,
        secs: float) -> list[str]:
    return [name, policy, mode, "none" if bound is None else str(bound), f"{r.executions:,}",
            f"{r.states:,}" if mode == "stateful" else "", f"{r.sleep_blocked:,}",
            f"{r.cache_hits:,}" if mode == "stateful" else "",
            "yes" if r.exhaustive else "capped", f"{secs:.1f}"]


def spin_rows(names: list[str], policies: list[str]) -> list[list[str]]:
    """SPIN's figures for those of `names` its model expresses, under `policies`."""
    from faultline.spin.compare import PAIRS
    from faultline.spin.run import run_spin
    out = []
    for scenario, policy in PAIRS:
        if scenario not in names or policy not in policies:
            continue
        r = run_spin(scenario, policy)
        rep = r.report
        verdict = "pass" if rep.violation is None else f"violation: {rep.violation}"
        out.append([scenario, policy, f"SPIN ({verdict})", "none", "",
                    f"{rep.states_stored:,}", "", "", "yes", f"{r.seconds:.1f}"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", action="append", help="a catalog scenario (repeatable)")
    ap.add_argument("--all", action="store_true", help="every catalog scenario")
    ap.add_argument("--policy", action="append", choices=("xbusy", "sbusy"),
                    help="a policy (repeatable; default both)")
    ap.add_argument("--bound", type=int, default=2,
                    help="the bounded run's bound for a scenario that states none")
    ap.add_argument("--cap", type=int, default=3000,
                    help="executions after which stateless unbounded DPOR stops")
    ap.add_argument("--stateful-cap", type=int, default=3000,
                    help="executions after which stateful DPOR stops")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    names = catalog_names() if args.all else (args.scenario or list(DEFAULT))
    policies = args.policy or ["xbusy", "sbusy"]
    rows: list[list[str]] = []
    for name in names:
        scenario = load_scenario(name)
        bounds, _ = dpor_bounds(scenario, CheckConfig(strategy="dpor"))
        for policy in policies:
            for b in ([args.bound] if bounds == [None] else bounds):
                r, secs = explore(scenario, policy, b, False, None)
                rows.append(row(name, policy, "bounded", b, r, secs))
            r, secs = explore(scenario, policy, None, False, args.cap)
            rows.append(row(name, policy, "unbounded", None, r, secs))
            r, secs = explore(scenario, policy, None, True, args.stateful_cap)
            rows.append(row(name, policy, "stateful", None, r, secs))
            print(f"  {name} {policy} done", file=sys.stderr, flush=True)
    if shutil.which("spin") and shutil.which("gcc"):
        rows += spin_rows(names, policies)
    else:
        print("(spin or gcc not installed: no SPIN rows)", file=sys.stderr)
    print_table(COLUMNS, rows, args.markdown)


if __name__ == "__main__":
    main()
