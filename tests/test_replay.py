"""Determinism: a seeded run replays identically, step for step."""

from __future__ import annotations

import pytest

from faultline.check.explore import CheckConfig, check_scenario, replay, run_once
from faultline.check.search.strategies import RandomStrategy, ReplayStrategy, run_seed
from faultline.rt.execution import ReplayDivergence
from faultline.rt.trace import RunRecord, schedule_from_str, schedule_to_str
from faultline.scenario.loader import load_scenario


@pytest.mark.parametrize("name", ["rw-race-shadow", "shared-shadow-inval-collapse",
                                  "exec-storm-small", "cow-vs-collapse"])
@pytest.mark.parametrize("policy", ["xbusy", "sbusy"])
def test_seeded_run_is_deterministic(name: str, policy: str) -> None:
    s = load_scenario(name)
    for i in range(5):
        a = run_once(s, policy, RandomStrategy(run_seed(7, i)))
        b = run_once(s, policy, RandomStrategy(run_seed(7, i)))
        assert a.outcome.schedule == b.outcome.schedule
        assert a.coverage == b.coverage
        c = run_once(s, policy, ReplayStrategy(a.outcome.schedule), record=True)
        assert c.outcome.schedule == a.outcome.schedule
        assert c.coverage == a.coverage
        assert c.outcome.verdict == a.outcome.verdict
        assert len([e for e in c.events if e.kind != "note"]) == a.outcome.steps


def test_check_results_repeat_exactly() -> None:
    s = load_scenario("cow-rename")
    a = check_scenario(s, CheckConfig(policy="sbusy", runs=50, seed=3))
    b = check_scenario(s, CheckConfig(policy="sbusy", runs=50, seed=3))
    assert a.to_json() == b.to_json()
    c = check_scenario(s, CheckConfig(policy="sbusy", runs=50, seed=4))
    assert c.steps != a.steps  # another seed explores other schedules


def test_replayed_trace_is_recorded_with_sites() -> None:
    s = load_scenario("zero-fill-parallel")
    a = run_once(s, "sbusy", RandomStrategy("x"))
    rec = RunRecord.from_outcome(a.outcome, scenario=s.name, policy="sbusy",
                                 strategy="random", seed=None)
    r = replay(s, rec)
    steps = [e for e in r.events if e.kind != "note"]
    assert len(steps) == a.outcome.steps
    fns = {e.function for e in steps}
    assert "vm_fault_object" in fns or "vm_fault_soft_fast" in fns
    assert any(e.file.startswith("faultline/kern/") for e in steps)
    assert schedule_from_str(rec.schedule) == a.outcome.schedule
    assert schedule_to_str(a.outcome.schedule) == rec.schedule


def test_divergent_schedule_is_reported() -> None:
    s = load_scenario("zero-fill-parallel")
    with pytest.raises(ReplayDivergence):
        run_once(s, "sbusy", ReplayStrategy([0, 0, 0, 5]))
