"""Work stealing inside one DPOR tree: the top of the tree dealt out as subtrees.

What lives here: `explore_subtree` (the work unit: DPOR below one frozen path) and
`check_split` (deals subtrees to a runner's workers and merges them).  The first
`depth` scheduling points of the tree are frozen.  A unit follows its root (a list of
thread choices), extends it by the default choices to `depth` nodes, and explores
everything below that path exactly as `dpor.explore` would.  Races that ask for a
different thread at a frozen node are not explored there but returned as branches;
each branch becomes a new unit, rooted at the path up to that node plus the thread.

    position 0: root []        --> frozen path [0, 0, 1, 1], branches {(1, 1), (3, 0)}
    position 1: root [0, 1]    --> frozen path [0, 1, 1, 0], branches {...}
    position 2: root [0, 0, 1, 0] ...

Frozen nodes carry no sleep sets or wakeup trees, since a subtree explored by another
worker cannot be known to be finished, so a split exploration runs at least as many
executions as a sequential one (redundant runs, never missing ones: the branches at a
frozen node are the union of what every subtree's races asked for).  Units are merged
strictly in position order, and a unit's positions are numbered as its parent is
merged, so totals, the counterexample (the first violating unit in position order)
and where a capped run stops never depend on the runner, the number of workers or
timing.  They do depend on `depth`: `--split 0` is the sequential exploration.
Two roots whose default extensions meet run the same subtree; the later one in
position order is dropped when merged (and not offered when that is already known).
A unit runs at most SLICE_RUNS runs, then pauses (`Paused`: its DPOR path, exactly as a
checkpoint holds one) and its position is offered again to go on from there; a
stateful unit (it would lose its state cache) never pauses.  So no unit keeps its
work out of reach for long: the first subtree is often most of the tree.  Slices count
runs, never seconds, and a resumed path goes on exactly as it would have, so pausing
changes no result.  Units report each run as it happens (check.running.live).
With --state, the merged state is checkpointed (`_SplitCheckpoint`): the roots
offered, the frozen paths merged, the totals, and the paths of paused units, as the
exploration starts, then every checkpoint_seconds (as units merge or pause, or while
waiting for them), when a bound ends, when it stops for any reason (with its outcome,
which --resume then reports again) and on Ctrl-C.  Units are deterministic, so --resume
re-offers every root not yet merged (from where it paused, if it did) and reaches the
totals of an uninterrupted run; what a worker did since a unit last paused is run again.
Must not be added: shared state between units, or merging in finishing order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from faultline.check.explore import (
    CACHE_STRIDE,
    CheckConfig,
    ScenarioResult,
    dpor_bounds,
    dpor_execution,
    first_checkpoint,
    minimise,
    stateful_dpor,
    violation_of,
)
from faultline.check.judging.coverage import Coverage, tally
from faultline.check.running import interrupt, live
from faultline.check.running.runners import Ordered, Runner
from faultline.check.running.setup_image import SetupImage
from faultline.check.running.units import picklable
from faultline.check.search import dpor
from faultline.rt.context import logging_accesses
from faultline.rt.execution import Execution, Hooks, Outcome
from faultline.rt.trace import schedule_to_str
from faultline.scenario.spec import Scenario

# Frozen scheduling points when --split is not given and there are more workers than
# scenarios.  Deep enough that the catalog's trees fall into tens of subtrees (a few
# per worker), shallow enough that the runs frozen nodes cannot prune stay few.
AUTO_DEPTH = 6
_OPEN = 1 << 62                  # Ordered's limit while the number of units is unknown
# Runs a unit makes before it pauses: a few seconds of work (cow-rename's first subtree
# is 7,000 of its 8,700 runs, 80 s), small next to what a pause costs (its path, sent
# back and forth once).
SLICE_RUNS = 200


@dataclass(slots=True)
class Paused:
    """Where a paused unit goes on: its DPOR path and counters (dpor.explore's resume
    triple; trace fingerprints left out, they went back with the slice) and the
    coverage of its runs so far."""

    nodes: list[dpor.Node]
    res: dpor.DporResult
    prefix_len: int
    coverage: dict[str, int]


class _Pause(Exception):
    """Raised between two runs once a unit's slice is used up."""

    def __init__(self, nodes: list[dpor.Node], res: dpor.DporResult, prefix_len: int) -> None:
        super().__init__()
        self.nodes, self.res, self.prefix_len = nodes, res, prefix_len


