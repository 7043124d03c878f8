"""vm_pager: getting a page's contents from backing store.

What lives here: vm_pager_get_pages for vnode objects (the file's disk contents).  The
caller holds the page xbusied and no object lock; the I/O wait is a scheduling point
(and a cost for the simulator).  Anonymous objects never page in: there is no pageout
or swap in the model, so their missing pages are zero-filled by vm_fault (docs/model.md).
Must not be added: read-ahead (one page per I/O).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faultline.kern.vm_page import VmPage, vm_page_assert_xbusied, vm_page_valid
from faultline.rt import ops

if TYPE_CHECKING:
    from faultline.kern.vm_object import VmObject

DISK_READ_NS = 50_000     # one 4 KiB read from a fast SSD


async def vm_pager_get_pages(obj: VmObject, m: VmPage) -> bool:
    """vm_pager_get_pages / vnode_pager_getpages: read m's contents from the file.
    False (VM_PAGER_BAD) for an index past the end of the file."""
    vm_page_assert_xbusied(m)
    if obj.file is None or m.pindex >= len(obj.file):
        return False
    await ops.cost(DISK_READ_NS, "disk read")
    await ops.pause("biord")                  # the I/O: other threads run meanwhile
    m.content = obj.file[m.pindex]
    vm_page_valid(m)
    await ops.note("pager-read", {"object": repr(obj), "pindex": m.pindex})
    return True
