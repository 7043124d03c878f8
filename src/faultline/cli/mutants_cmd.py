"""The `faultline mutants` command: is every seeded bug caught by the catalog?

What lives here: running each seeded bug (kern.mutants) against the catalog scenarios
that probe its race (or, with --all-scenarios, the whole catalog) through the check
command's runner (check.running.parallel.check_many), and the table or JSON of what
caught it: scenario, kind of violation, executions and seconds to the first violation,
and the counterexample's length after shrinking.
Rule kept: a mutant counts as caught only by a violation the checker judges (the
variants themselves assert nothing); exit 1 if any seeded bug that is not argued
harmless survives, 2 for bad input.  Must not be added: mutant definitions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.text import Text

from faultline.check.explore import CheckConfig, ScenarioResult
from faultline.check.running.parallel import STRATEGIES, check_many
from faultline.cli.common import (
    _CORES,
    EXIT_OK,
    EXIT_VIOLATION,
    BadInput,
    _emit_json,
    _LazyProgress,
    _out,
    _reported,
    _say,
)
from faultline.cli.usage import did_you_mean
from faultline.kern.mutants import MUTANTS, Mutant
from faultline.report.fit import Col, FitTable
from faultline.report.words import plural
from faultline.rt.trace import schedule_from_str
from faultline.scenario import loader
from faultline.scenario.spec import Scenario


def mutants(
    strategy: Annotated[str, typer.Option(
        help="Exploration strategy: dpor (within each scenario's stated bound), random, "
             "pct or portfolio.")] = "dpor",
    runs: Annotated[int, typer.Option(min=1, help="Executions per scenario (random, pct, "
                                                  "portfolio).")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the exploration.")] = 1,
    all_scenarios: Annotated[bool, typer.Option(
        "--all-scenarios", help="Check every mutant against the whole catalog, not only "
                                "the scenarios that probe its race.")] = False,
    only: Annotated[list[str] | None, typer.Argument(
        metavar="[MUTANT]...", help="Seeded bugs to check (default: all).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    jobs: Annotated[int, typer.Option(
        min=1, help="Worker processes (default: one per core).")] = _CORES,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS", help="Run the work units on Ray (as check).")] = None,
) -> None:
    """Check every seeded bug against the catalog: each must be caught."""
    out = _out()
    with _reported():
        if strategy not in STRATEGIES:
            raise BadInput(f"unknown strategy {strategy!r}"
                           f"{did_you_mean(strategy, STRATEGIES)} (this version knows: "
                           f"{', '.join(STRATEGIES)})")
        names = list(only or MUTANTS)
        for n in names:
            if n not in MUTANTS:
                raise BadInput(f"unknown seeded bug {n!r}{did_you_mean(n, MUTANTS)} "
                               f"(known: {', '.join(MUTANTS)})")
        catalog = loader.load_catalog()
        if not json_out:
            sampled = "" if strategy == "dpor" else f", {plural(runs, 'run')}, seed {seed}"
            _say(out, f"faultline mutants: {plural(len(names), 'seeded bug')}, "
                      f"strategy {strategy}{sampled}, "
                      f"{'the whole catalog' if all_scenarios else 'their probe scenarios'}")
        bar = _LazyProgress(len(names), not json_out, unit="mutants")
        rows = []
        try:
            for n in names:
                bar.describe(n)
                cls = MUTANTS[n]
                # A scenario that records a violation of the landed policy itself (a
                # finding, docs/findings.md) cannot tell a seeded bug apart: skip it.
                chosen = [s for s in (catalog if all_scenarios else _probes(cls, catalog))
                          if s.expect.get(cls.base) != "violation"]
                cfg = CheckConfig(policy=n, strategy=strategy, runs=runs, seed=seed)
                t0 = time.perf_counter()
                results = check_many(chosen, cfg, jobs, use_ray=ray is not None,
                                     ray_address=None if ray in (None, "local") else ray)
                rows.append(mutant_row(cls, strategy, results, time.perf_counter() - t0))
                bar.advance()
        finally:
            bar.close()
    survivors = [r for r in rows if not r["caught"] and not r["not_a_bug"]]
    if json_out:
        _emit_json(rows)
    else:
        out.print(mutant_table(rows))
        caught = sum(r["caught"] for r in rows)
        _say(out, f"{caught} of {plural(len(rows), 'seeded bug')} caught"
                  + (f"; {len(survivors)} survived: "
                     + ", ".join(r["mutant"] for r in survivors) if survivors else ""))
    raise typer.Exit(EXIT_VIOLATION if survivors else EXIT_OK)


def _probes(cls: type[Mutant], catalog: Sequence[Scenario]) -> list[Scenario]:
    by_name = {s.name: s for s in catalog}
    missing = [p for p in cls.probes if p not in by_name]
    if missing:
        raise BadInput(f"seeded bug {cls.name}: probe scenario(s) not in the catalog: "
                       f"{', '.join(missing)}")
    return [by_name[p] for p in cls.probes]


def mutant_row(cls: type[Mutant], strategy: str, results: Sequence[ScenarioResult],
               seconds: float) -> dict[str, Any]:
    """The JSON row of one mutant: the first scenario (in probe order) that caught it."""
    bad = [r for r in results if r.verdict == "violation"]
    first = bad[0] if bad else None
    ce = first.counterexample if first is not None else None
    return {
        "mutant": cls.name,
        "caught": first is not None,
        "not_a_bug": bool(cls.not_a_bug),
        "scenario": first.scenario if first else None,
        "scenarios": [r.scenario for r in bad],
        "violation_kind": ce.violation["kind"] if ce and ce.violation else None,
        "executions_to_violation": first.executions if first else None,
        "seconds": round(first.seconds if first else seconds, 3),
        "counterexample_steps": len(schedule_from_str(ce.schedule)) if ce else None,
        "strategy": strategy,
        "breaks": cls.breaks,
    }


def mutant_table(rows: Sequence[dict[str, Any]]) -> FitTable:
    """One row per seeded bug; on a narrow terminal the figures go first."""
    cols = [Col("mutant"), Col("verdict"), Col("caught by", wrap=True),
            Col("violation", drop=4), Col("executions", drop=3, justify="right"),
            Col("seconds", drop=1, justify="right"), Col("ce steps", drop=2, justify="right")]
    cells = []
    for r in rows:
        verdict = ("caught" if r["caught"] else "not a bug" if r["not_a_bug"]
                   else "SURVIVED")
        style = "green" if verdict != "SURVIVED" else "bold red"
        cells.append([r["mutant"], Text(verdict, style=style),
                      ", ".join(r["scenarios"]) or "-", r["violation_kind"] or "-",
                      "-" if r["executions_to_violation"] is None
                      else f"{r['executions_to_violation']:,}",
                      f"{r['seconds']:.2f}",
                      "-" if r["counterexample_steps"] is None
                      else str(r["counterexample_steps"])])
    return FitTable(cols, cells, title="seeded bugs", title_justify="left")
