"""The catalog: every scenario passes under both policies over 500 seeded schedules and
reaches the paths it exists for (its `probes`), asserted from the recorded notes."""

from __future__ import annotations

import pytest

from faultline.check.explore import CheckConfig, ScenarioResult, check_scenario
from faultline.check.judging.coverage import missing_probes
from faultline.scenario.loader import catalog_names, load_scenario

REQUIRED = [
    "rw-race-shadow", "rw-race-top", "shared-shadow-inval", "shared-shadow-inval-collapse",
    "shared-shadow-inval-block-xfer", "exec-storm-small", "cow-rename", "cow-vs-collapse",
    "fault-vs-fork", "hard-fault-vs-soft", "wire-vs-fault", "munmap-vs-fault",
    "zero-fill-parallel", "busy-sleep-wakeup",
]
RUNS = 500
_results: dict[tuple[str, str], ScenarioResult] = {}


def result(name: str, policy: str) -> ScenarioResult:
    """Check once per (scenario, policy) and reuse the result across tests."""
    key = (name, policy)
    if key not in _results:
        _results[key] = check_scenario(load_scenario(name),
                                       CheckConfig(policy=policy, runs=RUNS, seed=1))
    return _results[key]


def test_catalog_has_required_scenarios() -> None:
    names = catalog_names()
    assert len(names) >= 15
    for n in REQUIRED:
        assert n in names


@pytest.mark.parametrize("policy", ["xbusy", "sbusy"])
@pytest.mark.parametrize("name", catalog_names())
@pytest.mark.slow
def test_scenario_passes(name: str, policy: str) -> None:
    r = result(name, policy)
    if r.expected == "violation":
        # A finding (docs/findings.md): random runs may or may not reach it; DPOR
        # does (tests/test_fidelity.py).  What they reach must be that finding.
        if r.verdict == "violation":
            assert "(O3)" in r.counterexample.violation["message"], r.counterexample
        return
    assert r.verdict == "pass", r.counterexample
    assert r.executions == RUNS
    assert r.expected in (None, "pass")


@pytest.mark.parametrize("policy", ["xbusy", "sbusy"])
@pytest.mark.parametrize("name", catalog_names())
@pytest.mark.slow
def test_scenario_reaches_its_paths(name: str, policy: str) -> None:
    s = load_scenario(name)
    assert s.probes, f"{name} declares no probes"
    r = result(name, policy)
    assert missing_probes(s.probes, policy, r.coverage) == []


@pytest.mark.parametrize(("name", "label"), [
    ("rw-race-shadow", "busy-sleep:vmpfw"),
    ("rw-race-shadow", "vmpfw-restart"),
    ("cow-rename", "cow-rename"),
    ("shared-shadow-inval", "pmap-remove-all"),
    ("cow-vs-collapse", "collapse-wait-busy"),
])
@pytest.mark.slow
def test_issue_named_paths(name: str, label: str) -> None:
    for policy in ("xbusy", "sbusy"):
        assert result(name, policy).coverage.get(label, 0) > 0, (name, policy, label)


@pytest.mark.slow
def test_d51474_changes_the_busy_taken() -> None:
    # Under sbusy the review's read through the shadow share-busies the backing page;
    # under xbusy nothing is ever share-busied.
    assert result("rw-race-shadow", "sbusy").coverage.get("sbusy-soft-backing", 0) > 0
    assert result("rw-race-shadow", "xbusy").coverage.get("sbusy-soft", 0) == 0
    assert result("exec-storm-small", "sbusy").coverage.get("cow-copy-sbusied-src", 0) > 0
