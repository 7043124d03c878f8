"""pmap: per-address-space page tables, per-page pv lists and hashed pv-list locks.

What lives here: `Pmap` (va -> PTE), the pv list of each page (every (pmap, va) that maps
it) and amd64 pmap.c's operations the VM layer calls: pmap_enter, pmap_remove,
pmap_remove_all, pmap_protect, pmap_copy, pmap_copy_page, pmap_zero_page, pmap_unwire,
plus the CPU's view (`pmap_user_access`).  Rule kept: pmap lock before pv-list lock;
pv-first paths (pmap_remove_all) only *try* the pmap lock and retry on a generation
change.  PTE updates are visible at once: there is no TLB (docs/model.md); each is an
atomic store (pte_store, pte_load_clear, atomic_cmpset) made under the pmap lock and
read by the MMU without it, so it is marked `touch(pm, ..., atomic=True)`.
Must not be added: knowledge of objects or maps.

Locking legend: (M) this pmap's lock  (P) the pv-list lock of the mapped page  (C) immutable
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from faultline.kern.vm_page import VmPage, locked_by, vm_page_busied
from faultline.rt import ops
from faultline.rt.context import Tracked, touch
from faultline.rt.sync import (
    Lock,
    kassert,
    mtx_lock,
    mtx_trylock,
    mtx_unlock,
    rw_try_wlock,
    rw_unlock,
    rw_wlock,
)

if TYPE_CHECKING:
    from faultline.kern.vm import Vm

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT


@dataclass(slots=True)
class Pte:
    """A page-table entry: the page, PG_RW, PG_W (wired)."""

    page: VmPage
    writable: bool
    wired: bool = False


@dataclass(eq=False)
class Pmap(Tracked):
    """struct pmap: the page tables of one address space."""

    vm: Vm = locked_by("C")
    name: str = locked_by("C", "")
    lock: Lock = locked_by("C")
    ptes: dict[int, Pte] = locked_by("M", factory=dict)

    def __repr__(self) -> str:
        return f"pmap({self.name})"

    @property
    def fl_key(self) -> tuple[str, str]:
        """Stable name for partial-order reduction."""
        return ("pmap", self.name)


def pmap_create(vm: Vm, name: str) -> Pmap:
    """pmap_pinit: an empty pmap."""
    pm = Pmap(vm=vm, name=name, lock=Lock("pmap", f"pmap.{name}", "mtx", dupok=True))
    vm.pmaps.append(pm)
    return pm


async def _pv_lock_change(vm: Vm, held: Lock | None, m: VmPage) -> Lock:
    """CHANGE_PV_LIST_LOCK_TO_PHYS: switch the one held pv lock to m's, if different."""
    want = vm.pv_list_lock(m)
    if held is not want:
        if held is not None:
            await rw_unlock(held)
        await rw_wlock(want)
    return want


def _pv_remove(pm: Pmap, va: int) -> VmPage:
    # Clear the PTE and the pv entry together (pmap and pv locks held).
    touch(pm, field="ptes", atomic=True)
    pte = pm.ptes.pop(va)
    m = pte.page
    touch(m, field="pv_list")
    m.pv_list.remove((pm, va))
    m.pv_gen += 1
    if not m.pv_list:
        m.writeable = False
    return m


def _pv_insert(pm: Pmap, va: int, m: VmPage, writable: bool, wired: bool) -> None:
    touch(pm, field="ptes", atomic=True)
    touch(m, field="pv_list")
    pm.ptes[va] = Pte(m, writable, wired)
    m.pv_list.append((pm, va))
    m.pv_gen += 1
    if writable:
        m.writeable = True


async def pmap_enter(pm: Pmap, va: int, m: VmPage, writable: bool, wired: bool,
                     object_busied: bool = False) -> None:
    """pmap_enter: map `m` at `va`, replacing any other page there (break before make).
    The page must be busied, or its object busied (soft_fast).  A writable mapping
    needs the page exclusively busied or the object busied (P4)."""
    # soft_fast (object_busied) maps a page it found valid with a racy read in this very
    # step; the page may be xbusied by the thread that validated it, so a plain read of
    # valid here would race with that thread's write (P3 is still a structural check).
    kassert(object_busied or m.valid, f"pmap_enter of invalid {m} at {va:#x} (P3)")
    kassert(object_busied or vm_page_busied(m), f"pmap_enter: {m} not busied")
    kassert(not writable or object_busied or m.busy.xowner is not None,
            f"pmap_enter: writable mapping of {m} that is not xbusied (P4)")
    vm = pm.vm
    await mtx_lock(pm.lock)
    pv: Lock | None = None
    old = pm.ptes.get(va)
    if old is not None and old.page is not m:
        pv = await _pv_lock_change(vm, pv, old.page)
        _pv_remove(pm, va)
        await ops.note("pmap-replace", {"va": va, "old": repr(old.page), "new": repr(m)})
    pv = await _pv_lock_change(vm, pv, m)
    cur = pm.ptes.get(va)
    if cur is not None:                 # same page: update protection and wiring in place
        touch(pm, field="ptes", atomic=True)
        cur.writable, cur.wired = writable, wired or cur.wired
        if writable:
            m.writeable = True
    else:
        _pv_insert(pm, va, m, writable, wired)
    await rw_unlock(pv)
    await mtx_unlock(pm.lock)


