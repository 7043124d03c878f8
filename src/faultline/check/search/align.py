"""A counterexample's schedule under another policy: the same thread decisions, setup aligned.

What lives here: `segments` (a recorded run after its setup as runs of one thread, each
marked preempted when the thread could still have gone on), `AlignedReplay`, a strategy
(and observer) that replays those segments under another policy, and `replay_under`,
which does it and returns the run's anatomy with a line saying how it was aligned.

Why by setup and by segment: the setup is sequential, so the only thing a policy changes
there is its length (a fault under sbusy takes other steps than under xbusy): the
setup runs alone to its end, however long.  After it, the steps a thread takes for one
op differ between policies too, so a schedule is read as the thread decisions it makes:
a segment whose thread blocked or ended runs, under the other policy, until its thread
blocks or ends; a preempted segment runs the same number of steps (the preemption is
the decision that matters, and its place is counted in the thread's own steps).  Once
the segments are used up the run goes on without preemptions (the thread that ran last
keeps running while it can, else the first enabled one), so it reaches its end.
When a segment's thread cannot take its turn (asleep, blocked, finished, or never
created under this policy) the schedule cannot be followed: ReplayDivergence says in one
line at which step, what that thread is doing instead, and the first step where that
thread's two runs did different things.
Rule kept: a strategy decides only which thread runs.  Must not be added: rendering.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from faultline.check.explore import run_once
from faultline.check.judging.anatomy import Anatomy, dissect, setup_end
from faultline.check.search.strategies import ReplayStrategy
from faultline.kern import freebsd_name
from faultline.report.words import plural
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, ReplayDivergence, Thread
from faultline.rt.trace import Event, RunRecord, describe_op, schedule_from_str
from faultline.scenario.spec import Scenario

__all__ = ["AlignedReplay", "Segment", "replay_under", "segments"]

SETUP = "setup"
Did = tuple[str, str]               # (what a step did, its model function)


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of one thread's steps; `preempted`: it could still have gone on."""

    thread: str
    steps: int
    preempted: bool

    def __str__(self) -> str:
        if self.preempted:
            return f"{self.thread} for {plural(self.steps, 'step')} (preempted)"
        return self.thread


class _GoesOn(Hooks):
    """Records, after each step, whether its thread could take the next one."""

    def __init__(self) -> None:
        self.could: dict[int, bool] = {}

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        """Could `t` have run on?"""
        self.could[ex.steps] = not t.done and t in ex.enabled()


def segments(events: Sequence[Event], first: int, could: dict[int, bool]) -> list[Segment]:
    """The steps from `first` on as segments; the last is never preempted (the run
    ended there, and under another policy it runs on)."""
    runs: list[list[Any]] = []
    for e in events:
        if e.kind == "note" or e.step < first:
            continue
        if runs and runs[-1][0] == e.thread:
            runs[-1][1] += 1
            runs[-1][2] = e.step
        else:
            runs.append([e.thread, 1, e.step])
    return [Segment(t, n, i < len(runs) - 1 and could.get(end, False))
            for i, (t, n, end) in enumerate(runs)]


def _did(events: Sequence[Event], after: int) -> dict[str, list[Did]]:
    out: dict[str, list[Did]] = {}
    for e in events:
        if e.kind != "note" and e.step > after:
            out.setdefault(e.thread, []).append((e.what, e.function))
    return out


