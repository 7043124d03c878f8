"""Checking many scenarios on a runner: the same work units everywhere, merged as one.

What lives here: `check_many`, which checks a list of scenarios on this process, on
`jobs` local worker processes, or on Ray (`runners.open_runner`).  Sampled strategies
(random, pct) split each scenario's runs into chunks of consecutive run numbers
(`units.run_chunk`); a chunk stops at its first violation, and `units.merge_runs`
counts runs in order up to the first violating run number.  DPOR explores one scenario
per unit (`explore.check_scenario`; with more scenarios than workers the costliest are
dealt first, `longest_first`), or, when there are more workers than scenarios or
--split says so, deals each scenario's tree out as subtrees (`check.search.split`; a
stateful exploration only if --split says so: subtrees share no state cache); a
checkpointed (--state) exploration that is not split runs in this process whatever
`jobs` says.  The portfolio runs its members in slices (`check.search.portfolio`).
Units report their executions (and DPOR their status) as they run, through
check.running.live; the caller hears them through `progress` and `units`, and each
scenario's result through `finished` as soon as it is known (so that an interrupted
check can still show what it finished).
Rule kept: results (executions, steps, coverage, counterexample) never depend on the
runner, the number of jobs or which worker finished first: they are exactly what
`--jobs 1` reports with the same split depth.  Must not be added: shared mutable
state, or a merge that reads anything but unit return values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from faultline.check import explore
from faultline.check.explore import CheckConfig, ScenarioResult
from faultline.check.running import live
from faultline.check.running.runners import Ordered, Runner, open_runner
from faultline.check.running.units import chunks, merge_runs, run_chunk
from faultline.check.search import portfolio, split
from faultline.check.search.strategies import RandomStrategy
from faultline.scenario.spec import Scenario

STRATEGIES = (*explore.STRATEGIES, portfolio.NAME)


def check_many(scenarios: Sequence[Scenario], cfg: CheckConfig, jobs: int,
               progress: Callable[[int], None] | None = None, *, use_ray: bool = False,
               ray_address: str | None = None,
               status: Callable[[str], None] | None = None,
               units: Callable[[str, str], None] | None = None,
               finished: Callable[[int, ScenarioResult], None] | None = None
               ) -> list[ScenarioResult]:
    """Check every scenario with `jobs` workers: local processes, or with `use_ray` Ray
    tasks (on the cluster at `ray_address`, or a local Ray with `jobs` CPUs).  With
    jobs 1 and no Ray, everything runs in this process.  `progress(n)`: n more
    executions ran; `status(text)`: how a DPOR exploration in this process stands;
    `units(key, text)`: how a unit running elsewhere stands ("" once it ended);
    `finished(i, result)`: scenarios[i] is done (in the order they finish)."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}; this version knows: "
                         f"{', '.join(STRATEGIES)}")
    if _here(scenarios, cfg, jobs, use_ray):
        out = []
        for i, s in enumerate(scenarios):
            # Through the module, so a test's monkeypatched check_scenario is the one called.
            out.append(explore.check_scenario(s, cfg, progress, status))
            if finished is not None:
                finished(i, out[-1])
        return out
    heard = _Heard(progress, units)
    with open_runner(jobs, use_ray, ray_address, heard) as runner:
        if cfg.strategy == "dpor":
            return _dpor_each(runner, scenarios, cfg, heard, finished)
        out = []
        for i, s in enumerate(scenarios):
            out.append(portfolio.check_portfolio(s, cfg, runner, progress)
                       if cfg.strategy == portfolio.NAME else _sampled(runner, s, cfg))
            if finished is not None:
                finished(i, out[-1])
        return out


def _here(scenarios: Sequence[Scenario], cfg: CheckConfig, jobs: int, use_ray: bool
          ) -> bool:
    """Whether the scenarios are checked in this process, one after another: with one
    job and no Ray, unless a split or the portfolio asks for a runner; and a
    checkpointed (--state) exploration that is not split (one unit: here its
    checkpointer sees Ctrl-C, check.running.interrupt), whatever `jobs` says."""
    if cfg.strategy == portfolio.NAME:
        return False
    if cfg.strategy != "dpor":
        return jobs <= 1 and not use_ray
    depth = split_depth(cfg, len(scenarios), jobs)
    if cfg.state is not None:
        return not any(_splits(s, cfg, depth) for s in scenarios)
    return jobs <= 1 and not use_ray and not depth


class _Heard:
    """check_many's callbacks as a live.Listener."""

    def __init__(self, progress: Callable[[int], None] | None,
                 units: Callable[[str, str], None] | None) -> None:
        self.progress, self.units = progress, units

    def executions(self, n: int) -> None:
        """Pass `n` on to `progress`."""
        if self.progress is not None:
            self.progress(n)

    def unit(self, key: str, text: str) -> None:
        """Pass a unit's status on to `units`."""
        if self.units is not None:
            self.units(key, text)


