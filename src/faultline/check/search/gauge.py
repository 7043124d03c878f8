"""How far a DPOR exploration is: an honest range for its size, or "unknown".

What lives here: `Gauge`, fed after each run with dpor's raw figures (runs so far, the
share of the tree left of the current path, the branches pending on it), and
`Gauge.total()`, the range the tree's size is believed to lie in, or None.
Why so guarded: DPOR finds most branches only as it goes, and its trees are lopsided
(a node's first branch is most of it), so the raw estimate (runs / share, Kilby et
al.'s for DFS) is wild for most of a run: cow-rename's first was 1.7e12, and from 30% to
97% of its 8,730 runs it said a steady 5 to 7 million.  A range is given only once the
raw estimate has stayed within a factor of STABLE over the last half of the runs and
claimed, all that while, that at least half the tree was explored.  Its low end is a
certainty (runs so far plus one for each pending branch), its high end the largest raw
estimate in that window.  Measured on the catalog (munmap-vs-fault, rw-race-top,
zero-fill-parallel, cow-rename within their bounds; shared-shadow-inval,
rw-race-shadow, swapin-vs-munmap stateful): never a range that missed the final
count; a range for the last 40% of shared-shadow-inval; "unknown" throughout the rest.
Rule kept: progress only, never part of a result; fed counts, never clocks.
Must not be added: anything a verdict reads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

STABLE = 2.0          # the raw estimates in the window agree within this factor
MIN_SHARE = 0.5       # ... and each claimed at least this share explored
MIN_RUNS = 100        # no range before this many runs


@dataclass(slots=True)
class _Sample:
    runs: int
    estimate: float
    share: float


@dataclass(slots=True)
class Gauge:
    """The raw estimates of the last half of the runs, with the window's smallest and
    largest estimate and smallest share kept in monotone deques (O(1) per run)."""

    window: deque[_Sample] = field(default_factory=deque)
    low: deque[_Sample] = field(default_factory=deque)      # increasing estimates
    high: deque[_Sample] = field(default_factory=deque)     # decreasing estimates
    least: deque[_Sample] = field(default_factory=deque)    # increasing shares
    floor: int = 0                                          # a certain lower bound

    def add(self, runs: int, share: float, pending: int) -> None:
        """After a run: `runs` so far, the share of the tree explored (dpor's
        explored_share) and the branches pending on the current path."""
        s = _Sample(runs, runs / share if share > 0 else float("inf"), share)
        self.floor = runs + pending
        self.window.append(s)
        for q, worse in ((self.low, lambda a: a.estimate >= s.estimate),
                         (self.high, lambda a: a.estimate <= s.estimate),
                         (self.least, lambda a: a.share >= s.share)):
            while q and worse(q[-1]):
                q.pop()
            q.append(s)
        while self.window[0].runs < runs / 2:
            old = self.window.popleft()
            for q in (self.low, self.high, self.least):
                if q[0] is old:
                    q.popleft()

    def total(self) -> tuple[int, int] | None:
        """The range the tree's size (in runs) lies in, or None: not known yet."""
        if not self.window or self.window[-1].runs < MIN_RUNS:
            return None
        lo, hi = self.low[0].estimate, self.high[0].estimate
        if self.least[0].share < MIN_SHARE or hi > STABLE * lo:
            return None
        return self.floor, max(self.floor, round(hi))
