"""Strategies: PCT is deterministic, finds shallow bugs, and pause() keeps even an
unfair scheduler from starving the thread a spinner waits for."""

from __future__ import annotations

from collections.abc import Sequence

from faultline.check.explore import CheckConfig, check_scenario
from faultline.check.search.strategies import PctStrategy
from faultline.check.search.validation import BUGGY, execution
from faultline.rt import ops
from faultline.rt.execution import Execution, Thread
from faultline.rt.sync import Flag, flag_post
from faultline.scenario.loader import load_scenario


def test_pct_is_deterministic_and_finds_a_depth_two_bug() -> None:
    found = 0
    for i in range(60):
        a = execution(BUGGY["locked-increments-2-unlocked"], PctStrategy(i, depth=2, k=20), [])
        b = execution(BUGGY["locked-increments-2-unlocked"], PctStrategy(i, depth=2, k=20), [])
        oa, ob = a.run(), b.run()
        assert oa.schedule == ob.schedule
        found += oa.violation is not None
    assert found > 0


def test_pct_checks_catalog_scenarios() -> None:
    for name in ("rw-race-shadow", "cow-vs-collapse", "shared-shadow-inval"):
        r = check_scenario(load_scenario(name), CheckConfig(strategy="pct", runs=30))
        assert r.verdict == "pass", r.counterexample


class Greedy:
    """The most unfair scheduler: always the lowest thread id."""

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        return enabled[0]


def test_pause_yields_to_the_thread_it_waits_for() -> None:
    flag = Flag("f")

    async def spinner() -> None:
        while not flag.posted:
            await ops.pause("spin")

    ex = Execution(Greedy(), [], step_bound=100)
    ex.spawn("spin", "p", spinner())
    ex.spawn("poster", "p", flag_post(flag))
    out = ex.run()
    assert out.violation is None, out.violation


def test_two_spinners_cannot_starve_the_thread_they_wait_for() -> None:
    """Regression: with "yield to any other runnable thread", two pause() spinners
    yielded only to each other and DPOR reported a livelock in cow-rename (two faults
    restarting on a dead object while the exiting thread that collapses it never ran)."""
    flag = Flag("f")

    async def spinner() -> None:
        while not flag.posted:
            await ops.pause("vmf_de")

    ex = Execution(Greedy(), [], step_bound=200)
    ex.spawn("s1", "p", spinner())
    ex.spawn("s2", "p", spinner())
    ex.spawn("poster", "p", flag_post(flag))
    out = ex.run()
    assert out.violation is None, out.violation
