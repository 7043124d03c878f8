"""Long runs: progress that moves while units run, on every runner; a DPOR size estimate
that is a range or "unknown", never a wild number; split units that pause and resume
without changing a result, checkpointed while paused; and Ctrl-C, which prints one line
(what was done, where the checkpoint is) and keeps the scenarios already finished."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cli_support import run as _in_process
from faultline.check import explore
from faultline.check.explore import CheckConfig, ScenarioResult
from faultline.check.running import checkpoint, live
from faultline.check.running.parallel import check_many
from faultline.check.running.runners import InlineRunner, Ordered, open_runner
from faultline.check.search import dpor, split
from faultline.check.search.gauge import Gauge
from faultline.check.search.validation import PROGRAMS, execution
from faultline.scenario.loader import load_scenario

SRC = str(Path(__file__).resolve().parent.parent / "src")


def as_json(results: list[ScenarioResult]) -> str:
    return json.dumps([r.to_json() for r in results], sort_keys=True)


# ---------------------------------------------------------------- live progress

class _Flag:
    """A listener that creates `path` when it hears of an execution."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.heard: list[int] = []

    def executions(self, n: int) -> None:
        self.heard.append(n)
        self.path.touch()

    def unit(self, key: str, text: str) -> None:
        pass


def _waits_for_its_progress(flag: str) -> bool:
    """A unit that reports one execution, then waits (60 s at most) until the checking
    process has heard of it: True only if progress arrives while the unit runs."""
    live.report(1)
    for _ in range(6000):
        if os.path.exists(flag):
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_unit_is_heard_while_it_runs(tmp_path: Path, jobs: int) -> None:
    flag = tmp_path / "heard"
    listener = _Flag(flag)
    with open_runner(jobs, listener=listener) as runner:
        work = Ordered(runner, 1)
        work.offer(0, _waits_for_its_progress, str(flag))
        assert [v for _, v in work.finished()] == [True]
    assert sum(listener.heard) == 1


class _Record:
    def __init__(self) -> None:
        self.executions_heard = 0
        self.statuses: list[str] = []

    def progress(self, n: int) -> None:
        self.executions_heard += n

    def units(self, key: str, text: str) -> None:
        if text:
            self.statuses.append(text)


def test_whole_scenario_units_report_every_run_and_their_dpor_status() -> None:
    scen = [load_scenario("zero-fill-parallel"), load_scenario("cow-rename")]
    cfg = CheckConfig(strategy="dpor", max_executions=25)
    rec, done = _Record(), []
    results = check_many(scen, cfg, 2, rec.progress, units=rec.units,
                         finished=lambda i, r: done.append(i))
    assert as_json(results) == as_json(check_many(scen, cfg, 1))
    assert sorted(done) == [0, 1]
    # Every run of every unit, as it ran (complete, sleep-blocked or cut short).
    assert rec.executions_heard == sum(r.executions + r.sleep_blocked + (r.cache_hits or 0)
                                       for r in results)
    assert any("distinct traces" in s for s in rec.statuses)


# ---------------------------------------------------------------- the estimate

def test_the_gauge_says_unknown_until_the_raw_estimate_settles_past_half() -> None:
    g = Gauge()
    for runs in range(1, 400):              # lopsided: the raw estimate wanders
        g.add(runs, share=1e-6 * runs, pending=3)
        assert g.total() is None
    g = Gauge()
    for runs in range(1, 900):              # steady: a 1,000-run tree
        g.add(runs, share=runs / 1000, pending=2)
    assert g.total() is None                 # half the window claimed less than half done
    for runs in range(900, 1000):
        g.add(runs, share=runs / 1000, pending=0)
    assert g.total() == (999, 1000)


def test_shown_ranges_hold_the_final_count() -> None:
    g, shown = Gauge(), []

    def between(nodes: list[dpor.Node], res: dpor.DporResult, prefix: int) -> None:
        g.add(res.runs(), res.explored_share, res.pending)
        shown.append(g.total())
    r = dpor.explore(lambda rec: execution(PROGRAMS["lastzero-4"], rec, [rec]),
                     optimal=True, stop_on_violation=False, between=between)
    for t in shown:
        assert t is None or t[0] <= r.runs() <= t[1]