class AlignedReplay(Hooks):
    """Setup alone, then `segs` (see the module header), then no preemptions."""

    wants_sites = True

    def __init__(self, segs: Sequence[Segment], theirs: dict[str, list[Did]],
                 policies: tuple[str, str]) -> None:
        self.segs = list(segs)
        self.theirs = theirs               # each thread's steps in the recorded run
        self.policies = policies           # (the record's, this run's)
        self.setup_end: int | None = None
        self.ran_on_from: int | None = None
        self.mine: dict[str, list[Did]] = {}
        self._k = 0                        # the segment in progress
        self._taken = 0                    # its steps taken
        self._last: Thread | None = None

    # -- observer
    def noted(self, ex: Execution, t: Thread, note: ops.Note) -> None:
        """The setup is done at the end of this step."""
        if note.kind == "setup-done":
            self.setup_end = ex.steps

    def performing(self, ex: Execution, t: Thread, op: ops.Op) -> None:
        """Keep what each thread does after the setup, to say where two runs part."""
        if self.setup_end is not None:
            site = t.where()
            self.mine.setdefault(t.name, []).append((describe_op(op), site[2] if site else ""))

    # -- strategy
    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        """The thread of the segment in progress (see the module header)."""
        if self.setup_end is None:
            return self._must(ex, enabled, SETUP)
        while self._k < len(self.segs):
            seg = self.segs[self._k]
            t = next((x for x in enabled if x.name == seg.thread), None)
            if t is None and not seg.preempted and self._taken:
                self._k, self._taken = self._k + 1, 0      # it blocked or ended: next
                continue
            t = t or self._must(ex, enabled, seg.thread)
            self._taken += 1
            if seg.preempted and self._taken == seg.steps:
                self._k, self._taken = self._k + 1, 0
            self._last = t
            return t
        if self.ran_on_from is None:
            self.ran_on_from = ex.steps + 1
        if self._last not in enabled:
            self._last = enabled[0]
        return self._last

    def _must(self, ex: Execution, enabled: Sequence[Thread], name: str) -> Thread:
        t = next((x for x in enabled if x.name == name), None)
        if t is None:
            raise ReplayDivergence(self._why(ex, name))
        return t

    def _why(self, ex: Execution, name: str) -> str:
        _, here = self.policies
        t = next((x for x in ex.threads if x.name == name), None)
        state = ("does not exist" if t is None else "has finished" if t.done else
                 ex.describe_blocked(t).replace("runnable at", "waits at"))
        if self.setup_end is None:
            return f"under {here} the setup cannot go on at step {ex.steps + 1}: it {state}"
        seg = self.segs[self._k]
        return (f"under {here}, step {ex.steps + 1} is {name}'s (segment {self._k + 1} of "
                f"the schedule after the setup: {seg}, {self._taken} taken), but {name} "
                f"{state} there; {self._parting(name)}")

    def _parting(self, name: str) -> str:
        recorded, here = self.policies
        theirs, mine = self.theirs.get(name, []), self.mine.get(name, [])
        for j, (a, b) in enumerate(zip(theirs, mine, strict=False)):
            if a != b:
                return (f"{name}'s runs part at its step {j + 1} after the setup: "
                        f"{_words(a)} under {recorded}, {_words(b)} under {here}")
        return f"{name} did the same under both policies until then"


def _words(did: Did) -> str:
    what, fn = did
    return f"'{what}' in {freebsd_name(fn)}" if fn else f"'{what}'"


def replay_under(scenario: Scenario, record: RunRecord, policy: str,
                 every_step: bool = True) -> tuple[Anatomy, str]:
    """`record`'s run replayed under `policy` (AlignedReplay), dissected, and a line
    saying how it was aligned; ReplayDivergence if its schedule cannot be followed."""
    options: dict[str, Any] = {"every_step": every_step,
                               "npv_locks": int(record.options.get("npv_locks", 8)),
                               "race_detect": bool(record.options.get("race_detect", False))}
    goes_on = _GoesOn()
    events = run_once(scenario, record.policy,
                      ReplayStrategy(schedule_from_str(record.schedule)), record=True,
                      extra=[goes_on], **options).events
    recorded_setup = setup_end(events)
    here = dataclasses.replace(record, policy=policy)
    if not recorded_setup:            # the recorded run never left its setup
        return dissect(scenario, here, every_step), (
            f"aligned: nothing to align, the run under {record.policy} ended in its setup")
    segs = segments(events, recorded_setup + 1, goes_on.could)
    aligned = AlignedReplay(segs, _did(events, recorded_setup), (record.policy, policy))
    a = dissect(scenario, here, every_step, strategy=aligned, observers=[aligned])
    turns = ", ".join(str(g) for g in segs if g.thread != SETUP)
    line = (f"aligned: {record.policy}'s setup ({recorded_setup} steps) replaced by "
            f"{policy}'s ({aligned.setup_end}); then, each until it blocks or ends unless "
            f"preempted: {turns}")
    if aligned.ran_on_from is not None:
        line += f"; from step {aligned.ran_on_from} on, no preemptions"
    return a, line