def split_depth(cfg: CheckConfig, scenarios: int, width: int) -> int:
    """Frozen nodes of each scenario's DPOR tree (0: one unit per scenario): --split,
    else the depth a resumed checkpoint was split at, else split.AUTO_DEPTH when
    workers would otherwise idle."""
    if cfg.split is not None:
        return cfg.split
    if cfg.resume is not None:
        return int(cfg.resume.get("split", 0))
    return split.AUTO_DEPTH if width > scenarios else 0


def _dpor_each(runner: Runner, scenarios: Sequence[Scenario], cfg: CheckConfig,
               heard: _Heard, finished: Callable[[int, ScenarioResult], None] | None
               ) -> list[ScenarioResult]:
    depth = split_depth(cfg, len(scenarios), runner.width)
    if not depth:
        return _whole(runner, scenarios, cfg, finished)
    out = []
    for i, s in enumerate(scenarios):
        if _splits(s, cfg, depth):
            out.append(split.check_split(s, cfg, runner, depth,
                                         status=lambda text: heard.unit("split", text)))
            heard.unit("split", "")
        else:
            out.append(_whole(runner, [s], cfg)[0])
        if finished is not None:
            finished(i, out[-1])
    return out


def _splits(s: Scenario, cfg: CheckConfig, depth: int) -> bool:
    """Whether `s` is dealt out as subtrees at `depth` (a stateful tree only if asked)."""
    return bool(depth) and not (_auto_split(cfg) and _stateful(s, cfg))


def _whole(runner: Runner, scenarios: Sequence[Scenario], cfg: CheckConfig,
           finished: Callable[[int, ScenarioResult], None] | None = None
           ) -> list[ScenarioResult]:
    """One unit per scenario, each reporting its executions and DPOR status live; with
    more scenarios than workers the costliest are dealt first."""
    work = Ordered(runner, len(scenarios))
    for i, s in enumerate(scenarios):
        work.offer(i, explore.check_scenario, s, cfg, live.report, live.status)
    if 1 < runner.width < len(scenarios):
        work.deal_first(longest_first(scenarios, cfg))
    for i, r in work.finished():
        if finished is not None:
            finished(i, r)
    return work.needed()


_GUESS_STEPS = 5_000          # longest_first's run: the catalog's longest is ~600 steps


def longest_first(scenarios: Sequence[Scenario], cfg: CheckConfig) -> list[int]:
    """Positions of `scenarios` by their guessed DPOR cost, costliest first (longest
    processing time first: the last unit to start should be a short one, not the
    catalog's longest).  A DPOR tree within b preemptions grows about as a run's length
    times the threads to the power b + 1; a stateful exploration (unbounded, with the
    cache) is guessed as one such power, a stateless unbounded one as four.  The
    guess orders units only: results do not depend on it."""
    def cost(s: Scenario) -> float:
        bound = explore.dpor_bounds(s, cfg)[0][-1]
        power = bound + 1 if bound is not None else (
            1 if explore.stateful_dpor(cfg, [None]).cache_states else 4)
        ex = explore.build_execution(s, cfg.policy, RandomStrategy(0), [],
                                     every_step=False)[0]
        # A guess needs no more: a livelocked run stops here, not at a step_bound of
        # millions.
        ex.step_bound = min(ex.step_bound, _GUESS_STEPS)
        ex.run()
        return ex.steps * max(len(s.threads), 1) ** power
    costs = [cost(s) for s in scenarios]
    return sorted(range(len(scenarios)), key=lambda i: (-costs[i], i))


def _auto_split(cfg: CheckConfig) -> bool:
    """The split depth is ours to choose (no --split, no split checkpoint)."""
    return cfg.split is None and cfg.resume is None


def _stateful(s: Scenario, cfg: CheckConfig) -> bool:
    """Whether `s` is explored with state caching.  Such a tree is not split unless
    --split says so: subtrees share no cache, so each would explore again what another
    completed (shared-shadow-inval took 11.4 s split over two workers, 8.3 s whole)."""
    return bool(explore.stateful_dpor(cfg, explore.dpor_bounds(s, cfg)[0]).cache_states)


def _sampled(runner: Runner, s: Scenario, cfg: CheckConfig) -> ScenarioResult:
    t0 = time.perf_counter()
    parts = chunks(cfg.runs, runner.width)
    work = Ordered(runner, len(parts))
    for i, (a, b) in enumerate(parts):
        work.offer(i, run_chunk, s, cfg, a, b, live.report)
    for i, chunk in work.finished():
        if chunk and chunk[-1].outcome is not None:
            work.stop_after(i)             # later chunks cannot count
    runs = [r for chunk in work.needed() for r in chunk]
    return merge_runs(s, cfg, runs, time.perf_counter() - t0)
