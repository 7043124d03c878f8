"""Busy policies for soft faults: the one decision D51474 changed, as overridable predicates.

What lives here: `Policy` (the questions vm_fault asks), `XbusyPolicy` (before D51474:
every found page is exclusive-busied) and `SbusyPolicy` (D51474 as landed).  Rule kept:
vm_fault never branches on a policy's name; it asks the policy a question named after
the FreeBSD condition.  Seeded bugs (kern.mutants) subclass these and override one
answer, with a docstring naming the race they reintroduce.  Must not be added: fault
mechanics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from faultline.kern.vm_object import OBJ_ONEMAPPING, VmObject
from faultline.kern.vm_page import VmPage, vm_page_all_valid, vm_page_xbusied
from faultline.rt import ops
from faultline.rt.sync import BusyWord, kassert

if TYPE_CHECKING:
    from faultline.kern.vm_fault import FaultState


class Policy:
    """The decisions of the fault path that a policy may answer differently."""

    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""

    async def vm_fault_object_may_sbusy(self, fs: FaultState) -> bool:
        """vm_fault_object: may the found page be only shared-busied?"""
        raise NotImplementedError

    def vm_fault_object_sbusy_recheck(self, fs: FaultState) -> bool:
        """vm_fault_object: with the sbusy held, are the racily checked conditions still
        true?  Validity cannot shrink under the object lock; is_read and might_be_cow
        are the fault's own state.  (The rename clause is re-checked in vm_fault_cow.)"""
        from faultline.kern.vm_fault import vm_fault_is_read, vm_fault_might_be_cow
        assert fs.m is not None
        return vm_page_all_valid(fs.m) and (vm_fault_is_read(fs) or vm_fault_might_be_cow(fs))

    async def vm_fault_cow_must_remove_all(self, fs: FaultState, m_cow: VmPage) -> bool:
        """vm_fault_cow, copy path: must every mapping of m_cow be shot down?  Yes unless
        first_object is ONEMAPPING.  The flag is read racily: if it is set after this
        read we only shoot down needlessly; if it is cleared after it, a new sharer of
        first_object cannot map m_cow for this index while first_m is xbusied (parallel
        faults on it must wait), and our own old mapping is replaced by pmap_enter."""
        flags = await ops.racy_load(fs.first_object, "flags")
        return not flags & OBJ_ONEMAPPING

    async def vm_fault_prefault_may_map(self, m: VmPage) -> bool:
        """vm_fault_prefault: may the page its walk stopped at be mapped read-only,
        unbusied?  Only if fully valid: its validity cannot shrink under the object
        read lock the walk holds, and an invalid page (a fault's placeholder) has no
        contents yet.  The valid bits are read racily: a pager may validate the page
        under its busy meanwhile."""
        return bool(await ops.racy_load(m, "valid"))

    def vm_fault_cow_may_rename(self, fs: FaultState) -> bool:
        """vm_fault_cow: only an exclusively busied source page may change identity;
        other sbusy holders rely on it."""
        assert fs.m is not None
        return vm_page_xbusied(fs.m)

    def vm_fault_cow_source_is_backing(self, fs: FaultState) -> bool:
        """vm_fault_cow, with first_object write-locked: is the source object first_object's
        immediate backing object?  "We don't chase down the shadow chain": a page two
        levels down is still seen through the middle object by its other shadows, even
        when its own object has one reference (reference 4, 5.4 item 2)."""
        assert fs.first_object is not None
        return fs.object is fs.first_object.backing_object

    async def vm_fault_cow_rename_recheck(self, fs: FaultState) -> bool:
        """vm_fault_cow, with first_object and fs.object write-locked: is the source
        object still private to first_object?  The first check was racy; under both
        write locks the counts can only change once they are 1/1 (reference 5.4 item 1)."""
        from faultline.kern.vm_fault import vm_fault_can_cow_rename
        return await vm_fault_can_cow_rename(fs)

    async def vm_fault_cow_keep_source(self, fs: FaultState, m: VmPage) -> None:
        """vm_fault_cow, copy path: the source stays busied (x or s) in fs.m_cow until
        the fault ends, holding off collapse and bypass while the copy is half-done."""
        fs.m_cow = m

    async def vm_fault_retry_lookup(self, fs: FaultState) -> str:
        """RetryFault: look the address up in the map again (vm_fault_lookup), also
        after a vmpfw sleep: the map, the entry and its objects may have changed
        while the fault held nothing."""
        from faultline.kern.vm_fault import vm_fault_lookup
        return await vm_fault_lookup(fs)

    async def vm_fault_release_m_cow(self, fs: FaultState) -> None:
        """vm_fault_deallocate: drop the COW source's busy, at the end of the fault."""
        from faultline.kern.vm_fault import vm_fault_page_release
        await vm_fault_page_release(fs, "m_cow")

    async def vm_fault_found_before_enter(self, fs: FaultState) -> None:
        """found:, just before pmap_enter: nothing.  first_m (the top object's xbusied
        placeholder of a fault below it) is kept until vm_fault_deallocate, after the
        mapping is made: that is what orders parallel faults on the same address
        (reference 5.2)."""

    def vm_fault_assert_first_m(self, fs: FaultState) -> None:
        """a38483fa2b3a "vm_fault: assert that first_m is xbusy": below the top object,
        first_m is xbusied for the duration of the fault."""
        from faultline.kern.vm_fault import vm_fault_might_be_cow
        kassert(not vm_fault_might_be_cow(fs) or (fs.first_m is not None
                                                  and vm_page_xbusied(fs.first_m)),
                "first_m must be xbusy while the fault is below the top object "
                "(a38483fa2b3a)")


    def vm_fault_soft_fast_where(self, fs: FaultState) -> tuple[VmObject, int]:
        """vm_fault_soft_fast: where the unlocked lookup looks -- first_object only.  A
        page below it may be shadowed by a fault in flight (its placeholder first_m),
        and soft_fast busies nothing but first_object (reference 5.1 item 4)."""
        assert fs.first_object is not None
        return fs.first_object, fs.first_pindex

    async def vm_fault_before_cow(self, fs: FaultState) -> None:
        """found:, before vm_fault_cow on the soft path: nothing.  The map stays
        read-locked from the lookup through vm_fault_cow and pmap_enter, so a fork
        (which needs it write-locked) cannot share first_object and copy our PTE of
        the source between the racy ONEMAPPING read and pmap_enter (reference 5.3)."""

    async def vm_fault_cow_copy_done(self, fs: FaultState, copy: VmPage) -> None:
        """vm_fault_cow, copy path: nothing.  The copy stays invalid until found:, after
        the relookup (D49758): a fault that restarts leaves only an invalid page in
        first_object, which shadows nothing, so a collapse renames the source instead of
        freeing it while it may still be mapped (reference 5.1 item 7, 5.4 item 4)."""

    def vm_fault_assert_copy_invalid(self, fs: FaultState, copy: VmPage) -> None:
        """found:: the COW copy is validated only here."""
        kassert(not copy.valid, f"COW copy {copy} already valid before relookup")

    def vm_fault_relookup_same_page(self, fs: FaultState, obj: VmObject | None,
                                    pindex: int) -> bool:
        """vm_fault_relookup: the changed map may go on only if the entry still maps
        (first_object, first_pindex); else the fault's page is not the address's page
        any more and it restarts (reference 5.4 item 2)."""
        return obj is fs.first_object and pindex == fs.first_pindex

    async def vm_fault_deallocate_reference_first(self, fs: FaultState) -> bool:
        """vm_fault_deallocate: drop the fault's first_object reference before the busies?
        No: the deallocation may collapse or terminate the object, which sleep on busy
        pages and on the paging count -- ours too -- so it comes after every busy and pip
        is released (reference 5.4 item 5)."""
        return False

    async def vm_object_collapse_scan_busy_parent(self, obj: VmObject, p: VmPage,
                                                  pp: VmPage) -> None:
        """vm_object_collapse_scan: the parent's page pp at backing page p's index is
        busy -- a fault's placeholder, or a page being paged in -- and maybe not yet
        valid, so nobody can tell whether it shadows p: unbusy p, sleep until pp's owner
        is done and rescan (reference 5.4 item 3).  Both objects write-locked."""
        from faultline.kern.vm_object import vm_object_collapse_scan_wait
        from faultline.kern.vm_page import vm_page_xunbusy
        await vm_page_xunbusy(p)
        await vm_object_collapse_scan_wait(obj, pp)

    def vm_page_busy_sleep_set_waiters(self, w: BusyWord) -> None:
        """vm_page_busy_sleep: flag VPB_BIT_WAITERS (under the sleepqueue lock, in the
        same step as the decision to sleep), so that the releaser wakes us
        (reference 5.5)."""
        w.waiters = True


