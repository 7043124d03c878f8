"""A scenario instantiated in one execution: files, processes, threads and their ops.

What lives here: `World`, which builds the VM state a `Scenario` describes (sequential
setup in one thread, then every scenario thread spawned at once) and interprets each
thread's op list through the `kern` system calls.  Rule kept: setup is sequential (one
thread, no interleavings); a forked child's setup is run by the thread that forked it,
right after fork returns; threads of processes forked during setup start with the
others, threads of processes forked later start when their fork (and the child's
setup) is done.  A read's `expect VALUE` and a `waitpid`'s wait for the child's exit
are the scenario's, so they live here; the oracle judges the expectation (a note).
Must not be added: checking (observers do that) or scheduling (strategies do that).
"""

from __future__ import annotations

from typing import Any

from faultline.kern.policy import policy_named
from faultline.kern.proc import (
    Proc,
    exec_new_vmspace,
    exit1,
    fork1,
    proc_create,
    proc_touch,
    sys_minherit,
    sys_mlock,
    sys_mprotect,
    sys_msync,
    sys_munlock,
    sys_munmap,
    thread_exit,
    vm_mmap,
)
from faultline.kern.vm import Vm
from faultline.kern.vm_object import VmObject, vm_object_allocate_vnode
from faultline.kern.vm_pageout import vm_pageout_at
from faultline.kern.vnode_pager import sys_pwrite, sys_truncate
from faultline.rt import ops
from faultline.rt.sync import Flag, flag_post, flag_wait
from faultline.scenario.spec import Op, ProcessSpec, Scenario, ThreadSpec


