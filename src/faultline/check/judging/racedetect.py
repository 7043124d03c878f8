"""Race detection: plain model code touches shared state only under what orders it.

What lives here: `RaceDetector`, an observer that replays each step's logged field
accesses (`rt.context.access_log`, filled while `rt.context.logging_accesses()` is
active) against happens-before built with vector clocks from the step's op, and ends
the run with a `data-race` Violation at the first pair of conflicting accesses that
nothing orders.  It checks the assumption DPOR is built on (check/search/dependency.py): code
between two traps reads shared state only after the lock, busy, wakeup or atomic that
orders it against the writers, so scheduling only at traps loses no outcome.
Rule kept: happens-before here is never stronger than DPOR's dependency relation
(a shared release does not order a later shared acquire, a read-only atomic releases
nothing, two wakeups do not order each other), so a trace DPOR thinks equivalent cannot
hide a race this detector calls ordered.  Must not be added: VM knowledge (fields,
lock letters and their meanings are read from the classes and their module docstrings).

    step of t:  [op acquires]  op's own accesses  [op releases]  code's accesses
    access a by t, earlier b by u != t on the same (object, field), one a write:
        race  unless  clock(t)[u] >= epoch(b)      (b happens before a)
        exempt: both atomic; an atomic read against a plain write (a marked racy
        read, like racy_load, that DPOR sees through the op's footprint)
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from types import CodeType
from typing import Any

from faultline.rt import context, ops
from faultline.rt.context import CONTENTS, INLINE_ATOMIC, Tracked
from faultline.rt.execution import Execution, FaultlineInternalError, Hooks, Thread, Violation

Clock = dict[int, int]        # thread id -> epoch


def _join(into: Clock, other: Clock) -> None:
    for k, v in other.items():
        if into.get(k, 0) < v:
            into[k] = v


@dataclass(slots=True)
class _Access:
    """One logged access, as kept in the shadow state of its (object, field)."""

    tid: int
    epoch: int
    write: bool
    atomic: bool
    step: int
    site: tuple[CodeType, int] | tuple[str, int, str] | None


@dataclass(slots=True)
class _Var:
    """Shadow state of one (object, field): the latest access of each (thread, kind).
    A later access of the same thread and kind happens after the earlier, so whatever
    races with the earlier one races with it too."""

    obj: Any                  # kept alive: ids must not be reused during the run
    writes: dict[tuple[int, bool], _Access]
    reads: dict[tuple[int, bool], _Access]


# Busy-word actions (rt.sync.BusyWord.apply): acquisitions take effect only when they
# return True; releases always (they may also wake sleepers on the word).
_BUSY_ACQUIRE = {"tryx": "x", "trys": "s", "tryupgrade": "x"}
_BUSY_RELEASE = {"xunbusy": "x", "downgrade": "x", "free": "x", "sunbusy": "s"}


def _racy(op: ops.Atomic) -> bool:
    """racy_load / racy_store: relaxed, no happens-before."""
    return op.what.startswith(("load ", "store "))


class RaceDetector(Hooks):
    """Reports the first unordered pair of conflicting accesses as a data race."""

    wants_accesses = True
    wants_sites = True            # an op's await site stands for its function's accesses

    def __init__(self) -> None:
        self.clocks: dict[int, Clock] = {}
        # Release clocks, keyed by id() with the object kept alive: a lock or busy word
        # has one joined by every release (exclusive acquisitions take it) and one
        # joined by exclusive releases only (shared acquisitions take that).
        self.locks: dict[int, tuple[Any, Clock, Clock]] = {}
        self.chans: dict[int, tuple[Any, Clock]] = {}       # sleep queues
        self.atomics: dict[int, tuple[Any, Clock]] = {}     # atomic ops' objects
        self.holds: dict[tuple[int, int], str] = {}         # (tid, id(lock)) -> mode
        self.vars: dict[tuple[int, str], _Var] = {}
        self.op_site: tuple[str, int, str] | None = None
        self.verified = False

    # -- hooks
    def created(self, ex: Execution, t: Thread) -> None:
        """A spawned thread starts with its parent's clock; the parent moves on."""
        parent = ex.current
        if parent is None:
            self.clocks[t.tid] = {t.tid: 1}
            return
        pc = self.clocks[parent.tid]
        self.clocks[t.tid] = {**pc, t.tid: 1}
        pc[parent.tid] += 1

    def performing(self, ex: Execution, t: Thread, op: ops.Op) -> None:
        """Remember where an op whose own function may touch model fields was awaited."""
        tp = type(op)
        if (tp is ops.Atomic and not op.what.startswith("load ")) or \
                (tp is ops.Sleep and op.check is not None):
            self.op_site = t.where()
        else:
            self.op_site = None

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        """Apply the op's happens-before edges and check the step's accesses."""
        if not self.verified:
            if not context.accesses_logged():
                raise FaultlineInternalError(
                    "race detection needs the run inside rt.context.logging_accesses()")
            self.verified = True
        tid = t.tid
        c = self.clocks[tid]
        tp = type(op)
        if tp is ops.Acquire:
            if result is not False:
                self._acquire(c, tid, op.lock, op.mode)
        elif tp is ops.Release:
            self._release(c, tid, op.lock)
        elif tp is ops.Upgrade:
            if result:
                self.holds[(tid, id(op.lock))] = "x"
                _join(c, self._lock(op.lock)[1])
        elif tp is ops.Downgrade:
            _, every, excl = self._lock(op.lock)
            _join(every, c)
            _join(excl, c)
            c[tid] += 1
            self.holds[(tid, id(op.lock))] = "s"
        elif tp is ops.Busy:
            self._busy(c, tid, op, result)
        elif tp is ops.Sleep:
            chan = self._chan(op.chan)
            _join(c, chan)                       # the sleepqueue lock
            self._check(ex, tid, ex.op_accesses, self._own(op.chan, ex.op_accesses))
            if result and op.interlock is not None:
                self._release(c, tid, op.interlock)
            _join(chan, c)
            c[tid] += 1
        elif tp is ops.Resume:
            _join(c, self._chan(op.chan))
        elif tp is ops.Wakeup:
            _join(self._chan(op.chan), c)
            c[tid] += 1
        elif tp is ops.Atomic:
            racy = _racy(op)
            if not racy:
                _join(c, self._atomic(op.obj))
            self._check(ex, tid, ex.op_accesses, self._own(op.obj, ex.op_accesses))
            if not racy and op.write:
                _join(self._atomic(op.obj), c)
                c[tid] += 1
        elif tp is ops.Spawn:
            self._check(ex, ex.threads[-1].tid, ex.op_accesses, set())
        self._check(ex, tid, ex.code_accesses, set())

    def finished(self, ex: Execution, outcome: Any) -> None:
        """Drop the shadow state (it keeps model objects alive)."""
        self.vars.clear()
        self.locks.clear()
        self.chans.clear()
        self.atomics.clear()

    # -- happens-before
    def _lock(self, lk: Any) -> tuple[Any, Clock, Clock]:
        e = self.locks.get(id(lk))
        if e is None:
            e = self.locks[id(lk)] = (lk, {}, {})
        return e

    def _chan(self, chan: Any) -> Clock:
        e = self.chans.get(id(chan))
        if e is None:
            e = self.chans[id(chan)] = (chan, {})
        return e[1]

    def _atomic(self, obj: Any) -> Clock:
        e = self.atomics.get(id(obj))
        if e is None:
            e = self.atomics[id(obj)] = (obj, {})
        return e[1]

    def _acquire(self, c: Clock, tid: int, lk: Any, mode: str) -> None:
        _, every, excl = self._lock(lk)
        _join(c, every if mode == "x" else excl)
        self.holds[(tid, id(lk))] = mode

    def _release(self, c: Clock, tid: int, lk: Any) -> None:
        _, every, excl = self._lock(lk)
        _join(every, c)
        if self.holds.pop((tid, id(lk)), "x") == "x":
            _join(excl, c)
        c[tid] += 1

    def _busy(self, c: Clock, tid: int, op: ops.Busy, result: Any) -> None:
        mode = _BUSY_ACQUIRE.get(op.action)
        if mode is not None:
            if result:
                _, every, excl = self._lock(op.word)
                _join(c, every if mode == "x" else excl)
                if op.gate is not None:
                    # The gate (object busy) was seen drained: after its last release.
                    _join(c, self._atomic(op.gate))
            return
        mode = _BUSY_RELEASE.get(op.action)
        if mode is None:
            raise FaultlineInternalError(f"race detection: unclassified busy action "
                                         f"{op.action!r}")
        _, every, excl = self._lock(op.word)
        _join(every, c)
        if mode == "x":
            _join(excl, c)
        _join(self._chan(op.word), c)            # the sleepers it may wake
        c[tid] += 1

    # -- accesses
    @staticmethod
    def _own(obj: Any, accesses: list[Any]) -> set[int]:
        """Objects an op's function accesses atomically: the op's own object and those
        it touch()es (both in the op's DPOR footprint); anything else it reads or writes
        is a plain access, unseen by DPOR."""
        own = {id(obj)}
        for o, field, _, _ in accesses:
            if field == CONTENTS:
                own.add(id(o))
        return own

    def _check(self, ex: Execution, tid: int, accesses: list[Any], atomic: set[int]) -> None:
        if not accesses:
            return
        c = self.clocks[tid]
        step = ex.steps
        seen: set[tuple[int, str, bool]] = set()
        for obj, field, how, site in accesses:
            if not isinstance(obj, Tracked):
                continue                  # rt.sync primitives and plain data
            inline = how == INLINE_ATOMIC
            write = bool(how)
            k = (id(obj), field, write)
            if inline:
                _join(c, self._atomic(obj))      # an atomic RMW in the middle of a step
            elif k in seen:
                continue                  # same epoch, same kind: nothing new to check
            seen.add(k)
            is_atomic = inline or id(obj) in atomic
            var = self.vars.get(k[:2])
            if var is None:
                var = self.vars[k[:2]] = _Var(obj, {}, {})
            new = _Access(tid, c[tid], write, is_atomic, step, site or self.op_site)
            for prev in (*var.writes.values(), *(var.reads.values() if write else ())):
                if prev.tid != tid and c.get(prev.tid, 0) < prev.epoch and \
                        _reportable(prev.write, prev.atomic, write, is_atomic):
                    raise self._race(ex, obj, field, prev, new)
            (var.writes if write else var.reads)[(tid, is_atomic)] = new
            if inline:
                _join(self._atomic(obj), c)
                c[tid] += 1
                seen.clear()              # later accesses are of a new epoch

    # -- reporting
    def _race(self, ex: Execution, obj: Any, field: str, a: _Access, b: _Access
              ) -> Violation:
        what = f"{_struct(type(obj))}.{field} of {obj!r}"
        letters = _locked_by(type(obj), field)
        prot = f" ({letters})" if letters else ""
        msg = (f"data race on {what}{prot}: {_describe(ex, a)}; {_describe(ex, b)}; "
               f"no lock, busy, sleep/wakeup, spawn or atomic op orders them")
        return Violation("data-race", msg, {
            "object": repr(obj), "field": field, "locked_by": letters,
            "first": _details(ex, a), "second": _details(ex, b)})


