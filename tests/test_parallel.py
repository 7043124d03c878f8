"""--jobs: the same work on worker processes gives exactly the --jobs 1 results; the
portfolio strategy's slices and merge."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
from typer.testing import CliRunner

from faultline.check.explore import CheckConfig, replay
from faultline.check.running.parallel import check_many, longest_first
from faultline.check.running.runners import InlineRunner, Ordered
from faultline.check.search import portfolio
from faultline.cli.app import app
from faultline.scenario.loader import load_scenario


def as_json(results: list) -> str:
    return json.dumps([r.to_json() for r in results], sort_keys=True)


def test_sampled_results_do_not_depend_on_jobs() -> None:
    scen = [load_scenario("cow-rename"), load_scenario("zero-fill-parallel")]
    cfg = CheckConfig(runs=60, seed=5)
    assert as_json(check_many(scen, cfg, 1)) == as_json(check_many(scen, cfg, 2))


@pytest.mark.slow
def test_dpor_results_do_not_depend_on_jobs() -> None:
    scen = [load_scenario("collapse-bypass"), load_scenario("zero-fill-parallel")]
    cfg = CheckConfig(strategy="dpor", preemptions=(0, 1), max_executions=300)
    assert as_json(check_many(scen, cfg, 1)) == as_json(check_many(scen, cfg, 2))


@pytest.mark.slow
def test_a_violation_found_with_two_jobs_is_the_one_jobs_one_finds(rename_sbusied: str
                                                                    ) -> None:
    scen = [load_scenario("cow-rename")]
    cfg = CheckConfig(policy=rename_sbusied, runs=300)
    one, two = check_many(scen, cfg, 1), check_many(scen, cfg, 2)
    assert one[0].verdict == two[0].verdict == "violation"
    assert as_json(one) == as_json(two)
    assert one[0].counterexample.schedule == two[0].counterexample.schedule


# ---------------------------------------------------------------- portfolio

@pytest.mark.slow
def test_portfolio_results_do_not_depend_on_jobs() -> None:
    scen = [load_scenario("cow-rename"), load_scenario("zero-fill-parallel")]
    cfg = CheckConfig(strategy="portfolio", runs=130, seed=2)
    one = check_many(scen, cfg, 1)
    assert as_json(one) == as_json(check_many(scen, cfg, 2))
    assert [(r.strategy, r.verdict, r.executions) for r in one] == [("portfolio", "pass", 130)] * 2


def test_portfolio_slices_are_the_members_runs_in_round_robin_order() -> None:
    # 40 runs are two slices: random runs 0-19, then pct depth 2 runs 0-19.
    s = load_scenario("cow-rename")
    pf = check_many([s], CheckConfig(strategy="portfolio", runs=40, seed=4), 1)[0]
    rnd = check_many([s], CheckConfig(runs=20, seed=4), 1)[0]
    pct = check_many([s], CheckConfig(strategy="pct", depth=2, runs=20, seed=4), 1)[0]
    assert pf.executions == 40 and pf.steps == rnd.steps + pct.steps
    assert pf.coverage == {k: rnd.coverage.get(k, 0) + pct.coverage.get(k, 0)
                           for k in rnd.coverage.keys() | pct.coverage.keys()}


@pytest.mark.slow
def test_portfolio_dpor_slices_resume_one_exploration() -> None:
    # Bounded DPOR in slices of 7 executions explores exactly what one exploration does.
    s = load_scenario("collapse-bypass")
    whole = check_many([s], CheckConfig(strategy="dpor", preemptions=(0, 1, 2)), 1)[0]
    assert whole.exhaustive
    cfg = CheckConfig(strategy="portfolio", preemptions=(0, 1, 2))
    cursor: portfolio.DporCursor | None = portfolio.DporCursor()
    executions = steps = 0
    coverage: dict[str, int] = {}
    while cursor is not None:
        part = portfolio.dpor_slice(s, cfg, (0, 1, 2), cursor, 7)
        assert part.violation is None and part.executions <= 7
        executions, steps, cursor = executions + part.executions, steps + part.steps, part.cursor
        for k, n in part.coverage.items():
            coverage[k] = coverage.get(k, 0) + n
    assert (executions, steps, coverage) == (whole.executions, whole.steps, whole.coverage)


@pytest.mark.slow
def test_portfolio_is_exhaustive_once_its_dpor_member_has_explored_every_bound() -> None:
    # Bounds 0 and 1 take 2 + 263 executions, fewer than the DPOR member's 350.
    s = load_scenario("collapse-bypass")
    r = check_many([s], CheckConfig(strategy="portfolio", runs=1400, preemptions=(0, 1)), 2)[0]
    assert r.verdict == "pass" and r.exhaustive and r.preemption_bound == 1
    assert r.executions < 1400           # the DPOR member's later slices are empty


@pytest.mark.parametrize(("seed", "member"), [(8, "pct-2"), (3, "dpor-1")])  # stated bound
@pytest.mark.slow
def test_portfolio_finds_a_seeded_bug_and_names_the_member(rename_sbusied: str, seed: int,
                                                           member: str) -> None:
    s = load_scenario("cow-rename")
    cfg = CheckConfig(policy=rename_sbusied, strategy="portfolio", runs=500, seed=seed)
    one, two = check_many([s], cfg, 1), check_many([s], cfg, 2)
    assert as_json(one) == as_json(two)
    r = one[0]
    assert r.verdict == "violation" and r.strategy == "portfolio" and r.executions < 500
    ce = r.counterexample
    assert ce is not None and ce.strategy == "portfolio"
    assert ce.options["portfolio_member"] == member
    assert ("preemption_bound" in ce.options) == member.startswith("dpor")
    again = replay(s, ce)
    assert again.outcome.violation is not None
    assert again.outcome.violation.message == ce.violation["message"]


def test_portfolio_check_json_is_identical_for_any_jobs() -> None:
    args = ["check", "cow-rename", "zero-fill-parallel", "--strategy", "portfolio",
            "--runs", "60", "--json"]
    one = CliRunner().invoke(app, [*args, "--jobs", "1"])
    two = CliRunner().invoke(app, [*args, "--jobs", "2"])
    assert one.exit_code == two.exit_code == 0
    assert one.stdout == two.stdout
    assert json.loads(one.stdout)["strategy"] == "portfolio"


def test_ray_without_ray_installed_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)        # import ray now fails
    res = CliRunner().invoke(app, ["check", "cow-rename", "--runs", "5", "--ray", "local"])
    assert res.exit_code == 2
    assert "pip install 'faultline[ray]'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_stateful_tree_is_not_split_unless_asked() -> None:
    # Subtrees share no state cache, so a stateful exploration stays one unit on two
    # workers (the same result as one worker); --split still splits it.
    s = load_scenario("swapin-vs-munmap")          # states no bound: stateful
    cfg = CheckConfig(strategy="dpor")
    one, two = check_many([s], cfg, 1)[0], check_many([s], cfg, 2)[0]
    assert two.subtrees is None and two.cache_hits
    assert json.dumps(one.to_json()) == json.dumps(two.to_json())
    split = check_many([s], dataclasses.replace(cfg, split=2), 2)[0]
    assert split.subtrees and split.verdict == "pass" and split.exhaustive


def test_units_are_dealt_in_the_order_asked_and_read_in_position_order() -> None:
    ran: list[int] = []

    def unit(i: int) -> int:
        ran.append(i)
        return i * 10
    work = Ordered(InlineRunner(), 4)
    for i in range(4):
        work.offer(i, unit, i)
    work.deal_first([2, 0])
    assert sorted(p for p, _ in work.finished()) == [0, 1, 2, 3]
    assert ran == [2, 0, 1, 3]
    assert work.needed() == [0, 10, 20, 30]


def test_the_catalog_is_dealt_costliest_first() -> None:
    names = ["swapin-vs-munmap", "shared-shadow-inval-block-xfer", "rw-race-shadow",
             "cow-vs-collapse"]
    scen = [load_scenario(n) for n in names]
    order = longest_first(scen, CheckConfig(strategy="dpor"))
    assert sorted(order) == [0, 1, 2, 3]
    # Two preemptions and four threads before two preemptions and three; the stateful
    # (unbounded) ones last, the one with the shortest runs last of all.
    assert [names[i] for i in order] == ["shared-shadow-inval-block-xfer",
                                         "cow-vs-collapse", "rw-race-shadow",
                                         "swapin-vs-munmap"]