@dataclass(slots=True)
class Subtree:
    """What one unit explored: its frozen path, totals, and the branches it asks for.
    A paused unit's (`paused` set) are its totals so far, but for `traces`, which are
    the fingerprints of this slice alone."""

    root: tuple[int, ...]
    path: tuple[int, ...]
    executions: int = 0
    sleep_blocked: int = 0
    steps: int = 0
    cache_hits: int = 0
    exhaustive: bool = True
    violation: Outcome | None = None
    coverage: dict[str, int] = field(default_factory=dict)
    traces: set[int] = field(default_factory=set)
    branches: list[tuple[int, int]] = field(default_factory=list)
    paused: Paused | None = None


def explore_subtree(scenario: Scenario, cfg: CheckConfig, bound: int | None,
                    root: tuple[int, ...], depth: int,
                    progress: Callable[[int], None] | None = None,
                    paused: Paused | None = None, slice_runs: int | None = None) -> Subtree:
    """DPOR below the frozen path that starts with `root` (a unit: deterministic, its
    return value its only effect), going on from `paused` if given; with `slice_runs`
    it pauses after that many runs (not when caching states: the cache would be lost).
    `progress(1)` as each run starts (check.running.live.report)."""
    runs: list[Coverage] = []
    coverage = {} if paused is None else dict(paused.coverage)
    image = SetupImage()

    def make(rec: Hooks) -> Execution:
        ex, cov = dpor_execution(scenario, cfg, rec, image)
        runs.append(cov)
        if progress is not None:
            progress(1)
        return ex
    first = 0 if paused is None else paused.res.runs()

    def between(nodes: list[dpor.Node], res: dpor.DporResult, prefix_len: int) -> None:
        if slice_runs is not None and res.runs() - first >= slice_runs:
            raise _Pause(nodes, res, prefix_len)
    pause: _Pause | None = None
    with logging_accesses(cfg.race_detect):
        try:
            r = dpor.explore(make, bound=bound, max_executions=cfg.max_executions,
                             optimal=cfg.dpor == "optimal", cache_states=cfg.cache_states,
                             cache_stride=CACHE_STRIDE, root=root, split=depth,
                             estimate=False, between=None if cfg.cache_states else between,
                             resume=None if paused is None else
                             (paused.nodes, paused.res, paused.prefix_len))
        except _Pause as e:
            pause, r = e, e.res
    for cov in runs:            # between runs: the last run's coverage is complete
        tally(coverage, cov.labels)
    keys, r.trace_keys = r.trace_keys, set()
    return Subtree(root, tuple(r.root), r.executions, r.sleep_blocked, r.steps,
                   r.cache_hits, r.exhaustive,
                   None if r.violation is None else picklable(r.violation),
                   coverage, keys, sorted(r.branches),
                   None if pause is None else
                   Paused(pause.nodes, r, pause.prefix_len, dict(coverage)))


def check_split(scenario: Scenario, cfg: CheckConfig, runner: Runner, depth: int,
                status: Callable[[str], None] | None = None) -> ScenarioResult:
    """Explore `scenario` with its tree's first `depth` nodes split into subtrees run
    on `runner`, for each preemption bound in turn; stop at the first violation.
    `status(text)`: how the exploration stands, as units merge or pause."""
    t0 = time.perf_counter()
    bounds, reason = dpor_bounds(scenario, cfg)
    cfg = stateful_dpor(cfg, bounds)
    ck = _SplitCheckpoint(scenario, cfg, depth, bounds)
    total = ck.total                   # the bounds done (a resumed run's included)
    bound: int | None = ck.bound       # a finished run's, resumed
    with ck.interruptible():
        for k in range(ck.start, len(bounds)):
            bound = bounds[k]
            ck.bound_index = k
            where = _Where(scenario.name, bound, status)
            part, n = _explore_split(scenario, cfg, runner, bound, depth, ck, where)
            ck.units += n
            _add(total, part)
            total.exhaustive = part.exhaustive
            if part.violation is not None or not part.exhaustive:
                break
            ck.bound_done(k + 1)
        ck.finish(bound)
    ce = None
    if total.violation is not None:
        ce = minimise(scenario, cfg, total.violation, strategy="dpor", seed=None,
                      options={"preemption_bound": bound})
    return ScenarioResult(scenario.name, cfg.policy, "dpor",
                          "pass" if ce is None else "violation", total.executions,
                          total.steps, time.perf_counter() - t0, total.coverage,
                          scenario.expect.get(cfg.policy), ce,
                          exhaustive=total.exhaustive and ce is None,
                          preemption_bound=bound, sleep_blocked=total.sleep_blocked,
                          bound_reason=reason, traces=len(total.traces), subtrees=ck.units,
                          cache_hits=total.cache_hits if cfg.cache_states else None)


