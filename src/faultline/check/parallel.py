"""Local parallelism: the same work units on N worker processes, merged as if run by one.

What lives here: `check_many`, which checks a list of scenarios with `jobs` worker
processes.  Sampled strategies (random, pct) split each scenario's runs into chunks of
consecutive run numbers; a chunk stops at its first violation; the merge walks runs in
order and stops at the first violating run number, so executions, steps, coverage and
the counterexample are exactly what `--jobs 1` reports.  DPOR explores one scenario
per work unit.  Rule kept: results never depend on the number of jobs or on which
worker finished first.  Must not be added: Ray (a later issue), shared mutable state.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from faultline.check.coverage import tally
from faultline.check.explore import (
    CheckConfig,
    ScenarioResult,
    check_scenario,
    make_strategy,
    minimise,
    run_once,
)
from faultline.check.strategies import run_seed
from faultline.rt.execution import Outcome
from faultline.scenario.spec import Scenario


@dataclass(slots=True)
class RunSummary:
    """What one sampled run contributes to a scenario's result."""

    index: int
    steps: int
    labels: frozenset[str]
    outcome: Outcome | None          # kept only when it violated


def _run_chunk(scenario: Scenario, cfg: CheckConfig, start: int, stop: int
               ) -> list[RunSummary]:
    out = []
    for i in range(start, stop):
        strategy = make_strategy(cfg.strategy, run_seed(cfg.seed, i), cfg.depth,
                                 scenario.step_bound)
        res = run_once(scenario, cfg.policy, strategy, every_step=cfg.every_step,
                       npv_locks=cfg.npv_locks)
        bad = res.outcome if res.outcome.violation is not None else None
        if bad is not None:
            bad.violation = _picklable(bad.violation)
        out.append(RunSummary(i, res.outcome.steps, frozenset(res.coverage), bad))
        if bad is not None:
            break
    return out


def _picklable(v: object) -> object:
    # Violation details may hold model objects; keep the words only.
    if v is not None and getattr(v, "details", None):
        v.details = {k: str(x) for k, x in v.details.items()}  # type: ignore[attr-defined]
    return v


def _chunks(runs: int, jobs: int) -> list[tuple[int, int]]:
    size = max(1, -(-runs // (jobs * 4)))           # a few chunks per worker
    return [(a, min(a + size, runs)) for a in range(0, runs, size)]


def _merge(scenario: Scenario, cfg: CheckConfig, parts: list[RunSummary], seconds: float
           ) -> ScenarioResult:
    coverage: dict[str, int] = {}
    steps = done = 0
    ce = None
    for r in sorted(parts, key=lambda r: r.index):
        if r.index != done:
            break                                   # a gap: an earlier chunk stopped
        done += 1
        steps += r.steps
        tally(coverage, r.labels)
        if r.outcome is not None:
            ce = minimise(scenario, cfg, r.outcome, strategy=cfg.strategy, seed=None,
                          options={"run_seed": run_seed(cfg.seed, r.index)})
            break
    return ScenarioResult(scenario.name, cfg.policy, cfg.strategy,
                          "pass" if ce is None else "violation", done, steps, seconds,
                          coverage, scenario.expect.get(cfg.policy), ce)


def check_many(scenarios: Sequence[Scenario], cfg: CheckConfig, jobs: int,
               progress: Callable[[int], None] | None = None) -> list[ScenarioResult]:
    """Check every scenario with `jobs` worker processes (1: in this process)."""
    if jobs <= 1:
        return [check_scenario(s, cfg, progress) for s in scenarios]
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        if cfg.strategy == "dpor":
            futs = [pool.submit(check_scenario, s, cfg) for s in scenarios]
            out = []
            for f in futs:
                out.append(f.result())
                if progress is not None:
                    progress(out[-1].executions)
            return out
        return [_sampled(pool, s, cfg, jobs, progress) for s in scenarios]


def _sampled(pool: ProcessPoolExecutor, s: Scenario, cfg: CheckConfig, jobs: int,
             progress: Callable[[int], None] | None) -> ScenarioResult:
    t0 = time.perf_counter()
    futs = [pool.submit(_run_chunk, s, cfg, a, b) for a, b in _chunks(cfg.runs, jobs)]
    parts: list[RunSummary] = []
    for f in futs:
        chunk = f.result()
        parts.extend(chunk)
        if progress is not None:
            progress(len(chunk))
    return _merge(s, cfg, parts, time.perf_counter() - t0)