def _reportable(w1: bool, a1: bool, w2: bool, a2: bool) -> bool:
    """Do two conflicting accesses (one at least a write) of these kinds race?"""
    if a1 and a2:
        return False              # atomics never race with each other
    if not w1 or not w2:          # one read: exempt if it is the atomic one
        reader_atomic = a1 if not w1 else a2
        return not reader_atomic
    return True


def _struct(cls: type) -> str:
    """VmPage -> vm_page, VmMapEntry -> vm_map_entry (the FreeBSD struct names)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()


_LEGENDS: dict[str, dict[str, str]] = {}


def _legend(module: str) -> dict[str, str]:
    """The lock letters a model module's docstring defines ("(O) owning object lock")."""
    leg = _LEGENDS.get(module)
    if leg is None:
        doc = getattr(sys.modules.get(module), "__doc__", None) or ""
        _, _, tail = doc.partition("legend")
        leg = _LEGENDS[module] = {
            m.group(1): " ".join(m.group(2).split())
            for m in re.finditer(r"\(([A-Z]{1,3})\)\s+(.+?)(?=\s{2,}\(|\n|$)", tail)}
    return leg


def _locked_by(cls: type, field: str) -> str:
    """The field's lock letters with their meanings, e.g. "locked_by O,B: O owning
    object lock, B page busy"; empty for an unannotated field."""
    if not dataclasses.is_dataclass(cls):
        return ""
    f = next((f for f in dataclasses.fields(cls) if f.name == field), None)
    letters = f.metadata.get("lock") if f is not None else None
    if not letters:
        return ""
    leg = _legend(cls.__module__)
    meanings = [f"{x} {leg[x]}" for x in letters.split(",") if x in leg]
    return f"locked_by {letters}" + (f": {', '.join(meanings)}" if meanings else "")


def _site(a: _Access) -> tuple[str, int, str]:
    s = a.site
    if s is None:
        return ("?", 0, "?")
    if isinstance(s[0], CodeType):
        code, line = s[0], s[1]
        path = code.co_filename
        short = path.split("/src/faultline/")[-1] if "/src/faultline/" in path else \
            path.rsplit("/", 1)[-1]
        return (short, int(line), code.co_name)
    path, line, fn = s  # type: ignore[misc]
    short = path.split("/src/faultline/")[-1] if "/src/faultline/" in path else \
        path.rsplit("/", 1)[-1]
    return (short, line, fn)


def _kind(a: _Access) -> str:
    return ("atomic " if a.atomic else "plain ") + ("write" if a.write else "read")


def _describe(ex: Execution, a: _Access) -> str:
    file, line, fn = _site(a)
    return (f"{_kind(a)} by {ex.threads[a.tid].name} (thread {a.tid}) in {fn} at "
            f"{file}:{line}, step {a.step}")


def _details(ex: Execution, a: _Access) -> dict[str, Any]:
    file, line, fn = _site(a)
    return {"thread": ex.threads[a.tid].name, "tid": a.tid, "access": _kind(a),
            "function": fn, "file": file, "line": line, "step": a.step}
