"""--state / --resume: a DPOR run killed with SIGKILL (or stopped with Ctrl-C) and resumed
from its checkpoint reports exactly the totals of an uninterrupted run; a finished run's
checkpoint resumes to the same result; a corrupted checkpoint is bad input naming the
file and the field, never a different result; checkpoints are written at once, every
interval and at the end, whatever --jobs and --max-executions say."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import Result

from cli_support import TINY
from cli_support import run as _in_process
from faultline.check.running import checkpoint, checkpoint_schema
from faultline.check.search import dpor
from faultline.check.search.validation import PROGRAMS, execution

SRC = str(Path(__file__).resolve().parent.parent / "src")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    e = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "120", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "faultline.cli.app", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)


FAST = {"FAULTLINE_CHECKPOINT_SECONDS": "0.05"}


def _kill_midway(base: list[str], state: Path) -> dict[str, object]:
    """Run `base` with --state, SIGKILL it once it has checkpointed a run in progress
    (not only the start), and return the checkpoint it left."""
    p = cli(*base, "--state", str(state), env=FAST)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            doc = checkpoint.read(state)
        except (OSError, ValueError):
            continue
        if doc["current"] is not None and (doc["current"].get("executions") or
                                           doc["current"].get("merged")):
            break
    p.send_signal(signal.SIGKILL)
    p.communicate()
    doc = checkpoint.read(state)
    assert doc["current"] is not None, "the run ended before it could be killed midway"
    return doc


@pytest.mark.parametrize("extra", [["--max-executions", "700"], ["--preemptions", "0..1"]])
@pytest.mark.slow
def test_killed_run_resumes_to_the_same_totals(tmp_path: Path, extra: list[str]) -> None:
    scen = "zero-fill-parallel" if "--max-executions" in extra else "munmap-vs-fault"
    base = ["check", scen, "--strategy", "dpor", "--json", "--jobs", "1", *extra]
    full, _ = cli(*base).communicate(timeout=300)
    state = tmp_path / "run.ckpt"
    doc = _kill_midway(base, state)
    assert doc["scenario"] == scen and doc["split"] == 0
    resumed, err = cli("check", "--resume", str(state), "--json", env=FAST).communicate(
        timeout=300)
    assert err == "" or "Traceback" not in err
    assert json.loads(resumed)["results"] == json.loads(full)["results"]


@pytest.mark.slow
def test_a_killed_split_run_resumes_to_the_same_totals_on_any_jobs(tmp_path: Path) -> None:
    """--state with --jobs 2 checkpoints the split exploration (check.search.split) as its
    subtrees merge; resumed with --jobs 2 or --jobs 1 it reports the totals of the
    uninterrupted split run."""
    base = ["check", "munmap-vs-fault", "--strategy", "dpor", "--json", "--jobs", "2",
            "--preemptions", "0..1"]
    full, _ = cli(*base).communicate(timeout=300)
    assert json.loads(full)["results"][0]["subtrees"] > 1
    state = tmp_path / "run.ckpt"
    doc = _kill_midway(base, state)
    assert doc["split"] > 0
    copy = tmp_path / "copy.ckpt"
    copy.write_text(state.read_text())
    for path, jobs in ((state, "2"), (copy, "1")):
        resumed, err = cli("check", "--resume", str(path), "--json", "--jobs", jobs,
                           env=FAST).communicate(timeout=300)
        assert "Traceback" not in err
        assert json.loads(resumed)["results"] == json.loads(full)["results"]


def test_path_round_trips_through_json() -> None:
    seen: list[list[dpor.Node]] = []

    def between(nodes: list[dpor.Node], res: dpor.DporResult, prefix: int) -> None:
        seen.append(checkpoint.load_path(json.loads(json.dumps(checkpoint.dump_path(nodes)))))
    prog = PROGRAMS["lastzero-3"]
    dpor.explore(lambda rec: execution(prog, rec, [rec]), optimal=True, between=between,
                 stop_on_violation=False)
    assert seen and all(isinstance(n, dpor.Node) for n in seen[-1])


def test_resuming_from_any_checkpoint_gives_the_same_exploration() -> None:
    prog = PROGRAMS["cas-counter-3"]
    make = lambda rec: execution(prog, rec, [rec])  # noqa: E731
    whole = dpor.explore(make, optimal=True, stop_on_violation=False, keep_schedules=True)
    saved: list[tuple[list[dict[str, object]], int, int]] = []

    def between(nodes: list[dpor.Node], res: dpor.DporResult, prefix: int) -> None:
        if res.executions == 40:
            saved.append((json.loads(json.dumps(checkpoint.dump_path(nodes))),
                          res.executions, prefix))
    dpor.explore(make, optimal=True, stop_on_violation=False, between=between)
    data, execs, prefix = saved[0]
    start = dpor.DporResult(executions=execs)
    rest = dpor.explore(make, optimal=True, stop_on_violation=False, keep_schedules=True,
                        resume=(checkpoint.load_path(data), start, prefix))
    assert rest.executions == whole.executions
    assert rest.schedules == whole.schedules[execs:]


# ---------------------------------------------------------------- finished checkpoints

@pytest.mark.parametrize("extra", [["--jobs", "1"], ["--jobs", "1", "--split", "2"]])
def test_a_capped_run_leaves_a_checkpoint_that_resumes_to_its_result(
        tmp_path: Path, extra: list[str]) -> None:
    """Stopped by --max-executions, the run checkpoints its end; --resume reports the
    same result (not exhaustive, same totals) without exploring again."""
    state = tmp_path / "run.ckpt"
    base = ["check", "zero-fill-parallel", "--strategy", "dpor", "--json",
            "--max-executions", "40", *extra]
    first = _in_process(*base, "--state", str(state))
    assert first.exit_code == 0, first.stderr
    doc = checkpoint.read(state)
    assert doc["finished"] is not None and doc["current"] is None
    assert doc["finished"]["exhaustive"] is False and doc["finished"]["violation"] is None
    again = _in_process("check", "--resume", str(state), "--json", "--jobs", "1")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["results"] == json.loads(first.stdout)["results"]
    assert json.loads(first.stdout)["results"][0]["exhaustive"] is False


@pytest.mark.parametrize("extra", [[], ["--split", "1"]])
def test_a_violating_run_leaves_a_checkpoint_that_resumes_to_its_counterexample(
        tmp_path: Path, extra: list[str]) -> None:
    scenario, state = tmp_path / "tiny.toml", tmp_path / "run.ckpt"
    scenario.write_text(TINY)
    first = _in_process("check", str(scenario), "--strategy", "dpor", "--json", "--jobs", "1",
                        "--state", str(state), *extra)
    assert first.exit_code == 1, first.stderr
    fin = checkpoint.read(state)["finished"]
    assert fin["violation"] and fin["exhaustive"] is False
    again = _in_process("check", "--resume", str(state), "--json", "--jobs", "1")
    assert again.exit_code == 1, again.stderr
    assert again.stdout == first.stdout


# ---------------------------------------------------------------- corrupted checkpoints

# Two threads fault one file page: a DPOR tree small enough (75 executions within one
# preemption) that any resume of it takes a fraction of a second.
SMALL = """\
name = "small-race"
description = "Two threads fault the same file page, one reading, one writing."
step_bound = 2000

