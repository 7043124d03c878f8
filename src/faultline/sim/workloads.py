"""Workloads: what each simulated CPU's thread does, in model operations, forever.

What lives here: the machine's VM state for a run (`build_vm`: the policy, the pv-lock
layout, per-object superpage reservations), files made resident the way a warm page
cache has them (read once by a setup process, untimed), and one worker coroutine per
workload: `doexec` (DragonFly's doexec built dynamically: every worker re-executes its
binary, which maps the shared runtime linker and libc), and the page-fault loops
`page-fault1` (anonymous zero-fill), `page-fault2-shared` (private COW writes of one
shared file), `page-fault3-shared` (shared writes), `page-fault4-shared` (private
reads).  Each worker reports each finished operation through `done(kind)`.
Rule kept: workers only call kern's system-call functions (exec_new_vmspace, vm_mmap,
proc_touch, sys_munmap) and price their non-VM work with `rt.ops.cost` labels that
sim.costs defines.  Must not be added: timing, policy-dependent behaviour.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from faultline.kern.pmap import PAGE_SIZE
from faultline.kern.policy import policy_named
from faultline.kern.proc import (
    Proc,
    exec_new_vmspace,
    proc_create,
    proc_touch,
    sys_munmap,
    vm_mmap,
)
from faultline.kern.vm import Vm
from faultline.kern.vm_object import VmObject, vm_object_allocate_vnode
from faultline.rt import ops
from faultline.rt.execution import Execution, Thread
from faultline.rt.sync import Lock, mtx_lock, mtx_unlock

# pv-list lock layouts (--pv-locks), as amd64's pmap.c has had them:
#   256:       the old NPV_LIST_LOCKS = 256 hashed by 2 MiB frame, two 32-byte rwlocks
#              per cache line (D21833's complaint);
#   maxcpu:    NPV_LIST_LOCKS = MAXCPU (1024 on amd64), hashed, two per line (non-NUMA);
#   superpage: one lock per 2 MiB frame in pv_table, a line each (NUMA kernels).
PV_LAYOUTS = ("256", "maxcpu", "superpage")
MAXCPU = 1024

# Physical memory the reservations are placed in: 128 GiB = 65,536 2 MiB frames
# (an assumption about the D51474 machine, which was not described).
RESERV_FRAMES = 65_536

Done = Callable[[str], None]
Worker = Callable[[Proc, int, Done], Coroutine[Any, Any, None]]


def build_vm(policy: str, pv_locks: str, seed: int) -> Vm:
    """The VM of a timed run: reservations in RESERV_FRAMES frames drawn with `seed`,
    the pv locks laid out as `pv_locks`, pages not kept (nothing walks them)."""
    if pv_locks not in PV_LAYOUTS:
        raise ValueError(f"unknown pv-lock layout {pv_locks!r}; known: "
                         f"{', '.join(PV_LAYOUTS)}")
    npv = {"256": 256, "maxcpu": MAXCPU, "superpage": 1}[pv_locks]
    return Vm(policy_named(policy), npv_locks=npv, pv_superpage_locks=pv_locks == "superpage",
              pv_locks_per_line=1 if pv_locks == "superpage" else 2,
              reserv_frames=RESERV_FRAMES, reserv_seed=seed, keep_pages=False)


def run_untimed(coro: Coroutine[Any, Any, None], name: str = "setup") -> None:
    """Run `coro` as the only model thread, to completion, outside any timing."""
    ex = Execution(_First())
    ex.spawn(name, name, coro)
    outcome = ex.run()
    if outcome.violation is not None:
        raise RuntimeError(f"workload setup failed: {outcome.violation.message}")


class _First:
    def choose(self, ex: Execution, enabled: list[Thread]) -> Thread:
        return enabled[0]


def resident_file(vm: Vm, name: str, pages: int) -> VmObject:
    """A file whose `pages` pages are all in the page cache (read once by a process
    that then goes away), as a binary that was just run is."""
    obj = vm_object_allocate_vnode(vm, name, tuple(range(1, pages + 1)))
    vm.files[name] = obj

    async def warm() -> None:
        p = proc_create(vm, f"cat.{name}")
        p.nthreads = 1
        await vm_mmap(p, 0x1000_0000, pages, "r", False, obj, 0, None)
        for i in range(pages):
            await proc_touch(p, 0x1000_0000 + i * PAGE_SIZE, False)
        await sys_munmap(p, 0x1000_0000, pages)
    run_untimed(warm(), f"warm.{name}")
    return obj


# ---------------------------------------------------------------- doexec

@dataclass(frozen=True, slots=True)
class Segment:
    """One PT_LOAD segment: `pages` pages of a file at `addr`, `touch` of them read or
    written per run of the image (in page order)."""

    file: str
    offset: int
    addr: int
    pages: int
    prot: str
    reads: int = 0
    writes: int = 0


# The shape of a small dynamically linked program (doexec itself), the runtime linker
# and libc, in resident pages: text is pre-mapped at exec and only read; data/relro
# is COW-written by the linker's relocations (GOT, PLT, malloc and stdio state).
# Sizes are the working set of one run, not the files' lengths.
PROG_TEXT, PROG_DATA = 4, 1
LD_TEXT, LD_DATA = 24, 2
LIBC_TEXT, LIBC_DATA = 96, 8
BSS_PAGES, STACK_PAGES = 4, 4
BSS_ADDR, STACK_ADDR = 0x0080_0000, 0x7fff_0000


def doexec_segments(prog: str) -> list[Segment]:
    """The image of one doexec run: program, ld-elf.so.1, libc.so.7."""
    return [
        Segment(prog, 0, 0x0020_0000, PROG_TEXT, "rx", reads=PROG_TEXT),
        Segment(prog, PROG_TEXT, 0x0040_0000, PROG_DATA, "rw", writes=PROG_DATA),
        Segment("ld-elf.so.1", 0, 0x4000_0000, LD_TEXT, "rx", reads=8),
        Segment("ld-elf.so.1", LD_TEXT, 0x4010_0000, LD_DATA, "rw", writes=LD_DATA),
        Segment("libc.so.7", 0, 0x4020_0000, LIBC_TEXT, "rx", reads=16),
        Segment("libc.so.7", LIBC_TEXT, 0x4040_0000, LIBC_DATA, "rw", reads=2, writes=6),
    ]


def doexec(vm: Vm, nworkers: int, shared_binary: bool) -> list[tuple[Proc, Worker]]:
    """DragonFly's doexec, dynamically linked: each worker execs its binary in a loop."""
    resident_file(vm, "ld-elf.so.1", LD_TEXT + LD_DATA)
    resident_file(vm, "libc.so.7", LIBC_TEXT + LIBC_DATA)
    progs = ["doexec"] if shared_binary else [f"doexec{i}" for i in range(nworkers)]
    for prog in progs:
        resident_file(vm, prog, PROG_TEXT + PROG_DATA)
    out: list[tuple[Proc, Worker]] = []
    for i in range(nworkers):
        prog = progs[0] if shared_binary else progs[i]
        out.append((_worker_proc(vm, i), _doexec_worker(vm, doexec_segments(prog))))
    return out


