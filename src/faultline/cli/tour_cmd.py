"""The `faultline tour` command: what faultline is for, in one command and a few minutes.

What lives here: the tour's plan (`Plan`: how much to explore and simulate, the default
and --quick) and its four acts, each printed as it runs and saved as the result files
the other commands write, so that `faultline report DIR/results DIR/replay DIR/sim`
rebuilds the same page:

    1  is D51474 correct?   the catalog under sbusy, DPOR within each scenario's stated
                            bound and an execution budget       -> results/check-sbusy.json
    2  would we notice?     one seeded race found and explained  -> replay/*.json
                            every seeded bug against its probes  -> results/mutants.json
    3  what does it cost?   the doexec exec storm, xbusy vs sbusy -> sim/ (points, plots,
                                                                    flame graphs, traces)
    4  the report           DIR/index.html (cli.report_cmd.build_report)

The budgets count executions, not seconds, so the tour's verdicts are the same on every
machine; they are sized for the default run to take under 3 minutes on 2 cores and
--quick under 1 minute.
Rule kept: thin; exit 0 when every verdict is what the scenarios expect and every seeded
bug not argued harmless is caught, else 1.  Must not be added: checking or simulation
logic, page layout.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from faultline import __version__
from faultline.check import explore
from faultline.check.explore import CheckConfig, ScenarioResult
from faultline.check.judging.anatomy import dissect
from faultline.check.running.runners import Ordered, open_runner
from faultline.cli import counterexample, report_cmd
from faultline.cli.common import (
    _CORES,
    EXIT_OK,
    EXIT_VIOLATION,
    _LazyProgress,
    _out,
    _piped,
    _reported,
    _say,
)
from faultline.cli.mutants_cmd import mutant_row, mutant_table
from faultline.cli.sim_cmd import TRACE_WINDOW_NS, write_sim_outputs
from faultline.kern.mutants import MUTANTS
from faultline.report.sim_tables import lock_table, series_of, shift_lines, sweep_table
from faultline.report.tables import explored, is_expected
from faultline.report.trace_view import render_counterexample
from faultline.report.verdicts import verdict_table
from faultline.report.words import plural
from faultline.scenario import loader
from faultline.scenario.spec import Scenario
from faultline.sim.simulate import SimConfig, sweep

SEEDED = ("rename-sbusied", "cow-rename")     # the race act 2 explains: bug, scenario


@dataclass(frozen=True, slots=True)
class Plan:
    """How much the tour explores and simulates."""

    check_budget: int                 # DPOR executions per catalog scenario, at most
    mutant_budget: int                # DPOR executions per seeded bug's probe, at most
    argued: bool                      # also explore the seeded bugs argued not a bug
    cpus: tuple[int, ...]             # simulated CPU counts
    duration_ms: float                # measured simulated time per point
    warmup_ms: float


FULL = Plan(check_budget=100, mutant_budget=100, argued=True, cpus=(1, 8, 26),
            duration_ms=10.0, warmup_ms=2.0)
QUICK = Plan(check_budget=20, mutant_budget=100, argued=False, cpus=(1, 4, 16),
             duration_ms=5.0, warmup_ms=1.0)


# ---------------------------------------------------------------- work units

def _hunt(name: str, probes: Sequence[Scenario], budget: int
          ) -> tuple[list[ScenarioResult], float]:
    """A work unit: seeded bug `name` against its probes in order, until one catches it."""
    t0 = time.perf_counter()
    results = []
    for s in probes:
        r = explore.check_scenario(s, CheckConfig(policy=name, strategy="dpor",
                                                  max_executions=budget))
        results.append(r)
        if r.verdict == "violation":
            break
    return results, time.perf_counter() - t0


def _in_parallel(units: Sequence[tuple[Any, ...]], jobs: int, label: str, unit: str
                 ) -> list[Any]:
    """Run (fn, *args) units on `jobs` workers with a progress bar; values in order."""
    bar = _LazyProgress(len(units), True, unit=unit)
    bar.describe(label)
    try:
        with open_runner(jobs) as runner:
            work = Ordered(runner, len(units))
            for i, (fn, *args) in enumerate(units):
                work.offer(i, fn, *args)
            for _ in work.finished():
                bar.advance()
            return work.needed()
    finally:
        bar.close()


# ---------------------------------------------------------------- act 1: the catalog

def _catalog(out: Console, plan: Plan, jobs: int, res: Path) -> list[ScenarioResult]:
    catalog = loader.load_catalog()
    _say(out, f"Each of the {len(catalog)} catalog scenarios races faults against forks, "
              f"exits, munmaps, collapses or page-outs. DPOR runs one execution per "
              f"distinct interleaving (Mazurkiewicz trace), within the preemption bound "
              f"the scenario states, and stops after {plural(plan.check_budget, 'execution')}"
              f" if the bound's tree is bigger. Every run is judged: KASSERTs, structural "
              f"invariants, POSIX memory semantics, deadlock.")
    cfg = CheckConfig(policy="sbusy", strategy="dpor", max_executions=plan.check_budget)
    results: list[ScenarioResult] = _in_parallel(
        [(explore.check_scenario, s, cfg) for s in catalog], jobs, "checking the catalog",
        "scenarios")
    out.print(verdict_table(results))
    exhaustive = sum(r.exhaustive for r in results)
    found = [r.scenario for r in results if r.verdict == "violation"]
    _say(out, f"{exhaustive} exhaustive, {len(results) - exhaustive - len(found)} out of "
              f"budget with no violation in the traces explored"
              + (f", {len(found)} stopped at a violation ({', '.join(found)})" if found
                 else ""))
    for r in results:
        if not is_expected(r):
            _say(out, f"unexpected: {r.scenario}: expected {r.expected}, got {r.verdict} "
                      f"({explored(r)})", "bold red")
    _save(res / "check-sbusy.json", {
        "verdict": "violation" if found else "pass", "policy": cfg.policy,
        "strategy": cfg.strategy, "max_executions": plan.check_budget,
        "results": [r.to_json() for r in results]})
    return results


# ---------------------------------------------------------------- act 2: seeded bugs

def _seeded_race(out: Console, plan: Plan, replays: Path) -> Path:
    """Find SEEDED's race, show it in the readable view, save it for replay."""
    name, where = SEEDED
    cls, s = MUTANTS[name], loader.load_scenario(where)
    _say(out, f"A seeded bug is D51474 with one protection removed. {name}: "
              f"{cls.description}; it breaks {cls.breaks}. DPOR on {where}:")
    cfg = CheckConfig(policy=name, strategy="dpor", max_executions=plan.mutant_budget)
    r = explore.check_scenario(s, cfg)
    if r.counterexample is None:
        raise AssertionError(f"seeded bug {name} not caught on {where} within "
                             f"{plan.mutant_budget} executions")
    record = dataclasses.replace(r.counterexample, seed=None,
                                 options={**r.counterexample.options, "every_step": True})
    anatomy = dissect(s, record)
    path = replays / f"{where}-{name}.json"
    path.write_text(counterexample.dump(record, anatomy.result.events))
    _say(out, f"found after {plural(r.executions, 'execution')}, shrunk to the fewest "
              f"preemptions, then steps:")
    render_counterexample(out, record, anatomy.result.events, f"faultline replay {path}",
                          processes={t.name: t.process for t in s.threads},
                          command="counterexample", wrap=not _piped(), anatomy=anatomy)
    return path


