"""pmap.py against amd64 pmap.c: pmap_enter's order (PTE cleared before the old page's
pv lock, pv entry listed before the PTE store, no pv lock for a same-page change),
pmap_copy's blocking pv locks and abandoned range, pmap_enter_quick/_object,
pmap_is_prefaultable and pmap_protect.  Each body runs under the runtime with the
structural invariants checked after every step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faultline.check.judging.invariants import StructureChecker, check_structure
from faultline.check.search.strategies import RandomStrategy
from faultline.kern.pmap import (
    Pmap,
    Pte,
    pmap_copy,
    pmap_create,
    pmap_enter,
    pmap_enter_object,
    pmap_enter_quick,
    pmap_is_prefaultable,
    pmap_protect,
)
from faultline.kern.policy import policy_named
from faultline.kern.proc import proc_create
from faultline.kern.vm import Vm
from faultline.kern.vm_object import vm_object_allocate_anon
from faultline.kern.vm_page import VmPage, vm_page_tryxbusy, vm_page_xunbusy
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Outcome, Thread
from faultline.rt.sync import Lock, rw_rlock, rw_unlock, rw_wlock

Body = Callable[[Vm], Awaitable[Any]]
PAGE = 0x1000
VM_PROT_READ, VM_PROT_WRITE = 1, 2


class LockLog(Hooks):
    """Every lock acquisition, with what the pmaps and pv lists held just before it."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, Lock, dict[str, Any]]] = []
        self.look: Callable[[], dict[str, Any]] = dict

    def acquiring(self, ex: Execution, t: Thread, op: ops.Acquire) -> None:
        """Before a blocking acquisition."""
        self.taken.append((t.name, op.lock, self.look()))

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        """A tried acquisition that succeeded."""
        if type(op) is ops.Acquire and op.try_ and result:
            self.taken.append((t.name, op.lock, self.look()))


def run(*bodies: Body, seed: str = "1", vm: Vm | None = None,
        observers: Sequence[Hooks] = ()) -> tuple[Vm, Outcome]:
    """Run each body as a thread over one Vm; return the outcome (violation or not)."""
    vm = vm or Vm(policy_named("sbusy"))
    ex = Execution(RandomStrategy(seed), [StructureChecker(vm), *observers], 50_000)
    vm.extra["ex"] = ex
    for i, body in enumerate(bodies):
        ex.spawn(f"t{i}", "test", body(vm))
    return vm, ex.run()


def run_ok(*bodies: Body, **kw: Any) -> Vm:
    vm, out = run(*bodies, **kw)
    assert out.violation is None, out.violation.message
    assert check_structure(vm) is None
    return vm


async def mapped_page(pm: Pmap, va: int, writable: bool = False) -> VmPage:
    """A fresh valid page (no object), mapped at va by pmap_enter, then unbusied."""
    m = pm.vm.new_page()
    m.valid = True
    assert await vm_page_tryxbusy(m)
    await pmap_enter(pm, va, m, writable, False)
    await vm_page_xunbusy(m)
    return m


def pv_locks(log: LockLog) -> list[Lock]:
    return [lk for _, lk, _ in log.taken if lk.name == "pmap pv list"]


# ---------------------------------------------------------------- pmap_enter

def test_enter_same_page_changes_protection_without_a_pv_lock() -> None:
    log = LockLog()
    got: dict[str, Any] = {}

    async def body(vm: Vm) -> None:
        pm = pmap_create(vm, "a")
        m = await mapped_page(pm, PAGE)
        got["before"] = len(pv_locks(log))
        assert await vm_page_tryxbusy(m)
        await pmap_enter(pm, PAGE, m, True, True)      # same page: RW and wired
        await vm_page_xunbusy(m)
        got["after"] = len(pv_locks(log))
        got["pm"], got["m"] = pm, m
    run_ok(body, observers=[log])
    pm, m = got["pm"], got["m"]
    assert got["before"] == 1 and got["after"] == 1     # the first enter took one
    assert pm.ptes[PAGE].writable and pm.ptes[PAGE].wired and m.writeable
    assert m.pv_list == [(pm, PAGE)]


def test_enter_replacement_clears_the_pte_before_the_old_pv_lock() -> None:
    log = LockLog()
    got: dict[str, Any] = {}

    async def body(vm: Vm) -> None:
        pm = pmap_create(vm, "a")
        old = await mapped_page(pm, PAGE, writable=True)
        new = vm.new_page()
        new.valid = True
        assert vm.pv_list_lock(old) is not vm.pv_list_lock(new)
        log.look = lambda: {"pte": PAGE in pm.ptes, "old_pv": list(old.pv_list),
                            "new_pv": list(new.pv_list)}
        log.taken.clear()
        assert await vm_page_tryxbusy(new)
        await pmap_enter(pm, PAGE, new, False, False)
        await vm_page_xunbusy(new)
        got.update(pm=pm, old=old, new=new)
    run_ok(body, observers=[log])
    pm, old, new = got["pm"], got["old"], got["new"]
    vm = pm.vm
    by_lock = {lk: seen for _, lk, seen in log.taken}
    at_old = by_lock[vm.pv_list_lock(old)]
    at_new = by_lock[vm.pv_list_lock(new)]
    assert not at_old["pte"] and at_old["old_pv"] == [(pm, PAGE)]   # PTE first
    assert not at_new["pte"] and at_new["old_pv"] == [] and at_new["new_pv"] == []
    assert pm.ptes[PAGE].page is new and new.pv_list == [(pm, PAGE)]
    assert old.pv_list == [] and not old.writeable


