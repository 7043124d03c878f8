"""False alarms: generated legal scenarios must pass under both landed policies.

Every scenario `scenario.generate` draws is legal, so a violation on any of its runs is
a false alarm of the checker or a bug in the model, and a crash is a bug in faultline:
either fails the test, which names the saved scenario file and prints it (with the
commands that replay it).  NotModelled outcomes are neither (the model declines a legal
path it does not cover) and are only counted.  The other tests here check that the
generator is deterministic and covers what it promises, that `to_toml` round-trips,
and that the harness classifies and saves what it finds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from faultline.check import explore
from faultline.check.judging.falsealarms import FuzzReport, Verdict, fuzz, fuzz_one
from faultline.check.search.strategies import ReplayStrategy
from faultline.rt.sync import not_modelled
from faultline.rt.trace import schedule_from_str
from faultline.scenario.api import ops, scenario
from faultline.scenario.generate import features, random_scenario, range_shapes
from faultline.scenario.loader import load_catalog, load_path, load_scenario, load_text
from faultline.scenario.spec import MappingSpec, ProcessSpec, ThreadSpec
from faultline.scenario.toml_out import to_toml

# 800 scenarios x 2 policies x (3 random + 3 PCT runs), about 9,600 executions: 25-30 s
# on one core here (the test runs in one process).
SEEDS = range(800)
SHOWN = 3                 # failing scenarios printed in full in the failure message


def _failure_text(report: FuzzReport) -> str:
    bad = report.failures()
    lines = [f"{len(bad)} false alarm(s) or crash(es) in {report.scenarios} generated "
             f"scenarios ({report.executions} executions): {dict(report.counts())}"]
    for v in bad:
        lines.append(f"  {report.saved[v.scenario]}: {v.policy} {v.status} {v.kind}: "
                     f"{v.message}")
    for path in list(report.saved.values())[:SHOWN]:
        lines += ["", f"---- {path} ----", path.read_text(encoding="utf-8")]
    for v in bad:
        if v.detail:
            lines += ["", f"---- {v.scenario} {v.policy} traceback ----", v.detail]
            break
    return "\n".join(lines)


@pytest.mark.slow
def test_generated_scenarios_raise_no_false_alarm(tmp_path: Path) -> None:
    report = fuzz(SEEDS, save_dir=tmp_path)
    assert report.scenarios == len(SEEDS)
    assert report.executions >= len(SEEDS) * 2 * 2      # each policy ran both strategies
    if report.failures():
        pytest.fail(_failure_text(report), pytrace=False)


def test_generator_covers_its_shapes() -> None:
    total: Counter[str] = Counter()
    for seed in SEEDS:
        total += features(random_scenario(seed))
    n = len(SEEDS)
    # Processes, forks (from a setup and from a thread, grandchildren), exit, exec.
    assert total["multi-root"] >= n // 4 and total["image-root"] >= n // 20
    assert total["op:fork"] >= n // 2 and total["fork-in-setup"] >= n // 10
    assert total["fork-in-thread"] >= n // 3 and total["grandchild"] >= n // 20
    assert total["op:exit"] >= n // 5 and total["op:exec"] >= n // 10
    assert total["multi-thread-process"] >= n
    # Every range op, on every shape of range, and concurrent overlapping ones.
    for op in ("munmap", "mprotect", "minherit", "mlock", "munlock"):
        assert total["op:" + op] >= n // 2, op
    for shape in ("whole", "partial", "middle", "spans-two", "hole"):
        assert total["range:" + shape] >= n // 8, shape
    assert total["overlapping-range-ops"] >= n // 2
    # Mappings of every kind, reads, writes and the odd event.
    for kind in ("shared", "private", "file", "anon", "init", "inherit"):
        assert total["map:" + kind] >= n // 3, kind
    assert total["op:read"] >= 2 * n and total["op:write"] >= 2 * n
    assert total["op:pageout"] >= n // 3       # swap paging, with the map dropped
    assert total["op:post"] >= n // 20 and total["op:wait"] == total["op:post"]


def test_range_shapes() -> None:
    from faultline.scenario.generate import Region
    regions = [Region(0, 4, "rw", "copy"), Region(4, 2, "r", "copy")]
    assert range_shapes((1, 2), regions) == ["middle"]
    assert range_shapes((0, 4), regions) == ["whole"]
    assert range_shapes((3, 2), regions) == ["partial", "spans-two"]
    assert range_shapes((5, 3), regions) == ["hole", "partial"]


def test_generator_is_deterministic_across_processes() -> None:
    texts = [to_toml(random_scenario(seed)) for seed in (0, 1, "x")]
    assert texts == [to_toml(random_scenario(seed)) for seed in (0, 1, "x")]
    assert len(set(texts)) == 3
    code = ("import sys; from faultline.scenario.generate import random_scenario; "
            "from faultline.scenario.toml_out import to_toml; "
            "sys.stdout.write(to_toml(random_scenario(1)))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out == texts[1]


@pytest.mark.parametrize("source", ["generated", "catalog"])
def test_to_toml_round_trips(source: str) -> None:
    scenarios = [random_scenario(seed) for seed in range(300)] if source == "generated" \
        else load_catalog()
    for s in scenarios:
        assert load_text(to_toml(s), s.source) == s, s.name


def test_to_toml_quotes_strings() -> None:
    s = scenario("odd-text", 'quotes " and \\ and\ttabs\nnewlines \x7f and é',
                 processes=[ProcessSpec("p1", mappings=(MappingSpec(0x1000, 1),))],
                 threads=[ThreadSpec("T", "p1", ops("write 0x1000 -3"))],
                 expect={"sbusy": "pass"}, probes=["a \"probe\""])
    assert load_text(to_toml(s), s.source) == s


def _wired_fork() -> object:
    """mlock of a writable private page, then fork: the model raises NotModelled."""
    return scenario("wired-fork", "fork of a wired writable COPY entry",
                    processes=[ProcessSpec("p1", mappings=(MappingSpec(0x1000, 1),),
                                           setup=ops("mlock 0x1000 1", "fork p2")),
                               ProcessSpec("p2", parent="p1")],
                    threads=[ThreadSpec("T", "p2", ops("read 0x1000"))])


def test_not_modelled_is_counted_not_failed(tmp_path: Path) -> None:
    report = fuzz_one(0, runs=2, save_dir=tmp_path, generate=lambda seed: _wired_fork())
    assert [v.status for v in report.verdicts] == ["not-modelled", "not-modelled"]
    assert "vm_fault_copy_entry" in report.verdicts[0].message
    assert not report.failures() and not report.saved
    assert report.counts()["not-modelled"] == 2


def test_a_violation_is_saved_with_a_replay(tmp_path: Path, rename_sbusied: str) -> None:
    # A seeded bug (conftest: D51474 renaming a share-busied page) makes the catalog's
    # cow-rename fail; the harness must report it, save it and say how to replay it.
    s = load_scenario("cow-rename")
    report = fuzz_one(7, policies=(rename_sbusied,), runs=40, save_dir=tmp_path,
                      generate=lambda seed: s)
    [v] = report.failures()
    assert v.status == "violation" and v.kind and v.schedule
    path = report.saved[s.name]
    text = path.read_text(encoding="utf-8")
    assert v.message.splitlines()[0] in text and "faultline replay --scenario" in text
    assert "--no-shrink" in text
    loaded = load_path(path)
    assert loaded == load_text(to_toml(s), str(path))
    rerun = explore.run_once(loaded, rename_sbusied,
                             ReplayStrategy(schedule_from_str(v.schedule)))
    assert rerun.outcome.violation is not None and rerun.outcome.violation.kind == v.kind


def test_a_crash_is_classified_and_saved(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(s: object, cfg: explore.CheckConfig) -> object:
        raise RuntimeError("model bug")
    monkeypatch.setattr(explore, "check_scenario", boom)
    report = fuzz_one(3, policies=("sbusy",), runs=1, save_dir=tmp_path)
    [v] = report.failures()
    assert isinstance(v, Verdict) and v.status == "crash" and v.kind == "RuntimeError"
    assert "model bug" in v.detail
    assert report.saved[v.scenario].is_file()
    assert not_modelled(RuntimeError()) is None


def test_generated_files_are_all_used() -> None:
    for seed in range(50):
        s = random_scenario(seed)
        used = {m.file for p in s.processes for m in p.mappings} | {
            g.file for i in s.images for g in i.segments}
        assert {f.name for f in s.files} <= used

