"""The memory-semantics oracle: what every user read must return, POSIX-wise.

What lives here: an abstract memory (cells and the slots through which processes reach
them) driven by the kernel's notes (mmap, fork, exit, exec, and munmap, mprotect and
minherit as reported under the map lock) and `MemoryOracle`, an observer that checks
each user access the moment it happens.  Every access is one atomic op, so the
history is totally ordered and a read is linearizable iff it returns a value its cell
may hold at that point.

Abstract meaning: a private mapping is copied at fork, a shared one aliased (the same
slot); a private file mapping sees the file's cell until the kernel copies the page: at
its first private store, or at any write fault or wiring fault before it (a fault whose
store then fails, after a racing mprotect, has still made the copy), which freezes the
value the file had then.  A fork makes a copy-inherited page copy-on-write on both
sides, over the cell as it was when the fork's walk copied the entry (so a shared
mapping inherited by copy stops sharing, in the parent too, as vm_map_copy_entry
makes it); accesses to a range whose munmap/mprotect is in progress may go either way.
A truncation takes the file's pages past its new end away from every mapping that
has not copied them (an access must then fault; while it runs, either); a pwrite sets a
file cell as a shared store would.  A read may also state the value it must see
(`read ADDR expect VALUE`): a mismatch is a violation of kind "expect", reported the
same way.
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
    gone: bool = False        # a file page past the end after a truncation
    flux: int = 0             # truncations in progress that may remove it


@dataclass(eq=False)
class Slot:
    """How a process reaches a cell.  `cow`: copy-on-write (a private file mapping, or
    either side of a copy-inherited fork): it follows the cell until the kernel copies
    the page; `frozen`: the values such a copy, if one may have been made without a
    store succeeding (a write fault whose store then failed, a wiring fault), may hold;
    None if no copy can have been made."""

    cell: Cell
    cow: bool = False
    frozen: set[int] | None = None


@dataclass(eq=False)
class CopyWindow:
    """A write or wiring in progress on a COW slot: every value its file cell held since
    it began (the value a copy made by one of its faults would freeze)."""

    cell: Cell
    values: set[int]


@dataclass
class AbsProc:
    """A process's abstract address space (page-aligned va -> slot, protection bits,
    inheritance)."""

    slots: dict[int, Slot] = field(default_factory=dict)
    prot: dict[int, int] = field(default_factory=dict)
    inherit: dict[int, str] = field(default_factory=dict)


@dataclass
class ForkWindow:
    """A fork in progress: the child's address space as the walk builds it, and its COW
    slots with the copy windows that were open on the parent's page (a copy made before
    the fork ends may land in the object the child shares)."""

    parent: str
    child: AbsProc = field(default_factory=AbsProc)
    pending: list[tuple[Slot, list[CopyWindow]]] = field(default_factory=list)


class MemoryOracle(Hooks):
    """Checks every user access against the abstract memory; raises Violation("memory")
    (or "expect", for a read that did not see the value its op states).

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
        self.copying: dict[tuple[str, int], list[CopyWindow]] = {}
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
        """The parent's map is locked: the child's address space is built entry by entry."""
        self._proc(d["parent"])
        self.forks[d["child"]] = ForkWindow(d["parent"])

    def on_fork_entry(self, d: dict[str, Any]) -> None:
        """vmspace_fork copied one entry (map still locked).  share: the same slot; zero:
        a fresh zero cell; copy: both sides now see the entry's object copy-on-write, so
        the child and the parent each get a COW slot over the cell as it is now (the
        parent cannot store to it again before the fork ends: its PTEs are read-only and
        a write fault waits for the map lock)."""
        parent, w = d["parent"], self.forks[d["child"]]
        ap = self._proc(parent)
        for va in _span(d):
            slot = ap.slots.get(va)
            if slot is None:
                continue
            if d["inherit"] == "share":
                new = slot
            elif d["inherit"] == "zero":
                new = Slot(Cell(f"{d['child']}:{va:#x}", {0}))
            else:
                new = Slot(slot.cell, cow=True, frozen=_copy(slot.frozen))
                w.pending.append((new, list(self.copying.get((parent, va), ()))))
                if not slot.cow:
                    ap.slots[va] = Slot(slot.cell, cow=True)
            w.child.slots[va] = new
            w.child.prot[va], w.child.inherit[va] = ap.prot[va], d["inherit"]

    def on_fork_end(self, d: dict[str, Any]) -> None:
        """The child exists; a copy the parent's faults made meanwhile may be its too."""
        w = self.forks.pop(d["child"])
        for slot, windows in w.pending:
            for cw in windows:
                if cw.cell is slot.cell and cw.values:
                    slot.frozen = (slot.frozen or set()) | cw.values
        self.procs[d["child"]] = w.child

    def on_truncate_begin(self, d: dict[str, Any]) -> None:
        """Until truncate returns, a page past the new end may be reached or not."""
        for cell in self.files[d["file"]][d["pages"]:]:
            cell.flux += 1

    def on_truncate_end(self, d: dict[str, Any]) -> None:
        """truncate returned: the file's pages past the end are gone for every mapping
        that has not copied them (a private copy is the process's own)."""
        for cell in self.files[d["file"]][d["pages"]:]:
            cell.flux -= 1
            cell.gone = True

    def on_file_write(self, d: dict[str, Any]) -> None:
        """pwrite stored into the file: shared mappings, and private ones not yet
        copied, see the value from now on."""
        cell = self.files[d["file"]][d["pindex"]]
        if cell.gone and not cell.flux:
            raise Violation("memory", f"pwrite to {cell.label} succeeded past the end "
                            "of the file")
        self._store(Slot(cell), d["value"])

    def on_file_write_failed(self, d: dict[str, Any]) -> None:
        """pwrite failed: only right past the end of the file."""
        cell = self.files[d["file"]][d["pindex"]]
        if not cell.gone and not cell.flux:
            raise Violation("memory", f"pwrite to {cell.label} failed with {d['error']} "
                            "although the page is within the file")

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

    def on_mlock_begin(self, d: dict[str, Any]) -> None:
        """Wiring a writable private file mapping copies its pages (the wiring fault
        writes): every COW page of the range may be copied while mlock runs."""
        for va in _pages(d):
            self._open_copy(d["proc"], va)

    def on_mlock_end(self, d: dict[str, Any]) -> None:
        """mlock returned: what its faults may have copied stays possible."""
        for va in _pages(d):
            self._close_copy(d["proc"], va)

    def on_user_store_begin(self, d: dict[str, Any]) -> None:
        """A store begins: its write faults may copy a COW page before it completes."""
        self._open_copy(d["proc"], d["va"] & ~(PAGE - 1))

    def _open_copy(self, proc: str, page: int) -> None:
        slot = self._proc(proc).slots.get(page)
        cell = slot.cell if slot is not None and slot.cow else Cell("-", set())
        self.copying.setdefault((proc, page), []).append(CopyWindow(cell, set(cell.values)))

    def _close_copy(self, proc: str, page: int) -> None:
        # The oldest window goes: it has seen the most, so the candidates only grow.
        windows = self.copying.get((proc, page))
        if not windows:
            return
        cw = windows.pop(0)
        if not windows:
            del self.copying[(proc, page)]
        slot = self.procs.get(proc, AbsProc()).slots.get(page)
        if slot is not None and slot.cow and slot.cell is cw.cell:
            slot.frozen = (slot.frozen or set()) | cw.values

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
        if write:
            self._close_copy(proc, page)
        eof = slot is not None and (slot.cell.gone or slot.cell.flux > 0)
        if value is None:
            if permitted and not flux and not eof:
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
        if slot.cell.gone and not slot.cell.flux:
            self._past_eof(proc, va, slot, write, value)
        elif write:
            self._store(slot, value)
        else:
            self._load(proc, va, slot, value)

    def _past_eof(self, proc: str, va: int, slot: Slot, write: bool, value: int) -> None:
        # Only a private copy made before the truncation can still be reached.
        copied = set(slot.frozen or ())
        for cw in self.copying.get((proc, va & ~(PAGE - 1)), ()):
            if cw.cell is slot.cell:
                copied |= cw.values
        if not (slot.cow and copied and (write or value in copied)):
            verb = "write" if write else "read"
            self._fail(proc, va, f"{proc} {verb} {va:#x} succeeded although "
                       f"{slot.cell.label} is past the end of the truncated file: a "
                       "stale mapping survived the truncation")
        slot.cell, slot.cow, slot.frozen = Cell(slot.cell.label + "'", {value}), False, None

    def on_read_expect(self, d: dict[str, Any]) -> None:
        """A read that states the value it must see (`read ADDR expect VALUE`): the
        scenario's claim, checked after the POSIX one above (a fault is a mismatch)."""
        seen, expected = d["seen"], d["expected"]
        if seen != expected:
            what = "faulted" if seen is None else f"-> {seen}"
            self._fail(d["proc"], d["va"], f"thread {d['thread']}: {d['proc']} read "
                       f"{d['va']:#x} {what}, expected {expected} (the scenario's expect)",
                       kind="expect")

    def _load(self, proc: str, va: int, slot: Slot, value: int) -> None:
        # A COW slot may read its file's cell, or a copy frozen by a fault that did not
        # store (closed: slot.frozen; still running: an open copy window).
        attached = value in slot.cell.values
        if attached and not slot.cow and slot.frozen is None:
            slot.cell.values = {value}          # the common case: a page of our own
            return
        copied = set(slot.frozen or ())
        if slot.cow:
            for cw in self.copying.get((proc, va & ~(PAGE - 1)), ()):
                if cw.cell is slot.cell:
                    copied |= cw.values
        if not attached and value not in copied:
            want = " or ".join(str(v) for v in sorted(slot.cell.values | copied))
            self._fail(proc, va, f"{proc} read {va:#x} -> {value}, expected {want} "
                       f"({slot.cell.label}{' or a copy of it' if copied else ''})")
        if not attached:
            # Only a copy holds it: the page was copied, and is private from now on.
            slot.cell, slot.cow, slot.frozen = Cell(slot.cell.label + "'", {value}), False, None
        elif value not in copied:
            slot.cell.values, slot.frozen = {value}, None
        else:
            slot.frozen = {value}     # either way: the file's cell may not be narrowed

    def _store(self, slot: Slot, value: int) -> None:
        for windows in self.copying.values():
            for cw in windows:
                if cw.cell is slot.cell:
                    cw.values.add(value)
        if slot.cow:
            slot.cell, slot.cow, slot.frozen = Cell(slot.cell.label + "'", {value}), False, None
        else:
            slot.cell.values = {value}

    def _fail(self, proc: str, va: int, msg: str, kind: str = "memory") -> None:
        if self.explain is not None:
            msg += ": " + self.explain(proc, va)
        raise Violation(kind, msg)


def _copy(values: set[int] | None) -> set[int] | None:
    return None if values is None else set(values)


def _pages(d: dict[str, Any]) -> range:
    return range(d["addr"], d["addr"] + d["pages"] * PAGE, PAGE)


def _span(d: dict[str, Any]) -> range:
    return range(d["start"], d["end"], PAGE)


def _prot_name(bits: int) -> str:
    return next((name for name, b in PROT_BITS.items() if b == bits), f"{bits:#x}")
