"""vnode_pager: what truncate(2) and pwrite(2) do to a file's VM object.

What lives here: vnode_pager_setsize (sys/vm/vnode_pager.c), which a file system calls
when a file shrinks and which removes the pages past the new end through
vm_object_page_remove; vn_pwrite, the write(2) path reduced to what the VM sees (the
page of the file's object is grabbed exclusively busied, overwritten and dirtied); and
the two system calls.  Both run under the vnode's lock, which orders them against each
other but not against faults: the fault path never takes it (no OBJ_SIZEVNLOCK file
system is modelled), so a fault meets a truncation only through the object lock and
the page busy.  Must not be added: the fault path, or growing a file (the model's
files never grow: a pwrite past the end fails with EFBIG).

Simplifications, stated in docs/model.md: a page is one word, so a truncation never
leaves a partial page (no vm_page_set_valid_range on the last page) and a pwrite
overwrites a whole page (no read-before-write); the buffer cache is not modelled, so
pwrite busies the page where FreeBSD's bufwrite holds the buffer lock.
"""

from __future__ import annotations

from faultline.kern.vm_object import VmObject, vm_object_page_remove
from faultline.kern.vm_page import (
    vm_page_alloc,
    vm_page_busy_sleep,
    vm_page_dirty,
    vm_page_tryxbusy,
    vm_page_valid,
    vm_page_xunbusy,
    vm_waitpfault,
)
from faultline.rt import ops
from faultline.rt.sync import Lock, lock_assert, rw_unlock, rw_wlock

EFBIG = "EFBIG"


def _vnode_lock(obj: VmObject) -> Lock:
    assert obj.vnode_lock is not None, f"{obj} is not a file's object"
    return obj.vnode_lock


async def vnode_pager_setsize(obj: VmObject, npages: int) -> None:
    """vnode_pager_setsize: the file now has `npages` pages (vnode locked).  Pages
    past the end are removed while the object is write-locked -- waiting for each busy
    one, so a fault that found a page, even only share-busied it, finishes first and
    its mapping is then removed -- and the size shrinks last, in the same hold of the
    object lock as the final pass, so no fault can bring such a page back."""
    lock_assert(_vnode_lock(obj), "x")
    await rw_wlock(obj.lock)
    if npages < obj.size:
        await vm_object_page_remove(obj, npages, obj.size, 0)
        obj.size = npages
        obj.file = obj.file[:npages]       # the file system frees the blocks
    await rw_unlock(obj.lock)


async def vn_pwrite(obj: VmObject, pindex: int, value: int) -> str | None:
    """Store `value` into page `pindex` of the file (vnode locked): the resident page
    is exclusively busied (sleeping while anyone busies it), a missing one allocated;
    either is then valid and dirty.  None on success, EFBIG past the end of the file."""
    lock_assert(_vnode_lock(obj), "x")
    await rw_wlock(obj.lock)
    while True:
        if pindex >= obj.size:
            await rw_unlock(obj.lock)
            return EFBIG
        m = obj.pages.get(pindex)
        if m is None:
            m = await vm_page_alloc(obj, pindex)
            if m is None:
                await rw_unlock(obj.lock)
                await vm_waitpfault(obj.vm.domain)
                await rw_wlock(obj.lock)
                continue
        elif not await vm_page_tryxbusy(m):
            if await vm_page_busy_sleep(m, "pgrbwt", 0):
                await rw_wlock(obj.lock)
            continue
        break
    m.content = value
    vm_page_valid(m)
    vm_page_dirty(m)
    await ops.note("file-write", {"file": obj.handle, "pindex": pindex, "value": value})
    await vm_page_xunbusy(m)
    await rw_unlock(obj.lock)
    return None


async def sys_truncate(obj: VmObject, npages: int) -> None:
    """truncate(2) -> VOP_SETATTR -> the file system's truncation, which calls
    vnode_pager_setsize.  The memory oracle learns when it starts and when it has
    taken effect: until it returns, an access to a page past the new end may succeed
    or fail."""
    span = {"file": obj.handle, "pages": npages}
    await ops.note("truncate-begin", span)
    await rw_wlock(_vnode_lock(obj))
    await vnode_pager_setsize(obj, npages)
    await rw_unlock(_vnode_lock(obj))
    await ops.note("truncate-end", span)


async def sys_pwrite(obj: VmObject, pindex: int, value: int) -> str | None:
    """pwrite(2) of one page at page offset `pindex` (vn_write under the vnode lock)."""
    await rw_wlock(_vnode_lock(obj))
    rv = await vn_pwrite(obj, pindex, value)
    await rw_unlock(_vnode_lock(obj))
    if rv is not None:
        await ops.note("file-write-failed", {"file": obj.handle, "pindex": pindex,
                                             "error": rv})
    return rv
