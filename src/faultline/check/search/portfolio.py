"""The portfolio: several strategies on one scenario, in slices; the first violation wins.

What lives here: the members (`members`: uniform random, PCT of depth 2 and 3, and
DPOR within the bounds --strategy dpor explores: --preemptions, else the scenario's
stated bound, else unbounded; `bounds_of`), `plan` (the fixed order of slices),
`dpor_slice` (the DPOR member's work unit) and `check_portfolio`.  The budget (--runs
executions in all) is dealt out in rounds; each round gives every member, in member
order, a slice of up to SLICE executions (here for a scenario that states bound 2):

    position  0          1          2          3           4           5  ...
    slice     random     pct-2      pct-3      dpor-2      random      pct-2
              runs 0-19  runs 0-19  runs 0-19  20 execs    runs 20-39  runs 20-39

A sampled member's run i is seeded run_seed(seed, i), as under --strategy random or
--strategy pct --depth d, and its slice stops at its first violation.  The DPOR
member's slices continue one exploration (each returns its path, and the next resumes
from it), so they form a chain.  Once every bound is explored its later slices are
empty (their budget is not handed to other members), and if nothing violates, the
result is exhaustive within the last bound.

Rule kept: the result is the slices before the first violating slice in position
order, plus that slice up to its violation.  Executions, steps and coverage are summed
over those runs.  The counterexample is that violation, minimised, and its options name
the member (`portfolio_member`).  With one worker the slices run in position order.  On
a runner with N workers they run lowest position first, at most a window at once, and
a violating slice cancels the later ones while the earlier ones still finish.  So
nothing in the result depends on timing.  Timing decides only the wall time, the
progress bar, and how much work past the violation is thrown away.  A DPOR chain runs
one slice at a time, so it limits the speed-up with many workers.
Must not be added: members that read the clock or share state, or a budget that
depends on the number of workers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from faultline.check.explore import (
    CheckConfig,
    ScenarioResult,
    dpor_bounds,
    dpor_execution,
    minimise,
)
from faultline.check.judging.coverage import Coverage, tally
from faultline.check.running.runners import Ordered, Runner
from faultline.check.running.setup_image import SetupImage
from faultline.check.running.units import RunSummary, picklable, run_chunk
from faultline.check.search import dpor
from faultline.check.search.strategies import run_seed
from faultline.rt.context import logging_accesses
from faultline.rt.execution import Execution, Hooks, Outcome
from faultline.rt.trace import RunRecord
from faultline.scenario.spec import Scenario

NAME = "portfolio"
SLICE = 20                       # executions per member per round


@dataclass(frozen=True, slots=True)
class Member:
    """One strategy of the portfolio."""

    name: str                    # as in the counterexample's options
    strategy: str                # random, pct or dpor
    depth: int = 3               # PCT bug depth


@dataclass(frozen=True, slots=True)
class Slice:
    """Executions start..start+size-1 of one member (run numbers, if it samples)."""

    member: int
    start: int
    size: int


@dataclass(slots=True)
class DporCursor:
    """Where the DPOR member goes on: the bound in progress and its path (None: the
    bound has not started)."""

    bound_index: int = 0
    nodes: list[dpor.Node] | None = None


@dataclass(slots=True)
class DporSlice:
    """What one slice of the DPOR member did."""

    bound: int | None                       # the bound being explored when it ended
    executions: int = 0
    steps: int = 0
    sleep_blocked: int = 0
    coverage: dict[str, int] = field(default_factory=dict)
    violation: Outcome | None = None
    cursor: DporCursor | None = None        # None: every bound explored, or a violation


def bounds_of(scenario: Scenario, cfg: CheckConfig) -> tuple[int | None, ...]:
    """The DPOR member's preemption bounds, in turn (None: unbounded): those
    --strategy dpor explores for `scenario`, so a proof means the same under both."""
    return tuple(dpor_bounds(scenario, cfg)[0])


def members(cfg: CheckConfig, scenario: Scenario | None = None) -> list[Member]:
    """The members, in the order each round runs them.  The DPOR member is named by
    its bounds; "dpor-scenario" (as --strategy dpor says preemptions=scenario) without
    --preemptions or a scenario to read them from."""
    bounds = cfg.preemptions if scenario is None else bounds_of(scenario, cfg)
    if bounds is None:
        span = "scenario"
    else:
        b = ["unbounded" if k is None else str(k) for k in bounds]
        span = b[0] if len(b) == 1 else f"{b[0]}..{b[-1]}"
    return [Member("random", "random"), Member("pct-2", "pct", 2), Member("pct-3", "pct", 3),
            Member(f"dpor-{span}", "dpor")]


def describe(cfg: CheckConfig) -> str:
    """The members and slice size, for the run description."""
    return f"members={','.join(m.name for m in members(cfg))} slice={SLICE}"


def plan(runs: int, n_members: int, size: int = SLICE) -> list[Slice]:
    """The slices, in position order: rounds of one slice per member until `runs`
    executions are dealt out."""
    out: list[Slice] = []
    given = [0] * n_members
    left = runs
    while left > 0:
        for m in range(n_members):
            n = min(size, left)
            if n == 0:
                break
            out.append(Slice(m, given[m], n))
            given[m] += n
            left -= n
    return out


def dpor_slice(scenario: Scenario, cfg: CheckConfig, bounds: tuple[int | None, ...],
               cursor: DporCursor, budget: int) -> DporSlice:
    """Continue the DPOR member from `cursor` for up to `budget` executions, moving to
    the next bound when one is explored (a work unit; it consumes its cursor)."""
    runs: list[Coverage] = []
    image = SetupImage()

    def make(rec: Hooks) -> Execution:
        ex, cov = dpor_execution(scenario, cfg, rec, image)
        runs.append(cov)
        return ex
    k, nodes = cursor.bound_index, cursor.nodes
    out = DporSlice(bounds[k])
    while out.executions < budget:
        out.bound = bounds[k]
        path = nodes if nodes is not None else []
        # explore() keeps `path` as its node list, and a run cut short by
        # max_executions stops with the next prefix equal to the whole path.
        with logging_accesses(cfg.race_detect):
            r = dpor.explore(make, bound=bounds[k], max_executions=budget - out.executions,
                             optimal=cfg.dpor == "optimal",
                             resume=(path, dpor.DporResult(preemption_bound=bounds[k]),
                                     len(path)), estimate=False)
        out.executions += r.executions
        out.steps += r.steps
        out.sleep_blocked += r.sleep_blocked
        if r.violation is not None:
            out.violation = picklable(r.violation)
            break
        if not r.exhaustive:
            out.cursor = DporCursor(k, path)
            break
        k, nodes = k + 1, None
        if k == len(bounds):
            break
    else:
        out.cursor = DporCursor(k, nodes)        # the budget ran out between two bounds
    for cov in runs:
        tally(out.coverage, cov.labels)
    return out


def check_portfolio(scenario: Scenario, cfg: CheckConfig, runner: Runner,
                    progress: Callable[[int], None] | None = None, slice_size: int = SLICE
                    ) -> ScenarioResult:
    """Run the portfolio on `runner` and merge the slices before the first violation."""
    t0 = time.perf_counter()
    ms, bounds = members(cfg, scenario), bounds_of(scenario, cfg)
    slices = plan(cfg.runs, len(ms), slice_size)
    chain = [p for p, sl in enumerate(slices) if ms[sl.member].strategy == "dpor"]
    work = Ordered(runner, len(slices))
    for p, sl in enumerate(slices):
        m = ms[sl.member]
        if m.strategy != "dpor":
            mcfg = dataclasses.replace(cfg, strategy=m.strategy, depth=m.depth)
            work.offer(p, run_chunk, scenario, mcfg, sl.start, sl.start + sl.size)
    if chain:
        work.offer(chain[0], dpor_slice, scenario, cfg, bounds, DporCursor(),
                   slices[chain[0]].size)
    for p, value in work.finished():
        if isinstance(value, DporSlice):
            _follow(work, scenario, cfg, bounds, slices, chain, p, value)
            n, bad = value.executions, value.violation is not None
        else:
            n, bad = len(value), bool(value) and value[-1].outcome is not None
        if progress is not None:
            progress(n)
        if bad:
            work.stop_after(p)
    return _merge(scenario, cfg, ms, slices, work.needed(), time.perf_counter() - t0)


def _follow(work: Ordered, scenario: Scenario, cfg: CheckConfig,
            bounds: tuple[int | None, ...], slices: list[Slice], chain: list[int], p: int,
            done: DporSlice) -> None:
    """Offer the DPOR member's next slice, or settle the rest of its slices as empty."""
    later = chain[chain.index(p) + 1:]
    if not later:
        return
    if done.cursor is None:
        for q in later:
            work.settle(q, DporSlice(done.bound))
    else:
        work.offer(later[0], dpor_slice, scenario, cfg, bounds, done.cursor,
                   slices[later[0]].size)