# ---------------------------------------------------------------- pmap_copy

def _copy_world(free_count: int | None, occupied: int | None = None) -> tuple[Vm, Body]:
    vm = Vm(policy_named("sbusy"))

    async def body(vm: Vm) -> None:
        src, dst = pmap_create(vm, "parent"), pmap_create(vm, "child")
        for i in range(1, 4):
            await mapped_page(src, i * PAGE, writable=(i == 1))
        if occupied is not None:
            await mapped_page(dst, occupied)
        if free_count is not None:
            vm.domain.limited, vm.domain.free_count = True, free_count
        await pmap_copy(dst, src, PAGE, 4 * PAGE)
        vm.extra["pmaps"] = (src, dst)
    return vm, body


def test_copy_copies_the_whole_range_while_memory_lasts() -> None:
    for free in (None, 1):
        vm, body = _copy_world(free)
        run_ok(body, vm=vm)
        src, dst = vm.extra["pmaps"]
        assert sorted(dst.ptes) == [PAGE, 2 * PAGE, 3 * PAGE]
        for va, pte in dst.ptes.items():
            assert pte.page is src.ptes[va].page and (dst, va) in pte.page.pv_list
            assert not pte.wired
        assert dst.ptes[PAGE].writable and not dst.ptes[2 * PAGE].writable


def test_copy_abandons_the_range_without_a_free_page() -> None:
    vm, body = _copy_world(0)
    run_ok(body, vm=vm)
    src, dst = vm.extra["pmaps"]
    assert dst.ptes == {}
    assert all(pv == [(src, va)] for va, pv in
               ((va, pte.page.pv_list) for va, pte in src.ptes.items()))


def test_copy_stops_at_an_occupied_destination_slot() -> None:
    vm, body = _copy_world(None, occupied=2 * PAGE)
    run_ok(body, vm=vm)
    src, dst = vm.extra["pmaps"]
    assert sorted(dst.ptes) == [PAGE, 2 * PAGE]
    assert dst.ptes[PAGE].page is src.ptes[PAGE].page
    assert dst.ptes[2 * PAGE].page is not src.ptes[2 * PAGE].page   # not replaced


def test_copy_waits_for_a_held_pv_lock_instead_of_skipping() -> None:
    # The holder keeps the pv lock of the second page until the copier's next op is
    # the acquisition of that lock, then pauses (so a copier able to go, a try, goes
    # first) and only then releases: a blocking acquisition copies every page.
    def holder_and_copier(seed: int) -> Vm:
        vm = Vm(policy_named("sbusy"))

        async def holder(vm: Vm) -> None:
            src, dst = pmap_create(vm, "parent"), pmap_create(vm, "child")
            pages = [await mapped_page(src, i * PAGE) for i in range(1, 4)]
            lock = vm.pv_list_lock(pages[1])
            await rw_wlock(lock)
            await ops.spawn("copier", "test", pmap_copy(dst, src, PAGE, 4 * PAGE))
            ex = vm.extra["ex"]
            copier = next(t for t in ex.threads if t.name == "copier")
            while not copier.done and not (type(copier.pending) is ops.Acquire
                                           and copier.pending.lock is lock):
                await ops.pause("hold")
            await ops.pause("hold")
            await rw_unlock(lock)
            vm.extra["pmaps"] = (src, dst)
        run_ok(holder, vm=vm, seed=str(seed))
        return vm

    for seed in range(8):
        vm = holder_and_copier(seed)
        src, dst = vm.extra["pmaps"]
        assert sorted(dst.ptes) == sorted(src.ptes), seed


# ---------------------------------------------------------------- prefault

def test_enter_quick_maps_read_only_and_never_replaces() -> None:
    got: dict[str, Any] = {}

    async def body(vm: Vm) -> None:
        pm = pmap_create(vm, "a")
        first = await mapped_page(pm, PAGE, writable=True)
        other = vm.new_page()
        other.valid = True
        got["free_before"] = await pmap_is_prefaultable(pm, 2 * PAGE)
        got["taken"] = await pmap_is_prefaultable(pm, PAGE)
        await pmap_enter_quick(pm, PAGE, other)           # occupied: nothing happens
        await pmap_enter_quick(pm, 2 * PAGE, other)       # no busy needed
        got["free_after"] = await pmap_is_prefaultable(pm, 2 * PAGE)
        got.update(pm=pm, first=first, other=other)
    run_ok(body)
    pm, first, other = got["pm"], got["first"], got["other"]
    assert got["free_before"] and not got["taken"] and not got["free_after"]
    assert pm.ptes[PAGE].page is first and pm.ptes[PAGE].writable
    assert pm.ptes[2 * PAGE].page is other
    assert not pm.ptes[2 * PAGE].writable and not pm.ptes[2 * PAGE].wired
    assert other.pv_list == [(pm, 2 * PAGE)] and not other.writeable


