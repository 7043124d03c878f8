"""The cross-check itself: SPIN's verdict beside faultline's, pair by pair.

What lives here: `faultline_figures` (faultline's verdict of a pair by optimal DPOR
within the scenario's stated preemption bound, stopping at the first violation:
executions and seconds), `compare_pair` (both sides of one pair), `PAIRS` (the three
scenarios under every expressible policy) and `compare_all` (every pair, over worker
processes).  A pair where the scenario's stated bound misses what SPIN's unbounded
search finds is a disagreement: the fix is the scenario's bound (docs/spin.md).
Rule kept: both verdicts are computed, never looked up.  The seconds are wall-clock
figures for reports only.  Must not be added: running spin (spin.run), rendering.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from faultline.check.explore import CheckConfig, check_scenario
from faultline.scenario.loader import load_scenario
from faultline.spin.model import SCENARIOS, SWITCHES
from faultline.spin.run import SpinResult, run_spin

PAIRS: tuple[tuple[str, str], ...] = tuple(
    (s, p) for s in SCENARIOS for p in SWITCHES)



@dataclass(frozen=True)
class FaultlineFigures:
    """faultline's verdict of one pair by DPOR, and what it took."""

    verdict: str                   # "pass" or "violation"
    kind: str | None               # the violation's kind (panic, invariant, memory...)
    executions: int                # to the first violation, or all within the bound
    seconds: float
    exhaustive: bool               # every trace within the bound was explored
    preemption_bound: int | None


def faultline_figures(scenario: str, policy: str) -> FaultlineFigures:
    """faultline check SCENARIO --policy POLICY --strategy dpor --no-shrink (within the
    scenario's stated bound), in this process."""
    cfg = CheckConfig(policy=policy, strategy="dpor", shrink=False)
    t0 = time.perf_counter()
    r = check_scenario(load_scenario(scenario), cfg)
    took = time.perf_counter() - t0
    ce = r.counterexample
    kind = ce.violation["kind"] if ce is not None and ce.violation else None
    return FaultlineFigures(r.verdict, kind, r.executions, took, r.exhaustive,
                            r.preemption_bound)


@dataclass(frozen=True)
class PairResult:
    """Both sides of one pair."""

    scenario: str
    policy: str
    spin: SpinResult
    faultline: FaultlineFigures

    @property
    def agree(self) -> bool:
        """SPIN's verdict is faultline's within the stated bound."""
        return self.spin.verdict == self.faultline.verdict


def compare_pair(pair: tuple[str, str]) -> PairResult:
    """Run SPIN and faultline on one (scenario, policy) pair."""
    scenario, policy = pair
    return PairResult(scenario, policy, run_spin(scenario, policy),
                      faultline_figures(scenario, policy))


def compare_all(pairs: Iterable[tuple[str, str]] = PAIRS, jobs: int = 1,
                done: Callable[[PairResult], None] | None = None) -> list[PairResult]:
    """Every pair on `jobs` worker processes (1: in this process), started in the order
    given (put the slow ones first); the results in that order.  `done` is called as
    each pair finishes."""
    todo = list(pairs)
    if jobs <= 1:
        results = []
        for pair in todo:
            results.append(compare_pair(pair))
            if done is not None:
                done(results[-1])
        return results
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(compare_pair, pair): pair for pair in todo}
        by_pair: dict[tuple[str, str], PairResult] = {}
        for fut in as_completed(futures):
            by_pair[futures[fut]] = res = fut.result()
            if done is not None:
                done(res)
    return [by_pair[pair] for pair in todo]
