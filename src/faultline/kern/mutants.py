"""Seeded bugs: policy variants that each remove one protection the D51474 review relied on.

What lives here: `Mutant`, a D51474 policy with one answer overridden, and the seeded
bugs themselves, each with a docstring naming the race it reopens and the FreeBSD code
it breaks, and `probes`: the catalog scenarios built to reach that race.  A variant is
caught only through a consequence the checker judges anyway (a KASSERT FreeBSD has, a
structural invariant, the memory oracle, deadlock or livelock), never through an
assertion that restates the protection removed.  Rule kept: one overridden decision per
variant, no `if mutant:` in vm_fault.  Must not be added: the landed policies
(kern.policy) or anything that checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from faultline.kern.policy import SbusyPolicy
from faultline.kern.vm_object import VmObject
from faultline.kern.vm_page import VmPage
from faultline.rt import ops
from faultline.rt.sync import BusyWord

if TYPE_CHECKING:
    from faultline.kern.vm_fault import FaultState


class Mutant(SbusyPolicy):
    """A seeded bug: D51474 as landed, with one protection removed."""

    name: ClassVar[str] = "mutant"
    breaks: ClassVar[str] = ""             # the FreeBSD code and reference section
    probes: ClassVar[tuple[str, ...]] = ()  # catalog scenarios that reach the race
    not_a_bug: ClassVar[str] = ""          # the argument, if the variant is harmless
    base: ClassVar[str] = "sbusy"           # the landed policy it alters


class SbusyWrite(Mutant):
    """Share-busy a valid page even when this fault may map it writable in the top
    object.  Two faults then hold the page at once and one maps it writable: FreeBSD's
    KASSERT that only an exclusively busied page gets PGA_WRITEABLE (vm_page_aflag_set,
    reached from pmap_enter) fires."""

    name = "sbusy-write"
    description = "sbusy a top-object page this fault maps writable"
    breaks = ("vm_fault_object: the `vm_fault_is_read(fs) || vm_fault_might_be_cow(fs)` "
              "clause of the sbusy condition (reference 2.3, 5.2)")
    probes = ("rw-race-top", "zero-fill-parallel")

    async def vm_fault_object_may_sbusy(self, fs: FaultState) -> bool:
        """The landed condition without its read-or-below-the-top clause."""
        from faultline.kern.vm_fault import vm_fault_can_cow_rename
        assert fs.m is not None
        if not await ops.racy_load(fs.m, "valid"):
            return False
        if not await vm_fault_can_cow_rename(fs):
            return True
        return fs.object is not await ops.racy_load(fs.first_object, "backing_object")

    def vm_fault_object_sbusy_recheck(self, fs: FaultState) -> bool:
        """Re-check validity only."""
        assert fs.m is not None
        return bool(fs.m.valid)


class RenameSbusied(Mutant):
    """Let vm_fault_cow rename a page it holds only share-busied.  Another fault may
    hold the same page sbusied and rely on its identity; FreeBSD's vm_page_rename path
    (vm_page_remove / vm_page_replace) asserts the page is exclusively busied."""

    name = "rename-sbusied"
    description = "vm_fault_cow renames a page it only share-busied"
    breaks = "vm_fault_cow: the `vm_page_xbusied(fs->m)` condition of the rename (reference 4)"
    probes = ("cow-rename", "cow-vs-collapse")

    def vm_fault_cow_may_rename(self, fs: FaultState) -> bool:
        """Always."""
        return True


class NoShootdown(Mutant):
    """CVE-2021-29626 (FreeBSD-SA-21:08.vm): the COW copy path never shoots down the
    other mappings of the source page, so a process sharing the shadow keeps mapping
    the page its sibling's write just shadowed: the structural invariant O3 (no
    shadowed page stays mapped) and the memory oracle (a stale read) catch it."""

    name = "no-shootdown"
    description = "vm_fault_cow never shoots down the COW source (CVE-2021-29626)"
    breaks = ("vm_fault_cow: pmap_remove_all(fs->m) when first_object lacks "
              "OBJ_ONEMAPPING (reference 5.1 item 1)")
    probes = ("shared-shadow-inval", "shared-shadow-inval-block-xfer",
              "shared-shadow-inval-collapse")

    async def vm_fault_cow_must_remove_all(self, fs: FaultState, m_cow: VmPage) -> bool:
        """Never."""
        return False


class RenameNoRecheck(Mutant):
    """Decide the rename from vm_fault_cow's unlocked check alone: once both write
    locks are held, do not re-read the source object's counts.  A reference or shadow
    gained meanwhile (the review's racy ref_count/shadow_count) would then lose its
    page to the rename.

    Not a bug in the model.  At the racy check the source object O has one reference
    and one shadow, both first_object S's backing link, so only a path through S can
    give O another: (1) a shadow of S bypassing it (vm_object_backing_insert_ref):
    swap_pager_scan_all_shadowed refuses while S holds an invalid page, and this
    fault's placeholder first_m is one, at this very index; (2) a fork's
    vm_object_split of S while the map is dropped for a swap-in: the new object takes
    a reference on O, but the split waits ("spltwt") on first_m and then moves every
    page of the entry's range into the new object, the renamed page included, so the
    new object shows at that index what S showed, and S keeps no mapping.  Nothing
    else references O: no entry maps it and a collapse moves references, never adds
    one.  The whole catalog passes (`faultline mutants rename-no-recheck
    --all-scenarios`).  FreeBSD reads the counts with no lock at all, and keeps the
    re-check as the only thing that makes the decision exact."""

    name = "rename-no-recheck"
    description = "vm_fault_cow renames on its racy check, without the locked re-check"
    breaks = ("vm_fault_cow: vm_fault_can_cow_rename re-checked under both object write "
              "locks (reference 4, 5.4 item 1)")
    probes = ("cow-rename", "cow-vs-collapse", "fault-vs-fork", "hard-cow-vs-fork")
    not_a_bug = ("the source can gain a reference only through first_object: a bypass "
                 "refuses while the fault's invalid placeholder is there, and a fork's "
                 "split waits for it and carries the renamed page into the new object")

    async def vm_fault_cow_rename_recheck(self, fs: FaultState) -> bool:
        """Trust the unlocked check."""
        return True


class SbusyRenamable(Mutant):
    """Share-busy a valid page even when it is a rename candidate in the immediate
    backing object (drop the last clause of the sbusy condition).

    Not a bug: the clause chooses which busy to take, it protects nothing.
    vm_fault_cow renames only a page it holds exclusively busied
    (`vm_fault_cow_may_rename`), so a share-busied rename candidate is copied instead,
    and the copy path is correct for every source page (its shootdown depends on
    first_object's ONEMAPPING, not on the source's busy). The reference says as much
    for a stale "not renamable" check (5.4 item 1: "correct, slightly slower"). The cost
    is a page copy where a rename would have done. The whole catalog passes under it
    (`faultline mutants sbusy-renamable --all-scenarios`)."""

    name = "sbusy-renamable"
    description = "sbusy a page that vm_fault_cow could rename"
    breaks = ("vm_fault_object: the `!vm_fault_can_cow_rename(fs) || fs->object != "
              "fs->first_object->backing_object` clause (reference 5.4 item 1)")
    probes = ("cow-rename", "cow-vs-collapse", "rw-race-shadow")
    not_a_bug = ("vm_fault_cow renames only an xbusied page, so a share-busied rename "
                 "candidate is copied: slower, never wrong (reference 5.4 item 1)")

    async def vm_fault_object_may_sbusy(self, fs: FaultState) -> bool:
        """Valid, and a read or below the top object: the rename clause is gone."""
        from faultline.kern.vm_fault import vm_fault_is_read, vm_fault_might_be_cow
        assert fs.m is not None
        if not await ops.racy_load(fs.m, "valid"):
            return False
        return vm_fault_is_read(fs) or vm_fault_might_be_cow(fs)


class FirstMEarlyRelease(Mutant):
    """Free the top object's placeholder first_m (xbusied, invalid) before pmap_enter
    instead of after it.  A write fault on the same address then gets its own
    placeholder, copies the backing page and maps the copy writable, and this read
    fault's pmap_enter replaces that mapping with the stale backing page (reference
    5.2): a shadowed page is mapped (O3) and the process reads old data.
    FreeBSD's a38483fa2b3a assertion, which restates this very protection, is dropped
    in this variant so that only the race's consequence can catch it."""

    name = "first-m-early-release"
    description = "free the top-object placeholder first_m before pmap_enter"
    breaks = ("found:/vm_fault_deallocate: first_m kept xbusied until after pmap_enter "
              "(reference 5.1 item 2, 5.2; commit a38483fa2b3a)")
    probes = ("rw-race-shadow",)

    async def vm_fault_found_before_enter(self, fs: FaultState) -> None:
        """Free the placeholder now (only a placeholder: a COW copy is fs.m itself)."""
        from faultline.kern.vm_fault import vm_fault_page_free
        from faultline.rt.sync import rw_unlock, rw_wlock
        if fs.first_m is None or fs.first_m is fs.m or fs.first_object is None:
            return
        await rw_wlock(fs.first_object.lock)
        await vm_fault_page_free(fs, "first_m")
        await rw_unlock(fs.first_object.lock)

    def vm_fault_assert_first_m(self, fs: FaultState) -> None:
        """Dropped: it restates the protection this variant removes."""