[[file]]
name = "data"
pages = [10, 20]

[[process]]
name = "p1"
[[process.map]]
addr = 0x1000
pages = 2
file = "data"
prot = "rw"

[[thread]]
name = "R"
process = "p1"
ops = ["read 0x1000"]

[[thread]]
name = "W"
process = "p1"
ops = ["write 0x1000 7"]
"""


def midway_checkpoints(directory: Path) -> dict[str, dict[str, object]]:
    """Checkpoints taken in the middle of a sequential and of a split (depth 2)
    exploration of SMALL (written to `directory`), within preemption bounds 0..1 and
    at most 100 executions per bound, so that every resume is quick."""
    from faultline.check.explore import CheckConfig, check_scenario
    from faultline.check.running.runners import InlineRunner
    from faultline.check.search.split import check_split
    from faultline.scenario.loader import load_path
    path = directory / "small.toml"
    path.write_text(SMALL)
    s = load_path(path)
    saved: list[dict[str, object]] = []
    real = checkpoint.write_atomically

    def keep(path: str, doc: dict[str, object]) -> None:
        saved.append(json.loads(json.dumps(doc)))
    checkpoint.write_atomically = keep  # type: ignore[assignment]
    try:
        cfg = CheckConfig(strategy="dpor", preemptions=(0, 1), max_executions=100,
                          checkpoint_seconds=0.0, state=str(directory / "unused"))
        check_scenario(s, cfg)
        seq = [d for d in saved if d["current"] is not None]
        saved.clear()
        check_split(s, dataclasses.replace(cfg, split=2), InlineRunner(), 2)
        spl = [d for d in saved if d["current"] is not None and d["current"]["merged"]]
    finally:
        checkpoint.write_atomically = real  # type: ignore[assignment]
    return {"sequential": seq[len(seq) // 2], "split": spl[len(spl) // 2]}


@pytest.fixture(scope="module")
def midway(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    return midway_checkpoints(tmp_path_factory.mktemp("small"))


def _write(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(checkpoint.seal(doc))
    return path


def _resume(path: Path) -> Result:
    return _in_process("check", "--resume", str(path), "--json", "--jobs", "1")


def test_midway_checkpoints_resume_to_the_uninterrupted_result(
        tmp_path: Path, midway: dict[str, dict[str, object]]) -> None:
    for kind, doc in midway.items():
        whole = _in_process("check", str(doc["scenario_path"]), "--strategy", "dpor",
                            "--preemptions", "0..1", "--max-executions", "100", "--json",
                            "--jobs", "1", "--split", "2" if kind == "split" else "0")
        res = _resume(_write(tmp_path / f"{kind}.ckpt", doc))
        assert res.exit_code == whole.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["results"] == json.loads(whole.stdout)["results"]


def _bad(res: Result, *words: str) -> None:
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("faultline: error: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_a_changed_byte_breaks_the_seal(tmp_path: Path, midway: dict[str, dict[str, object]]
                                        ) -> None:
    path = _write(tmp_path / "run.ckpt", midway["sequential"])
    text = path.read_text()
    path.write_text(text.replace('"executions":', '"executions":1', 1))
    _bad(_resume(path), str(path), "checksum mismatch")


def test_an_older_layout_is_refused(tmp_path: Path, midway: dict[str, dict[str, object]]
                                    ) -> None:
    doc = {**midway["sequential"], "format": "faultline-dpor-checkpoint/1"}
    path = tmp_path / "old.ckpt"
    path.write_text(json.dumps(doc))
    _bad(_resume(path), str(path), "faultline-dpor-checkpoint/1", "start the exploration again")


def _set(doc: dict[str, object], where: str, value: object) -> dict[str, object]:
    """A deep copy of `doc` with the field at dotted path `where` (list indices as
    numbers) set to `value`, or removed if value is _DROP."""
    out = json.loads(json.dumps(doc))
    *path, last = [int(k) if k.lstrip("-").isdigit() else k for k in where.split(".")]
    node = out
    for k in path:
        node = node[k]
    if value is _DROP:
        del node[last]
    else:
        node[last] = value
    return out


_DROP = object()


# (which checkpoint, field, new value (_DROP: removed), words the error names)
_CORRUPTIONS = [
    ("sequential", "bound_index", 99, ["bound_index"]),
    ("sequential", "bound_index", 2, ["bound_index", "no bound for current"]),
    ("sequential", "bound_index", -1, ["bound_index"]),
    ("sequential", "npv_locks", 0, ["npv_locks", "1..1024"]),
    ("sequential", "npv_locks", 10 ** 9, ["npv_locks"]),
    ("sequential", "npv_locks", "x", ["npv_locks"]),
    ("sequential", "scenario", "cow-rename", ["scenario", "cow-rename", "small-race"]),
    ("sequential", "policy", "nope", ["policy"]),
    ("sequential", "dpor", "fancy", ["dpor"]),
    ("sequential", "split", 7, ["coverage"]),
    ("sequential", "split", -1, ["split"]),
    ("sequential", "totals.executions", -5, ["totals.executions"]),
    ("sequential", "totals", [], ["totals"]),
    ("sequential", "current.nodes.0", "node", ["current.nodes[0]"]),
    ("sequential", "current.nodes.3.chosen", 99, ["current.nodes[3].chosen"]),
    ("sequential", "current.nodes.3.enabled", [0, 1, 2, 3, 4], ["current.nodes[3].enabled"]),
    ("sequential", "current.nodes.2.pending", [[0, [[{"a": 1}, "w"]]]],
     ["current.nodes[2].pending"]),
    ("sequential", "current.prefix_len", 3, ["current.prefix_len"]),
    ("sequential", "current.nodes", [], ["current.prefix_len"]),
    ("sequential", "faultline_version", "0.0.1", ["faultline_version", "0.0.1"]),
    ("sequential", "scenario_digest", "sha256:00", ["scenario_digest", "changed"]),
    ("sequential", "preemptions", [], ["preemptions"]),
    ("sequential", "max_executions", 0, ["max_executions"]),
    ("sequential", "every_step", 1, ["every_step"]),
    ("sequential", "surprise", 1, ["surprise", "not a field"]),
    ("split", "current.merged", 99, ["current.merged"]),
    ("split", "current.roots", [[1]], ["current.roots"]),
    ("split", "current.roots.-1", [9, 9, 9], ["current.roots["]),
    ("split", "current.explored.0.1", [7], ["current.explored[0]"]),
    ("split", "current.totals.subtrees", 99, ["current.totals.subtrees"]),
    ("split", "totals.coverage", {"op": -1}, ["totals.coverage.op"]),
    ("split", "split", 0, ["totals.coverage", "not a field"]),
    ("split", "split", 1001, ["split", "0..1000"]),
    ("split", "finished", {"exhaustive": True, "preemption_bound": 1, "violation": None},
     ["finished"]),
]


@pytest.mark.parametrize(("kind", "where", "value", "words"), _CORRUPTIONS,
                         ids=[f"{k}-{w}={v!r:.20}" for k, w, v, _ in _CORRUPTIONS])
def test_a_corrupted_checkpoint_is_bad_input_naming_the_field(
        tmp_path: Path, midway: dict[str, dict[str, object]], kind: str, where: str,
        value: object, words: list[str]) -> None:
    """Each corruption, sealed again (as if written so): the layout and the fit to the
    scenario are checked whole before anything runs."""
    path = _write(tmp_path / "bad.ckpt", _set(midway[kind], where, value))
    _bad(_resume(path), str(path), *words)


@pytest.mark.parametrize("key", sorted(checkpoint_schema._SEQ_KEYS))
def test_every_missing_key_is_bad_input(tmp_path: Path, midway: dict[str, dict[str, object]],
                                        key: str) -> None:
    doc = _set(midway["sequential"], key, _DROP)
    path = _write(tmp_path / "bad.ckpt", doc)
    _bad(_resume(path), str(path))


def test_deep_nesting_and_garbage_are_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "deep.ckpt"
    for text in ["[" * 100_000 + "]" * 100_000, '{"format": ' + "[" * 5000 + "]" * 5000 + "}",
                 "\xff\xfe", "", "null", '{"format": "faultline-dpor-checkpoint/2"}']:
        path.write_text(text, encoding="latin-1")
        _bad(_resume(path), str(path))


def test_a_scenario_file_changed_since_the_checkpoint_is_bad_input(tmp_path: Path) -> None:
    doc = midway_checkpoints(tmp_path)["sequential"]
    (tmp_path / "small.toml").write_text(SMALL.replace('"write 0x1000 7"', '"write 0x1000 8"'))
    _bad(_resume(_write(tmp_path / "run.ckpt", doc)), "scenario_digest", "changed since")


def test_a_path_that_does_not_replay_is_bad_input(
        tmp_path: Path, midway: dict[str, dict[str, object]]) -> None:
    """Sealed and well formed, but its path asks for a thread that cannot run there
    (as after a change to the model): refused before anything runs."""
    doc = json.loads(json.dumps(midway["sequential"]))
    nodes = doc["current"]["nodes"]
    k = next(i for i, n in enumerate(nodes) if len(n["enabled"]) == 1)
    nodes[k]["enabled"] = [*nodes[k]["enabled"], 7]
    nodes[k]["chosen"] = 7
    _bad(_resume(_write(tmp_path / "run.ckpt", doc)), "cannot run there")


# ---------------------------------------------------------------- when checkpoints are written

def _first_checkpoint(args: list[str], state: Path, env: dict[str, str]
                      ) -> tuple[float | None, int, float, int]:
    """Run `faultline ARGS --state STATE`: when the checkpoint first appeared (seconds
    after the start), how many different versions of it were seen, the run's length,
    its exit status."""
    t0 = time.monotonic()
    p = cli(*args, "--state", str(state), env=env)
    first, versions, last = None, 0, None
    while p.poll() is None:
        try:
            stamp = state.stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != last:
            first = time.monotonic() - t0 if first is None else first
            versions, last = versions + 1, stamp
        time.sleep(0.01)
    p.communicate()
    return first, versions, time.monotonic() - t0, p.returncode


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("cap", [True, False])
@pytest.mark.slow
def test_checkpoints_are_written_at_once_every_interval_and_at_the_end(
        tmp_path: Path, jobs: str, cap: bool) -> None:
    state = tmp_path / "run.ckpt"
    args = ["check", "munmap-vs-fault", "--strategy", "dpor", "--jobs", jobs, "--json",
            "--preemptions", "0..1", *(["--max-executions", "300"] if cap else [])]
    first, versions, took, status = _first_checkpoint(
        args, state, {"FAULTLINE_CHECKPOINT_SECONDS": "0.5"})
    assert status == 0
    assert first is not None and first < 10          # interpreter start-up and imports
    assert versions >= 3 or took < 2                 # start, interval(s), end
    fin = checkpoint.read(state)["finished"]
    assert fin is not None and fin["exhaustive"] is not cap


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.slow
def test_ctrl_c_checkpoints_and_the_resumed_run_reaches_the_same_totals(
        tmp_path: Path, jobs: str) -> None:
    base = ["check", "munmap-vs-fault", "--strategy", "dpor", "--json", "--jobs", jobs,
            "--preemptions", "0..1"]
    full, _ = cli(*base).communicate(timeout=300)
    state = tmp_path / "run.ckpt"
    p = cli(*base, "--state", str(state), env={"FAULTLINE_CHECKPOINT_SECONDS": "3600"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not state.exists():
        time.sleep(0.05)
    time.sleep(1.0)                        # well into the exploration
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("the run ended before Ctrl-C reached it")
    assert p.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]          # what was done, then where it is saved
    assert last.startswith("faultline: interrupted: ") and \
        " runs in " in last and f"; checkpoint saved in {state}; " in last
    doc = checkpoint.read(state)
    assert doc["finished"] is None
    resumed, err = cli("check", "--resume", str(state), "--json", "--jobs", jobs
                       ).communicate(timeout=300)
    assert "Traceback" not in err
    assert json.loads(resumed)["results"] == json.loads(full)["results"]
