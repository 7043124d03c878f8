"""--jobs: the same work on worker processes gives exactly the --jobs 1 results."""

from __future__ import annotations

import json

import pytest

from faultline.check.explore import CheckConfig
from faultline.check.parallel import check_many
from faultline.kern import policy as P
from faultline.scenario.loader import load_scenario


def as_json(results: list) -> str:
    return json.dumps([r.to_json() for r in results], sort_keys=True)


def test_sampled_results_do_not_depend_on_jobs() -> None:
    scen = [load_scenario("cow-rename"), load_scenario("zero-fill-parallel")]
    cfg = CheckConfig(runs=60, seed=5)
    assert as_json(check_many(scen, cfg, 1)) == as_json(check_many(scen, cfg, 2))


def test_dpor_results_do_not_depend_on_jobs() -> None:
    scen = [load_scenario("collapse-bypass"), load_scenario("zero-fill-parallel")]
    cfg = CheckConfig(strategy="dpor", preemptions=(0, 1), max_executions=300)
    assert as_json(check_many(scen, cfg, 1)) == as_json(check_many(scen, cfg, 2))


@pytest.fixture
def rename_sbusied() -> object:
    class RenameSbusied(P.SbusyPolicy):
        name = "test-par-rename-sbusied"

        def vm_fault_cow_may_rename(self, fs: object) -> bool:
            return True
    P.POLICIES[RenameSbusied.name] = RenameSbusied
    yield RenameSbusied.name
    del P.POLICIES[RenameSbusied.name]


def test_a_violation_found_with_two_jobs_is_the_one_jobs_one_finds(rename_sbusied: str
                                                                    ) -> None:
    scen = [load_scenario("cow-rename")]
    cfg = CheckConfig(policy=rename_sbusied, runs=300)
    one, two = check_many(scen, cfg, 1), check_many(scen, cfg, 2)
    assert one[0].verdict == two[0].verdict == "violation"
    assert as_json(one) == as_json(two)
    assert one[0].counterexample.schedule == two[0].counterexample.schedule
