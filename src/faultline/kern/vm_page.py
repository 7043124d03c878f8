"""vm_page: physical pages, their busy word, validity, identity and wiring.

What lives here: `VmPage` and the page-level operations of sys/vm/vm_page.c that the
fault path uses (alloc, lookup, insert/remove/rename/replace, free, the busy
primitives and vm_page_busy_sleep).  Rule kept: identity changes need the object write
lock and the page xbusied; busy is only ever *tried*; waiting is vm_page_busy_sleep.
Must not be added: mapping logic (pmap) or chain walking (vm_fault, vm_object).

Locking legend (sys/vm/vm_page.h letters, recorded as field metadata):
  (A) atomic / racy   (B) page busy   (C) immutable   (M) pmap layer
  (O) owning object lock   (P) pv-list lock (hashed by physical address)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from faultline.rt import ops
from faultline.rt.context import Tracked, atomic_store, curtid, touch
from faultline.rt.sync import BusyWord, blockcount_sleep, kassert, lock_assert

if TYPE_CHECKING:
    from faultline.kern.vm import VmDomain
    from faultline.kern.vm_object import VmObject

VM_ALLOC_SBUSY = 0x1       # busy_sleep: only wait for an exclusive busy
VM_ALLOC_IGN_SBUSY = 0x2


def locked_by(letters: str, default: Any = None, factory: Any = None) -> Any:
    """A dataclass field annotated with the locks that protect it (STYLE rule 1)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"lock": letters})
    return field(default=default, metadata={"lock": letters})


@dataclass(eq=False, slots=True)
class VmPage(Tracked):
    """struct vm_page, reduced to what the fault path reads and writes."""

    index: int = locked_by("C", 0)                 # allocation order (names the page)
    phys: int = locked_by("C", 0)                  # physical frame number
    busy: BusyWord = locked_by("A", None)          # busy_lock
    object: VmObject | None = locked_by("O,B")     # identity: both to change
    pindex: int = locked_by("O,B", 0)
    valid: bool = locked_by("O,B", False)          # VM_PAGE_BITS_ALL or nothing
    dirty: bool = locked_by("M,B", False)
    wire_count: int = locked_by("A", 0)
    content: int = locked_by("B", 0)               # the page's data, one integer
    freed: bool = locked_by("O,B", False)
    pv_list: list[tuple[Any, int]] = locked_by("P", factory=list)  # (pmap, va)
    pv_gen: int = locked_by("P", 0)
    writeable: bool = locked_by("A", False)        # PGA_WRITEABLE
    vm: Any = locked_by("C")                       # the Vm whose vm_phys it came from

    def __repr__(self) -> str:
        return f"page{self.index}"

    @property
    def fl_key(self) -> tuple[str, int]:
        """Stable name for partial-order reduction (allocation order)."""
        return ("page", self.index)

    @property
    def pa(self) -> int:
        """Physical address (4 KiB frames)."""
        return self.phys << 12


def vm_page_all_valid(m: VmPage) -> bool:
    """vm_page_all_valid."""
    return m.valid


def vm_page_busied(m: VmPage) -> bool:
    """vm_page_busied (a plain read: callers hold a lock that makes it meaningful)."""
    return m.busy.busied()


def vm_page_xbusied(m: VmPage) -> bool:
    """vm_page_xbusied."""
    return m.busy.xowner is not None


def vm_page_assert_xbusied(m: VmPage) -> None:
    """vm_page_assert_xbusied: exclusively busied by the current thread."""
    kassert(m.busy.xowner == curtid(), f"{m} not xbusied by us ({m.busy.state()})")


def vm_page_assert_busied(m: VmPage) -> None:
    """vm_page_assert_busied."""
    kassert(m.busy.busied() and not m.busy.freed, f"{m} not busied ({m.busy.state()})")


# ---------------------------------------------------------------- identity

def vm_page_lookup(obj: VmObject, pindex: int) -> VmPage | None:
    """vm_page_lookup: the resident page of `obj` at `pindex` (object locked)."""
    lock_assert(obj.lock, "held")
    return obj.pages.get(pindex)


async def vm_page_alloc(obj: VmObject, pindex: int) -> VmPage | None:
    """vm_page_alloc: a new invalid page, xbusied by us, inserted at (obj, pindex);
    None when the scenario limits memory and no page is free (vm_domain_allocate)."""
    lock_assert(obj.lock, "x")
    kassert(pindex not in obj.pages, f"vm_page_alloc: {obj}[{pindex}] already resident")
    vm = obj.vm
    if vm.domain.limited and not await vm_domain_allocate(vm.domain):
        await ops.note("page-alloc-failed", {"object": repr(obj), "pindex": pindex})
        return None
    m = vm.new_page(obj, pindex)
    m.busy.xowner = curtid()       # not yet visible: a plain store is enough
    vm_page_insert(m, obj, pindex)
    return m


