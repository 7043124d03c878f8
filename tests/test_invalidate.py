"""Invalidation paths: truncate(2) through vnode_pager_setsize / vm_object_page_remove,
msync(2) with MS_INVALIDATE through vm_map_sync / vm_object_sync, and pwrite(2), each
run under the runtime with the structural invariants checked after every step."""

from __future__ import annotations

from typing import Any

import pytest

from faultline.check.explore import CheckConfig, check_scenario
from faultline.check.judging.invariants import StructureChecker
from faultline.check.search.strategies import RandomStrategy
from faultline.kern.policy import policy_named
from faultline.kern.proc import proc_create, proc_touch, sys_mlock, sys_msync, vm_mmap
from faultline.kern.vm import Vm
from faultline.kern.vm_map import KERN_INVALID_ADDRESS, KERN_INVALID_ARGUMENT, KERN_SUCCESS
from faultline.kern.vm_object import vm_object_allocate_vnode
from faultline.kern.vm_page import vm_page_sunbusy, vm_page_trysbusy, vm_page_tryxbusy
from faultline.kern.vnode_pager import EFBIG, sys_pwrite, sys_truncate
from faultline.rt import ops
from faultline.rt.execution import Execution
from faultline.rt.sync import rw_unlock, rw_wlock
from faultline.scenario.loader import ScenarioError, load_scenario, load_text
from faultline.scenario.spec import Op
from faultline.scenario.toml_out import to_toml

PAGE = 4096


def run(*bodies: Any, seed: str = "1") -> dict[str, Any]:
    """Run each body(vm, got) as a thread over one fresh Vm; fail on any violation."""
    vm = Vm(policy_named("sbusy"))
    got: dict[str, Any] = {"vm": vm}
    ex = Execution(RandomStrategy(seed), [StructureChecker(vm)], 50_000)
    for i, body in enumerate(bodies):
        ex.spawn(f"t{i}", "test", body(vm, got))
    out = ex.run()
    assert out.violation is None, out.violation.message
    return got


async def _file_mapped(vm: Vm, got: dict[str, Any], shared: bool) -> None:
    f = got["f"] = vm_object_allocate_vnode(vm, "F", (5, 6, 7))
    vm.files["F"] = f
    p = got["p"] = proc_create(vm, "p")
    await vm_mmap(p, 0x1000, 3, "rw", shared, f, 0, None)
    for i in range(3):
        got[f"r{i}"] = await proc_touch(p, 0x1000 + i * PAGE, False)


def test_truncate_removes_and_unmaps_the_pages_past_the_end() -> None:
    async def body(vm: Vm, got: dict[str, Any]) -> None:
        await _file_mapped(vm, got, shared=True)
        f, p = got["f"], got["p"]
        await sys_truncate(f, 1)
        got["after0"] = await proc_touch(p, 0x1000, False)
        got["after2"] = await proc_touch(p, 0x3000, False)     # SIGBUS past the end
        got["write2"] = await sys_pwrite(f, 2, 9)
    g = run(body)
    f, p = g["f"], g["p"]
    assert (g["r0"], g["r1"], g["r2"]) == (5, 6, 7)
    assert f.size == 1 and sorted(f.pages) == [0] and f.file == (5,)
    assert g["after0"] == 5 and g["after2"] is None and g["write2"] == EFBIG
    assert sorted(p.map.pmap.ptes) == [0x1000]


def test_truncate_keeps_a_private_copy() -> None:
    async def body(vm: Vm, got: dict[str, Any]) -> None:
        await _file_mapped(vm, got, shared=False)
        p = got["p"]
        await proc_touch(p, 0x3000, True, 42)                  # copied into the shadow
        await sys_truncate(got["f"], 1)
        got["copy"] = await proc_touch(p, 0x3000, False)
        got["file"] = await proc_touch(p, 0x2000, False)
    g = run(body)
    assert g["copy"] == 42 and g["file"] is None


@pytest.mark.parametrize("seed", [str(i) for i in range(12)])
def test_truncate_waits_for_a_shared_busy(seed: str) -> None:
    """vm_object_page_remove must not take a page somebody share-busied: it sleeps
    ("vmopar") until the sharer is done, then frees it."""
    async def holder(vm: Vm, got: dict[str, Any]) -> None:
        await _file_mapped(vm, got, shared=True)
        f = got["f"]
        m = f.pages[2]
        await rw_wlock(f.lock)
        assert await vm_page_trysbusy(m)
        await rw_unlock(f.lock)
        got["m"] = m
        for _ in range(3):
            await ops.pause("hold")
            got.setdefault("seen", []).append(m.freed)
        await vm_page_sunbusy(m)

    async def truncater(vm: Vm, got: dict[str, Any]) -> None:
        while "m" not in got:
            await ops.pause("wait")
        await sys_truncate(got["f"], 2)
        got["freed"] = got["m"].freed

    g = run(holder, truncater, seed=seed)
    assert g["seen"] == [False, False, False] and g["freed"]


