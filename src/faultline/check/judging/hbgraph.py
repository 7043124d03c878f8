"""The happens-before graph of a run, as Graphviz DOT.

What lives here: `FootprintRecorder` (an observer that keeps each step's thread, words,
footprint and model call stack, and where the setup ended) and `hb_dot`, which lays a
run out as one cluster per thread with program order down each column and an edge from
a step of another thread wherever the two steps are dependent and no later step of that
thread already orders them (the covering edges).  By default `hb_dot` draws only the
window of the violation: the last `DOT_WINDOW` steps after the setup, with the covering
edges between them (computed over the whole run, so an edge is never one that an elided
step would have covered), and one note saying what was elided; `window=None` draws the
whole run.  Rule kept: the same dependency relation as DPOR, so the picture shows
exactly the orderings a reviewer must reason about.  Must not be added: layout beyond
DOT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faultline.check.search.dependency import Access, footprint, ordered
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Thread, model_frames
from faultline.rt.trace import describe_op

DOT_WINDOW = 36               # steps drawn by default: the violation's window

Site = tuple[str, int, str]       # (file, line, function), as Thread.where() gives it


@dataclass(slots=True)
class HbStep:
    """One step: its thread, what it did, its model function, and its footprint."""

    thread: str
    tid: int
    what: str
    where: str
    acc: tuple[Access, ...]
    stack: tuple[Site, ...] = ()       # model frames, outermost first


class FootprintRecorder(Hooks):
    """Records every step with its full footprint (op plus the model accesses after)."""

    wants_sites = True
    wants_footprints = True

    def __init__(self) -> None:
        self.steps: list[HbStep] = []
        self.setup_end = 0             # the step at whose end the setup was done
        self._op_acc: tuple[Access, ...] = ()
        self._stack: tuple[Site, ...] = ()
        self.last_stack: tuple[Site, ...] = ()   # the latest step's, finished or not

    def performing(self, ex: Execution, t: Thread, op: ops.Op) -> None:
        """The op's own footprint must be taken before it runs (release modes)."""
        self._op_acc = footprint(op, t.tid)
        self._stack = self.last_stack = model_stack(t.coro)

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        """Keep the step."""
        acc = self._op_acc + tuple(dict.fromkeys(ex.last_footprint))
        where = self._stack[-1][2] if self._stack else ""
        self.steps.append(HbStep(t.name, t.tid, describe_op(op), where, acc, self._stack))

    def noted(self, ex: Execution, t: Thread, note: ops.Note) -> None:
        """Mark where the setup ended."""
        if note.kind == "setup-done":
            self.setup_end = ex.steps


def model_stack(coro: Any) -> tuple[Site, ...]:
    """The (file, line, function) of every model frame (not rt's) down a suspended
    coroutine's cr_await chain, outermost first."""
    return tuple(model_frames(coro))


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def hb_dot(steps: list[HbStep], title: str, violation: str = "", *,
           window: int | None = DOT_WINDOW, setup_end: int = 0) -> str:
    """DOT text: a cluster per thread, program order, covering dependency edges; only
    the last `window` steps after step `setup_end` unless `window` is None."""
    first = 0 if window is None else max(setup_end, len(steps) - window, 0)
    lines = ["digraph happens_before {", f'  label="{_quote(title)}"; labelloc=t;',
             "  node [shape=box, fontsize=10]; rankdir=TB;"]
    if first:
        setup = f" (the setup: 1-{setup_end})" if setup_end else ""
        lines.append(f'  elided [shape=note, color=gray, label="steps 1-{first} elided'
                     f'{setup}; --dot-full draws them"];')
    shown = range(first, len(steps))
    threads = list(dict.fromkeys(steps[i].thread for i in shown))
    for n, name in enumerate(threads):
        lines.append(f'  subgraph cluster_{n} {{ label="{_quote(name)}";')
        for i in shown:
            s = steps[i]
            if s.thread == name:
                lines.append(f'    s{i} [label="{i + 1}: {_quote(s.what)}\\n{_quote(s.where)}"];')
        lines.append("  }")
    lines += _edges(steps, first)
    if violation:
        lines.append(f'  violation [shape=note, color=red, label="{_quote(violation)}"];')
        if len(steps) > first:
            lines.append(f"  s{len(steps) - 1} -> violation [style=dashed, color=red];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edges(steps: list[HbStep], first: int) -> list[str]:
    """Program order and covering dependency edges into steps `first`.. from steps
    `first`.. (the covering is decided over the whole run)."""
    lines: list[str] = []
    last: dict[str, int] = {}
    for j, s in enumerate(steps):
        if j < first:                       # no edge into an elided step is drawn
            last[s.thread] = j
            continue
        if last.get(s.thread, -1) >= first:
            lines.append(f"  s{last[s.thread]} -> s{j} [color=gray];")
        seen: set[str] = {s.thread}
        for i in range(j - 1, -1, -1):
            e = steps[i]
            if e.thread in seen or not ordered(e.acc, s.acc):
                continue
            if i >= first:
                lines.append(f"  s{i} -> s{j} [color=red];")
            seen.add(e.thread)              # the latest dependent step of each thread
        last[s.thread] = j
    return lines
