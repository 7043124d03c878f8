"""The outer loop: run a scenario's executions under a strategy and gather a verdict.

What lives here: `CheckConfig` (what to run, with defaults; FAULTLINE_* settings are
read when one is made, a bad one is a SettingError), `run_once` (one execution with the
verdict observers: witness, structural invariants, memory oracle, coverage, and
optionally a trace recorder), `check_scenario` (N seeded executions, stopping at the
first violation, or DPOR with its checkpointer), `minimise` (shrinking within the
config's budget) and what resuming a checkpoint replays (`enabled_along`,
`violation_of`).  Rule kept: a run is fully described by (scenario, policy, strategy,
seed or schedule); counterexamples are re-run with a recorder attached rather than
recorded during exploration; wall clock decides only when to checkpoint and when
shrinking's safety net stops it (reported), never a result otherwise.
Must not be added: rendering (report) or CLI parsing.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from faultline import __version__
from faultline.check.judging.coverage import Coverage, tally
from faultline.check.judging.invariants import StructureChecker, explain_va
from faultline.check.judging.racedetect import RaceDetector
from faultline.check.running import interrupt
from faultline.check.running.setup_image import SetupImage
from faultline.check.search import dpor
from faultline.check.search.gauge import Gauge
from faultline.check.search.shrink import Budget, Shrunk, attempt
from faultline.check.search.shrink import shrink as shrink_schedule
from faultline.check.search.strategies import PctStrategy, RandomStrategy, ReplayStrategy, run_seed
from faultline.kern.vm_map import NotModelled
from faultline.rt.context import logging_accesses
from faultline.rt.execution import Execution, Hooks, Outcome, ReplayDivergence, Strategy
from faultline.rt.trace import Event, RunRecord, TraceRecorder, schedule_to_str
from faultline.rt.witness import Witness
from faultline.scenario.oracle import MemoryOracle
from faultline.scenario.spec import Scenario
from faultline.scenario.world import World


class SettingError(ValueError):
    """A FAULTLINE_* environment variable that is not a number in range (bad input)."""


def _env_number(name: str, default: float, lo: float, integral: bool = False
                ) -> Callable[[], Any]:
    """A default_factory: the number in environment variable `name` (at least `lo`),
    else `default`.  Read when a CheckConfig is made, not when this module is imported,
    so that a bad value is an error the CLI reports, not a traceback at import."""
    def read() -> float | int:
        text = os.environ.get(name)
        if text is None or text.strip() == "":
            return default
        try:
            value: float | int = int(text) if integral else float(text)
        except ValueError:
            value = lo - 1
        if not value >= lo:             # also NaN
            kind = "an integer" if integral else "a number"
            raise SettingError(f"environment variable {name}={text!r}: expected {kind} "
                               f">= {lo:g}")
        return value
    return read


@dataclass(slots=True)
class CheckConfig:
    """How to check.  Defaults: policy sbusy, strategy random, 500 runs, seed 1,
    invariants after every step (unless the scenario's [check] says at the end), 8
    pv-list locks."""

    policy: str = "sbusy"
    strategy: str = "random"
    runs: int = 500
    seed: int = 1
    every_step: bool = True
    npv_locks: int = 8
    depth: int = 3                 # PCT bug depth (--depth)
    dpor: str = "optimal"          # DPOR flavour (--dpor): optimal or source
    # Bounds to run in turn (None in it: unbounded); None: the scenario's stated bound,
    # or DEFAULT_PREEMPTIONS if it states none (the verdict's bound_reason says so).
    preemptions: tuple[int | None, ...] | None = None
    max_executions: int | None = None            # DPOR: stop (not exhaustive) after this
    shrink: bool = True            # minimise counterexamples (--no-shrink)
    # Shrinking's budget (check.search.shrink.Budget): executions, the limit that decides
    # the shrunk result (--shrink-budget; FAULTLINE_SHRINK_EXECUTIONS, default 2000), and
    # seconds, a safety net whose hitting the counterexample reports (--shrink-seconds;
    # FAULTLINE_SHRINK_SECONDS, default 60).
    shrink_executions: int = field(
        default_factory=_env_number("FAULTLINE_SHRINK_EXECUTIONS", 2000, 1, integral=True))
    shrink_seconds: float = field(
        default_factory=_env_number("FAULTLINE_SHRINK_SECONDS", 60.0, 0.0))
    state: str | None = None       # DPOR: checkpoint file (--state)
    resume: dict[str, Any] | None = None   # DPOR: a loaded checkpoint (--resume)
    # DPOR with --state: seconds between checkpoints (FAULTLINE_CHECKPOINT_SECONDS,
    # default 30; the first after FIRST_CHECKPOINT_SECONDS at most); one is also written
    # as the exploration starts, as each bound ends, and when it stops for any reason.
    checkpoint_seconds: float = field(
        default_factory=_env_number("FAULTLINE_CHECKPOINT_SECONDS", 30.0, 0.0))
    race_detect: bool = False      # check the locking discipline (--race-detect)
    # DPOR: cut runs at states explored completely before (--cache-states); always
    # source-DPOR (docs/state-caching.md).  None: only where the exploration is
    # unbounded, which retry loops make endless without it (stateful_dpor).
    cache_states: bool | None = None
    # DPOR: frozen scheduling points whose subtrees are dealt out to workers (--split;
    # check.search.split); None: split.AUTO_DEPTH when workers outnumber scenarios, else 0.
    split: int | None = None


@dataclass(slots=True)
class RunResult:
    """One execution: its outcome, the paths it reached, and (if recorded) its trace."""

    outcome: Outcome
    coverage: set[str]
    events: list[Event] = field(default_factory=list)
    accesses: int = 0


def build_execution(scenario: Scenario, policy: str, strategy: Strategy,
                    first: list[Hooks], *, every_step: bool = True, npv_locks: int = 8,
                    race_detect: bool = False, checked_from: int = 0,
                    image: SetupImage | None = None
                    ) -> tuple[Execution, Coverage, MemoryOracle]:
    """A fresh execution of `scenario` with every verdict observer attached after the
    observers in `first` (a trace recorder, a DPOR path...), ready to run.  With
    `race_detect` the race detector comes first among them (a race is the root cause of
    whatever else breaks in its step); run it inside rt.context.logging_accesses().
    With `image` (not yet taken; `first` is empty, or DPOR's path recorder alone as
    `strategy`), the run takes it when its setup is done."""
    world = World(scenario, policy, npv_locks)
    vm = world.vm
    cov = Coverage()
    oracle = MemoryOracle(scenario, functools.partial(explain_va, vm))
    race: list[Hooks] = [RaceDetector()] if race_detect else []
    # End-of-run invariants if the caller (--end-invariants) or the scenario asks.
    every_step = every_step and not scenario.check.end_invariants
    verdicts: list[Hooks] = [oracle, cov, Witness(), StructureChecker(vm, every_step, checked_from)]
    observers: list[Hooks] = [*first, *race, *verdicts]
    if image is not None and not image.tried:
        rec = strategy if isinstance(strategy, dpor._PathStrategy) else None
        assert first == ([rec] if rec is not None else []) and not race
        observers.append(image.taker(world, verdicts, rec))
    ex = Execution(strategy, observers, scenario.step_bound)
    ex.spawn("setup", "-", world.setup())
    return ex, cov, oracle


T = TypeVar("T")


def _verdict(observers: list[Hooks], kind: type[T]) -> T:
    """The verdict observer of type `kind` among a run's (one restored from a setup
    image comes with its own, unpickled)."""
    return cast(T, next(o for o in observers if type(o) is kind))


def run_once(scenario: Scenario, policy: str, strategy: Strategy, *, record: bool = False,
             every_step: bool = True, npv_locks: int = 8,
             extra: list[Hooks] | None = None, race_detect: bool = False,
             image: SetupImage | None = None) -> RunResult:
    """Run one execution of `scenario` under `strategy`, checking every property
    (and, with `race_detect`, the locking discipline).  With `image` (one per series
    of seeded runs with the same settings, and neither a trace nor extra observers),
    the first run takes it and later ones start after the setup instead of running it
    (check.running.setup_image)."""
    recorder = TraceRecorder() if record else None
    first: list[Hooks] = [recorder] if recorder is not None else []
    if record or extra or race_detect:
        image = None                    # the image holds the verdict observers only
    with logging_accesses(race_detect):
        restored = image.start(strategy, scenario.step_bound) if image is not None else None
        if restored is not None:
            ex, verdicts = restored
            cov, oracle = _verdict(verdicts, Coverage), _verdict(verdicts, MemoryOracle)
        else:
            ex, cov, oracle = build_execution(scenario, policy, strategy,
                                              [*first, *(extra or [])],
                                              every_step=every_step, npv_locks=npv_locks,
                                              race_detect=race_detect, image=image)
        outcome = ex.run()
    return RunResult(outcome, cov.labels, recorder.events if recorder else [],
                     oracle.accesses)


@dataclass(slots=True)
class ScenarioResult:
    """The verdict of checking one scenario under one policy."""

    scenario: str
    policy: str
    strategy: str
    verdict: str
    executions: int
    steps: int
    seconds: float
    coverage: dict[str, int]
    expected: str | None
    counterexample: RunRecord | None = None
    exhaustive: bool = False
    preemption_bound: int | None = None
    sleep_blocked: int = 0
    bound_reason: str | None = None     # why the scenario's stated bound is enough
    traces: int | None = None           # DPOR: distinct traces run (progress figure; not
                                        # in JSON, a resumed run counts only its own part)
    cache_hits: int | None = None       # DPOR with cache_states: runs cut at a cached state
    subtrees: int | None = None         # DPOR split into subtrees (check.search.split): how many

    def to_json(self) -> dict[str, object]:
        """The --json form (no wall time: output must be byte-identical across runs)."""
        out: dict[str, object] = {
            "scenario": self.scenario, "policy": self.policy, "strategy": self.strategy,
            "verdict": self.verdict, "executions": self.executions, "steps": self.steps,
            "expected": self.expected, "exhaustive": self.exhaustive,
            "preemption_bound": self.preemption_bound, "sleep_blocked": self.sleep_blocked,
            "bound_reason": self.bound_reason,
            "coverage": dict(sorted(self.coverage.items())),
        }
        if self.cache_hits is not None:       # only with --cache-states: older output unchanged
            out["cache_hits"] = self.cache_hits
        if self.subtrees is not None:         # only when split: older output unchanged
            out["subtrees"] = self.subtrees
        if self.counterexample is not None:
            ce = self.counterexample
            shown: dict[str, object] = {"seed": ce.seed, "schedule": ce.schedule,
                                        "violation": ce.violation}
            if "shrink_stopped" in ce.options:     # only then: older output unchanged
                shown["shrink_stopped"] = ce.options["shrink_stopped"]
            out["counterexample"] = shown
        return out


STRATEGIES = ("random", "pct", "dpor")
DPOR_FLAVOURS = ("optimal", "source")
# --cache-states keys every 4th scheduling point: a key costs as much as 40 to 80 model steps, and
# keying at every branching point took 1.4 to 2 times as long (docs/state-caching.md, section 1).
CACHE_STRIDE = 4


def make_strategy(name: str, seed: str, depth: int = 3, k: int = 2000) -> Strategy:
    """The strategy called `name`, seeded (PCT: bug depth `depth`, `k` steps)."""
    if name == "random":
        return RandomStrategy(seed)
    if name == "pct":
        return PctStrategy(seed, depth, k)
    if name == "dpor":
        raise ValueError("dpor is an exploration, not a per-run strategy")
    raise ValueError(f"unknown strategy {name!r}; this version knows: {', '.join(STRATEGIES)}")


def check_scenario(scenario: Scenario, cfg: CheckConfig,
                   progress: Callable[[int], None] | None = None,
                   status: Callable[[str], None] | None = None) -> ScenarioResult:
    """Check one scenario with the configured strategy (seeded runs, or DPOR).
    `progress(n)`: n more executions done; `status(text)`: how a DPOR run stands."""
    with logging_accesses(cfg.race_detect):
        if cfg.strategy == "dpor":
            return check_scenario_dpor(scenario, cfg, progress, status)
        return check_scenario_sampled(scenario, cfg, progress)


def check_scenario_dpor(scenario: Scenario, cfg: CheckConfig,
                        progress: Callable[[int], None] | None = None,
                        status: Callable[[str], None] | None = None) -> ScenarioResult:
    """Explore the scenario with optimal or source DPOR, for each preemption bound in
    turn (iterative deepening) or unbounded; stop at the first violation."""
    t0 = time.perf_counter()
    bounds, reason = dpor_bounds(scenario, cfg)
    cfg = stateful_dpor(cfg, bounds)
    ck = _Checkpointer(scenario, cfg, bounds)
    runs: list[Coverage] = []
    image = SetupImage()                # every bound's runs start after the same setup

    def make(rec: Hooks) -> Execution:
        ex, cov = dpor_execution(scenario, cfg, rec, image)
        runs.append(cov)
        if progress is not None:
            progress(1)
        return ex

    gauges: list[Gauge] = []            # one per bound: each is its own tree

    def between(nodes: list[dpor.Node], res: dpor.DporResult, prefix_len: int) -> None:
        ck.fold(runs)
        ck.maybe_save(nodes, res, prefix_len)
        if status is not None:
            gauges[-1].add(res.runs(), res.explored_share, res.pending)
            status(dpor_status(scenario.name, res, gauges[-1].total()))
    total = ck.total
    traces: set[int] = set()
    with ck.interruptible():
        for k in range(ck.start, len(bounds)):
            ck.bound_index = k
            gauges.append(Gauge())
            r = dpor.explore(make, bound=bounds[k], max_executions=cfg.max_executions,
                             optimal=cfg.dpor == "optimal", between=between,
                             resume=ck.resume_point() if k == ck.start else None,
                             cache_states=cfg.cache_states, cache_stride=CACHE_STRIDE,
                             estimate=status is not None)
            ck.fold(runs)
            total.cache_hits += r.cache_hits
            total.executions += r.executions
            total.sleep_blocked += r.sleep_blocked
            total.steps += r.steps
            traces |= r.trace_keys
            total.exhaustive, total.preemption_bound = r.exhaustive, r.preemption_bound
            if r.violation is not None:
                total.violation = r.violation
                break
            ck.bound_done(k + 1)
        ck.finish()
    coverage = ck.coverage
    ce = None
    if total.violation is not None:
        ce = minimise(scenario, cfg, total.violation, strategy="dpor", seed=None,
                      options={"preemption_bound": total.preemption_bound})
    return ScenarioResult(scenario.name, cfg.policy, "dpor",
                          "pass" if ce is None else "violation", total.executions,
                          total.steps, time.perf_counter() - t0, coverage,
                          scenario.expect.get(cfg.policy), ce,
                          exhaustive=total.exhaustive and ce is None,
                          preemption_bound=total.preemption_bound,
                          sleep_blocked=total.sleep_blocked, bound_reason=reason,
                          traces=len(traces),
                          cache_hits=total.cache_hits if cfg.cache_states else None)


def stateful_dpor(cfg: CheckConfig, bounds: list[int | None]) -> CheckConfig:
    """`cfg` with `cache_states` decided and the DPOR flavour that goes with it.  Left
    to us (None), states are cached when the exploration is unbounded: there a retry
    loop's every extra trip is a new trace, and only converging states end them
    (docs/state-caching.md); within a small preemption bound the trees are small and
    stateless optimal DPOR does less work.  Not with --race-detect, whose detector
    has no canonical state, nor to resume an optimal checkpoint."""
    if cfg.dpor not in DPOR_FLAVOURS:
        raise ValueError(f"unknown DPOR flavour {cfg.dpor!r}; this version knows: "
                         f"{', '.join(DPOR_FLAVOURS)}")
    resumes_optimal = cfg.resume is not None and cfg.resume.get("dpor") == "optimal"
    cache = cfg.cache_states
    if cache is None:
        cache = bounds == [None] and not cfg.race_detect and not resumes_optimal
    if cache and cfg.dpor == "optimal":
        # State caching runs source-DPOR; the checkpoint must say so, or a resume
        # without --cache-states would read its backtrack sets as wakeup trees.
        if resumes_optimal:
            raise ValueError("this checkpoint is of optimal DPOR, which --cache-states "
                             "cannot continue (it runs source-DPOR): resume without it")
        return dataclasses.replace(cfg, dpor="source", cache_states=True)
    return dataclasses.replace(cfg, cache_states=cache)


def dpor_status(name: str, res: dpor.DporResult,
                total: tuple[int, int] | None = None) -> str:
    """One line on a DPOR run in progress: distinct traces, executions (and the runs
    cut short), and the tree's size in runs if check.search.gauge can tell (`total`),
    with the share explored; else that it is not known yet.  With states cached, the
    states explored completely so far, which is what converges (a cut run ends a
    branch for good, so runs say little about what is left)."""
    k = res.preemption_bound
    bound = "" if k is None else f" (<= {k} preemption{'' if k == 1 else 's'})"
    short = res.sleep_blocked + res.cache_hits
    runs = res.runs()
    if total is not None:
        size = (f"tree {total[0]:,}-{total[1]:,} runs, {min(1, runs / total[1]):.0%}-"
                f"{min(1, runs / total[0]):.0%} done")
    elif res.states or res.cache_hits:
        size = f"{res.states:,} states explored completely"
    else:
        size = "tree size unknown yet"
    return (f"{name}{bound}: {len(res.trace_keys):,} distinct traces, {res.executions:,} "
            f"executions{f' (+{short:,} cut short)' if short else ''}; {size}")


# The bound of a scenario that states none: unbounded DPOR may run for hours without a
# word, while most races need one preemption, and every seeded bug was caught within
# the catalog's stated bounds of 1 or 2 (docs/seeded-bugs.md).
DEFAULT_PREEMPTIONS = 2


def dpor_bounds(scenario: Scenario, cfg: CheckConfig) -> tuple[list[int | None], str | None]:
    """The preemption bounds DPOR runs in turn, and the reason when they are the
    scenario's: the one its file states, or DEFAULT_PREEMPTIONS for a file that states
    none (either unless --preemptions says otherwise)."""
    if cfg.preemptions is not None:
        return list(cfg.preemptions), None
    if scenario.bound is not None:
        return [scenario.bound.preemptions], scenario.bound.reason
    return [DEFAULT_PREEMPTIONS], (
        f"default: the scenario states no [bound], so DPOR explored within "
        f"{DEFAULT_PREEMPTIONS} preemptions; state a [bound] with its reason, or pass "
        f"--preemptions none for every interleaving")


def dpor_execution(scenario: Scenario, cfg: CheckConfig, rec: Hooks,
                   image: SetupImage | None = None) -> tuple[Execution, Coverage]:
    """One DPOR run's execution (`rec` is dpor's path recorder, its strategy and first
    observer) and its coverage.  The first prefix_len - 1 steps replay events an earlier
    run made from the same states and checked after each step, so the structure checker
    skips them (the end state is still checked).  With `image` (one per exploration),
    the first run takes an image of the world after the setup, and runs whose prefix
    passes it start there instead of running the setup again (check.running.setup_image).
    Run it inside logging_accesses()."""
    assert isinstance(rec, dpor._PathStrategy)
    checked_from = max(rec.prefix_len - 1, 0)
    if cfg.race_detect:
        image = None                    # the race detector's state has no image
    if image is not None and image.covers(rec):
        ex, verdicts = image.execution(rec, scenario.step_bound)
        _verdict(verdicts, StructureChecker).resume(checked_from)
        return ex, _verdict(verdicts, Coverage)
    ex, cov, _ = build_execution(scenario, cfg.policy, rec, [rec],
                                 every_step=cfg.every_step, npv_locks=cfg.npv_locks,
                                 race_detect=cfg.race_detect, checked_from=checked_from,
                                 image=image)
    return ex, cov


class _PathEnd(Exception):
    """enabled_along: the path has been followed to its end."""


class _Along:
    """A strategy that follows `path` and records the threads enabled at each step."""

    def __init__(self, path: list[int]) -> None:
        self.path = path
        self.seen: list[list[int]] = []

    def choose(self, ex: Execution, enabled: list[Any]) -> Any:
        i = ex.steps
        if i >= len(self.path):
            raise _PathEnd
        self.seen.append([t.tid for t in enabled])
        for t in enabled:
            if t.tid == self.path[i]:
                return t
        raise ReplayDivergence(f"step {i + 1}: thread {self.path[i]} cannot run there "
                               f"(enabled: {self.seen[-1]})")


def enabled_along(scenario: Scenario, cfg: CheckConfig, path: list[int]) -> list[list[int]]:
    """The threads enabled before each step of `path` (thread ids, one per step) in a
    run of `scenario` that follows it; ReplayDivergence if it does not replay there.
    (A checkpoint's path is checked with this before it is resumed.)"""
    if len(path) > scenario.step_bound:
        raise ReplayDivergence(f"{len(path)} steps, more than {scenario.name}'s step bound "
                               f"({scenario.step_bound})")
    along = _Along(path)
    ex, _, _ = build_execution(scenario, cfg.policy, along, [], every_step=False,  # type: ignore[arg-type]
                               npv_locks=cfg.npv_locks)
    try:
        out = ex.run()
    except _PathEnd:
        return along.seen
    if out.steps == len(path):          # its last step ends the run
        return along.seen
    raise ReplayDivergence(f"the run ends after {out.steps} steps, before the path's "
                           f"{len(path)}")


def violation_of(scenario: Scenario, cfg: CheckConfig, schedule: str) -> Outcome:
    """The violating run `schedule` replays to (a finished checkpoint's violation);
    ValueError or ReplayDivergence if it is too long, diverges or does not violate."""
    from faultline.rt.trace import schedule_from_str
    sched = schedule_from_str(schedule, scenario.step_bound)
    out = run_once(scenario, cfg.policy, ReplayStrategy(sched), every_step=cfg.every_step,
                   npv_locks=cfg.npv_locks, race_detect=cfg.race_detect).outcome
    if out.violation is None:
        raise ValueError("the schedule replays without a violation")
    return out


class _Checkpointer:
    """DPOR checkpoints: totals of finished bounds, coverage so far, and the path of
    the bound in progress, written to cfg.state as the exploration starts, at most every
    cfg.checkpoint_seconds (between executions), when a bound finishes, when it stops
    (`finish`, with its outcome) and on Ctrl-C (check.running.interrupt); cfg.resume
    picks one up."""

    def __init__(self, scenario: Scenario, cfg: CheckConfig,
                 bounds: list[int | None]) -> None:
        self.scenario, self.cfg, self.bounds = scenario, cfg, bounds
        self.total = dpor.DporResult()
        self.coverage: dict[str, int] = {}
        self.start = self.bound_index = 0
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
        check_belongs(doc, self.scenario, self.cfg, 0)
        t = doc["totals"]
        self.total = dpor.DporResult(executions=t["executions"],
                                     sleep_blocked=t["sleep_blocked"], steps=t["steps"],
                                     cache_hits=t.get("cache_hits", 0))
        self.coverage = dict(doc["coverage"])
        self.start = doc["bound_index"]
        self.current = doc["current"]
        fin = doc.get("finished")
        if fin is not None:           # it ran to its end: report that outcome again
            self.start = len(self.bounds)
            self.total.exhaustive = fin["exhaustive"]
            self.total.preemption_bound = fin["preemption_bound"]
            if fin["violation"] is not None:
                self.total.violation = violation_of(self.scenario, self.cfg, fin["violation"])

    def interruptible(self) -> AbstractContextManager[None]:
        """Where Ctrl-C stops at the next execution with a checkpoint (with --state)."""
        return interrupt.deferred(_resume_hint(self.cfg.state)) if self.cfg.state else \
            nullcontext()

    def resume_point(self) -> tuple[list[dpor.Node], dpor.DporResult, int] | None:
        from faultline.check.running.checkpoint import load_path
        cur = self.current
        if cur is None:
            return None
        res = dpor.DporResult(executions=cur["executions"], sleep_blocked=cur["sleep_blocked"],
                              steps=cur["steps"], cache_hits=cur.get("cache_hits", 0),
                              preemption_bound=self.bounds[self.start])
        return load_path(cur["nodes"]), res, cur["prefix_len"]

    def fold(self, runs: list[Coverage]) -> None:
        # Coverage of finished executions (the last one is complete when this runs).
        for cov in runs:
            tally(self.coverage, cov.labels)
        runs.clear()

    def maybe_save(self, nodes: list[dpor.Node], res: dpor.DporResult, prefix: int) -> None:
        if not self.cfg.state:
            return
        stop = interrupt.requested()
        if stop or time.monotonic() >= self.due:
            from faultline.check.running.checkpoint import dump_path
            self._save(self.bound_index, {"nodes": dump_path(nodes), "prefix_len": prefix,
                                          "executions": res.executions,
                                          "sleep_blocked": res.sleep_blocked,
                                          "steps": res.steps, "cache_hits": res.cache_hits})
        if stop:
            raise interrupt.Interrupted(_resume_hint(self.cfg.state))

    def bound_done(self, next_index: int) -> None:
        if self.cfg.state and next_index < len(self.bounds):    # the last: see finish
            self._save(next_index, None)

    def finish(self) -> None:
        """The exploration stopped (every bound done, a violation, the cap): save that,
        so that --resume reports the same outcome without exploring again."""
        if self.cfg.state:
            t = self.total
            v = None if t.violation is None else schedule_to_str(t.violation.schedule)
            self._save(len(self.bounds), None, {"exhaustive": t.exhaustive,
                                                "preemption_bound": t.preemption_bound,
                                                "violation": v})

    def _save(self, index: int, current: dict[str, Any] | None,
              finished: dict[str, Any] | None = None) -> None:
        from faultline.check.running.checkpoint import run_header, write_atomically
        cfg = self.cfg
        done = self.total          # bounds finished so far; `current` holds the rest
        write_atomically(cfg.state, {  # type: ignore[arg-type]
            **run_header(self.scenario, cfg), "split": 0,
            "bound_index": index, "coverage": self.coverage,
            "totals": {"executions": done.executions, "sleep_blocked": done.sleep_blocked,
                       "steps": done.steps, "cache_hits": done.cache_hits},
            "current": current, "finished": finished})
        self.due = time.monotonic() + self.cfg.checkpoint_seconds


# The first checkpoint that holds work comes this soon (or at the interval, if that is
# shorter), so that a run killed early loses little; then every checkpoint_seconds.
FIRST_CHECKPOINT_SECONDS = 10.0


def first_checkpoint(cfg: CheckConfig) -> float:
    """Seconds from the start to the first checkpoint that holds work."""
    return min(cfg.checkpoint_seconds, FIRST_CHECKPOINT_SECONDS)


def _resume_hint(state: str | None) -> str:
    return f"checkpoint saved in {state}; faultline check --resume {state} continues"


def check_scenario_sampled(scenario: Scenario, cfg: CheckConfig,
                           progress: Callable[[int], None] | None = None) -> ScenarioResult:
    """Run up to cfg.runs seeded executions; stop at the first violation."""
    t0 = time.perf_counter()
    coverage: dict[str, int] = {}
    steps = 0
    ce: RunRecord | None = None
    done = 0
    image = SetupImage()                # every run starts after the same setup
    for i in range(cfg.runs):
        seed = run_seed(cfg.seed, i)
        strategy = make_strategy(cfg.strategy, seed, cfg.depth, scenario.step_bound)
        res = run_once(scenario, cfg.policy, strategy, every_step=cfg.every_step,
                       npv_locks=cfg.npv_locks, race_detect=cfg.race_detect, image=image)
        done += 1
        steps += res.outcome.steps
        tally(coverage, res.coverage)
        if progress is not None:
            progress(1)
        if res.outcome.violation is not None:
            ce = minimise(scenario, cfg, res.outcome, strategy=cfg.strategy, seed=None,
                          options={"run_seed": seed})
            break
    verdict = "pass" if ce is None else "violation"
    return ScenarioResult(scenario.name, cfg.policy, cfg.strategy, verdict, done, steps,
                          time.perf_counter() - t0, coverage,
                          scenario.expect.get(cfg.policy), ce)


def minimise(scenario: Scenario, cfg: CheckConfig, outcome: Outcome,
             **kw: object) -> RunRecord:
    """The counterexample record for `outcome`, shrunk unless cfg.shrink is off, within
    cfg's shrink budget (options: shrink_runs, the executions spent, and shrink_stopped,
    "executions" or "seconds" if that limit ran out before shrinking was done)."""
    options: dict[str, object] = {"npv_locks": cfg.npv_locks}
    if cfg.race_detect:
        options["race_detect"] = True          # replay must detect the race again
    if cfg.shrink and outcome.violation is not None:
        def run(strategy: object) -> Outcome:
            with logging_accesses(cfg.race_detect):
                ex, _, _ = build_execution(scenario, cfg.policy, strategy, [],  # type: ignore[arg-type]
                                           every_step=cfg.every_step, npv_locks=cfg.npv_locks,
                                           race_detect=cfg.race_detect)
                return ex.run()
        kind = outcome.violation.kind
        budget = Budget(cfg.shrink_executions, cfg.shrink_seconds)
        first = attempt(run, outcome.schedule, kind, budget)
        if first is None:
            raise ValueError("shrink: the schedule does not reproduce the violation")
        original = (len(outcome.schedule), first[1])
        best: Shrunk | None = None
        if first[1] > 1:
            # A bounded systematic search often finds a far simpler witness than edits
            # of a long story can, and in few executions: try it first, so that a long
            # counterexample does not spend the whole budget one preemption at a time.
            low = _low_preemption_witness(scenario, cfg, kind, first[1] - 1, budget)
            if low is not None and budget.allows():
                best = shrink_schedule(run, low.schedule, kind, budget)
        if best is None or (best.preemptions > 1 and budget.allows()):
            s = shrink_schedule(run, outcome.schedule, kind, budget, first=first)
            if best is None or (s.preemptions, s.outcome.steps) < (best.preemptions,
                                                                     best.outcome.steps):
                best = s
        options.update(shrunk_from_steps=original[0], shrunk_from_preemptions=original[1],
                       preemptions=best.preemptions, shrink_runs=budget.used)
        if budget.stopped is not None:
            options["shrink_stopped"] = budget.stopped
        outcome = best.outcome
    options.update(kw.pop("options", {}))  # type: ignore[arg-type]
    return RunRecord.from_outcome(outcome, scenario=scenario.name, policy=cfg.policy,
                                  version=__version__, scenario_path=scenario.source,
                                  options=options, **kw)  # type: ignore[arg-type]


class _OutOfBudget(Exception):
    """The shrink budget ran out during the low-preemption witness search."""


def _low_preemption_witness(scenario: Scenario, cfg: CheckConfig, kind: str,
                            max_bound: int, budget: Budget, per_bound: int = 300
                            ) -> Outcome | None:
    """A violation of `kind` reached with at most `max_bound` (and at most 2)
    preemptions by bounded DPOR, trying bounds in increasing order (at most `per_bound`
    executions each, all counted against `budget`), or None."""
    def make(rec: Hooks) -> Execution:
        return build_execution(scenario, cfg.policy, rec, [rec],  # type: ignore[arg-type]
                               every_step=cfg.every_step, npv_locks=cfg.npv_locks,
                               race_detect=cfg.race_detect)[0]
    for bound in range(min(max_bound, 2) + 1):
        if not budget.allows():
            return None
        base = budget.used

        def between(nodes: list[dpor.Node], res: dpor.DporResult, prefix: int,
                    base: int = base) -> None:
            budget.used = base + res.executions + res.sleep_blocked + res.cache_hits
            if not budget.allows():
                raise _OutOfBudget
        try:
            with logging_accesses(cfg.race_detect):
                r = dpor.explore(make, bound=bound, between=between, estimate=False,
                                 max_executions=min(per_bound, budget.left()))
        except _OutOfBudget:
            return None
        budget.used = base + r.executions + r.sleep_blocked + r.cache_hits
        if r.violation is not None and r.violation.violation is not None \
                and r.violation.violation.kind == kind:
            return r.violation
    return None


def replay(scenario: Scenario, record: RunRecord, every_step: bool = True) -> RunResult:
    """Re-run a recorded schedule step for step, with the trace recorder attached."""
    from faultline.rt.trace import schedule_from_str
    sched = schedule_from_str(record.schedule)
    npv = int(record.options.get("npv_locks", 8))
    return run_once(scenario, record.policy, ReplayStrategy(sched), record=True,
                    every_step=every_step, npv_locks=npv,
                    race_detect=bool(record.options.get("race_detect", False)))


def counterexample_dot(scenario: Scenario, record: RunRecord, every_step: bool = True,
                       full: bool = False) -> str:
    """The happens-before graph (DOT) of a recorded run, re-run with footprints: the
    window of the violation (hbgraph.DOT_WINDOW steps, setup elided), or with `full`
    every step."""
    from faultline.check.judging.hbgraph import DOT_WINDOW, FootprintRecorder, hb_dot
    from faultline.rt.trace import schedule_from_str
    fp = FootprintRecorder()
    npv = int(record.options.get("npv_locks", 8))
    res = run_once(scenario, record.policy, ReplayStrategy(schedule_from_str(record.schedule)),
                   every_step=every_step, npv_locks=npv, extra=[fp],
                   race_detect=bool(record.options.get("race_detect", False)))
    v = res.outcome.violation
    return hb_dot(fp.steps, f"{scenario.name} under {record.policy}",
                  f"{v.kind}: {v.message}" if v is not None else "",
                  window=None if full else DOT_WINDOW, setup_end=fp.setup_end)


__all__ = ["DEFAULT_PREEMPTIONS", "CheckConfig", "NotModelled", "RunResult", "ScenarioResult",
           "SettingError", "build_execution", "check_scenario", "counterexample_dot",
           "dpor_execution", "enabled_along", "minimise", "replay", "run_once",
           "schedule_to_str", "violation_of"]
