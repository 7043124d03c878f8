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
from faultline.kern.vm_page import VmPage
from faultline.rt import ops

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

    Not caught yet: no catalog scenario makes the source object gain a reference or
    a shadow between vm_fault_cow's racy check and its try-locks. The candidate is a
    fork whose vm_object_split gives the source a second shadow while a hard COW
    fault (map dropped for swap-in) renames; the split then moves the renamed page
    along, so whether a consequence remains is open."""

    name = "rename-no-recheck"
    description = "vm_fault_cow renames on its racy check, without the locked re-check"
    breaks = ("vm_fault_cow: vm_fault_can_cow_rename re-checked under both object write "
              "locks (reference 4, 5.4 item 1)")
    probes = ("cow-rename", "cow-vs-collapse", "fault-vs-fork", "hard-cow-vs-fork")

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

    Not caught yet: the top object's placeholder (the copy, xbusied and invalid) holds
    collapse and bypass of the first backing object off by itself (reference 5.4
    item 3 names both guards), and the shootdown is done before the unbusy. A
    collapse deeper in the chain, freeing the source while this process's old
    read-only mapping of it stands (first_object ONEMAPPING, no shootdown), is the
    candidate; no catalog scenario builds it."""

    name = "early-unbusy-m-cow"
    description = "unbusy the COW source right after the copy"
    breaks = ("vm_fault_cow: the source kept busied in fs->m_cow until "
              "vm_fault_deallocate (reference 5.1 item 6, 5.4 item 3)")
    probes = ("cow-vs-collapse", "shared-shadow-inval-collapse", "collapse-bypass",
              "swapin-vs-collapse")

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


MUTANTS: dict[str, type[Mutant]] = {m.name: m for m in (
    SbusyWrite, RenameSbusied, NoShootdown, RenameNoRecheck, SbusyRenamable,
    FirstMEarlyRelease, BusySleepNoRestart, EarlyUnbusyMCow)}
