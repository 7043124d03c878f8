"""Tests for the default counterexample view (report.violation_view, check.judging.anatomy
and snapshot), the windowed --dot (check.judging.hbgraph), and replaying a seeded-bug
counterexample, also under another policy (check.search.align)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import Result

from cli_support import run, run_at
from faultline.check import explore
from faultline.check.judging.hbgraph import DOT_WINDOW
from faultline.check.judging.snapshot import package_path
from faultline.check.search.align import AlignedReplay, Segment, replay_under
from faultline.check.search.strategies import RandomStrategy
from faultline.cli import counterexample
from faultline.rt.execution import ReplayDivergence
from faultline.rt.trace import RunRecord, schedule_to_str
from faultline.scenario import loader

COW = ["cow-rename", "--policy", "rename-sbusied", "--strategy", "dpor", "--jobs", "1"]
INVAL = ["shared-shadow-inval", "--policy", "no-shootdown", "--strategy", "dpor", "--jobs", "1"]
LOCATION = re.compile(r"\b(kern|scenario|rt)/\w+\.py:\d+")


@pytest.fixture(scope="module")
def cow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    """The rename-sbusied counterexample on cow-rename, at 100 columns, and its file."""
    ce = tmp_path_factory.mktemp("cow") / "ce.json"
    res = run_at(100, "check", *COW, "--trace-out", str(ce))
    assert res.exit_code == 1, res.stderr
    return res, ce


@pytest.fixture(scope="module")
def inval() -> Result:
    res = run_at(100, "check", *INVAL)
    assert res.exit_code == 1, res.stderr
    return res


# ---------------------------------------------------------------- the default view

def test_both_counterexamples_read_in_under_80_lines_at_100_columns(
        cow: tuple[Result, Path], inval: Result) -> None:
    for res in (cow[0], inval):
        lines = res.stdout.splitlines()
        assert len(lines) < 80, res.stdout
        assert max(len(line) for line in lines) <= 100


def flat(text: str) -> str:
    """`text` with every run of white space one space: a lane's row wraps under itself."""
    return " ".join(text.split())


def test_the_cow_rename_view_shows_the_race_and_the_state(cow: tuple[Result, Path]) -> None:
    lines, out = cow[0].stdout.splitlines(), flat(cow[0].stdout)
    assert "setup: 155 steps, sequential; then started W1 W2 W3 X" in out
    assert "W1 (p1), 47 steps: write 0x1000 11; read 0x1000; read 0x4000" in out
    assert "from W3's 'write 0x3000 13', the op at the violation" in out
    header = next(line for line in lines if line.strip().startswith("step"))
    assert header.index("W3 (p1)") < header.index("X (p2)")          # a lane per thread
    assert "W1 (p1)" not in header                                    # not in the window
    assert "vm_fault_object — busy trys page2 → True" in out          # W3 sbusies page2
    assert "busy tryx page2 → False" in out                           # collapse cannot
    assert 'sleep page2 "vmocol"' in out
    assert "load ref_count obj1 → 1" in out                           # after X's release
    assert "✗ KASSERT in vm_page_assert_xbusied (kern/vm_page.py:" in out
    assert "fired by: W3 after step 322 (load ref_count obj1), in vm_fault_cow (rename) " \
           "(kern/vm_fault.py:" in out
    assert "obj2[2]=page7(invalid) → obj1[2]=page2" in out            # p1's chain at 0x3000
    assert "obj1 p1 backing 1 1 ANON|DEAD|SWAP" in out
    assert "page2 p1:0x3000 obj1[2] S(1)+W yes" in out
    assert "X asleep on page2 (vmocol)" in out


def test_the_no_shootdown_view_names_the_invariant_and_the_ptes(inval: Result) -> None:
    out = flat(inval.stdout)
    assert "fired by: the invariant check after step 145 (busy xunbusy page2)" in out
    assert "cow-copy src=page0 dst=page2" in out
    assert "p2 page0 ro obj2[0]=page2 → obj1[0]=page0" in out
    assert "P1 asleep on p3done (uwait)" in out


def test_locations_are_relative_to_the_package(cow: tuple[Result, Path], inval: Result) -> None:
    for res in (cow[0], inval):
        body = [line for line in res.stdout.splitlines() if "scenario file:" not in line]
        text = "\n".join(body)
        assert "site-packages" not in text and "/faultline/" not in text
        assert LOCATION.search(text)
    site = "/usr/lib/python3.11/site-packages/faultline/kern/vm_fault.py"
    assert package_path(site) == "kern/vm_fault.py"
    assert package_path("faultline/kern/pmap.py") == "kern/pmap.py"


