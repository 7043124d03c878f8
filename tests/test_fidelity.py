"""Model fidelity II: swap paging with the map dropped, prefault and exec pre-mapping,
vm_object_split, allocation failure, and the scenario settings that drive them.  Each
test checks behaviour through a scenario (the model's own observers judge it) or the
loader, and would fail on the model before these paths existed."""

from __future__ import annotations

import dataclasses

import pytest

from faultline.check.explore import CheckConfig, ScenarioResult, check_scenario, run_once
from faultline.check.search.strategies import RandomStrategy
from faultline.kern import policy as P
from faultline.kern.vm_page import VmPage
from faultline.scenario.loader import ScenarioError, load_scenario, load_text
from faultline.scenario.spec import Scenario, VmSpec
from faultline.scenario.toml_out import to_toml

SWAP_ROUND_TRIP = """
name = "swap-round-trip"
description = "a page written, paged out, and read back through a fork's shared chain"
step_bound = 6000
[[process]]
name = "p1"
setup = ["write 0x1000 41", "write 0x2000 42", "pageout 0x1000", "pageout 0x2000"]
[[process.map]]
addr = 0x1000
pages = 2
prot = "rw"
[[process]]
name = "p2"
parent = "p1"
[[thread]]
name = "A"
process = "p1"
ops = ["read 0x1000", "fork p2", "write 0x2000 43", "read 0x2000"]
[[thread]]
name = "B"
process = "p2"
ops = ["read 0x1000", "read 0x2000"]
"""


def _dpor(name_or_scenario: str | Scenario, policy: str, bound: int = 2) -> ScenarioResult:
    s = load_scenario(name_or_scenario) if isinstance(name_or_scenario, str) \
        else name_or_scenario
    return check_scenario(s, CheckConfig(policy=policy, strategy="dpor",
                                         preemptions=(bound,), shrink=False))


# ---------------------------------------------------------------- swap

@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
def test_paged_out_pages_come_back_from_swap(policy: str) -> None:
    # The oracle checks every value read: swap-in must return what was paged out,
    # through p1's own chain and through the chain p2 inherits at fork.
    s = load_text(SWAP_ROUND_TRIP, "<swap>")
    r = _dpor(s, policy, bound=1)
    assert r.verdict == "pass", r.counterexample
    assert r.exhaustive
    run = run_once(s, policy, RandomStrategy(3))
    assert {"swap-out", "swap-in"} <= set(run.coverage)


def test_a_swap_object_drops_the_map_and_walks_on_when_the_pager_fails() -> None:
    # vm_fault_object_needs_getpages is FreeBSD's: S has a swap block (page 0), so the
    # fault on page 1 drops the map for the swap pager, which fails; the COW that
    # follows runs with the map unlocked and a relookup is needed.
    r = run_once(load_scenario("swap-cow-vs-fork-copy"), "sbusy", RandomStrategy(1))
    assert {"pager-fail", "cow-copy", "relookup-failed", "split", "collapse-rename"} \
        <= set(r.coverage)


# ---------------------------------------------------------------- the findings

@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
@pytest.mark.parametrize("name", ["swap-cow-vs-fork", "prefault-vs-cow"])
@pytest.mark.slow
def test_the_review_questions_answered_with_a_stale_mapping(name: str, policy: str) -> None:
    # docs/findings.md: a shadowed source page stays mapped in another address space.
    r = _dpor(name, policy)
    assert r.verdict == "violation"
    v = r.counterexample.violation
    assert v["kind"] == "invariant" and "(O3)" in v["message"], v


@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
@pytest.mark.slow
def test_the_copy_flavour_and_the_locked_prefault_are_safe(policy: str) -> None:
    for name in ("swap-cow-vs-fork-copy", "prefault-vs-placeholder"):
        r = _dpor(name, policy, bound=1)
        assert r.verdict == "pass" and r.exhaustive, (name, r.counterexample)


# ---------------------------------------------------------------- prefault

def test_prefault_mapping_an_invalid_page_is_caught() -> None:
    r = _dpor("prefault-vs-placeholder", "prefault-maps-invalid")
    assert r.verdict == "violation"
    v = r.counterexample.violation
    assert v["kind"] == "invariant" and "maps invalid" in v["message"], v


def _without_prefault(name: str) -> Scenario:
    off = dataclasses.replace(load_scenario(name), vm=VmSpec(prefault=False))
    assert load_text(to_toml(off), "<off>") == dataclasses.replace(off, source="<off>")
    return off


@pytest.mark.parametrize(("name", "label"), [("exec-storm-small", "map-prefault"),
                                             ("prefault-vs-placeholder", "pmap-enter-quick")])
def test_prefault_and_exec_premapping_follow_the_vm_setting(name: str, label: str) -> None:
    runs = [run_once(load_scenario(name), "sbusy", RandomStrategy(seed)).coverage
            for seed in range(1, 6)]
    assert any(label in cov for cov in runs)
    off = _without_prefault(name)
    for seed in range(1, 6):
        cov = run_once(off, "sbusy", RandomStrategy(seed)).coverage
        assert not {"map-prefault", "pmap-enter-quick"} & cov


# ---------------------------------------------------------------- split

SPLIT = """
name = "split-on-fork"
description = "fork of a clipped ONEMAPPING swap object gives the entry its own object"
step_bound = 8000
[[process]]
name = "p1"
setup = ["mprotect 0x2000 1 r"]
[[process.map]]
addr = 0x1000
pages = 3
prot = "rw"
init = [1, 2, 3]
[[process]]
name = "p2"
parent = "p1"
[[thread]]
name = "A"
process = "p1"
ops = ["fork p2", "write 0x1000 11", "read 0x3000"]
[[thread]]
name = "W"
process = "p1"
ops = ["write 0x3000 33"]
[[thread]]
name = "B"
process = "p2"
ops = ["read 0x1000", "read 0x2000", "read 0x3000"]
"""