class World:
    """The model state of one run of `scenario` under `policy`."""

    # A world restored from an image of its setup (check.running.setup_image) skips the
    # build; whether it did decides nothing later, so the state key leaves it out.
    fl_history = frozenset({"restored"})

    def __init__(self, scenario: Scenario, policy: str, npv_locks: int = 8) -> None:
        self.scenario = scenario
        self.vm = Vm(policy_named(policy), npv_locks=npv_locks)
        self.vm.prefault = scenario.vm.prefault
        self.procs: dict[str, Proc] = {}
        self.flags = {name: Flag(name) for name in _events(scenario)}
        # Posted when the child's exit returns: the flags `waitpid CHILD` sleeps on.
        self.exited = {name: Flag(f"exit:{name}") for name in _waited(scenario)}
        self.in_setup = True
        self.restored = False
        self._deferred: list[ThreadSpec] = []

    # -- setup
    async def setup(self) -> None:
        """Build the starting state, then start the threads.  A restored world (its
        build already done, check.running.setup_image) only starts them, from this same
        frame: its state key is that of a world that built itself."""
        if not self.restored:
            await self.build()
        for ts in [*self._threads_of(self._initial()), *self._deferred]:
            await self.start_thread(ts)

    async def build(self) -> None:
        """Create files and starting processes and run their setup ops, sequentially."""
        for f in self.scenario.files:
            self.vm.files[f.name] = vm_object_allocate_vnode(self.vm, f.name, f.pages)
        for ps in self.scenario.processes:
            if ps.parent is not None:
                continue
            p = self.procs[ps.name] = proc_create(self.vm, ps.name)
            p.nthreads = 1
            if ps.image is not None:
                await self.do_exec(p, ps.image)
            for mp in ps.mappings:
                obj = self.vm.files[mp.file] if mp.file is not None else None
                await vm_mmap(p, mp.addr, mp.pages, mp.prot, mp.share == "shared", obj,
                              mp.offset, mp.inherit)
                for i, value in enumerate(mp.init):
                    await proc_touch(p, mp.addr + i * 4096, True, value)
            await self.run_setup(p, ps.setup, "setup")
            p.nthreads = 0
        self.in_setup = False
        # The memory limit starts after setup, which builds the scenario's state.
        if self.scenario.vm.free_pages is not None:
            self.vm.domain.limited = True
            self.vm.domain.free_count = self.scenario.vm.free_pages
        await ops.note("setup-done")

    def _initial(self) -> list[str]:
        return [ps.name for ps in self.scenario.processes if ps.parent is None]

    def _threads_of(self, procs: list[str]) -> list[ThreadSpec]:
        return [t for t in self.scenario.threads if t.process in procs]

    async def run_setup(self, p: Proc, setup: tuple[Op, ...], who: str) -> None:
        """Process `p`'s setup ops in order, run by thread `who` (until `p` exits)."""
        for op in setup:
            if p.map is None:
                break
            await self.do_op(p, op, who)

    async def start_thread(self, ts: ThreadSpec) -> None:
        """Spawn scenario thread `ts` in its process."""
        p = self.procs.get(ts.process)
        if p is None or p.map is None:
            return                       # the process already exited
        # thread_link: the count is (A), and threads already started may be leaving.
        await ops.atomic_add_int(p, "nthreads", 1)
        await ops.spawn(ts.name, ts.process, self.run_thread(ts, p))

    async def run_thread(self, ts: ThreadSpec, p: Proc) -> None:
        """A scenario thread: its ops in order, until done or its process single-threads."""
        for op in ts.ops:
            if await ops.racy_load(p, "single") or await ops.racy_load(p, "map") is None:
                await ops.note("thread-stopped", {"thread": ts.name, "op": str(op)})
                break
            await ops.note("op", {"thread": ts.name, "op": str(op)})
            await self.do_op(p, op, ts.name)
        if p.map is not None or p.nthreads:
            await thread_exit(p)

    # -- ops
    async def do_op(self, p: Proc, op: Op, who: str = "setup") -> Any:
        """Perform one scenario op as process `p`, run by thread `who`."""
        match op.name:
            case "read":
                return await self.do_read(p, op, who)
            case "write":
                return await proc_touch(p, _int(op.addr), True, _int(op.value))
            case "fork":
                return await self.do_fork(p, _str(op.target), who)
            case "exit":
                return await self.do_exit(p)
            case "exec":
                return await self.do_exec(p, _str(op.target))
            case "mmap":
                obj = self.vm.files[op.file] if op.file is not None else None
                return await vm_mmap(p, _int(op.addr), _int(op.pages), _str(op.prot),
                                     op.share == "shared", obj, op.offset or 0, None)
            case "munmap":
                return await sys_munmap(p, _int(op.addr), _int(op.pages))
            case "mprotect":
                return await sys_mprotect(p, _int(op.addr), _int(op.pages), _str(op.prot))
            case "minherit":
                return await sys_minherit(p, _int(op.addr), _int(op.pages), _str(op.inherit))
            case "mlock":
                return await sys_mlock(p, _int(op.addr), _int(op.pages))
            case "munlock":
                return await sys_munlock(p, _int(op.addr), _int(op.pages))
            case "pageout":
                assert p.map is not None
                return await vm_pageout_at(p.map, _int(op.addr))
            case "truncate":
                return await sys_truncate(self.vm.files[_str(op.file)], _int(op.pages))
            case "pwrite":
                return await sys_pwrite(self.vm.files[_str(op.file)], _int(op.offset),
                                        _int(op.value))
            case "msync":
                return await sys_msync(p, _int(op.addr), _int(op.pages), op.invalidate)
            case "post":
                return await flag_post(self.flags[_str(op.target)])
            case "wait":
                return await flag_wait(self.flags[_str(op.target)])
            case "waitpid":
                return await _kern_wait(self.exited[_str(op.target)])
            case _:
                raise ValueError(f"unknown scenario op {op.name!r}")

    async def do_read(self, p: Proc, op: Op, who: str) -> int | None:
        """A user load; with `expect VALUE`, the value seen goes to the oracle to judge."""
        got = await proc_touch(p, _int(op.addr), False)
        if op.value is not None:
            await ops.note("read-expect", {"thread": who, "proc": p.name, "va": op.addr,
                                           "expected": op.value, "seen": got})
        return got

    async def do_exit(self, p: Proc) -> None:
        """exit1, then wake the process's waitpid if it is gone.  The exit1 that tore it
        down removed it from vm.procs in this same step, so the post follows at once; a
        thread that lost the race to single-thread it sees it gone only after that, and
        posting again is harmless (the flag is one-shot)."""
        await exit1(p)
        if p.name in self.exited and p not in self.vm.procs:
            await flag_post(self.exited[p.name])

    async def do_fork(self, p: Proc, child: str, who: str) -> None:
        """fork, run the child's setup as the child, then start the child's threads
        (after the scenario's setup, at once)."""
        c = self.procs[child] = await fork1(p, child)
        await self.run_setup(c, self._spec(child).setup, who)
        for ts in self._threads_of([child]):
            if self.in_setup:
                self._deferred.append(ts)
            else:
                await self.start_thread(ts)

    async def do_exec(self, p: Proc, image: str) -> None:
        """exec IMAGE: a fresh vmspace mapping the image's segments from their files."""
        spec = next(i for i in self.scenario.images if i.name == image)
        segs: list[tuple[VmObject, int, int, int, str]] = [
            (self.vm.files[s.file], s.offset, s.addr, s.pages, s.prot) for s in spec.segments]
        await exec_new_vmspace(p, image, segs)


    def _spec(self, name: str) -> ProcessSpec:
        return next(ps for ps in self.scenario.processes if ps.name == name)


async def _kern_wait(exited: Flag) -> None:
    """kern_wait6 for one child: sleep ("wait", FreeBSD's wmesg) until its exit is
    posted.  One sleep whose check reads the flag, as flag_wait's: it is never
    unposted."""
    await ops.sleep(exited, "wait", None, lambda: not exited.posted)


def _waited(s: Scenario) -> list[str]:
    ops_ = [op for t in s.threads for op in t.ops]
    return sorted({op.target for op in ops_ if op.name == "waitpid" and op.target})


def _events(s: Scenario) -> list[str]:
    names = {op.target for t in s.threads for op in t.ops if op.name in ("post", "wait")}
    names |= {op.target for p in s.processes for op in p.setup if op.name in ("post", "wait")}
    return sorted(n for n in names if n is not None)


def _int(v: int | None) -> int:
    assert v is not None
    return v


def _str(v: str | None) -> str:
    assert v is not None
    return v
