"""Tables for humans: the catalog, one scenario in full, and check results.

What lives here: `first_sentence`, `catalog_table` (`faultline scenarios`: one line per
scenario) and `catalog_long` (`--long`: with descriptions), `scenario_view` (`faultline
show`: files, images, processes with their mappings and setup, threads side by side,
bound and expectations), `scenario_json`, `results_table` and `total_line` (`faultline
check`).  Wide tables are `report.fit.FitTable`s: they fit the terminal by dropping
figures, never by cutting a name or a verdict.

Rule kept: pure presentation of `scenario.spec` data and `check.explore` results; every
user-supplied string goes into a `rich.text.Text`, never through markup, so a
`[bracket]` in a description prints as written.  Must not be added: loading, running or
exit codes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from faultline.check.explore import DEFAULT_PREEMPTIONS, ScenarioResult
from faultline.report.fit import Col, FitTable
from faultline.report.words import plural, shown_path
from faultline.scenario.spec import PAGE_SIZE, MappingSpec, ProcessSpec, Scenario

__all__ = [
    "catalog_long",
    "catalog_table",
    "first_sentence",
    "is_expected",
    "not_reproduced",
    "results_table",
    "scenario_json",
    "scenario_view",
    "total_line",
]

_SENTENCE = re.compile(r"(.+?[.!?])(?=\s|$)", re.S)


def first_sentence(text: str) -> str:
    """The first sentence of `text`, on one line."""
    flat = " ".join(text.split())
    m = _SENTENCE.match(flat)
    return m.group(1) if m else flat


# ---------------------------------------------------------------- the catalog

def scenario_json(s: Scenario) -> dict[str, Any]:
    """A scenario's catalog entry for `scenarios --json`."""
    return {"name": s.name, "description": " ".join(s.description.split()),
            "probes": list(s.probes), "expect": dict(sorted(s.expect.items())),
            "step_bound": s.step_bound, "threads": [t.name for t in s.threads],
            "vm": {"free_pages": s.vm.free_pages, "prefault": s.vm.prefault},
            "path": s.source}


def _bound(s: Scenario) -> str:
    """The preemption bound `s` states for DPOR: K, none (every interleaving), or -."""
    if s.bound is None:
        return "-"
    return "none" if s.bound.preemptions is None else str(s.bound.preemptions)


def _expected_policies(scenarios: Sequence[Scenario]) -> list[str]:
    """The policies any scenario states a verdict for: xbusy, sbusy, then the rest."""
    stated = {p for s in scenarios for p in s.expect}
    first = [p for p in ("xbusy", "sbusy") if p in stated]
    return first + sorted(stated - set(first))


def _verdict_cell(verdict: str | None) -> Text:
    return Text(verdict or "-", style="bold red" if verdict == "violation" else "")


def catalog_table(scenarios: Sequence[Scenario]) -> FitTable:
    """One line per scenario: name | threads | DPOR bound | expected verdict per policy."""
    policies = _expected_policies(scenarios)
    cols = [Col("name", style="bold"), Col("threads", drop=1, wrap=True),
            Col("bound", drop=2), *(Col(p) for p in policies)]
    rows = [[s.name, " ".join(t.name for t in s.threads), _bound(s),
             *(_verdict_cell(s.expect.get(p)) for p in policies)] for s in scenarios]
    return FitTable(cols, rows, title="faultline scenarios", header_style="bold",
                    caption="bound: the preemption bound the scenario states for DPOR "
                            "(none: every interleaving); xbusy, sbusy: the expected "
                            "verdicts. --long adds descriptions; faultline show NAME shows "
                            "one.",
                    caption_justify="left")


def catalog_long(scenarios: Sequence[Scenario]) -> RenderableType:
    """`scenarios --long`: each scenario's line, then its whole description and probes."""
    parts: list[RenderableType] = []
    for s in scenarios:
        expect = ", ".join(f"{p} {v}" for p, v in sorted(s.expect.items())) or "none stated"
        head = Text(s.name, style="bold")
        head.append(f"  threads {' '.join(t.name for t in s.threads)}; bound {_bound(s)}; "
                    f"expect {expect}")
        body = Text(" ".join(s.description.split()))
        if s.probes:
            body.append(f"\nprobes: {', '.join(s.probes)}", style="dim")
        parts += [head, Padding(body, (0, 0, 1, 4))]
    return Group(*parts)