class XbusyPolicy(Policy):
    """Before D51474: every page found by a fault is exclusive-busied."""

    name = "xbusy"
    description = "before D51474: every found page is exclusive-busied"

    async def vm_fault_object_may_sbusy(self, fs: FaultState) -> bool:
        """Never."""
        return False


class SbusyPolicy(Policy):
    """D51474 as landed: a valid page that this fault will neither map writable nor
    rename is only shared-busied."""

    name = "sbusy"
    description = "D51474: share-busy valid pages that will not be renamed for COW"

    async def vm_fault_object_may_sbusy(self, fs: FaultState) -> bool:
        """The condition of vm_fault_object(), clause by clause."""
        from faultline.kern.vm_fault import (
            vm_fault_can_cow_rename,
            vm_fault_is_read,
            vm_fault_might_be_cow,
        )
        assert fs.m is not None
        # The page is fully valid: no pager I/O, so nothing to validate under xbusy.
        # Racy: invalid -> valid needs only the busy, which we do not hold yet.
        if not await ops.racy_load(fs.m, "valid"):
            return False
        # The mapping cannot be writable and no copy is asked for, or the page lives
        # below the top object, where this fault never maps it writable.
        if not (vm_fault_is_read(fs) or vm_fault_might_be_cow(fs)):
            return False
        # It is not a rename candidate: renames move pages one level up only.  Both
        # reads are racy; vm_fault_cow re-checks under both object write locks and
        # refuses to rename a page that is not xbusied.
        if not await vm_fault_can_cow_rename(fs):
            return True
        return fs.object is not await ops.racy_load(fs.first_object, "backing_object")


POLICIES: dict[str, type[Policy]] = {"xbusy": XbusyPolicy, "sbusy": SbusyPolicy}


def policy_named(name: str) -> Policy:
    """The policy called `name`, landed or seeded (kern.mutants); KeyError lists them."""
    known = all_policies()
    try:
        return known[name]()
    except KeyError:
        raise KeyError(f"unknown policy {name!r}; known: {', '.join(known)}") from None


def all_policies() -> dict[str, type[Policy]]:
    """The landed policies, then the seeded bugs (kern.mutants), by name."""
    from faultline.kern.mutants import MUTANTS  # mutants subclass these policies
    return {**POLICIES, **MUTANTS}
