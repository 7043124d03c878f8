"""The simulator's cost model: every time constant a simulated CPU pays, with its source.

What lives here: the machine's cache-line hand-off latencies, the kernel work per model
step and per work kind (the labels model code passes to `rt.ops.cost`), the off-CPU
durations of the waits the model names by wmesg (I/O, pause ticks), and the
wake-up and context-switch costs of sleeping.  Rule kept: one cost model serves every
run, every policy and every workload; nothing here knows a policy's name, so a
difference between policies can only come from the mechanism the model runs.
Must not be added: per-policy or per-workload constants, or anything tuned to make a
curve look like an anchor.

Sources are cited by the ids of the project's performance anchors (docs/simulator.md
lists them with their public sources): "L-pft-1" is Agrawal's pft curve (LKML
2023-02-15), "L-exec-2" mjg's pinned exec rate (LKML 2023-11-08), "C2C" the medians in
nviennot/core-to-core-latency's README.  A constant marked "estimate" has no
measurement behind it; its comment gives the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------- coherence

HANDOFF_SMT_NS = 7          # C2C: SMT siblings 4-10 ns
HANDOFF_SOCKET_NS = 50      # C2C: same socket, Xeon E5-2695v4 44 ns .. Ice Lake 8375C 51 ns
HANDOFF_CROSS_NS = 130      # C2C: across sockets, 8375C 108 ns .. Gold 6242 136 ns

# ---------------------------------------------------------------- kernel work

# One scheduling point of the model, by kind of op, with the plain code up to the next
# one.  An uncontended LOCK CMPXCHG costs ~18-20 cycles on Skylake-era cores (Agner
# Fog's instruction tables), ~6-7 ns at 3 GHz; FreeBSD's mtx/rw/sx fast paths are one
# such instruction to take and one to drop, plus the call, the lockstat check and the
# code around them.  Estimates on that basis: 20 ns to take, 15 to drop, 20 for a
# busy-word or other atomic update, 5 for a plain (racy) load, 100-150 ns for the sleep
# queue's lock, list and the thread state change of a sleep or wakeup.  The cache-line
# hand-off is extra (sim.machine).  `faultline calibrate` shows the resulting faults.
STEP_NS: dict[str, int] = {
    "Acquire": 20, "Release": 15, "Upgrade": 20, "Downgrade": 15, "Busy": 20,
    "Atomic write": 20, "Atomic read": 5, "Sleep": 150, "Wakeup": 100,
    "Resume": 0, "Pause": 0, "Spawn": 50,
}

WORK_NS: dict[str, int] = {
    # Exception entry and exit around vm_fault (trap(), trap_pfault, the iret).
    # Estimate: ~150 ns on Skylake-era CPUs without PTI.
    "trap": 150,
    # pmap_zero_page: 4 KiB with rep stosb at ~16 B/cycle, 3 GHz, plus the misses of a
    # cold page.  Estimate: 250 ns; L-pft-1's 1.11 us fault includes it.
    "page zero": 250,
    # pmap_copy_page: 4 KiB read and write, twice the traffic of a zero.  Estimate.
    "page copy": 400,
    # The part of execve the model does not run: namei, reading the ELF headers,
    # copying arguments in and out, credentials, signal and file-table reset, and the
    # image activator's bookkeeping.  Derived: L-exec-2 measures ~105 us per pinned
    # exec of a static binary; the model's own VM work for one doexec iteration at one
    # CPU is ~25-35 us (`faultline calibrate`), so ~55 us are left for the rest.
    "execve": 55_000,
    # User time of one doexec iteration of a dynamically linked binary: the runtime
    # linker's relocation of libc, main() and the call to execve.  Estimate: 25 us
    # (a dynamic exec is known to cost tens of us more than a static one).
    "rtld": 25_000,
    # User time between two touches of the page-fault loops (a store or load and the
    # loop's increment).  Estimate: a few ns.
    "user touch": 5,
    # Listing or unlisting one pv entry on a page's pv list (TAILQ insert/remove, the
    # pv chunk bitmap).  Estimate: 40 ns of work; the cache-line hand-off of the
    # page's pv list head, when another CPU changed it last, is priced apart
    # (sim.machine), so a shared page's list costs what its sharing costs.
    "pv entry": 40,
    # The calibration workload hot-lock (W5): work outside and inside one global
    # mutex.  Arbitrary round numbers, chosen so the knee N* = (S + Z) / S falls
    # inside the sweep: S = 200 ns held, Z = 2 us between.
    "hot-lock hold": 200,
    "hot-lock think": 2_000,
    # mmap and munmap system calls' own work outside the VM model (syscall entry, fd
    # lookup, argument checks).  Estimate: ~300 ns each.
    "syscall": 300,
}

# ---------------------------------------------------------------- sleeping

# A context switch in and out (sched_switch, cpu_switch, the cache refill after).
# Li, Ding, Shen, "Quantifying the cost of context switch" (ExpCS 2007): 3.8 us direct +
# indirect on a Xeon; lmbench lat_ctx 1-5 us.  We take 2 us.
CSWITCH_NS = 2_000

# From wakeup() to the woken thread running on its idle CPU: sched_add's IPI and the
# exit from the idle loop's mwait (C1 exit about 1-2 us on Intel server parts).
# Estimate: 2 us.
WAKEUP_NS = 2_000

# FreeBSD's pause(9) and the tick that bounds a timed sleep: hz = 1000.
TICK_NS = 1_000_000

# Off-CPU time of the model's I/O waits, by wmesg.  Estimates for a fast NVMe SSD:
# ~50 us random 4 KiB read, swap read slightly more, a write ~80 us.
IO_NS: dict[str, int] = {
    "biord": 50_000,
    "swread": 60_000,
    "swwrt": 80_000,
}


@dataclass(frozen=True, slots=True)
class CostModel:
    """The constants above as one value, so a run (and a test) can say which it used."""

    handoff_smt_ns: int = HANDOFF_SMT_NS
    handoff_socket_ns: int = HANDOFF_SOCKET_NS
    handoff_cross_ns: int = HANDOFF_CROSS_NS
    step_ns: dict[str, int] = field(default_factory=lambda: dict(STEP_NS))
    work_ns: dict[str, int] = field(default_factory=lambda: dict(WORK_NS))
    cswitch_ns: int = CSWITCH_NS
    wakeup_ns: int = WAKEUP_NS
    tick_ns: int = TICK_NS
    io_ns: dict[str, int] = field(default_factory=lambda: dict(IO_NS))

    def work(self, label: str, units: int) -> int:
        """CPU time of `units` units of work `label` (an unknown label is a bug in the
        model or a workload: it names a cost nobody priced)."""
        try:
            return self.work_ns[label] * units
        except KeyError:
            raise KeyError(f"the cost model has no price for work {label!r} "
                           f"(sim/costs.py WORK_NS)") from None

    def step(self, op: object) -> int:
        """The price of performing `op` (a rt.ops op) and running to the next one."""
        kind = type(op).__name__
        if kind == "Atomic":
            kind = "Atomic write" if op.write else "Atomic read"  # type: ignore[attr-defined]
        return self.step_ns[kind]

    def pause(self, wmesg: str) -> int:
        """Off-CPU time of a pause or I/O wait `wmesg`: its I/O time, else one tick."""
        return self.io_ns.get(wmesg, self.tick_ns)
