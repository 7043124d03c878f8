"""Structural invariants of the VM model, checked after every step, and explanations.

What lives here: `check_structure(vm)`, which returns the first broken invariant in
words (or None), the `StructureChecker` observer that runs it, and `explain_va`, which
says what a process's pmap maps at an address and what its map entry's chain holds
(used to explain memory violations).  The invariants (reference sections 1.1-1.2):
  O1/O2  an anonymous object's shadow_count matches the links to it (a vnode object
         counts none); ref_count >= shadow_count
  O4     a page is in at most one object, at the index it records
  P1     a busy word is never exclusive and shared at once; freed pages are not held
  P3/P5  every PTE maps a valid, unfreed page
  O3     every PTE maps the topmost valid page for its index in its entry's chain (a
         swap block at the index in an object above it counts as that object's page),
         unless that topmost page is busied (a fault or collapse owns the change), or
         the chain ends at a write-locked object (a link being moved, _Relinking), or
         the map is write-locked and the page is not in the entry's chain (a split
         moving the entry's pages to its new object)
  W      a writable PTE maps a page of its entry's top object, through a writable
         entry that does not need a copy (skipped while the map is write-locked)
  PV     every PTE has its pv entry; a pv entry has its PTE, except while its pmap is
         locked (pmap_enter clears a replaced PTE before its pv entry goes, and lists
         a new pv entry before storing the PTE; so do pmap_copy, pmap_enter_quick)
Rule kept: read-only over the model.  Must not be added: memory semantics (oracle).
"""

from __future__ import annotations

import enum
from typing import Any

from faultline.kern.pmap import PAGE_SIZE, PMAP_LOCK_CLASS
from faultline.kern.vm import Vm
from faultline.kern.vm_map import MAP_ENTRY_NEEDS_COPY, VM_PROT_WRITE, VmMap, VmMapEntry
from faultline.kern.vm_object import OBJ_ANON, OBJECT_LOCK_CLASS
from faultline.kern.vm_page import VmPage
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Thread, Violation
from faultline.rt.ops import Op

PAGE = 4096


def chain_top(e: VmMapEntry, va: int) -> tuple[VmPage | None, str]:
    """The topmost valid page for `va` in e's object chain, and the path walked (None
    when the index's newest contents are in swap, or nowhere)."""
    obj, idx = e.object, e.pindex(va)
    path = []
    while obj is not None:
        p = obj.pages.get(idx)
        path.append(f"{obj!r}[{idx}]" + (f"={p!r}{'' if p.valid else '(invalid)'}" if p else "")
                    + ("(swapped)" if idx in obj.swap else ""))
        if p is not None and p.valid:
            return p, " -> ".join(path)
        if idx in obj.swap:
            return None, " -> ".join(path)
        idx += obj.backing_object_offset
        obj = obj.backing_object
    return None, " -> ".join(path)


def _chain_top_page(e: VmMapEntry, va: int) -> VmPage | _Relinking | None:
    # chain_top without the path: the check runs after every step, the path (a string
    # per object walked) is needed only for the message of a violation.  A walk that
    # ends at a write-locked object may have met a link being moved (RELINKING).
    obj, idx = e.object, (va - e.start) // PAGE_SIZE + e.offset   # e.pindex(va)
    while obj is not None:
        p = obj.pages.get(idx)
        if p is not None and p.valid:
            return p
        if idx in obj.swap:
            return None         # the newest contents are in swap: nothing below counts
        if obj.backing_object is None and obj.lock.owner is not None:
            return RELINKING
        idx += obj.backing_object_offset
        obj = obj.backing_object
    return None


class _Relinking(enum.Enum):
    """The chain ends at a write-locked object: vm_object_backing_transfer (collapse)
    and vm_object_backing_insert_ref (bypass) unlink an object from its backing object
    and link it to the next one with the object write-locked throughout, taking the
    next object's lock (or a reference) in between, in FreeBSD as here.  Every reader
    of the link holds that lock, so nobody can see the chain cut: O3 waits for the
    lock to be dropped (at the latest, the end of the run) to judge it."""

    TOKEN = 0


RELINKING = _Relinking.TOKEN


def _in_chain(e: VmMapEntry, m: VmPage) -> bool:
    # m belongs to an object of e's chain.
    obj = e.object
    while obj is not None:
        if m.object is obj:
            return True
        obj = obj.backing_object
    return False


def _entry(m: VmMap, va: int) -> VmMapEntry | None:
    for e in m.entries:
        if e.start <= va < e.end:
            return e
    return None


