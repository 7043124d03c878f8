"""vm_pager: getting a page's contents from backing store.

What lives here: vm_pager_get_pages, which hands a fault's xbusied page to the object's
pager: the vnode pager (the file's disk contents) or the swap pager (kern.swap_pager).
The caller holds the page xbusied and no object lock; the I/O wait is a scheduling
point (and a cost for the simulator).  Must not be added: read-ahead (one page per I/O).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from faultline.kern.swap_pager import (
    VM_PAGER_BAD,
    VM_PAGER_FAIL,
    VM_PAGER_OK,
    swap_pager_getpages,
)
from faultline.kern.vm_page import VmPage, vm_page_assert_xbusied, vm_page_valid
from faultline.rt import ops

if TYPE_CHECKING:
    from faultline.kern.vm_object import VmObject

__all__ = ["VM_PAGER_BAD", "VM_PAGER_FAIL", "VM_PAGER_OK", "vm_pager_get_pages"]


async def vm_pager_get_pages(obj: VmObject, m: VmPage) -> str:
    """vm_pager_get_pages: VM_PAGER_OK (m valid), VM_PAGER_FAIL (the pager does not
    have the page: the fault walks on down the chain) or VM_PAGER_BAD (past the end of
    the file)."""
    vm_page_assert_xbusied(m)
    if obj.file is None:
        return await swap_pager_getpages(obj, m)
    return await vnode_pager_getpages(obj, m)


async def vnode_pager_getpages(obj: VmObject, m: VmPage) -> str:
    """vnode_pager_getpages: read m's contents from the file."""
    if m.pindex >= len(obj.file):
        return VM_PAGER_BAD
    await ops.pause("biord")                  # the I/O: other threads run meanwhile
    m.content = obj.file[m.pindex]
    vm_page_valid(m)
    await ops.note("pager-read", {"object": repr(obj), "pindex": m.pindex})
    return VM_PAGER_OK
