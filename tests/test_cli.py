"""Tests for the `faultline` command line (faultline.cli.app) and its renderers (report).

Exit statuses under test: 0 no violation, 1 a violation or a verdict differing from the
scenario's expectation, 2 bad input (one stderr line, never a traceback), 3 a bug.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner, Result

from cli_support import TINY_TEMPLATE, run, run_at
from faultline import __version__
from faultline.check import explore
from faultline.check.running.files import DOT_HEADER
from faultline.check.search.strategies import RandomStrategy
from faultline.cli.app import app
from faultline.kern.vm_map import NotModelled
from faultline.report.trace_view import render_trace, run_description, violation_text
from faultline.rt.execution import FaultlineInternalError
from faultline.rt.trace import Event, RunRecord, schedule_to_str
from faultline.scenario import loader

RESULT_KEYS = {"scenario", "policy", "strategy", "verdict", "executions", "steps"}

def tiny(tmp_path: Path, step_bound: int = 5, expect: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    text = TINY_TEMPLATE.format(expect=expect).replace("step_bound = 5",
                                                        f"step_bound = {step_bound}")
    path.write_text(text)
    return path


def assert_bad_input(res: Result) -> None:
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("faultline: error: "), res.stderr
    assert "Traceback" not in res.stdout + res.stderr


# ---------------------------------------------------------------- scenarios, show

def test_scenarios_json_lists_the_catalog() -> None:
    res = run("scenarios", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert isinstance(doc, list) and len(doc) >= 1
    for item in doc:
        assert {"name", "description", "probes", "expect", "path"} <= item.keys()
    assert "rw-race-shadow" in [item["name"] for item in doc]


def test_scenarios_table_names_every_scenario() -> None:
    res = run("scenarios")
    assert res.exit_code == 0
    for name in loader.catalog_names():
        assert name in res.stdout


def test_show_mentions_threads_and_ops() -> None:
    res = run("show", "rw-race-shadow")
    assert res.exit_code == 0, res.stderr
    s = loader.load_scenario("rw-race-shadow")
    for t in s.threads:
        assert f"{t.name} ({t.process})" in res.stdout
    assert "step bound" in res.stdout


def test_show_prints_brackets_in_descriptions_literally(tmp_path: Path) -> None:
    path = tiny(tmp_path)
    path.write_text(path.read_text().replace("a deterministic", "[bold]a deterministic"))
    res = run("show", str(path))
    assert res.exit_code == 0
    assert "[bold]a deterministic" in res.stdout


# ---------------------------------------------------------------- check

def test_check_json_is_byte_identical_across_runs() -> None:
    first = run("check", "rw-race-shadow", "--runs", "5", "--json")
    second = run("check", "rw-race-shadow", "--runs", "5", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == second.stdout
    doc = json.loads(first.stdout)
    assert doc["verdict"] == "pass"
    assert {"policy", "strategy", "seed", "runs"} <= doc.keys()
    assert len(doc["results"]) == 1
    assert doc["results"][0].keys() >= RESULT_KEYS


def test_check_echoes_the_run_description_first() -> None:
    res = run("check", "rw-race-shadow", "--runs", "3", "--policy", "xbusy", "--seed", "7")
    assert res.exit_code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("faultline check: policy=xbusy strategy=random runs=3 seed=7")
    assert "scenarios=rw-race-shadow" in first
    assert first.endswith(f" version={__version__}")
    assert "total: 1 scenario, 3 executions, " in res.stdout


def test_check_all_covers_the_catalog_in_name_order(tmp_path: Path) -> None:
    res = run("check", "--all", str(tiny(tmp_path, 4000)), "--runs", "1", "--json")
    doc = json.loads(res.stdout)
    names = [r["scenario"] for r in doc["results"]]
    assert names == [*loader.catalog_names(), "tiny-bound"]


def test_check_without_scenarios_is_bad_input() -> None:
    assert_bad_input(run("check"))


@pytest.mark.parametrize("args", [
    ["check", "no-such-scenario"],
    ["check", "rw-race-shadow", "--policy", "nope"],
    ["check", "rw-race-shadow", "--strategy", "nope"],
    ["check", "rw-race-shadow", "--trace-out", "/nonexistent-dir/ce.json"],
    ["show", "no-such-scenario"],
    ["replay"],
    ["replay", "--scenario", "rw-race-shadow", "--schedule", "0,x*3"],
    ["replay", "--scenario", "rw-race-shadow", "--schedule", "0", "--policy", "nope"],
    ["replay", "/nonexistent-dir/ce.json"],
])
def test_bad_input_exits_2_with_one_line(args: list[str]) -> None:
    assert_bad_input(run(*args))


def test_bad_toml_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nthis is not toml\n')
    res = run("check", str(bad))
    assert_bad_input(res)
    assert str(bad) in res.stderr


@pytest.mark.parametrize("text", ["not json at all", "[1, 2]", '{"scenario": 3}'])
def test_replay_of_a_non_counterexample_is_bad_input(tmp_path: Path, text: str) -> None:
    path = tmp_path / "ce.json"
    path.write_text(text)
    assert_bad_input(run("replay", str(path)))


@pytest.mark.parametrize(("args", "words"), [
    (["check", "rw-race-shadow", "--runs", "0"], "'--runs'"),
    (["check", "rw-race-shadow", "--jobs", "0"], "'--jobs'"),
    (["check", "rw-race-shadow", "--seed", "abc"], "'--seed'"),
    (["check", "rw-race-shadow", "--bogus"], "no such option: --bogus"),
    (["check", "--runs"], "'--runs' requires an argument"),
    (["show"], "missing argument"),
    (["no-such-command"], "no such command"),
    (["--bogus"], "no such option: --bogus"),
    (["sim", "doexec", "--duration-ms", "0"], "'--duration-ms'"),
    (["mutants", "--jobs", "0"], "'--jobs'"),
])
def test_usage_errors_are_one_line_exit_2(args: list[str], words: str) -> None:
    # Option parsing too: click's boxed usage message would be six lines.
    res = run(*args)
    assert_bad_input(res)
    assert words in res.stderr, res.stderr


def test_version() -> None:
    res = run("--version")
    assert res.exit_code == 0 and res.stdout == f"faultline {__version__}\n"


@pytest.mark.parametrize(("args", "words"), [
    (["check", "rw-race-shadw"], "did you mean rw-race-shadow"),
    (["show", "cow-renam"], "did you mean cow-rename?"),
    (["replay", "--scenario", "cow-renmae", "--schedule", "0"], "did you mean cow-rename?"),
    (["check", "rw-race-shadow", "--policy", "sbusyy"], "did you mean sbusy"),
    (["check", "rw-race-shadow", "--strategy", "dpr"], "did you mean dpor?"),
])
def test_a_misspelt_name_gets_did_you_mean(args: list[str], words: str) -> None:
    res = run(*args)
    assert_bad_input(res)
    assert words in res.stderr, res.stderr


def test_a_missing_toml_file_is_no_such_file(tmp_path: Path) -> None:
    res = run("check", str(tmp_path / "missing.toml"))
    assert_bad_input(res)
    assert f"{tmp_path / 'missing.toml'}: no such file" in res.stderr
    assert "no such file" not in run("check", "no-such-scenario").stderr


def test_the_dpor_header_echoes_only_what_applies() -> None:
    res = run("check", "rw-race-top", "--strategy", "dpor", "--max-executions", "1")
    first = res.stdout.splitlines()[0]
    assert "dpor=optimal" in first and first.endswith(f"version={__version__}")
    for word in ("runs=", "seed=", "depth="):
        assert word not in first, first
    assert "depth=3 runs=2 seed=1" in run("check", "rw-race-top", "--strategy", "pct",
                                          "--runs", "2").stdout.splitlines()[0]


def test_not_modelled_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kw: object) -> None:
        try:
            raise NotModelled("fork of a wired writable COPY entry")
        except NotModelled as e:   # the execution wraps model exceptions like this
            raise FaultlineInternalError("bug in faultline, not in your scenario") from e

    monkeypatch.setattr(explore, "check_scenario", boom)
    res = run("check", "rw-race-shadow", "--runs", "1", "--jobs", "1")
    assert_bad_input(res)
    assert "not modelled: fork of a wired writable COPY entry" in res.stderr


def test_internal_error_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kw: object) -> None:
        raise FaultlineInternalError("bug in faultline, not in your scenario: KeyError")

    monkeypatch.setattr(explore, "check_scenario", boom)
    res = run("check", "rw-race-shadow", "--runs", "1", "--jobs", "1")
    assert res.exit_code == 3
    assert res.stderr.splitlines()[-1].startswith("faultline: internal error")


# ---------------------------------------------------------------- narrow terminals

NARROW = 80
CATALOG = loader.catalog_names()


def assert_fits(text: str, width: int, *whole: str) -> None:
    """Every line within `width` columns, nothing cut with an ellipsis, and each of
    `whole` (scenario, policy and verdict names) printed in one piece."""
    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_wide, too_wide
    assert "…" not in text, text
    words = set(text.replace(",", " ").split())
    missing = [w for w in whole if w not in words]
    assert not missing, (missing, text)


@pytest.mark.parametrize(("args", "whole"), [
    pytest.param(["scenarios"], [*CATALOG, "pass", "violation"], id="scenarios"),
    pytest.param(["scenarios", "--long"], CATALOG, id="scenarios-long"),
    pytest.param(["show", "onemapping-race"], ["onemapping-race"], id="show-5-threads"),
    pytest.param(["show", "shared-shadow-inval-block-xfer"],
                 ["shared-shadow-inval-block-xfer"], id="show-long-name"),
    pytest.param(["check", "shared-shadow-inval-block-xfer", "rw-race-shadow", "--runs", "2",
                  "--jobs", "1", "--policy", "first-m-early-release"],
                 ["shared-shadow-inval-block-xfer", "rw-race-shadow",
                  "first-m-early-release", "pass"], id="check-long-names"),
    pytest.param(["check", "--all", "--runs", "1", "--jobs", "1"],
                 [*CATALOG, "sbusy", "pass"], id="check-all"),
    pytest.param(["sim", "page-fault1", "--cpus", "1,2,4", "--duration-ms", "0.05",
                  "--warmup-ms", "0", "--jobs", "1"], ["sbusy", "xbusy"], id="sim"),
])
def test_tables_fit_an_80_column_terminal(args: list[str], whole: list[str]) -> None:
    res = run_at(NARROW, *args)
    assert res.exit_code == 0, res.output
    assert_fits(res.stdout, NARROW, *whole)


def test_a_dpor_results_table_fits_an_80_column_terminal(tmp_path: Path) -> None:
    path = tiny(tmp_path, 4000, expect='[bound]\npreemptions = 2\nreason = "one thread"')
    res = run_at(NARROW, "check", str(path), "--strategy", "dpor", "--jobs", "1",
                 "--policy", "first-m-early-release")
    assert res.exit_code == 0, res.output
    assert_fits(res.stdout, NARROW, "tiny-bound", "first-m-early-release", "pass",
                "every", "(stated)")


def test_the_short_catalog_is_one_line_per_scenario() -> None:
    lines = run_at(NARROW, "scenarios").stdout.splitlines()
    for name in CATALOG:
        assert sum(name in line.split() for line in lines) == 1, name
    assert len(lines) < len(CATALOG) + 12
    assert "--long" in " ".join(lines)


def test_a_table_drops_columns_by_priority_and_never_cuts_a_key_cell() -> None:
    from faultline.cli.mutants_cmd import mutant_table
    rows = [{"mutant": "deallocate-before-unbusy", "caught": False, "not_a_bug": False,
             "scenarios": [], "violation_kind": None, "executions_to_violation": None,
             "seconds": 12.5, "counterexample_steps": None},
            {"mutant": "first-m-early-release", "caught": True, "not_a_bug": False,
             "scenarios": ["shared-shadow-inval-block-xfer", "rw-race-shadow"],
             "violation_kind": "memory", "executions_to_violation": 123456,
             "seconds": 1.25, "counterexample_steps": 167}]

    def at(width: int) -> str:
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(mutant_table(rows))
        return console.export_text()

    assert "not shown" not in at(200) and "123,456" in at(200)
    assert "not shown at this width: seconds, ce steps" in at(100)
    assert_fits(at(NARROW), NARROW, "deallocate-before-unbusy", "first-m-early-release",
                "SURVIVED", "caught", "shared-shadow-inval-block-xfer", "rw-race-shadow")
    assert_fits(at(30), 30)        # narrower than its names: folded, still never cut


# ---------------------------------------------------------------- violations and replay

def violation_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("VIOLATION"))


def test_violation_trace_out_and_replay(tmp_path: Path) -> None:
    scenario, ce = tiny(tmp_path), tmp_path / "ce.json"
    res = run("check", str(scenario), "--runs", "3", "--trace-out", str(ce))
    assert res.exit_code == 1, res.stderr
    assert "VIOLATION (no-progress)" in res.stdout
    assert f"faultline replay {ce}" in res.stdout
    doc = json.loads(ce.read_text())
    assert {"scenario", "policy", "strategy", "seed", "schedule", "verdict", "violation",
            "version", "scenario_path", "options", "events", "faultline_version"} <= doc.keys()
    assert doc["verdict"] == "violation" and doc["seed"] == 1 and doc["events"]

    again = run("replay", str(ce))
    assert again.exit_code == 1, again.stderr
    assert again.stdout.splitlines()[0].startswith("faultline replay: scenario=tiny-bound")
    assert violation_line(again.stdout) == violation_line(res.stdout)

    flags = run("replay", "--scenario", str(scenario), "--policy", doc["policy"],
                "--schedule", doc["schedule"])
    assert flags.exit_code == 1, flags.stderr
    assert violation_line(flags.stdout) == violation_line(res.stdout)


def test_violation_json_and_exit_status(tmp_path: Path) -> None:
    res = run("check", str(tiny(tmp_path)), "--runs", "3", "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["verdict"] == "violation"
    assert doc["results"][0]["counterexample"]["violation"]["kind"] == "no-progress"


def test_unexpected_pass_exits_1(tmp_path: Path) -> None:
    # Only an exhaustive search contradicts a recorded violation; random runs that miss
    # it say so and do not fail (docs/design-notes.md 1.14).
    path = tiny(tmp_path, 4000, expect='[expect]\nsbusy = "violation"')
    res = run("check", str(path), "--strategy", "dpor")
    assert res.exit_code == 1
    assert "unexpected: tiny-bound under sbusy: expected violation, got pass" in res.stdout
    res = run("check", str(path), "--runs", "2")
    assert res.exit_code == 0
    assert "not reached: tiny-bound under sbusy records a known violation" in res.stdout


def test_no_violation_saves_nothing(tmp_path: Path) -> None:
    ce = tmp_path / "ce.json"
    res = run("check", "rw-race-shadow", "--runs", "2", "--trace-out", str(ce))
    assert res.exit_code == 0
    assert not ce.exists() and "nothing to save" in res.stdout


def test_replay_of_a_passing_schedule_exits_0() -> None:
    s = loader.load_scenario("rw-race-shadow")
    outcome = explore.run_once(s, "sbusy", RandomStrategy("7/0")).outcome
    assert outcome.violation is None
    res = run("replay", "--scenario", "rw-race-shadow", "--schedule",
              schedule_to_str(outcome.schedule))
    assert res.exit_code == 0, res.stderr
    assert "no violation" in res.stdout
    assert "R (p1)" in res.stdout and "W (p1)" in res.stdout


def test_replay_divergence_is_bad_input() -> None:
    res = run("replay", "--scenario", "rw-race-shadow", "--schedule", "0*3")
    assert_bad_input(res)
    assert "diverged" in res.stderr


def test_console_script_module_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "faultline.cli.app", "check", "nope"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("faultline: error: ") and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- report.trace_view

def synthetic_trace(steps: int) -> list[Event]:
    events = [Event(i, "setup", "Atomic", f"setup op {i}") for i in range(1, 11)]
    events.append(Event(10, "setup", "note", "setup-done"))
    events.append(Event(11, "A", "note", "op", data={"thread": "A", "op": "read 0x1000"}))
    for i in range(11, steps + 1):
        who = "A" if i % 2 else "B"
        events.append(Event(i, who, "Acquire", f"lock {i}", file="faultline/kern/x.py",
                            line=i, function="vm_fault_found"))
    return events


def rendered(events: list[Event], **kw: object) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    render_trace(events, console, **kw)  # type: ignore[arg-type]
    return console.export_text()


def test_trace_has_one_column_per_thread_and_folds_setup() -> None:
    text = rendered(synthetic_trace(30))
    header = next(line for line in text.splitlines() if "step" in line)
    assert header.index("setup") < header.index(" A ") < header.index(" B ")
    assert "setup: 10 steps (sequential)" in text
    assert "▶ read 0x1000" in text
    assert "FreeBSD vm_fault (found:)" in text
    assert "setup op 3" not in text
    assert "setup op 3" in rendered(synthetic_trace(30), full=True)


def test_long_trace_elides_the_middle_and_keeps_the_end() -> None:
    text = rendered(synthetic_trace(600))
    assert "steps elided" in text
    assert "lock 600" in text and "lock 12" in text and "lock 300" not in text


def test_run_description_and_violation_text() -> None:
    record = RunRecord("s", "sbusy", "random", 1, "0*9999," * 40, "violation",
                       {"kind": "memory", "message": "p2 read 0x1000 -> 3, expected 7",
                        "thread": "R", "step": 12}, "0.1.0", "/x/s.toml", {"run_seed": "1/0"})
    lines = run_description(record, "replay")
    assert lines[0] == ("faultline replay: scenario=s policy=sbusy strategy=random seed=1 "
                        "run_seed=1/0")
    assert "characters in all" in lines[1] and len(lines[1]) < 200
    assert violation_text(record.violation) == (
        "VIOLATION (memory): p2 read 0x1000 -> 3, expected 7 [thread R, step 12]")


def test_check_coverage_table_lists_probes() -> None:

    res = CliRunner().invoke(app, ["check", "cow-rename", "--runs", "20", "--coverage"])
    assert res.exit_code == 0
    assert "event coverage" in res.output and "cow-rename" in res.output


def test_check_dpor_json_reports_exploration() -> None:
    import json as _json


    res = CliRunner().invoke(app, ["check", "zero-fill-parallel", "--strategy", "dpor",
                                   "--preemptions", "0..1", "--json"])
    assert res.exit_code == 0, res.output
    r = _json.loads(res.output)["results"][0]
    assert r["strategy"] == "dpor" and r["exhaustive"] is True
    assert r["preemption_bound"] == 1 and isinstance(r["sleep_blocked"], int)
    capped = CliRunner().invoke(app, ["check", "zero-fill-parallel", "--strategy", "dpor",
                                      "--max-executions", "5", "--json"])
    r = _json.loads(capped.output)["results"][0]
    assert r["exhaustive"] is False and r["executions"] == 5
    bad = CliRunner().invoke(app, ["check", "zero-fill-parallel", "--strategy", "dpor",
                                   "--preemptions", "3..1"])
    assert bad.exit_code == 2


def test_dot_export_of_a_counterexample(tmp_path: Path) -> None:
    text = (loader.catalog_dir() / "rw-race-shadow.toml").read_text()
    bad = tmp_path / "tight.toml"
    bad.write_text(text.replace("step_bound = 4000", "step_bound = 100"))
    dot = tmp_path / "ce.dot"
    res = run("check", str(bad), "--runs", "3", "--jobs", "1", "--dot", str(dot))
    assert res.exit_code == 1
    header, graph = dot.read_text().split("\n", 1)
    assert header == DOT_HEADER          # how a later --dot knows the file for ours
    assert graph.startswith("digraph happens_before {") and graph.rstrip().endswith("}")
    assert "cluster_" in graph and "-> violation" in graph and "color=red" in graph


@pytest.mark.slow
def test_check_dpor_uses_the_scenarios_stated_bound() -> None:
    s = loader.load_scenario("zero-fill-parallel")
    assert s.bound is not None
    res = run("check", "zero-fill-parallel", "--strategy", "dpor", "--jobs", "1", "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)["results"][0]
    assert r["exhaustive"] is True and r["preemption_bound"] == s.bound.preemptions
    assert r["bound_reason"] == s.bound.reason
    # The note on (stated) follows any stated bound, capped or not.
    text = run("check", "zero-fill-parallel", "--strategy", "dpor", "--jobs", "1",
               "--max-executions", "5")
    assert "(stated)" in text.stdout and "faultline show NAME" in text.stdout
    assert "DPOR bound: 2 preemptions." in " ".join(run("show", "zero-fill-parallel")
                                                      .stdout.split())
    free = run("check", "zero-fill-parallel", "--strategy", "dpor", "--preemptions", "none",
               "--max-executions", "3", "--json")
    r = json.loads(free.stdout)["results"][0]
    assert r["preemption_bound"] is None and r["bound_reason"] is None
    assert r["exhaustive"] is False and r["executions"] == 3


@pytest.mark.slow
def test_check_dpor_proves_a_scenario_that_states_no_bound() -> None:
    # rw-race-shadow states "none": every interleaving, stateful (docs/state-caching.md).
    res = run("check", "rw-race-shadow", "--strategy", "dpor", "--jobs", "1", "--json")
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)["results"][0]
    assert r["exhaustive"] is True and r["preemption_bound"] is None
    assert r["cache_hits"] > 0 and "every interleaving" in r["bound_reason"]
    assert "DPOR bound: none (every interleaving)." in " ".join(
        run("show", "rw-race-shadow").stdout.split())


def test_check_race_detect_passes_the_catalog_scenario_and_says_so() -> None:
    res = run("check", "rw-race-top", "--race-detect", "--runs", "5", "--jobs", "1")
    assert res.exit_code == 0, res.output
    assert " race-detect " in res.stdout.splitlines()[0]


@pytest.mark.slow
def test_check_cache_states_reports_cut_runs_and_the_same_verdict() -> None:
    plain = json.loads(run("check", "wire-vs-fault", "--strategy", "dpor", "--preemptions",
                           "1", "--json").stdout)["results"][0]
    res = run("check", "wire-vs-fault", "--strategy", "dpor", "--preemptions", "1",
              "--cache-states", "--json")
    assert res.exit_code == 0, res.output
    cached = json.loads(res.stdout)["results"][0]
    assert "cache_hits" not in plain and cached["cache_hits"] > 0
    assert cached["verdict"] == plain["verdict"] == "pass" and cached["exhaustive"]
    assert set(cached["coverage"]) == set(plain["coverage"])
    assert cached["executions"] < plain["executions"]
    text = run("check", "wire-vs-fault", "--strategy", "dpor", "--preemptions", "1",
               "--cache-states")
    assert "cache-states (source DPOR)" in text.stdout.splitlines()[0]
    assert {"cut", "cached"} <= set(text.stdout.split())      # the cell may wrap here


# ---------------------------------------------------------------- corrupted counterexamples

@pytest.fixture
def saved_ce(tmp_path: Path) -> Path:
    """A counterexample file written by check --trace-out (of the tiny scenario)."""
    ce = tmp_path / "ce.json"
    assert run("check", str(tiny(tmp_path)), "--runs", "1", "--trace-out", str(ce)
               ).exit_code == 1
    return ce


def _edit(path: Path, where: str, value: object) -> Path:
    doc = json.loads(path.read_text())
    *up, last = where.split(".")
    node = doc
    for k in up:
        node = node[k]
    node[last] = value
    path.write_text(json.dumps(doc))
    return path


# (field, value, words the one-line error must contain)
_BAD_RECORDS = [
    ("scenario_path", 3, ["scenario_path"]),
    ("scenario_path", ["x"], ["scenario_path"]),
    ("options.npv_locks", 0, ["options.npv_locks", "1..1024"]),
    ("options.npv_locks", -1, ["options.npv_locks"]),
    ("options.npv_locks", "x", ["options.npv_locks"]),
    ("options.npv_locks", 1e9, ["options.npv_locks"]),
    ("options.npv_locks", 10 ** 9, ["options.npv_locks"]),
    ("options.every_step", "yes", ["options.every_step"]),
    ("options.preemptions", 1.5, ["options.preemptions"]),
    ("options.shrunk_from_steps", -3, ["options.shrunk_from_steps"]),
    ("options.surprise", 1, ["options.surprise", "not a field"]),
    ("options", [], ["options"]),
    ("faultline_version", "0.0.1", ["faultline_version", "0.0.1"]),
    ("version", "9.9.9", ["version", "9.9.9"]),
    ("seed", "1", ["seed"]),
    ("verdict", 1, ["verdict"]),
    ("violation", "boom", ["violation"]),
    ("violation.step", "3", ["violation.step"]),
    ("events", 5, ["events"]),
    ("policy", "nope", ["policy", "nope"]),
    ("scenario", "", ["scenario"]),
    ("scenario", "renamed", ["'renamed'", "'tiny-bound'"]),
    ("schedule", "0*99999999999", ["10,000,000"]),
    ("schedule", "0*6", ["step_bound", "tiny-bound"]),
    ("schedule", "0,x", ["bad schedule"]),
]


@pytest.mark.parametrize(("where", "value", "words"), _BAD_RECORDS,
                         ids=[f"{w}={v!r:.20}" for w, v, _ in _BAD_RECORDS])
def test_a_corrupted_counterexample_is_bad_input_naming_the_field(
        saved_ce: Path, where: str, value: object, words: list[str]) -> None:
    t0 = time.monotonic()
    res = run("replay", str(_edit(saved_ce, where, value)))
    assert_bad_input(res)
    for w in words:
        assert w in res.stderr, res.stderr
    assert time.monotonic() - t0 < 10          # npv_locks 1e9 once grew to 2.9 GB


def test_a_counterexample_is_replayed_only_by_its_own_version(saved_ce: Path) -> None:
    doc = json.loads(saved_ce.read_text())
    assert doc["faultline_version"] == doc["version"] == __version__
    assert run("replay", str(saved_ce)).exit_code == 1


def test_scenario_override_replays_on_another_scenario_by_name(saved_ce: Path,
                                                               tmp_path: Path) -> None:
    """--scenario says which scenario to use, whatever name the file gives."""
    _edit(saved_ce, "scenario", "renamed")
    assert run("replay", str(saved_ce), "--scenario", str(tmp_path / "tiny.toml")
               ).exit_code == 1


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"options": ' + "{\"a\": " * 5000 + "1" + "}" * 5001,
                                  "\x00\xff", ""])
def test_deeply_nested_or_garbage_counterexamples_are_bad_input(tmp_path: Path,
                                                                text: str) -> None:
    path = tmp_path / "ce.json"
    path.write_text(text, encoding="latin-1")
    assert_bad_input(run("replay", str(path)))


# ---------------------------------------------------------------- schedules

def test_a_huge_schedule_is_bad_input_before_it_is_expanded() -> None:
    t0 = time.monotonic()
    res = run("replay", "--scenario", "rw-race-shadow", "--schedule", "0*99999999999")
    assert_bad_input(res)
    assert "10,000,000" in res.stderr and time.monotonic() - t0 < 5


def test_a_schedule_longer_than_the_step_bound_is_bad_input() -> None:
    res = run("replay", "--scenario", "rw-race-shadow", "--schedule", "0*4001")
    assert_bad_input(res)
    assert "4,000" in res.stderr and "step_bound" in res.stderr


def test_schedule_strings_are_capped_without_expanding() -> None:
    from faultline.rt.trace import ScheduleTooLong, schedule_from_str
    with pytest.raises(ScheduleTooLong, match="more than 10 steps"):
        schedule_from_str("0*5,1*6", limit=10)
    assert schedule_from_str("0*5,1*5", limit=10) == [0] * 5 + [1] * 5
    with pytest.raises(ScheduleTooLong):
        schedule_from_str("0*" + "9" * 18)


@pytest.mark.parametrize("text", ["0..99999999999", "0..5000"])
def test_huge_preemption_ranges_are_bad_input(text: str) -> None:
    assert_bad_input(run("check", "rw-race-shadow", "--strategy", "dpor", "--preemptions",
                         text))


# ---------------------------------------------------------------- the shrink budget

def _tight(tmp_path: Path) -> Path:
    text = (loader.catalog_dir() / "rw-race-shadow.toml").read_text()
    bad = tmp_path / "tight.toml"
    bad.write_text(text.replace("step_bound = 4000", "step_bound = 100"))
    return bad


def test_the_shrink_budget_is_deterministic_and_reported(tmp_path: Path) -> None:
    args = ["check", str(_tight(tmp_path)), "--runs", "3", "--jobs", "1"]
    capped = [run(*args, "--shrink-budget", "3", "--json") for _ in range(2)]
    assert capped[0].stdout == capped[1].stdout
    ce = json.loads(capped[0].stdout)["results"][0]["counterexample"]
    assert ce["shrink_stopped"] == "executions"
    text = run(*args, "--shrink-budget", "3")
    assert text.exit_code == 1
    assert "shrink-budget=3/60s" in text.stdout.splitlines()[0]
    assert "shrink_runs=3" in text.stdout and "shrink_stopped=executions" in text.stdout
    assert "used its whole budget of 3 executions" in text.stdout
    free = run(*args, "--json")
    assert "shrink_stopped" not in json.loads(free.stdout)["results"][0]["counterexample"]


def test_the_shrink_time_limit_is_a_reported_safety_net(tmp_path: Path) -> None:
    res = run("check", str(_tight(tmp_path)), "--runs", "3", "--jobs", "1",
              "--shrink-seconds", "0")
    assert res.exit_code == 1
    assert "shrink_stopped=seconds" in res.stdout
    assert "stopped at its time limit (0 s)" in " ".join(res.stdout.split())


def test_shrink_budget_unit() -> None:
    from faultline.check.search.shrink import Budget
    b = Budget(executions=2, seconds=1000)
    assert b.allows() and b.left() == 2
    b.used = 2
    assert not b.allows() and b.stopped == "executions"
    late = Budget(executions=10, seconds=0)
    assert not late.allows() and late.stopped == "seconds"


@pytest.mark.parametrize("name", ["FAULTLINE_SHRINK_SECONDS", "FAULTLINE_SHRINK_EXECUTIONS",
                                  "FAULTLINE_CHECKPOINT_SECONDS"])
def test_a_bad_environment_setting_is_bad_input(monkeypatch: pytest.MonkeyPatch,
                                                name: str) -> None:
    monkeypatch.setenv(name, "soon")
    res = run("check", "rw-race-shadow", "--runs", "1")
    assert_bad_input(res)
    assert name in res.stderr