def check_objects(vm: Vm) -> str | None:
    """O1, O2, O4 over live objects."""
    objects = vm.objects
    counts: dict[int, int] = {}
    for o in objects:
        b = o.backing_object
        if b is not None and b.flags & OBJ_ANON:    # only anonymous objects count shadows
            counts[id(b)] = counts.get(id(b), 0) + 1
    for o in objects:
        n = counts.get(id(o), 0)
        if o.shadow_count != n or len(o.shadows) != n:
            return f"{o}: shadow_count {o.shadow_count} but {n} objects shadow it (O1)"
        if o.ref_count < o.shadow_count:
            return f"{o}: ref_count {o.ref_count} < shadow_count {o.shadow_count} (O2)"
        for pindex, m in o.pages.items():
            if m.object is not o or m.pindex != pindex or m.freed:
                return f"{m} listed in {o}[{pindex}] but records {m.object}[{m.pindex}] (O4)"
    return None


def check_pages(vm: Vm) -> str | None:
    """P1 and freed-page sanity."""
    for m in vm.pages:
        w = m.busy
        if w.xowner is not None and w.shares:
            return f"{m} is exclusive- and shared-busied at once ({w.state()}) (P1)"
        if m.freed and (w.xowner is not None or w.shares or m.pv_list):
            return f"freed {m} is still busied or mapped ({w.state()}, {m.pv_list})"
    return None


def check_mappings(vm: Vm, waiting: list[int] | None = None) -> str | None:
    """P3, P5, O3, W and PV over every live vmspace.  The addresses whose O3 waits for
    an object lock (_Relinking), or whose pv entry waits for its PTE under a held pmap
    lock, are appended to `waiting`."""
    for vmap in vm.maps:
        pm = vmap.pmap
        changing = vmap.lock.owner is not None
        entries = vmap.entries
        for va, pte in pm.ptes.items():
            m = pte.page
            if m.freed or not m.valid:
                return f"{pm.name} maps {'freed' if m.freed else 'invalid'} {m} at {va:#x}"
            if (pm, va) not in m.pv_list:
                return f"{pm.name} maps {m} at {va:#x} without a pv entry (PV)"
            for e in entries:                       # _entry(vmap, va)
                if e.start <= va < e.end:
                    break
            else:
                if changing:
                    continue
                return f"{pm.name} maps {m} at {va:#x}, where there is no map entry"
            top = _chain_top_page(e, va)
            if top is not m and changing and not _in_chain(e, m):
                # vm_object_split (fork, map write-locked) moves the entry's pages to
                # the new object before the entry points at it, sleeping on busy pages
                # in between: judged when the map lock is dropped (a map-lock op is
                # never skipped by StructureChecker).
                continue
            if top is RELINKING:
                if waiting is not None:
                    waiting.append(va)
                continue
            if top is not m and (top is None or not top.busy.busied()):
                top, path = chain_top(e, va)
                return (f"{pm.name} maps {m} at {va:#x} but the topmost valid page of its "
                        f"chain is {top} ({path}): a shadowed page stays mapped (O3)")
            if pte.writable and not changing and (
                    m.object is not e.object or e.eflags & MAP_ENTRY_NEEDS_COPY
                    or not e.protection & VM_PROT_WRITE):
                return (f"{pm.name} maps {m} writable at {va:#x} but it is not a page of the "
                        f"entry's top object {e.object} (W)")
    for m in vm.pages:
        pv_list = m.pv_list
        if pv_list:
            for pm, va in pv_list:
                pte = pm.ptes.get(va)
                if pte is None and pm.lock.owner is not None:
                    if waiting is not None:         # the PTE comes or went under the lock
                        waiting.append(va)
                    continue
                if pte is None or pte.page is not m:
                    return f"{m} has a pv entry for {pm.name} {va:#x} with no such PTE (PV)"
    return None


def check_structure(vm: Vm, waiting: list[int] | None = None) -> str | None:
    """The first broken structural invariant, in words, or None (see check_mappings
    for `waiting`)."""
    return check_objects(vm) or check_pages(vm) or check_mappings(vm, waiting)


