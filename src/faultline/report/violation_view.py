"""The default counterexample view: the window of the violation, for a kernel reader.

What lives here: `render_window`, which prints a dissected counterexample
(check.judging.anatomy) as
  * what came before the window, a line per thread (the setup folded to one line with
    its length; each other thread's ops and step count);
  * the window (anatomy.violation_window says which steps and why), one lane per
    thread: a thread's rows start at its lane, where its name stands in the header, and
    run on to the right margin (a row holds one thread's steps, so the room to its
    right is free: columns of a fixed width would wrap every row at 80-100 columns).
    Each row is a run of one thread's steps in one function, written
    `FreeBSD function — what it did  kern/file.py:line` (the function a refcount, busy
    or lock wrapper was called from: kern.PRIMITIVE_WRAPPERS); a run of steps that no
    other thread's step in the window is ordered with is folded to one `⋯` line; the
    failed assertion closes its thread's lane at the step that fired it;
  * the violation, and what fired it (the KASSERT's frames, or the check after a step);
  * the state at the violation (check.judging.snapshot): each process's PTE and chain
    at the address, each object's counts and flags, each page's owner, busy word and
    validity, and where every thread was.
Names are the model's (`obj2`, `vn:data`, `page2`); the snapshot ties them to the
scenario's (`p1:0x3000`, `data[0]`, the role of each object in the chains).

Rule kept: rendering only (the replay was made by check.judging.anatomy).
Must not be added: choosing the window (anatomy's), replaying, exit codes.

    before the window:
        1-163  setup: 155 steps, sequential; then started W1 W2 W3 X
      164-210  W1 (47 steps): write 0x1000 11; read 0x1000; read 0x4000
       step    W3 (p1)              X (p2)
      259-260  vm_fault_soft_fast — soft_fast lookup (unlocked) obj2; ...
      279-292                       ▶ exit ⋯ 14 steps: thread_single, ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from faultline.check.judging.anatomy import Anatomy, Window, setup_end, violation_window
from faultline.check.judging.hbgraph import Site
from faultline.check.judging.snapshot import Frame, Snapshot, package_path
from faultline.kern import PRIMITIVE_WRAPPERS, freebsd_name
from faultline.kern.vm_object import ObjFlag
from faultline.report.fit import Col, FitTable
from faultline.report.words import plural
from faultline.rt.trace import Event

__all__ = ["render_run_summary", "render_window"]

SETUP = "setup"
_PLAIN = {"box": None, "pad_edge": False, "header_style": "bold"}
LABEL = 7                     # the step column: "257-258"
LANE = 24                     # lanes at most this far apart
MIN_LANE = 48                 # the last lane at least this wide
FOLD_NAMES = 3                # functions a folded run names before "..."
FRAMES = 3                    # a KASSERT's frames named, innermost last
# Notes the ops already say (or setup's and the scenario's bookkeeping), not shown.
QUIET_NOTES = frozenset({"op", "setup-done", "busy-nosleep", "user-access",
                         "user-store-begin", "page-alloc", "fault-next", "pmap-enter"})
SPLIT = 3                     # a shown run's quiet head or tail this long is folded apart


# ---------------------------------------------------------------- one step, in words

def _did(e: Event) -> str:
    """What the op did: `load ref_count obj1 → 1`, flags decoded."""
    result = e.result
    if e.what.startswith("load flags ") and result.isdigit():
        result = "|".join(f.name.removeprefix("OBJ_") for f in ObjFlag
                          if f & int(result) and f.name) or "0"
    return e.what + (f" → {result}" if result else "")


def _note(e: Event) -> str:
    """A model note: `cow-copy dst=page2 src=page0`."""
    if not isinstance(e.data, dict):
        return e.what + (f" {e.data}" if e.data not in (None, "") else "")
    return " ".join([e.what, *(f"{k}={v:#x}" if k == "va" and isinstance(v, int) else
                               f"{k}={v}" for k, v in e.data.items())])


def _phase(a: Anatomy, e: Event) -> Site:
    """The frame a step is counted to: its innermost model frame that is not a
    primitive's wrapper (kern.PRIMITIVE_WRAPPERS), so that a refcount or busy op reads
    as part of the function that does it."""
    stack = a.stack(e.step) or ((e.file, e.line, e.function),)
    return next((f for f in reversed(stack) if f[2] not in PRIMITIVE_WRAPPERS), stack[-1])


# ---------------------------------------------------------------- rows

@dataclass(slots=True)
class _Run:
    """Consecutive steps of one thread: shown (one function's) or folded to a line."""

    thread: str
    folded: bool
    ops: list[Event] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)     # each op's phase frame
    heading: str = ""
    notes: list[Event] = field(default_factory=list)    # the model's, while it ran

    def label(self) -> str:
        a, b = self.ops[0].step, self.ops[-1].step
        return str(a) if a == b else f"{a}-{b}"

    def cell(self) -> RenderableType:
        """The row's text: a folded run on one line, a shown one wrapping."""
        if self.folded:
            names = list(dict.fromkeys(freebsd_name(s[2]) for s in self.sites))
            more = ", ..." if len(names) > FOLD_NAMES else ""
            line = Text(no_wrap=True, overflow="ellipsis")
            if self.heading:
                line.append(f"▶ {self.heading} ", style="bold")
            return line.append(f"⋯ {plural(len(self.ops), 'step')}: "
                               f"{', '.join(names[:FOLD_NAMES])}{more}", style="dim italic")
        text = Text(freebsd_name(self.sites[0][2]))
        text.append(f" — {'; '.join(_did(e) for e in self.ops)}")
        for note in self.notes:
            text.append(f" · {_note(note)}", style="italic")
        text.append(f"  {self._where()}", style="dim")
        if not self.heading:
            return text
        return Group(Text(f"▶ {self.heading}", style="bold"), text)

    def _where(self) -> str:
        """`kern/vm_fault.py:184`, or for several lines `:184-187`."""
        lines = sorted({s[1] for s in self.sites})
        span = str(lines[0]) if len(lines) == 1 else f"{lines[0]}-{lines[-1]}"
        return f"{package_path(self.sites[0][0])}:{span}"


