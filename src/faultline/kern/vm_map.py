"""vm_map: address-space entries, the map lock, lookup for faults, fork, mmap family.

What lives here: `VmMap`/`VmMapEntry` and sys/vm/vm_map.c's operations: the sx map lock
with its timestamp, vm_map_lookup (NEEDS_COPY: shadow on write, strip write on read) and
vm_map_lookup_locked, insert/clip/delete/protect/inherit, wiring, and vmspace_fork with
SHARE (shared shadow for NEEDS_COPY entries) and COPY (COW on both sides, pmap_copy).
Rule kept: entries change only under the map write lock; object work that may sleep on
a deallocation is deferred until the map is unlocked (vm_map_process_deferred).
Must not be added: page-level fault logic (vm_fault).

Locking legend: (L) the vm_map lock  (C) immutable
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from faultline.kern import pmap as pmap_mod
from faultline.kern.pmap import PAGE_SIZE, Pmap, pmap_create
from faultline.kern.vm_object import (
    OBJ_ONEMAPPING,
    OBJ_SWAP,
    VmObject,
    vm_object_allocate_anon,
    vm_object_clear_flag,
    vm_object_collapse,
    vm_object_deallocate,
    vm_object_reference,
    vm_object_reference_locked,
    vm_object_shadow,
    vm_object_split,
    vm_object_sync,
)
from faultline.kern.vm_page import VmPage, locked_by, vm_page_unwire
from faultline.rt import ops
from faultline.rt.context import Tracked, touch
from faultline.rt.sync import (
    Lock,
    NotModelled,
    kassert,
    lock_assert,
    rw_downgrade,
    rw_rlock,
    rw_try_rlock,
    rw_try_upgrade,
    rw_try_wlock,
    rw_unlock,
    rw_wlock,
)

if TYPE_CHECKING:
    from faultline.kern.vm import Vm

VM_PROT_NONE, VM_PROT_READ, VM_PROT_WRITE, VM_PROT_EXECUTE = 0, 1, 2, 4
VM_PROT_COPY = 8
VM_PROT_ALL = VM_PROT_READ | VM_PROT_WRITE | VM_PROT_EXECUTE

MAP_ENTRY_COW = 0x1
MAP_ENTRY_NEEDS_COPY = 0x2
MAP_ENTRY_IN_TRANSITION = 0x4
MAP_ENTRY_USER_WIRED = 0x8

KERN_SUCCESS = "KERN_SUCCESS"
KERN_INVALID_ADDRESS = "KERN_INVALID_ADDRESS"
KERN_PROTECTION_FAILURE = "KERN_PROTECTION_FAILURE"
KERN_FAILURE = "KERN_FAILURE"
KERN_RESOURCE_SHORTAGE = "KERN_RESOURCE_SHORTAGE"
KERN_OUT_OF_BOUNDS = "KERN_OUT_OF_BOUNDS"
KERN_RESTART = "KERN_RESTART"
KERN_INVALID_ARGUMENT = "KERN_INVALID_ARGUMENT"

PROT_BITS = {"none": 0, "r": 1, "rw": 3, "rx": 5, "rwx": 7}


@dataclass(eq=False)
class VmMapEntry(Tracked):
    """struct vm_map_entry."""

    start: int = locked_by("L", 0)
    end: int = locked_by("L", 0)
    object: VmObject | None = locked_by("L")
    offset: int = locked_by("L", 0)               # in pages
    protection: int = locked_by("L", VM_PROT_ALL)
    max_protection: int = locked_by("L", VM_PROT_ALL)
    inheritance: str = locked_by("L", "copy")
    eflags: int = locked_by("L", 0)
    wired_count: int = locked_by("L", 0)
    wiring_thread: int | None = locked_by("L")
    wired_pages: dict[int, VmPage] = locked_by("L", factory=dict)  # va -> page; docs/model.md
    eid: int = locked_by("C", 0)                                  # allocation number

    @property
    def fl_key(self) -> tuple[str, int]:
        """Stable name for partial-order reduction (allocation order)."""
        return ("entry", self.eid)

    def __repr__(self) -> str:
        return f"entry[{self.start:#x}-{self.end:#x}]"

    def pindex(self, va: int) -> int:
        """OFF_TO_IDX(va - start + offset)."""
        return (va - self.start) // PAGE_SIZE + self.offset


@dataclass(eq=False)
class VmMap(Tracked):
    """struct vm_map (user map) with its pmap: a vmspace."""

    vm: Vm = locked_by("C")
    name: str = locked_by("C", "")
    lock: Lock = locked_by("C")
    pmap: Pmap = locked_by("C")
    entries: list[VmMapEntry] = locked_by("L", factory=list)   # sorted by start
    timestamp: int = locked_by("L", 0)
    needs_wakeup: bool = locked_by("L", False)
    busy: int = locked_by("L", 0)             # vm_map_busy: wirings faulting unlocked

    def __repr__(self) -> str:
        return f"map({self.name})"

    @property
    def fl_key(self) -> tuple[str, str]:
        """Stable name for partial-order reduction."""
        return ("map", self.name)


def vmspace_alloc(vm: Vm, name: str) -> VmMap:
    """vmspace_alloc: an empty user map and its pmap."""
    m = VmMap(vm=vm, name=name, lock=Lock("vm map (user)", f"map.{name}", "sx"),
              pmap=pmap_create(vm, name))
    vm.maps.append(m)
    return m


# ---------------------------------------------------------------- the map lock

async def vm_map_lock(m: VmMap) -> None:
    """vm_map_lock: exclusive; bumps the timestamp."""
    await rw_wlock(m.lock)
    m.timestamp += 1


async def vm_map_unlock(m: VmMap) -> None:
    """vm_map_unlock."""
    await rw_unlock(m.lock)


async def vm_map_lock_read(m: VmMap) -> None:
    """vm_map_lock_read."""
    await rw_rlock(m.lock)


async def vm_map_trylock_read(m: VmMap) -> bool:
    """vm_map_trylock_read."""
    return await rw_try_rlock(m.lock)


async def vm_map_unlock_read(m: VmMap) -> None:
    """vm_map_unlock_read."""
    await rw_unlock(m.lock)


async def vm_map_lock_upgrade(m: VmMap) -> bool:
    """vm_map_lock_upgrade: True on FAILURE (FreeBSD returns non-zero), in which case
    the map is no longer locked and the caller must redo its lookup."""
    if not await rw_try_upgrade(m.lock):
        last = m.timestamp
        await rw_unlock(m.lock)
        await rw_wlock(m.lock)
        if last != m.timestamp:
            await rw_unlock(m.lock)
            await ops.note("map-upgrade-failed", m.name)
            return True
    m.timestamp += 1
    return False


async def vm_map_lock_downgrade(m: VmMap) -> None:
    """vm_map_lock_downgrade."""
    await rw_downgrade(m.lock)


async def vm_map_unlock_and_wait(m: VmMap, wmesg: str = "vmmaps") -> None:
    """vm_map_unlock_and_wait: drop the (exclusive) map lock and sleep for a wakeup
    (vm_map_wait_busy's sleep, "mbusy", is on the map too: one wakeup serves both)."""
    await ops.sleep(m, wmesg, m.lock)


async def vm_map_wakeup(m: VmMap) -> None:
    """vm_map_wakeup."""
    await ops.wakeup(m)


# ---------------------------------------------------------------- entries

def vm_map_lookup_entry(m: VmMap, va: int) -> VmMapEntry | None:
    """vm_map_lookup_entry: the entry containing `va` (map locked)."""
    lock_assert(m.lock, "held")
    for e in m.entries:
        if e.start <= va < e.end:
            return e
    return None


def vm_map_insert(m: VmMap, obj: VmObject | None, offset: int, start: int, end: int,
                  prot: int, maxprot: int, eflags: int, inheritance: str) -> VmMapEntry:
    """vm_map_insert: map write-locked; the caller's reference on obj moves to the entry."""
    lock_assert(m.lock, "x")
    kassert(all(e.end <= start or e.start >= end for e in m.entries),
            f"vm_map_insert: {start:#x}-{end:#x} overlaps in {m}")
    e = VmMapEntry(start=start, end=end, object=obj, offset=offset, protection=prot,
                   max_protection=maxprot, inheritance=inheritance, eflags=eflags,
                   eid=m.vm.serial())
    touch(m, field="entries")
    m.entries.append(e)
    m.entries.sort(key=lambda x: x.start)
    return e


async def vm_map_pmap_enter(m: VmMap, addr: int, prot: int, obj: VmObject | None,
                            pindex: int, pages: int) -> None:
    """vm_map_pmap_enter (MAP_PREFAULT, as the ELF image activator maps segments):
    with the map locked, map read-only the resident, fully valid pages of obj's range
    [pindex, pindex + pages) at addr onwards (pmap_enter_object), busying none of
    them; invalid pages (being paged in) are skipped."""
    if not m.vm.prefault or not prot & (VM_PROT_READ | VM_PROT_EXECUTE) or obj is None:
        return
    lock_assert(m.lock, "x")
    await rw_rlock(obj.lock)
    run = []
    for i in sorted(i for i in obj.pages if pindex <= i < pindex + pages):
        # vm_page_all_valid: racy, a pager may be validating the page under its busy.
        if await ops.racy_load(obj.pages[i], "valid"):
            run.append((addr + (i - pindex) * PAGE_SIZE, obj.pages[i]))
    if run:
        await pmap_mod.pmap_enter_object(m.pmap, run)
        await ops.note("map-prefault", {"map": m.name, "addr": addr, "pages": len(run)})
    await rw_unlock(obj.lock)


async def vm_map_clip(m: VmMap, start: int, end: int) -> list[VmMapEntry]:
    """vm_map_clip_start at `start`, then vm_map_clip_end at `end`: split the entries
    straddling either bound (both may fall inside one entry: the second cut is then
    made in the tail the first one left), so that the entries returned, in address
    order, lie exactly inside [start, end).  Map write-locked."""
    lock_assert(m.lock, "x")
    for cut in (start, end):
        e = vm_map_lookup_entry(m, cut)
        if e is not None and e.start < cut:
            await _clip_at(m, e, cut)
    return [e for e in m.entries if start <= e.start and e.end <= end]


async def _clip_at(m: VmMap, e: VmMapEntry, cut: int) -> None:
    # vm_map_entry_clone: the new tail is a copy of the entry (protections, flags,
    # wiring and the wiring thread of an entry in transition), and the pages its
    # wiring holds go with their addresses.  The backing object is created now
    # (vm_map_entry_charge_object), so both halves share one object and reference it.
    if e.object is None:
        e.object = vm_object_allocate_anon(m.vm, (e.end - e.start) // PAGE_SIZE, None)
        e.offset = 0
    tail = VmMapEntry(start=cut, end=e.end, object=e.object,
                      offset=e.offset + (cut - e.start) // PAGE_SIZE,
                      protection=e.protection, max_protection=e.max_protection,
                      inheritance=e.inheritance, eflags=e.eflags,
                      wired_count=e.wired_count, wiring_thread=e.wiring_thread,
                      wired_pages={va: pg for va, pg in e.wired_pages.items() if va >= cut},
                      eid=m.vm.serial())
    e.wired_pages = {va: pg for va, pg in e.wired_pages.items() if va < cut}
    await vm_object_reference(e.object)
    e.end = cut
    touch(m, field="entries")
    m.entries.append(tail)
    m.entries.sort(key=lambda x: x.start)


# ---------------------------------------------------------------- lookup

@dataclass(slots=True)
class Lookup:
    """vm_map_lookup's out parameters."""

    rv: str
    entry: VmMapEntry | None = None
    object: VmObject | None = None
    pindex: int = 0
    prot: int = 0
    wired: bool = False


async def vm_map_lookup(m: VmMap, va: int, fault_typea: int) -> Lookup:
    """vm_map_lookup: on success the map is left read-locked.  A write (or COPY) fault
    on a NEEDS_COPY entry shadows its object now (upgrading the map lock); a read fault
    just drops VM_PROT_WRITE from the returned protection.  May sleep."""
    while True:                                   # RetryLookup
        await vm_map_lock_read(m)
        e = vm_map_lookup_entry(m, va)
        if e is None:
            await vm_map_unlock_read(m)
            return Lookup(KERN_INVALID_ADDRESS)
        fault_type = fault_typea & VM_PROT_ALL
        prot = e.protection
        if (fault_type & prot) != fault_type or prot == VM_PROT_NONE:
            await vm_map_unlock_read(m)
            return Lookup(KERN_PROTECTION_FAILURE)
        wired = e.wired_count != 0
        if wired:
            fault_type = e.protection
        if e.eflags & MAP_ENTRY_NEEDS_COPY:
            if fault_type & VM_PROT_WRITE or fault_typea & VM_PROT_COPY:
                if await vm_map_lock_upgrade(m):
                    continue
                e.object, e.offset = await vm_object_shadow(
                    e.object, e.offset, (e.end - e.start) // PAGE_SIZE, False, m.vm)
                e.eflags &= ~MAP_ENTRY_NEEDS_COPY
                await vm_map_lock_downgrade(m)
            else:
                prot &= ~VM_PROT_WRITE
        if e.object is None:
            if await vm_map_lock_upgrade(m):
                continue
            e.object = vm_object_allocate_anon(m.vm, (e.end - e.start) // PAGE_SIZE, None)
            e.offset = 0
            await vm_map_lock_downgrade(m)
        return Lookup(KERN_SUCCESS, e, e.object, e.pindex(va), prot, wired)


def vm_map_lookup_locked(m: VmMap, va: int, fault_typea: int) -> Lookup:
    """vm_map_lookup_locked: map read-locked; never sleeps, so it fails with
    KERN_FAILURE where vm_map_lookup would have to create a shadow or an object."""
    e = vm_map_lookup_entry(m, va)
    if e is None:
        return Lookup(KERN_INVALID_ADDRESS)
    fault_type = fault_typea & VM_PROT_ALL
    prot = e.protection
    if (fault_type & prot) != fault_type or prot == VM_PROT_NONE:
        return Lookup(KERN_PROTECTION_FAILURE)
    wired = e.wired_count != 0
    if wired:
        fault_type = e.protection
    if e.eflags & MAP_ENTRY_NEEDS_COPY:
        if fault_type & VM_PROT_WRITE or fault_typea & VM_PROT_COPY:
            return Lookup(KERN_FAILURE)
        prot &= ~VM_PROT_WRITE
    if e.object is None:
        return Lookup(KERN_FAILURE)
    return Lookup(KERN_SUCCESS, e, e.object, e.pindex(va), prot, wired)


# ---------------------------------------------------------------- mmap family

async def vm_map_delete(m: VmMap, start: int, end: int) -> list[VmObject]:
    """vm_map_delete: map write-locked; unwire, unmap and unlink [start, end).
    Returns the objects whose references the caller drops after unlocking."""
    deferred: list[VmObject] = []
    for e in await vm_map_clip(m, start, end):
        if e.wired_count:
            await vm_map_entry_unwire(m, e)
        await pmap_mod.pmap_remove(m.pmap, e.start, e.end)
        touch(m, field="entries")
        m.entries.remove(e)
        if e.object is not None:
            deferred.append(e.object)
    return deferred


async def vm_map_process_deferred(objs: list[VmObject]) -> None:
    """vm_map_process_deferred: drop entry references after the map is unlocked."""
    for obj in objs:
        await vm_object_deallocate(obj)


async def vm_map_wait_in_transition(m: VmMap, start: int, end: int,
                                    busy: bool = False) -> None:
    """vm_map_entry_in_transition, for a whole range (and with `busy` first
    vm_map_wait_busy, as vm_map_protect does): map write-locked on entry and on return;
    sleep (map unlocked) while an entry meeting [start, end) is being wired or unwired by
    another thread (or, with `busy`, while a wiring has the map busy), so the entries
    may change meanwhile."""
    lock_assert(m.lock, "x")
    while True:
        if busy and m.busy:
            wmesg = "mbusy"
        elif any(e.eflags & MAP_ENTRY_IN_TRANSITION and e.start < end and start < e.end
                 for e in m.entries):
            wmesg = "vmmaps"
        else:
            return
        m.needs_wakeup = True
        await vm_map_unlock_and_wait(m, wmesg)
        await vm_map_lock(m)


async def vm_map_wait_busy(m: VmMap) -> None:
    """vm_map_wait_busy: map write-locked on entry and on return; sleep (map unlocked)
    while a wiring faults pages in with the map unlocked (vm_map_busy)."""
    await vm_map_wait_in_transition(m, 0, 0, busy=True)


async def vm_map_remove(m: VmMap, start: int, end: int) -> None:
    """vm_map_remove (munmap): waits for entries being wired to leave transition.
    The removal is reported (note map-delete) while the map is still locked, the
    moment it takes effect for a fork walking the map."""
    await vm_map_lock(m)
    await vm_map_wait_in_transition(m, start, end)
    deferred = await vm_map_delete(m, start, end)
    await ops.note("map-delete", {"map": m.name, "start": start, "end": end})
    await vm_map_unlock(m)
    await vm_map_process_deferred(deferred)


async def vm_map_protect(m: VmMap, start: int, end: int, prot: int) -> str:
    """vm_map_protect (mprotect): waits for entries in transition, refuses a protection
    beyond an entry's maximum before clipping anything, then sets it; removing write
    permission write-protects the PTEs.  A change is reported (note map-protect) while
    the map is locked."""
    await vm_map_lock(m)
    await vm_map_wait_in_transition(m, start, end, busy=True)
    if any(prot & ~e.max_protection for e in m.entries if e.start < end and start < e.end):
        await vm_map_unlock(m)
        return KERN_PROTECTION_FAILURE
    entries = await vm_map_clip(m, start, end)
    for e in entries:
        if e.wired_count and prot & VM_PROT_WRITE and not e.protection & VM_PROT_WRITE:
            await vm_map_unlock(m)
            raise NotModelled("mprotect adding write to a wired entry needs "
                              "vm_fault_copy_entry (eager COW), which is not modelled")
        old, e.protection = e.protection, prot
        if old != prot:
            # MASK(): a COW entry's PTEs stay read-only whatever the protection.
            mask = ~VM_PROT_WRITE if e.eflags & MAP_ENTRY_COW else VM_PROT_ALL
            await pmap_mod.pmap_protect(m.pmap, e.start, e.end, prot & mask)
    await ops.note("map-protect", {"map": m.name, "start": start, "end": end, "prot": prot})
    await vm_map_unlock(m)
    return KERN_SUCCESS


async def vm_map_inherit(m: VmMap, start: int, end: int, inheritance: str) -> None:
    """vm_map_inherit (minherit): entries in transition are clipped too (FreeBSD does
    not wait for them); the change is reported (note map-inherit) under the map lock."""
    await vm_map_lock(m)
    for e in await vm_map_clip(m, start, end):
        e.inheritance = inheritance
    await ops.note("map-inherit", {"map": m.name, "start": start, "end": end,
                                   "inherit": inheritance})
    await vm_map_unlock(m)


async def vm_map_sync(m: VmMap, start: int, end: int, invalidate: bool) -> str:
    """vm_map_sync (msync): a first pass under the read lock refuses holes
    (KERN_INVALID_ADDRESS) and, when invalidating, user-wired entries
    (KERN_INVALID_ARGUMENT); invalidation removes the range's PTEs from this pmap
    (private copies fault back in from their shadow objects).  The second pass syncs
    each entry's object with the map unlocked, holding a reference on it, and looks
    the next entry up again if the map changed meanwhile."""
    await vm_map_lock_read(m)
    first = vm_map_lookup_entry(m, start)
    if first is None:
        await vm_map_unlock_read(m)
        return KERN_INVALID_ADDRESS
    covered = start
    for e in (e for e in m.entries if e.end > start and e.start < end):
        if invalidate and e.eflags & MAP_ENTRY_USER_WIRED:
            await vm_map_unlock_read(m)
            return KERN_INVALID_ARGUMENT
        if e.start > covered:
            await vm_map_unlock_read(m)
            return KERN_INVALID_ADDRESS
        covered = e.end
    if covered < end:
        await vm_map_unlock_read(m)
        return KERN_INVALID_ADDRESS
    if invalidate:
        await pmap_mod.pmap_remove(m.pmap, start, end)
    e: VmMapEntry | None = first
    while e is not None and e.start < end:
        size = (min(end, e.end) - start) // PAGE_SIZE
        obj, offset = e.object, e.pindex(start)
        if obj is not None:
            await vm_object_reference(obj)
        last = m.timestamp
        await vm_map_unlock_read(m)
        await vm_object_sync(obj, offset, size, invalidate)
        start += size * PAGE_SIZE
        await vm_object_deallocate(obj)
        await vm_map_lock_read(m)
        if last == m.timestamp or (e := vm_map_lookup_entry(m, start)) is None:
            e = _vm_map_entry_succ(m, start)
    await vm_map_unlock_read(m)
    return KERN_SUCCESS


def _vm_map_entry_succ(m: VmMap, va: int) -> VmMapEntry | None:
    # The first entry at or after va (map locked).
    return next((e for e in m.entries if e.end > va), None)


# ---------------------------------------------------------------- wiring

async def vm_map_wire(m: VmMap, start: int, end: int) -> str:
    """vm_map_wire (mlock): wait for entries another thread has in transition, mark
    ours in transition, fault every page with VM_FAULT_WIRE with the map unlocked,
    then, map locked again, settle each entry now holding one of our addresses (the
    entries may have been clipped meanwhile): on success it keeps the pages wired at
    its addresses and becomes user-wired; on failure the wiring is undone, as FreeBSD's
    vm_map_wire_locked does at `done:`.  Then clear the mark and wake waiters."""
    from faultline.kern.vm_fault import VM_FAULT_WIRE, vm_fault
    from faultline.rt.context import curtid
    await vm_map_lock(m)
    await vm_map_wait_in_transition(m, start, end)
    entries = [e for e in await vm_map_clip(m, start, end)
               if not e.eflags & MAP_ENTRY_USER_WIRED]       # user wiring counts once
    for e in entries:
        e.eflags |= MAP_ENTRY_IN_TRANSITION
        e.wiring_thread = curtid()
        e.wired_count += 1
    todo = [va for e in entries if e.wired_count == 1
            for va in range(e.start, e.end, PAGE_SIZE)]
    m.busy += 1                  # vm_map_busy: fork and mprotect wait for the faults
    await vm_map_unlock(m)
    rv = KERN_SUCCESS
    wired: dict[int, VmPage] = {}
    for va in todo:
        held: list[VmPage] = []
        rv = await vm_fault(m, va, VM_PROT_NONE, VM_FAULT_WIRE, held)
        if held:
            wired[va] = held[0]
        if rv != KERN_SUCCESS:
            break
    await vm_map_lock(m)
    m.busy -= 1                  # vm_map_unbusy (its wakeup: needs_wakeup below)
    for e in list(m.entries):
        if not (e.eflags & MAP_ENTRY_IN_TRANSITION and e.wiring_thread == curtid()):
            continue
        pages = {va: pg for va, pg in wired.items() if e.start <= va < e.end}
        if rv == KERN_SUCCESS:
            e.wired_pages.update(pages)
            e.eflags |= MAP_ENTRY_USER_WIRED
        else:
            await _vm_map_wire_undo(m, e, pages)
        e.eflags &= ~MAP_ENTRY_IN_TRANSITION
        e.wiring_thread = None
    wake = m.needs_wakeup
    m.needs_wakeup = False
    await vm_map_unlock(m)
    if wake:
        await vm_map_wakeup(m)
    return rv


async def _vm_map_wire_undo(m: VmMap, e: VmMapEntry, pages: dict[int, VmPage]) -> None:
    # vm_map_wire_locked's `done:` after a failure: drop this call's wiring of `e`.
    if e.wired_count == 1:
        for va in sorted(pages):
            await vm_page_unwire(pages[va])
        await pmap_mod.pmap_unwire(m.pmap, e.start, e.end)
    e.wired_count -= 1


async def vm_map_entry_unwire(m: VmMap, e: VmMapEntry) -> None:
    """vm_map_entry_unwire: map write-locked; unwire the pages the entry's wiring
    faults wired (kept on the entry instead of walking the chain as vm_object_unwire
    does, docs/model.md) and clear PG_W."""
    for va in sorted(e.wired_pages):
        await vm_page_unwire(e.wired_pages[va])
    e.wired_pages.clear()
    await pmap_mod.pmap_unwire(m.pmap, e.start, e.end)
    e.wired_count = 0
    e.eflags &= ~MAP_ENTRY_USER_WIRED


async def vm_map_unwire(m: VmMap, start: int, end: int) -> None:
    """vm_map_unwire (munlock): waits for entries in transition first."""
    await vm_map_lock(m)
    await vm_map_wait_in_transition(m, start, end)
    for e in await vm_map_clip(m, start, end):
        if e.wired_count:
            await vm_map_entry_unwire(m, e)
    await vm_map_unlock(m)


# ---------------------------------------------------------------- fork

_NOT_INHERITED = MAP_ENTRY_USER_WIRED | MAP_ENTRY_IN_TRANSITION


async def vmspace_fork(old: VmMap, child: str) -> VmMap:
    """vmspace_fork: the old map is write-locked for the whole walk."""
    new = vmspace_alloc(old.vm, child)
    await vm_map_lock(old)
    await vm_map_wait_busy(old)
    # A trylock, as FreeBSD does to keep WITNESS quiet: nobody else knows the new map.
    kassert(await rw_try_wlock(new.lock), "vmspace_fork: lock of the new map failed")
    await ops.note("fork-locked", {"parent": old.name, "child": child})
    for e in list(old.entries):
        if e.inheritance == "share":
            await _fork_share(old, new, e)
        elif e.inheritance == "copy":
            await _fork_copy(old, new, e)
        elif e.inheritance == "zero":
            vm_map_insert(new, None, 0, e.start, e.end, e.protection, e.max_protection,
                          0, e.inheritance)
        else:
            continue
        # The entry is in the child now; the parent's own stores to it fault (and wait
        # for this map lock) from here on if it became copy-on-write.
        await ops.note("fork-entry", {"parent": old.name, "child": child, "start": e.start,
                                      "end": e.end, "inherit": e.inheritance})
    await vm_map_unlock(new)
    await vm_map_unlock(old)
    return new


async def _fork_share(old: VmMap, new: VmMap, e: VmMapEntry) -> None:
    # VM_INHERIT_SHARE: both maps point at one object; a NEEDS_COPY entry first gets
    # the shadow it would have got on its first write, shared by parent and child.
    obj = e.object
    if obj is None:
        obj = e.object = vm_object_allocate_anon(old.vm, (e.end - e.start) // PAGE_SIZE, None)
        e.offset = 0
    await vm_object_reference(obj)       # so vm_object_shadow really shadows
    if e.eflags & MAP_ENTRY_NEEDS_COPY:
        e.object, e.offset = await vm_object_shadow(obj, e.offset,
                                                    (e.end - e.start) // PAGE_SIZE, True,
                                                    old.vm)
        e.eflags &= ~MAP_ENTRY_NEEDS_COPY
        await vm_object_deallocate(obj)
        await ops.note("fork-shared-shadow", repr(e.object))
    else:
        await rw_wlock(obj.lock)
        vm_object_clear_flag(obj, OBJ_ONEMAPPING)
        await rw_unlock(obj.lock)
    # The reference taken above (or the shared shadow's second one) is the child's.
    vm_map_insert(new, e.object, e.offset, e.start, e.end, e.protection,
                  e.max_protection, e.eflags & ~_NOT_INHERITED, e.inheritance)
    await pmap_mod.pmap_copy(new.pmap, old.pmap, e.start, e.end)


async def _fork_copy(old: VmMap, new: VmMap, e: VmMapEntry) -> None:
    # VM_INHERIT_COPY -> vm_map_copy_entry: COW|NEEDS_COPY on both entries.
    if e.wired_count and e.protection & VM_PROT_WRITE:
        raise NotModelled("fork of a wired writable COPY entry needs vm_fault_copy_entry "
                          "(eager copy), which is not modelled")
    ne = vm_map_insert(new, None, e.offset, e.start, e.end, e.protection,
                       e.max_protection, e.eflags & ~_NOT_INHERITED, e.inheritance)
    if not e.eflags & MAP_ENTRY_NEEDS_COPY and e.protection & VM_PROT_WRITE:
        await pmap_mod.pmap_protect(old.pmap, e.start, e.end, e.protection & ~VM_PROT_WRITE)
    if e.object is not None:
        if await ops.racy_load(e.object, "flags") & OBJ_SWAP:
            await vm_map_copy_swap_object(e, ne)
        else:
            await vm_object_reference(e.object)
            ne.object = e.object
        e.eflags |= MAP_ENTRY_COW | MAP_ENTRY_NEEDS_COPY
        ne.eflags |= MAP_ENTRY_COW | MAP_ENTRY_NEEDS_COPY
        ne.offset = e.offset
    await pmap_mod.pmap_copy(new.pmap, old.pmap, e.start, e.end)


async def vm_map_copy_swap_object(src: VmMapEntry, dst: VmMapEntry) -> None:
    """vm_map_copy_swap_object: collapse the source chain; a ONEMAPPING object that
    other references share is first split so that the entry has one of its own
    (vm_object_split); then the child entry shares it and ONEMAPPING is cleared."""
    obj = src.object
    assert obj is not None
    if not obj.anon:                # OBJ_ANON, read unlocked as FreeBSD does: it never changes
        await vm_object_reference(obj)
        dst.object = obj
        return
    await rw_wlock(obj.lock)
    await vm_object_collapse(obj)
    if obj.flags & OBJ_ONEMAPPING:
        await vm_object_split(src)
        obj = src.object
        assert obj is not None
    await vm_object_reference_locked(obj)
    vm_object_clear_flag(obj, OBJ_ONEMAPPING)
    dst.object = obj
    await rw_unlock(obj.lock)


async def vmspace_teardown(m: VmMap) -> None:
    """vmspace_exit / vmspace_free: remove every entry and drop its object reference."""
    await vm_map_lock(m)
    deferred = await vm_map_delete(m, 0, 1 << 62)
    await vm_map_unlock(m)
    await vm_map_process_deferred(deferred)
    m.vm.pmaps.remove(m.pmap)
    m.vm.maps.remove(m)