def test_full_still_shows_every_step(cow: tuple[Result, Path]) -> None:
    res = run_at(100, "check", *COW, "--full")
    assert res.exit_code == 1
    labels = {int(m) for m in re.findall(r"^│\s*(\d+)\s*│", res.stdout, re.MULTILINE)}
    assert labels == set(range(1, 323))
    assert "setup: 155 steps" not in res.stdout                  # nothing folded
    assert "site-packages" not in res.stdout


# ---------------------------------------------------------------- --dot

def _nodes(graph: str) -> list[int]:
    return [int(n) for n in re.findall(r"^\s+s(\d+) \[label=", graph, re.MULTILINE)]


def test_dot_draws_the_window_and_dot_full_the_whole_run(tmp_path: Path) -> None:
    window, whole = tmp_path / "w.dot", tmp_path / "f.dot"
    assert run("check", *COW, "--dot", str(window)).exit_code == 1
    assert run("check", *COW, "--dot", str(whole), "--dot-full").exit_code == 1
    shown, every = _nodes(window.read_text()), _nodes(whole.read_text())
    assert 30 <= len(shown) <= 40 and len(shown) == DOT_WINDOW
    assert min(shown) >= 155                      # no setup step (setup: steps 1-155)
    assert "steps 1-" in window.read_text() and "elided" in window.read_text()
    assert len(every) == 321 and "elided" not in whole.read_text()
    edges = re.findall(r"s(\d+) -> s(\d+)", window.read_text())
    assert edges and all(int(a) in shown and int(b) in shown for a, b in edges)


# ---------------------------------------------------------------- replay

def test_a_seeded_bug_counterexample_replays_from_the_cli(cow: tuple[Result, Path]) -> None:
    res, ce = cow
    assert json.loads(ce.read_text())["policy"] == "rename-sbusied"
    again = run_at(100, "replay", str(ce))
    assert again.exit_code == 1, again.stderr
    assert again.stdout.splitlines()[0].startswith(
        "faultline replay: scenario=cow-rename policy=rename-sbusied")
    violation = [line for line in res.stdout.splitlines() if line.startswith("VIOLATION")]
    assert violation and violation[0] in again.stdout
    assert "✗ KASSERT in vm_page_assert_xbusied" in again.stdout


@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
def test_replay_under_another_policy_aligns_the_setup(cow: tuple[Result, Path],
                                                      policy: str) -> None:
    ce = cow[1]
    res = run_at(100, "replay", str(ce), "--policy", policy)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.splitlines()[0].startswith(f"faultline replay: scenario=cow-rename "
                                                 f"policy={policy}")
    assert "aligned: rename-sbusied's setup (155 steps) replaced by" in res.stdout
    assert "W3 for 19 steps (preempted)" in res.stdout
    assert "no violation" in res.stdout and "the recorded verdict was violation" in res.stdout
    doc = json.loads(run("replay", str(ce), "--policy", policy, "--json").stdout)
    assert doc["policy"] == policy and doc["verdict"] == "pass"
    flags = run("replay", "--scenario", "cow-rename", "--policy", policy, "--schedule",
                doc["schedule"])                  # the aligned run replays as it is
    assert flags.exit_code == 0, flags.stderr


def test_replay_under_a_policy_that_cannot_follow_says_where(tmp_path: Path) -> None:
    s = loader.load_scenario("cow-rename")
    out = explore.run_once(s, "sbusy", RandomStrategy("0")).outcome
    record = RunRecord(scenario=s.name, policy="sbusy", strategy="random", seed=0,
                       schedule=schedule_to_str(out.schedule), verdict=out.verdict,
                       version=explore.__version__, scenario_path=s.source)
    ce = tmp_path / "ce.json"
    ce.write_text(counterexample.dump(record, []))
    res = run("replay", str(ce), "--policy", "xbusy")
    assert res.exit_code == 2, res.stdout
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("faultline: error: replay diverged: under "
                                                   "xbusy, step ")
    assert "runs part at its step" in lines[0] and "blocked on" in lines[0]
    with pytest.raises(ReplayDivergence, match="runs part"):     # the same, in Python
        replay_under(s, record, "xbusy")


def test_aligned_replay_names_a_missing_thread() -> None:
    s = loader.load_scenario("cow-rename")
    aligned = AlignedReplay([Segment("nobody", 1, True)], {}, ("sbusy", "xbusy"))
    with pytest.raises(ReplayDivergence, match="nobody does not exist"):
        explore.run_once(s, "xbusy", aligned, extra=[aligned])
