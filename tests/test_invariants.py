"""StructureChecker skips steps that wrote nothing; a skipped step must be one whose full
check would have passed, so verdicts, messages and the failing step never change."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faultline.check.explore import CheckConfig, check_scenario
from faultline.check.judging.invariants import StructureChecker, check_structure
from faultline.check.search.strategies import RandomStrategy
from faultline.kern.mutants import NoShootdown, SbusyWrite
from faultline.kern.policy import policy_named
from faultline.kern.proc import proc_create, proc_touch, vm_mmap
from faultline.kern.vm import Vm
from faultline.rt import ops
from faultline.rt.execution import Execution, Outcome
from faultline.rt.sync import rw_wlock
from faultline.scenario.loader import load_scenario


@pytest.fixture
def verified_skips() -> Iterator[list[int]]:
    """Make every skipped check run anyway and fail the test unless it passes."""
    keeps = StructureChecker._keeps_structure
    count = [0]

    def checked(self: StructureChecker, ex: Execution, op: ops.Op) -> bool:
        skip = keeps(self, ex, op)
        if skip:
            count[0] += 1
            assert check_structure(self.vm) is None, (ex.steps, op)
        return skip

    StructureChecker._keeps_structure = checked      # type: ignore[method-assign]
    try:
        yield count
    finally:
        StructureChecker._keeps_structure = keeps    # type: ignore[method-assign]


@pytest.mark.parametrize("policy", ["sbusy", "xbusy", NoShootdown.name, SbusyWrite.name])
@pytest.mark.parametrize("scenario", ["shared-shadow-inval-collapse", "cow-vs-collapse",
                                      "munmap-vs-fault", "wire-vs-fault", "rw-race-top"])
@pytest.mark.slow
def test_skipped_steps_would_pass(verified_skips: list[int], scenario: str,
                                  policy: str) -> None:
    s = load_scenario(scenario)
    check_scenario(s, CheckConfig(policy=policy, runs=30, seed=3))
    check_scenario(s, CheckConfig(policy=policy, strategy="dpor", max_executions=30,
                                  preemptions=(2,)))
    assert verified_skips[0] > 0


def _corrupt_after_lock(vm: Vm) -> object:
    async def body() -> None:
        p = proc_create(vm, "p")
        await vm_mmap(p, 0x1000, 1, "rw", False, None, 0, None)
        await proc_touch(p, 0x1000, True, 1)
        m = p.map.pmap.ptes[0x1000].page
        await rw_wlock(vm.pv_list_lock(m))       # a lock op: a step that may be skipped...
        m.valid = False                          # ...unless its code writes, as here
        await ops.pause("after")
    return body()


def _run(every: bool) -> Outcome:
    vm = Vm(policy_named("sbusy"))
    ex = Execution(RandomStrategy("1"), [StructureChecker(vm)], 10_000)
    if not every:
        ex.observers[0]._keeps_structure = lambda ex, op: False   # type: ignore[attr-defined]
    ex.spawn("t", "test", _corrupt_after_lock(vm))
    return ex.run()


def test_a_write_after_a_lock_op_is_caught_at_its_step() -> None:
    skipping = _run(True)
    assert skipping.violation is not None and skipping.violation.kind == "invariant"
    assert "maps invalid page" in skipping.violation.message
    full = _run(False)
    assert full.violation is not None
    assert (skipping.steps, skipping.violation.message) == (full.steps, full.violation.message)


def test_lock_ops_on_a_map_lock_are_checked() -> None:
    vm = Vm(policy_named("sbusy"))
    sc = StructureChecker(vm)
    p = proc_create(vm, "p")
    assert p.map is not None
    ex = Execution(RandomStrategy("1"), [sc], 10)
    assert not sc._keeps_structure(ex, ops.Release(p.map.lock))
    assert sc._keeps_structure(ex, ops.Release(vm.pv_list_locks[0]))
    assert not sc._keeps_structure(ex, ops.Busy(vm.new_page().busy, "tryx"))
