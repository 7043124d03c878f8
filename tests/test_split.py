"""Work stealing inside one DPOR tree (check.search.split): the subtrees below the frozen top
of the tree, dealt out to workers, explore every trace the whole tree does, and the
result depends on the split depth, never on the runner or the number of workers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from faultline.check.explore import CheckConfig, check_scenario, replay
from faultline.check.running import checkpoint
from faultline.check.running.parallel import check_many
from faultline.check.running.runners import InlineRunner, open_runner
from faultline.check.search.dpor import explore
from faultline.check.search.split import check_split
from faultline.check.search.validation import PROGRAMS, _Follow, execution, trace_key
from faultline.scenario.loader import load_scenario


def _traces(program: object, schedules: list[list[int]]) -> set[object]:
    keys = set()
    for sched in schedules:
        f = _Follow(sched)
        execution(program, f, []).run()  # type: ignore[arg-type]
        keys.add(trace_key(f.steps))
    return keys


def _split_by_hand(program: object, depth: int, **kw: object) -> tuple[set[object], int]:
    """check.search.split's closure over subtrees, on a validation program: every branch a
    subtree asks for at a frozen node becomes a subtree of its own."""
    todo: list[tuple[int, ...]] = [()]
    seen: set[tuple[int, ...]] = set()
    paths: set[tuple[int, ...]] = set()
    schedules: list[list[int]] = []
    while todo:
        root = todo.pop()
        r = explore(lambda rec: execution(program, rec, [rec]),  # type: ignore[arg-type]
                    stop_on_violation=False, keep_schedules=True, root=root, split=depth,
                    **kw)  # type: ignore[arg-type]
        assert r.exhaustive and tuple(r.root[:len(root)]) == root
        if tuple(r.root) in paths:
            continue
        paths.add(tuple(r.root))
        schedules += r.schedules
        for k, q in sorted(r.branches):
            child = (*r.root[:k], q)
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return _traces(program, schedules), len(paths)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("name", ["lastzero-3", "indexer-3", "readers-writer-3",
                                  "locked-increments-3", "cas-counter-3", "handoff"])
@pytest.mark.parametrize("kw", [{"optimal": True}, {"optimal": False}, {"bound": 1}],
                         ids=["optimal", "source", "bound1"])
def test_subtrees_explore_every_trace_the_whole_tree_does(name: str, depth: int,
                                                          kw: dict[str, object]) -> None:
    program = PROGRAMS[name]
    whole = explore(lambda rec: execution(program, rec, [rec]),  # type: ignore[arg-type]
                    stop_on_violation=False, keep_schedules=True, **kw)  # type: ignore[arg-type]
    want = _traces(program, whole.schedules)
    got, subtrees = _split_by_hand(program, depth, **kw)
    assert got == want
    assert subtrees >= 1


def _as_json(r: object) -> str:
    return json.dumps(r.to_json(), sort_keys=True)  # type: ignore[attr-defined]


def test_a_split_scenario_matches_the_whole_tree_and_any_runner() -> None:
    s = load_scenario("rw-race-shadow")
    cfg = CheckConfig(strategy="dpor", preemptions=(1,))
    whole = check_scenario(s, cfg)
    inline = check_split(s, cfg, InlineRunner(), 3)
    with open_runner(2) as runner:
        pooled = check_split(s, cfg, runner, 3)
    assert _as_json(inline) == _as_json(pooled)
    assert inline.verdict == whole.verdict == "pass" and inline.exhaustive
    assert inline.traces == whole.traces
    assert set(inline.coverage) == set(whole.coverage)
    assert inline.subtrees is not None and inline.subtrees > 1
    assert inline.executions >= whole.traces


def test_two_jobs_split_one_scenario_and_jobs_one_with_split_agrees() -> None:
    s = [load_scenario("mprotect-vs-fault")]
    cfg = CheckConfig(strategy="dpor", preemptions=(1,))
    two = check_many(s, cfg, 2)
    assert two[0].subtrees is not None            # more workers than scenarios: split
    one = check_many(s, CheckConfig(strategy="dpor", preemptions=(1,), split=6), 1)
    assert _as_json(one[0]) == _as_json(two[0])
    plain = check_many(s, cfg, 1)[0]
    assert plain.subtrees is None and plain.traces == two[0].traces


def test_a_violation_in_a_subtree_is_the_same_for_any_jobs_and_replays(rename_sbusied: str
                                                                       ) -> None:
    s = load_scenario("cow-rename")
    cfg = CheckConfig(policy=rename_sbusied, strategy="dpor", split=4)
    one = check_many([s], cfg, 1)[0]
    two = check_many([s], cfg, 2)[0]
    assert one.verdict == two.verdict == "violation"
    assert _as_json(one) == _as_json(two)
    ce = two.counterexample
    assert ce is not None and ce.violation is not None
    again = replay(s, ce)
    assert again.outcome.violation is not None
    assert again.outcome.violation.message == ce.violation["message"]


def test_a_split_run_resumed_from_any_checkpoint_reaches_the_same_totals(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--state on a split exploration: resuming from a checkpoint taken after any unit
    merged (or after a bound ended) gives the uninterrupted run's JSON."""
    s = load_scenario("rw-race-shadow")
    cfg = CheckConfig(strategy="dpor", preemptions=(0, 1), checkpoint_seconds=0.0)
    whole = check_split(s, cfg, InlineRunner(), 3)
    saved: list[dict[str, object]] = []
    real = checkpoint.write_atomically

    def keep(path: str, doc: dict[str, object]) -> None:
        saved.append(json.loads(json.dumps(doc)))
        real(path, doc)
    monkeypatch.setattr(checkpoint, "write_atomically", keep)
    state = str(tmp_path / "run.ckpt")
    check_split(s, dataclasses.replace(cfg, state=state), InlineRunner(), 3)
    assert len(saved) > 3 and checkpoint.read(state) == saved[-1]
    assert any(d["current"] is None for d in saved[:-1])      # a bound ended midway
    for doc in (saved[0], saved[len(saved) // 2], saved[-2], saved[-1]):
        again = check_split(s, dataclasses.replace(cfg, state=state, resume=doc),
                            InlineRunner(), 3)
        assert _as_json(again) == _as_json(whole)


def test_a_split_checkpoint_resumes_only_at_its_own_depth() -> None:
    s = load_scenario("rw-race-shadow")
    doc = {"scenario": s.name, "policy": "sbusy", "split": 3}
    with pytest.raises(ValueError, match="--split 3"):
        check_split(s, CheckConfig(strategy="dpor", resume=doc), InlineRunner(), 2)
    with pytest.raises(ValueError, match="--split 3"):
        check_scenario(s, CheckConfig(strategy="dpor", resume=doc))
