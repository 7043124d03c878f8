"""Trace recording: every step as an event, plus the model's notes.

What lives here: `Event`, `TraceRecorder` (an observer that records steps with the model
source site of each op), `describe_op` (an op in kernel words) and schedule strings.
Rule kept: recording never changes what runs; exploration runs without a recorder and a
counterexample is re-run with one (the loom way), so sites are only computed when needed.
A schedule string is never expanded past its limit (MAX_SCHEDULE_STEPS, or the caller's):
'0*99999999999' is refused as it is read, not when memory runs out.
Must not be added: rendering for humans (that is `report`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Outcome, Thread


@dataclass(slots=True)
class Event:
    """One step (or, with kind "note", one model note) of an execution."""

    step: int
    thread: str
    kind: str                 # op class name, or "note"
    what: str                 # the op in kernel words
    result: str = ""
    file: str = ""
    line: int = 0
    function: str = ""        # model function that awaited the op
    data: Any = None          # note payload

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)


def describe_op(op: ops.Op) -> str:
    """An op in kernel words, e.g. 'rw_wlock vm object obj2' or 'tryx page 3'."""
    match op:
        case ops.Acquire(lock=lk, mode=m, try_=tr):
            verb = {"mtx": "mtx_lock", "rw": "rw_%slock", "sx": "sx_%slock"}[lk.kind]
            if "%s" in verb:
                verb = verb % ("w" if m == "x" else "r") if lk.kind == "rw" else \
                    verb % ("x" if m == "x" else "s")
            return f"{'try ' if tr else ''}{verb} {lk.label}"
        case ops.Release(lock=lk):
            return f"unlock {lk.label}"
        case ops.Upgrade(lock=lk):
            return f"try_upgrade {lk.label}"
        case ops.Downgrade(lock=lk):
            return f"downgrade {lk.label}"
        case ops.Busy(word=w, action=a):
            return f"busy {a} {w.label}"
        case ops.Sleep(chan=c, wmesg=m):
            return f"sleep {c!r} \"{m}\""
        case ops.Resume(chan=c, wmesg=m):
            return f"wakeup from {c!r} \"{m}\""
        case ops.Wakeup(chan=c, one=one):
            return f"wakeup{'_one' if one else ''} {c!r}"
        case ops.Atomic(obj=o, what=w):
            return f"{w} {o!r}"
        case ops.Pause(wmesg=m):
            return f"pause \"{m}\""
        case ops.Spawn(name=n):
            return f"spawn {n}"
    return repr(op)


class TraceRecorder(Hooks):
    """Records every step with its model source site, and every note."""

    wants_sites = True

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._current: Event | None = None

    def performing(self, ex: Execution, t: Thread, op: ops.Op) -> None:
        """Record the step with its await site, before the coroutine moves on (so a
        step cut short by a violation is still in the trace)."""
        file, line, fn = t.where() or ("", 0, "")
        self._current = Event(ex.steps, t.name, type(op).__name__, describe_op(op), "",
                              _short(file), line, fn)
        self.events.append(self._current)

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        """Fill in the step's result."""
        if self._current is not None and result is not None:
            self._current.result = str(result)
        self._current = None

    def noted(self, ex: Execution, t: Thread, note: ops.Note) -> None:
        """Record a model note (attached to the step in progress)."""
        self.events.append(Event(ex.steps, t.name, "note", note.kind, data=note.data))


def _short(path: str) -> str:
    return path.split("/src/")[-1] if "/src/" in path else path


# ---------------------------------------------------------------- schedule strings

def schedule_to_str(schedule: list[int]) -> str:
    """Run-length encode a schedule: [0,0,0,1,2,2] -> '0*3,1,2*2'."""
    out: list[str] = []
    i = 0
    while i < len(schedule):
        j = i
        while j < len(schedule) and schedule[j] == schedule[i]:
            j += 1
        n = j - i
        out.append(f"{schedule[i]}*{n}" if n > 1 else str(schedule[i]))
        i = j
    return ",".join(out)


# Far beyond any scenario's step bound (the catalog's largest is 20,000), far below what
# would exhaust memory: a list of 10 million thread ids is about 80 MB.
MAX_SCHEDULE_STEPS = 10_000_000


class ScheduleTooLong(ValueError):
    """A schedule string that expands to more steps than allowed."""


def schedule_from_str(text: str, limit: int = MAX_SCHEDULE_STEPS) -> list[int]:
    """Inverse of schedule_to_str; raises ValueError on malformed text, and
    ScheduleTooLong (before expanding it) if it has more than `limit` steps."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        tid, _, count = part.partition("*")
        n = int(count) if count else 1
        t = int(tid)
        if n < 1 or t < 0:
            raise ValueError(f"bad schedule element {part!r}")
        # Count before extending: '0*99999999999' must fail here, not in a MemoryError.
        if len(out) + n > limit:
            raise ScheduleTooLong(f"the schedule has more than {limit:,} steps")
        out.extend([t] * n)
    return out


@dataclass(slots=True)
class RunRecord:
    """Everything needed to replay a run: what, how, and the schedule taken."""

    scenario: str
    policy: str
    strategy: str
    seed: int | None
    schedule: str
    verdict: str
    violation: dict[str, Any] | None = None
    version: str = ""
    scenario_path: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def from_outcome(outcome: Outcome, **kw: Any) -> RunRecord:
        """Build a record from an execution outcome."""
        v = outcome.violation
        viol = None if v is None else {"kind": v.kind, "message": v.message,
                                       "thread": outcome.violation_thread,
                                       "step": outcome.steps}
        return RunRecord(schedule=schedule_to_str(outcome.schedule), verdict=outcome.verdict,
                         violation=viol, **kw)
