"""Tests for the execution's fast paths: what they skip must stay invisible.

The plain step loop leaves Tracked writes unhooked unless some execution records
footprints, and `ops.note` skips its trap unless the execution has a note observer.
These tests check that an observer that does ask still sees everything, whatever ran
before it in the same process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faultline.check.search.dependency import footprint, races
from faultline.check.search.strategies import RandomStrategy
from faultline.rt import context, ops
from faultline.rt.context import Tracked
from faultline.rt.execution import Execution, Hooks, Thread


@dataclass(eq=False, slots=True)
class Box(Tracked):
    label: str
    x: int = 0

    @property
    def fl_key(self) -> tuple[str, str]:
        return ("box", self.label)


class Footprints(Hooks):
    """Records each step's footprint."""

    wants_footprints = True

    def __init__(self) -> None:
        self.steps: list[list[tuple[Any, str]]] = []

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        self.steps.append(list(ex.last_footprint))


class Notes(Hooks):
    """Records every note's kind."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def noted(self, ex: Execution, t: Thread, note: ops.Note) -> None:
        self.kinds.append(note.kind)


async def writer(box: Box) -> None:
    await ops.note("first")
    await ops.pause("w")
    box.x += 1
    await ops.note("second")
    await ops.pause("w")
    box.x += 1


def run(observers: list[Hooks], box: Box) -> Execution:
    ex = Execution(RandomStrategy(0), observers)
    ex.spawn("t0", "test", writer(box))
    ex.run()
    return ex


def test_plain_runs_leave_tracked_writes_unhooked() -> None:
    run([], Box("b"))
    assert "__setattr__" not in vars(Tracked)
    run([Footprints()], Box("b"))
    run([], Box("b"))
    assert "__setattr__" not in vars(Tracked)


def test_footprints_are_recorded_after_a_plain_run() -> None:
    run([], Box("b"))
    fp = Footprints()
    run([fp], Box("b"))
    # Field level: the field written, and "some field" of the object (rt.context).
    assert fp.steps == [[((("box", "b"), "x"), "w"), (("box", "b"), "f-w")]] * 2


def test_a_plain_run_inside_a_recording_one_keeps_the_hook() -> None:
    class Nested(Footprints):
        def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
            super().stepped(ex, t, op, result)
            if len(self.steps) == 1:
                run([], Box("inner"))      # e.g. an observer replaying something

    fp = Nested()
    run([fp], Box("b"))
    # Field level: the field written, and "some field" of the object (rt.context).
    assert fp.steps == [[((("box", "b"), "x"), "w"), (("box", "b"), "f-w")]] * 2


def test_notes_reach_an_observer_after_a_run_without_one() -> None:
    run([], Box("b"))
    assert context.noting is False
    notes = Notes()
    run([notes], Box("b"))              # "first" is in the spawn's own segment
    assert notes.kinds == ["first", "second"]


def test_stepping_by_hand_records_footprints() -> None:
    run([], Box("b"))
    fp = Footprints()
    ex = Execution(RandomStrategy(0), [fp])
    t = ex.spawn("t0", "test", writer(Box("b")))
    ex.step(t)
    ex.step(t)
    # Field level: the field written, and "some field" of the object (rt.context).
    assert fp.steps == [[((("box", "b"), "x"), "w"), (("box", "b"), "f-w")]] * 2


def _step_footprints(make: Any) -> list[tuple[Any, ...]]:
    """Each step's whole footprint (its op's and what its code logged), two threads."""
    box, fp = Box("b"), Footprints()
    ops_seen: list[ops.Op] = []

    class Ops(Hooks):
        def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
            ops_seen.append(op)
    ex = Execution(RandomStrategy(0), [fp, Ops()])
    for name in ("a", "b"):
        ex.spawn(name, "test", make(box))
    ex.run()
    return [footprint(op) + tuple(logged) for op, logged in zip(ops_seen, fp.steps)
            if type(op) is ops.Atomic]


def test_blind_adds_commute_and_fetchadds_race() -> None:
    # atomic_add_int's write is logged as an add, so two of them commute even on a
    # Tracked object (a logged plain write made them race); a fetchadd reads the field.
    async def blind(box: Box) -> None:
        await ops.atomic_add_int(box, "x", 1)

    async def fetch(box: Box) -> None:
        await ops.atomic_add(box, "x", 1)

    a, b = _step_footprints(blind)
    assert not races(a, b)
    a, b = _step_footprints(fetch)
    assert races(a, b)
    c = _step_footprints(lambda box: ops.racy_load(box, "label"))[0]
    assert not races(a, c)            # another field: independent
