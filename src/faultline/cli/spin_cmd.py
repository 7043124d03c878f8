"""The `faultline spin` command: one scenario under one policy, verified by SPIN.

What lives here: the command (spin.run on the Promela model of the scenario, with the
policy's switches), the run description, the table of SPIN's verdict and figures, and
with --trail the counterexample as spin -t -p replays it, folded to one line per stretch
of one thread in one FreeBSD function.
Rule kept: thin.  Exit 0 when SPIN finds no violation, 1 when it finds one, 2 for bad
input (a scenario or policy the model does not have, spin or gcc not installed), 3 when
spin, gcc or pan fail or the model reaches one of its limits (a bug).  Must not be added:
running the tools or reading their output (spin.run, spin.pan).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from faultline import __version__
from faultline.cli.common import (
    EXIT_OK,
    EXIT_VIOLATION,
    BadInput,
    _emit_json,
    _out,
    _reported,
    _say,
)
from faultline.report.fit import Col, FitTable
from faultline.spin.errors import SpinToolMissing, SpinUnsupported
from faultline.spin.model import LABELS, SCENARIOS, model_regions, policy_switches, spin_scenario
from faultline.spin.pan import TrailStep
from faultline.spin.run import CFLAGS, PAN_DEPTH, PAN_HASH_BITS, SpinResult, run_spin

FIRST_THREAD_PID = 2          # pan's pids: 0 init, 1 the invariants monitor, then threads


def spin(
    scenario: Annotated[str, typer.Argument(
        help=f"A scenario the Promela model has: {', '.join(SCENARIOS)}.")],
    policy: Annotated[str, typer.Option(
        help="xbusy, sbusy, or a seeded bug the model expresses (docs/spin.md).")
    ] = "sbusy",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    trail: Annotated[bool, typer.Option(
        "--trail", help="Show SPIN's counterexample, one line per stretch of a thread.")
    ] = False,
    keep: Annotated[Path | None, typer.Option(
        "--keep", metavar="DIR",
        help="Work in DIR and keep the model, pan and the trail there.")] = None,
) -> None:
    """Verify a scenario with SPIN: an independent Promela model of the fault path."""
    out = _out()
    with _reported():
        try:
            switches = policy_switches(policy)
            spin_scenario(scenario)
            if keep is not None and keep.exists() and not keep.is_dir():
                raise BadInput(f"--keep: {keep} exists and is not a directory")
            if not json_out:
                _say(out, _description(scenario, policy, switches, keep))
            result = run_spin(scenario, policy, workdir=keep, trail=trail or json_out)
        except (SpinUnsupported, SpinToolMissing) as e:
            raise BadInput(str(e)) from None
    if json_out:
        _emit_json(result.to_json())
    else:
        out.print(_table(result))
        if result.report.violation is not None:
            _say(out, f"violation: {result.report.violation} ({result.report.kind}) at "
                      f"depth {result.report.depth}", "bold red")
        if trail and result.trail:
            out.print(_trail_table(result.scenario, result.trail))
        elif result.report.violation is not None and not trail:
            _say(out, f"the counterexample: faultline spin {scenario} --policy {policy} "
                      f"--trail")
    raise typer.Exit(EXIT_VIOLATION if result.verdict == "violation" else EXIT_OK)


def _description(scenario: str, policy: str, switches: Sequence[str],
                 keep: Path | None) -> str:
    where = f", in {keep}" if keep is not None else ""
    return (f"faultline spin {scenario} --policy {policy}: Promela model "
            f"{SCENARIOS[scenario].file} with {' '.join('-D' + s for s in switches)}; "
            f"gcc {' '.join(CFLAGS)}; pan -m{PAN_DEPTH} -w{PAN_HASH_BITS} -c1{where}; "
            f"faultline {__version__}")


def _table(r: SpinResult) -> FitTable:
    rep = r.report
    verdict = Text(rep.verdict, style="bold red" if rep.verdict == "violation" else "green")
    rows: list[tuple[str, str | Text]] = [
        ("SPIN", r.spin_version),
        ("verdict", verdict),
        ("violated", f"{rep.violation} ({rep.kind})" if rep.violation else "-"),
        ("at depth", "-" if rep.depth is None else str(rep.depth)),
        ("states stored", f"{rep.states_stored:,}"),
        ("states matched", f"{rep.states_matched:,}"),
        ("transitions", f"{rep.transitions:,}"),
        ("depth reached", f"{rep.depth_reached:,}"),
        ("memory (MB)", f"{rep.memory_mb:,.1f}"),
        ("seconds: spin -a", f"{r.spin_seconds:.2f}"),
        ("seconds: gcc", f"{r.gcc_seconds:.2f}"),
        ("seconds: pan", f"{r.pan_seconds:.2f}"),
        ("seconds: total", f"{r.seconds:.2f}"),
    ]
    return FitTable([Col("", style="bold"), Col("", justify="right", wrap=True)], rows,
                    show_header=False)


def _region(steps_regions: list[tuple[int, str]], line: int) -> str:
    name = ""
    for start, region in steps_regions:
        if start > line:
            break
        name = region
    return name


def _trail_table(scenario: str, steps: Sequence[TrailStep]) -> FitTable:
    """One row per stretch of one thread in one part of the model: the thread, the
    FreeBSD function (label of vm_fault's body, then the primitive inside it), the
    model lines, the steps it took and its last statement."""
    regions = model_regions()
    names = SCENARIOS[scenario].threads
    label: dict[int, str] = {}
    rows: list[list[str]] = []
    last_key: tuple[int, str] | None = None
    for s in steps:
        if s.proctype != "Thread":
            continue
        region = _region(regions.get(s.file, []), s.line)
        if region in LABELS:
            label[s.pid] = LABELS[region]
            where = LABELS[region]
        else:
            where = f"{label.get(s.pid, 'next op')} > {region}"
        thread = names[s.pid - FIRST_THREAD_PID] \
            if 0 <= s.pid - FIRST_THREAD_PID < len(names) else str(s.pid)
        key = (s.pid, where)
        if key == last_key:
            row = rows[-1]
            row[3] = f"{row[3].split('-')[0]}-{s.line}" if row[3] != str(s.line) else row[3]
            row[4] = s.statement
            row[0] = str(s.step)
        else:
            rows.append([str(s.step), thread, where, str(s.line), s.statement])
        last_key = key
    cols = [Col("step", justify="right"), Col("thread"), Col("where", wrap=True),
            Col("lines", drop=1), Col("last statement", wrap=True)]
    # FitTable takes each cell as Text: statements hold [brackets], never markup.
    return FitTable(cols, rows, title="counterexample (spin -t -p, folded)",
                    title_justify="left")
