"""The state at a violation, for the counterexample view: chains, objects, pages, PTEs.

What lives here: `SnapshotRecorder`, an observer that, when a run ends in a violation,
reads the model at the addresses the violation concerns into a `Snapshot` of plain
strings and numbers, and `assertion_frames`, the model frames of a failed KASSERT.

The addresses: those the violation's message names (an invariant says "p2 maps page0
at 0x1000"), else the one the violating thread last faulted on or touched (its notes
carry `va`), else the one its current scenario op names.  Names are the model's and
explain_va's: objects as `obj2` or `vn:data`, a page's place as `obj1[2]`, a process's
memory at an address as the oracle names it (`p1:0x3000`); each object's role is where
it sits in the chains at the address (`p1 top`, `p1 backing`).

Rule kept: read-only over the model (the vm is the structure checker's, as the state
cache finds it).  Must not be added: rendering (report.violation_view) or judging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from types import TracebackType

from faultline.check.judging.invariants import StructureChecker
from faultline.kern.pmap import PAGE_SIZE
from faultline.kern.proc import Proc
from faultline.kern.vm import Vm
from faultline.kern.vm_map import VmMapEntry
from faultline.kern.vm_object import VmObject
from faultline.kern.vm_page import VmPage
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Outcome, Thread
from faultline.rt.sync import Panic

__all__ = ["Frame", "ObjectAt", "PageAt", "ProcAt", "Snapshot", "SnapshotRecorder",
           "assertion_frames", "package_path"]

_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")
_PAGE_NAME = re.compile(r"\bpage(\d+)\b")
_DEPTHS = ("top", "backing")
MAX_ADDRESSES = 2             # a snapshot concerns one or two addresses, not the map


@dataclass(frozen=True, slots=True)
class Frame:
    """One model frame: its file relative to the package, line and function."""

    file: str
    line: int
    function: str


@dataclass(frozen=True, slots=True)
class ProcAt:
    """A process at an address: its PTE and its entry's chain (`obj2[2] -> obj1[2]=page2`)."""

    proc: str
    va: int
    pte: str
    chain: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ObjectAt:
    """An object in one of those chains, with the counts and flags D51474 argues about."""

    name: str
    role: str
    ref_count: int
    shadow_count: int
    flags: str
    pip: int


