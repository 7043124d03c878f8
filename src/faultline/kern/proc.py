"""proc: processes as the VM sees them, and the system calls scenarios perform.

What lives here: `Proc` (a name and a vmspace), the CPU's user access that faults until
it succeeds (`proc_touch`, like trap() + vm_fault_trap), and fork, exit, exec, mmap,
munmap, mprotect, minherit, mlock/munlock.  Rule kept: each operation reports what it
did to observers with a note (the memory oracle's input); exit and exec first wait for
the process's other threads to leave the kernel (thread_single).  Must not be added:
scenario parsing or thread scheduling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from faultline.kern.pmap import PAGE_SIZE, pmap_user_access
from faultline.kern.vm_fault import vm_fault
from faultline.kern.vm_map import (
    KERN_SUCCESS,
    MAP_ENTRY_COW,
    MAP_ENTRY_NEEDS_COPY,
    PROT_BITS,
    VM_PROT_ALL,
    VM_PROT_READ,
    VM_PROT_WRITE,
    VmMap,
    vm_map_inherit,
    vm_map_insert,
    vm_map_lock,
    vm_map_pmap_enter,
    vm_map_protect,
    vm_map_remove,
    vm_map_sync,
    vm_map_unlock,
    vm_map_unwire,
    vm_map_wire,
    vmspace_alloc,
    vmspace_fork,
    vmspace_teardown,
)
from faultline.kern.vm_object import VmObject, vm_object_reference
from faultline.kern.vm_page import locked_by
from faultline.rt import ops
from faultline.rt.context import Tracked

if TYPE_CHECKING:
    from faultline.kern.vm import Vm


@dataclass(eq=False)
class Proc(Tracked):
    """struct proc, reduced to its vmspace and its threads' count."""

    vm: Vm = locked_by("C")
    name: str = locked_by("C", "")
    map: VmMap | None = locked_by("A")       # p_vmspace; replaced by exec, cleared by exit
    nthreads: int = locked_by("A", 0)        # threads inside the process
    single: bool = locked_by("A", False)     # P_SINGLE_EXIT: others must leave

    def __repr__(self) -> str:
        return self.name

    @property
    def fl_key(self) -> tuple[str, str]:
        """Stable name for partial-order reduction."""
        return ("proc", self.name)


def proc_create(vm: Vm, name: str) -> Proc:
    """A process with an empty vmspace (the scenario's starting processes)."""
    p = Proc(vm=vm, name=name, map=vmspace_alloc(vm, name))
    vm.procs.append(p)
    return p


async def vm_fault_trap(p: Proc, va: int, write: bool) -> str:
    """vm_fault_trap: the trap handler's call into vm_fault for a user fault."""
    assert p.map is not None
    await ops.cost("trap")
    return await vm_fault(p.map, va, VM_PROT_WRITE if write else VM_PROT_READ)


async def proc_touch(p: Proc, va: int, write: bool, value: int = 0) -> int | None:
    """A user load or store: retry through the pmap, faulting until it succeeds.
    Returns the value read (or written), or None for SIGSEGV.  A store is announced
    first: its write faults may copy a COW page before the store itself succeeds or
    fails (the memory oracle's copy window)."""
    if write:
        await ops.note("user-store-begin", {"proc": p.name, "va": va})
    while True:
        assert p.map is not None
        ok, got = await pmap_user_access(p.map.pmap, va, write, value)
        if ok:
            await ops.note("user-access", {"proc": p.name, "va": va, "write": write,
                                           "value": got})
            return got
        rv = await vm_fault_trap(p, va, write)
        if rv != KERN_SUCCESS:
            await ops.note("user-access", {"proc": p.name, "va": va, "write": write,
                                           "value": None, "error": rv})
            return None


# ---------------------------------------------------------------- mmap family

async def vm_mmap(p: Proc, addr: int, pages: int, prot: str, shared: bool,
                  obj: VmObject | None, offset: int, inherit: str | None) -> None:
    """vm_mmap_object: map `pages` pages at `addr`.  A private file mapping is COW and
    NEEDS_COPY from the start; anonymous memory gets its object at the first fault."""
    assert p.map is not None
    inheritance = inherit or ("share" if shared else "copy")
    eflags = 0 if shared or obj is None else MAP_ENTRY_COW | MAP_ENTRY_NEEDS_COPY
    if obj is not None:
        await vm_object_reference(obj)
    await vm_map_lock(p.map)
    vm_map_insert(p.map, obj, offset, addr, addr + pages * PAGE_SIZE, PROT_BITS[prot],
                  VM_PROT_ALL, eflags, inheritance)
    await vm_map_unlock(p.map)
    await ops.note("mmap", {"proc": p.name, "addr": addr, "pages": pages, "prot": prot,
                            "shared": shared, "object": repr(obj), "offset": offset,
                            "inherit": inheritance})


async def sys_munmap(p: Proc, addr: int, pages: int) -> None:
    """munmap."""
    assert p.map is not None
    span = {"proc": p.name, "addr": addr, "pages": pages}
    await ops.note("munmap-begin", span)
    await vm_map_remove(p.map, addr, addr + pages * PAGE_SIZE)
    await ops.note("munmap-end", span)