class EarlyUnbusyMCow(Mutant):
    """Drop the COW source page's busy (m_cow) as soon as the copy and the shootdown
    are done, instead of at the end of the fault, while the copy is still invalid
    and unmapped.

    Not a bug in the model.  After the copy (and, for a shared first_object S, the
    shootdown) the source B's busy holds off three things, and each is held off
    without it: (1) a collapse of S with B's object meets this fault's placeholder
    first_m (the copy: xbusied, invalid until found:) at the index and waits, since it
    cannot tell whether it shadows B; a bypass of B's object by S, or of S by its own
    shadow, refuses for the same invalid page; (2) a deeper collapse moves B up with
    its identity and mappings, and frees it only under a valid page or swap block of
    the front object at that index, which the walk would have found instead of B --
    a valid page can appear there only through a COW into that object, which is not
    ONEMAPPING (it has a shadow) and so shoots B down first; (3) the page daemon
    (which needs B xbusied) unmaps B before it frees it, and the copy already holds
    the data.  The whole catalog passes (`faultline mutants early-unbusy-m-cow
    --all-scenarios`).  In FreeBSD the busy also orders the source against paths the
    model leaves out (vm_object_page_remove on truncation, reference 5.5)."""

    name = "early-unbusy-m-cow"
    description = "unbusy the COW source right after the copy"
    breaks = ("vm_fault_cow: the source kept busied in fs->m_cow until "
              "vm_fault_deallocate (reference 5.1 item 6, 5.4 item 3)")
    probes = ("cow-vs-collapse", "shared-shadow-inval-collapse", "collapse-bypass",
              "swapin-vs-collapse")
    not_a_bug = ("collapse and bypass already wait for the invalid, xbusied copy in "
                 "first_object; deeper collapses keep the source's identity and mappings")

    async def vm_fault_cow_keep_source(self, fs: FaultState, m: VmPage) -> None:
        """Unbusy it now; fs.m_cow still says a copy was made (found: validates it)."""
        from faultline.kern.vm_page import vm_page_unbusy
        await vm_page_unbusy(m)
        fs.m_cow = m

    async def vm_fault_release_m_cow(self, fs: FaultState) -> None:
        """The other half of the same decision: the busy is already gone."""
        fs.m_cow = None