@dataclass(slots=True)
class _Where:
    """A split exploration's status line: subtrees merged of those found so far (the
    only honest measure of how far it is: new subtrees appear as races are found)."""

    name: str
    bound: int | None
    status: Callable[[str], None] | None

    def tell(self, merged: int, roots: int, total: Subtree) -> None:
        if self.status is None:
            return
        within = "" if self.bound is None else f" (<= {self.bound} preemptions)"
        self.status(f"{self.name}{within}, split: {merged:,} of {roots:,} subtrees found so "
                    f"far merged, {len(total.traces):,} distinct traces in them")


def _explore_split(scenario: Scenario, cfg: CheckConfig, runner: Runner,
                   bound: int | None, depth: int, ck: _SplitCheckpoint | None = None,
                   where: _Where | None = None) -> tuple[Subtree, int]:
    """One bound: every subtree, merged in position order (from where `ck` resumes
    it, if it does).  Returns the merged totals (exhaustive unless a violation or the
    execution cap stopped it) and the number of subtrees merged."""
    work = Ordered(runner, _OPEN)
    roots: list[tuple[int, ...]] = [()]
    explored: dict[tuple[int, ...], tuple[int, ...]] = {}   # frozen path -> its root
    total = Subtree((), ())
    merged = 0
    partial: dict[int, Subtree] = {}      # position -> its unit's last pause
    traces: dict[int, set[int]] = {}      # position -> fingerprints of its slices so far
    if ck is not None and ck.current is not None:
        roots, explored, total, merged, partial = ck.take_current(bound)

    def offer(pos: int) -> None:
        p = partial.get(pos)
        work.again(pos, explore_subtree, scenario, cfg, bound, roots[pos], depth,
                   live.report, None if p is None else p.paused, SLICE_RUNS)
    for pos in range(merged, len(roots)):
        offer(pos)
    offered = set(roots)
    done: dict[int, Subtree] = {}

    def save_if_due() -> None:
        # Between merges (while waiting for units, too) the merged state is consistent.
        if ck is not None:
            ck.maybe_save(roots, explored, total, merged, partial)
    # While units run, every runners.POLL_SECONDS: is a checkpoint due, Ctrl-C pressed?
    for pos, sub in work.finished(idle=save_if_due if ck is not None else None):
        traces.setdefault(pos, set()).update(sub.traces)
        if sub.paused is not None:
            partial[pos] = sub
            offer(pos)
            save_if_due()
            continue
        partial.pop(pos, None)
        sub.traces = traces.pop(pos)
        done[pos] = sub
        while merged in done:
            sub = done.pop(merged)
            stop = _merge(total, sub, explored, cfg)
            if stop:
                work.stop_after(merged)
                return total, len(explored)
            for k, q in sub.branches:
                child = (*sub.path[:k], q)
                if child in offered or _runs_as(child, explored):
                    continue
                offered.add(child)
                roots.append(child)
                offer(len(roots) - 1)
            merged += 1
            if merged == len(roots):
                work.stop_after(merged - 1)    # the closure is complete
                return total, len(explored)
        if where is not None:
            where.tell(merged, len(roots), total)
        save_if_due()
    raise RuntimeError("bug in faultline: split exploration ended with units unmerged")


