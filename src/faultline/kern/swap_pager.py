"""swap_pager: the backing store of anonymous (OBJ_SWAP) objects.

What lives here: swap blocks (`VmObject.swap`, pindex -> the contents written out, the
model's swblk pctrie) and sys/vm/swap_pager.c's operations on them: has-page, page-in
for a fault, page-out for the page daemon, freeing space, moving blocks from a backing
object into its parent at collapse (swap_pager_copy) and the bypass test
swap_pager_scan_all_shadowed.  Rule kept: blocks change only under the object write
lock, and a page being paged in or out stays exclusively busied while its object is
unlocked for the I/O.  Must not be added: choosing what to page out (vm_pageout).

    fault:   vm_fault_object_needs_getpages(S)  (S has blocks)  -> map unlocked
             swap_pager_getpages(S, m): block? read it : VM_PAGER_FAIL (walk on)
    pageout: xbusy m, pmap_remove_all, swap_pager_putpages (block = contents), free m
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faultline.kern.vm_page import (
    VmPage,
    vm_page_assert_xbusied,
    vm_page_tryxbusy,
    vm_page_valid,
    vm_page_xunbusy,
)
from faultline.rt import ops
from faultline.rt.context import touch
from faultline.rt.sync import lock_assert, rw_unlock, rw_wlock

if TYPE_CHECKING:
    from faultline.kern.vm_object import VmObject

VM_PAGER_OK, VM_PAGER_BAD, VM_PAGER_FAIL = "VM_PAGER_OK", "VM_PAGER_BAD", "VM_PAGER_FAIL"


def swap_pager_haspage(obj: VmObject, pindex: int) -> bool:
    """swap_pager_haspage: obj has a swap block at pindex (object locked)."""
    lock_assert(obj.lock, "held")
    return pindex in obj.swap


async def swap_pager_getpages(obj: VmObject, m: VmPage) -> str:
    """swap_pager_getpages: object unlocked on entry and return, m xbusied by us.
    VM_PAGER_FAIL when obj has no block for m (the fault goes on down the chain);
    otherwise read the block into m, which becomes valid.  The block stays: FreeBSD
    frees swap space only when the page is dirtied or freed (docs/model.md)."""
    vm_page_assert_xbusied(m)
    await rw_wlock(obj.lock)
    if not swap_pager_haspage(obj, m.pindex):
        await rw_unlock(obj.lock)
        return VM_PAGER_FAIL
    block = obj.swap[m.pindex]
    await rw_unlock(obj.lock)
    await ops.pause("swread")                 # the I/O: other threads run meanwhile
    m.content = block
    vm_page_valid(m)
    await ops.note("swap-in", {"object": repr(obj), "pindex": m.pindex})
    return VM_PAGER_OK


async def swap_pager_putpages(obj: VmObject, m: VmPage) -> None:
    """swap_pager_putpages: obj write-locked (again on return), m xbusied and unmapped.
    Record the block, then write it with the object unlocked (paging in progress keeps
    the object alive, the busy keeps faults and collapses off the page)."""
    from faultline.kern.vm_object import vm_object_pip_add, vm_object_pip_wakeup
    lock_assert(obj.lock, "x")
    vm_page_assert_xbusied(m)
    touch(obj, field="swap")
    obj.swap[m.pindex] = m.content
    await vm_object_pip_add(obj, 1)
    await rw_unlock(obj.lock)
    await ops.pause("swwrt")
    await rw_wlock(obj.lock)
    await vm_object_pip_wakeup(obj)
    await ops.note("swap-out", {"object": repr(obj), "pindex": m.pindex})


def swap_pager_freespace(obj: VmObject, pindex: int) -> None:
    """swap_pager_freespace for one page: object write-locked."""
    lock_assert(obj.lock, "x")
    if pindex in obj.swap:
        touch(obj, field="swap")
        del obj.swap[pindex]


def swap_pager_copy(src: VmObject, dst: VmObject, offset: int, destroy: bool) -> None:
    """swap_pager_copy(src, dst, offset, destroysource): both write-locked.  Every
    block of src in [offset, offset + dst.size) leaves src: it moves to dst at
    pindex - offset unless dst has a block there already (dst's is newer data; src's
    is dropped).  With `destroy` (collapse) src's remaining blocks are freed too;
    without it (split) they stay with src."""
    lock_assert(src.lock, "x")
    lock_assert(dst.lock, "x")
    window = [i for i in sorted(src.swap) if offset <= i < offset + dst.size]
    if not window and not (destroy and src.swap):
        return
    touch(src, field="swap")
    touch(dst, field="swap")
    for pindex in window:
        block = src.swap.pop(pindex)
        if pindex - offset not in dst.swap:
            dst.swap[pindex - offset] = block
    if destroy:
        src.swap.clear()


async def swap_pager_scan_all_shadowed(obj: VmObject) -> bool:
    """swap_pager_scan_all_shadowed: both objects write-locked; True iff every index of
    obj's window that the backing object holds (a resident page or a swap block) is
    shadowed by obj: a valid page of obj, or a swap block of obj.  A busy backing page
    may mean an older COW is in flight: refuse.  A backing page stays xbusied while its
    parent index is checked, so no fault can validate the parent page meanwhile."""
    backing = obj.backing_object
    assert backing is not None
    if not backing.anon:
        return False
    off = obj.backing_object_offset
    held = set(backing.pages) | set(backing.swap)
    for pindex in sorted(i for i in held if off <= i < off + obj.size):
        p = backing.pages.get(pindex)
        if p is not None:
            if not await vm_page_tryxbusy(p):
                return False
            if not p.valid:
                await vm_page_xunbusy(p)
                return False
        new = pindex - off
        pp = obj.pages.get(new)
        shadowed = (pp is not None and pp.valid) or swap_pager_haspage(obj, new)
        if p is not None:
            await vm_page_xunbusy(p)
        if not shadowed:
            return False
    return True
