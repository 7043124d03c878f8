"""Range operations on a map against a simple interval model of the address space.

Any sequence of munmap, mprotect, minherit, mlock and munlock over a few mappings (ranges
that cut entries at one end, at both ends inside one entry, span several entries or holes)
must leave the map's entries describing exactly what an array of pages says: which
pages are mapped, with which protection, inheritance and wiring, each still backed by the
same object index at the end of its shadow chain (clipping never moves a page's
backing)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultline.check.judging.invariants import StructureChecker
from faultline.check.search.strategies import RandomStrategy
from faultline.kern.policy import policy_named
from faultline.kern.proc import (
    Proc,
    proc_create,
    sys_minherit,
    sys_mlock,
    sys_mprotect,
    sys_munlock,
    sys_munmap,
    vm_mmap,
)
from faultline.kern.vm import Vm
from faultline.kern.vm_map import MAP_ENTRY_IN_TRANSITION, MAP_ENTRY_USER_WIRED, PROT_BITS
from faultline.kern.vm_object import VmObject, vm_object_allocate_vnode
from faultline.rt.execution import Execution

PAGE = 4096
WINDOW = 16                  # pages 1..WINDOW-1 of the address space are in play
PROTS = ("none", "r", "rw", "rx", "rwx")
INHERITS = ("share", "copy", "none", "zero")


@dataclass(frozen=True)
class PageState:
    """What the interval model knows of one mapped page."""

    prot: str
    inherit: str
    wired: bool


@st.composite
def mappings(draw: st.DrawFn) -> list[tuple[int, int, str, bool]]:
    """Non-overlapping mappings (first page, pages, prot, file-backed?) in the window."""
    out: list[tuple[int, int, str, bool]] = []
    page = 1
    while page < WINDOW - 1 and len(out) < 4:
        page += draw(st.integers(0, 2))
        pages = draw(st.integers(1, 4))
        if page + pages > WINDOW:
            break
        out.append((page, pages, draw(st.sampled_from(PROTS)), draw(st.booleans())))
        page += pages
    return out


OPS = st.tuples(st.sampled_from(("munmap", "mprotect", "minherit", "mlock", "munlock")),
                st.integers(1, WINDOW - 1), st.integers(1, 6),
                st.sampled_from(PROTS), st.sampled_from(INHERITS))


def apply(model: dict[int, PageState], op: tuple[str, int, int, str, str]) -> bool:
    """Apply `op` to the interval model; False if the kernel would need what the model
    does not implement (write added to a wired range: vm_fault_copy_entry), or would
    fail it (mlock of a page without read access: KERN_PROTECTION_FAILURE, undone)."""
    name, first, pages, prot, inherit = op
    span = [p for p in range(first, first + pages) if p in model]
    match name:
        case "munmap":
            for p in span:
                del model[p]
        case "mprotect":
            if any(model[p].wired and PROT_BITS[prot] & 2 and not PROT_BITS[model[p].prot] & 2
                   for p in span):
                return False
            for p in span:
                model[p] = replace(model[p], prot=prot)
        case "minherit":
            for p in span:
                model[p] = replace(model[p], inherit=inherit)
        case "mlock":
            if any(model[p].prot == "none" for p in span if not model[p].wired):
                return False
            for p in span:
                model[p] = replace(model[p], wired=True)
        case "munlock":
            for p in span:
                model[p] = replace(model[p], wired=False)
    return True


async def perform(p: Proc, op: tuple[str, int, int, str, str]) -> None:
    name, first, pages, prot, inherit = op
    addr = first * PAGE
    match name:
        case "munmap":
            await sys_munmap(p, addr, pages)
        case "mprotect":
            await sys_mprotect(p, addr, pages, prot)
        case "minherit":
            await sys_minherit(p, addr, pages, inherit)
        case "mlock":
            await sys_mlock(p, addr, pages)
        case "munlock":
            await sys_munlock(p, addr, pages)


def chain_bottom(obj: VmObject, pindex: int) -> tuple[object, int]:
    """Where a page index of `obj` lands at the end of its shadow chain (a wiring fault
    may shadow a NEEDS_COPY entry; the shadow still covers the same index below)."""
    while obj.backing_object is not None:
        pindex += obj.backing_object_offset
        obj = obj.backing_object
    return obj, pindex


def kernel_view(p: Proc) -> tuple[dict[int, PageState], dict[int, tuple[object, int]]]:
    """The map's entries as the interval model's pages, and each page's backing."""
    assert p.map is not None
    pages: dict[int, PageState] = {}
    backing: dict[int, tuple[object, int]] = {}
    last_end = 0
    for e in p.map.entries:
        assert e.start % PAGE == 0 and e.end % PAGE == 0 and e.start < e.end
        assert e.start >= last_end, f"entries overlap or are unsorted at {e}"
        assert not e.eflags & MAP_ENTRY_IN_TRANSITION and e.wiring_thread is None
        last_end = e.end
        name = next(n for n, b in PROT_BITS.items() if b == e.protection)
        wired = bool(e.eflags & MAP_ENTRY_USER_WIRED)
        assert wired == (e.wired_count > 0)
        for va in range(e.start, e.end, PAGE):
            pages[va // PAGE] = PageState(name, e.inheritance, wired)
            if e.object is not None:
                backing[va // PAGE] = chain_bottom(e.object, e.pindex(va))
    return pages, backing


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(maps=mappings(), ops=st.lists(OPS, max_size=8))
def test_range_operations_match_an_interval_model(
        maps: list[tuple[int, int, str, bool]], ops: list[tuple[str, int, int, str, str]]
) -> None:
    vm = Vm(policy_named("sbusy"))
    model: dict[int, PageState] = {}
    for first, pages, prot, _ in maps:
        for pg in range(first, first + pages):
            model[pg] = PageState(prot, "copy", False)
    seen: dict[int, tuple[object, int]] = {}
    checked: list[int] = []

    async def body() -> None:
        p = proc_create(vm, "p1")
        p.nthreads = 1
        f = vm_object_allocate_vnode(vm, "f", tuple(range(WINDOW)))
        for first, pages, prot, file_backed in maps:
            await vm_mmap(p, first * PAGE, pages, prot, False, f if file_backed else None,
                          first if file_backed else 0, None)
        for i, op in enumerate(ops):
            if not apply(model, op):
                continue
            await perform(p, op)
            pages, backing = kernel_view(p)
            assert pages == model, (i, op, pages, model)
            for pg, where in backing.items():
                assert seen.setdefault(pg, where) == where, f"page {pg} moved: {op}"
            checked.append(i)

    ex = Execution(RandomStrategy("1"), [StructureChecker(vm)], 100_000)
    ex.spawn("t", "test", body())
    out = ex.run()
    assert out.violation is None, out.violation.message


def test_the_interval_model_is_exercised_in_the_middle_of_entries() -> None:
    """The reproducer: munmap of the middle page of a 3-page entry unmaps only it."""
    vm = Vm(policy_named("sbusy"))

    async def body() -> None:
        p = proc_create(vm, "p1")
        await vm_mmap(p, 0x1000, 3, "rw", False, None, 0, None)
        await sys_munmap(p, 0x2000, 1)
        await sys_mprotect(p, 0x3000, 1, "r")
        pages, _ = kernel_view(p)
        assert pages == {1: PageState("rw", "copy", False), 3: PageState("r", "copy", False)}

    ex = Execution(RandomStrategy("1"), [StructureChecker(vm)], 10_000)
    ex.spawn("t", "test", body())
    assert ex.run().violation is None
