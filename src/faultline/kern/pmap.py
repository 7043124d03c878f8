"""pmap: per-address-space page tables, per-page pv lists and hashed pv-list locks.

What lives here: `Pmap` (va -> PTE), the pv list of each page (every (pmap, va) that maps
it) and the operations of sys/amd64/amd64/pmap.c the VM layer calls: pmap_enter,
pmap_enter_quick, pmap_enter_object, pmap_is_prefaultable, pmap_remove, pmap_remove_all,
pmap_protect, pmap_copy, pmap_copy_page, pmap_zero_page, pmap_unwire, plus the CPU's view
(`pmap_user_access`).  Rules kept: pmap lock before pv-list lock; pv-first paths
(pmap_remove_all) only *try* the pmap lock and retry on a generation change; a new
mapping's pv entry is listed before its PTE is stored, and a replaced PTE is cleared
before its pv entry goes, so under the pmap lock (only) a pv entry may lack its PTE.
PTE updates are visible at once: there is no TLB (docs/model.md); each is an atomic
store (pte_store, pte_load_clear, atomic_cmpset) made under the pmap lock and read by
the MMU without it, so it is marked `touch(pm, ..., atomic=True)`.
Must not be added: knowledge of objects or maps (beyond asserting the object lock that
pmap_enter_quick's callers hold).

Locking legend: (M) this pmap's lock  (P) the pv-list lock of the mapped page  (C) immutable
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from faultline.kern.vm_page import VmPage, locked_by, vm_page_busied
from faultline.rt import ops
from faultline.rt.context import Tracked, atomic_store, touch
from faultline.rt.sync import (
    Lock,
    kassert,
    lock_assert,
    mtx_lock,
    mtx_trylock,
    mtx_unlock,
    rw_unlock,
    rw_wlock,
)

if TYPE_CHECKING:
    from faultline.kern.vm import Vm

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PMAP_LOCK_CLASS = "pmap"           # WITNESS class of every pmap's lock


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
    pm = Pmap(vm=vm, name=name, lock=Lock(PMAP_LOCK_CLASS, f"pmap.{name}", "mtx", dupok=True))
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


def _pte_clear(pm: Pmap, va: int) -> Pte:
    """pte_load_clear: take the PTE out (pmap lock held).  The MMU faults from here on,
    whatever the pv list still says."""
    touch(pm, field="ptes", atomic=True)
    return pm.ptes.pop(va)


def _pte_store(pm: Pmap, va: int, pte: Pte) -> None:
    """pte_store: publish a PTE (pmap lock held; its pv entry is already listed)."""
    touch(pm, field="ptes", atomic=True)
    pm.ptes[va] = pte


def _pv_list_remove(pm: Pmap, va: int, m: VmPage) -> None:
    """pmap_pvh_free: drop (pm, va) from m's pv list (pmap and m's pv lock held).  The
    last mapping gone, m is no longer writeable (vm_page_aflag_clear PGA_WRITEABLE)."""
    touch(m, field="pv_list")
    m.pv_list.remove((pm, va))
    m.pv_gen += 1
    if not m.pv_list:
        atomic_store(m, "writeable", False)           # vm_page_aflag_clear


def _pv_list_insert(pm: Pmap, va: int, m: VmPage) -> None:
    """TAILQ_INSERT_TAIL on m's pv list (pmap and m's pv lock held)."""
    touch(m, field="pv_list")
    m.pv_list.append((pm, va))
    m.pv_gen += 1


def _pv_remove(pm: Pmap, va: int) -> VmPage:
    # pmap_remove_pte: clear the PTE and its pv entry in one step (pmap and pv locks
    # held), for the paths that need no window between the two.
    m = _pte_clear(pm, va).page
    _pv_list_remove(pm, va, m)
    return m


async def get_pv_entry(pm: Pmap) -> bool:
    """get_pv_entry(pmap, NULL): a pv entry without reclaiming other pmaps' entries.
    The model keeps no spare pv chunks, so every entry needs a fresh page: it fails iff
    the scenario limits memory and no page is free now (nothing is taken from the
    count: the chunk page is not modelled).  Unlimited runs read nothing."""
    dom = pm.vm.domain
    if not dom.limited:
        return True
    return await ops.racy_load(dom, "free_count") > 0


async def pmap_try_insert_pv_entry(pm: Pmap, va: int, m: VmPage,
                                   held: Lock | None) -> tuple[bool, Lock | None]:
    """pmap_try_insert_pv_entry: list (pm, va) on m's pv list unless no pv entry can be
    had without reclaim (get_pv_entry).  m's pv lock is taken blocking
    (CHANGE_PV_LIST_LOCK_TO_VM_PAGE) and kept for the caller; returns whether the entry
    was inserted and the pv lock now held."""
    lock_assert(pm.lock, "held")
    if not await get_pv_entry(pm):
        return False, held
    held = await _pv_lock_change(pm.vm, held, m)
    _pv_list_insert(pm, va, m)
    await ops.cost("pv entry", line=m)
    return True, held


async def pmap_enter(pm: Pmap, va: int, m: VmPage, writable: bool, wired: bool,
                     object_busied: bool = False) -> None:
    """pmap_enter: map `m` at `va`, replacing any other page there.  The page must be
    busied, or its object busied (soft_fast).  A writable mapping needs the page
    exclusively busied or the object busied (P4).

    The same page already mapped: protection and wiring change in place, under the
    pmap lock alone.  A different page (break before make, as amd64): the old PTE is
    cleared first, so no thread of this pmap can reach the old page while its pv
    entry goes; then the new page's pv entry is listed before its PTE is stored, so
    pmap_remove_all, which starts from the pv list, finds every mapping it must go."""
    # soft_fast (object_busied) maps a page it found valid with a racy read in this very
    # step; the page may be xbusied by the thread that validated it, so a plain read of
    # valid here would race with that thread's write (P3 is still a structural check).
    kassert(object_busied or m.valid, f"pmap_enter of invalid {m} at {va:#x} (P3)")
    kassert(object_busied or vm_page_busied(m), f"pmap_enter: {m} not busied")
    kassert(not writable or object_busied or m.busy.xowner is not None,
            f"pmap_enter: writable mapping of {m} that is not xbusied (P4)")
    vm = pm.vm
    await mtx_lock(pm.lock)
    old = pm.ptes.get(va)
    if old is not None and old.page is m:
        _pmap_enter_update(pm, old, writable, wired)
        await mtx_unlock(pm.lock)
        return
    pv: Lock | None = None
    if old is not None:
        _pte_clear(pm, va)
        pv = await _pv_lock_change(vm, pv, old.page)   # CHANGE_PV_LIST_LOCK_TO_PHYS
        _pv_list_remove(pm, va, old.page)
        await ops.cost("pv entry", line=old.page)
        await ops.note("pmap-replace", {"va": va, "old": repr(old.page), "new": repr(m)})
    pv = await _pv_lock_change(vm, pv, m)
    _pv_list_insert(pm, va, m)
    await ops.cost("pv entry", line=m)
    if writable:
        atomic_store(m, "writeable", True)            # vm_page_aflag_set PGA_WRITEABLE
    _pte_store(pm, va, Pte(m, writable, wired))
    await rw_unlock(pv)
    await mtx_unlock(pm.lock)


def _pmap_enter_update(pm: Pmap, pte: Pte, writable: bool, wired: bool) -> None:
    # pmap_enter's "validate" path for the page already mapped: no pv entry changes, so
    # no pv lock (PGA_WRITEABLE is set atomically, as everywhere).  PG_W follows
    # PMAP_ENTER_WIRED; pte_load_store.
    if writable:
        atomic_store(pte.page, "writeable", True)     # vm_page_aflag_set PGA_WRITEABLE
    touch(pm, field="ptes", atomic=True)
    pte.writable, pte.wired = writable, wired


async def _pmap_enter_quick_locked(pm: Pmap, va: int, m: VmPage,
                                   held: Lock | None) -> tuple[bool, Lock | None]:
    """pmap_enter_quick_locked: map `m` read-only and unwired at `va` unless something
    is mapped there or no pv entry can be had; either way nothing is replaced and
    nothing waits for memory.  Returns whether it mapped and the pv lock now held."""
    lock_assert(pm.lock, "held")
    if va in pm.ptes:
        return False, held
    ok, held = await pmap_try_insert_pv_entry(pm, va, m, held)
    if ok:
        _pte_store(pm, va, Pte(m, False, False))
    return ok, held


def _assert_object_locked(m: VmPage) -> None:
    # The callers (vm_fault_prefault, vm_map_pmap_enter) hold the page's object lock:
    # it is what keeps the page valid and in its object while it is mapped unbusied.
    if m.object is not None:
        lock_assert(m.object.lock, "held")


async def pmap_enter_quick(pm: Pmap, va: int, m: VmPage) -> None:
    """pmap_enter_quick: a best-effort read-only mapping for prefault.  Takes no busy
    and checks no validity (the callers checked it under the object lock, which they
    still hold); an existing PTE wins, and a pv-entry shortage just leaves va unmapped
    for a later fault."""
    _assert_object_locked(m)
    await mtx_lock(pm.lock)
    mapped, pv = await _pmap_enter_quick_locked(pm, va, m, None)
    if pv is not None:
        await rw_unlock(pv)
    await mtx_unlock(pm.lock)
    if mapped:
        await ops.note("pmap-enter-quick", {"pmap": pm.name, "va": va, "page": repr(m)})


async def pmap_enter_object(pm: Pmap, pages: list[tuple[int, VmPage]]) -> None:
    """pmap_enter_object (vm_map_pmap_enter, MAP_PREFAULT at exec): pmap_enter_quick
    for each (va, page) in address order under one hold of the pmap lock; one pv lock
    is kept across pages and switched when a page hashes to another."""
    await mtx_lock(pm.lock)
    pv: Lock | None = None
    for va, m in sorted(pages, key=lambda page: page[0]):
        _assert_object_locked(m)
        _, pv = await _pmap_enter_quick_locked(pm, va, m, pv)
    if pv is not None:
        await rw_unlock(pv)
    await mtx_unlock(pm.lock)


async def pmap_is_prefaultable(pm: Pmap, va: int) -> bool:
    """pmap_is_prefaultable: nothing is mapped at va (amd64 asks that the page-table
    page exist too; the model has none).  amd64 reads the PTE under the pmap lock."""
    await mtx_lock(pm.lock)
    free = va not in pm.ptes
    await mtx_unlock(pm.lock)
    return free


async def pmap_remove(pm: Pmap, sva: int, eva: int) -> None:
    """pmap_remove: remove every mapping in [sva, eva)."""
    await mtx_lock(pm.lock)
    pv: Lock | None = None
    for va in sorted(v for v in pm.ptes if sva <= v < eva):
        pv = await _pv_lock_change(pm.vm, pv, pm.ptes[va].page)
        await ops.cost("pv entry", line=_pv_remove(pm, va))
    if pv is not None:
        await rw_unlock(pv)
    await mtx_unlock(pm.lock)


async def _pv_pmap_lock(lock: Lock, m: VmPage, pm: Pmap) -> bool:
    """With m's pv lock held, take pm's lock.  The pv lock comes first, so pm's can only
    be tried; on failure drop the pv lock, take pm's, retake the pv lock.  False (only
    the pv lock held) if m's pv list changed meanwhile: the caller starts over."""
    if await mtx_trylock(pm.lock):
        return True
    gen = m.pv_gen
    await rw_unlock(lock)
    await mtx_lock(pm.lock)
    await rw_wlock(lock)
    if gen != m.pv_gen:
        await mtx_unlock(pm.lock)
        return False
    return True