async def vm_domain_allocate(dom: VmDomain) -> bool:
    """vm_domain_allocate: take one page from the free count, atomically; False if
    none is left."""
    def take() -> bool:
        if dom.free_count <= 0:
            return False
        dom.free_count -= 1
        return True
    return await ops.atomic(dom, "vm_domain_allocate", take)


async def vm_domain_freecnt_inc(dom: VmDomain) -> None:
    """vm_domain_freecnt_inc: give a page back; the first page after none were free
    wakes the faults sleeping in vm_waitpfault."""
    if await ops.atomic_add(dom, "free_count", 1) == 0:
        await ops.wakeup(dom)


async def vm_waitpfault(dom: VmDomain) -> None:
    """vm_waitpfault: sleep ("pfault") while no page is free.  FreeBSD's sleep times
    out and, after vm_pfault_oom_attempts, the OOM killer frees memory; neither is
    modelled, so a scenario in which nothing ever frees a page ends in a deadlock
    report naming "pfault" (docs/model.md)."""
    await ops.sleep(dom, "pfault", None, lambda: dom.free_count <= 0)


def vm_page_insert(m: VmPage, obj: VmObject, pindex: int) -> None:
    """vm_page_insert: object write-locked, page xbusied."""
    lock_assert(obj.lock, "x")
    vm_page_assert_xbusied(m)
    kassert(pindex not in obj.pages, f"vm_page_insert: {obj}[{pindex}] is already "
            f"resident ({obj.pages.get(pindex)!r})")
    m.object, m.pindex = obj, pindex
    touch(obj, field="pages")
    obj.pages[pindex] = m


def vm_page_remove(m: VmPage) -> None:
    """vm_page_remove_xbusy: take the page out of its object (object wlocked, xbusied)."""
    obj = m.object
    kassert(obj is not None, f"{m}: remove of a page without object")
    lock_assert(obj.lock, "x")
    vm_page_assert_xbusied(m)
    touch(obj, field="pages")
    del obj.pages[m.pindex]
    m.object = None


def vm_page_rename(m: VmPage, new_obj: VmObject, new_pindex: int) -> None:
    """vm_page_rename: move an xbusied page between two write-locked objects; dirties it."""
    old = m.object
    kassert(old is not None, f"{m}: rename of a page without object")
    lock_assert(old.lock, "x")
    lock_assert(new_obj.lock, "x")
    vm_page_remove(m)
    vm_page_insert(m, new_obj, new_pindex)
    vm_page_dirty(m)


async def vm_page_replace(m: VmPage, obj: VmObject, pindex: int, mold: VmPage) -> None:
    """vm_page_replace: `m` takes `mold`'s slot; `mold` loses its identity and is freed."""
    vm_page_assert_xbusied(mold)
    kassert(mold.object is obj and mold.pindex == pindex, f"replace: {mold} not at slot")
    vm_page_remove(mold)
    vm_page_insert(m, obj, pindex)
    await vm_page_free_unowned(mold)


async def vm_page_free(m: VmPage) -> None:
    """vm_page_free: remove an xbusied page from its object and free it.
    KASSERT "freeing mapped page" (P5): a freed page must have no mapping."""
    kassert(not m.pv_list, f"freeing mapped page {m} (mapped at {m.pv_list})")
    if m.object is not None:
        vm_page_remove(m)
    await vm_page_free_unowned(m)


async def vm_page_free_unowned(m: VmPage) -> None:
    """vm_page_free_toq after the page left its object: busy word becomes VPB_FREED."""
    kassert(not m.pv_list, f"freeing mapped page {m} (mapped at {m.pv_list})")
    kassert(m.wire_count == 0, f"freeing wired page {m}")
    await ops.busy(m.busy, "free")
    m.freed, m.valid = True, False          # in the same step as VPB_FREED
    await ops.note("page-free", repr(m))
    dom = _domain_of(m)
    if dom is not None:
        await vm_domain_freecnt_inc(dom)


def vm_page_valid(m: VmPage) -> None:
    """vm_page_valid: invalid -> valid needs only the busy lock."""
    vm_page_assert_busied(m)
    m.valid = True


def vm_page_invalid(m: VmPage) -> None:
    """vm_page_invalid: valid -> invalid needs the object write lock and the busy, and
    the page must be unmapped first (a mapping of an invalid page breaks P3).  So while
    a thread holds the object lock, even read-locked, a valid page stays valid."""
    vm_page_assert_busied(m)
    assert m.object is not None
    lock_assert(m.object.lock, "x")
    kassert(not m.pv_list, f"vm_page_invalid: {m} is mapped at {m.pv_list}")
    m.valid = False


