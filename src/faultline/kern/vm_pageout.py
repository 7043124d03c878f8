"""vm_pageout: the page daemon's laundering of one anonymous page to swap.

What lives here: `vm_pageout_at`, the scenario's `pageout ADDR` op.  The page daemon
picks its victims from the page queues; a scenario names one instead, by address: the
topmost resident page of the chain the process's map entry holds there.  That page is
then laundered and freed the way sys/vm/vm_pageout.c does it for a clean-able anonymous
page: object write lock, xbusy (a busy or wired page is skipped, as the scan skips it),
pmap_remove_all, swap_pager_putpages, and, with the object locked again, the free
(after removing any read-only mapping soft_fast or prefault made while the object was
unlocked for the write; they need no page busy).  Rule kept: no step here holds the map
while it works on the page: the daemon never has one.  Must not be added: page queues,
scan targets, or choosing victims by policy.
"""

from __future__ import annotations

from faultline.kern.pmap import PAGE_SIZE, pmap_remove_all
from faultline.kern.swap_pager import swap_pager_putpages
from faultline.kern.vm_map import VmMap, vm_map_lock_read, vm_map_lookup_entry, vm_map_unlock_read
from faultline.kern.vm_object import OBJ_SWAP
from faultline.kern.vm_page import VmPage, vm_page_free, vm_page_tryxbusy, vm_page_xunbusy
from faultline.rt import ops
from faultline.rt.sync import rw_rlock, rw_unlock, rw_wlock


async def vm_pageout_at(m: VmMap, va: int) -> str:
    """Launder the page the map holds at `va` to swap and free it.  Returns what
    happened: "paged-out", or why the page was left alone ("no-page", "not-anonymous",
    "busy", "wired", "invalid", "moved")."""
    victim = await vm_pageout_find(m, va & ~(PAGE_SIZE - 1))
    if victim is None:
        result = "no-page"
    else:
        result = await vm_pageout_launder(victim)
    await ops.note("pageout", {"map": m.name, "va": va, "page": repr(victim),
                               "result": result})
    return result


async def vm_pageout_find(m: VmMap, va: int) -> VmPage | None:
    """The scenario's stand-in for the page queues: the topmost resident page for va
    in the chain of m's entry, found under the map and object read locks (hand over
    hand, as a fault walks)."""
    await vm_map_lock_read(m)
    e = vm_map_lookup_entry(m, va)
    obj = e.object if e is not None else None
    if e is None or obj is None:
        await vm_map_unlock_read(m)
        return None
    pindex = e.pindex(va)
    await rw_rlock(obj.lock)
    await vm_map_unlock_read(m)
    while True:
        page = obj.pages.get(pindex)
        nxt = obj.backing_object
        if page is not None or nxt is None:
            await rw_unlock(obj.lock)
            return page
        pindex += obj.backing_object_offset
        await rw_rlock(nxt.lock)
        await rw_unlock(obj.lock)
        obj = nxt


async def vm_pageout_launder(m: VmPage) -> str:
    """vm_pageout_launder -> vm_pageout_clean -> swap_pager_putpages, then the free
    of the clean page (vm_pageout_scan_inactive)."""
    obj = await ops.racy_load(m, "object")     # the daemon reads m->object unlocked
    if obj is None or not await ops.racy_load(obj, "flags") & OBJ_SWAP:
        return "not-anonymous" if obj is not None else "moved"
    await rw_wlock(obj.lock)
    if m.object is not obj:
        await rw_unlock(obj.lock)
        return "moved"
    if not await vm_page_tryxbusy(m):
        await rw_unlock(obj.lock)
        return "busy"
    if await ops.racy_load(m, "wire_count") or not m.valid:
        await vm_page_xunbusy(m)
        await rw_unlock(obj.lock)
        return "wired" if m.valid else "invalid"
    await pmap_remove_all(obj.vm, m)
    await swap_pager_putpages(obj, m)
    # vm_page_try_remove_all: soft_fast and prefault map valid pages read-only without
    # busying them, and the object was unlocked for the write.
    await pmap_remove_all(obj.vm, m)
    await vm_page_free(m)
    await rw_unlock(obj.lock)
    return "paged-out"