def _doexec_worker(vm: Vm, segments: list[Segment]) -> Worker:
    image = segments[0].file
    segs = [(vm.files[s.file], s.offset, s.addr, s.pages, s.prot) for s in segments]

    async def worker(p: Proc, seed: int, done: Done) -> None:
        value = 0
        await stagger(seed)
        while True:
            await ops.cost("execve")
            await exec_new_vmspace(p, image, segs)
            # The image activator's stack and the program's bss (zero-fill).
            await vm_mmap(p, STACK_ADDR, STACK_PAGES, "rw", False, None, 0, None)
            await vm_mmap(p, BSS_ADDR, BSS_PAGES, "rw", False, None, 0, None)
            for i in range(STACK_PAGES):
                value += 1
                await proc_touch(p, STACK_ADDR + i * PAGE_SIZE, True, value)
            # The runtime linker relocates, then main() runs and calls execve again.
            for s in segments:
                for i in range(s.reads):
                    await proc_touch(p, s.addr + i * PAGE_SIZE, False)
                for i in range(s.writes):
                    value += 1
                    await proc_touch(p, s.addr + (s.pages - 1 - i) * PAGE_SIZE, True, value)
            for i in range(BSS_PAGES):
                value += 1
                await proc_touch(p, BSS_ADDR + i * PAGE_SIZE, True, value)
            await ops.cost("rtld")
            done("exec")
    return worker


