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


MUTANTS: dict[str, type[Mutant]] = {m.name: m for m in (SbusyWrite, RenameSbusied,
                                                         NoShootdown)}