async def pmap_remove(pm: Pmap, sva: int, eva: int) -> None:
    """pmap_remove: remove every mapping in [sva, eva)."""
    await mtx_lock(pm.lock)
    pv: Lock | None = None
    for va in sorted(v for v in pm.ptes if sva <= v < eva):
        pv = await _pv_lock_change(pm.vm, pv, pm.ptes[va].page)
        _pv_remove(pm, va)
    if pv is not None:
        await rw_unlock(pv)
    await mtx_unlock(pm.lock)


async def pmap_remove_all(vm: Vm, m: VmPage) -> None:
    """pmap_remove_all: remove every mapping of `m` in every pmap.  Takes m's pv lock
    first, so the pmap locks can only be tried; on failure drop the pv lock, take the
    pmap lock, retake the pv lock and restart if the pv list changed meanwhile."""
    kassert(m.busy.busied() and not m.busy.freed, f"pmap_remove_all: {m} not busied")
    lock = vm.pv_list_lock(m)
    await rw_wlock(lock)
    while m.pv_list:
        pm, va = m.pv_list[0]
        if not await mtx_trylock(pm.lock):
            gen = m.pv_gen
            await rw_unlock(lock)
            await mtx_lock(pm.lock)
            await rw_wlock(lock)
            if gen != m.pv_gen:
                await mtx_unlock(pm.lock)
                continue
        _pv_remove(pm, va)
        await mtx_unlock(pm.lock)
    m.writeable = False
    await rw_unlock(lock)
    await ops.note("pmap-remove-all", repr(m))


async def pmap_protect(pm: Pmap, sva: int, eva: int, prot: int) -> None:
    """pmap_protect: reduce the protection of [sva, eva) to `prot` (VM_PROT_* bits):
    without read access the mappings go (pmap_remove); without write they become
    read-only; more permissive protections are left to later faults."""
    if not prot & 1:                      # VM_PROT_READ
        await pmap_remove(pm, sva, eva)
        return
    if prot & 2:                          # VM_PROT_WRITE: nothing to reduce
        return
    await mtx_lock(pm.lock)
    touch(pm, field="ptes", atomic=True)
    for va in sorted(v for v in pm.ptes if sva <= v < eva):
        pm.ptes[va].writable = False
    await mtx_unlock(pm.lock)


async def pmap_copy(dst: Pmap, src: Pmap, sva: int, eva: int) -> None:
    """pmap_copy (fork): copy src's managed PTEs of [sva, eva) into the empty dst,
    clearing wiring; a read-write PTE stays read-write.  Advisory: a pv lock that
    cannot be taken at once skips that page (the child just faults later)."""
    first, second = (dst, src) if dst.name < src.name else (src, dst)
    await mtx_lock(first.lock)
    await mtx_lock(second.lock)
    for va in sorted(v for v in src.ptes if sva <= v < eva):
        if va in dst.ptes:
            continue
        pte = src.ptes[va]
        lock = dst.vm.pv_list_lock(pte.page)
        if not await rw_try_wlock(lock):
            continue
        _pv_insert(dst, va, pte.page, pte.writable, False)
        await rw_unlock(lock)
    await mtx_unlock(second.lock)
    await mtx_unlock(first.lock)
    await ops.note("pmap-copy", {"dst": dst.name, "src": src.name})


async def pmap_unwire(pm: Pmap, sva: int, eva: int) -> None:
    """pmap_unwire: clear PG_W in [sva, eva)."""
    await mtx_lock(pm.lock)
    touch(pm, field="ptes", atomic=True)
    for va in sorted(v for v in pm.ptes if sva <= v < eva):
        pm.ptes[va].wired = False
    await mtx_unlock(pm.lock)


def pmap_copy_page(src: VmPage, dst: VmPage) -> None:
    """pmap_copy_page: copy the contents (both pages busied by the caller)."""
    dst.content = src.content


def pmap_zero_page(m: VmPage) -> None:
    """pmap_zero_page."""
    m.content = 0


def pmap_page_is_mapped(m: VmPage) -> bool:
    """pmap_page_is_mapped."""
    return bool(m.pv_list)


async def pmap_user_access(pm: Pmap, va: int, write: bool, value: int) -> tuple[bool, int]:
    """The CPU's load or store through `pm` (the MMU walk plus the access, one op).
    Returns (True, value read or written) or (False, 0) for a page fault."""
    def access() -> tuple[bool, int]:
        pte = pm.ptes.get(va & ~(PAGE_SIZE - 1))
        if pte is None:
            return False, 0
        if write and not pte.writable:
            return False, 0
        m = pte.page
        touch(m, write)
        kassert(not m.freed, f"user access through {pm.name} at {va:#x} reached freed {m}")
        if write:
            m.content, m.dirty = value, True
            return True, value
        return True, m.content
    return await ops.atomic(pm, "user " + ("store" if write else "load"), access, write)