async def pmap_remove_all(vm: Vm, m: VmPage) -> None:
    """pmap_remove_all: remove every mapping of `m` in every pmap, each under its
    pmap's lock taken inside m's pv lock (_pv_pmap_lock)."""
    kassert(m.busy.busied() and not m.busy.freed, f"pmap_remove_all: {m} not busied")
    lock = vm.pv_list_lock(m)
    await rw_wlock(lock)
    while m.pv_list:
        pm, va = m.pv_list[0]
        if not await _pv_pmap_lock(lock, m, pm):
            continue
        _pv_remove(pm, va)
        await ops.cost("pv entry", line=m)
        await mtx_unlock(pm.lock)
    atomic_store(m, "writeable", False)               # vm_page_aflag_clear
    await rw_unlock(lock)
    await ops.note("pmap-remove-all", repr(m))


async def pmap_remove_write(vm: Vm, m: VmPage) -> None:
    """pmap_remove_write: make every mapping of `m` read-only (the caller holds m
    xbusied, so no write fault can make one writable again meanwhile), each under its
    pmap's lock as pmap_remove_all takes it.  amd64 moves PG_M into m->dirty here;
    the model's stores dirty the page as they happen (pmap_user_access)."""
    kassert(m.busy.xowner is not None and not m.busy.freed,
            f"pmap_remove_write: {m} not exclusively busied")
    lock = vm.pv_list_lock(m)
    await rw_wlock(lock)
    todo = list(m.pv_list)
    while todo:
        pm, va = todo[0]
        if not await _pv_pmap_lock(lock, m, pm):
            todo = list(m.pv_list)
            continue
        todo.pop(0)
        touch(pm, field="ptes", atomic=True)
        pte = pm.ptes.get(va)
        if pte is not None and pte.page is m:
            pte.writable = False
        await mtx_unlock(pm.lock)
    atomic_store(m, "writeable", False)               # vm_page_aflag_clear
    await rw_unlock(lock)
    await ops.note("pmap-remove-write", repr(m))


