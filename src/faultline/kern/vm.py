"""The machine-wide VM state of one execution: vm_phys, pv-list locks, object and pmap lists.

What lives here: `Vm`, the container every model object points back to, so an execution
owns all of its state (nothing global, nothing shared between runs).  Rule kept:
allocation is deterministic (frame numbers and object ids count up).  Must not be added:
policy decisions or fault logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from faultline.kern.vm_page import VmPage, locked_by
from faultline.rt.context import Tracked
from faultline.rt.sync import BusyWord, Lock

if TYPE_CHECKING:
    from faultline.kern.pmap import Pmap
    from faultline.kern.policy import Policy
    from faultline.kern.proc import Proc
    from faultline.kern.vm_map import VmMap
    from faultline.kern.vm_object import VmObject

NPDEPG_SHIFT = 9     # 2 MiB / 4 KiB: pages per pv-list-lock frame (pa_index = pa >> PDRSHIFT)


@dataclass(eq=False)
class VmDomain(Tracked):
    """struct vm_domain, reduced to its free-page count (vmd_free_count).  Only a
    scenario that limits memory counts (`limited`, set once before the scenario's
    threads start): the count is then taken and returned with atomic ops, and faults
    that find none sleep in vm_waitpfault ("pfault")."""

    limited: bool = locked_by("C", False)      # the scenario limits memory
    free_count: int = locked_by("A", 0)        # pages left, when limited

    @property
    def fl_key(self) -> tuple[str, int]:
        """Stable name for partial-order reduction."""
        return ("vm_domain", 0)


@dataclass(eq=False)
class Vm:
    """Everything one execution's VM owns."""

    policy: Policy
    npv_locks: int = 8                 # NPV_LIST_LOCKS (MAXCPU on amd64 without NUMA)
    first_phys: int = 0x100            # first frame handed out
    phys_stride: int = 0x201           # frames between pages: each page in its own 2 MiB
                                       # frame, so pages hash to different pv-list locks
    pages: list[VmPage] = field(default_factory=list)
    objects: list[VmObject] = field(default_factory=list)   # vm_object_list, live ones
    pmaps: list[Pmap] = field(default_factory=list)
    maps: list[VmMap] = field(default_factory=list)         # live vmspaces
    procs: list[Proc] = field(default_factory=list)
    files: dict[str, VmObject] = field(default_factory=dict)
    pv_list_locks: list[Lock] = field(default_factory=list)
    next_oid: int = 1
    domain: VmDomain = field(default_factory=VmDomain)
    prefault: bool = True              # vm_fault_prefault and exec's MAP_PREFAULT
    counters: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pv_list_locks = [Lock("pmap pv list", f"pv{i}", "rw")
                              for i in range(self.npv_locks)]

    def new_page(self) -> VmPage:
        """vm_phys: hand out the next free frame (never reused: freed pages stay freed)."""
        index = len(self.pages)
        phys = self.first_phys + index * self.phys_stride
        m = VmPage(index=index, phys=phys, busy=BusyWord(f"page{index}"), vm=self)
        self.pages.append(m)
        return m

    def pv_list_lock(self, m: VmPage) -> Lock:
        """PHYS_TO_PV_LIST_LOCK: pv locks hashed by 2 MiB frame of the physical address."""
        return self.pv_list_locks[(m.phys >> NPDEPG_SHIFT) % self.npv_locks]

    def serial(self) -> int:
        """A fresh allocation number (map entries' stable names)."""
        self.counters["serial"] = n = self.counters.get("serial", 0) + 1
        return n

    def count(self, what: str) -> None:
        """A VM counter (v_cow_faults, v_cow_optim, object_collapses, ...)."""
        self.counters[what] = self.counters.get(what, 0) + 1
