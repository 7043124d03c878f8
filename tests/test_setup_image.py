"""Runs that start from an image of the world after the scenario's setup do exactly
what runs that re-run the setup do (check.running.setup_image): DPOR explores the same
tree, and a seeded random or PCT run makes the same run."""

from __future__ import annotations

from typing import Any

import pytest

from faultline.check.explore import (
    CACHE_STRIDE,
    CheckConfig,
    RunResult,
    check_scenario,
    dpor_execution,
    run_once,
)
from faultline.check.running import setup_image
from faultline.check.running.setup_image import SetupImage
from faultline.check.search import dpor
from faultline.check.search.statecache import state_key
from faultline.check.search.strategies import PctStrategy, RandomStrategy
from faultline.kern.mutants import RenameSbusied
from faultline.rt.execution import Execution, Hooks
from faultline.scenario.loader import catalog_names, load_scenario
from faultline.scenario.world import World


def explore(name: str, policy: str, bound: int | None, image: SetupImage | None,
            cap: int | None = None) -> tuple[dpor.DporResult, dict[str, int]]:
    """A whole exploration as `check --strategy dpor` makes it, and its coverage tally."""
    scenario = load_scenario(name)
    cfg = CheckConfig(policy=policy, strategy="dpor", shrink=False)
    tally: dict[str, int] = {}

    def make(rec: Hooks) -> Execution:
        ex, cov = dpor_execution(scenario, cfg, rec, image)
        runs.append(cov)
        return ex
    runs: list[Any] = []
    r = dpor.explore(make, bound=bound, optimal=bound is not None, cache_states=bound is None,
                     cache_stride=CACHE_STRIDE, max_executions=cap, keep_schedules=True,
                     stop_on_violation=False, estimate=False)
    for cov in runs:
        for label in cov.labels:
            tally[label] = tally.get(label, 0) + 1
    return r, tally


def facts(r: dpor.DporResult) -> tuple[Any, ...]:
    return (r.executions, r.cache_hits, r.sleep_blocked, r.states, r.steps, r.trace_keys,
            r.exhaustive, r.schedules, r.cut_schedules,
            None if r.violation is None else (r.violation.schedule, str(r.violation.violation)))


@pytest.mark.parametrize(("name", "policy", "bound"), [
    ("rw-race-shadow", "sbusy", None),           # stateful: keys must match too
    ("collapse-bypass", "xbusy", None),
    ("wire-vs-fault", "sbusy", 1),               # stateless optimal, bounded
    ("fault-vs-fork", "sbusy", 1),
    ("cow-vs-collapse", RenameSbusied.name, 1),  # a seeded bug: the same violations
])
def test_runs_from_the_image_explore_what_replayed_runs_do(name: str, policy: str,
                                                           bound: int | None) -> None:
    image = SetupImage()
    plain, plain_cov = explore(name, policy, bound, None, cap=400)
    imaged, imaged_cov = explore(name, policy, bound, image, cap=400)
    assert image.length > 0 and plain.runs() > 1
    assert facts(imaged) == facts(plain)
    assert imaged_cov == plain_cov


def test_every_catalog_setup_has_an_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(setup_image, "MIN_STEPS", 0)
    for name in catalog_names():
        image = SetupImage()
        explore(name, "sbusy", 0, image, cap=1)
        assert image.length > 0, name


def test_a_setup_too_short_to_pay_for_its_image_runs_again() -> None:
    image = SetupImage()
    explore("zero-fill-parallel", "sbusy", 0, image, cap=1)      # a two-step setup
    assert image.tried and image.length == 0
    image = SetupImage()
    explore("fault-vs-fork", "sbusy", 0, image, cap=1)
    assert image.length >= setup_image.MIN_STEPS


def sampled(r: RunResult) -> tuple[Any, ...]:
    v = r.outcome.violation
    return (r.outcome.schedule, r.outcome.steps, None if v is None else str(v),
            r.coverage, r.accesses)


