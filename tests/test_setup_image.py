"""DPOR runs that start from an image of the world after the scenario's setup explore
exactly what runs that re-run the setup do (check.running.setup_image)."""

from __future__ import annotations

from typing import Any

import pytest

from faultline.check.explore import CACHE_STRIDE, CheckConfig, dpor_execution
from faultline.check.running.setup_image import SetupImage
from faultline.check.search import dpor
from faultline.check.search.statecache import state_key
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
    ("zero-fill-parallel", "sbusy", 1),          # stateless optimal, bounded
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


def test_every_catalog_setup_has_an_image() -> None:
    for name in catalog_names():
        image = SetupImage()
        explore(name, "sbusy", 0, image, cap=1)
        assert image.length > 0, name


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
