"""Counterexamples for humans: a run's description and its trace, one column per thread.

What lives here: `run_description` (the OSTEP-style header that makes a pasted output a
reproduction), `render_trace` (a rich table: a step column, then one column per thread in
order of first appearance; each cell holds the op, its model site and the FreeBSD
function), `violation_text` and `render_counterexample`, which puts them together with
the replay command line.  A run dissected by check.judging.anatomy is shown folded by
default (report.violation_view: a violation as its window, a passing run as its
threads' ops); this table is the `--full` view.

Rule kept: rendering only.  Everything shown comes from a `RunRecord`, the recorded
`Event`s and an `Anatomy`; nothing here runs, re-runs or judges an execution.  Must not be added:
checking, replaying, exit codes or argument parsing (that is `check` and `cli`).

Layout of a trace (long setups are folded, long middles elided):

    step | setup                 | R                      | W
    1-56 | setup: 56 steps (...) |                        |
    57   | spawn R               |                        |
    58   |                       | > read 0x1000          |
         |                       | sx_slock map.p1        |
         |                       |  vm_map_lock_read (..) |
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from faultline import __version__
from faultline.check.judging.anatomy import Anatomy
from faultline.check.judging.snapshot import package_path
from faultline.kern import freebsd_name
from faultline.report.violation_view import render_run_summary, render_window
from faultline.report.words import plural, shown_path
from faultline.rt.trace import Event, RunRecord, schedule_from_str

__all__ = [
    "render_counterexample",
    "render_outcome",
    "render_run_description",
    "render_trace",
    "run_description",
    "trace_table",
    "violation_text",
]

SETUP_THREAD = "setup"
SCHEDULE_SHOWN = 100          # characters of a schedule shown in a header
HEAD_ROWS = 20                # rows kept before an elision
TAIL_ROWS = 200               # rows kept after an elision (the end is what matters)
_QUIET_NOTES = frozenset({"busy-nosleep", "setup-done"})
_HEX_KEYS = frozenset({"va", "addr", "vaddr"})
_OP_STYLES = {"Sleep": "yellow", "Resume": "yellow", "Wakeup": "yellow", "Busy": "cyan",
              "Spawn": "green"}


# ---------------------------------------------------------------- the run description

def _schedule_len(schedule: str) -> int | None:
    try:
        return len(schedule_from_str(schedule))
    except ValueError:
        return None


def _short_schedule(schedule: str, limit: int = SCHEDULE_SHOWN) -> str:
    if len(schedule) <= limit:
        return schedule
    return f"{schedule[:limit]}... ({len(schedule)} characters in all)"


def run_description(record: RunRecord, command: str = "replay") -> list[str]:
    """The header of a run, as `faultline COMMAND: key=value ...` lines."""
    opts = "".join(f" {k}={v}" for k, v in sorted(record.options.items()))
    seed = "-" if record.seed is None else record.seed
    steps = _schedule_len(record.schedule)
    lines = [
        f"faultline {command}: scenario={record.scenario} policy={record.policy} "
        f"strategy={record.strategy} seed={seed}{opts}",
        f"  schedule ({'? steps' if steps is None else plural(steps, 'step')}): "
        + _short_schedule(record.schedule),
    ]
    if record.scenario_path:
        lines.append(f"  scenario file: {shown_path(record.scenario_path)}")
    made = f" (recorded with {record.version})" if record.version else ""
    lines.append(f"  faultline {__version__}{made}")
    return lines


def render_run_description(record: RunRecord, console: Console,
                           command: str = "replay", *, wrap: bool = False) -> None:
    """Print `run_description(record)`: each line whole (a log), or with `wrap`
    wrapped at the console's width (a terminal)."""
    for line in run_description(record, command):
        console.print(Text(line), soft_wrap=not wrap)


# ---------------------------------------------------------------- cells