@dataclass(frozen=True, slots=True)
class PageAt:
    """A page in those chains, PTEs or the violation's message."""

    name: str
    place: str            # what the scenario calls it: p1:0x3000, data[0]
    owner: str            # object[pindex], or "-" once freed or removed
    busy: str             # U, X(W3), S(1), FREED; +W with waiters
    valid: bool
    content: int
    mapped: tuple[str, ...]   # p1:0x3000 rw


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The model at the violation, at `vas`, and where every thread was."""

    vas: tuple[int, ...]
    procs: tuple[ProcAt, ...]
    objects: tuple[ObjectAt, ...]
    pages: tuple[PageAt, ...]
    threads: tuple[str, ...]         # "X asleep on page2 (vmocol)", "W1 done"
    assertion: tuple[Frame, ...]     # a failed KASSERT's model frames, innermost first


def package_path(path: str) -> str:
    """`.../site-packages/faultline/kern/vm_fault.py` -> `kern/vm_fault.py`."""
    parts = PurePath(path).parts
    if "faultline" in parts:
        i = len(parts) - 1 - parts[::-1].index("faultline")
        return "/".join(parts[i + 1:])
    return PurePath(path).name


def assertion_frames(exc: BaseException | None) -> tuple[Frame, ...]:
    """The model frames (not rt's) of the KASSERT behind a panic, innermost first; empty
    for a violation an observer raised (an invariant, the oracle)."""
    cause = exc.__context__ if exc is not None else None
    if not isinstance(cause, Panic):          # rt.execution raises Violation from it
        return ()
    frames: list[Frame] = []
    tb: TracebackType | None = cause.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        if "/faultline/kern/" in path.replace("\\", "/"):
            frames.append(Frame(package_path(path), tb.tb_lineno, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    return tuple(reversed(frames))


class SnapshotRecorder(Hooks):
    """Takes a `Snapshot` when the run ends in a violation (else leaves it None)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self._last_va: dict[str, int] = {}

    def noted(self, ex: Execution, t: Thread, note: ops.Note) -> None:
        """Remember each thread's latest address: a fault's or access's, or its op's."""
        data = note.data
        if isinstance(data, dict):
            va = data.get("va")
            if isinstance(va, int) and not isinstance(va, bool):
                self._last_va[t.name] = va
            elif note.kind == "op":
                found = _HEX.search(str(data.get("op", "")))
                if found:
                    self._last_va[t.name] = int(found.group(), 16)

    def finished(self, ex: Execution, outcome: Outcome) -> None:
        """Read the model at the violation's addresses."""
        v = outcome.violation
        vm = next((o.vm for o in ex.observers if isinstance(o, StructureChecker)), None)
        if v is None or vm is None:
            return
        vas = self._addresses(v.message, outcome.violation_thread)
        names = {t.tid: t.name for t in ex.threads}
        procs = tuple(_proc_at(vm, p.name, va) for va in vas for p in vm.procs)
        objects = _objects(vm, vas)
        pages = _pages(vm, vas, v.message, names)
        threads = tuple(_thread_state(ex, t, outcome.violation_thread)
                        for t in ex.threads[1:])        # the setup thread is history
        self.snapshot = Snapshot(vas, procs, objects, pages, threads, assertion_frames(v))

    def _addresses(self, message: str, thread: str | None) -> tuple[int, ...]:
        named = [int(h, 16) for h in _HEX.findall(message) if int(h, 16) >= PAGE_SIZE]
        if not named and thread in self._last_va:
            named = [self._last_va[thread]]
        if not named:
            named = [va for _, va in sorted(self._last_va.items())]
        pages = dict.fromkeys(va & ~(PAGE_SIZE - 1) for va in named)
        return tuple(pages)[:MAX_ADDRESSES]


# ---------------------------------------------------------------- reading the model

def _entry_at(vm: Vm, proc: str, va: int) -> tuple[Proc | None, VmMapEntry | None]:
    """proc, if it still has an address space, and its map entry at va."""
    p = next((x for x in vm.procs if x.name == proc), None)
    if p is None or p.map is None:
        return None, None
    return p, next((e for e in p.map.entries if e.start <= va < e.end), None)


def _chain(e: VmMapEntry, va: int) -> list[tuple[VmObject, int]]:
    """(object, index) down e's chain at va."""
    out: list[tuple[VmObject, int]] = []
    obj, idx = e.object, e.pindex(va)
    while obj is not None and len(out) < 16:       # a cycle is an invariant's to report
        out.append((obj, idx))
        idx += obj.backing_object_offset
        obj = obj.backing_object
    return out


def _link(obj: VmObject, idx: int) -> str:
    p = obj.pages.get(idx)
    text = f"{obj!r}[{idx}]"
    if p is not None:
        text += f"={p!r}" + ("" if p.valid else "(invalid)")
    return text + (" (swap)" if idx in obj.swap else "")


def _proc_at(vm: Vm, proc: str, va: int) -> ProcAt:
    p, e = _entry_at(vm, proc, va)
    if p is None:
        return ProcAt(proc, va, "-", ("(exited)",))
    pte = p.map.pmap.ptes.get(va)
    shown = "none" if pte is None else f"{pte.page!r} {'rw' if pte.writable else 'ro'}"
    if e is None:
        return ProcAt(proc, va, shown, ("(no map entry)",))
    return ProcAt(proc, va, shown, tuple(_link(o, i) for o, i in _chain(e, va)))


def _objects(vm: Vm, vas: tuple[int, ...]) -> tuple[ObjectAt, ...]:
    roles: dict[VmObject, list[str]] = {}
    for va in vas:
        for p in vm.procs:
            _, e = _entry_at(vm, p.name, va)
            for depth, (obj, _) in enumerate(_chain(e, va) if e is not None else ()):
                role = f"{p.name} {_DEPTHS[depth] if depth < 2 else f'+{depth}'}"
                roles.setdefault(obj, [])
                if role not in roles[obj]:
                    roles[obj].append(role)
    return tuple(ObjectAt(repr(o), ", ".join(r), o.ref_count, o.shadow_count,
                          _flags(o), o.pip.count) for o, r in roles.items())


def _flags(o: VmObject) -> str:
    names = [f.name.removeprefix("OBJ_") for f in type(o.flags) if f in o.flags and f.name]
    return "|".join(names) or "0"


def _pages(vm: Vm, vas: tuple[int, ...], message: str, names: dict[int, str]
           ) -> tuple[PageAt, ...]:
    """The pages at vas in every chain and PTE, then those the message names."""
    found: dict[VmPage, str] = {}
    for va in vas:
        for p in vm.procs:
            proc, e = _entry_at(vm, p.name, va)
            if proc is None:
                continue
            pte = proc.map.pmap.ptes.get(va)
            if pte is not None:
                found.setdefault(pte.page, f"{p.name}:{va:#x}")
            for obj, idx in _chain(e, va) if e is not None else ():
                if idx in obj.pages:
                    found.setdefault(obj.pages[idx], _place(obj, idx, p.name, va))
    by_index = {m.index: m for m in vm.pages}
    for n in _PAGE_NAME.findall(message):
        m = by_index.get(int(n))
        if m is not None:
            found.setdefault(m, "")
    return tuple(_page_at(m, place, names) for m, place in found.items())


def _place(obj: VmObject, idx: int, proc: str, va: int) -> str:
    if obj.type == "vnode":
        return f"{obj!r}[{idx}]".removeprefix("vn:")
    return f"{proc}:{va:#x}"


def _page_at(m: VmPage, place: str, names: dict[int, str]) -> PageAt:
    owner = "-" if m.object is None or m.freed else f"{m.object!r}[{m.pindex}]"
    mapped = tuple(f"{pm.name}:{va:#x} {'rw' if pm.ptes[va].writable else 'ro'}"
                   for pm, va in m.pv_list if va in pm.ptes)
    return PageAt(repr(m), place or "-", owner, _busy(m, names), m.valid, m.content, mapped)


def _busy(m: VmPage, names: dict[int, str]) -> str:
    w = m.busy
    if w.xowner is not None and not w.freed:
        return f"X({names.get(w.xowner, w.xowner)})" + ("+W" if w.waiters else "")
    return w.state()


def _thread_state(ex: Execution, t: Thread, violating: str | None) -> str:
    if t.done:
        return f"{t.name} done"
    if t.name == violating:
        return f"{t.name} violating"
    op = t.pending
    if t.wchan is not None or (isinstance(op, ops.Acquire)
                               and not op.lock.can_acquire(t.tid, op.mode)):
        return f"{t.name} {ex.describe_blocked(t)}"
    return f"{t.name} runnable"