async def pmap_protect(pm: Pmap, sva: int, eva: int, prot: int) -> None:
    """pmap_protect: reduce the protection of [sva, eva) to `prot` (VM_PROT_* bits).
    As amd64: VM_PROT_NONE removes the mappings (pmap_remove); a protection with write
    leaves them alone (amd64 would only set PG_NX, and the model has no execute bit);
    anything else, read or execute alone, makes them read-only."""
    if prot == 0:                         # VM_PROT_NONE
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
    """pmap_copy (fork): copy src's managed PTEs of [sva, eva) into dst, clearing
    wiring; a read-write PTE stays read-write (the COW entry's later pmap_protect or
    fault handles it).  Advisory, as amd64: each page's pv lock is taken blocking and
    kept while the next page hashes to it, but the first destination slot already in
    use, or the first pv entry that cannot be had without reclaim, abandons the rest of
    the range (goto out): the child faults those pages in later."""
    first, second = (dst, src) if dst.name < src.name else (src, dst)
    await mtx_lock(first.lock)
    await mtx_lock(second.lock)
    pv: Lock | None = None
    abandoned: int | None = None
    for va in sorted(v for v in src.ptes if sva <= v < eva):
        pte = src.ptes[va]
        ok = va not in dst.ptes
        if ok:
            ok, pv = await pmap_try_insert_pv_entry(dst, va, pte.page, pv)
        if not ok:
            abandoned = va
            break
        _pte_store(dst, va, Pte(pte.page, pte.writable, False))
    if pv is not None:
        await rw_unlock(pv)
    await mtx_unlock(second.lock)
    await mtx_unlock(first.lock)
    note: dict[str, object] = {"dst": dst.name, "src": src.name}
    if abandoned is not None:
        note["abandoned"] = abandoned
    await ops.note("pmap-copy", note)


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
