"""The checker finds real bugs: the seeded bugs of kern.mutants, each breaking one
decision D51474's argument relies on, are caught by the scenarios that probe it."""

from __future__ import annotations

import pytest

from faultline.check.explore import CheckConfig, check_scenario
from faultline.scenario.loader import load_scenario


@pytest.mark.parametrize(("policy", "scenario", "kinds"), [
    ("no-shootdown", "shared-shadow-inval", {"invariant", "memory"}),
    ("no-shootdown", "shared-shadow-inval-block-xfer", {"invariant", "memory"}),
    ("no-shootdown", "shared-shadow-inval-collapse", {"invariant", "memory", "panic"}),
    ("rename-sbusied", "cow-rename", {"panic"}),
    ("rename-sbusied", "cow-vs-collapse", {"panic"}),
    ("sbusy-write", "rw-race-top", {"panic"}),
    ("sbusy-write", "zero-fill-parallel", {"panic"}),
])
@pytest.mark.slow
def test_mutant_is_caught(policy: str, scenario: str, kinds: set[str]) -> None:
    r = check_scenario(load_scenario(scenario), CheckConfig(policy=policy, runs=500))
    assert r.verdict == "violation"
    assert r.counterexample is not None and r.counterexample.violation is not None
    assert r.counterexample.violation["kind"] in kinds


def test_cve_message_names_the_stale_mapping() -> None:
    r = check_scenario(load_scenario("shared-shadow-inval"),
                       CheckConfig(policy="no-shootdown", runs=50))
    assert r.counterexample is not None and r.counterexample.violation is not None
    msg = r.counterexample.violation["message"]
    assert "p2" in msg and "0x1000" in msg


@pytest.mark.parametrize(("policy", "scenario"), [
    ("no-shootdown", "shared-shadow-inval"),
    ("rename-sbusied", "cow-rename"),
    ("sbusy-write", "rw-race-top"),
])
def test_dpor_finds_the_mutant_within_two_preemptions(policy: str, scenario: str) -> None:
    from faultline.check.explore import replay
    s = load_scenario(scenario)
    r = check_scenario(s, CheckConfig(policy=policy, strategy="dpor", preemptions=(0, 1, 2),
                                      max_executions=3000))
    assert r.verdict == "violation" and r.counterexample is not None
    assert r.preemption_bound is not None and r.preemption_bound <= 2
    again = replay(s, r.counterexample)
    assert again.outcome.violation is not None
    assert again.outcome.violation.message == r.counterexample.violation["message"]


@pytest.mark.parametrize(("policy", "scenario"), [
    ("rename-sbusied", "cow-rename"),
    ("sbusy-write", "rw-race-top"),
])
def test_counterexamples_are_shrunk_to_few_preemptions(policy: str, scenario: str) -> None:
    from faultline.check.explore import replay
    s = load_scenario(scenario)
    r = check_scenario(s, CheckConfig(policy=policy, runs=500))
    ce = r.counterexample
    assert ce is not None and ce.violation is not None
    assert ce.options["preemptions"] <= 1 < ce.options["shrunk_from_preemptions"]
    again = replay(s, ce)
    assert again.outcome.violation is not None
    assert again.outcome.violation.kind == ce.violation["kind"]
    raw = check_scenario(s, CheckConfig(policy=policy, runs=500, shrink=False))
    assert raw.counterexample is not None
    assert "preemptions" not in raw.counterexample.options


@pytest.mark.parametrize(("policy", "scenario"), [
    ("no-shootdown", "shared-shadow-inval"),
    ("no-shootdown", "shared-shadow-inval-block-xfer"),
    ("no-shootdown", "shared-shadow-inval-collapse"),
    ("rename-sbusied", "cow-rename"),
    ("rename-sbusied", "cow-vs-collapse"),
    ("sbusy-write", "rw-race-top"),
    ("sbusy-write", "zero-fill-parallel"),
])
@pytest.mark.slow
def test_the_scenarios_stated_bound_catches_its_seeded_bug(policy: str, scenario: str) -> None:
    """The catalog's [bound] reasons say the seeded bugs are found within the bound."""
    s = load_scenario(scenario)
    assert s.bound is not None
    r = check_scenario(s, CheckConfig(policy=policy, strategy="dpor", shrink=False))
    assert r.verdict == "violation"
    assert r.preemption_bound == s.bound.preemptions and r.bound_reason == s.bound.reason


@pytest.mark.slow
def test_a_dpor_violation_found_with_two_jobs_replays_with_one() -> None:
    """--jobs 2 and --jobs 1 give the same counterexample, and `faultline replay`
    re-runs it to the same violation."""
    from faultline.check.explore import replay
    from faultline.check.running.parallel import check_many
    scenarios = [load_scenario("mprotect-vs-fault"), load_scenario("cow-rename")]
    cfg = CheckConfig(policy="rename-sbusied", strategy="dpor", max_executions=300)
    two = check_many(scenarios, cfg, 2)
    one = check_many(scenarios, cfg, 1)
    assert [r.to_json() for r in two] == [r.to_json() for r in one]
    bad = [r for r in two if r.verdict == "violation"]
    assert [r.scenario for r in bad] == ["cow-rename"]
    ce = bad[0].counterexample
    assert ce is not None and ce.violation is not None
    again = replay(scenarios[1], ce)
    assert again.outcome.violation is not None
    assert again.outcome.violation.message == ce.violation["message"]