def _runs(a: Anatomy, ops: Sequence[Event], w: Window, headings: dict[int, str]
          ) -> list[_Run]:
    """The window's ops as runs: one per thread and phase function, folded when none
    of its steps matters; a shown run's quiet head or tail of SPLIT steps or more is
    folded apart; neighbouring folds of a thread are one."""
    groups: list[_Run] = []
    for e in ops:
        site = _phase(a, e)
        last = groups[-1] if groups else None
        if last is None or last.thread != e.thread or e.step in headings \
                or last.sites[-1][2] != site[2]:
            last = _Run(e.thread, True, heading=headings.get(e.step, ""))
            groups.append(last)
        last.ops.append(e)
        last.sites.append(site)
        last.folded = last.folded and e.step not in w.matters
    runs: list[_Run] = []
    for g in groups:
        for part in ([g] if g.folded else _split(g, w)):
            prev = runs[-1] if runs else None
            if prev is not None and prev.folded and part.folded and prev.thread == part.thread:
                prev.ops += part.ops
                prev.sites += part.sites
                prev.heading = "; ".join(h for h in (prev.heading, part.heading) if h)
            else:
                runs.append(part)
    return runs


def _attach_notes(runs: Sequence[_Run], events: Sequence[Event]) -> None:
    """Give each shown run the notes its thread made while it ran (QUIET_NOTES aside)."""
    owner = {(e.thread, e.step): r for r in runs if not r.folded for e in r.ops}
    for e in events:
        if e.kind == "note" and e.what not in QUIET_NOTES:
            run = owner.get((e.thread, e.step))
            if run is not None:
                run.notes.append(e)


def _split(g: _Run, w: Window) -> list[_Run]:
    """g, with a quiet head and tail of SPLIT steps or more folded apart."""
    quiet = [e.step not in w.matters for e in g.ops]
    lo = next(i for i, q in enumerate(quiet) if not q)
    hi = len(quiet) - next(i for i, q in enumerate(reversed(quiet)) if not q)
    lo = lo if lo >= SPLIT else 0
    hi = hi if len(quiet) - hi >= SPLIT else len(quiet)
    cuts = [(0, lo, True), (lo, hi, False), (hi, len(quiet), True)]
    parts = [_Run(g.thread, folded, g.ops[i:j], g.sites[i:j]) for i, j, folded in cuts
             if j > i]
    parts[0].heading = g.heading
    return parts