def vm_page_undirty(m: VmPage) -> None:
    """vm_page_undirty: the busy holder forgets the page's modifications."""
    vm_page_assert_busied(m)
    m.dirty = False


def vm_page_dirty(m: VmPage) -> None:
    """vm_page_dirty / vm_page_set_dirty: an atomic swap of the dirty bits
    (vm_page_bits_swap), since soft_fast dirties a page it has not busied and user
    stores set them (docs/model.md S10)."""
    atomic_store(m, "dirty", True)


async def vm_page_wire(m: VmPage) -> None:
    """vm_page_wire: busy or object lock held by the caller."""
    await ops.atomic_add_int(m, "wire_count", 1)


async def vm_page_unwire(m: VmPage) -> None:
    """vm_page_unwire."""
    old = await ops.atomic_add(m, "wire_count", -1)
    kassert(old > 0, f"vm_page_unwire: {m} was not wired")


def _domain_of(m: VmPage) -> VmDomain | None:
    # The free count a freed page returns to, when the scenario limits memory.
    vm = m.vm
    return vm.domain if vm is not None and vm.domain.limited else None


# ---------------------------------------------------------------- busy

def _gate(m: VmPage) -> Any:
    # The object-busy blockcount of the page's object, read under its object lock.
    return m.object.busy if m.object is not None else None


async def vm_page_tryxbusy(m: VmPage) -> bool:
    """vm_page_tryxbusy: fails if busied in any way, freed, or the object is busied."""
    return await ops.busy(m.busy, "tryx", _gate(m))


async def vm_page_trysbusy(m: VmPage) -> bool:
    """vm_page_trysbusy: fails if xbusied, freed, or the object is busied."""
    return await ops.busy(m.busy, "trys", _gate(m))


async def vm_page_xunbusy(m: VmPage) -> None:
    """vm_page_xunbusy (and _hard: wake the waiters)."""
    await ops.busy(m.busy, "xunbusy")


async def vm_page_sunbusy(m: VmPage) -> None:
    """vm_page_sunbusy: the last sharer wakes the waiters."""
    await ops.busy(m.busy, "sunbusy")


async def vm_page_busy_downgrade(m: VmPage) -> None:
    """vm_page_busy_downgrade: xbusy -> one sharer."""
    await ops.busy(m.busy, "downgrade")


async def vm_page_busy_tryupgrade(m: VmPage) -> bool:
    """vm_page_busy_tryupgrade: single sharer -> xbusy."""
    return await ops.busy(m.busy, "tryupgrade")


async def vm_page_unbusy(m: VmPage) -> None:
    """Release whichever busy we hold (vm_fault_page_release's xunbusy-or-sunbusy)."""
    if m.busy.xowner == curtid():
        await vm_page_xunbusy(m)
    else:
        await vm_page_sunbusy(m)


async def vm_page_busy_sleep(m: VmPage, wmesg: str, allocflags: int) -> bool:
    """vm_page_busy_sleep / _vm_page_busy_sleep.

    Object locked on entry.  Returns True iff it slept, and then the object lock was
    dropped (not reacquired); False means it did not sleep and the lock is still held.
    With VM_ALLOC_SBUSY the caller only waits for an exclusive busy.  May sleep."""
    obj = m.object
    kassert(obj is not None, f"busy_sleep on {m} without object")
    lock_assert(obj.lock, "held")
    # vm_object_busied: the count only grows under the object lock we hold, but it
    # drains without it, so this read is racy; blockcount_sleep re-checks atomically.
    if await ops.racy_load(obj.busy, "count"):
        # The object is busied (soft_fast in progress): wait for it to drain.
        if not await vm_object_busy_wait_locked(obj, wmesg):
            await ops.release(obj.lock)
        return True
    xsleep = bool(allocflags & (VM_ALLOC_SBUSY | VM_ALLOC_IGN_SBUSY))
    pindex = m.pindex

    def must_sleep() -> bool:
        # Under the sleepqueue lock: re-read the word and the identity.
        w = m.busy
        if not w.busied() or w.freed or (xsleep and w.xowner is None):
            return False
        if m.object is not obj or m.pindex != pindex:
            return False
        obj.vm.policy.vm_page_busy_sleep_set_waiters(w)
        return True

    slept = await ops.sleep(m.busy, wmesg, obj.lock, must_sleep)
    await ops.note("busy-sleep" if slept else "busy-nosleep", wmesg)
    return slept


async def vm_object_busy_wait_locked(obj: VmObject, wmesg: str) -> bool:
    """vm_object_busy_wait with the object lock as interlock; True iff it slept."""
    return await blockcount_sleep(obj.busy, wmesg, obj.lock)