class StructureChecker(Hooks):
    """Runs check_structure after every step (or only at the end with every_step=False).
    `checked_from`: steps before this index replay a prefix already checked in an
    earlier execution (DPOR re-executes prefixes), so they are not checked again.

    A step that provably left every field check_structure reads as it was is not checked
    again when the state before it was checked and passed: the check would pass again.
    The proof rests on the rule DPOR's soundness already needs (rt.context): model code
    changes model state only by writes to Tracked objects or with a touch(), both in the
    step's footprint, or through an op.  So a step qualifies when its footprint holds no
    write and its op changes nothing the check reads (see _keeps_structure).  The
    untracked state the check reads moves only with a logged write in the same step:
    busy words (Busy ops, or a fresh page's xbusy next to its insertion), Ptes (under a
    touch of the pmap), vm.objects and vm.pages (additions construct a Tracked object,
    vm_object_terminate writes obj.type with its removal).  The one exception,
    vmspace_teardown dropping a map from vm.maps, only removes checks whose inputs are
    otherwise unchanged, so a passing check still passes."""

    def __init__(self, vm: Vm, every_step: bool = True, checked_from: int = 0) -> None:
        self.vm = vm
        self.every_step = every_step
        self.checked_from = checked_from
        self.wants_footprints = every_step     # to see which steps wrote nothing
        self._passed = False    # the current state was checked (or kept) and passed
        self._waiting = False   # ... but O3 or PV waited for a lock somewhere in it

    def resume(self, checked_from: int) -> None:
        """This checker goes on in a run restored mid-way (check.running.setup_image)
        whose steps before `checked_from` an earlier run checked: as a replay would,
        it takes nothing about the current state as checked."""
        self.checked_from = checked_from
        self._passed = False

    def stepped(self, ex: Execution, t: Thread, op: Op, result: Any) -> None:
        """Check after the step."""
        if not self.every_step:
            return
        if ex.steps <= self.checked_from:
            self._passed = False
            return
        if self._passed and ex.records_footprints and self._keeps_structure(ex, op):
            return
        self._passed = False
        self._check()
        self._passed = True

    def _keeps_structure(self, ex: Execution, op: Any) -> bool:
        # No write in the step's footprint (the op's function, the code after it, a
        # spawned thread's first segment), and an op that changes nothing check_structure
        # reads: not a Busy op (busy words), no lock op on a live map's lock (the check
        # relaxes W while a map is write-locked), no release of an object lock while O3
        # waits for one (a chain ending at a write-locked object, _Relinking) nor of a
        # pmap lock while PV waits for one (a pv entry whose PTE is not there).
        for _, kind in ex.last_footprint:
            if kind != "r":
                return False
        kind = type(op)
        if kind in _LOCK_OPS:
            lock = op.lock
        elif kind is ops.Sleep:
            lock = op.interlock
        else:
            return kind in _INERT_OPS
        if lock is None:
            return True
        if self._waiting and kind in _RELEASING_OPS and lock.name in _WAITED_LOCK_CLASSES:
            return False
        return all(vmap.lock is not lock for vmap in self.vm.maps)

    def finished(self, ex: Execution, outcome: Any) -> None:
        """Check the final state too (unless the run already failed)."""
        if outcome.violation is None:
            try:
                self._check()
            except Violation as v:
                outcome.violation = v

    def _check(self) -> None:
        waiting: list[int] = []
        problem = check_structure(self.vm, waiting)
        self._waiting = bool(waiting)
        if problem is not None:
            raise Violation("invariant", problem)


# Ops whose only effect on model state is a lock's (or, for Sleep, an interlock's) state.
_LOCK_OPS = frozenset((ops.Acquire, ops.Release, ops.Upgrade, ops.Downgrade))
# Lock ops that may give up an exclusive hold (Sleep drops its interlock).
_RELEASING_OPS = frozenset((ops.Release, ops.Downgrade, ops.Sleep))
# The lock classes whose holds relax a check (`waiting`): O3's and PV's.
_WAITED_LOCK_CLASSES = frozenset((OBJECT_LOCK_CLASS, PMAP_LOCK_CLASS))
# Ops with no effect on model state beyond their footprint (Atomic's function logs its
# writes) and the scheduler's own (sleep queues, a new thread).
_INERT_OPS = frozenset((ops.Atomic, ops.Resume, ops.Wakeup, ops.Pause, ops.Spawn))


def explain_va(vm: Vm, proc: str, va: int) -> str:
    """What proc's pmap maps at va, and what its entry's chain holds there."""
    p = next((x for x in vm.procs if x.name == proc), None)
    if p is None or p.map is None:
        return f"{proc} has no address space"
    page = va & ~(PAGE - 1)
    pte = p.map.pmap.ptes.get(page)
    e = _entry(p.map, page)
    mapped = "nothing" if pte is None else (
        f"{pte.page} of {pte.page.object}[{pte.page.pindex}]"
        f"{' writable' if pte.writable else ' read-only'}")
    if e is None:
        return f"{proc}'s pmap maps {mapped} at {page:#x}; no map entry covers it"
    top, path = chain_top(e, page)
    return (f"{proc}'s pmap maps {mapped} at {page:#x}, while its entry's chain is {path} "
            f"(topmost valid page {top})")
