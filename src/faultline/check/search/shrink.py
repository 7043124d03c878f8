"""Counterexample shrinking: the shortest story that still breaks the property.

What lives here: `shrink`, which takes a violating schedule and keeps only schedules
that still violate (the same kind of property), minimising first the number of
preemptions, then the number of steps; `attempt` (one candidate run); and `Budget`,
what shrinking may spend.  A candidate keeps a prefix of the schedule and continues
without preempting (the running thread goes on while it can; otherwise the lowest
thread id runs), so every accepted edit removes context switches.
Rule kept: deterministic (candidates are tried in a fixed order), and every candidate
is a real execution, checked by the same observers.  The budget's execution count is
the limit that decides the result (the same on every machine); its seconds are a
safety net against runaway executions, and a result they cut short says so
(`Budget.stopped`), since it may differ on a faster or slower machine.
Must not be added: rendering.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from faultline.rt.execution import Execution, Outcome, ReplayDivergence, Thread


class _PrefixThenCalm:
    """Follow `prefix`, then never preempt; records the enabled sets seen."""

    def __init__(self, prefix: Sequence[int]) -> None:
        self.prefix = list(prefix)
        self.enabled: list[list[int]] = []

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        i = ex.steps
        self.enabled.append([t.tid for t in enabled])
        if i < len(self.prefix):
            for t in enabled:
                if t.tid == self.prefix[i]:
                    return t
            raise ReplayDivergence(f"shrink: thread {self.prefix[i]} cannot run at {i}")
        last = ex.schedule[-1] if ex.schedule else None
        for t in enabled:
            if t.tid == last:
                return t
        return enabled[0]


@dataclass(slots=True)
class Budget:
    """What shrinking may spend: `executions` (the deterministic limit) and `seconds`
    (the safety net).  `used` counts the executions spent; `stopped` says which limit
    ran out before shrinking was done ("executions" or "seconds"), else None."""

    executions: int = 2000
    seconds: float = 60.0
    used: int = 0
    stopped: str | None = None
    started: float = field(default_factory=time.monotonic)

    def left(self) -> int:
        """Executions still allowed."""
        return max(self.executions - self.used, 0)

    def allows(self) -> bool:
        """May one more execution run?  If not, note which limit said no."""
        if self.used >= self.executions:
            self.stopped = self.stopped or "executions"
            return False
        if time.monotonic() - self.started >= self.seconds:
            self.stopped = "seconds"
            return False
        return True


@dataclass(slots=True)
class Shrunk:
    """The smallest violating run found, and what it cost to find."""

    outcome: Outcome
    preemptions: int
    tried: int
    original_steps: int
    original_preemptions: int


def count_preemptions(schedule: Sequence[int], enabled: Sequence[Sequence[int]]) -> int:
    """Switches away from a thread that could have gone on."""
    return sum(1 for i in range(1, len(schedule))
               if schedule[i] != schedule[i - 1] and schedule[i - 1] in enabled[i])


def attempt(run: Callable[[object], Outcome], prefix: Sequence[int], kind: str,
            budget: Budget) -> tuple[Outcome, int] | None:
    """Run `prefix` then calmly on (one execution, counted in `budget`): the outcome and
    its preemptions if it violates a property of `kind`, else None."""
    budget.used += 1
    strat = _PrefixThenCalm(prefix)
    try:
        out = run(strat)
    except ReplayDivergence:
        return None
    if out.violation is None or out.violation.kind != kind:
        return None
    return out, count_preemptions(out.schedule, strat.enabled)


def shrink(run: Callable[[object], Outcome], schedule: Sequence[int], kind: str,
           budget: Budget | None = None, first: tuple[Outcome, int] | None = None
           ) -> Shrunk:
    """Minimise a schedule whose run violates a property of `kind`.

    `run(strategy)` executes the scenario under a strategy and returns its outcome.
    Returns the best violating run found (fewest preemptions, then fewest steps) within
    `budget` (default: Budget()).  The first execution, which reproduces the violation,
    always runs and is counted, unless its result is given as `first`."""
    budget = Budget() if budget is None else budget
    start = budget.used
    if first is None:
        first = attempt(run, schedule, kind, budget)
    if first is None:
        raise ValueError("shrink: the schedule does not reproduce the violation")
    best, best_pre = first
    original = (len(schedule), best_pre)
    improved = True
    while improved:
        improved = False
        sched = best.schedule
        # Candidate cut points: every context switch, latest first (cheap wins first).
        cuts = [i for i in range(1, len(sched)) if sched[i] != sched[i - 1]]
        for i in reversed(cuts):
            if not budget.allows():
                break
            got = attempt(run, sched[:i], kind, budget)
            if got is None:
                continue
            out, pre = got
            if (pre, out.steps) < (best_pre, best.steps):
                best, best_pre, improved = out, pre, True
                break
    return Shrunk(best, best_pre, budget.used - start, *original)