def _mutants(out: Console, plan: Plan, jobs: int, res: Path) -> list[dict[str, Any]]:
    by_name = {s.name: s for s in loader.load_catalog()}
    hunted = [cls for cls in MUTANTS.values() if plan.argued or not cls.not_a_bug]
    _say(out, f"Every seeded bug against the scenarios built to reach its race (DPOR, at "
              f"most {plural(plan.mutant_budget, 'execution')} per scenario)"
              + ("" if plan.argued else "; --quick leaves out the ones argued not a bug")
              + ":")
    # A scenario recording a violation of the landed policy cannot tell a bug apart.
    units = [(_hunt, cls.name, [by_name[p] for p in cls.probes
                                if by_name[p].expect.get(cls.base) != "violation"],
              plan.mutant_budget) for cls in hunted]
    done = _in_parallel(units, jobs, "seeded bugs", "mutants")
    rows = [{**mutant_row(cls, "dpor", results, seconds), "max_executions": plan.mutant_budget}
            for cls, (results, seconds) in zip(hunted, done)]
    rows += [{**mutant_row(cls, "dpor", [], 0.0), "explored": False,
              "max_executions": plan.mutant_budget}
             for cls in MUTANTS.values() if cls not in hunted]
    out.print(mutant_table(rows))
    caught = sum(r["caught"] for r in rows)
    _say(out, f"{caught} of {plural(len(rows), 'seeded bug')} caught; the rest are argued "
              f"not a bug in their docstrings (docs/mutants.md)")
    _save(res / "mutants.json", rows)
    return rows


# ---------------------------------------------------------------- act 3: contention