def _merge(scenario: Scenario, cfg: CheckConfig, ms: list[Member], slices: list[Slice],
           values: Sequence[list[RunSummary] | DporSlice], seconds: float
           ) -> ScenarioResult:
    coverage: dict[str, int] = {}
    executions = steps = blocked = 0
    ce: RunRecord | None = None
    bound: int | None = None     # set when the DPOR member proved or found something
    proof = False
    for sl, v in zip(slices, values):
        member = ms[sl.member].name
        if isinstance(v, DporSlice):
            executions, steps, blocked = (executions + v.executions, steps + v.steps,
                                          blocked + v.sleep_blocked)
            for label, n in v.coverage.items():
                coverage[label] = coverage.get(label, 0) + n
            proof = v.cursor is None and v.violation is None
            if proof or v.violation is not None:
                bound = v.bound
            if v.violation is not None:
                ce = _record(scenario, cfg, v.violation, member, preemption_bound=v.bound)
            continue
        for r in v:
            executions, steps = executions + 1, steps + r.steps
            tally(coverage, r.labels)
            if r.outcome is not None:
                bound = None
                ce = _record(scenario, cfg, r.outcome, member,
                             run_seed=run_seed(cfg.seed, r.index))
    return ScenarioResult(scenario.name, cfg.policy, NAME,
                          "pass" if ce is None else "violation", executions, steps, seconds,
                          coverage, scenario.expect.get(cfg.policy), ce,
                          exhaustive=proof and ce is None, preemption_bound=bound,
                          sleep_blocked=blocked)


def _record(scenario: Scenario, cfg: CheckConfig, outcome: Outcome, member: str,
            **options: object) -> RunRecord:
    return minimise(scenario, cfg, outcome, strategy=NAME, seed=None,
                    options={"portfolio_member": member, **options})