class BusySleepNoRestart(Mutant):
    """After waking from a vmpfw sleep, go on with the fault state from before it (the
    entry, first_object, first_pindex, prot) under a fresh map read lock, instead of
    looking the address up again.  While the fault slept it held nothing: a munmap,
    mprotect or fork may have changed the entry, and the fault then maps a page the
    map no longer allows (the memory oracle), or one of an object that is gone."""

    name = "busy-sleep-no-restart"
    description = "after a vmpfw sleep, continue with the stale lookup"
    breaks = ("vm_fault: RetryFault (vm_fault_lookup again) after vm_fault_busy_sleep "
              "(reference 3.6)")
    probes = ("busy-sleep-vs-munmap",)

    async def vm_fault_retry_lookup(self, fs: FaultState) -> str:
        """The stale state, as if the map were still locked since the first lookup."""
        from faultline.kern.vm_fault import vm_fault_lookup
        from faultline.kern.vm_map import KERN_SUCCESS, vm_map_lock_read
        if not fs.slept or fs.first_object is None:
            return await vm_fault_lookup(fs)
        await vm_map_lock_read(fs.map)
        fs.lookup_still_valid = True
        return KERN_SUCCESS


class PrefaultMapsInvalid(Mutant):
    """vm_fault_prefault maps the page its walk stopped at even when it is not valid:
    an in-flight COW's placeholder first_m in the shared shadow, before the copy is in
    it.  The process then maps a page without contents; the structural invariant that
    no PTE maps an invalid page catches it (FreeBSD's prefault tests
    vm_page_all_valid)."""

    name = "prefault-maps-invalid"
    description = "prefault maps the invalid page its walk stopped at"
    breaks = ("vm_fault_prefault: the `vm_page_all_valid(m)` test before "
              "pmap_enter_quick (reference 5.1 item 3)")
    probes = ("prefault-vs-placeholder",)

    async def vm_fault_prefault_may_map(self, m: VmPage) -> bool:
        """Always."""
        return True


