"""Wakeup trees for optimal DPOR (Abdulla, Aronis, Jonsson, Sagonas, JACM 2017).

What lives here: `WutNode` (an event of a wakeup sequence: thread and footprint, with
its continuations), `weak_initial` (may thread p start an execution equivalent to w,
after the current prefix?) and `insert` (add a reversal sequence to a wakeup tree unless
a branch already covers it).  Rule kept: pure functions over (thread, footprint)
events; no execution state.  Must not be added: the exploration loop (check.search.dpor).

    wut(E):  p1 ── q ── p1      a node's children are tried left to right; a branch
             └─ q2               names a whole schedule suffix to follow, so no
                                 execution is sleep-set blocked
"""

from __future__ import annotations

from dataclasses import dataclass, field

from faultline.check.search.dependency import Access, ordered

Event = tuple[int, tuple[Access, ...]]      # (thread id, footprint)


@dataclass(slots=True)
class WutNode:
    """One event of a wakeup tree, with the branches that follow it."""

    tid: int
    acc: tuple[Access, ...]
    children: list[WutNode] = field(default_factory=list)


def weak_initial(w: list[Event], tid: int, acc: tuple[Access, ...], lo: int = 0) -> bool:
    """p is a weak initial of w[lo:]: its first event there has no predecessor there
    (nothing before it is ordered with it: a chain of predecessors ends in one), or p
    does not occur there and its next event (footprint `acc`) commutes with all of it."""
    for k in range(lo, len(w)):
        if w[k][0] == tid:
            f = w[k][1]
            return not any(ordered(w[m][1], f) for m in range(lo, k))
    return not any(ordered(acc, w[m][1]) for m in range(lo, len(w)))


def _without_first(w: list[Event], tid: int, lo: int) -> list[Event]:
    """w[lo:] without p's first event."""
    for k in range(lo, len(w)):
        if w[k][0] == tid:
            return w[lo:k] + w[k + 1:]
    return w[lo:]


def _chain(w: list[Event]) -> list[WutNode]:
    head: list[WutNode] = []
    level = head
    for t, f in w:
        node = WutNode(t, f)
        level.append(node)
        level = node.children
    return head


def insert(children: list[WutNode], w: list[Event]) -> bool:
    """insert[E](w, wut): walk down while some child is a weak initial of what remains
    of w; a leaf reached means w is already covered.  Otherwise w's remainder becomes a
    new rightmost branch.  Returns whether the tree changed."""
    level = children
    lo = 0                  # w[lo:] remains: a branch already in the tree is followed
    while True:             # by moving lo, not by copying what remains
        for child in level:
            if child.tid == w[lo][0]:
                lo += 1     # w's first event: a weak initial with nothing before it
            elif weak_initial(w, child.tid, child.acc, lo):
                w, lo = _without_first(w, child.tid, lo), 0
            else:
                continue
            if not child.children or lo == len(w):
                return False
            level = child.children
            break
        else:
            level.extend(_chain(w[lo:]))
            return True
