"""vm_object: anonymous and vnode objects, shadow chains, references, collapse.

What lives here: `VmObject` and sys/vm/vm_object.c's life cycle of objects: allocation,
references, paging-in-progress and object busy, shadowing, deallocation leading to
collapse or bypass of a backing object, and termination.  Rule kept: chain links,
flags and membership change only under the object write lock(s) FreeBSD takes; counts
read without a lock go through racy loads.  Must not be added: the fault path.

    map entry -> S (top, anon) --backing--> O (anon) --backing--> V (vnode)
                 shadow_count(O) = #objects whose backing_object is O (anonymous
                 objects only: a vnode object lists and counts no shadows)
                 ref_count(O)   >= shadow_count(O)   (entries + shadows + faults)

Locking legend: (A) atomic/racy  (C) immutable  (O) this object's lock
                (OB) the lock of this object *and* of its backing object
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faultline.kern.pmap import PAGE_SIZE, pmap_remove_all, pmap_remove_write
from faultline.kern.swap_pager import (
    swap_pager_copy,
    swap_pager_freespace,
    swap_pager_haspage,
    swap_pager_scan_all_shadowed,
)
from faultline.kern.vm_page import (
    VmPage,
    locked_by,
    vm_page_busy_sleep,
    vm_page_free,
    vm_page_invalid,
    vm_page_rename,
    vm_page_tryxbusy,
    vm_page_undirty,
    vm_page_xunbusy,
)
from faultline.rt import ops
from faultline.rt.context import Tracked, touch
from faultline.rt.sync import (
    BlockCount,
    Lock,
    blockcount_acquire,
    blockcount_release,
    blockcount_sleep,
    kassert,
    lock_assert,
    rw_try_wlock,
    rw_unlock,
    rw_wlock,
)

if TYPE_CHECKING:
    from faultline.kern.vm import Vm
    from faultline.kern.vm_map import VmMapEntry


class ObjFlag(enum.IntFlag):
    """vm_object flags (sys/vm/vm_object.h)."""

    OBJ_ANON = 0x1
    OBJ_ONEMAPPING = 0x2
    OBJ_DEAD = 0x4
    OBJ_COLLAPSING = 0x8
    OBJ_SWAP = 0x10


OBJ_ANON, OBJ_ONEMAPPING = ObjFlag.OBJ_ANON, ObjFlag.OBJ_ONEMAPPING
OBJ_DEAD, OBJ_COLLAPSING, OBJ_SWAP = ObjFlag.OBJ_DEAD, ObjFlag.OBJ_COLLAPSING, ObjFlag.OBJ_SWAP

OBJT_SWAP, OBJT_VNODE, OBJT_DEAD = "swap", "vnode", "dead"

# vm_object_page_remove options (sys/vm/vm_object.h)
OBJPR_CLEANONLY = 0x1        # leave dirty pages (and keep every page's validity)
OBJPR_NOTMAPPED = 0x2        # the pages are known to be unmapped
OBJECT_LOCK_CLASS = "vm object"          # the WITNESS class of every object lock


@dataclass(eq=False)
class VmObject(Tracked):
    """struct vm_object."""

    vm: Vm = locked_by("C")
    oid: int = locked_by("C", 0)
    type: str = locked_by("O", OBJT_SWAP)
    size: int = locked_by("O", 0)       # in pages; a vnode's shrinks on truncation
    lock: Lock = locked_by("C")
    pages: dict[int, VmPage] = locked_by("O", factory=dict)      # rtree/memq
    swap: dict[int, int] = locked_by("O", factory=dict)          # swblks: pindex -> data
    backing_object: VmObject | None = locked_by("O")
    backing_object_offset: int = locked_by("O", 0)      # in pages
    ref_count: int = locked_by("A,O", 1)
    shadow_count: int = locked_by("A,O", 0)
    shadows: list[VmObject] = locked_by("O", factory=list)       # shadow_head
    flags: ObjFlag = locked_by("A,O", ObjFlag(0))
    anon: bool = locked_by("C", False)      # flags & OBJ_ANON: set once, never changes
    handle: Any = locked_by("C")
    pip: BlockCount = locked_by("A")                    # paging_in_progress
    busy: BlockCount = locked_by("A")                   # object busy
    file: Any = locked_by("O")          # vnode: the file's disk contents (a tuple)
    vnode_lock: Lock | None = locked_by("C")            # vnode: its vnode's lock
    name: str = locked_by("C", "")

    def __repr__(self) -> str:
        return self.name or f"obj{self.oid}"

    @property
    def fl_key(self) -> tuple[str, int]:
        """Stable name for partial-order reduction (allocation order)."""
        return ("object", self.oid)


def _new_object(vm: Vm, otype: str, size: int, flags: ObjFlag, handle: Any,
                name: str = "") -> VmObject:
    oid = vm.next_oid
    vm.next_oid += 1
    label = name or f"obj{oid}"
    obj = VmObject(vm=vm, oid=oid, type=otype, size=size,
                   lock=Lock(OBJECT_LOCK_CLASS, label, "rw", dupok=True),
                   flags=flags, anon=bool(flags & OBJ_ANON), handle=handle,
                   pip=BlockCount(f"{label}.pip"),
                   busy=BlockCount(f"{label}.busy"), name=label)
    vm.objects.append(obj)
    return obj


def vm_object_allocate_vnode(vm: Vm, name: str, contents: tuple[int, ...]) -> VmObject:
    """vnode_create_vobject: the object of a file; `contents` are its disk pages.
    The vnode keeps a reference of its own, so file objects are never terminated."""
    obj = _new_object(vm, OBJT_VNODE, len(contents), ObjFlag(0), handle=name,
                      name=f"vn:{name}")
    obj.file = contents
    obj.vnode_lock = Lock("vnode", f"{name}.vnode", "sx")
    return obj


def vm_object_allocate_anon(vm: Vm, size: int, backing: VmObject | None) -> VmObject:
    """vm_object_allocate_anon: ANON|ONEMAPPING|SWAP.  Its handle is NULL without a
    backing object, the backing object's handle if that is anonymous, and the backing
    object itself otherwise, so anon shadows of a file are never rename-eligible.
    OBJ_ANON is read without the backing object's lock, as FreeBSD does: the bit never
    changes (`VmObject.anon`)."""
    if backing is None:
        handle = None
    elif backing.anon:
        handle = backing.handle
    else:
        handle = backing
    return _new_object(vm, OBJT_SWAP, size, OBJ_ANON | OBJ_ONEMAPPING | OBJ_SWAP, handle)


# ---------------------------------------------------------------- references, pip, busy

async def vm_object_reference(obj: VmObject) -> None:
    """vm_object_reference: refcount_acquire, no lock needed."""
    await ops.atomic_add_int(obj, "ref_count", 1)


async def vm_object_reference_locked(obj: VmObject) -> None:
    """vm_object_reference_locked: object locked; still an atomic increment."""
    lock_assert(obj.lock, "held")
    await ops.atomic_add_int(obj, "ref_count", 1)


async def vm_object_pip_add(obj: VmObject, n: int = 1) -> None:
    """vm_object_pip_add: object locked."""
    lock_assert(obj.lock, "held")
    await blockcount_acquire(obj.pip, n)


async def vm_object_pip_wakeup(obj: VmObject) -> None:
    """vm_object_pip_wakeup: drop one paging-in-progress hold (no lock needed)."""
    await blockcount_release(obj.pip, 1)


async def vm_object_pip_sleep(obj: VmObject, wmesg: str) -> None:
    """vm_object_pip_sleep: object write-locked on entry; unlocked on return."""
    if not await blockcount_sleep(obj.pip, wmesg, obj.lock):
        await rw_unlock(obj.lock)


async def vm_object_pip_wait(obj: VmObject, wmesg: str) -> None:
    """vm_object_pip_wait: object write-locked on entry and on return; may sleep."""
    while await ops.racy_load(obj.pip, "count"):
        await vm_object_pip_sleep(obj, wmesg)
        await rw_wlock(obj.lock)


async def vm_object_busy(obj: VmObject) -> None:
    """vm_object_busy: object locked; new page busies in it fail until unbusy."""
    lock_assert(obj.lock, "held")
    await blockcount_acquire(obj.busy, 1)


async def vm_object_unbusy(obj: VmObject) -> None:
    """vm_object_unbusy: no lock needed; wakes vm_object_busy_wait sleepers."""
    await blockcount_release(obj.busy, 1)


def vm_object_set_flag(obj: VmObject, flag: ObjFlag) -> None:
    """vm_object_set_flag: object write-locked."""
    lock_assert(obj.lock, "x")
    obj.flags |= flag


def vm_object_clear_flag(obj: VmObject, flag: ObjFlag) -> None:
    """vm_object_clear_flag: object write-locked."""
    lock_assert(obj.lock, "x")
    obj.flags &= ~flag


# ---------------------------------------------------------------- shadow links

async def vm_object_backing_insert(obj: VmObject, backing: VmObject) -> None:
    """vm_object_backing_insert: obj write-locked; link it as a shadow of `backing`
    (the caller's reference on `backing` becomes the backing reference).  Only an
    anonymous backing object is locked: it alone keeps a shadow list."""
    lock_assert(obj.lock, "x")
    if not backing.anon:
        _backing_link(obj, backing)
        return
    await rw_wlock(backing.lock)
    _backing_link(obj, backing)
    await rw_unlock(backing.lock)


def _backing_link(obj: VmObject, backing: VmObject) -> None:
    # vm_object_backing_insert_locked: both locks held for an anonymous backing
    # object, whose shadow list, shadow_count and our back pointer move together;
    # a vnode object counts no shadows, so only the back pointer (under obj's lock).
    if backing.anon:
        touch(backing, field="shadows")
        backing.shadows.append(obj)
        backing.shadow_count += 1
    obj.backing_object = backing


def _backing_unlink(obj: VmObject) -> VmObject:
    # vm_object_backing_remove_locked (the lock rule of _backing_link).
    backing = obj.backing_object
    assert backing is not None
    if backing.anon:
        touch(backing, field="shadows")
        backing.shadows.remove(obj)
        backing.shadow_count -= 1
    obj.backing_object = None
    return backing


async def vm_object_shadow(obj: VmObject | None, offset: int, size: int, shared: bool,
                           vm: Vm) -> tuple[VmObject, int]:
    """vm_object_shadow: return (result, offset) for a map entry that pointed at
    (obj, offset).  The entry's reference on `obj` silently becomes result's backing
    reference; with `shared` result gets a second reference and loses ONEMAPPING.
    Called with the map write-locked; takes object locks; may not sleep otherwise."""
    if obj is not None and not shared:
        # Racy by design in FreeBSD: a sole reference held by our own entry cannot grow
        # behind our back while the map is write-locked.
        refs = await ops.racy_load(obj, "ref_count")
        if refs == 1 and obj.anon:
            return obj, offset
    result = vm_object_allocate_anon(vm, size, obj)
    result.backing_object_offset = offset
    await rw_wlock(result.lock)
    if shared:
        await vm_object_reference_locked(result)
        vm_object_clear_flag(result, OBJ_ONEMAPPING)
    if obj is not None:
        await vm_object_backing_insert(result, obj)
    await rw_unlock(result.lock)
    await ops.note("shadow", {"result": repr(result), "source": repr(obj), "shared": shared})
    return result, 0


# ---------------------------------------------------------------- deallocate

async def _refcount_release_if_gt(obj: VmObject, n: int) -> bool:
    def release() -> bool:
        if obj.ref_count > n:
            obj.ref_count -= 1
            return True
        return False
    return await ops.atomic(obj, "refcount_release_if_gt", release, field="ref_count")


async def _refcount_release(obj: VmObject) -> bool:
    """refcount_release: True iff this dropped the last reference."""
    old = await ops.atomic_add(obj, "ref_count", -1)
    kassert(old > 0, f"{obj}: ref_count underflow")
    return old == 1


async def vm_object_deallocate(obj: VmObject | None) -> None:
    """vm_object_deallocate: drop a reference; an anonymous object left with one
    reference and one shadow is collapsed into that shadow, the last reference
    terminates it and continues with its backing object.  No locks on entry; may sleep."""
    while obj is not None:
        # Unlocked, as in FreeBSD: OBJ_ANON never changes, but the word does.
        keep = 1 if not await ops.racy_load(obj, "flags") & OBJ_ANON else 2
        if await _refcount_release_if_gt(obj, keep):
            return
        if obj.type == OBJT_VNODE:
            # vm_object_deallocate_vnode: the vnode keeps its object (and pages) cached.
            await _refcount_release(obj)
            return
        await rw_wlock(obj.lock)
        if not await _refcount_release(obj):
            # ref_count grows without the lock (vm_object_reference), so this read is
            # racy; a new reference only makes the ONEMAPPING / collapse choice moot.
            refs = await ops.racy_load(obj, "ref_count")
            if refs > 1 or obj.shadow_count == 0:
                if obj.flags & OBJ_ANON and refs == 1:
                    vm_object_set_flag(obj, OBJ_ONEMAPPING)
                await rw_unlock(obj.lock)
                return
            obj = await vm_object_deallocate_anon(obj)
            continue
        # The final reference: terminate and continue with the backing object.
        temp = obj.backing_object
        if temp is not None:
            await vm_object_backing_remove(obj)
        kassert(not obj.flags & OBJ_DEAD, f"{obj}: terminating a dead object")
        vm_object_set_flag(obj, OBJ_DEAD)
        await vm_object_terminate(obj)
        obj = temp


async def vm_object_backing_remove(obj: VmObject) -> None:
    """vm_object_backing_remove: obj write-locked; unlink it from its backing object
    (locked too if it is anonymous, the only kind that lists its shadows)."""
    backing = obj.backing_object
    assert backing is not None
    if not backing.anon:
        _backing_unlink(obj)
        return
    await rw_wlock(backing.lock)
    _backing_unlink(obj)
    await rw_unlock(backing.lock)


async def vm_object_deallocate_anon(backing: VmObject) -> VmObject | None:
    """vm_object_deallocate_anon: `backing` write-locked with ref_count 1 and a single
    shadow; lock that shadow, take a reference on it and collapse.  Returns the shadow
    (whose new reference the caller's loop drops) or None; `backing` is unlocked."""
    lock_assert(backing.lock, "x")
    kassert(backing.shadow_count == 1 and len(backing.shadows) == 1,
            f"{backing}: deallocate_anon with shadow_count {backing.shadow_count}")
    obj = backing.shadows[0]
    if not await rw_try_wlock(obj.lock):
        # Prevent the shadow from disappearing while we take the locks in order.
        await blockcount_acquire(obj.pip, 1)
        await rw_unlock(backing.lock)
        await rw_wlock(obj.lock)
        await vm_object_pip_wakeup(obj)
    else:
        await rw_unlock(backing.lock)
    # FreeBSD asserts this before locking the shadow, reading its flags racily; the bit
    # never changes, so the model asserts it under the lock instead.
    kassert(bool(obj.flags & OBJ_ANON), f"{obj}: shadow of anon object is not anon")
    # A collapse/terminate race with the last reference holder.
    if obj.flags & (OBJ_DEAD | OBJ_COLLAPSING) or not await _refcount_acquire_if_not_zero(obj):
        await rw_unlock(obj.lock)
        return None
    b = obj.backing_object
    if b is not None and b.anon:
        await vm_object_collapse(obj)
    await rw_unlock(obj.lock)
    return obj


async def _refcount_acquire_if_not_zero(obj: VmObject) -> bool:
    def acquire() -> bool:
        if obj.ref_count == 0:
            return False
        obj.ref_count += 1
        return True
    return await ops.atomic(obj, "refcount_acquire_if_not_zero", acquire, field="ref_count")


async def vm_object_terminate(obj: VmObject) -> None:
    """vm_object_terminate: obj write-locked and OBJ_DEAD; wait for paging to finish,
    free the pages (they must be unbusied and unmapped), mark it OBJT_DEAD, unlock."""
    lock_assert(obj.lock, "x")
    kassert(bool(obj.flags & OBJ_DEAD), f"terminate of live object {obj}")
    await vm_object_pip_wait(obj, "objtrm")
    kassert(obj.shadow_count == 0, f"terminate: {obj} still has {obj.shadow_count} shadows")
    for pindex in sorted(obj.pages):
        m = obj.pages[pindex]
        kassert(not m.busy.busied(), f"terminate: {m} of {obj} is busy ({m.busy.state()})")
        kassert(await vm_page_tryxbusy(m), f"terminate: cannot busy {m}")
        await vm_page_free(m)
    if obj.swap:
        touch(obj, field="swap")
        obj.swap.clear()                            # swap_pager_dealloc
    obj.type = OBJT_DEAD
    obj.vm.objects.remove(obj)
    await rw_unlock(obj.lock)
    await ops.note("terminate", repr(obj))


# ---------------------------------------------------------------- collapse

async def vm_object_backing_collapse_wait(obj: VmObject) -> VmObject | None:
    """vm_object_backing_collapse_wait: obj write-locked; wait until its anonymous
    backing object is not being collapsed, return it write-locked (or None)."""
    while True:
        backing = obj.backing_object
        if backing is None or not backing.anon:
            return None
        await rw_wlock(backing.lock)
        if not backing.flags & (OBJ_DEAD | OBJ_COLLAPSING):
            return backing
        await rw_unlock(obj.lock)
        await ops.note("collapse-wait-backing", repr(backing))
        await vm_object_pip_sleep(backing, "vmbckwait")
        await rw_wlock(obj.lock)


async def vm_object_collapse(obj: VmObject) -> None:
    """vm_object_collapse: obj write-locked (still locked on return).  Fold a backing
    object referenced only by obj into it, or bypass one that obj fully shadows."""
    lock_assert(obj.lock, "x")
    while True:
        kassert((obj.flags & (OBJ_DEAD | OBJ_ANON)) == OBJ_ANON, f"collapse of {obj}")
        backing = await vm_object_backing_collapse_wait(obj)
        if backing is None:
            return
        # Racy reads: with both objects locked a backing object referenced only by obj
        # cannot gain a reference (nobody else can find it).
        if await ops.racy_load(backing, "ref_count") == 1:
            await _collapse_full(obj, backing)
        elif not await _collapse_bypass(obj, backing):
            return


async def vm_object_backing_transfer(obj: VmObject, backing: VmObject) -> None:
    """vm_object_backing_transfer: both write-locked; obj now shadows what `backing`
    shadowed, and backing's reference on that object becomes obj's.  Between the
    unlink and the link obj has no backing object while obj stays write-locked: only
    lock holders may read the link (check.judging.invariants does not judge it)."""
    _backing_unlink(obj)
    nxt = backing.backing_object
    if nxt is None:
        return
    if nxt.anon:
        await rw_wlock(nxt.lock)
        _backing_unlink(backing)
        _backing_link(obj, nxt)
        await rw_unlock(nxt.lock)
    else:
        obj.backing_object, backing.backing_object = nxt, None


async def vm_object_backing_insert_ref(obj: VmObject, backing: VmObject) -> None:
    """vm_object_backing_insert_ref: obj write-locked; link it below `backing` with a
    new reference (an anonymous backing object is locked and loses ONEMAPPING)."""
    if not backing.anon:
        await vm_object_reference(backing)
        _backing_link(obj, backing)
        return
    await rw_wlock(backing.lock)
    kassert(not backing.flags & OBJ_DEAD, f"shadowing dead anonymous object {backing}")
    await vm_object_reference_locked(backing)
    _backing_link(obj, backing)
    vm_object_clear_flag(backing, OBJ_ONEMAPPING)
    await rw_unlock(backing.lock)


async def _collapse_full(obj: VmObject, backing: VmObject) -> None:
    # The backing object is referenced only by obj: move its pages up, relink, discard it.
    kassert(backing.shadow_count == 1, f"collapse: {backing} has {backing.shadow_count} shadows")
    await blockcount_acquire(obj.pip, 1)
    vm_object_set_flag(obj, OBJ_COLLAPSING)
    await blockcount_acquire(backing.pip, 1)
    vm_object_set_flag(backing, OBJ_DEAD)
    await ops.note("collapse", {"object": repr(obj), "backing": repr(backing)})
    await vm_object_collapse_scan(obj)
    # Move the pager: backing's blocks go up where obj has none of its own.
    swap_pager_copy(backing, obj, obj.backing_object_offset, True)
    vm_object_clear_flag(obj, OBJ_COLLAPSING)
    await vm_object_backing_transfer(obj, backing)
    obj.backing_object_offset += backing.backing_object_offset
    await rw_unlock(obj.lock)
    await vm_object_pip_wakeup(obj)
    kassert(not backing.pages, f"collapse: {backing} not empty")
    kassert(backing.ref_count == 1, f"collapse: {backing} was re-referenced")
    # FreeBSD's order: the pip first, then the last reference, then terminate.
    await vm_object_pip_wakeup(backing)
    kassert(await _refcount_release(backing), f"collapse: {backing} gained a reference")
    await vm_object_terminate(backing)
    obj.vm.count("object_collapses")
    await rw_wlock(obj.lock)


async def _collapse_bypass(obj: VmObject, backing: VmObject) -> bool:
    # Shared backing object: skip it only if obj shadows every page of it in its window.
    if not await swap_pager_scan_all_shadowed(obj):
        await rw_unlock(backing.lock)
        return False
    _backing_unlink(obj)
    nxt = backing.backing_object
    if nxt is not None:
        await vm_object_backing_insert_ref(obj, nxt)
        obj.backing_object_offset += backing.backing_object_offset
    kassert(not await _refcount_release(backing), f"bypass freed {backing}")
    await rw_unlock(backing.lock)
    obj.vm.count("object_bypasses")
    await ops.note("bypass", {"object": repr(obj), "backing": repr(backing)})
    return True


async def vm_object_collapse_scan(obj: VmObject) -> None:
    """vm_object_collapse_scan: both objects write-locked (and again on return); move
    every backing page into obj unless obj's page shadows it (then free it: it must not
    be mapped).  Busy pages make it drop both locks, sleep and rescan."""
    backing = obj.backing_object
    assert backing is not None
    off = obj.backing_object_offset
    while backing.pages:
        p = backing.pages[min(backing.pages)]
        if not await vm_page_tryxbusy(p):
            await vm_object_collapse_scan_wait(obj, p)
            continue
        new_pindex = p.pindex - off
        if p.pindex < off or new_pindex >= obj.size:
            swap_pager_freespace(backing, p.pindex)
            await vm_page_free(p)                  # outside the window
            continue
        if not p.valid:
            # Left by an incomplete fault: its swap block, if any, is still the data
            # and goes up with swap_pager_copy.
            await vm_page_free(p)
            continue
        pp = obj.pages.get(new_pindex)
        if pp is not None and not await vm_page_tryxbusy(pp):
            # The parent's page is busy and maybe not yet valid: we cannot tell
            # whether it shadows p until its owner is done (the policy's question).
            await obj.vm.policy.vm_object_collapse_scan_busy_parent(obj, p, pp)
            continue
        if pp is not None and not pp.valid:
            await vm_page_free(pp)                 # left by an incomplete fault
            pp = None
        if pp is not None or swap_pager_haspage(obj, new_pindex):
            # Shadowed by obj's page or by its swap block: "freeing mapped page" KASSERT.
            await ops.note("collapse-free-shadowed", repr(p))
            swap_pager_freespace(backing, p.pindex)
            await vm_page_free(p)
            if pp is not None:
                await vm_page_xunbusy(pp)
            continue
        old_pindex = p.pindex
        vm_page_rename(p, obj, new_pindex)         # mappings of p stay valid
        swap_pager_freespace(backing, old_pindex)  # the page is newer than its block
        await ops.note("collapse-rename", repr(p))
        await vm_page_xunbusy(p)


async def vm_object_collapse_scan_wait(obj: VmObject, p: VmPage) -> None:
    """vm_object_collapse_scan_wait: both locked on entry and return; sleep on busy p."""
    backing = obj.backing_object
    assert backing is not None
    await ops.note("collapse-wait-busy", repr(p))
    if p.object is obj:
        await rw_unlock(backing.lock)
        if await vm_page_busy_sleep(p, "vmocol", 0):
            await rw_wlock(obj.lock)
    else:
        await rw_unlock(obj.lock)
        if not await vm_page_busy_sleep(p, "vmocol", 0):
            await rw_unlock(backing.lock)
        await rw_wlock(obj.lock)
    await rw_wlock(backing.lock)


# ---------------------------------------------------------------- split

async def vm_object_collapse_wait(obj: VmObject) -> None:
    """vm_object_collapse_wait: obj write-locked (again on return); wait while a
    collapse into obj is in progress ("vmcolwait")."""
    lock_assert(obj.lock, "x")
    while obj.flags & OBJ_COLLAPSING:
        await vm_object_pip_sleep(obj, "vmcolwait")
        await rw_wlock(obj.lock)


async def vm_object_split(e: VmMapEntry) -> None:
    """vm_object_split: the map is write-locked and e's ONEMAPPING object write-locked
    (on return: e's object, now possibly the new one).  When other references share
    the object (clipped entries, a fault in progress) give e a private object of its
    own range: a new object shadowing what the old one shadowed, to which e's resident
    pages move under xbusy (a busy page is waited for, "spltwt") and its swap blocks
    follow.  Mappings stay as they are: the pages keep their identity."""
    orig = e.object
    assert orig is not None
    kassert(bool(orig.flags & OBJ_ONEMAPPING), f"split of {orig} without ONEMAPPING")
    if not orig.anon or await ops.racy_load(orig, "ref_count") <= 1:
        return
    await rw_unlock(orig.lock)
    start, size = e.offset, (e.end - e.start) // PAGE_SIZE
    new = vm_object_allocate_anon(orig.vm, size, orig)
    # A collapse into orig must finish first so that its swap blocks are stable; our
    # reference on orig's backing object (below) keeps further collapses off.
    await rw_wlock(orig.lock)
    await vm_object_collapse_wait(orig)
    await rw_wlock(new.lock)        # still private: the lock order does not matter
    backing = orig.backing_object
    if backing is not None:
        await vm_object_backing_insert_ref(new, backing)
        new.backing_object_offset = orig.backing_object_offset + start
    moved: list[VmPage] = []
    while True:                                    # retry:
        todo = sorted(i for i in orig.pages if start <= i < start + size)
        for pindex in todo:
            m = orig.pages[pindex]
            if not await vm_page_tryxbusy(m):
                await rw_unlock(new.lock)
                await ops.note("split-wait-busy", repr(m))
                if await vm_page_busy_sleep(m, "spltwt", 0):
                    await rw_wlock(orig.lock)
                await rw_wlock(new.lock)
                break
            if not m.valid:
                await vm_page_free(m)              # left by an incomplete fault
                continue
            vm_page_rename(m, new, pindex - start)
            moved.append(m)
        else:
            break
    swap_pager_copy(orig, new, start, False)
    for m in moved:
        await vm_page_xunbusy(m)
    # FreeBSD points the entry at the new object after unlocking both; the entry is the
    # map lock's, held throughout, so no thread can tell the order apart.
    e.object, e.offset = new, 0
    await rw_unlock(orig.lock)
    await rw_unlock(new.lock)
    await ops.note("split", {"object": repr(orig), "new": repr(new), "pages": len(moved)})
    await vm_object_deallocate(orig)
    await rw_wlock(new.lock)


# ---------------------------------------------------------------- invalidation

async def vm_object_page_remove(obj: VmObject, start: int, end: int, options: int) -> None:
    """vm_object_page_remove: object write-locked (again on return); remove the pages
    of [start, end) from obj: each is xbusied first -- a page busied by anyone, shared
    busy included, is slept on ("vmopar") and the scan restarts --, unmapped
    everywhere, and freed; a wired page cannot be freed and is only invalidated.  With
    OBJPR_CLEANONLY (msync) a dirty page stays, read-only, and nothing is invalidated.
    The xbusy is what orders this against a fault that found the page: D51474's
    shared busy must keep it out exactly as the exclusive one did."""
    lock_assert(obj.lock, "x")
    if not obj.pages:
        return
    await vm_object_pip_add(obj, 1)
    while True:                                    # again:
        todo = sorted(i for i in obj.pages if start <= i < end)
        for pindex in todo:
            p = obj.pages.get(pindex)
            if p is None:
                continue
            if not await vm_page_tryxbusy(p):
                await ops.note("page-remove-wait-busy",
                               {"page": repr(p), "sbusy": p.busy.xowner is None})
                if await vm_page_busy_sleep(p, "vmopar", 0):
                    await rw_wlock(obj.lock)
                break
            await vm_object_page_remove_one(obj, p, options)
        else:
            break
    await vm_object_pip_wakeup(obj)


async def vm_object_page_remove_one(obj: VmObject, p: VmPage, options: int) -> None:
    """The body of vm_object_page_remove's loop for one xbusied page."""
    mapped = not options & OBJPR_NOTMAPPED and await ops.racy_load(obj, "ref_count") != 0
    # Nobody can start wiring p: that needs its busy or this object's lock, both ours;
    # an unwire may race, and only sends us down the (harmless) wired path.
    wired = await ops.racy_load(p, "wire_count") != 0
    if not wired and options & OBJPR_CLEANONLY and p.valid:
        if mapped:
            # vm_page_try_remove_write: no store can dirty p after this.
            await pmap_remove_write(obj.vm, p)
        if p.dirty:
            await vm_page_xunbusy(p)
            return
    if not wired:
        if mapped:
            await pmap_remove_all(obj.vm, p)       # vm_page_try_remove_all
        await ops.note("page-remove", {"object": repr(obj), "pindex": p.pindex})
        await vm_page_free(p)
        return
    # wired:
    if mapped:
        await pmap_remove_all(obj.vm, p)
    if not options & OBJPR_CLEANONLY:
        vm_page_invalid(p)
        vm_page_undirty(p)
        await ops.note("page-invalidate", {"object": repr(obj), "pindex": p.pindex})
    await vm_page_xunbusy(p)


async def vm_object_sync(obj: VmObject | None, offset: int, size: int,
                         invalidate: bool) -> bool:
    """vm_object_sync: find the object at the bottom of obj's chain (the one with
    backing store), hand over hand down the chain, and with `invalidate` remove its
    clean pages of the range if it is a vnode object (OBJPR_CLEANONLY, as msync(2)
    without vfs.msync_flush_flags' old behaviour).  Flushing dirty pages to the file
    is not modelled: a dirty page stays resident.  `offset` and `size` in pages."""
    if obj is None:
        return True
    await rw_wlock(obj.lock)
    while (backing := obj.backing_object) is not None:
        await rw_wlock(backing.lock)
        offset += obj.backing_object_offset
        await rw_unlock(obj.lock)
        obj = backing
        if obj.size < offset + size:
            size = max(obj.size - offset, 0)
    if obj.type == OBJT_VNODE and invalidate:
        await vm_object_page_remove(obj, offset, offset + size, OBJPR_CLEANONLY)
    await rw_unlock(obj.lock)
    return True