class SoftFastBelowTop(Mutant):
    """vm_fault_soft_fast looks one object down when first_object has no page at the
    index, and maps the backing page it finds there under first_object's busy alone.
    A write fault then maps the backing page writable: the structural invariant that a
    writable PTE maps a page of the entry's top object catches it (the page is shared
    with every other view of the backing object).  A read fault maps it beside a COW of
    the same address in flight, whose placeholder first_m in first_object is about to
    shadow it: the mapping survives the COW's shootdown (O3, or a stale read that the
    memory oracle catches; SPIN's model finds that one on shared-shadow-inval)."""

    name = "soft-fast-below-top"
    description = "soft_fast maps a page of the backing object"
    breaks = ("vm_fault_soft_fast: vm_page_lookup_unlocked(fs->first_object, "
              "fs->first_pindex) only (reference 5.1 item 4)")
    probes = ("prefault-vs-placeholder", "soft-fast-vs-sbusy", "shared-shadow-inval",
              "rw-race-shadow")

    def vm_fault_soft_fast_where(self, fs: FaultState) -> tuple[VmObject, int]:
        """first_object, or its backing object when first_object has no such page."""
        first = fs.first_object
        assert first is not None
        backing = first.backing_object
        if fs.first_pindex in first.pages or backing is None:
            return first, fs.first_pindex
        return backing, fs.first_pindex + first.backing_object_offset


class EarlyValidCowCopy(Mutant):
    """Validate the COW copy in vm_fault_cow, right after the copy, instead of at
    found: after the relookup (revert D49758).  A fault whose relookup fails then
    leaves a valid page in first_object shadowing the source while the source is still
    mapped (this process's own read-only PTE, when first_object is ONEMAPPING): the
    structural invariant O3, and a later collapse's "freeing mapped page" KASSERT.
    The found: assertion that the copy is still invalid restates the protection and is
    dropped in this variant."""

    name = "early-valid-cow-copy"
    description = "validate the COW copy before the relookup (revert D49758)"
    breaks = ("vm_fault_cow / found:: vm_page_valid of the copy deferred past "
              "vm_fault_relookup, D49758 (reference 5.1 item 7, 5.4 item 4)")
    probes = ("swap-cow-vs-fork-copy", "hard-cow-vs-fork", "swapin-vs-collapse",
              "shared-shadow-inval-collapse", "swap-cow-vs-fork")

    async def vm_fault_cow_copy_done(self, fs: FaultState, copy: VmPage) -> None:
        """Validate the copy now."""
        from faultline.kern.vm_page import vm_page_valid
        vm_page_valid(copy)

    def vm_fault_assert_copy_invalid(self, fs: FaultState, copy: VmPage) -> None:
        """Dropped: it restates the protection this variant removes."""


class CowMapUnlocked(Mutant):
    """Drop the map read lock before vm_fault_cow on the soft path too (and relookup
    after it, as the hard path does).  A fork with INHERIT_SHARE may then share
    first_object and copy this process's read-only PTE of the source into the child
    after vm_fault_cow read ONEMAPPING as set and skipped the shootdown: the child
    keeps mapping a page its shared object now shadows (O3, a stale read)."""

    name = "cow-map-unlocked"
    description = "run the soft COW with the map unlocked"
    breaks = ("vm_fault: the map read lock held from vm_fault_lookup through "
              "vm_fault_cow and pmap_enter (reference 5.3)")
    probes = ("onemapping-race", "fault-vs-fork")

    async def vm_fault_before_cow(self, fs: FaultState) -> None:
        """Unlock the map; found: relooks it up after the COW."""
        from faultline.kern.vm_fault import vm_fault_unlock_map
        await vm_fault_unlock_map(fs)


