"""The machine-wide VM state of one execution: vm_phys, pv-list locks, object and pmap lists.

What lives here: `Vm`, the container every model object points back to, so an execution
owns all of its state (nothing global, nothing shared between runs).  Rule kept:
allocation is deterministic (frame numbers and object ids count up).  Must not be added:
policy decisions or fault logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

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
    # The simulator's physical layout (kern/vm.py's defaults serve the checker):
    pv_superpage_locks: bool = False   # one pv lock per 2 MiB frame (amd64 NUMA kernels)
    pv_locks_per_line: int = 1         # hashed pv locks sharing a 64-byte cache line
    reserv_frames: int = 0             # >0: pages come from per-object 2 MiB reservations
                                       # placed among this many frames (vm_reserv)
    reserv_seed: int = 0               # seeds where reservations land (_reserv_frame)
    keep_pages: bool = True            # keep every page in `pages` (invariants walk it)
    next_oid: int = 1
    next_eid: int = 1                  # map entries' stable names (serial())
    domain: VmDomain = field(default_factory=VmDomain)
    prefault: bool = True              # vm_fault_prefault and exec's MAP_PREFAULT
    counters: dict[str, int] = field(default_factory=dict)   # VM_CNT_INC statistics
    extra: dict[str, Any] = field(default_factory=dict)
    # History, not state: the statistics decide no later step and no verdict, so two
    # runs that reach one state with different counts are one state to
    # check.search.statecache (docs/state-caching.md, section 1).
    fl_history: ClassVar[frozenset[str]] = frozenset({"counters"})

    def __post_init__(self) -> None:
        self.pv_list_locks = [
            Lock("pmap pv list", f"pv{i}", "rw", line=("pv line", i // self.pv_locks_per_line))
            for i in range(self.npv_locks)]
        self._superpage_locks: dict[int, Lock] = {}
        self._npages = 0

    def new_page(self, obj: VmObject | None = None, pindex: int = 0) -> VmPage:
        """vm_phys / vm_reserv: hand out a free frame (never reused: freed pages stay
        freed).  With reservations (the simulator), an object's pages at pindex
        p sit in the 2 MiB frame reserved for (object, p >> 9), at offset p & 511, as
        vm_reserv_alloc_page places them; otherwise frames count up by phys_stride."""
        index = self._npages
        self._npages += 1
        if self.reserv_frames and obj is not None:
            frame = _reserv_frame(self.reserv_seed, obj.oid, pindex >> NPDEPG_SHIFT,
                                  self.reserv_frames)
            phys = (frame << NPDEPG_SHIFT) + (pindex & ((1 << NPDEPG_SHIFT) - 1))
        else:
            phys = self.first_phys + index * self.phys_stride
        m = VmPage(index=index, phys=phys, busy=BusyWord(f"page{index}"), vm=self)
        if self.keep_pages:
            self.pages.append(m)
        return m

    def pv_list_lock(self, m: VmPage) -> Lock:
        """PHYS_TO_PV_LIST_LOCK: the pv lock of m's 2 MiB frame: hashed into
        NPV_LIST_LOCKS locks, or the frame's own lock (pv_table[pa_index].pv_lock)."""
        frame = m.phys >> NPDEPG_SHIFT
        if not self.pv_superpage_locks:
            return self.pv_list_locks[frame % self.npv_locks]
        lock = self._superpage_locks.get(frame)
        if lock is None:
            lock = self._superpage_locks[frame] = Lock("pmap pv list", f"pv.sp{frame}", "rw")
        return lock

    def serial(self) -> int:
        """A fresh allocation number (map entries' stable names)."""
        n, self.next_eid = self.next_eid, self.next_eid + 1
        return n

    def count(self, what: str) -> None:
        """A VM counter (v_cow_faults, v_cow_optim, object_collapses, ...)."""
        self.counters[what] = self.counters.get(what, 0) + 1


def _reserv_frame(seed: int, oid: int, chunk: int, frames: int) -> int:
    """Where vm_reserv puts object `oid`'s reservation number `chunk`: a seeded,
    stateless scramble (splitmix64) of the three, so placement is reproducible and
    independent of allocation order."""
    x = (seed * 0x9E3779B97F4A7C15 + oid * 0xBF58476D1CE4E5B9 + chunk) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) % frames


_MASK64 = (1 << 64) - 1