# ---------------------------------------------------------------- one scenario

def _range(addr: int, pages: int) -> str:
    return f"{addr:#x}-{addr + pages * PAGE_SIZE:#x}"


def _mapping(mp: MappingSpec) -> str:
    what = f"file {mp.file} +{mp.offset}p" if mp.file else "anon"
    init = f" init={list(mp.init)}" if mp.init else ""
    inherit = f" inherit={mp.inherit}" if mp.inherit else ""
    return f"map {_range(mp.addr, mp.pages)} {mp.prot} {mp.share} {what}{inherit}{init}"


def _process_tree(p: ProcessSpec) -> Tree:
    label = p.name + (f" (forked by {p.parent})" if p.parent else "")
    label += f" exec {p.image}" if p.image else ""
    tree = Tree(Text(label, style="bold"))
    for mp in p.mappings:
        tree.add(Text(_mapping(mp)))
    if p.setup:
        when = ("run by the forking thread as the child, after fork" if p.parent
                else "sequential, before any thread")
        setup = tree.add(Text(f"setup ({when})", style="italic"))
        for op in p.setup:
            setup.add(Text(str(op)))
    return tree


def _threads_table(s: Scenario) -> Table:
    """Threads side by side, one column each, ops numbered: how a trace will look."""
    table = Table(title="threads (run concurrently)", header_style="bold")
    table.add_column("#", justify="right", style="dim")
    for t in s.threads:
        table.add_column(Text(f"{t.name} ({t.process})"), overflow="fold")
    for i in range(max((len(t.ops) for t in s.threads), default=0)):
        cells = [Text(str(t.ops[i])) if i < len(t.ops) else Text("") for t in s.threads]
        table.add_row(str(i + 1), *cells)
    return table


def _files_table(s: Scenario) -> Table:
    table = Table(title="files and images", header_style="bold")
    table.add_column("name", overflow="fold")
    table.add_column("contents", overflow="fold")
    for f in s.files:
        table.add_row(Text(f.name), Text(f"pages {list(f.pages)}"))
    for img in s.images:
        segs = "; ".join(f"{g.file}+{g.offset}p at {_range(g.addr, g.pages)} {g.prot}"
                         for g in img.segments)
        table.add_row(Text(f"image {img.name}"), Text(segs))
    return table


def _footer(s: Scenario) -> Text:
    expect = ", ".join(f"{p}: {v}" for p, v in sorted(s.expect.items())) or "none"
    free = "unlimited" if s.vm.free_pages is None else f"{s.vm.free_pages} after setup"
    lines = [f"step bound: {s.step_bound}", f"expected verdicts: {expect}",
             f"probes: {', '.join(s.probes) or 'none'}",
             f"vm: free pages {free}, prefault {'on' if s.vm.prefault else 'off'}"]
    if s.bound is not None:
        pre = s.bound.preemptions
        bound = "none (every interleaving)" if pre is None else plural(pre, "preemption")
        lines.append(f"DPOR bound: {bound}. {' '.join(s.bound.reason.split())}")
    else:
        lines.append(f"DPOR bound: none stated, so {plural(DEFAULT_PREEMPTIONS, 'preemption')}"
                     " by default")
    if s.check.end_invariants:
        lines.append("invariants: checked at the end of each run ([check] end_invariants)")
    lines.append(f"source: {shown_path(s.source)}")
    return Text("\n".join(lines))


def scenario_view(s: Scenario) -> RenderableType:
    """Everything a scenario says, laid out for reading."""
    parts: list[RenderableType] = [
        Panel(Text(" ".join(s.description.split())), title=Text(s.name, style="bold"),
              title_align="left"),
    ]
    if s.files or s.images:
        parts.append(_files_table(s))
    procs = Tree(Text("processes", style="bold"))
    for p in s.processes:
        procs.add(_process_tree(p))
    parts += [procs, _threads_table(s), _footer(s)]
    return Group(*parts)


# ---------------------------------------------------------------- check results

def is_expected(r: ScenarioResult) -> bool:
    """True unless the scenario states an expected verdict for this policy and r differs
    (a known violation that a search short of exhaustive did not reach is not a
    difference: see not_reproduced)."""
    return r.expected is None or r.expected == r.verdict or not_reproduced(r)