@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
@pytest.mark.slow
def test_fork_splits_a_shared_onemapping_object(policy: str) -> None:
    # mprotect clipped the entry in three sharing one object (ref_count 3): fork's
    # vm_map_copy_swap_object splits each part off with its pages, under xbusy.
    s = load_text(SPLIT, "<split>")
    r = _dpor(s, policy, bound=1)
    assert r.verdict == "pass" and r.exhaustive, r.counterexample
    assert "split" in run_once(s, policy, RandomStrategy(1)).coverage


# ---------------------------------------------------------------- allocation failure

@pytest.mark.slow
def test_a_fault_without_free_pages_waits_and_restarts() -> None:
    s = load_scenario(_regression("oom-wait-for-free-page"))
    assert s.vm.free_pages == 1
    for policy in ("sbusy", "xbusy"):
        r = _dpor(s, policy, bound=1)
        assert r.verdict == "pass" and r.exhaustive, r.counterexample
    assert any("fault-oom-restart" in run_once(s, "sbusy", RandomStrategy(seed)).coverage
               for seed in range(1, 40))


def test_no_free_page_and_nobody_to_free_one_is_reported_as_a_deadlock() -> None:
    text = SWAP_ROUND_TRIP.replace('step_bound = 6000', 'step_bound = 6000\n[vm]\nfree_pages = 0')
    r = check_scenario(load_text(text, "<oom>"), CheckConfig(policy="sbusy", runs=5,
                                                             shrink=False))
    assert r.verdict == "violation"
    v = r.counterexample.violation
    assert v["kind"] == "deadlock" and "pfault" in v["message"], v


def _regression(name: str) -> str:
    from pathlib import Path
    return str(Path(__file__).parent / "regressions" / f"{name}.toml")


# ---------------------------------------------------------------- the [vm] table

def test_vm_table_round_trips_and_rejects_bad_values() -> None:
    s = load_text(SWAP_ROUND_TRIP.replace('step_bound = 6000',
                                          'step_bound = 6000\n[vm]\nfree_pages = 3\n'
                                          'prefault = false'), "<vm>")
    assert s.vm == VmSpec(free_pages=3, prefault=False)
    assert load_text(to_toml(s), "<again>") == dataclasses.replace(s, source="<again>")
    for bad, key in (("free_pages = -1", "vm.free_pages"), ('prefault = "no"', "vm.prefault"),
                     ("swap = 1", "vm.swap")):
        with pytest.raises(ScenarioError) as e:
            load_text(SWAP_ROUND_TRIP.replace('step_bound = 6000',
                                              f'step_bound = 6000\n[vm]\n{bad}'), "<bad>")
        assert e.value.key == key


def test_pageout_is_an_op_with_an_address() -> None:
    with pytest.raises(ScenarioError) as e:
        load_text(SWAP_ROUND_TRIP.replace('"pageout 0x2000"', '"pageout"'), "<bad>")
    assert "'pageout ADDR'" in str(e.value)


# ---------------------------------------------------------------- docs/findings.md

def test_the_findings_replay_as_written() -> None:
    # Each replay command in docs/findings.md still reaches its stale mapping.
    import re
    from pathlib import Path

    from faultline.check.search.strategies import ReplayStrategy
    from faultline.rt.trace import schedule_from_str
    text = (Path(__file__).parent.parent / "docs" / "findings.md").read_text()
    found = re.findall(r"--scenario (\S+) --policy (\S+) --schedule '([^']+)'", text)
    assert len(found) == 2
    for name, policy, schedule in found:
        r = run_once(load_scenario(name), policy, ReplayStrategy(schedule_from_str(schedule)))
        v = r.outcome.violation
        assert v is not None and "(O3)" in str(v), (name, v)


class ShootDownOnceTheMapWasDropped(P.SbusyPolicy):
    """docs/findings.md 1, candidate fix: ONEMAPPING vouches for nothing once the map
    lock was dropped (a fork may have shared the object since): shoot down."""

    name = "test-fix-shootdown-unlocked"

    async def vm_fault_cow_must_remove_all(self, fs: object, m_cow: VmPage) -> bool:
        if not fs.lookup_still_valid:  # type: ignore[attr-defined]
            return True
        return await super().vm_fault_cow_must_remove_all(fs, m_cow)  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_candidate_fixes_close_the_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fix 1 as a policy; fix 2 (prefault keeps the top object read-locked on the found:
    # path too) by wrapping vm_fault_prefault.
    import faultline.kern.vm_fault as vf
    from faultline.rt.sync import rw_rlock, rw_unlock
    monkeypatch.setitem(P.POLICIES, ShootDownOnceTheMapWasDropped.name,
                        ShootDownOnceTheMapWasDropped)
    r = _dpor("swap-cow-vs-fork", ShootDownOnceTheMapWasDropped.name)
    assert r.verdict == "pass" and r.exhaustive, r.counterexample
    original = vf.vm_fault_prefault

    async def locked_prefault(fs: vf.FaultState, addra: int, backward: int, forward: int,
                              obj_locked: bool) -> None:
        if obj_locked:
            return await original(fs, addra, backward, forward, True)
        assert fs.entry is not None and fs.entry.object is not None
        top = fs.entry.object
        await rw_rlock(top.lock)
        await original(fs, addra, backward, forward, True)
        await rw_unlock(top.lock)
    monkeypatch.setattr(vf, "vm_fault_prefault", locked_prefault)
    r = _dpor("prefault-vs-cow", "sbusy")
    assert r.verdict == "pass" and r.exhaustive, r.counterexample
