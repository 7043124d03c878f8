"""Property tests for the runtime primitives against small reference state machines.

* BusyWord.apply against a reference model of the page busy word
  (U, X(tid), S(n), FREED, plus the waiters bit);
* Lock (rw and sx) transitions against a reference (owner, readers multiset);
* whole executions of random lock/increment programs that respect a global lock order:
  no violation, every thread finishes, and the protected counters are exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultline.check.search.strategies import RandomStrategy
from faultline.rt import context, ops
from faultline.rt.execution import Execution
from faultline.rt.sync import (
    BUSY_ACTIONS,
    BlockCount,
    BusyWord,
    Lock,
    Panic,
    rw_downgrade,
    rw_rlock,
    rw_try_upgrade,
    rw_unlock,
    rw_wlock,
)
from faultline.rt.witness import Witness

TIDS = st.integers(min_value=0, max_value=3)


@pytest.fixture(autouse=True)
def _restore_curthread() -> Iterator[None]:
    saved = context.current
    yield
    context.current = saved


# ---------------------------------------------------------------- busy word

@dataclass
class RefBusy:
    """The reference busy word: kind in U, X, S, F; `who` is the X owner or S count."""

    kind: str = "U"
    who: int = 0
    waiters: bool = False

    def render(self) -> str:
        s = {"U": "U", "X": f"X({self.who})", "S": f"S({self.who})", "F": "FREED"}[self.kind]
        return s + ("+W" if self.waiters else "")

    def busied(self) -> bool:
        return self.kind != "U"

    def _release_to(self, kind: str, who: int = 0) -> tuple[None, bool]:
        self.kind, self.who = kind, who
        wake, self.waiters = self.waiters, False
        return None, wake

    def apply(self, tid: int, action: str, gate_closed: bool) -> tuple[Any, bool] | None:
        """(result, wake), or None when FreeBSD would panic."""
        k = self.kind
        if action == "tryx":
            if k == "U" and not gate_closed:
                self.kind, self.who = "X", tid
                return True, False
            return False, False
        if action == "trys":
            if k in ("U", "S") and not gate_closed:
                self.who = self.who + 1 if k == "S" else 1
                self.kind = "S"
                return True, False
            return False, False
        if action == "tryupgrade":
            if k == "S" and self.who == 1:
                self.kind, self.who = "X", tid
                return True, False
            return False, False
        if action == "sunbusy":
            if k != "S":
                return None
            if self.who > 1:
                self.who -= 1
                return None, False
            return self._release_to("U")
        owner = k == "X" and self.who == tid
        if not owner:
            return None                   # xunbusy / downgrade / free by a non-owner
        if action == "xunbusy":
            return self._release_to("U")
        if action == "downgrade":
            return self._release_to("S", 1)
        assert action == "free"
        return self._release_to("F")


# (tid, or None for "the exclusive owner if any"; action; gate closed; a sleeper sets
# the waiters bit first; an illegal action is performed rather than skipped)
WEIGHTED_ACTIONS = BUSY_ACTIONS * 3 + ("tryx", "trys", "sunbusy") * 2   # "free" ends it
busy_steps = st.lists(st.tuples(st.one_of(st.none(), TIDS), st.sampled_from(WEIGHTED_ACTIONS),
                                st.integers(0, 3).map(lambda x: x == 0), st.booleans(),
                                st.integers(0, 7).map(lambda x: x == 0)),
                      min_size=1, max_size=40)


@given(busy_steps)
@settings(max_examples=300, deadline=None)
def test_busy_word_matches_reference(
        steps: list[tuple[int | None, str, bool, bool, bool]]) -> None:
    word, ref = BusyWord("pg"), RefBusy()
    for who, action, gate_closed, sleeper, illegal_ok in steps:
        tid = who if who is not None else ref.who if ref.kind == "X" else 0
        if sleeper and ref.busied():
            # a sleeper sets VPB_BIT_WAITERS, which FreeBSD only does on a busied page
            word.waiters = ref.waiters = True
        gate = BlockCount("object busy", count=1 if gate_closed else 0)
        before = word.state()
        if not illegal_ok and RefBusy(ref.kind, ref.who).apply(tid, action, False) is None:
            continue                      # mostly keep the sequence going
        expected = ref.apply(tid, action, gate_closed)
        if expected is None:
            with pytest.raises(Panic):
                word.apply(tid, action, gate)
            assert word.state() == before, "a panicking transition changed the word"
            return
        result, wake = word.apply(tid, action, gate)
        assert (result, wake) == expected, (action, tid, before)
        assert isinstance(wake, bool)
        assert word.state() == ref.render(), (action, tid, before)
        # structural invariants of the word
        assert not (word.xowner is not None and word.shares > 0)
        assert word.shares >= 0
        if word.freed:
            assert word.xowner is None and word.shares == 0
        if not word.busied():
            assert not word.waiters, "an unbusied word still flags waiters"
        if wake:
            assert action in ("xunbusy", "sunbusy", "downgrade", "free")
            assert not word.waiters
        assert gate.count == (1 if gate_closed else 0), "the gate is only read"


@given(TIDS, st.booleans())
@settings(max_examples=50, deadline=None)
def test_busy_gate_blocks_only_acquisitions(tid: int, waiters: bool) -> None:
    gate = BlockCount("object busy", count=1)
    w = BusyWord("pg")
    assert w.apply(tid, "tryx", gate) == (False, False)
    assert w.apply(tid, "trys", gate) == (False, False)
    assert w.state() == "U"
    assert w.apply(tid, "tryx", None) == (True, False)
    w.waiters = waiters
    assert w.apply(tid, "downgrade", gate) == (None, waiters)
    assert w.apply(tid, "tryupgrade", gate) == (True, False)
    assert w.apply(tid, "xunbusy", gate) == (None, False)
    assert w.state() == "U"


# ---------------------------------------------------------------- locks

LOCK_OPS = ("x", "s", "try_x", "try_s", "release", "upgrade", "downgrade")


@dataclass
class RefLock:
    owner: int | None = None
    readers: Counter[int] = field(default_factory=Counter)

    def holds(self, tid: int) -> bool:
        return self.owner == tid or self.readers[tid] > 0

    def can(self, mode: str) -> bool:
        return self.owner is None and (mode == "s" or not +self.readers)


def _snapshot(lk: Lock) -> tuple[int | None, list[int]]:
    return lk.owner, list(lk.readers)


def _apply_lock(lk: Lock, ref: RefLock, tid: int, op: str) -> str:
    """Apply `op` to both the lock and the reference; returns 'ok', 'blocked' or 'panic'."""
    if op in ("x", "s", "try_x", "try_s"):
        mode = op[-1]
        can = lk.can_acquire(tid, mode)
        assert can == ref.can(mode), (op, tid, _snapshot(lk))
        recursion = ref.holds(tid)
        if op.startswith("try"):
            if not can:
                return "blocked"          # a try-lock returns False
            if recursion:
                with pytest.raises(Panic, match="recursive"):
                    lk.grant(tid, mode)
                return "panic"
        elif recursion:
            # the driver would never grant this; the transition itself must refuse it
            with pytest.raises(Panic, match="recursive"):
                lk.grant(tid, mode)
            return "panic"
        elif not can:
            return "blocked"
        lk.grant(tid, mode)
        if mode == "x":
            ref.owner = tid
        else:
            ref.readers[tid] += 1
        return "ok"
    if op == "release":
        if not ref.holds(tid):
            with pytest.raises(Panic, match="does not hold"):
                lk.drop(tid)
            return "panic"
        expected = "x" if ref.owner == tid else "s"
        assert lk.drop(tid) == expected
        if expected == "x":
            ref.owner = None
        else:
            ref.readers[tid] -= 1
        return "ok"
    if op == "upgrade":
        if ref.readers[tid] == 0:
            with pytest.raises(Panic, match="upgrade without a shared hold"):
                lk.upgrade(tid)
            return "panic"
        sole = +ref.readers == Counter({tid: 1})
        assert lk.upgrade(tid) is sole
        if sole:
            ref.readers.clear()
            ref.owner = tid
        return "ok"
    assert op == "downgrade"
    if ref.owner != tid:
        with pytest.raises(Panic, match="downgrade without an exclusive hold"):
            lk.downgrade_to_shared(tid)
        return "panic"
    lk.downgrade_to_shared(tid)
    ref.owner = None
    ref.readers[tid] += 1
    return "ok"


@given(st.sampled_from(["rw", "sx"]),
       st.lists(st.tuples(TIDS, st.sampled_from(LOCK_OPS)), max_size=50))
@settings(max_examples=300, deadline=None)
def test_lock_matches_reference(kind: str, steps: list[tuple[int, str]]) -> None:
    lk, ref = Lock("prop lock", "lk", kind), RefLock()
    for tid, op in steps:
        before = _snapshot(lk)
        verdict = _apply_lock(lk, ref, tid, op)
        if verdict != "ok":
            assert _snapshot(lk) == before, f"{op} by {tid} changed the lock on {verdict}"
        assert lk.owner == ref.owner
        assert Counter(lk.readers) == +ref.readers
        assert lk.owner is None or not lk.readers, "owner and readers at once"
        assert len(set(lk.readers)) == len(lk.readers), "a reader counted twice"
        assert lk.locked() == (ref.owner is not None or bool(+ref.readers))
        for t in range(4):
            mode = lk.held_by(t)
            assert mode == ("x" if ref.owner == t else "s" if ref.readers[t] else None)


# ---------------------------------------------------------------- executions

@dataclass(eq=False)
class Cell:
    label: str
    n: int = 0

    def __repr__(self) -> str:
        return self.label


# one critical section: (mode of A or None, mode of B or None, try_upgrade A, downgrade A
# after writing, number of unlocked atomic_adds)
SECTION = st.tuples(st.sampled_from([None, "x", "s"]), st.sampled_from([None, "x", "s"]),
                    st.booleans(), st.booleans(), st.integers(min_value=0, max_value=2))
PROGRAMS = st.lists(st.lists(SECTION, min_size=1, max_size=3), min_size=2, max_size=4)


@dataclass
class World:
    a: Lock = field(default_factory=lambda: Lock("prop A", "A"))
    b: Lock = field(default_factory=lambda: Lock("prop B", "B"))
    cells: dict[str, Cell] = field(default_factory=lambda: {"A": Cell("cA"),
                                                             "B": Cell("cB"),
                                                             "total": Cell("total")})
    expected: Counter[str] = field(default_factory=Counter)
    torn: list[str] = field(default_factory=list)
    finished: int = 0


async def _take(lk: Lock, mode: str) -> None:
    await (rw_wlock(lk) if mode == "x" else rw_rlock(lk))


async def _write(w: World, name: str) -> None:
    """A split increment of the counter protected by lock `name` (held exclusively)."""
    cell = w.cells[name]
    v = await ops.racy_load(cell, "n")
    await ops.pause("between load and store")
    await ops.racy_store(cell, "n", v + 1)
    w.expected[name] += 1


async def _read(w: World, name: str) -> None:
    """Two reads under a shared hold must agree: no writer can get in between."""
    cell = w.cells[name]
    v1 = await ops.racy_load(cell, "n")
    v2 = await ops.racy_load(cell, "n")
    if v1 != v2:
        w.torn.append(f"{name}: {v1} then {v2}")


async def _section(w: World, ma: str | None, mb: str | None, upgrade: bool,
                   downgrade: bool, adds: int) -> None:
    modes: dict[str, str] = {}
    if ma is not None:
        await _take(w.a, ma)
        modes["A"] = ma
        if ma == "s" and upgrade and await rw_try_upgrade(w.a):
            modes["A"] = "x"
    if mb is not None:
        await _take(w.b, mb)
        modes["B"] = mb
    for name, mode in modes.items():
        await (_write(w, name) if mode == "x" else _read(w, name))
    if modes.get("A") == "x" and downgrade:
        await rw_downgrade(w.a)
        modes["A"] = "s"
        await _read(w, "A")
    for _ in range(adds):
        await ops.atomic_add(w.cells["total"], "n", 1)
        w.expected["total"] += 1
    if mb is not None:
        await rw_unlock(w.b)
    if ma is not None:
        await rw_unlock(w.a)


async def _thread(w: World, sections: list[tuple[Any, ...]]) -> None:
    for sec in sections:
        await _section(w, *sec)
    w.finished += 1


def _programs(w: World, progs: list[list[tuple[Any, ...]]]
              ) -> list[Coroutine[Any, Any, None]]:
    return [_thread(w, p) for p in progs]


@given(PROGRAMS, st.integers(min_value=0, max_value=2**32))
@settings(max_examples=150, deadline=None)
def test_ordered_lock_programs_never_fail(progs: list[list[tuple[Any, ...]]],
                                          seed: int) -> None:
    w = World()
    ex = Execution(RandomStrategy(seed), [Witness()], step_bound=5_000)
    for i, coro in enumerate(_programs(w, progs)):
        ex.spawn(f"t{i}", "prop", coro)
    out = ex.run()
    assert out.violation is None, (out.violation.kind, out.violation.message)
    assert all(t.done and not t.held for t in ex.threads)
    assert w.finished == len(progs)
    assert not w.a.locked() and not w.b.locked()
    assert w.torn == []
    for name in ("A", "B", "total"):
        assert w.cells[name].n == w.expected[name], name
    assert w.expected["total"] == sum(sec[4] for p in progs for sec in p)
    assert out.steps == len(out.schedule)


def test_unordered_lock_programs_do_fail() -> None:
    # the control for the property above: the same machinery finds the B-then-A bug
    kinds = set()
    for seed in range(60):
        w = World()

        async def backwards(w: World = w) -> None:
            await rw_wlock(w.b)
            await rw_wlock(w.a)
            await rw_unlock(w.a)
            await rw_unlock(w.b)

        ex = Execution(RandomStrategy(seed), [Witness()])
        ex.spawn("t0", "prop", _thread(w, [("x", "x", False, False, 0)]))
        ex.spawn("t1", "prop", backwards())
        out = ex.run()
        assert out.violation is not None
        kinds.add(out.violation.kind)
    assert kinds == {"deadlock", "lock-order"}
