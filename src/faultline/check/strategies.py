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