class RelookupIgnoresObject(Mutant):
    """vm_fault_relookup goes on when the map changed under a dropped map lock even if
    the entry no longer maps (first_object, first_pindex): the fault maps its page at
    an address that now belongs to another object (a fork's vm_object_split, an
    mprotect that copied the entry).

    Not a bug in the model (yet).  While a fault has the map dropped, the entry at its
    address changes object in only two ways, and neither exposes it: (1) a fork with
    INHERIT_SHARE of a NEEDS_COPY entry puts an empty shadow over first_object, so
    first_object's page is still the address's page, and a fault through a NEEDS_COPY
    entry is a read (a write fault's lookup already shadowed it); (2) a fork's
    vm_object_split waits ("spltwt"), with the map write-locked, on the fault's busy
    page in first_object, so the relookup's trylock fails and the fault restarts.
    munmap makes the lookup fail.  A run-time mmap over the range (MAP_FIXED), which the
    scenario language cannot express yet, is the case FreeBSD's check is for."""

    name = "relookup-ignores-object"
    description = "relookup accepts an entry that maps another object"
    breaks = ("vm_fault_relookup: the `fs->first_object != retry_object || "
              "fs->first_pindex != retry_pindex` restart (reference 5.4 item 2)")
    probes = ("swap-cow-vs-fork", "swap-cow-vs-fork-copy", "hard-cow-vs-fork",
              "hard-fault-vs-soft", "mprotect-vs-fault")
    not_a_bug = ("no model path changes the entry's object under a dropped map lock except "
                 "fork's empty shadow and vm_object_split, which waits for the fault; "
                 "run-time mmap (MAP_FIXED) would make it one")

    def vm_fault_relookup_same_page(self, fs: FaultState, obj: VmObject | None,
                                    pindex: int) -> bool:
        """Always."""
        return True


class CowChasesChain(Mutant):
    """vm_fault_cow renames a source page found two or more objects below first_object
    when the source object has one reference and one shadow, without checking that it
    is first_object's immediate backing object.  The middle object's other shadows
    still see the page through it: after the rename they find nothing there and
    zero-fill (the memory oracle).

    Altered from the pre-D51474 policy (xbusy): under D51474 a page below the
    immediate backing object is only share-busied, and vm_fault_cow renames no page
    it holds share-busied, so the same decision cannot be reached there."""

    name = "cow-chases-chain"
    description = "vm_fault_cow renames a page from below the immediate backing object"
    breaks = ("vm_fault_cow: `fs->object == fs->first_object->backing_object` "
              "(\"we don't chase down the shadow chain\", reference 4, 5.4 item 2)")
    probes = ("cow-below-middle",)
    base = "xbusy"

    async def vm_fault_object_may_sbusy(self, fs: FaultState) -> bool:
        """The base policy's answer (xbusy): never."""
        return False

    def vm_fault_cow_source_is_backing(self, fs: FaultState) -> bool:
        """Always."""
        return True


class CollapseGuessesShadow(Mutant):
    """vm_object_collapse_scan does not wait for a busy parent page: it takes the page
    as shadowing the backing page and frees that.  A busy parent page may be a fault's
    invalid placeholder, which shadows nothing and may yet be freed by its fault: the
    backing page's data is then lost to every view through the chain (the memory
    oracle), or it is freed while still mapped (FreeBSD's "freeing mapped page")."""

    name = "collapse-guesses-shadow"
    description = "collapse frees a backing page under a busy parent page"
    breaks = ("vm_object_collapse_scan: the sleep on a busy parent page, whose validity "
              "cannot be told yet (reference 5.4 item 3)")
    probes = ("swapin-vs-collapse", "cow-vs-collapse", "cow-rename",
              "shared-shadow-inval-collapse", "cow-below-middle")

    async def vm_object_collapse_scan_busy_parent(self, obj: VmObject, p: VmPage,
                                                  pp: VmPage) -> None:
        """Free p as a shadowed page."""
        from faultline.kern.swap_pager import swap_pager_freespace
        from faultline.kern.vm_page import vm_page_free
        assert obj.backing_object is not None
        swap_pager_freespace(obj.backing_object, p.pindex)
        await vm_page_free(p)