def test_truncate_only_invalidates_a_wired_page() -> None:
    async def body(vm: Vm, got: dict[str, Any]) -> None:
        await _file_mapped(vm, got, shared=True)
        f, p = got["f"], got["p"]
        assert await sys_mlock(p, 0x3000, 1) == KERN_SUCCESS
        got["m"] = f.pages[2]
        await sys_truncate(f, 2)
        got["after"] = await proc_touch(p, 0x3000, False)
    g = run(body)
    m, f = g["m"], g["f"]
    assert f.pages.get(2) is m and not m.valid and not m.freed and m.wire_count == 1
    assert not m.pv_list and g["after"] is None


def test_msync_invalidate_drops_clean_pages_and_keeps_dirty_ones() -> None:
    async def body(vm: Vm, got: dict[str, Any]) -> None:
        await _file_mapped(vm, got, shared=True)
        f, p = got["f"], got["p"]
        await proc_touch(p, 0x2000, True, 66)                  # page 1 dirty
        got["clean"], got["dirty"] = f.pages[0], f.pages[1]
        got["rv"] = await sys_msync(p, 0x1000, 3, True)
        got["resident"] = sorted(f.pages)
        got["reread"] = [await proc_touch(p, 0x1000 + i * PAGE, False) for i in range(3)]
    g = run(body)
    assert g["rv"] == KERN_SUCCESS and g["resident"] == [1]
    assert g["clean"].freed and not g["dirty"].freed and g["dirty"].dirty
    assert g["reread"] == [5, 66, 7]


def test_msync_invalidate_reaches_the_file_below_a_shadow() -> None:
    async def body(vm: Vm, got: dict[str, Any]) -> None:
        await _file_mapped(vm, got, shared=False)
        f, p = got["f"], got["p"]
        await proc_touch(p, 0x2000, True, 66)                  # a private copy
        got["rv"] = await sys_msync(p, 0x1000, 3, True)
        got["resident"] = sorted(f.pages)
        got["reread"] = [await proc_touch(p, 0x1000 + i * PAGE, False) for i in range(3)]
    g = run(body)
    assert g["rv"] == KERN_SUCCESS and g["resident"] == []
    assert g["reread"] == [5, 66, 7]


def test_msync_refuses_holes_and_wired_ranges() -> None:
    async def body(vm: Vm, got: dict[str, Any]) -> None:
        await _file_mapped(vm, got, shared=True)
        p = got["p"]
        got["hole"] = await sys_msync(p, 0x1000, 4, True)
        got["unmapped"] = await sys_msync(p, 0x9000, 1, True)
        await sys_mlock(p, 0x1000, 1)
        got["wired"] = await sys_msync(p, 0x1000, 1, True)
        got["flush"] = await sys_msync(p, 0x1000, 1, False)
    g = run(body)
    assert g["hole"] == g["unmapped"] == KERN_INVALID_ADDRESS
    assert g["wired"] == KERN_INVALID_ARGUMENT and g["flush"] == KERN_SUCCESS


def test_pwrite_is_seen_through_shared_and_uncopied_private_mappings() -> None:
    async def body(vm: Vm, got: dict[str, Any]) -> None:
        await _file_mapped(vm, got, shared=False)
        f, p = got["f"], got["p"]
        q = proc_create(vm, "q")
        await vm_mmap(q, 0x1000, 3, "rw", True, f, 0, None)
        await proc_touch(p, 0x2000, True, 66)                  # p's page 1: its own
        for i, v in enumerate((10, 11, 12)):
            assert await sys_pwrite(f, i, v) is None
        got["p"] = [await proc_touch(p, 0x1000 + i * PAGE, False) for i in range(3)]
        got["q"] = [await proc_touch(q, 0x1000 + i * PAGE, False) for i in range(3)]
    g = run(body)
    assert g["p"] == [10, 66, 12] and g["q"] == [10, 11, 12]


# ---------------------------------------------------------------- the scenario ops

FILE_OPS = """\
name = "file-ops"
description = "truncate, pwrite and msync from a scenario"

[[file]]
name = "F"
pages = [5, 6, 7]

[[process]]
name = "p"
[[process.map]]
addr = 0x1000
pages = 3
share = "shared"
file = "F"

[[thread]]
name = "A"
process = "p"
ops = [{ops}]
"""


def _ops_scenario(*ops: str) -> Any:
    return load_text(FILE_OPS.format(ops=", ".join(f'"{o}"' for o in ops)), "f.toml")


def test_the_file_ops_load_and_print_back() -> None:
    s = _ops_scenario("pwrite F 2 9", "msync 0x1000 3 invalidate", "msync 0x1000 1",
                      "truncate F 0")
    ops_ = s.threads[0].ops
    assert [str(o) for o in ops_] == ["pwrite F 2 9", "msync 0x1000 3 invalidate",
                                      "msync 0x1000 1", "truncate F 0"]
    assert ops_[0] == Op("pwrite", file="F", offset=2, value=9)
    assert ops_[1].invalidate and not ops_[2].invalidate
    assert ops_[3] == Op("truncate", file="F", pages=0)
    assert load_text(to_toml(s), "f.toml") == s


