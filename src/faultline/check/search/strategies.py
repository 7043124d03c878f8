"""Scheduling strategies: which enabled thread performs its pending op next.

What lives here: `RandomStrategy` (uniform over enabled threads, seeded) and
`ReplayStrategy` (follows a recorded schedule of thread ids).  Rule kept: a strategy
sees threads only through their ids and the order the execution lists them in; no
wall clock, no unseeded randomness.  Must not be added: knowledge of the VM model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from faultline.rt.execution import Execution, ReplayDivergence, Thread


def run_seed(seed: int, run: int) -> str:
    """The seed of run number `run` of a check seeded with `seed` (stable everywhere)."""
    return f"{seed}/{run}"


class RandomStrategy:
    """Pick uniformly among enabled threads with a seeded generator."""

    name = "random"

    def __init__(self, seed: int | str) -> None:
        self.seed = seed
        self.rng = random.Random(str(seed))

    def resume_after(self, schedule: Sequence[int]) -> bool:
        """Start after `schedule`, steps where one thread alone could run (a setup
        image, check.running.setup_image): they drew nothing, so there is nothing to
        catch up."""
        return True

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        """A uniformly random enabled thread."""
        if len(enabled) == 1:
            return enabled[0]
        return enabled[self.rng.randrange(len(enabled))]


class ReplayStrategy:
    """Follow `schedule` (thread ids, one per step) exactly."""

    name = "replay"

    def __init__(self, schedule: Sequence[int]) -> None:
        self.schedule = list(schedule)

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        """The thread the schedule names for this step; diverging is an error."""
        i = ex.steps
        if i >= len(self.schedule):
            raise ReplayDivergence(f"the schedule ends after {len(self.schedule)} steps but "
                                   f"threads {[t.name for t in enabled]} can still run")
        tid = self.schedule[i]
        for t in enabled:
            if t.tid == tid:
                return t
        names = ", ".join(f"{t.tid}={t.name}" for t in enabled)
        raise ReplayDivergence(f"step {i + 1}: the schedule names thread {tid}, which cannot "
                               f"run now (enabled: {names})")


class PctStrategy:
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010): threads get
    distinct random priorities, the highest-priority enabled thread runs, and at d-1
    random steps in [1, k] the running thread drops below every initial priority.  A
    bug of depth d is found with probability at least 1/(n k^(d-1)) per run."""

    name = "pct"

    def __init__(self, seed: int | str, depth: int = 3, k: int = 2000) -> None:
        if depth < 1 or k < 1:
            raise ValueError("pct needs depth >= 1 and k >= 1")
        self.rng = random.Random(f"pct/{seed}")
        self.depth = depth
        self.change_points = {self.rng.randint(1, k): depth - 1 - i for i in range(depth - 1)}
        self.priority: dict[int, float] = {}

    def resume_after(self, schedule: Sequence[int]) -> bool:
        """Start after `schedule`, steps where one thread alone could run (a setup
        image, check.running.setup_image): make the draws and demotions `choose` would
        have made there, in the same order, so the rest of the run is the same."""
        for i, tid in enumerate(schedule):
            if tid not in self.priority:
                self.priority[tid] = self.depth + self.rng.random() * 1000
            low = self.change_points.get(i + 1)
            if low is not None:
                self.priority[tid] = low
        return True

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        """The enabled thread of highest priority; demote it at a change point."""
        for t in enabled:
            if t.tid not in self.priority:
                # New threads get a random initial priority above every change point.
                self.priority[t.tid] = self.depth + self.rng.random() * 1000
        best = max(enabled, key=lambda t: (self.priority[t.tid], -t.tid))
        low = self.change_points.get(ex.steps + 1)
        if low is not None:
            self.priority[best.tid] = low
            best = max(enabled, key=lambda t: (self.priority[t.tid], -t.tid))
        return best