@pytest.mark.parametrize(("name", "policy"), [
    ("cow-rename", "sbusy"),
    ("swap-cow-vs-fork", "sbusy"),               # a recorded violation: found alike
    ("cow-vs-collapse", RenameSbusied.name),
])
def test_seeded_runs_from_the_image_are_the_runs_that_ran_the_setup(name: str,
                                                                    policy: str) -> None:
    """Random and PCT runs restored from the image make the same choices, reach the same
    verdicts and cover the same paths.  PCT's change points are drawn within the first
    60 steps, so that some fall in the setup (demoting the setup thread there must
    carry over to the run)."""
    scenario = load_scenario(name)
    image = SetupImage()
    makers = [lambda i: RandomStrategy(f"s/{i}"), lambda i: PctStrategy(f"s/{i}", 3, 60),
              lambda i: PctStrategy(f"s/{i}", 2, 4000)]
    demoted_in_setup = 0
    for make in makers:
        for i in range(8):
            plain = run_once(scenario, policy, make(i))
            strategy = make(i)
            imaged = run_once(scenario, policy, strategy, image=image)
            assert sampled(imaged) == sampled(plain), (name, i)
            if isinstance(strategy, PctStrategy):
                demoted_in_setup += any(s <= image.length for s in strategy.change_points)
    assert image.length >= setup_image.MIN_STEPS and demoted_in_setup > 0


def test_a_sampled_check_is_the_same_with_the_image() -> None:
    """`check --strategy random` (which runs from the image) reports what runs that
    re-run the setup report, run for run."""
    scenario = load_scenario("swap-cow-vs-fork")
    cfg = CheckConfig(policy="sbusy", strategy="random", runs=40, seed=3, shrink=False)
    res = check_scenario(scenario, cfg)
    plain = [run_once(scenario, "sbusy", RandomStrategy(f"3/{i}"))
             for i in range(res.executions)]
    assert res.steps == sum(r.outcome.steps for r in plain)
    assert (res.verdict == "violation") == (plain[-1].outcome.violation is not None)
    for label, n in res.coverage.items():
        assert n == sum(label in r.coverage for r in plain)


class _KeyAt(dpor._PathStrategy):
    """A path recorder that notes the state key before step `at`."""

    def __init__(self, nodes: list[dpor.Node], prefix_len: int, at: int) -> None:
        super().__init__(nodes, prefix_len, None)
        self.at = at
        self.key: bytes | None = None

    def choose(self, ex: Execution, enabled: Any) -> Any:
        if ex.steps == self.at:
            self.key = state_key(ex, None)
        return super().choose(ex, enabled)


def test_a_restored_run_is_in_the_state_the_setup_left() -> None:
    """The key before the first step after the setup is the same whether the setup
    ran or was restored, and so are the steps the run takes from there."""
    scenario = load_scenario("cow-rename")
    cfg = CheckConfig(policy="sbusy", strategy="dpor", shrink=False)
    image = SetupImage()
    first = _KeyAt([], 0, at=-1)
    dpor_execution(scenario, cfg, first, image)[0].run()
    n = image.length
    assert n > 0 and image.steps == first.steps[:n]
    again = _KeyAt([dpor.Node([], {}, chosen=s.tid, replayable=True) for s in first.steps],
                   len(first.steps), at=n)
    ex, _ = dpor_execution(scenario, cfg, again, image)
    assert ex.steps == n                         # restored, not run
    ex.run()
    replayed = _KeyAt([dpor.Node([], {}, chosen=s.tid, replayable=True) for s in first.steps],
                      len(first.steps), at=n)
    dpor_execution(scenario, cfg, replayed)[0].run()
    assert again.key is not None and again.key == replayed.key
    assert len(again.steps) == len(replayed.steps) == len(first.steps)
    assert ([(s.tid, s.acc) for s in again.steps[n:]]
            == [(s.tid, s.acc) for s in replayed.steps[n:]])


def test_state_pickle_refuses_means_replaying_the_setup(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """A world holding something pickle cannot write gets no image: every run re-runs
    the setup, and the exploration is the same."""
    build = World.build

    async def build_with_a_generator(self: World) -> None:
        await build(self)
        self.unpicklable = (i for i in ())      # type: ignore[attr-defined]
    plain, _ = explore("rw-race-shadow", "sbusy", 1, None)
    monkeypatch.setattr(World, "build", build_with_a_generator)
    image = SetupImage()
    refused, _ = explore("rw-race-shadow", "sbusy", 1, image)
    assert image.tried and image.length == 0
    assert (refused.executions, refused.steps) == (plain.executions, plain.steps)


def test_race_detection_takes_no_image() -> None:
    scenario = load_scenario("rw-race-shadow")
    cfg = CheckConfig(policy="sbusy", strategy="dpor", shrink=False, race_detect=True)
    image = SetupImage()
    dpor_execution(scenario, cfg, dpor._PathStrategy([], 0, None), image)
    assert not image.tried