def _fmt_value(key: str, value: Any) -> str:
    if key in _HEX_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return hex(value)
    return str(value)


def _fmt_data(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, dict):
        return " ".join(f"{k}={_fmt_value(k, v)}" for k, v in data.items())
    return str(data)


def _site_line(e: Event) -> Text | None:
    if not e.function and not e.file:
        return None
    path = package_path(e.file)
    text = f"  {e.function} ({path}:{e.line})" if e.file else f"  {e.function}"
    bsd = freebsd_name(e.function)
    if e.function and bsd != e.function:
        text += f" = FreeBSD {bsd}"
    return Text(text, style="dim")


def _op_lines(e: Event) -> list[Text]:
    what = e.what + (f" -> {e.result}" if e.result else "")
    lines = [Text(what, style=_OP_STYLES.get(e.kind, ""))]
    site = _site_line(e)
    if site is not None:
        lines.append(site)
    return lines


def _note_line(e: Event) -> Text:
    data = _fmt_data(e.data)
    return Text(f"· {e.what}" + (f" {data}" if data else ""), style="dim italic")


def _heading(e: Event) -> Text:
    op = e.data.get("op", "") if isinstance(e.data, dict) else _fmt_data(e.data)
    return Text(f"▶ {op}", style="bold")


# ---------------------------------------------------------------- rows

@dataclass(slots=True)
class _Row:
    """One table row: a step (or a folded range) and each thread's lines in it."""

    label: str
    cells: dict[str, list[Text]] = field(default_factory=dict)
    steps: int = 1
    style: str = ""

    def add(self, thread: str, lines: Iterable[Text]) -> None:
        self.cells.setdefault(thread, []).extend(lines)


def _group_by_step(events: Sequence[Event]) -> list[tuple[int, list[Event]]]:
    """Events grouped by step, in order; the step's op first, then the notes made while
    its thread ran on to its next trap (the recorder logs those notes first)."""
    groups: dict[int, list[Event]] = {}
    for e in events:
        groups.setdefault(e.step, []).append(e)
    ordered = []
    for step, evs in groups.items():
        ops = [e for e in evs if e.kind != "note"]
        ordered.append((step, ops + [e for e in evs if e.kind == "note"]))
    return ordered


def _build_rows(events: Sequence[Event], full: bool) -> list[_Row]:
    """One row per step; "op" notes become the heading of their thread's next op."""
    rows: list[_Row] = []
    pending: dict[str, Text] = {}
    for step, evs in _group_by_step(events):
        row = _Row(str(step), steps=0)
        for e in evs:
            if e.kind != "note":
                row.steps = 1
                heading = pending.pop(e.thread, None)
                row.add(e.thread, ([heading] if heading else []) + _op_lines(e))
            elif e.what == "op":
                pending[e.thread] = _heading(e)
            elif full or e.what not in _QUIET_NOTES:
                row.add(e.thread, [_note_line(e)])
        rows.append(row)
    if rows:
        for thread, heading in pending.items():
            rows[-1].add(thread, [heading.append(" (not started)")])
    return [r for r in rows if r.cells]


def _setup_end(events: Sequence[Event]) -> int | None:
    """The step at which the sequential setup finished, if it did."""
    for e in events:
        if e.kind == "note" and e.what == "setup-done":
            return e.step
    return None


def _fold_setup(rows: list[_Row], end: int) -> list[_Row]:
    """Replace the rows of steps 0..end (all the setup thread's) by one summary row."""
    head = [r for r in rows if int(r.label) <= end]
    if len(head) < 2:
        return rows
    steps = sum(r.steps for r in head)
    summary = _Row(f"1-{end}", steps=steps, style="dim")
    summary.add(SETUP_THREAD, [Text(f"setup: {plural(steps, 'step')} (sequential)", style="italic"),
                               Text("  --full shows them", style="dim")])
    return [summary, *rows[len(head):]]