@pytest.mark.parametrize(("op", "words"), [
    ("truncate G 1", "'truncate FILE SIZE' with FILE the name of a [[file]], got 'truncate G 1'"),
    ("truncate F 4", "'truncate FILE SIZE' with SIZE at most 3 (file 'F' has 3 pages; "
                     "files only shrink)"),
    ("truncate F -1", "'truncate FILE SIZE' with SIZE an integer from 0 to 1024 (files "
                      "hold at most 1024 pages)"),
    ("pwrite F 3 1", "'pwrite FILE OFFSET VALUE' with OFFSET below 3 (file 'F' has 3 pages)"),
    ("pwrite F 0", "expected 'pwrite FILE OFFSET VALUE', got 'pwrite F 0'"),
    ("msync 0x1001 1", "'msync ADDR PAGES [invalidate]' with ADDR"),
    ("msync 0x1000 1 flush", "expected 'msync ADDR PAGES [invalidate]'"),
])
def test_file_op_errors_name_the_op(op: str, words: str) -> None:
    with pytest.raises(ScenarioError) as e:
        _ops_scenario(op)
    assert words in str(e.value) and "thread[0].ops[0]" in str(e.value), str(e.value)


def test_a_scenario_sees_its_file_shrink_and_its_pwrite() -> None:
    s = _ops_scenario("pwrite F 0 8", "read 0x1000 expect 8", "msync 0x1000 3 invalidate",
                      "read 0x1000 expect 8", "truncate F 1", "read 0x2000",
                      "read 0x1000 expect 8")
    for policy in ("sbusy", "xbusy"):
        r = check_scenario(s, CheckConfig(policy=policy, runs=3, seed=1))
        assert r.verdict == "pass", r.counterexample


def test_the_oracle_rejects_a_read_past_the_end_that_succeeds() -> None:
    """A genuinely wrong result still fails: the mapping of a truncated page kept."""
    import faultline.kern.vnode_pager as vp

    async def keep_pages(obj: Any, npages: int) -> None:
        await rw_wlock(obj.lock)
        obj.size, obj.file = npages, obj.file[:npages]     # no vm_object_page_remove
        await rw_unlock(obj.lock)

    s = _ops_scenario("read 0x2000", "truncate F 1", "read 0x2000")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vp, "vnode_pager_setsize", keep_pages)
        r = check_scenario(s, CheckConfig(policy="sbusy", runs=1, seed=1))
    assert r.verdict == "violation"
    assert "past the end of the truncated file" in r.counterexample.violation["message"]


# ---------------------------------------------------------------- sbusy-vs-invalidate

@pytest.mark.slow
@pytest.mark.parametrize("policy", ["sbusy", "xbusy", "sbusy-no-valid-recheck"])
def test_sbusy_vs_invalidate_is_exhaustive_within_its_bound(policy: str) -> None:
    """Both landed policies pass every interleaving within the stated bound, and so does
    D51474 without its validity re-check under the shared busy: the variant is argued
    not a bug (kern.mutants.SbusyNoValidRecheck), and this is the scenario that would
    catch it if validity could shrink while the fault holds the object lock."""
    s = load_scenario("sbusy-vs-invalidate")
    r = check_scenario(s, CheckConfig(policy=policy, strategy="dpor"))
    assert r.verdict == "pass" and r.exhaustive, r.counterexample
    assert r.coverage.get("page-remove-wait-busy", 0) > 0      # the invalidation waited
    if policy != "xbusy":                                       # ... on a shared busy
        assert r.coverage.get("page-remove-wait-sbusy", 0) > 0
        assert r.coverage.get("sbusy-soft-backing", 0) > 0


@pytest.mark.slow
def test_an_invalidation_that_skips_busy_pages_is_caught() -> None:
    """A genuinely wrong kernel still fails sbusy-vs-invalidate: vm_object_page_remove
    that passes over a busy page instead of sleeping on it leaves a page past the end
    of the file for the fault that held it to map."""
    import faultline.kern.vnode_pager as vp
    from faultline.kern.vm_object import vm_object_page_remove_one

    async def skipping(obj: Any, start: int, end: int, options: int) -> None:
        for pindex in sorted(i for i in obj.pages if start <= i < end):
            p = obj.pages[pindex]
            if await vm_page_tryxbusy(p):
                await vm_object_page_remove_one(obj, p, options)

    s = load_scenario("sbusy-vs-invalidate")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(vp, "vm_object_page_remove", skipping)
        r = check_scenario(s, CheckConfig(policy="sbusy", strategy="dpor"))
    assert r.verdict == "violation"
    assert r.counterexample.violation["kind"] in ("memory", "invariant", "panic")
