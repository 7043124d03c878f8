"""The memory-semantics oracle: what every user read must return, POSIX-wise.

What lives here: an abstract memory (cells and the slots through which processes reach
them) driven by the kernel's notes (mmap, fork, exit, exec, and munmap, mprotect and
minherit as reported under the map lock) and `MemoryOracle`, an observer that checks
each user access the moment it happens.  Every access is one atomic op, so the
history is totally ordered and a read is linearizable iff it returns a value its cell
may hold at that point.

Abstract meaning: a private mapping is copied at fork, a shared one aliased (the same
slot); a private file mapping sees the file's cell until its first private write; a
fork concurrent with writes may give the child any value the cell held while the fork
ran; accesses to a range whose munmap/mprotect is in progress may go either way.
Rule kept: the oracle never looks at kernel state to decide, only to explain.
Must not be added: structural invariants (check.judging.invariants).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faultline.kern.vm_map import PROT_BITS, VM_PROT_READ, VM_PROT_WRITE
from faultline.rt.execution import Execution, Hooks, Thread, Violation
from faultline.rt.ops import Note
from faultline.scenario.spec import Scenario

PAGE = 4096
_READ, _WRITE = VM_PROT_READ, VM_PROT_WRITE


@dataclass(eq=False)
class Cell:
    """One page's worth of abstract memory: the values it may hold now."""

    label: str
    values: set[int]


@dataclass(eq=False)
class Slot:
    """How a process reaches a cell; `cow` means 'the file's cell until I write'."""

    cell: Cell
    cow: bool = False


@dataclass
class AbsProc:
    """A process's abstract address space (page-aligned va -> slot, protection bits,
    inheritance)."""

    slots: dict[int, Slot] = field(default_factory=dict)
    prot: dict[int, int] = field(default_factory=dict)
    inherit: dict[int, str] = field(default_factory=dict)


@dataclass
class ForkWindow:
    """A fork in progress: per parent page, the slot, its protection and inheritance
    when the parent's map was locked, and every value its cell held meanwhile."""

    parent: str
    pages: dict[int, tuple[Slot, int, str, set[int]]] = field(default_factory=dict)