def _elide(rows: list[_Row], head: int, tail: int) -> list[_Row]:
    """Keep the first `head` and last `tail` rows, with one row counting what is left out."""
    if len(rows) <= head + tail + 1:
        return rows
    gone = rows[head:-tail]
    mark = _Row("...", steps=0, style="dim")
    mark.add("", [Text(f"... {plural(sum(r.steps for r in gone), 'step')} elided ...",
                       style="italic")])
    return [*rows[:head], mark, *rows[-tail:]]


def _threads(events: Sequence[Event]) -> list[str]:
    return list(dict.fromkeys(e.thread for e in events))


# ---------------------------------------------------------------- the table

def trace_table(events: Sequence[Event], *, full: bool = False,
                processes: dict[str, str] | None = None) -> Table:
    """The trace as a rich Table: a step column, then one column per thread."""
    rows = _build_rows(events, full)
    end = _setup_end(events)
    if not full and end is not None:
        rows = _fold_setup(rows, end)
    if not full:
        rows = _elide(rows, HEAD_ROWS, TAIL_ROWS)
    threads = _threads(events)
    table = Table(show_lines=False, header_style="bold", pad_edge=False)
    table.add_column("step", justify="right", style="dim", no_wrap=True)
    for t in threads:
        proc = (processes or {}).get(t)
        table.add_column(f"{t} ({proc})" if proc else t, overflow="fold")
    for row in rows:
        if "" in row.cells:   # an elision mark spans the first thread column
            row.cells.setdefault(threads[0] if threads else "", row.cells.pop(""))
        cells = [Text("\n").join(row.cells.get(t, [])) for t in threads]
        table.add_row(row.label, *cells, style=row.style or None)
    return table


def render_trace(events: Sequence[Event], console: Console, *, full: bool = False,
                 processes: dict[str, str] | None = None) -> None:
    """Print the trace table (see `trace_table`)."""
    console.print(trace_table(events, full=full, processes=processes))


def violation_text(violation: dict[str, Any] | None) -> str:
    """`VIOLATION (kind): message [thread T, step N]`, or a no-violation line."""
    if not violation:
        return "no violation: every thread finished and every property held"
    where = []
    if violation.get("thread"):
        where.append(f"thread {violation['thread']}")
    if violation.get("step") is not None:
        where.append(f"step {violation['step']}")
    suffix = f" [{', '.join(where)}]" if where else ""
    return f"VIOLATION ({violation.get('kind', '?')}): {violation.get('message', '')}{suffix}"


def render_outcome(console: Console, events: Sequence[Event],
                   violation: dict[str, Any] | None, *, replay_hint: str = "",
                   full: bool = False, processes: dict[str, str] | None = None,
                   anatomy: Anatomy | None = None) -> None:
    """The trace, the violated property (or its absence) and how to replay the run: a
    run with its `anatomy` is folded (report.violation_view: a violation to its window,
    a passing run to its threads' ops) unless `full`."""
    if anatomy is not None and not full:
        if violation:
            render_window(console, anatomy, violation, processes or {})
        else:
            render_run_summary(console, anatomy, processes or {})
    else:
        render_trace(events, console, full=full, processes=processes)
    style = "bold red" if violation else "bold green"
    console.print(Text(violation_text(violation), style=style))
    if replay_hint:
        console.print(Text(f"replay: {replay_hint}"))


def render_counterexample(console: Console, record: RunRecord, events: Sequence[Event],
                          replay_hint: str, *, full: bool = False,
                          processes: dict[str, str] | None = None,
                          command: str = "replay", wrap: bool = False,
                          anatomy: Anatomy | None = None) -> None:
    """A recorded run: its description (`wrap`: see render_run_description), then
    `render_outcome` of its violation."""
    render_run_description(record, console, command, wrap=wrap)
    render_outcome(console, events, record.violation, replay_hint=replay_hint, full=full,
                   processes=processes, anatomy=anatomy)