def not_reproduced(r: ScenarioResult) -> bool:
    """The scenario records a known violation (a finding, docs/findings.md) that this
    search, random or cut short, did not reach.  Only an exhaustive search that passes
    contradicts the record."""
    return r.expected == "violation" and r.verdict == "pass" and not r.exhaustive


def _rate(executions: int, seconds: float) -> str:
    return f"{executions / seconds:,.0f}" if seconds > 0 else "-"


def results_table(results: Sequence[ScenarioResult]) -> FitTable:
    """One row per scenario: verdict, expectation and throughput.  On a narrow terminal
    the figures go first (executions/s, steps, seconds, executions), then `explored`;
    scenario, policy, verdict and expected always stay whole."""
    systematic = any(r.strategy == "dpor" for r in results)
    cols = [Col("scenario"), Col("policy"), Col("verdict"), Col("expected", wrap=True)]
    if systematic:
        cols.append(Col("explored", drop=5, wrap=True))
    cols += [Col("executions", drop=4, justify="right"), Col("steps", drop=2, justify="right"),
             Col("seconds", drop=3, justify="right"),
             Col("executions/s", drop=1, justify="right")]
    rows = []
    for r in results:
        vstyle = "green" if r.verdict == "pass" else "bold red"
        exp = Text(r.expected or "-", style="" if is_expected(r) else "bold red")
        if not_reproduced(r):
            exp.append(" (not reached)", style="yellow")
        elif not is_expected(r):
            exp.append(" (differs)")
        extra = [explored(r)] if systematic else []
        rows.append([r.scenario, r.policy, Text(r.verdict, style=vstyle), exp, *extra,
                     f"{r.executions:,}", f"{r.steps:,}", f"{r.seconds:.2f}",
                     _rate(r.executions, r.seconds)])
    return FitTable(cols, rows, header_style="bold")


def explored(r: ScenarioResult) -> str:
    """How much of the scenario's interleavings a result covers, in words."""
    if r.strategy != "dpor":
        return "sampled"
    if r.verdict == "violation":
        return "stopped at a violation"
    if not r.exhaustive:
        return "capped (not exhaustive)"
    k = r.preemption_bound
    bound = "" if k is None else f", <= {plural(k, 'preemption')}"
    if r.bound_reason is not None:
        bound += " (default)" if r.bound_reason.startswith("default:") else " (stated)"
    blocked = f", {r.sleep_blocked:,} sleep-blocked" if r.sleep_blocked else ""
    if r.cache_hits:
        blocked += f", {r.cache_hits:,} cut at cached states"
    if r.subtrees:
        blocked += f", {plural(r.subtrees, 'subtree')}"
    return f"every trace{bound}{blocked}"


def total_line(results: Sequence[ScenarioResult], wall: float) -> str:
    """`total: N scenarios, E executions, S steps, W s wall, R executions/s`."""
    execs = sum(r.executions for r in results)
    steps = sum(r.steps for r in results)
    return (f"total: {plural(len(results), 'scenario')}, {plural(execs, 'execution')}, "
            f"{plural(steps, 'step')}, {wall:.2f} s wall, {_rate(execs, wall)} executions/s")


def coverage_table(scenarios: Sequence[Scenario], results: Sequence[ScenarioResult]) -> Table:
    """Which model paths each scenario reached: its probes first (executions reaching
    each, out of those run; a missing probe in red), then the other paths it reached."""
    from faultline.check.judging.coverage import probe_label
    t = Table(title="event coverage (executions reaching each path)")
    for col in ("scenario", "policy", "probes", "other paths reached"):
        t.add_column(col, overflow="fold")
    for s, r in zip(scenarios, results):
        wanted = [lbl for p in s.probes if (lbl := probe_label(p, r.policy)) is not None]
        probes = Text()
        for lbl in wanted:
            n = r.coverage.get(lbl, 0)
            probes.append(f"{lbl} {n}/{r.executions}  ", style="" if n else "bold red")
        others = ", ".join(f"{k} {v}" for k, v in sorted(r.coverage.items())
                           if k not in wanted and k not in _BOOKKEEPING)
        t.add_row(r.scenario, r.policy, probes, others)
    return t


_BOOKKEEPING = {"op", "mmap", "setup-done", "user-access", "thread-stopped", "fork-begin",
                "fork-end", "munmap-end", "mprotect-end", "exec-begin", "map-delete",
                "map-protect", "map-inherit"}