async def sys_msync(p: Proc, addr: int, pages: int, invalidate: bool) -> str:
    """msync (MS_INVALIDATE when `invalidate`): see vm_map_sync.  Invalidation only
    drops clean cached pages and this process's PTEs, so no access may observe it."""
    assert p.map is not None
    return await vm_map_sync(p.map, addr, addr + pages * PAGE_SIZE, invalidate)


async def sys_mprotect(p: Proc, addr: int, pages: int, prot: str) -> str:
    """mprotect."""
    assert p.map is not None
    span = {"proc": p.name, "addr": addr, "pages": pages, "prot": prot}
    await ops.note("mprotect-begin", span)
    rv = await vm_map_protect(p.map, addr, addr + pages * PAGE_SIZE, PROT_BITS[prot])
    await ops.note("mprotect-end", {**span, "rv": rv})
    return rv


async def sys_minherit(p: Proc, addr: int, pages: int, inherit: str) -> None:
    """minherit (vm_map_inherit reports the change while the map is locked)."""
    assert p.map is not None
    await vm_map_inherit(p.map, addr, addr + pages * PAGE_SIZE, inherit)


async def sys_mlock(p: Proc, addr: int, pages: int) -> str:
    """mlock: wire the range (every page is faulted with VM_FAULT_WIRE, which copies
    the COW pages of a writable private mapping: noted for the memory oracle)."""
    assert p.map is not None
    span = {"proc": p.name, "addr": addr, "pages": pages}
    await ops.note("mlock-begin", span)
    rv = await vm_map_wire(p.map, addr, addr + pages * PAGE_SIZE)
    await ops.note("mlock-end", {**span, "rv": rv})
    return rv


async def sys_munlock(p: Proc, addr: int, pages: int) -> None:
    """munlock."""
    assert p.map is not None
    await vm_map_unwire(p.map, addr, addr + pages * PAGE_SIZE)


# ---------------------------------------------------------------- fork, exit, exec

async def fork1(p: Proc, child: str) -> Proc:
    """fork1 -> vm_forkproc -> vmspace_fork: the child gets a copy of the vmspace
    according to each entry's inheritance."""
    assert p.map is not None
    await ops.note("fork-begin", {"parent": p.name, "child": child})
    new_map = await vmspace_fork(p.map, child)
    c = Proc(vm=p.vm, name=child, map=new_map)
    p.vm.procs.append(c)
    await ops.note("fork-end", {"parent": p.name, "child": child})
    return c


async def thread_single(p: Proc) -> bool:
    """thread_single(SINGLE_EXIT): become the process's single-threading thread and
    wait until we are its only thread.  False, at once, if another thread already is:
    exit1 and kern_execve then give up, and the thread leaves the process at its next
    boundary (thread_suspend_check: the winner's SINGLE_EXIT makes it exit)."""
    if not await ops.cas(p, "single", False, True):        # set P_SINGLE_EXIT
        await ops.note("thread-single-lost", p.name)
        return False
    while await ops.sleep(p, "exithold", None, lambda: p.nthreads > 1):
        pass
    return True


async def thread_exit(p: Proc) -> None:
    """A thread leaves the process (its op list is done, or the process is exiting)."""
    await ops.atomic_add_int(p, "nthreads", -1)
    await ops.wakeup(p)


async def exit1(p: Proc) -> None:
    """exit1 -> vmspace_exit: tear the address space down, dropping object references
    (which may collapse shadow chains of other processes).  A thread that loses the
    race to single-thread the process leaves it instead (the winner exits or execs)."""
    if not await thread_single(p):
        return
    assert p.map is not None
    m, p.map = p.map, None
    await vmspace_teardown(m)
    p.vm.procs.remove(p)
    await ops.note("exit", {"proc": p.name})


async def exec_new_vmspace(p: Proc, image: str,
                           segments: list[tuple[VmObject, int, int, int, str]]) -> None:
    """exec_new_vmspace + the image activator's mappings: a fresh vmspace whose text is
    mapped read-only and data privately (COW) from the shared file objects, with their
    resident pages pre-mapped read-only (MAP_PREFAULT, unless the scenario turns
    prefault off).
    `segments` are (object, offset, addr, pages, prot).  A thread that loses the race
    to single-thread the process gets ERESTART and leaves it at its next boundary."""
    if not await thread_single(p):
        return
    await ops.note("exec-begin", {"proc": p.name, "image": image})
    old = p.map
    new = vmspace_alloc(p.vm, p.name)
    for obj, offset, addr, pages, prot in segments:
        await vm_object_reference(obj)
        await vm_map_lock(new)
        vm_map_insert(new, obj, offset, addr, addr + pages * PAGE_SIZE, PROT_BITS[prot],
                      VM_PROT_ALL, MAP_ENTRY_COW | MAP_ENTRY_NEEDS_COPY, "copy")
        await vm_map_pmap_enter(new, addr, PROT_BITS[prot], obj, offset, pages)
        await vm_map_unlock(new)
        await ops.note("mmap", {"proc": p.name, "addr": addr, "pages": pages, "prot": prot,
                                "shared": False, "object": repr(obj), "offset": offset,
                                "inherit": "copy"})
    p.map = new
    if old is not None:
        await vmspace_teardown(old)
    await ops.atomic(p, "thread_single_end", lambda: setattr(p, "single", False))
    await ops.note("exec", {"proc": p.name, "image": image})

