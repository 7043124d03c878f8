"""Catalog verdicts under an execution budget: how far DPOR got, in words and in one table.

What lives here: `how_far` (report.tables.explored, except that a search stopped by
its budget says so and names it) and `verdict_table`, the compact table `faultline
tour` prints: scenario, stated bound, verdict against the expectation, how far the
search got and its executions (dropped first on a narrow terminal).

Rule kept: presentation of check results only.  Must not be added: running checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from faultline.check.explore import ScenarioResult
from faultline.report.fit import Col, FitTable
from faultline.report.tables import explored, is_expected
from faultline.report.words import plural

__all__ = ["how_far", "verdict_table"]


def how_far(r: ScenarioResult, budget: int | None) -> str:
    """`explored(r)`, or 'ran out of budget (N executions)' for a DPOR search that the
    budget stopped before its tree (within the bound) was done."""
    if r.strategy == "dpor" and r.verdict == "pass" and not r.exhaustive and budget:
        return f"ran out of budget ({plural(budget, 'execution')})"
    return explored(r)


def _short(r: ScenarioResult) -> Text:
    if r.verdict == "violation":
        return Text("found (known)" if is_expected(r) else "found", style="yellow")
    if r.exhaustive:
        return Text("exhaustive", style="green")
    return Text("out of budget")


def _verdict(r: ScenarioResult) -> Text:
    if not is_expected(r):
        return Text(f"{r.verdict} (expected {r.expected})", style="bold red")
    return Text(r.verdict, style="yellow" if r.verdict == "violation" else "green")


def verdict_table(results: Sequence[ScenarioResult]) -> FitTable:
    """One row per scenario: bound, verdict, how far the search got, and its size (which
    goes first on a narrow terminal)."""
    cols = [Col("scenario"), Col("bound", justify="right"), Col("verdict"),
            Col("explored"), Col("executions", drop=1, justify="right")]
    rows = [[r.scenario, "none" if r.preemption_bound is None else str(r.preemption_bound),
             _verdict(r), _short(r), f"{r.executions:,}"] for r in results]
    return FitTable(cols, rows, header_style="bold",
                    caption="bound: the preemption bound the scenario states (none: every "
                            "interleaving); exhaustive: every trace within it; known: a "
                            "race in FreeBSD the model found (docs/findings.md)",
                    caption_justify="left")
