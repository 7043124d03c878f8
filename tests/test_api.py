"""The Python scenario API: generated scenarios validate and pass under both policies."""

from __future__ import annotations

import pytest

from faultline.check.explore import CheckConfig, check_scenario
from faultline.scenario.api import exec_storm, fault_storm, ops, scenario
from faultline.scenario.loader import ScenarioError
from faultline.scenario.spec import ProcessSpec, ThreadSpec


@pytest.mark.parametrize("policy", ["xbusy", "sbusy"])
@pytest.mark.slow
def test_generated_exec_storm_passes(policy: str) -> None:
    s = exec_storm(4, execs=2)
    assert len(s.processes) == 4 and "exec sh" in [str(o) for o in s.threads[0].ops]
    r = check_scenario(s, CheckConfig(policy=policy, runs=40))
    assert r.verdict == "pass"
    assert r.coverage.get("cow-copy") and r.coverage.get("exec")
    if policy == "sbusy":
        assert r.coverage.get("sbusy-soft-backing")


def test_generated_fault_storm_passes() -> None:
    r = check_scenario(fault_storm(5, pages=2, writers=2), CheckConfig(runs=40))
    assert r.verdict == "pass" and r.coverage.get("busy-sleep:vmpfw")


def test_python_scenarios_get_loader_errors() -> None:
    with pytest.raises(ScenarioError) as e:
        scenario("bad", "a thread in a process that does not exist",
                 processes=[ProcessSpec("p1")],
                 threads=[ThreadSpec("T", "nope", ops("read 0x1000"))])
    assert "thread[0].process" in str(e.value)
    with pytest.raises(ScenarioError):
        ops("write 0x1000")
    with pytest.raises(ValueError):
        exec_storm(0)
