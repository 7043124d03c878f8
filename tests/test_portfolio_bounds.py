"""The portfolio's DPOR member explores within the bounds --strategy dpor would: the
scenario's stated bound unless --preemptions is given, then exactly those."""

from __future__ import annotations

import dataclasses
import json

from faultline.check.explore import CheckConfig, check_scenario
from faultline.check.running.parallel import check_many
from faultline.check.search import portfolio
from faultline.scenario.loader import load_scenario
from faultline.scenario.spec import BoundSpec, Scenario

RUNS = 80        # one round: 20 runs each of random, pct-2 and pct-3, then 20 DPOR executions


def stating(bound: int) -> Scenario:
    """collapse-bypass (which states no bound) stating `bound`: 2 DPOR executions
    explore it within 0 preemptions, 263 within 1."""
    s = load_scenario("collapse-bypass")
    return dataclasses.replace(s, bound=BoundSpec(bound, f"test: {bound} is enough"))


def test_the_dpor_members_bounds_are_those_dpor_explores() -> None:
    s, free = stating(1), load_scenario("collapse-bypass")
    assert portfolio.bounds_of(s, CheckConfig()) == (1,)
    assert portfolio.bounds_of(free, CheckConfig()) == (None,)
    assert portfolio.bounds_of(s, CheckConfig(preemptions=(0, 2))) == (0, 2)
    assert portfolio.members(CheckConfig(), s)[-1].name == "dpor-1"
    assert portfolio.members(CheckConfig(), free)[-1].name == "dpor-unbounded"
    assert portfolio.members(CheckConfig(preemptions=(0, 1, 2)), s)[-1].name == "dpor-0..2"
    assert "dpor-scenario" in portfolio.describe(CheckConfig())


def test_the_dpor_member_explores_the_stated_bound_without_preemptions() -> None:
    s = stating(0)
    cfg = CheckConfig(strategy="portfolio", runs=RUNS)
    whole = check_scenario(s, CheckConfig(strategy="dpor"))
    assert whole.exhaustive and whole.preemption_bound == 0
    one, two = check_many([s], cfg, 1), check_many([s], cfg, 2)
    assert json.dumps(one[0].to_json()) == json.dumps(two[0].to_json())
    r = one[0]
    # Bound 0 done in its first slice, and the proof is the one --strategy dpor gives
    # (the old default, 0..2, would have gone on to bounds 1 and 2 with the rest).
    assert r.verdict == "pass" and r.exhaustive and r.preemption_bound == 0
    assert r.executions == RUNS - portfolio.SLICE + whole.executions


def test_an_explicit_preemptions_overrides_the_stated_bound() -> None:
    s = stating(1)
    stated = check_many([s], CheckConfig(strategy="portfolio", runs=RUNS), 1)[0]
    assert not stated.exhaustive and stated.executions == RUNS   # 20 of bound 1's 263
    explicit = check_many([s], CheckConfig(strategy="portfolio", runs=RUNS,
                                           preemptions=(0,)), 1)[0]
    assert explicit.exhaustive and explicit.preemption_bound == 0
    assert explicit.executions == RUNS - portfolio.SLICE + 2
