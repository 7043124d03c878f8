"""WITNESS-style lock-order checking, as an execution observer.

What lives here: a graph over lock *classes* (the `name` of each Lock, e.g. "vm object")
with an edge A -> B whenever a thread blocks for B while holding A, seeded with FreeBSD's
static VM order.  A new edge that closes a cycle is a lock-order reversal, reported with
the acquisition points of both directions.  Rule kept: try-locks neither check nor add
edges (they cannot deadlock, which is why pmap_remove_all may take a pmap after a pv lock);
same-class nesting is allowed only for DUPOK classes.  Must not be added: deadlock
detection (the execution does that from the threads' states).
"""

from __future__ import annotations

import itertools

from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Thread, Violation

# sys/kern/subr_witness.c: the VM part of the static order list.
STATIC_ORDER = ("vm map (user)", "vm object", "pmap", "pmap pv list")


class Witness(Hooks):
    """Observes successful blocking acquisitions and keeps the order graph."""

    def __init__(self) -> None:
        self.edges: dict[tuple[str, str], str] = {}
        for a, b in itertools.pairwise(STATIC_ORDER):
            self.edges[(a, b)] = "static order (subr_witness.c)"

    def acquiring(self, ex: Execution, t: Thread, op: ops.Acquire) -> None:
        """Check and record the order of a blocking acquisition."""
        new = op.lock.name
        for held in t.held:
            a = held.name
            if a == new:
                if not op.lock.dupok:
                    raise Violation("lock-order", f"{t.name} acquired a second {new} "
                                    f"({op.lock.label}) while holding {held.label}")
                continue
            if (a, new) in self.edges:
                continue
            self._add(ex, t, a, new, f"{held.label} -> {op.lock.label}")

    def _add(self, ex: Execution, t: Thread, a: str, b: str, labels: str) -> None:
        site = t.where()
        here = f"{t.name} {labels} at {_fmt(site)} (step {ex.steps})"
        if self._reaches(b, a):
            path = self._path(b, a)
            other = "; ".join(f"{x} -> {y}: {self.edges[(x, y)]}" for x, y in path)
            raise Violation("lock-order", f"lock order reversal: {a} -> {b} by {here}, "
                            f"but the established order is {other}",
                            {"first": other, "second": here})
        self.edges[(a, b)] = here

    def _reaches(self, src: str, dst: str) -> bool:
        return self._path(src, dst) is not None

    def _path(self, src: str, dst: str) -> list[tuple[str, str]] | None:
        frontier: list[tuple[str, list[tuple[str, str]]]] = [(src, [])]
        seen = {src}
        while frontier:
            node, path = frontier.pop(0)
            if node == dst:
                return path
            for (x, y) in self.edges:
                if x == node and y not in seen:
                    seen.add(y)
                    frontier.append((y, [*path, (x, y)]))
        return None


def _fmt(site: tuple[str, int, str] | None) -> str:
    if site is None:
        return "?"
    path, line, fn = site
    short = path.split("/faultline/")[-1]
    return f"{short}:{line} {fn}"
