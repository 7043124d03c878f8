"""Work units for sampled strategies, and the merge that makes them one result.

What lives here: `run_chunk` (seeded runs `start..stop-1` of one scenario, stopping at
the first violation), `chunks` (how run numbers are split) and `merge_runs` (walk the
runs in run-number order, stop at the first violation, minimise it).  A unit is a
module-level function of picklable arguments whose only effect is its return value, so
any runner (this process, a process pool, Ray) may run it, and a unit re-run after its
worker died returns the identical value.  Rule kept: results depend on run numbers,
never on which worker ran a chunk or when it finished.  Must not be added: runners,
scheduling, progress bars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from faultline.check.explore import CheckConfig, ScenarioResult, make_strategy, minimise, run_once
from faultline.check.judging.coverage import tally
from faultline.check.running.setup_image import SetupImage
from faultline.check.search.strategies import run_seed
from faultline.rt.execution import Outcome
from faultline.scenario.spec import Scenario


@dataclass(slots=True)
class RunSummary:
    """What one sampled run contributes to a scenario's result."""

    index: int
    steps: int
    labels: frozenset[str]
    outcome: Outcome | None          # kept only when it violated


def run_chunk(scenario: Scenario, cfg: CheckConfig, start: int, stop: int,
              progress: Callable[[int], None] | None = None) -> list[RunSummary]:
    """Runs start..stop-1 of `cfg.strategy` (run i seeded run_seed(cfg.seed, i)); the
    list ends at the first violating run.  `progress(1)` after each run (live
    progress: check.running.live.report)."""
    out = []
    image = SetupImage()                # every run of the chunk starts after the setup
    for i in range(start, stop):
        strategy = make_strategy(cfg.strategy, run_seed(cfg.seed, i), cfg.depth,
                                 scenario.step_bound)
        res = run_once(scenario, cfg.policy, strategy, every_step=cfg.every_step,
                       npv_locks=cfg.npv_locks, race_detect=cfg.race_detect, image=image)
        bad = res.outcome if res.outcome.violation is not None else None
        if bad is not None:
            picklable(bad)
        out.append(RunSummary(i, res.outcome.steps, frozenset(res.coverage), bad))
        if progress is not None:
            progress(1)
        if bad is not None:
            break
    return out


def picklable(outcome: Outcome) -> Outcome:
    """`outcome` with its violation details reduced to words: they may hold model
    objects, which must not cross a process boundary."""
    v = outcome.violation
    if v is not None and getattr(v, "details", None):
        v.details = {k: str(x) for k, x in v.details.items()}  # type: ignore[attr-defined]
    return outcome


def chunks(runs: int, width: int) -> list[tuple[int, int]]:
    """Split run numbers 0..runs-1 into consecutive chunks, a few per worker."""
    size = max(1, -(-runs // (width * 4)))
    return [(a, min(a + size, runs)) for a in range(0, runs, size)]


def merge_runs(scenario: Scenario, cfg: CheckConfig, parts: Iterable[RunSummary],
               seconds: float) -> ScenarioResult:
    """The result `check_scenario` gives: runs counted in run-number order up to and
    including the first violation (a gap means an earlier chunk stopped there)."""
    coverage: dict[str, int] = {}
    steps = done = 0
    ce = None
    for r in sorted(parts, key=lambda r: r.index):
        if r.index != done:
            break
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
