"""The happens-before graph of a run, as Graphviz DOT.

What lives here: `FootprintRecorder` (an observer that keeps each step's thread, words
and footprint) and `hb_dot`, which lays a run out as one cluster per thread with program
order down each column and an edge from a step of another thread wherever the two steps
are dependent and no later step of that thread already orders them (the covering
edges).  Rule kept: the same dependency relation as DPOR, so the picture shows exactly
the orderings a reviewer must reason about.  Must not be added: layout beyond DOT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faultline.check.search.dependency import Access, footprint, ordered
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Thread
from faultline.rt.trace import describe_op


@dataclass(slots=True)
class HbStep:
    """One step: its thread, what it did, its model function, and its footprint."""

    thread: str
    tid: int
    what: str
    where: str
    acc: tuple[Access, ...]


class FootprintRecorder(Hooks):
    """Records every step with its full footprint (op plus the model accesses after)."""

    wants_sites = True
    wants_footprints = True

    def __init__(self) -> None:
        self.steps: list[HbStep] = []
        self._op_acc: tuple[Access, ...] = ()
        self._where = ""

    def performing(self, ex: Execution, t: Thread, op: ops.Op) -> None:
        """The op's own footprint must be taken before it runs (release modes)."""
        self._op_acc = footprint(op, t.tid)
        site = t.where()
        self._where = site[2] if site else ""

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        """Keep the step."""
        acc = self._op_acc + tuple(dict.fromkeys(ex.last_footprint))
        self.steps.append(HbStep(t.name, t.tid, describe_op(op), self._where, acc))


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def hb_dot(steps: list[HbStep], title: str, violation: str = "") -> str:
    """DOT text: a cluster per thread, program order, covering dependency edges."""
    lines = ["digraph happens_before {", f'  label="{_quote(title)}"; labelloc=t;',
             "  node [shape=box, fontsize=10]; rankdir=TB;"]
    threads = list(dict.fromkeys(s.thread for s in steps))
    for n, name in enumerate(threads):
        lines.append(f'  subgraph cluster_{n} {{ label="{_quote(name)}";')
        for i, s in enumerate(steps):
            if s.thread == name:
                lines.append(f'    s{i} [label="{i + 1}: {_quote(s.what)}\\n{_quote(s.where)}"];')
        lines.append("  }")
    last: dict[str, int] = {}
    for j, s in enumerate(steps):
        if s.thread in last:
            lines.append(f"  s{last[s.thread]} -> s{j} [color=gray];")
        seen: set[str] = {s.thread}
        for i in range(j - 1, -1, -1):
            e = steps[i]
            if e.thread in seen or not ordered(e.acc, s.acc):
                continue
            lines.append(f"  s{i} -> s{j} [color=red];")
            seen.add(e.thread)              # the latest dependent step of each thread
        last[s.thread] = j
    if violation:
        lines.append(f'  violation [shape=note, color=red, label="{_quote(violation)}"];')
        if steps:
            lines.append(f"  s{len(steps) - 1} -> violation [style=dashed, color=red];")
    lines.append("}")
    return "\n".join(lines) + "\n"