def _headings(events: Sequence[Event], w: Window) -> dict[int, str]:
    """Steps that start a scenario op in the window (the thread's step before its "op"
    note: anatomy._op_start), and each thread's first step there if it is inside an op,
    mapped to the op."""
    starts: list[tuple[str, int, str]] = []
    mine: dict[str, list[int]] = {}
    for e in events:
        if e.kind != "note":
            mine.setdefault(e.thread, []).append(e.step)
        elif e.what == "op" and isinstance(e.data, dict):
            prev = [s for s in mine.get(e.thread, [])[-2:] if s < e.step]
            starts.append((e.thread, prev[-1] if prev else e.step,
                           str(e.data.get("op", ""))))
    out = {start: op for _, start, op in starts if w.first <= start <= w.last}
    firsts: dict[str, int] = {}
    for e in events:
        if e.kind != "note" and w.first <= e.step <= w.last:
            firsts.setdefault(e.thread, e.step)
    for t, first in firsts.items():
        inside = [op for u, start, op in starts if u == t and start < first]
        if first not in out and inside:
            out[first] = f"(in) {inside[-1]}"
    return out


def _lanes(threads: Sequence[str], width: int) -> dict[str, int]:
    """Each thread's lane offset: as far apart as leaves the last lane MIN_LANE wide,
    at most LANE apart, and never closer than its name needs."""
    if len(threads) < 2:
        return dict.fromkeys(threads, 0)
    step = min(LANE, max(0, width - LABEL - 2 - MIN_LANE) // (len(threads) - 1))
    step = max(step, max(len(t) for t in threads) + 2)
    return {t: i * step for i, t in enumerate(threads)}


def _window_table(a: Anatomy, w: Window, failed: Text | None, violating: str | None,
                  processes: dict[str, str], width: int) -> Table:
    events = a.result.events
    ops = [e for e in events if e.kind != "note" and w.first <= e.step <= w.last]
    threads = list(dict.fromkeys(e.thread for e in ops))
    names = {t: f"{t} ({processes[t]})" if t in processes else t for t in threads}
    lanes = _lanes(list(names.values()), width)
    table = _grid()
    header = Text(style="bold underline")
    for t in threads:
        header.append(" " * (lanes[names[t]] - len(header)) + names[t])
    table.add_row(Text("step", style="bold underline"), header)
    runs = _runs(a, ops, w, _headings(events, w))
    _attach_notes(runs, events)
    for i, run in enumerate(runs):
        cell = run.cell()
        if failed is not None and run.thread == violating and \
                not any(r.thread == violating for r in runs[i + 1:]):
            cell = Group(cell, failed)
        table.add_row(run.label(), Padding(cell, (0, 0, 0, lanes[names[run.thread]])))
    return table


# ---------------------------------------------------------------- before the window

def _grid() -> Table:
    """Two columns, as the window's: a step label, then text wrapping under itself."""
    table = Table.grid(padding=(0, 2), expand=True)
    table.add_column(justify="right", style="dim", no_wrap=True, min_width=LABEL)
    table.add_column(ratio=1)
    return table


def _threads_before(events: Sequence[Event], before: int, processes: dict[str, str]
                    ) -> Table:
    """A row for the setup (folded, with its length), then one per other thread that
    ran an op before step `before`: its steps and the ops it did."""
    end = min(setup_end(events), before - 1)
    ops = [e for e in events if e.kind != "note" and e.step < before]
    table = _grid()
    if end:
        spawned = [e.what.removeprefix("spawn ") for e in ops
                   if e.kind == "Spawn" and e.thread == SETUP]
        last = max((e.step for e in ops if e.thread == SETUP), default=end)
        started = f"; then started {' '.join(spawned)}" if spawned else ""
        table.add_row(f"1-{last}", f"setup: {plural(end, 'step')}, sequential{started}")
    for t in dict.fromkeys(e.thread for e in ops if e.thread != SETUP and e.step > end):
        mine = [e for e in ops if e.thread == t]
        did = [str(e.data.get("op", "")) for e in events if e.kind == "note"
               and e.what == "op" and e.thread == t and e.step < before
               and isinstance(e.data, dict)]
        if not did:
            continue                    # only the checks before its first op
        span = f"{mine[0].step}-{mine[-1].step}" if len(mine) > 1 else str(mine[0].step)
        name = f"{t} ({processes[t]})" if t in processes else t
        table.add_row(span, f"{name}, {plural(len(mine), 'step')}: {'; '.join(did)}")
    return table


# ---------------------------------------------------------------- the violation

def _frames(frames: Sequence[Frame]) -> str:
    return " → ".join(f"{freebsd_name(f.function)} ({f.file}:{f.line})"
                      for f in reversed(frames))


def _fired(snapshot: Snapshot | None, violation: dict[str, object], last: Event | None
           ) -> tuple[Text, Text]:
    """The red line closing the violating lane, and the `fired by` line."""
    step = violation.get("step")
    after = f"step {step}" + (f" ({_did(last)})" if last else "")
    if snapshot is not None and snapshot.assertion:
        top = snapshot.assertion[0]
        mark = Text(f"✗ KASSERT in {top.function} ({top.file}:{top.line})", style="bold red")
        return mark, Text(f"fired by: {violation.get('thread')} after {after}, in "
                          f"{_frames(snapshot.assertion[:FRAMES])}")
    kind = violation.get("kind", "?")
    return (Text(f"✗ the {kind} check fails after this step", style="bold red"),
            Text(f"fired by: the {kind} check after {after}"))


# ---------------------------------------------------------------- the state at the violation

def _state(s: Snapshot) -> list[RenderableType]:
    threads = Text(f"threads: {'; '.join(s.threads)}", style="dim")
    if not s.vas:
        return [Text("state at the violation: no address to show", style="bold"), threads]
    vas = ", ".join(f"{va:#x}" for va in s.vas)
    procs = FitTable([Col("process"), Col(f"PTE at {vas}"), Col("chain", wrap=True)],
                     [[p.proc, p.pte, " → ".join(p.chain)] for p in s.procs], **_PLAIN)
    objects = FitTable([Col("object"), Col("role", wrap=True), Col("ref", justify="right"),
                        Col("shadows", justify="right"), Col("flags", wrap=True),
                        Col("pip", justify="right", drop=1)],
                       [[o.name, o.role, str(o.ref_count), str(o.shadow_count), o.flags,
                         str(o.pip)] for o in s.objects], **_PLAIN)
    pages = FitTable([Col("page"), Col("place"), Col("owner"), Col("busy"), Col("valid"),
                      Col("content", drop=2, justify="right"), Col("mapped", wrap=True)],
                     [[p.name, p.place, p.owner, p.busy, "yes" if p.valid else "no",
                       str(p.content), ", ".join(p.mapped) or "-"] for p in s.pages],
                     **_PLAIN)
    tables = [t for t, rows in ((procs, s.procs), (objects, s.objects), (pages, s.pages))
              if rows]
    return [Text(f"state at the violation, at {vas}:", style="bold"), *tables, threads]


# ---------------------------------------------------------------- the whole view

def render_window(console: Console, a: Anatomy, violation: dict[str, object],
                  processes: dict[str, str]) -> None:
    """Print the default view of a dissected counterexample (see the module header)."""
    events = a.result.events
    w = violation_window(a)
    before = _threads_before(events, w.first, processes)
    if before.row_count:
        console.print(Text("before the window (--full shows every step):", style="bold"))
        console.print(before)
    span = w.last - w.first + 1
    folded = f"; ⋯ folds {span - len(w.matters)} steps no other thread's step is " \
        f"ordered with" if len(w.matters) < span else ""
    console.print(Text(f"the window: steps {w.first}-{w.last}, {w.why}{folded}",
                       style="bold"))
    violating = violation.get("thread")
    last = next((e for e in reversed(events) if e.kind != "note" and e.thread == violating),
                None)
    mark, fired = _fired(a.snapshot, violation, last)
    console.print(_window_table(a, w, mark, str(violating), processes, console.width))
    console.print(fired)
    if a.snapshot is not None:
        for part in _state(a.snapshot):
            console.print(part)


def render_run_summary(console: Console, a: Anatomy, processes: dict[str, str]) -> None:
    """A run without a violation, folded: the setup, then each thread's ops."""
    console.print(Text(f"the run: {plural(a.result.outcome.steps, 'step')} (--full shows "
                       f"every step)", style="bold"))
    console.print(_threads_before(a.result.events, a.result.outcome.steps + 1, processes))
