"""Unit tests of the VM model, one module at a time, each run as a single thread (or a
few) under the runtime, with the structural invariants checked after every step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from faultline.check.judging.invariants import StructureChecker, check_structure
from faultline.check.search.strategies import RandomStrategy
from faultline.kern.pmap import Pte, pmap_create, pmap_enter, pmap_remove, pmap_remove_all
from faultline.kern.policy import policy_named
from faultline.kern.proc import fork1, proc_create, proc_touch, vm_mmap
from faultline.kern.vm import Vm
from faultline.kern.vm_fault import vm_fault
from faultline.kern.vm_map import (
    KERN_PROTECTION_FAILURE,
    KERN_SUCCESS,
    MAP_ENTRY_NEEDS_COPY,
    VM_PROT_READ,
    VM_PROT_WRITE,
    vm_map_lookup,
    vm_map_unlock_read,
)
from faultline.kern.vm_object import (
    OBJ_ONEMAPPING,
    OBJT_DEAD,
    vm_object_allocate_anon,
    vm_object_allocate_vnode,
    vm_object_deallocate,
    vm_object_shadow,
)
from faultline.kern.vm_page import (
    VM_ALLOC_SBUSY,
    vm_page_alloc,
    vm_page_busy_sleep,
    vm_page_trysbusy,
    vm_page_xunbusy,
)
from faultline.rt import ops
from faultline.rt.execution import Execution, Outcome
from faultline.rt.sync import rw_unlock, rw_wlock

Body = Callable[[Vm], Awaitable[Any]]


def run(*bodies: Body, policy: str = "sbusy", seed: str = "1") -> tuple[Vm, Outcome]:
    """Run each body as a thread over one fresh Vm; fail on any violation."""
    vm = Vm(policy_named(policy))
    ex = Execution(RandomStrategy(seed), [StructureChecker(vm)], 50_000)
    for i, body in enumerate(bodies):
        ex.spawn(f"t{i}", "test", body(vm))
    out = ex.run()
    assert out.violation is None, out.violation.message
    return vm, out


# ---------------------------------------------------------------- vm_object

def test_shadow_reuses_a_sole_anonymous_reference() -> None:
    got = {}

    async def body(vm: Vm) -> None:
        o = vm_object_allocate_anon(vm, 2, None)
        got["same"] = (await vm_object_shadow(o, 0, 2, False, vm))[0] is o
        o.ref_count = 2
        s, off = await vm_object_shadow(o, 1, 1, False, vm)
        got["s"], got["o"], got["off"] = s, o, off
        t, _ = await vm_object_shadow(s, 0, 1, True, vm)
        got["t"] = t
    run(body)
    s, o, t = got["s"], got["o"], got["t"]
    assert got["same"] and got["off"] == 0
    assert s.backing_object is o and s.backing_object_offset == 1 and o.shadow_count == 1
    assert s.flags & OBJ_ONEMAPPING
    assert t.ref_count == 2 and not t.flags & OBJ_ONEMAPPING and s.shadow_count == 1


async def _alloc(o: Any, pindex: int) -> Any:
    # vm_page_alloc fails only when a scenario limits memory; these tests do not.
    m = await vm_page_alloc(o, pindex)
    assert m is not None
    return m


def test_deallocate_collapses_then_terminates() -> None:
    got = {}

    async def body(vm: Vm) -> None:
        o = vm_object_allocate_anon(vm, 2, None)
        await rw_wlock(o.lock)
        p0, p1 = await _alloc(o, 0), await _alloc(o, 1)
        p0.valid = p1.valid = True
        await vm_page_xunbusy(p0)
        await vm_page_xunbusy(p1)
        await rw_unlock(o.lock)
        o.ref_count = 2                         # an entry and, soon, the shadow
        s, _ = await vm_object_shadow(o, 0, 2, False, vm)
        await rw_wlock(s.lock)
        q0 = await _alloc(s, 0)                # shadows p0
        q0.valid = True
        await vm_page_xunbusy(q0)
        await rw_unlock(s.lock)
        await vm_object_deallocate(o)           # the other reference goes: collapse
        got.update(o=o, s=s, p0=p0, p1=p1, q0=q0)
        await vm_object_deallocate(s)           # last reference: terminate
    vm, _ = run(body)
    o, s, p0, p1, q0 = (got[k] for k in ("o", "s", "p0", "p1", "q0"))
    assert o.type == OBJT_DEAD and s.type == OBJT_DEAD
    assert p0.freed and q0.freed and p1.freed        # p1 was renamed into s, then freed
    assert vm.counters.get("object_collapses") == 1
    assert vm.objects == []


# ---------------------------------------------------------------- vm_page busy

def test_busy_sleep_with_sbusy_flag_does_not_wait_for_sharers() -> None:
    got = {}

    async def body(vm: Vm) -> None:
        o = vm_object_allocate_anon(vm, 1, None)
        await rw_wlock(o.lock)
        m = await _alloc(o, 0)
        await vm_page_xunbusy(m)
        assert await vm_page_trysbusy(m)
        got["slept"] = await vm_page_busy_sleep(m, "vmpfw", VM_ALLOC_SBUSY)
        got["locked"] = o.lock.owner is not None
        await ops.busy(m.busy, "sunbusy")
        await rw_unlock(o.lock)
    run(body)
    assert got == {"slept": False, "locked": True}


# ---------------------------------------------------------------- pmap

def test_pmap_enter_replaces_and_remove_all_clears_every_pmap() -> None:
    got = {}

    async def body(vm: Vm) -> None:
        o = vm_object_allocate_anon(vm, 2, None)
        await rw_wlock(o.lock)
        a, b = await _alloc(o, 0), await _alloc(o, 1)
        a.valid = b.valid = True
        await rw_unlock(o.lock)
        p1, p2 = pmap_create(vm, "a"), pmap_create(vm, "b")
        await pmap_enter(p1, 0x1000, a, False, False)
        await pmap_enter(p2, 0x1000, a, False, False)
        await pmap_enter(p1, 0x1000, b, True, False)     # break before make
        got["after_replace"] = (list(a.pv_list), list(b.pv_list))
        await pmap_remove_all(vm, a)
        await pmap_remove(p1, 0, 0x10000)
        got["end"] = (p1.ptes, p2.ptes, a.pv_list, b.pv_list)
        vm.pmaps.clear()
        await vm_page_xunbusy(a)
        await vm_page_xunbusy(b)
    run(body)
    (a_pv, b_pv), end = got["after_replace"], got["end"]
    assert len(a_pv) == 1 and a_pv[0][1] == 0x1000 and len(b_pv) == 1
    assert end == ({}, {}, [], [])
    assert Pte.__slots__  # a slotted record


# ---------------------------------------------------------------- vm_map, vm_fault

def test_lookup_needs_copy_read_strips_write_and_write_shadows() -> None:
    got = {}

    async def body(vm: Vm) -> None:
        f = vm_object_allocate_vnode(vm, "f", (7,))
        p = proc_create(vm, "p")
        await vm_mmap(p, 0x1000, 1, "rw", False, f, 0, None)
        assert p.map is not None
        lk = await vm_map_lookup(p.map, 0x1000, VM_PROT_READ)
        got["read"] = (lk.object is f, lk.prot & VM_PROT_WRITE)
        await vm_map_unlock_read(p.map)
        lk = await vm_map_lookup(p.map, 0x1000, VM_PROT_WRITE)
        assert lk.entry is not None
        got["write"] = (lk.object is not f, lk.object.backing_object is f,
                        lk.entry.eflags & MAP_ENTRY_NEEDS_COPY)
        await vm_map_unlock_read(p.map)
        got["protfail"] = (await vm_map_lookup(p.map, 0x9000, VM_PROT_READ)).rv
    run(body)
    assert got["read"] == (True, 0)
    assert got["write"] == (True, True, 0)
    assert got["protfail"] != KERN_SUCCESS


def test_fault_zero_fill_copy_and_values() -> None:
    got = {}

    async def body(vm: Vm) -> None:
        f = vm_object_allocate_vnode(vm, "f", (40, 41))
        p = proc_create(vm, "p")
        await vm_mmap(p, 0x1000, 1, "rw", False, None, 0, None)
        await vm_mmap(p, 0x2000, 2, "rw", False, f, 0, None)
        await vm_mmap(p, 0x4000, 1, "r", False, None, 0, None)
        got["zero"] = await proc_touch(p, 0x1000, False)
        got["file"] = await proc_touch(p, 0x2000, False)
        await proc_touch(p, 0x2000, True, 99)
        got["after"] = (await proc_touch(p, 0x2000, False), f.pages[0].content)
        got["ro"] = await proc_touch(p, 0x4000, True, 1)
        assert p.map is not None
        got["rv"] = await vm_fault(p.map, 0x4000, VM_PROT_WRITE)
    vm, _ = run(body)
    assert got["zero"] == 0 and got["file"] == 40
    assert got["after"] == (99, 40)          # the private write never reaches the file
    assert got["ro"] is None and got["rv"] == KERN_PROTECTION_FAILURE
    assert vm.counters.get("v_cow_faults") == 1
    assert check_structure(vm) is None


def test_fork_copy_isolates_and_share_aliases() -> None:
    got = {}

    async def body(vm: Vm) -> None:
        p = proc_create(vm, "p")
        await vm_mmap(p, 0x1000, 1, "rw", False, None, 0, None)     # private: copy
        await vm_mmap(p, 0x2000, 1, "rw", True, None, 0, None)      # shared: share
        await proc_touch(p, 0x1000, True, 1)
        await proc_touch(p, 0x2000, True, 2)
        c = await fork1(p, "c")
        await proc_touch(c, 0x1000, True, 10)
        await proc_touch(c, 0x2000, True, 20)
        got["p"] = (await proc_touch(p, 0x1000, False), await proc_touch(p, 0x2000, False))
    run(body)
    assert got["p"] == (1, 20)


def _two_procs_race(got: dict[str, Any]) -> Body:
    async def setup(vm: Vm) -> None:
        f = vm_object_allocate_vnode(vm, "f", (5,))
        got["procs"] = []
        for name in ("a", "b"):
            p = proc_create(vm, name)
            await vm_mmap(p, 0x1000, 1, "rw", False, f, 0, None)
            got["procs"].append(p)
        for i, p in enumerate(got["procs"]):
            await ops.spawn(f"r{i}", p.name, proc_touch(p, 0x1000, False))
            await ops.spawn(f"w{i}", p.name, proc_touch(p, 0x1000, True, 50 + i))
    return setup


def test_concurrent_faults_under_both_policies_keep_invariants() -> None:
    for policy in ("xbusy", "sbusy"):
        for seed in range(20):
            got: dict[str, Any] = {}
            run(_two_procs_race(got), policy=policy, seed=str(seed))
            vals = sorted(p.map.pmap.ptes[0x1000].page.content for p in got["procs"])
            assert vals == [50, 51]


# ---------------------------------------------------------------- regressions

@pytest.mark.slow
def test_regression_scenarios_pass_under_both_policies() -> None:
    """Each model bug fixed so far has a scenario here that failed before the fix."""
    from pathlib import Path

    from faultline.check.explore import CheckConfig, check_scenario
    from faultline.scenario.loader import load_path

    files = sorted((Path(__file__).parent / "regressions").glob("*.toml"))
    assert len(files) >= 3
    for f in files:
        for policy in ("xbusy", "sbusy"):
            r = check_scenario(load_path(f), CheckConfig(policy=policy, runs=150))
            assert r.verdict == "pass", (f.name, policy, r.counterexample)


def test_clip_of_an_entry_without_object_shares_one_object() -> None:
    got = {}

    async def body(vm: Vm) -> None:
        p = proc_create(vm, "p")
        await vm_mmap(p, 0x1000, 2, "rw", False, None, 0, None)
        from faultline.kern.proc import sys_minherit
        await sys_minherit(p, 0x1000, 1, "share")
        assert p.map is not None
        got["objs"] = [e.object for e in p.map.entries]
    run(body)
    a, b = got["objs"]
    assert a is not None and a is b and a.ref_count == 2
