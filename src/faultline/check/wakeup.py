"""Wakeup trees for optimal DPOR (Abdulla, Aronis, Jonsson, Sagonas, JACM 2017).

What lives here: `WutNode` (an event of a wakeup sequence: thread and footprint, with
its continuations), `weak_initial` (may thread p start an execution equivalent to w,
after the current prefix?) and `insert` (add a reversal sequence to a wakeup tree unless
a branch already covers it).  Rule kept: pure functions over (thread, footprint)
events; no execution state.  Must not be added: the exploration loop (check.dpor).

    wut(E):  p1 ── q ── p1      a node's children are tried left to right; a branch
             └─ q2               names a whole schedule suffix to follow, so no
                                 execution is sleep-set blocked
"""

from __future__ import annotations

from dataclasses import dataclass, field

from faultline.check.dependency import Access, ordered

Event = tuple[int, tuple[Access, ...]]      # (thread id, footprint)


@dataclass(slots=True)
class WutNode:
    """One event of a wakeup tree, with the branches that follow it."""

    tid: int
    acc: tuple[Access, ...]
    children: list[WutNode] = field(default_factory=list)


def _happens_before_within(w: list[Event], k: int) -> bool:
    """Does some event before w[k] happen before it (program order or dependency,
    transitively, within w)?"""
    chain = [w[k]]
    for m in range(k - 1, -1, -1):
        tm, fm = w[m]
        if any(tm == t or ordered(fm, f) for t, f in chain):
            return True
    return False


def weak_initial(w: list[Event], tid: int, acc: tuple[Access, ...]) -> bool:
    """p is a weak initial of w: its first event in w has no predecessor in w, or p
    does not occur in w and its next event (footprint `acc`) commutes with all of w."""
    for k, (t, _) in enumerate(w):
        if t == tid:
            return not _happens_before_within(w, k)
    return all(not ordered(acc, f) for _, f in w)


def _without_first(w: list[Event], tid: int) -> list[Event]:
    for k, (t, _) in enumerate(w):
        if t == tid:
            return w[:k] + w[k + 1:]
    return w


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
    while True:
        for child in level:
            if weak_initial(w, child.tid, child.acc):
                w = _without_first(w, child.tid)
                if not child.children or not w:
                    return False
                level = child.children
                break
        else:
            level.extend(_chain(w))
            return True