async def stagger(seed: int) -> None:
    """Start a worker a seeded 0-10 us late: real workers never start in lockstep."""
    await ops.cost("user touch", random.Random(seed).randrange(2_000))


def _worker_proc(vm: Vm, i: int) -> Proc:
    p = proc_create(vm, f"w{i}")
    p.nthreads = 1
    return p


# ---------------------------------------------------------------- page-fault loops

MAP_PAGES = 128            # pages mapped, touched and unmapped per round (not 128 MiB:
                           # the round's mmap/munmap is amortised over fewer pages)
MAP_ADDR = 0x2000_0000


def page_fault(vm: Vm, nworkers: int, file: bool, shared: bool, write: bool
               ) -> list[tuple[Proc, Worker]]:
    """will-it-scale's page_fault loops: map MAP_PAGES pages (anonymous, or of one file
    every worker shares), touch each page once, unmap; one operation per page."""
    obj = resident_file(vm, "shared.dat", MAP_PAGES) if file else None

    async def worker(p: Proc, seed: int, done: Done) -> None:
        value = 0
        await stagger(seed)
        while True:
            await ops.cost("syscall")
            await vm_mmap(p, MAP_ADDR, MAP_PAGES, "rw", shared, obj, 0, None)
            for i in range(MAP_PAGES):
                value += 1
                await proc_touch(p, MAP_ADDR + i * PAGE_SIZE, write, value)
                await ops.cost("user touch")
                done("page")
            await ops.cost("syscall")
            await sys_munmap(p, MAP_ADDR, MAP_PAGES)
    return [(_worker_proc(vm, i), worker) for i in range(nworkers)]


# ---------------------------------------------------------------- calibration

def hot_lock(vm: Vm, nworkers: int) -> list[tuple[Proc, Worker]]:
    """W5's one hot lock: every worker thinks, takes one global mutex, works under it,
    drops it.  A closed queue whose analytic bound the simulator must respect."""
    lock = Lock("hot lock", "hot", "mtx")

    async def worker(p: Proc, seed: int, done: Done) -> None:
        await stagger(seed)
        while True:
            await ops.cost("hot-lock think")
            await mtx_lock(lock)
            await ops.cost("hot-lock hold")
            await mtx_unlock(lock)
            done("acquisition")
    return [(_worker_proc(vm, i), worker) for i in range(nworkers)]


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A named workload: what one operation is and how to build its workers."""

    name: str
    unit: str                 # what one operation is ("exec", "page")
    what: str
    build: Callable[[Vm, int, bool], list[tuple[Proc, Worker]]]


WORKLOADS: dict[str, WorkloadSpec] = {w.name: w for w in (
    WorkloadSpec("doexec", "exec",
                 "each worker re-executes a dynamically linked binary; all share "
                 "ld-elf.so.1 and libc.so.7",
                 lambda vm, n, shared: doexec(vm, n, shared)),
    WorkloadSpec("page-fault1", "page",
                 "anonymous zero-fill write faults, a mapping per worker "
                 "(negative control)",
                 lambda vm, n, _: page_fault(vm, n, file=False, shared=False, write=True)),
    WorkloadSpec("page-fault2-shared", "page",
                 "private (COW) writes to one file all workers map",
                 lambda vm, n, _: page_fault(vm, n, file=True, shared=False, write=True)),
    WorkloadSpec("page-fault3-shared", "page",
                 "MAP_SHARED writes to one file all workers map (negative control)",
                 lambda vm, n, _: page_fault(vm, n, file=True, shared=True, write=True)),
    WorkloadSpec("page-fault4-shared", "page",
                 "private reads of one file all workers map",
                 lambda vm, n, _: page_fault(vm, n, file=True, shared=False, write=False)),
    WorkloadSpec("hot-lock", "acquisition",
                 "calibration: one global mutex, a closed queue with a known bound",
                 lambda vm, n, _: hot_lock(vm, n)),
)}


def workload_named(name: str) -> WorkloadSpec:
    """The workload `name`, or a KeyError listing the known ones."""
    try:
        return WORKLOADS[name]
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None


def worker_seed(seed: int, i: int) -> int:
    """Worker i's own seed, derived from the run's."""
    return random.Random(seed * 1_000_003 + i).randrange(1 << 31)