def test_enter_quick_maps_nothing_without_a_free_page() -> None:
    got: dict[str, Any] = {}

    async def body(vm: Vm) -> None:
        pm = pmap_create(vm, "a")
        m = vm.new_page()
        m.valid = True
        vm.domain.limited, vm.domain.free_count = True, 0
        await pmap_enter_quick(pm, PAGE, m)
        got.update(pm=pm, m=m)
    run_ok(body)
    assert got["pm"].ptes == {} and got["m"].pv_list == []


def test_enter_quick_asserts_the_object_lock() -> None:
    async def body(vm: Vm, locked: bool) -> None:
        await ops.pause("start")          # a panic in the first segment ends spawn()
        pm = pmap_create(vm, "a")
        obj = vm_object_allocate_anon(vm, 1, None)
        m = vm.new_page()
        m.valid = True
        m.object = obj
        if locked:
            await rw_rlock(obj.lock)
        await pmap_enter_quick(pm, PAGE, m)
        if locked:
            await rw_unlock(obj.lock)
        m.object = None
    _, out = run(lambda vm: body(vm, False))
    assert out.violation is not None and "not held-held" in out.violation.message
    run_ok(lambda vm: body(vm, True))


def test_enter_object_maps_every_free_slot_in_one_pmap_lock_hold() -> None:
    log = LockLog()
    got: dict[str, Any] = {}

    async def body(vm: Vm) -> None:
        pm = pmap_create(vm, "a")
        busy = await mapped_page(pm, 2 * PAGE)
        pages = [vm.new_page() for _ in range(3)]
        log.taken.clear()
        await pmap_enter_object(pm, [(3 * PAGE, pages[2]), (PAGE, pages[0]),
                                     (2 * PAGE, pages[1])])
        got.update(pm=pm, busy=busy, pages=pages)
    run_ok(body, observers=[log])
    pm, busy, pages = got["pm"], got["busy"], got["pages"]
    assert pm.ptes[PAGE].page is pages[0] and pm.ptes[3 * PAGE].page is pages[2]
    assert pm.ptes[2 * PAGE].page is busy and pages[1].pv_list == []
    assert not any(pte.writable for pte in pm.ptes.values())
    assert [lk for _, lk, _ in log.taken if lk is pm.lock] == [pm.lock]


# ---------------------------------------------------------------- pmap_protect

def test_protect_read_keeps_read_only_mappings_and_none_removes_them() -> None:
    got: dict[str, Any] = {}

    async def body(vm: Vm) -> None:
        pm = pmap_create(vm, "a")
        ro = await mapped_page(pm, PAGE)
        rw = await mapped_page(pm, 2 * PAGE, writable=True)
        await pmap_protect(pm, PAGE, 3 * PAGE, VM_PROT_READ)
        got["after_r"] = {va: (pte.page, pte.writable) for va, pte in pm.ptes.items()}
        await pmap_protect(pm, PAGE, 3 * PAGE, VM_PROT_WRITE)    # nothing to reduce
        got["after_w"] = dict(pm.ptes)
        await pmap_protect(pm, PAGE, 3 * PAGE, 0)
        got.update(pm=pm, ro=ro, rw=rw)
    run_ok(body)
    pm, ro, rw = got["pm"], got["ro"], got["rw"]
    assert got["after_r"] == {PAGE: (ro, False), 2 * PAGE: (rw, False)}
    assert sorted(got["after_w"]) == [PAGE, 2 * PAGE]
    assert pm.ptes == {} and ro.pv_list == [] and rw.pv_list == []


# ---------------------------------------------------------------- PV invariant

def test_pv_entry_without_pte_is_tolerated_only_under_the_pmap_lock() -> None:
    vm = Vm(policy_named("sbusy"))
    p = proc_create(vm, "p")
    assert p.map is not None
    pm = p.map.pmap
    m = vm.new_page()
    m.valid = True
    m.pv_list.append((pm, PAGE))
    assert "with no such PTE (PV)" in (check_structure(vm) or "")
    pm.lock.owner = 0                       # mid pmap_enter / pmap_copy / enter_quick
    waiting: list[int] = []
    assert check_structure(vm, waiting) is None and waiting == [PAGE]
    m.pv_list.clear()
    pm.ptes[PAGE] = Pte(m, False)           # a PTE without its pv entry: never fine
    assert "without a pv entry (PV)" in (check_structure(vm) or "")
    pm.lock.owner = None
    assert "without a pv entry (PV)" in (check_structure(vm) or "")