class MemoryOracle(Hooks):
    """Checks every user access against the abstract memory; raises Violation("memory").

    Address-space changes take effect at the kernel's notes made under the map lock
    (mmap, map-delete, map-protect, map-inherit, fork-locked), so a fork sees them in
    the order the map lock gave them; the munmap/mprotect begin and end notes only
    bound the window in which the process's own accesses may go either way."""

    def __init__(self, scenario: Scenario, explain: Any = None) -> None:
        self.scenario = scenario
        self.explain = explain           # callable(proc, va) -> str, from the world
        self.files = {f.name: [Cell(f"{f.name}[{i}]", {v}) for i, v in enumerate(f.pages)]
                      for f in scenario.files}
        self.procs: dict[str, AbsProc] = {}
        self.forks: dict[str, ForkWindow] = {}
        self.in_flux: dict[tuple[str, int], int] = {}
        self.accesses = 0

    def noted(self, ex: Execution, t: Thread, note: Note) -> None:
        """Dispatch a kernel note to its handler."""
        handler = getattr(self, "on_" + note.kind.replace("-", "_"), None)
        if handler is not None:
            handler(note.data)

    def _proc(self, name: str) -> AbsProc:
        # A process that never mapped anything has an empty address space.
        return self.procs.setdefault(name, AbsProc())

    # -- address-space changes
    def on_mmap(self, d: dict[str, Any]) -> None:
        """A new mapping: fresh zero cells, or the file's cells (shared or COW)."""
        ap = self._proc(d["proc"])
        obj = d["object"]
        for i in range(d["pages"]):
            va = d["addr"] + i * PAGE
            if obj == "None":
                ap.slots[va] = Slot(Cell(f"{d['proc']}:{va:#x}", {0}))
            else:
                cell = self.files[obj.removeprefix("vn:")][d["offset"] + i]
                ap.slots[va] = Slot(cell, cow=not d["shared"])
            ap.prot[va], ap.inherit[va] = PROT_BITS[d["prot"]], d["inherit"]

    def on_fork_locked(self, d: dict[str, Any]) -> None:
        """The parent's map is locked: snapshot what the child will inherit."""
        ap = self._proc(d["parent"])
        w = self.forks[d["child"]] = ForkWindow(d["parent"])
        for va, slot in ap.slots.items():
            w.pages[va] = (slot, ap.prot[va], ap.inherit[va], set(slot.cell.values))

    def on_fork_end(self, d: dict[str, Any]) -> None:
        """Build the child: share -> same slot, copy -> new cell, zero -> zero cell."""
        w = self.forks.pop(d["child"])
        child = AbsProc()
        for va, (slot, prot, inh, seen) in w.pages.items():
            if inh == "none":
                continue
            if inh == "share":
                new = slot
            elif inh == "zero":
                new = Slot(Cell(f"{d['child']}:{va:#x}", {0}))
            elif slot.cow:
                new = Slot(slot.cell, cow=True)
            else:
                new = Slot(Cell(f"{d['child']}:{va:#x}", seen))
            child.slots[va] = new
            child.prot[va], child.inherit[va] = prot, inh
        self.procs[d["child"]] = child

    def on_exit(self, d: dict[str, Any]) -> None:
        """The process is gone."""
        self.procs.pop(d["proc"], None)

    def on_exec_begin(self, d: dict[str, Any]) -> None:
        """exec: the old address space is being torn down."""
        self.procs[d["proc"]] = AbsProc()

    def on_munmap_begin(self, d: dict[str, Any]) -> None:
        """Accesses to the range may succeed or fault until munmap returns."""
        self._flux(d, +1)

    def on_map_delete(self, d: dict[str, Any]) -> None:
        """munmap took effect (map still locked; a vmspace is named after its process)."""
        ap = self._proc(d["map"])
        for va in _span(d):
            ap.slots.pop(va, None)
            ap.prot.pop(va, None)
            ap.inherit.pop(va, None)

    def on_munmap_end(self, d: dict[str, Any]) -> None:
        """munmap returned: accesses to the range fault from now on."""
        self._flux(d, -1)

    def on_mprotect_begin(self, d: dict[str, Any]) -> None:
        """Accesses to the range may see either protection until mprotect returns."""
        self._flux(d, +1)

    def on_map_protect(self, d: dict[str, Any]) -> None:
        """mprotect took effect (map still locked)."""
        ap = self._proc(d["map"])
        for va in _span(d):
            if va in ap.slots:
                ap.prot[va] = d["prot"]

    def on_mprotect_end(self, d: dict[str, Any]) -> None:
        """mprotect returned: the new protection holds for every access."""
        self._flux(d, -1)

    def on_map_inherit(self, d: dict[str, Any]) -> None:
        """minherit took effect (map still locked): later forks use it."""
        ap = self._proc(d["map"])
        for va in _span(d):
            if va in ap.slots:
                ap.inherit[va] = d["inherit"]

    def _flux(self, d: dict[str, Any], delta: int) -> None:
        for va in _pages(d):
            key = (d["proc"], va)
            self.in_flux[key] = self.in_flux.get(key, 0) + delta
            if not self.in_flux[key]:
                del self.in_flux[key]

    # -- accesses
    def on_user_access(self, d: dict[str, Any]) -> None:
        """Check one load or store."""
        self.accesses += 1
        proc, va, write, value = d["proc"], d["va"], d["write"], d["value"]
        page = va & ~(PAGE - 1)
        ap = self.procs.get(proc, AbsProc())
        slot = ap.slots.get(page)
        permitted = slot is not None and bool(ap.prot[page] & (_WRITE if write else _READ))
        flux = (proc, page) in self.in_flux
        verb = "write" if write else "read"
        if value is None:
            if permitted and not flux:
                self._fail(proc, va, f"{proc} {verb} {va:#x} failed with {d.get('error')} "
                           f"although {va:#x} is mapped {_prot_name(ap.prot[page])}")
            return
        if not permitted:
            if not flux:
                why = "unmapped" if slot is None else f"mapped {_prot_name(ap.prot[page])}"
                self._fail(proc, va, f"{proc} {verb} {va:#x} succeeded although the "
                           f"address is {why}: a stale mapping survived")
            if slot is None:
                return
        assert slot is not None
        if write:
            self._store(slot, value)
        elif value not in slot.cell.values:
            want = " or ".join(str(v) for v in sorted(slot.cell.values))
            self._fail(proc, va, f"{proc} read {va:#x} -> {value}, expected {want} "
                       f"({slot.cell.label})")
        else:
            slot.cell.values = {value}

    def _store(self, slot: Slot, value: int) -> None:
        if slot.cow:
            slot.cell, slot.cow = Cell(slot.cell.label + "'", {value}), False
        else:
            slot.cell.values = {value}
        for w in self.forks.values():
            for s, _prot, _inh, seen in w.pages.values():
                if s.cell is slot.cell:
                    seen.add(value)

    def _fail(self, proc: str, va: int, msg: str) -> None:
        if self.explain is not None:
            msg += ": " + self.explain(proc, va)
        raise Violation("memory", msg)


def _pages(d: dict[str, Any]) -> range:
    return range(d["addr"], d["addr"] + d["pages"] * PAGE, PAGE)


def _span(d: dict[str, Any]) -> range:
    return range(d["start"], d["end"], PAGE)


def _prot_name(bits: int) -> str:
    return next((name for name, b in PROT_BITS.items() if b == bits), f"{bits:#x}")
