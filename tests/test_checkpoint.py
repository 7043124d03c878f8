"""--state / --resume: a DPOR run killed with SIGKILL and resumed from its checkpoint
reports exactly the totals of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faultline.check.running import checkpoint
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