def _merge(total: Subtree, sub: Subtree, explored: dict[tuple[int, ...], tuple[int, ...]],
           cfg: CheckConfig) -> bool:
    """Fold one unit into the totals (unless its subtree ran already); True if the
    exploration must stop here (a violation, or the execution cap reached)."""
    if sub.path in explored:
        return False                     # the same subtree as an earlier unit
    explored[sub.path] = sub.root
    _add(total, sub)
    if sub.violation is not None:
        total.exhaustive = False
        return True
    if not sub.exhaustive or (cfg.max_executions is not None
                              and total.executions >= cfg.max_executions):
        total.exhaustive = False
        return True
    return False


def _runs_as(child: tuple[int, ...], explored: dict[tuple[int, ...], tuple[int, ...]]
             ) -> bool:
    """Would the unit rooted at `child` extend to a frozen path already explored (by a
    unit whose root is a prefix of child, child being a prefix of its path)?"""
    for path, root in explored.items():
        if len(root) <= len(child) <= len(path) and path[:len(child)] == child:
            return True
    return False


def _add(total: Subtree, sub: Subtree) -> None:
    total.executions += sub.executions
    total.sleep_blocked += sub.sleep_blocked
    total.steps += sub.steps
    total.cache_hits += sub.cache_hits
    total.traces |= sub.traces
    for label, n in sub.coverage.items():
        total.coverage[label] = total.coverage.get(label, 0) + n
    if sub.violation is not None and total.violation is None:
        total.violation = sub.violation


class _SplitCheckpoint:
    """--state / --resume for a split exploration.  The file records the run (as every
    checkpoint does, checkpoint.run_header), the split depth, the totals of the bounds
    finished, and for the bound in progress its roots in position order, the frozen
    paths merged (with their roots), how many units merged and their totals, and each
    paused unit's path, totals and branches so far (`partial`); once the exploration
    stopped, its outcome (`finished`).  Written as the exploration starts, then at most
    every checkpoint_seconds as units merge or pause or while waiting for them, as a
    bound ends, when it stops (any reason) and on Ctrl-C (check.running.interrupt).
    Traces are not kept: a resumed run's trace count covers its own part only."""

    def __init__(self, scenario: Scenario, cfg: CheckConfig, depth: int,
                 bounds: list[int | None] | None = None) -> None:
        self.scenario, self.cfg, self.depth = scenario, cfg, depth
        self.bounds = dpor_bounds(scenario, cfg)[0] if bounds is None else bounds
        self.total = Subtree((), ())       # bounds finished
        self.units = 0                     # subtrees merged in them
        self.start = self.bound_index = 0
        self.bound: int | None = None      # a finished run's last bound
        self.current: dict[str, Any] | None = None
        self.due = time.monotonic() + first_checkpoint(cfg)
        if cfg.resume is not None:
            self._load(cfg.resume)
        if cfg.state:
            # At once: the file exists (and its path is known to work) from the start.
            self._save(self.start, self.current)
            self.due = time.monotonic() + first_checkpoint(cfg)

    def _load(self, doc: dict[str, Any]) -> None:
        from faultline.check.running.checkpoint import check_belongs
        check_belongs(doc, self.scenario, self.cfg, self.depth)
        self.total = _totals_in(doc["totals"])
        self.units = doc["totals"]["subtrees"]
        self.start = doc["bound_index"]
        self.current = doc["current"]
        fin = doc.get("finished")
        if fin is not None:           # it ran to its end: report that outcome again
            self.start = len(self.bounds)
            self.total.exhaustive = fin["exhaustive"]
            self.bound = fin["preemption_bound"]
            if fin["violation"] is not None:
                self.total.violation = violation_of(self.scenario, self.cfg,
                                                    fin["violation"])

    def interruptible(self) -> AbstractContextManager[None]:
        """Where Ctrl-C stops at the next merge with a checkpoint (with --state)."""
        return interrupt.deferred(self._hint()) if self.cfg.state else nullcontext()

    def _hint(self) -> str:
        return (f"checkpoint saved in {self.cfg.state}; faultline check --resume "
                f"{self.cfg.state} continues")

    def take_current(self, bound: int | None
                     ) -> tuple[list[tuple[int, ...]], dict[tuple[int, ...], tuple[int, ...]],
                                Subtree, int, dict[int, Subtree]]:
        """The bound in progress as the checkpoint left it (once: later bounds start
        afresh): roots, merged frozen paths -> roots, merged totals, units merged, and
        the paused units by position."""
        cur = self.current
        assert cur is not None
        self.current = None
        roots = [tuple(r) for r in cur["roots"]]
        explored = {tuple(p): tuple(r) for p, r in cur["explored"]}
        partial = {pos: _partial_in(roots[pos], d, bound) for pos, d in cur["partial"]}
        return roots, explored, _totals_in(cur["totals"]), cur["merged"], partial

    def maybe_save(self, roots: list[tuple[int, ...]],
                   explored: dict[tuple[int, ...], tuple[int, ...]], total: Subtree,
                   merged: int, partial: dict[int, Subtree]) -> None:
        if not self.cfg.state:
            return
        stop = interrupt.requested()
        if stop or time.monotonic() >= self.due:
            self._save(self.bound_index, {
                "roots": [list(r) for r in roots],
                "explored": [[list(p), list(r)] for p, r in explored.items()],
                "merged": merged, "totals": _totals_out(total, len(explored)),
                "partial": [[pos, _partial_out(partial[pos])] for pos in sorted(partial)
                            if pos >= merged]})
        if stop:
            raise interrupt.Interrupted(self._hint())

    def bound_done(self, next_index: int) -> None:
        if self.cfg.state and next_index < len(self.bounds):    # the last: see finish
            self._save(next_index, None)

    def finish(self, bound: int | None) -> None:
        """The exploration stopped (every bound done, a violation, the cap) within
        `bound`: save that, so that --resume reports the same outcome again."""
        if self.cfg.state:
            t = self.total
            v = None if t.violation is None else schedule_to_str(t.violation.schedule)
            self._save(len(self.bounds), None, {"exhaustive": t.exhaustive,
                                                "preemption_bound": bound, "violation": v})

    def _save(self, index: int, current: dict[str, Any] | None,
              finished: dict[str, Any] | None = None) -> None:
        # The bounds done (self.total, self.units) and the one in progress (current).
        from faultline.check.running.checkpoint import run_header, write_atomically
        write_atomically(self.cfg.state, {  # type: ignore[arg-type]
            **run_header(self.scenario, self.cfg), "split": self.depth,
            "bound_index": index, "totals": _totals_out(self.total, self.units),
            "current": current, "finished": finished})
        self.due = time.monotonic() + self.cfg.checkpoint_seconds