def test_the_status_line_never_shows_a_share_it_cannot_stand_by() -> None:
    res = dpor.DporResult(executions=7911, sleep_blocked=300, preemption_bound=1,
                          explored_share=1e-8)
    line = explore.dpor_status("cow-rename", res)
    assert "tree size unknown yet" in line and "%" not in line
    line = explore.dpor_status("cow-rename", res, (8300, 9000))
    assert line.endswith("; tree 8,300-9,000 runs, 91%-99% done")


def test_a_stateful_status_line_counts_the_states_explored() -> None:
    res = dpor.DporResult(executions=47, cache_hits=6403, states=12345)
    line = explore.dpor_status("cow-rename", res)
    assert line == ("cow-rename: 0 distinct traces, 47 executions (+6,403 cut short); "
                    "12,345 states explored completely")


# ---------------------------------------------------------------- paused split units

@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "SLICE_RUNS", 7)


@pytest.mark.usefixtures("small_slices")
@pytest.mark.parametrize("jobs", [1, 2])
def test_paused_subtrees_change_no_result(monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    s = load_scenario("busy-sleep-vs-munmap")
    cfg = CheckConfig(strategy="dpor", preemptions=(0, 1), split=3)
    with open_runner(jobs) as runner:
        sliced = split.check_split(s, cfg, runner, 3)
    monkeypatch.setattr(split, "SLICE_RUNS", 10 ** 9)
    whole = split.check_split(s, cfg, InlineRunner(), 3)
    assert as_json([sliced]) == as_json([whole]) and sliced.traces == whole.traces


@pytest.mark.usefixtures("small_slices")
def test_a_checkpoint_of_paused_subtrees_resumes_to_the_same_result(tmp_path: Path) -> None:
    s = load_scenario("busy-sleep-vs-munmap")
    cfg = CheckConfig(strategy="dpor", preemptions=(0, 1), split=3, checkpoint_seconds=0.0,
                      state=str(tmp_path / "unused"))
    saved: list[dict[str, Any]] = []
    real = checkpoint.write_atomically
    checkpoint.write_atomically = lambda path, doc: saved.append(  # type: ignore[assignment]
        json.loads(json.dumps(doc)))
    try:
        whole = split.check_split(s, cfg, InlineRunner(), 3)
    finally:
        checkpoint.write_atomically = real  # type: ignore[assignment]
    paused = [d for d in saved if d["current"] is not None and d["current"]["partial"]]
    assert paused, "no checkpoint caught a paused unit"
    doc = paused[len(paused) // 2]
    assert doc["current"]["partial"][0][1]["totals"]["executions"] > 0
    path = tmp_path / "paused.ckpt"
    path.write_text(checkpoint.seal(doc))
    res = _in_process("check", "--resume", str(path), "--json", "--jobs", "1")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["results"][0] == whole.to_json()
    # A damaged paused unit is bad input naming the field, never a different result.
    merged = doc["current"]["merged"]
    for change, field in ((lambda p: p[0].__setitem__(0, merged - 1), "current.partial[0][0]"),
                          (lambda p: p[0][1].__setitem__("prefix_len", 0),
                           "current.partial[0][1].prefix_len"),
                          (lambda p: p[0][1]["nodes"][0].__setitem__("chosen", 99),
                           "current.partial[0][1].nodes[0].chosen")):
        bad = json.loads(json.dumps(doc))
        change(bad["current"]["partial"])
        path.write_text(checkpoint.seal(bad))
        res = _in_process("check", "--resume", str(path), "--json", "--jobs", "1")
        assert res.exit_code == 2 and field in res.stderr, (field, res.stderr)


# ---------------------------------------------------------------- Ctrl-C

def _kept_then_interrupted(scenario: Any, cfg: CheckConfig, *a: Any, **kw: Any
                           ) -> ScenarioResult:
    if scenario.name == "cow-rename":
        raise KeyboardInterrupt
    return _real_check_scenario(scenario, cfg, *a, **kw)


_real_check_scenario = explore.check_scenario


def test_an_interrupted_check_keeps_the_finished_results_in_its_json(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explore, "check_scenario", _kept_then_interrupted)
    res = _in_process("check", "swapin-vs-munmap", "cow-rename", "--strategy", "dpor",
                      "--jobs", "1", "--json")
    assert res.exit_code == 130
    doc = json.loads(res.stdout)
    assert doc["interrupted"] is True and doc["verdict"] == "interrupted"
    assert [r["scenario"] for r in doc["results"]] == ["swapin-vs-munmap"]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "faultline: interrupted: 1 of 2 scenarios finished, ") and "no checkpoint" in lines[0]


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "120",
           "FAULTLINE_PROGRESS_SECONDS": "0"}          # a progress line at every update
    return subprocess.Popen([sys.executable, "-m", "faultline.cli.app", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def _ctrl_c_when(p: subprocess.Popen[str], seen: Any) -> list[str]:
    """Read stderr until a line satisfies `seen`, then press Ctrl-C as a terminal does
    (SIGINT to the whole process group: the workers too).  The lines read."""
    assert p.stderr is not None
    lines = []
    for line in p.stderr:
        lines.append(line)
        if seen(line):
            os.killpg(p.pid, signal.SIGINT)
            break
    return lines


_COUNT = re.compile(r"^progress: [^:]*: ([\d,]+) runs")


def _count(line: str) -> int:
    m = _COUNT.match(line)
    return int(m.group(1).replace(",", "")) if m else 0


@pytest.mark.slow
def test_ctrl_c_on_two_jobs_prints_one_line_and_leaves_a_resumable_checkpoint(
        tmp_path: Path) -> None:
    state = tmp_path / "run.ckpt"
    base = ["check", "cow-rename", "--strategy", "dpor", "--jobs", "2",
            "--max-executions", "600"]
    p = _cli(*base, "--state", str(state))
    # Progress is heard as units run: the first count is a unit's first runs, not the
    # 600 a unit holds when it merges.
    before = _ctrl_c_when(p, lambda line: _count(line) > 0)
    _, err = p.communicate(timeout=120)
    assert 0 < _count(before[-1]) < 600
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = [line for line in err.splitlines() if not line.startswith("progress: ")]
    assert len(last) == 1, err
    assert re.match(rf"faultline: interrupted: [\d,]+ runs in [\d.]+ s; checkpoint "
                    rf"saved in {re.escape(str(state))}; faultline check --resume ", last[0])
    doc = checkpoint.read(state)
    assert doc["finished"] is None and doc["split"] > 0
    resumed = _cli("check", "--resume", str(state), "--json", "--jobs", "2")
    full = _cli(*base, "--json")
    (r_out, r_err), (f_out, _) = resumed.communicate(timeout=300), full.communicate(timeout=300)
    assert resumed.returncode == 0 and "Traceback" not in r_err
    assert json.loads(r_out)["results"] == json.loads(f_out)["results"]


def test_ctrl_c_on_two_jobs_keeps_the_scenarios_finished_in_the_table() -> None:
    p = _cli("check", "swapin-vs-munmap", "cow-rename", "--strategy", "dpor", "--jobs", "2")
    _ctrl_c_when(p, lambda line: line.startswith("progress: 1 of 2 scenarios done"))
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert "swapin-vs-munmap" in out and "total: 1 scenario" in out
    assert err.strip().splitlines()[-1].startswith(
        "faultline: interrupted: 1 of 2 scenarios finished, ")


def test_a_checkpointed_whole_exploration_runs_here_whatever_jobs_says(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--state on a tree that is not split (stateful) runs in this process, where its
    checkpointer sees Ctrl-C, not in a worker that would only be killed."""
    seen: list[int] = []

    def here(s: Any, cfg: CheckConfig, *a: Any) -> ScenarioResult:
        seen.append(os.getpid())
        return _real_check_scenario(s, dataclasses.replace(cfg, max_executions=5), *a)
    monkeypatch.setattr(explore, "check_scenario", here)
    cfg = CheckConfig(strategy="dpor", state=str(tmp_path / "s.ckpt"))
    check_many([load_scenario("swapin-vs-munmap")], cfg, 2)
    assert seen == [os.getpid()]


@pytest.mark.slow
def test_ray_units_are_heard_as_they_run() -> None:
    pytest.importorskip("ray")
    scen = [load_scenario("zero-fill-parallel"), load_scenario("cow-rename")]
    cfg = CheckConfig(strategy="dpor", max_executions=25)
    rec = _Record()
    results = check_many(scen, cfg, 2, rec.progress, use_ray=True, units=rec.units)
    assert rec.executions_heard == sum(r.executions + r.sleep_blocked + (r.cache_hits or 0)
                                       for r in results)
    assert any("distinct traces" in s for s in rec.statuses)
