"""Output files (check.running.files): written atomically through a unique temporary
file, never through a symbolic link, never over a file that is not ours unless --force,
and every output path checked before the work starts."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import Result

from cli_support import TINY, run
from faultline.check import explore
from faultline.check.running import checkpoint, files
from faultline.check.running.files import OutputError

SRC = str(Path(__file__).resolve().parent.parent / "src")

def bad_input(res: Result, *words: str) -> None:
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("faultline: error: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture
def never_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad output paths must fail before any checking starts."""
    def boom(*args: object, **kw: object) -> None:
        raise AssertionError("the check started although an output path was bad")
    monkeypatch.setattr(explore, "check_scenario", boom)


# ---------------------------------------------------------------- the module

def test_write_text_replaces_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "ce.json"
    files.write_text(target, '{"faultline_version": "x", "scenario": "s", "schedule": ""}',
                     files.COUNTEREXAMPLE)
    files.write_text(target, '{"faultline_version": "y", "scenario": "s", "schedule": ""}',
                     files.COUNTEREXAMPLE)
    assert json.loads(target.read_text())["faultline_version"] == "y"
    assert [p.name for p in tmp_path.iterdir()] == ["ce.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


def test_a_symlink_target_is_refused_even_with_force(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out.dot"
    link.symlink_to(victim)
    for force in (False, True):
        with pytest.raises(OutputError, match="symbolic link"):
            files.write_text(link, f"{files.DOT_HEADER}\ndigraph {{}}\n", files.DOT, force)
    assert victim.read_text() == "precious" and link.is_symlink()


def test_a_file_that_is_not_ours_is_kept_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    for kind in (files.CHECKPOINT, files.COUNTEREXAMPLE, files.DOT):
        with pytest.raises(OutputError, match="not a faultline"):
            files.check_target(target, kind)
    assert target.read_text() == "my notes"
    files.write_text(target, f"{files.DOT_HEADER}\n", files.DOT, force=True)
    files.check_target(target, files.DOT)          # now it is ours


@pytest.mark.parametrize("where", ["missing/out", "dir"])
def test_missing_directories_and_directories_are_refused(tmp_path: Path, where: str) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(OutputError, match=r"does not exist|is a directory"):
        files.check_target(tmp_path / where, files.DOT)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "run.ckpt"
    checkpoint.write_atomically(target, {"format": checkpoint.FORMAT, "x": 1})
    before = target.read_text()

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="No space left"):
        checkpoint.write_atomically(target, {"format": checkpoint.FORMAT, "x": 2})
    assert target.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]


# ---------------------------------------------------------------- through the CLI

def test_trace_out_refuses_a_foreign_file_before_checking(tmp_path: Path, tiny: Path,
                                                          never_checks: None) -> None:
    mine = tmp_path / "report.json"
    mine.write_text('{"not": "a counterexample"}')
    bad_input(run("check", str(tiny), "--runs", "1", "--trace-out", str(mine)),
              str(mine), "--force")
    assert mine.read_text() == '{"not": "a counterexample"}'


def test_force_overwrites_a_foreign_file_and_a_counterexample_is_ours(tmp_path: Path,
                                                                     tiny: Path) -> None:
    ce = tmp_path / "ce.json"
    ce.write_text("old notes")
    assert run("check", str(tiny), "--runs", "1", "--trace-out", str(ce)).exit_code == 2
    assert run("check", str(tiny), "--runs", "1", "--trace-out", str(ce), "--force"
               ).exit_code == 1
    assert json.loads(ce.read_text())["scenario"] == "tiny-bound"
    # Our own counterexample is replaced without --force.
    assert run("check", str(tiny), "--runs", "2", "--trace-out", str(ce)).exit_code == 1


@pytest.mark.parametrize("option", ["--trace-out", "--dot"])
def test_outputs_into_a_missing_directory_fail_before_the_check(
        tmp_path: Path, tiny: Path, never_checks: None, option: str) -> None:
    path = tmp_path / "nowhere" / "out"
    bad_input(run("check", str(tiny), "--runs", "1", option, str(path)), "does not exist")


def test_a_dot_file_we_wrote_is_replaced_and_a_foreign_one_kept(tmp_path: Path,
                                                               tiny: Path) -> None:
    dot = tmp_path / "ce.dot"
    assert run("check", str(tiny), "--runs", "1", "--dot", str(dot)).exit_code == 1
    assert dot.read_text().splitlines()[0] == files.DOT_HEADER
    assert run("check", str(tiny), "--runs", "1", "--dot", str(dot)).exit_code == 1
    dot.write_text("digraph mine {}\n")
    bad_input(run("check", str(tiny), "--runs", "1", "--dot", str(dot)), "not a faultline")


def test_two_options_naming_one_file_are_bad_input(tmp_path: Path, tiny: Path,
                                                   never_checks: None) -> None:
    out = tmp_path / "out"
    bad_input(run("check", str(tiny), "--runs", "1", "--trace-out", str(out), "--dot",
                  str(tmp_path / "." / "out")), "same file")


def test_state_refuses_a_symlink_and_a_foreign_file(tmp_path: Path,
                                                    never_checks: None) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "run.ckpt"
    link.symlink_to(victim)
    args = ["check", "zero-fill-parallel", "--strategy", "dpor", "--jobs", "1"]
    bad_input(run(*args, "--state", str(link)), "symbolic link")
    bad_input(run(*args, "--state", str(victim)), "not a faultline DPOR checkpoint")
    assert victim.read_text() == "precious"


def test_state_with_force_replaces_a_foreign_file(tmp_path: Path) -> None:
    state = tmp_path / "run.ckpt"
    state.write_text("not a checkpoint")
    res = run("check", "zero-fill-parallel", "--strategy", "dpor", "--jobs", "1",
              "--max-executions", "5", "--state", str(state), "--force")
    assert res.exit_code == 0, res.stderr
    assert checkpoint.read(state)["finished"] is not None


def test_a_planted_temporary_symlink_is_never_followed(tmp_path: Path) -> None:
    """The old fixed temporary name STATE.tmp: a symlink planted there must not be
    written through (temporaries now have unique names made with O_EXCL|O_NOFOLLOW)."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    state = tmp_path / "run.ckpt"
    (tmp_path / "run.ckpt.tmp").symlink_to(victim)
    res = run("check", "zero-fill-parallel", "--strategy", "dpor", "--jobs", "1",
              "--max-executions", "20", "--state", str(state))
    assert res.exit_code == 0, res.stderr
    assert victim.read_text() == "precious"
    assert checkpoint.read(state)["scenario"] == "zero-fill-parallel"


@pytest.mark.slow
def test_two_runs_on_one_state_file_both_finish(tmp_path: Path) -> None:
    """Two runs checkpointing to the same --state (each write a unique temporary file,
    renamed over it) both finish, and the file is a whole checkpoint of one of them."""
    state = tmp_path / "run.ckpt"
    env = {**os.environ, "PYTHONPATH": SRC, "FAULTLINE_CHECKPOINT_SECONDS": "0"}
    cmd = [sys.executable, "-m", "faultline.cli.app", "check", "zero-fill-parallel",
           "--strategy", "dpor", "--jobs", "1", "--max-executions", "150", "--json",
           "--state", str(state)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    t0 = time.monotonic()
    outs = [p.communicate(timeout=300) for p in procs]
    assert time.monotonic() - t0 < 300
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    assert checkpoint.read(state)["finished"] is not None
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]