class DeallocateBeforeUnbusy(Mutant):
    """vm_fault_deallocate drops the fault's reference on first_object before it
    releases its busies and paging counts.  When a munmap took the entry's reference
    while the fault had the map dropped, the fault's is the last: vm_object_terminate
    waits for the object's paging count to drain -- the fault's own -- and the fault
    sleeps on itself (deadlock).  Reference 5.4 item 5 names the other case, a
    collapse sleeping on the fault's busy pages, which no catalog scenario reaches."""

    name = "deallocate-before-unbusy"
    description = "drop the first_object reference before the busies"
    breaks = ("vm_fault_deallocate: vm_object_deallocate(first_object) after every busy "
              "is released (reference 5.4 item 5)")
    probes = ("swapin-vs-munmap",)

    async def vm_fault_deallocate_reference_first(self, fs: FaultState) -> bool:
        """Drop it now."""
        from faultline.kern.vm_object import vm_object_deallocate
        await vm_object_deallocate(fs.first_object)
        return True


class LostWakeup(Mutant):
    """vm_page_busy_sleep goes to sleep without flagging VPB_BIT_WAITERS: the releaser
    sees no waiters and wakes nobody, and the sleeper sleeps for ever (deadlock, or a
    thread that never finishes)."""

    name = "lost-wakeup"
    description = "sleep on a busy page without setting VPB_BIT_WAITERS"
    breaks = ("_vm_page_busy_sleep: atomic_fcmpset of VPB_BIT_WAITERS before sleepq_wait "
              "(reference 5.5)")
    probes = ("busy-sleep-wakeup", "rw-race-shadow", "zero-fill-parallel")

    def vm_page_busy_sleep_set_waiters(self, w: BusyWord) -> None:
        """Nothing."""


class SbusyNoValidRecheck(Mutant):
    """Return the share-busied page as a soft fault without re-checking, under the
    busy, that it is still fully valid (D51474's "make sure that racily checked
    conditions are still valid").  A page that became invalid between the unlocked
    check and the busy would then be mapped (P3).

    Not a bug.  vm_fault_object holds fs.object's lock, read or write, from the
    lookup through the check and the trysbusy; a page becomes invalid only through
    vm_page_invalid / vm_page_set_invalid, which assert the object write lock (and the
    busy, and no mapping), reached from vm_object_page_remove (truncation, msync's
    invalidation) and the buffer cache's vfs_vmio_invalidate, each under
    VM_OBJECT_WLOCK.  Validity can only grow meanwhile (invalid -> valid needs just the
    busy), which the first check already saw.  The other clauses re-checked are the
    fault's own state.  sbusy-vs-invalidate, whose truncation and msync race share-busied
    faults, passes with the re-check gone (tests/test_invalidate.py)."""

    name = "sbusy-no-valid-recheck"
    description = "sbusy soft fault without re-checking validity under the busy"
    breaks = ("vm_fault_object: the `vm_page_all_valid(fs->m)` re-check after "
              "vm_page_trysbusy (reference 2.3, 5.2)")
    probes = ("sbusy-vs-invalidate",)
    not_a_bug = ("validity only shrinks under the object write lock, and the fault holds "
                 "the object lock from its unlocked check through the trysbusy")

    def vm_fault_object_sbusy_recheck(self, fs: FaultState) -> bool:
        """Trust the check made before the busy."""
        return True


MUTANTS: dict[str, type[Mutant]] = {m.name: m for m in (
    SbusyWrite, RenameSbusied, NoShootdown, RenameNoRecheck, SbusyRenamable,
    FirstMEarlyRelease, BusySleepNoRestart, EarlyUnbusyMCow, PrefaultMapsInvalid,
    SoftFastBelowTop, EarlyValidCowCopy, CowMapUnlocked, RelookupIgnoresObject,
    CowChasesChain, CollapseGuessesShadow, DeallocateBeforeUnbusy, LostWakeup,
    SbusyNoValidRecheck)}
