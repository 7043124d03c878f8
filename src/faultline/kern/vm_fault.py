"""vm_fault: the page-fault handler, after D51474, phase by phase.

What lives here: `FaultState` (struct faultstate), `FaultStatus` (enum fault_status) and
the functions of sys/vm/vm_fault.c under their FreeBSD names: vm_fault, vm_fault_lookup,
vm_fault_soft_fast, vm_fault_object (with the shared-busy attempt), vm_fault_busy_sleep,
vm_fault_allocate, vm_fault_getpages, vm_fault_next, vm_fault_zerofill, the `found:`
label (vm_fault_found), vm_fault_cow (rename vs copy), vm_fault_relookup and the
teardown helpers, and vm_fault_prefault.  Rule kept: every decision D51474 touched
is asked of `fs.policy`; lock and busy contracts are asserted on entry.  Must not be
added: any policy-name branching.

    vm_fault: RetryFault loop
      lookup -> soft_fast? -> [first_object W] -> walk:
        vm_fault_object(obj) --SOFT/HARD--> found
             | CONTINUE                       |
        vm_fault_next --GOTOBJ--> loop        +-- might_be_cow & write: vm_fault_cow
             | NOOBJ                          +-- relookup if the map was dropped
        vm_fault_zerofill --> found           +-- pmap_enter, unbusy, deallocate
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from faultline.kern.pmap import (
    PAGE_SIZE,
    pmap_copy_page,
    pmap_enter,
    pmap_enter_quick,
    pmap_is_prefaultable,
    pmap_remove_all,
    pmap_zero_page,
)
from faultline.kern.policy import Policy
from faultline.kern.vm_map import (
    KERN_FAILURE,
    KERN_OUT_OF_BOUNDS,
    KERN_PROTECTION_FAILURE,
    KERN_RESOURCE_SHORTAGE,
    KERN_RESTART,
    KERN_SUCCESS,
    MAP_ENTRY_IN_TRANSITION,
    VM_PROT_COPY,
    VM_PROT_WRITE,
    VmMap,
    VmMapEntry,
    vm_map_lock,
    vm_map_lookup,
    vm_map_lookup_entry,
    vm_map_lookup_locked,
    vm_map_trylock_read,
    vm_map_unlock,
    vm_map_unlock_and_wait,
    vm_map_unlock_read,
)
from faultline.kern.vm_object import (
    OBJ_ANON,
    OBJ_DEAD,
    OBJ_SWAP,
    OBJT_DEAD,
    VmObject,
    vm_object_busy,
    vm_object_deallocate,
    vm_object_pip_add,
    vm_object_pip_wakeup,
    vm_object_reference_locked,
    vm_object_unbusy,
)
from faultline.kern.vm_page import (
    VM_ALLOC_SBUSY,
    VmPage,
    vm_page_all_valid,
    vm_page_alloc,
    vm_page_assert_busied,
    vm_page_busy_sleep,
    vm_page_dirty,
    vm_page_free,
    vm_page_remove,
    vm_page_replace,
    vm_page_sunbusy,
    vm_page_trysbusy,
    vm_page_tryxbusy,
    vm_page_unbusy,
    vm_page_valid,
    vm_page_wire,
    vm_page_xbusied,
    vm_page_xunbusy,
    vm_waitpfault,
)
from faultline.kern.vm_pager import VM_PAGER_BAD, VM_PAGER_OK, vm_pager_get_pages
from faultline.rt import ops
from faultline.rt.context import curtid, touch
from faultline.rt.sync import (
    kassert,
    lock_assert,
    rw_rlock,
    rw_try_rlock,
    rw_try_upgrade,
    rw_try_wlock,
    rw_unlock,
    rw_wlock,
)

VM_FAULT_WIRE = 0x1
VM_FAULT_DIRTY = 0x2


class FaultStatus(enum.Enum):
    """enum fault_status: what a phase tells vm_fault to do next."""

    SUCCESS = "success"                 # handled completely by a sub-path
    FAILURE = "failure"                 # KERN_FAILURE, everything released
    CONTINUE = "continue"               # go on: next object or the pager; object locked
    RESTART = "restart"                 # everything released: RetryFault
    OUT_OF_BOUNDS = "out_of_bounds"     # KERN_OUT_OF_BOUNDS, everything released
    HARD = "hard"                       # paged in: fs.m xbusied, object and map unlocked
    SOFT = "soft"                       # resident valid page: fs.m busied (s or x)
    PROTECTION_FAILURE = "protection"   # dead object


class FaultNext(enum.Enum):
    """enum fault_next_status."""

    GOTOBJ = "gotobj"
    NOOBJ = "noobj"
    RESTART = "restart"


@dataclass(eq=False)
class FaultState:
    """struct faultstate, grouped by role as in vm_fault.c."""

    # parameters
    map: VmMap
    vaddr: int
    fault_type: int
    fault_flags: int
    policy: Policy
    prot: int = 0
    wired: bool = False
    m_hold: list[VmPage] | None = None      # out: the page a wiring fault wired
    # control
    can_read_lock: bool = True
    # COW: the backing page copied from, busied until the fault ends
    m_cow: VmPage | None = None
    # current object
    object: VmObject | None = None
    pindex: int = 0
    m: VmPage | None = None
    m_needs_zeroing: bool = True
    # top object
    first_object: VmObject | None = None
    first_pindex: int = 0
    first_m: VmPage | None = None
    # map
    entry: VmMapEntry | None = None
    map_generation: int = 0
    lookup_still_valid: bool = False
    hardfault: bool = False
    faultcount: int = 0                    # pages this fault brought in (prefault if 0)
    slept: bool = False                    # the restart follows a vm_fault_busy_sleep
    vp: VmObject | None = None              # the vnode object whose lock we hold (shared)


# ---------------------------------------------------------------- predicates

def vm_fault_might_be_cow(fs: FaultState) -> bool:
    """vm_fault_might_be_cow: the page lives below the top object."""
    return fs.object is not fs.first_object


def vm_fault_is_read(fs: FaultState) -> bool:
    """vm_fault_is_read: the mapping being made cannot be writable, no copy asked."""
    return not fs.prot & VM_PROT_WRITE and not fs.fault_type & (VM_PROT_COPY | VM_PROT_WRITE)


async def vm_fault_can_cow_rename(fs: FaultState) -> bool:
    """vm_fault_can_cow_rename: the current object is private to its only shadow and
    cannot be found any other way, so its page may be moved instead of copied.
    The counts are read racily (callers re-check under locks before acting)."""
    obj = fs.object
    assert obj is not None
    if obj.handle is not None or not await ops.racy_load(obj, "flags") & OBJ_ANON:
        return False
    return (await ops.racy_load(obj, "shadow_count") == 1
            and await ops.racy_load(obj, "ref_count") == 1)


# ---------------------------------------------------------------- teardown helpers

async def vm_fault_page_release(fs: FaultState, which: str) -> None:
    """vm_fault_page_release: unbusy (x or s) and forget fs.<which>."""
    m = getattr(fs, which)
    if m is not None:
        await vm_page_unbusy(m)
        setattr(fs, which, None)


async def vm_fault_page_free(fs: FaultState, which: str) -> None:
    """vm_fault_page_free: object write-locked; free an xbusied page unless wired."""
    m = getattr(fs, which)
    if m is not None:
        if m.object is not None:
            lock_assert(m.object.lock, "x")
        if m.wire_count:
            await vm_page_xunbusy(m)
        else:
            await vm_page_free(m)
        setattr(fs, which, None)


async def vm_fault_unlock_map(fs: FaultState) -> None:
    """vm_fault_unlock_map."""
    if fs.lookup_still_valid:
        await vm_map_unlock_read(fs.map)
        fs.lookup_still_valid = False


async def vm_fault_lock_vnode(fs: FaultState) -> FaultStatus:
    """vm_fault_lock_vnode (objlocked false): before paging in from a vnode object,
    hold its vnode lock shared, kept across restarts until the fault ends.  It is only
    tried while we hold a busy page and pips; if that fails, release everything, sleep
    for the lock and RESTART holding it.  This is what keeps a page-in out of a
    truncation or a write of the file, which hold the vnode lock exclusively."""
    obj = fs.object
    assert obj is not None
    if obj.vnode_lock is None or fs.vp is obj:
        return FaultStatus.CONTINUE
    await vm_fault_unlock_vp(fs)
    if await rw_try_rlock(obj.vnode_lock):
        fs.vp = obj
        return FaultStatus.CONTINUE
    await vm_fault_deallocate(fs)
    await rw_rlock(obj.vnode_lock)
    fs.vp = obj
    await ops.note("fault-vnode-restart", repr(obj))
    return FaultStatus.RESTART


async def vm_fault_unlock_vp(fs: FaultState) -> None:
    """unlock_vp: drop the vnode lock the fault holds, if any."""
    if fs.vp is not None:
        assert fs.vp.vnode_lock is not None
        await rw_unlock(fs.vp.vnode_lock)
        fs.vp = None


async def vm_fault_deallocate(fs: FaultState) -> None:
    """vm_fault_deallocate: release m_cow, m, first_m, pips, the reference, the map and
    the vnode.  No object locked on entry."""
    early = await fs.policy.vm_fault_deallocate_reference_first(fs)
    await fs.policy.vm_fault_release_m_cow(fs)
    await vm_fault_page_release(fs, "m")
    assert fs.object is not None and fs.first_object is not None
    await vm_object_pip_wakeup(fs.object)
    if vm_fault_might_be_cow(fs):
        await rw_wlock(fs.first_object.lock)
        await vm_fault_page_free(fs, "first_m")
        await rw_unlock(fs.first_object.lock)
        await vm_object_pip_wakeup(fs.first_object)
    if not early:
        await vm_object_deallocate(fs.first_object)
    await vm_fault_unlock_map(fs)
    await vm_fault_unlock_vp(fs)


async def vm_fault_unlock_and_deallocate(fs: FaultState) -> None:
    """vm_fault_unlock_and_deallocate: fs.object locked on entry."""
    assert fs.object is not None
    await rw_unlock(fs.object.lock)
    await vm_fault_deallocate(fs)


def vm_fault_object_needs_getpages(obj: VmObject) -> bool:
    """vm_fault_object_needs_getpages: the pager may have the page: the object is not
    swap-backed (a vnode object), or it has swap blocks.  Object locked."""
    lock_assert(obj.lock, "held")
    return not obj.flags & OBJ_SWAP or bool(obj.swap)


async def vm_fault_object_ensure_wlocked(fs: FaultState) -> bool:
    """vm_fault_object_ensure_wlocked: try to upgrade a read-locked fs.object."""
    assert fs.object is not None
    if fs.object.lock.held_by(curtid()) == "x":
        return True
    return await rw_try_upgrade(fs.object.lock)


# ---------------------------------------------------------------- lookup, soft_fast

async def vm_fault_lookup(fs: FaultState) -> str:
    """vm_fault_lookup: on success the map is read-locked and first_object set."""
    kassert(not fs.lookup_still_valid, "vm_fault_lookup with the map still locked")
    lk = await vm_map_lookup(fs.map, fs.vaddr, fs.fault_type)
    if lk.rv != KERN_SUCCESS:
        return lk.rv
    fs.map_generation = fs.map.timestamp
    e = lk.entry
    assert e is not None and lk.object is not None
    if e.eflags & MAP_ENTRY_IN_TRANSITION and e.wiring_thread != curtid():
        await vm_map_unlock_read(fs.map)
        await vm_map_lock(fs.map)
        e = vm_map_lookup_entry(fs.map, fs.vaddr)
        if e is not None and e.eflags & MAP_ENTRY_IN_TRANSITION:
            fs.map.needs_wakeup = True
            await ops.note("fault-wait-in-transition", fs.vaddr)
            await vm_map_unlock_and_wait(fs.map)
        else:
            await vm_map_unlock(fs.map)
        return KERN_RESOURCE_SHORTAGE
    fs.entry, fs.first_object, fs.first_pindex = e, lk.object, lk.pindex
    fs.prot, fs.wired = lk.prot, lk.wired
    if fs.wired:
        fs.fault_type = fs.prot | (fs.fault_type & VM_PROT_COPY)
    fs.lookup_still_valid = True
    return KERN_SUCCESS


async def vm_fault_soft_fast(fs: FaultState) -> FaultStatus:
    """vm_fault_soft_fast: map a valid page resident in first_object under the object
    read lock and object busy, without busying the page.  Map read-locked on entry.
    SUCCESS: everything released.  FAILURE: first_object write-locked, map still held."""
    obj = fs.first_object
    assert obj is not None
    writable = bool(fs.prot & VM_PROT_WRITE)
    where: list[tuple[VmObject, int]] = []     # (object, pindex) the lookup used

    def peek() -> VmPage | None:
        # Unlocked radix lookup plus the racy validity/busy test.
        where.append(fs.policy.vm_fault_soft_fast_where(fs))
        owner, pindex = where[-1]
        m = owner.pages.get(pindex)
        if m is None:
            return None
        touch(m, False)
        touch(m.busy, False)
        if not m.valid or (writable and m.busy.busied()):
            return None
        return m
    m = await ops.atomic(obj, "soft_fast lookup (unlocked)", peek, write=False)
    if m is None:
        await rw_wlock(obj.lock)
        return FaultStatus.FAILURE
    await rw_rlock(obj.lock)
    if (m.object, m.pindex) != where[-1]:
        return await _soft_fast_fail(fs)
    await vm_object_busy(obj)
    def recheck() -> bool:
        touch(m, False)
        return m.valid and (not writable or not m.busy.busied())
    still = await ops.atomic(m.busy, "load busy_lock", recheck, write=False)
    if not still:
        await vm_object_unbusy(obj)
        return await _soft_fast_fail(fs)
    await pmap_enter(fs.map.pmap, fs.vaddr, m, writable, fs.wired, object_busied=True)
    if not fs.wired:
        await vm_fault_prefault(fs, fs.vaddr, PFBAK, PFFOR, obj_locked=True)
    await rw_unlock(obj.lock)
    vm_fault_dirty(fs, m)                  # still covered by the object busy
    await vm_object_unbusy(obj)
    await vm_fault_unlock_map(fs)
    await ops.note("soft-fast", repr(m))
    return FaultStatus.SUCCESS


async def _soft_fast_fail(fs: FaultState) -> FaultStatus:
    # fail: upgrade the read lock, or drop it and take the write lock.
    obj = fs.first_object
    assert obj is not None
    if not await rw_try_upgrade(obj.lock):
        await rw_unlock(obj.lock)
        await rw_wlock(obj.lock)
    return FaultStatus.FAILURE


def vm_fault_dirty(fs: FaultState, m: VmPage) -> None:
    """vm_fault_dirty: a write fault through a writable mapping dirties the page."""
    if fs.prot & VM_PROT_WRITE and fs.fault_type & VM_PROT_WRITE:
        vm_page_dirty(m)


# ---------------------------------------------------------------- per object

async def vm_fault_busy_sleep(fs: FaultState, allocflags: int) -> None:
    """vm_fault_busy_sleep: fs.object locked, fs.m busied by somebody else.  Release
    first_m, the pips and the map, sleep on fs.m ("vmpfw") -- with VM_ALLOC_SBUSY only
    while it is exclusively busied -- then drop the fault's reference.  Everything is
    released on return; the caller restarts.  May sleep."""
    assert fs.object is not None and fs.first_object is not None and fs.m is not None
    lock_assert(fs.object.lock, "held")
    m = fs.m
    fs.m = None
    if vm_fault_might_be_cow(fs):
        await vm_fault_page_release(fs, "first_m")
        await vm_object_pip_wakeup(fs.first_object)
    await vm_object_pip_wakeup(fs.object)
    await vm_fault_unlock_map(fs)
    if not await vm_page_busy_sleep(m, "vmpfw", allocflags):
        await rw_unlock(fs.object.lock)
    await ops.note("vmpfw-restart", {"sbusy": bool(allocflags & VM_ALLOC_SBUSY)})
    await vm_object_deallocate(fs.first_object)
    fs.slept = True


async def vm_fault_object(fs: FaultState) -> FaultStatus:
    """vm_fault_object: look for the page in fs.object.

    Entry: fs.object locked (W if first_object or !can_read_lock), pip held on it and
    on first_object; below the top object first_m is an xbusied invalid placeholder.
    Exit: CONTINUE with fs.object still locked; SOFT with fs.m busied (s or x) and the
    object unlocked; HARD from the pager; anything else with everything released."""
    obj = fs.object
    assert obj is not None
    lock_assert(obj.lock, "held")
    if obj.flags & OBJ_DEAD:
        dead = obj.type == OBJT_DEAD
        await vm_fault_unlock_and_deallocate(fs)
        if dead:
            return FaultStatus.PROTECTION_FAILURE
        await ops.note("fault-dead-object", repr(obj))
        await ops.pause("vmf_de")
        return FaultStatus.RESTART
    fs.m = obj.pages.get(fs.pindex)
    if fs.m is not None:
        if await fs.policy.vm_fault_object_may_sbusy(fs):
            if not await vm_page_trysbusy(fs.m):
                await vm_fault_busy_sleep(fs, VM_ALLOC_SBUSY)
                return FaultStatus.RESTART
            # Now make sure that racily checked conditions are still valid.
            if fs.policy.vm_fault_object_sbusy_recheck(fs):
                await rw_unlock(obj.lock)
                await ops.note("sbusy-soft", {"might_be_cow": vm_fault_might_be_cow(fs)})
                return FaultStatus.SOFT
            await vm_page_sunbusy(fs.m)
            await ops.note("sbusy-recheck-failed")
        if not await vm_page_tryxbusy(fs.m):
            await vm_fault_busy_sleep(fs, 0)
            return FaultStatus.RESTART
        if vm_page_all_valid(fs.m):
            await rw_unlock(obj.lock)
            await ops.note("xbusy-soft", {"might_be_cow": vm_fault_might_be_cow(fs)})
            return FaultStatus.SOFT
    if fs.m is None and (vm_fault_object_needs_getpages(obj) or obj is fs.first_object):
        if not await vm_fault_object_ensure_wlocked(fs):
            fs.can_read_lock = False
            await vm_fault_unlock_and_deallocate(fs)
            return FaultStatus.RESTART
        res = await vm_fault_allocate(fs)
        if res is not FaultStatus.CONTINUE:
            return res
    if vm_fault_object_needs_getpages(obj):
        # fs.m is xbusied (new or partially valid): it keeps parallel faults and
        # collapses out while the object lock is dropped for the I/O.
        await rw_unlock(obj.lock)
        res = await vm_fault_getpages(fs)
        if res is FaultStatus.CONTINUE:
            await rw_wlock(obj.lock)
        return res
    return FaultStatus.CONTINUE


async def vm_fault_allocate(fs: FaultState) -> FaultStatus:
    """vm_fault_allocate: object write-locked; a new invalid xbusied page at fs.pindex."""
    obj = fs.object
    assert obj is not None
    lock_assert(obj.lock, "x")
    if fs.pindex >= obj.size:
        await vm_fault_unlock_and_deallocate(fs)
        return FaultStatus.OUT_OF_BOUNDS
    fs.m = await vm_page_alloc(obj, fs.pindex)
    if fs.m is None:
        # vm_fault_allocate_oom: release everything, wait for a free page, retry.
        await vm_fault_unlock_and_deallocate(fs)
        await vm_waitpfault(obj.vm.domain)
        await ops.note("fault-oom-restart", repr(obj))
        return FaultStatus.RESTART
    await ops.note("page-alloc", {"object": repr(obj), "top": obj is fs.first_object})
    if obj is fs.first_object:
        fs.m_needs_zeroing = True
    return FaultStatus.CONTINUE


async def vm_fault_getpages(fs: FaultState) -> FaultStatus:
    """vm_fault_getpages: object unlocked, fs.m xbusied; drop the map and page in.
    HARD: fs.m valid and xbusied.  CONTINUE: the pager does not have the page (a swap
    object without a block for it); the walk goes on down the chain -- COW included --
    with the map unlocked, exactly as in FreeBSD.  Either way a relookup follows.
    May sleep."""
    assert fs.object is not None and fs.m is not None
    await vm_fault_unlock_map(fs)
    if await vm_fault_lock_vnode(fs) is FaultStatus.RESTART:
        return FaultStatus.RESTART
    rv = await vm_pager_get_pages(fs.object, fs.m)
    if rv == VM_PAGER_OK:
        fs.hardfault = True
        return FaultStatus.HARD
    if rv == VM_PAGER_BAD:
        await rw_wlock(fs.object.lock)
        await vm_fault_page_free(fs, "m")
        await vm_fault_unlock_and_deallocate(fs)
        return FaultStatus.OUT_OF_BOUNDS
    await ops.note("pager-fail", {"object": repr(fs.object), "pindex": fs.pindex})
    return FaultStatus.CONTINUE


async def vm_fault_next(fs: FaultState) -> FaultNext:
    """vm_fault_next: fs.object locked.  Keep the top object's page as the xbusied
    placeholder first_m and move hand over hand to the backing object."""
    obj = fs.object
    assert obj is not None
    if obj is fs.first_object:
        fs.first_m, fs.m = fs.m, None
    elif fs.m is not None:
        if not await vm_fault_object_ensure_wlocked(fs):
            fs.can_read_lock = False
            await vm_fault_unlock_and_deallocate(fs)
            return FaultNext.RESTART
        await vm_fault_page_free(fs, "m")
    nxt = obj.backing_object
    if nxt is None:
        return FaultNext.NOOBJ
    kassert(fs.first_m is not None, "vm_fault_next: no first_m below the top object")
    if fs.can_read_lock:
        await rw_rlock(nxt.lock)
    else:
        await rw_wlock(nxt.lock)
    await vm_object_pip_add(nxt, 1)
    if obj is not fs.first_object:
        await vm_object_pip_wakeup(obj)
    fs.pindex += obj.backing_object_offset
    await rw_unlock(obj.lock)
    fs.object = nxt
    await ops.note("fault-next", repr(nxt))
    return FaultNext.GOTOBJ


async def vm_fault_zerofill(fs: FaultState) -> None:
    """vm_fault_zerofill: nothing below; first_m becomes a zero-filled valid page."""
    if vm_fault_might_be_cow(fs):
        assert fs.object is not None
        await vm_object_pip_wakeup(fs.object)
        fs.object, fs.pindex = fs.first_object, fs.first_pindex
    fs.m, fs.first_m = fs.first_m, None
    assert fs.m is not None
    if fs.m_needs_zeroing:
        await ops.cost("page zero")
        pmap_zero_page(fs.m)
    vm_page_valid(fs.m)
    await ops.note("zerofill", repr(fs.m))


# ---------------------------------------------------------------- COW

async def vm_fault_cow(fs: FaultState) -> None:
    """vm_fault_cow: fs.m (busied, in a backing object) is renamed into first_object
    if that is safe, else copied into first_m.  No object locks on entry or exit.
    The object locks are only *tried*: we hold page busies and must not sleep."""
    assert fs.m is not None and fs.first_object is not None and fs.object is not None
    kassert(vm_fault_might_be_cow(fs), "vm_fault_cow on the top object")
    kassert(fs.first_m is not None and vm_page_xbusied(fs.first_m),
            "vm_fault_cow: first_m is not xbusied")
    first, obj = fs.first_object, fs.object
    locked_first = rename = False
    if await vm_fault_can_cow_rename(fs) and fs.policy.vm_fault_cow_may_rename(fs):
        locked_first = await rw_try_wlock(first.lock)
        if locked_first and fs.policy.vm_fault_cow_source_is_backing(fs) \
                and await rw_try_wlock(obj.lock):
            rename = await fs.policy.vm_fault_cow_rename_recheck(fs)
            if not rename:
                await rw_unlock(obj.lock)
    if rename:
        await _vm_fault_cow_rename(fs)
    else:
        await _vm_fault_cow_copy(fs, locked_first)
    await vm_object_pip_wakeup(obj)
    # fs.m and fs.first_m now name the same page, the new top-object page.
    fs.object, fs.pindex, fs.m = first, fs.first_pindex, fs.first_m
    fs.first_object.vm.count("v_cow_faults")


async def _vm_fault_cow_rename(fs: FaultState) -> None:
    # Move the page up: it keeps its xbusy and its mappings, takes first_m's slot.
    m, first_m = fs.m, fs.first_m
    assert m is not None and first_m is not None and fs.object is not None
    src = fs.object
    vm_page_remove(m)
    await vm_page_replace(m, fs.first_object, fs.first_pindex, first_m)
    vm_page_dirty(m)
    await rw_unlock(src.lock)
    await rw_unlock(fs.first_object.lock)
    fs.first_m, fs.m = m, None
    fs.first_object.vm.count("v_cow_optim")
    await ops.note("cow-rename", repr(m))


async def _vm_fault_cow_copy(fs: FaultState, locked_first: bool) -> None:
    # Copy into first_m (validated only at found:, after relookup: D49758).  The
    # source stays busied (x or s) until the fault ends, holding off collapse.
    m, first_m = fs.m, fs.first_m
    assert m is not None and first_m is not None and fs.first_object is not None
    if locked_first:
        await rw_unlock(fs.first_object.lock)
    await ops.cost("page copy")
    pmap_copy_page(m, first_m)
    await fs.policy.vm_fault_cow_copy_done(fs, first_m)
    fs.m = None
    await ops.note("cow-copy", {"src": repr(m), "dst": repr(first_m),
                                "src_xbusied": vm_page_xbusied(m)})
    if await fs.policy.vm_fault_cow_must_remove_all(fs, m):
        await pmap_remove_all(fs.first_object.vm, m)
    await fs.policy.vm_fault_cow_keep_source(fs, m)


# ---------------------------------------------------------------- prefault

PFBAK, PFFOR = 4, 4           # pages prefaulted behind and ahead of a soft fault


async def vm_fault_prefault(fs: FaultState, addra: int, backward: int, forward: int,
                            obj_locked: bool) -> None:
    """vm_fault_prefault: map read-only, without busying them, the resident valid pages
    at the neighbouring addresses of the entry, nearest first (addra - 1 page, + 1,
    - 2, ...).  The map is read-locked by the fault; with `obj_locked` (soft_fast) the
    entry's object is read-locked by the caller.  Each address walks the chain under
    object read locks and stops at the first resident page, valid or not (an in-flight
    COW's invalid placeholder first_m stops it, reference 5.1 item 3), or at an object
    whose pager may have the page; the walk ends at the first address with no page.
    Without `obj_locked` the top object is unlocked as soon as its backing object is
    locked, as in FreeBSD, so a COW may insert first_m, copy and shoot down before the
    backing page is mapped (docs/findings.md, prefault-vs-cow)."""
    if not fs.map.vm.prefault:
        return
    e, pm = fs.entry, fs.map.pmap
    assert e is not None
    starta = max(e.start, addra - backward * PAGE_SIZE)
    for i in range(2 * max(backward, forward)):
        addr = addra + ((i >> 1) + 1) * (-PAGE_SIZE if i & 1 == 0 else PAGE_SIZE)
        if addr > addra + forward * PAGE_SIZE or addr < starta or addr >= e.end:
            continue
        if not await pmap_is_prefaultable(pm, addr):
            continue
        top = e.object
        assert top is not None
        pindex, lobject = e.pindex(addr), top
        if not obj_locked:
            await rw_rlock(lobject.lock)
        while True:
            m = lobject.pages.get(pindex)
            backing = lobject.backing_object
            if m is not None or vm_fault_object_needs_getpages(lobject) or backing is None:
                break
            pindex += lobject.backing_object_offset
            await rw_rlock(backing.lock)
            if not obj_locked or lobject is not top:
                await rw_unlock(lobject.lock)
            lobject = backing
        if m is not None and await fs.policy.vm_fault_prefault_may_map(m):
            await pmap_enter_quick(pm, addr, m)
        if not obj_locked or lobject is not top:
            await rw_unlock(lobject.lock)
        if m is None:
            break


# ---------------------------------------------------------------- found:

async def vm_fault_relookup(fs: FaultState) -> str:
    """vm_fault_relookup: re-validate the map after it was dropped (pager I/O)."""
    if not await vm_map_trylock_read(fs.map):
        return KERN_RESTART
    fs.lookup_still_valid = True
    if fs.map.timestamp == fs.map_generation:
        return KERN_SUCCESS
    lk = vm_map_lookup_locked(fs.map, fs.vaddr, fs.fault_type)
    if lk.rv != KERN_SUCCESS:
        if lk.rv == KERN_FAILURE:
            return KERN_RESTART
        return lk.rv
    if not fs.policy.vm_fault_relookup_same_page(fs, lk.object, lk.pindex):
        return KERN_RESTART
    fs.entry, fs.wired = lk.entry, lk.wired
    fs.prot &= lk.prot
    fs.fault_type &= lk.prot
    if fs.prot == 0:
        return KERN_RESTART
    return KERN_SUCCESS


async def vm_fault_found(fs: FaultState) -> str:
    """The `found:` label of vm_fault(): fs.m busied (x, or s on the new path), object
    unlocked, pips and the first_object reference held.  Copy-on-write if needed,
    re-validate the map, enter the mapping, unbusy and release.  KERN_RESTART asks
    vm_fault to retry from the top."""
    assert fs.m is not None and fs.object is not None and fs.first_object is not None
    vm_page_assert_busied(fs.m)
    lock_assert(fs.object.lock, "unheld")
    if vm_fault_might_be_cow(fs):
        if fs.fault_type & (VM_PROT_WRITE | VM_PROT_COPY):
            await fs.policy.vm_fault_before_cow(fs)
            await vm_fault_cow(fs)
            fs.faultcount = fs.faultcount or 1         # no prefault for a soft COW
        else:
            fs.prot &= ~VM_PROT_WRITE
    if not fs.lookup_still_valid:
        rv = await vm_fault_relookup(fs)
        if rv != KERN_SUCCESS:
            await ops.note("relookup-failed", rv)
            await vm_fault_deallocate(fs)
            return rv
    m = fs.m
    assert m is not None
    if fs.m_cow is not None:
        fs.policy.vm_fault_assert_copy_invalid(fs, m)
        vm_page_valid(m)
    vm_page_assert_busied(m)
    kassert(m.valid, f"found: {m} not valid")
    vm_fault_dirty(fs, m)
    await fs.policy.vm_fault_found_before_enter(fs)
    await pmap_enter(fs.map.pmap, fs.vaddr, m, bool(fs.prot & VM_PROT_WRITE), fs.wired)
    await ops.note("pmap-enter", {"va": fs.vaddr, "page": repr(m),
                                  "writable": bool(fs.prot & VM_PROT_WRITE)})
    if fs.faultcount != 1 and not fs.fault_flags & VM_FAULT_WIRE and not fs.wired:
        await vm_fault_prefault(fs, fs.vaddr, PFBAK, PFFOR, obj_locked=False)
    if fs.fault_flags & VM_FAULT_WIRE:
        await vm_page_wire(m)
    if fs.m_hold is not None:
        fs.m_hold.append(m)                 # the caller's handle on the wired page
    fs.policy.vm_fault_assert_first_m(fs)
    if vm_page_xbusied(m):
        await vm_page_xunbusy(m)
    else:
        await vm_page_sunbusy(m)
    fs.m = None
    if fs.first_m is m:
        fs.first_m = None
    await vm_fault_deallocate(fs)
    return KERN_SUCCESS


# ---------------------------------------------------------------- vm_fault

async def vm_fault_walk(fs: FaultState) -> FaultStatus:
    """The shadow-chain loop of vm_fault(): SOFT/HARD lead to found:, anything else
    is returned as is (everything released)."""
    while True:
        kassert(fs.m is None, "vm_fault: fs.m set at the top of the chain walk")
        res = await vm_fault_object(fs)
        if res is FaultStatus.HARD:
            fs.faultcount = 1              # behind + 1 + ahead: no read-ahead here
        if res is not FaultStatus.CONTINUE:
            return res
        nx = await vm_fault_next(fs)
        if nx is FaultNext.RESTART:
            return FaultStatus.RESTART
        if nx is FaultNext.NOOBJ:
            assert fs.object is not None
            await rw_unlock(fs.object.lock)
            await vm_fault_zerofill(fs)
            fs.faultcount = 1
            return FaultStatus.SOFT


_KERN_OF = {
    FaultStatus.SUCCESS: KERN_SUCCESS,
    FaultStatus.FAILURE: KERN_FAILURE,
    FaultStatus.OUT_OF_BOUNDS: KERN_OUT_OF_BOUNDS,
    FaultStatus.PROTECTION_FAILURE: KERN_PROTECTION_FAILURE,
}


async def vm_fault(map_: VmMap, vaddr: int, fault_type: int, fault_flags: int = 0,
                   m_hold: list[VmPage] | None = None) -> str:
    """vm_fault: resolve a fault at `vaddr` (page aligned) of `fault_type`; with
    VM_FAULT_WIRE the page wired is appended to `m_hold`.
    No locks on entry or return; may sleep.  Returns a KERN_* code."""
    vaddr &= ~(PAGE_SIZE - 1)
    fs = FaultState(map_, vaddr, fault_type, fault_flags, map_.vm.policy, m_hold=m_hold)
    while True:                                         # RetryFault
        fs.fault_type = fault_type
        fs.m_needs_zeroing = True
        fs.hardfault = False
        fs.faultcount = 0
        rv = await fs.policy.vm_fault_retry_lookup(fs)
        fs.slept = False
        if rv != KERN_SUCCESS:
            await vm_fault_unlock_vp(fs)
            if rv == KERN_RESOURCE_SHORTAGE:
                continue
            return rv
        first = fs.first_object
        assert first is not None
        if fs.vp is None and not fault_flags & (VM_FAULT_WIRE | VM_FAULT_DIRTY):
            # (fs.vp: "avoid locked vnode leak", soft_fast would not release it.)
            if await vm_fault_soft_fast(fs) is FaultStatus.SUCCESS:
                return KERN_SUCCESS
        else:
            await rw_wlock(first.lock)
        await vm_object_reference_locked(first)
        await vm_object_pip_add(first, 1)
        fs.m = fs.first_m = fs.m_cow = None
        fs.object, fs.pindex = first, fs.first_pindex
        res = await vm_fault_walk(fs)
        match res:
            case FaultStatus.SOFT | FaultStatus.HARD:
                rv = await vm_fault_found(fs)
                if rv == KERN_RESTART:
                    continue
                return rv
            case FaultStatus.RESTART:
                continue
            case FaultStatus.SUCCESS | FaultStatus.FAILURE | FaultStatus.OUT_OF_BOUNDS | \
                    FaultStatus.PROTECTION_FAILURE:
                return _KERN_OF[res]
            case _:
                raise AssertionError(f"vm_fault: unexpected status {res}")
