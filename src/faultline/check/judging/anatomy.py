"""The anatomy of a counterexample: one replay with everything the default view needs.

What lives here: `dissect`, which re-runs a recorded schedule with three recorders (the
trace, every step's footprint (hbgraph) and the state at the violation (snapshot)),
and `violation_window`, the steps the default counterexample view shows.

The window, and why: it starts at the first step of the scenario op the violating
thread was performing when the violation fired (one fault, one exit: the unit a
kernel reader argues about), moved back once to the start of the op of any other
thread with a step in it that is ordered (check.search.dependency, as DPOR orders
steps) with one of the violating thread's steps in it, so that both sides of every
race inside it are shown from their start.  Steps before it only left state behind:
the view folds them to a line per thread and shows that state at the violation (the
snapshot).  A window is at most MAX_WINDOW steps; without a violating thread (a
deadlock, the step bound) it is the last TAIL steps.  Inside a window where several
threads run, a step "matters" when it is ordered with some other thread's step in the
window; the view folds the runs of steps that do not.  Where one thread runs alone,
every step matters.
Rule kept: replaying and choosing steps only.  Must not be added: rendering (report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from faultline.check.explore import RunResult, run_once
from faultline.check.judging.hbgraph import FootprintRecorder, HbStep, Site
from faultline.check.judging.snapshot import Snapshot, SnapshotRecorder
from faultline.check.search.dependency import ordered
from faultline.check.search.strategies import ReplayStrategy
from faultline.rt.execution import Hooks, Strategy
from faultline.rt.trace import Event, RunRecord, schedule_from_str
from faultline.scenario.spec import Scenario

__all__ = ["MAX_WINDOW", "TAIL", "Anatomy", "Window", "dissect", "violation_window"]

MAX_WINDOW = 150              # steps; a window longer than this keeps its end
TAIL = 40                     # steps shown when no thread violated


@dataclass(slots=True)
class Anatomy:
    """A replayed counterexample: its trace, footprints, setup length and end state."""

    result: RunResult
    steps: list[HbStep]            # steps[i] is step i + 1 (the violating one may lack)
    snapshot: Snapshot | None
    last_stack: tuple[Site, ...] = ()      # the model frames of the last step

    def stack(self, step: int) -> tuple[Site, ...]:
        """The model frames (outermost first) of `step` (1-based)."""
        if step <= len(self.steps):
            return self.steps[step - 1].stack
        return self.last_stack if step == self.result.outcome.steps else ()


@dataclass(frozen=True, slots=True)
class Window:
    """Steps first..last (1-based), why it starts there, and the steps that matter."""

    first: int
    last: int
    why: str
    matters: frozenset[int]


def dissect(scenario: Scenario, record: RunRecord, every_step: bool = True, *,
            strategy: Strategy | None = None, observers: Sequence[Hooks] = ()) -> Anatomy:
    """Re-run `record` step for step (or as `strategy` says, with `observers`) with the
    trace, footprint and snapshot recorders."""
    fp, snap = FootprintRecorder(), SnapshotRecorder()
    if strategy is None:
        strategy = ReplayStrategy(schedule_from_str(record.schedule))
    result = run_once(scenario, record.policy, strategy, record=True, every_step=every_step,
                      npv_locks=int(record.options.get("npv_locks", 8)),
                      extra=[*observers, fp, snap],
                      race_detect=bool(record.options.get("race_detect", False)))
    return Anatomy(result, fp.steps, snap.snapshot, fp.last_stack)


def setup_end(events: Sequence[Event]) -> int:
    """The last step of the sequential setup (0 if it never finished)."""
    return next((e.step for e in events if e.kind == "note" and e.what == "setup-done"), 0)


def _op_start(events: Sequence[Event], thread: str, at: int) -> int | None:
    """The first step of the scenario op `thread` was performing at step `at`: its
    latest "op" note is made at the second of the two checks that start an op
    (scenario.world's run_thread), so the op starts at the thread's step before it."""
    notes = [e.step for e in events
             if e.thread == thread and e.kind == "note" and e.what == "op" and e.step < at]
    if not notes:
        return None
    before = [e.step for e in events
              if e.thread == thread and e.kind != "note" and e.step < notes[-1]]
    return before[-1] if before else notes[-1]


def _thread_of(events: Sequence[Event]) -> dict[int, str]:
    return {e.step: e.thread for e in events if e.kind != "note"}


def violation_window(a: Anatomy) -> Window:
    """The steps the default view shows (see the module header for the choice)."""
    events, out = a.result.events, a.result.outcome
    last, v = out.steps, out.violation_thread
    start = _op_start(events, v, last + 1) if v else None
    if start is None:
        first = max(1, last - TAIL + 1, min(setup_end(events) + 1, last))
        why = f"the last {last - first + 1} steps"
    else:
        op = next((e.data.get("op", "") for e in reversed(events) if e.step <= last
                   and e.what == "op" and e.thread == v and isinstance(e.data, dict)), "")
        first, why = start, f"from {v}'s {op!r}, the op at the violation"
        first = _widen(a, first, last, v, events)
        if first < start:
            why += ", and the ops of the threads it races with"
    if last - first + 1 > MAX_WINDOW:
        first, why = last - MAX_WINDOW + 1, f"the last {MAX_WINDOW} steps"
    return Window(first, last, why, _matters(a, first, last))


def _widen(a: Anatomy, first: int, last: int, v: str, events: Sequence[Event]) -> int:
    """Move `first` back to the op start of each thread racing with `v` in the window."""
    who = _thread_of(events)
    mine = [s for s in range(first, last + 1) if who.get(s) == v and s <= len(a.steps)]
    earliest = first
    for s in range(first, min(last, len(a.steps)) + 1):
        t = who.get(s)
        if t is None or t == v or not any(_ordered(a.steps, s, m) for m in mine):
            continue
        start = _op_start(events, t, s)
        if start is not None and start < earliest:
            earliest = start
    return earliest


def _ordered(steps: Sequence[HbStep], i: int, j: int) -> bool:
    """Steps i and j (1-based, either order) are ordered by the dependency relation."""
    lo, hi = sorted((i, j))
    return ordered(steps[lo - 1].acc, steps[hi - 1].acc)


def _matters(a: Anatomy, first: int, last: int) -> frozenset[int]:
    who = _thread_of(a.result.events)
    span = [s for s in range(first, last + 1) if s in who]
    if len({who[s] for s in span}) <= 1:
        return frozenset(span)
    known = [s for s in span if s <= len(a.steps)]
    keep = {s for s in known
            if any(who[o] != who[s] and _ordered(a.steps, s, o) for o in known)}
    return frozenset(keep | {last})