def _contention(out: Console, plan: Plan, jobs: int, sim_dir: Path) -> list[Path]:
    """Run the sweep, print it, write sim --out's files; the points and graphs written."""
    _say(out, f"doexec: every CPU runs a process that execs a dynamically linked program "
              f"in a loop, faulting its text and data in; xbusy (before D51474) and sbusy "
              f"at {', '.join(map(str, plan.cpus))} simulated CPUs, "
              f"{plan.duration_ms:g} ms measured after {plan.warmup_ms:g} ms warm-up:")
    largest = max(plan.cpus)
    configs = [SimConfig("doexec", pol, n, duration_ns=int(plan.duration_ms * 1e6),
                         warmup_ns=int(plan.warmup_ms * 1e6), profile=n == largest,
                         trace_window_ns=TRACE_WINDOW_NS if n == largest else 0)
               for pol in ("xbusy", "sbusy") for n in plan.cpus]
    bar = _LazyProgress(len(configs), True, unit="points")
    bar.describe("simulating")
    try:
        points = sweep(configs, jobs, progress=lambda _pt: bar.advance())
    finally:
        bar.close()
    out.print(sweep_table(points))
    for curve in series_of(points).values():
        out.print(lock_table(curve[-1], top=4))
    for line in shift_lines(points):
        _say(out, line)
    written = write_sim_outputs(sim_dir, points, [p.to_json() for p in points])
    return [p for p in written if p.suffix in (".json", ".svg")]


# ---------------------------------------------------------------- the tour

def _save(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")


def _act(out: Console, n: int, title: str) -> float:
    out.print()
    out.rule(f"{n}/4  {title}", align="left")
    return time.perf_counter()


def _took(out: Console, t0: float) -> None:
    _say(out, f"({time.perf_counter() - t0:.1f} s)", "dim")


def tour(
    quick: Annotated[bool, typer.Option(
        "--quick", help="A smaller budget and sweep (under a minute on 2 cores; for CI).")
    ] = False,
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Write the report (index.html) and its files here.")
    ] = report_cmd.DEFAULT_OUT,
    jobs: Annotated[int, typer.Option(
        min=1, help="Worker processes (default: one per core); results do not depend "
                    "on it.")] = _CORES,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an index.html that is not a faultline report.")] = False,
) -> None:
    """Check D51474, find a seeded race, simulate an exec storm; write the report."""
    out = _out()
    plan = QUICK if quick else FULL
    t_start = time.perf_counter()
    with _reported():
        report_cmd.check_out_dir(out_dir, force)
        res, replays, sim_dir = (out_dir / "results", out_dir / "replay", out_dir / "sim")
        report_cmd.make_dirs(res, replays, sim_dir)
        _say(out, f"faultline tour: {'quick' if quick else 'full'} "
                  f"check_budget={plan.check_budget} mutant_budget={plan.mutant_budget} "
                  f"argued={'yes' if plan.argued else 'no'} "
                  f"sim=doexec cpus={','.join(map(str, plan.cpus))} "
                  f"duration={plan.duration_ms:g}ms warmup={plan.warmup_ms:g}ms seed=1 "
                  f"jobs={jobs} out={out_dir} version={__version__}")
        t0 = _act(out, 1, "Is D51474 correct? The catalog under sbusy")
        results = _catalog(out, plan, jobs, res)
        _took(out, t0)
        t0 = _act(out, 2, "Would the checker notice a bug? Seeded races")
        race = _seeded_race(out, plan, replays)
        rows = _mutants(out, plan, jobs, res)
        _took(out, t0)
        t0 = _act(out, 3, "What does it cost? The exec storm, before and after")
        sim_files = _contention(out, plan, jobs, sim_dir)
        _took(out, t0)
        t0 = _act(out, 4, "The report")
        page = report_cmd.build_report([res / "check-sbusy.json", res / "mutants.json",
                                        race, *sim_files], out_dir, out)
        _say(out, f"wrote {page}: verdicts, the counterexample, what was explored, the "
                  f"seeded bugs, plots, lock profiles, flame graphs; Perfetto traces and "
                  f"replay files beside it. Open it in a browser (no network needed).")
        _say(out, f"faultline report {res} {replays} {sim_dir} --out DIR rebuilds it.")
        _took(out, t0)
    _say(out, f"tour done in {time.perf_counter() - t_start:.0f} s")
    bad = any(not is_expected(r) for r in results) or any(
        not r["caught"] and not r["not_a_bug"] for r in rows)
    raise typer.Exit(EXIT_VIOLATION if bad else EXIT_OK)


__all__ = ["FULL", "QUICK", "Plan", "tour"]