def _totals_out(t: Subtree, units: int) -> dict[str, Any]:
    return {"executions": t.executions, "sleep_blocked": t.sleep_blocked, "steps": t.steps,
            "cache_hits": t.cache_hits, "coverage": t.coverage, "subtrees": units}


def _totals_in(d: dict[str, Any]) -> Subtree:
    return Subtree((), (), executions=d["executions"], sleep_blocked=d["sleep_blocked"],
                   steps=d["steps"], cache_hits=d["cache_hits"], coverage=dict(d["coverage"]))


def _partial_out(sub: Subtree) -> dict[str, Any]:
    """A paused unit as checkpoint data: its path, counters, coverage and branches."""
    from faultline.check.running.checkpoint import dump_path
    p = sub.paused
    assert p is not None
    return {"nodes": dump_path(p.nodes), "prefix_len": p.prefix_len,
            "totals": {"executions": p.res.executions, "sleep_blocked": p.res.sleep_blocked,
                       "steps": p.res.steps, "cache_hits": p.res.cache_hits,
                       "coverage": p.coverage},
            "branches": sorted([k, q] for k, q in p.res.branches)}


def _partial_in(root: tuple[int, ...], d: dict[str, Any], bound: int | None) -> Subtree:
    """Inverse of _partial_out: a Subtree whose unit goes on from its pause."""
    from faultline.check.running.checkpoint import load_path
    t = d["totals"]
    res = dpor.DporResult(executions=t["executions"], sleep_blocked=t["sleep_blocked"],
                          steps=t["steps"], cache_hits=t["cache_hits"],
                          preemption_bound=bound,
                          branches={(k, q) for k, q in d["branches"]})
    paused = Paused(load_path(d["nodes"]), res, d["prefix_len"], dict(t["coverage"]))
    return Subtree(root, (), res.executions, res.sleep_blocked, res.steps, res.cache_hits,
                   coverage=dict(t["coverage"]), paused=paused)
