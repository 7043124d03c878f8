"""The `faultline` command: scenarios, show, check and replay.

What lives here: the typer app, its --version and its four commands, the translation of
bad input into one stderr line and exit status 2 (usage errors and scenario names:
cli.usage), and the checks of every input and output before the work starts (output
paths: check.running.files; checkpoints: check.running.checkpoint; counterexample files:
cli.counterexample).

Rule kept: thin.  Parse, call `scenario.loader` / `check.explore`, hand the results to
`report`, choose the exit status.  Exit statuses: 0 no violation, 1 a violation or a
verdict differing from the scenario's `expect` for that policy, 2 bad input (one line on
stderr, never a traceback), 3 a bug in faultline (traceback, then one line).
Must not be added: model or checker logic, or rendering beyond gluing `report` pieces.

    check:  load scenarios --> echo run description --> check_scenario x N (progress)
            --> results table --> replay first violation with a recorder --> trace
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from faultline import __version__
from faultline.check import explore
from faultline.check.explore import CheckConfig, RunResult, ScenarioResult
from faultline.check.judging.anatomy import dissect
from faultline.check.running import checkpoint, files, interrupt
from faultline.check.running.parallel import STRATEGIES, check_many
from faultline.check.running.ray_backend import RayError
from faultline.check.search import portfolio
from faultline.check.search.align import replay_under
from faultline.cli import (
    counterexample,
    mutants_cmd,
    report_cmd,
    sim_cmd,
    spin_cmd,
    tour_cmd,
    usage,
)
from faultline.cli.common import (
    _CORES,
    EXIT_OK,
    EXIT_VIOLATION,
    BadInput,
    _emit_json,
    _LazyProgress,
    _out,
    _piped,
    _reported,
    _say,
)
from faultline.kern.policy import all_policies
from faultline.report.tables import (
    catalog_long,
    catalog_table,
    coverage_table,
    is_expected,
    not_reproduced,
    results_table,
    scenario_json,
    scenario_view,
    total_line,
)
from faultline.report.trace_view import (
    render_counterexample,
    render_outcome,
    render_run_description,
)
from faultline.report.words import plural
from faultline.rt.trace import (
    MAX_SCHEDULE_STEPS,
    RunRecord,
    ScheduleTooLong,
    schedule_from_str,
    schedule_to_str,
)
from faultline.scenario import loader
from faultline.scenario.loader import ScenarioError
from faultline.scenario.spec import Scenario

LONG_SCHEDULE = 400           # longer schedules are replayed from a file, not a flag

app = typer.Typer(
    cls=usage.OneLineUsage,
    name="faultline",
    help="FreeBSD's vm_fault path (D51474, shared-busy soft faults) as a checkable model.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


# ---------------------------------------------------------------- argument checks

def _policy(name: str) -> str:
    known = all_policies()
    if name not in known:
        raise BadInput(f"unknown policy {name!r}{usage.did_you_mean(name, known)} "
                       f"(known: {', '.join(known)})")
    return name


def _strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise BadInput(f"unknown strategy {name!r}{usage.did_you_mean(name, STRATEGIES)} "
                       f"(this version knows: {', '.join(STRATEGIES)})")
    return name


def _dpor(name: str) -> str:
    if name not in explore.DPOR_FLAVOURS:
        raise BadInput(f"unknown DPOR flavour {name!r}; this version knows: "
                       f"{', '.join(explore.DPOR_FLAVOURS)}")
    return name


def _preemptions(text: str | None) -> tuple[int | None, ...] | None:
    """'K' -> (K,); 'A..B' -> (A, ..., B) for iterative deepening; 'none' -> (None,)."""
    if text is None:
        return None
    if text == "none":
        return (None,)
    lo, sep, hi = text.partition("..")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise BadInput(f"--preemptions: expected K, A..B with integers, or none; got {text!r}"
                       ) from None
    if a < 0 or b < a:
        raise BadInput(f"--preemptions: expected 0 <= A <= B, got {text!r}")
    if b > checkpoint.MAX_PREEMPTIONS or b - a >= checkpoint.MAX_BOUNDS:
        raise BadInput(f"--preemptions: at most {checkpoint.MAX_BOUNDS} bounds, each at most "
                       f"{checkpoint.MAX_PREEMPTIONS:,}; got {text!r}")
    return tuple(range(a, b + 1))


def _schedule(text: str, s: Scenario | None = None) -> list[int]:
    """A schedule string's steps: at most MAX_SCHEDULE_STEPS, and once the scenario is
    known, at most its step bound (a run never takes more steps)."""
    limit = MAX_SCHEDULE_STEPS if s is None else min(s.step_bound, MAX_SCHEDULE_STEPS)
    shown = text if len(text) <= 60 else text[:57] + "..."
    try:
        return schedule_from_str(text, limit)
    except ScheduleTooLong:
        why = "faultline's limit for any schedule" if s is None else \
            f"the step_bound of scenario {s.name}"
        raise BadInput(f"schedule {shown!r} is too long: more than {limit:,} steps, "
                       f"{why}") from None
    except ValueError:
        raise BadInput(f"bad schedule {shown!r}: expected thread ids with optional "
                       f"repeat counts, like '0*12,1,2*3'") from None


def _outputs(force: bool, state: Path | None, *named: tuple[str, Path | None, files.Kind]
             ) -> None:
    """Fail now, not after the work, if an output cannot or must not be written
    (check.running.files.check_target; two options naming one file are bad input too).
    With --force, a --state file that is not a checkpoint goes now: checkpoints (written
    from the start of the run on) replace only checkpoints."""
    outputs = [*named, ("--state", state, files.CHECKPOINT)]
    clash = files.same_file_twice([(option, path) for option, path, _ in outputs])
    if clash is not None:
        raise BadInput(clash)
    for _, path, kind in outputs:
        if path is not None:
            files.check_target(path, kind, force)
    if force and state is not None and state.is_file() and not files.CHECKPOINT.ours(state):
        try:
            state.unlink()
        except OSError as e:
            raise BadInput(f"cannot replace {state}: {e.strerror or e}") from None


def _select(names: Sequence[str], everything: bool) -> list[Scenario]:
    """The catalog (with --all) followed by the named scenarios, each once."""
    if not names and not everything:
        raise BadInput("no scenarios to check: name catalog scenarios or TOML files, "
                       "or pass --all (faultline scenarios lists the catalog)")
    chosen = loader.load_catalog() if everything else []
    seen = {s.source for s in chosen}
    for name in names:
        s = usage.load_scenario(name)
        if s.source not in seen:
            chosen.append(s)
            seen.add(s.source)
    return chosen


def _scenario_arg(s: Scenario) -> str:
    """How to name `s` on a command line: its catalog name, else its file."""
    in_catalog = Path(s.source).parent == loader.catalog_dir()
    return s.name if in_catalog else s.source


def _processes(s: Scenario) -> dict[str, str]:
    return {t.name: t.process for t in s.threads}


# ---------------------------------------------------------------- the app's own options

def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"faultline {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _app_options(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print faultline's version and exit.")] = False,
) -> None:
    # Options before the command; --version acts in its callback.
    pass


# ---------------------------------------------------------------- commands: catalog

@app.command()
def scenarios(
    long: Annotated[bool, typer.Option(
        "--long", help="Each scenario's whole description and probes too.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the built-in scenarios: threads, DPOR bound, expected verdicts."""
    with _reported():
        catalog = loader.load_catalog()
    if json_out:
        _emit_json([scenario_json(s) for s in catalog])
    else:
        _out().print(catalog_long(catalog) if long else catalog_table(catalog))


@app.command()
def show(
    scenario: Annotated[str, typer.Argument(help="A catalog name or a TOML file.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a scenario: files, processes, mappings, setup, threads and expectations."""
    with _reported():
        s = usage.load_scenario(scenario)
    if json_out:
        _emit_json(dataclasses.asdict(s))
    else:
        _out().print(scenario_view(s))


# ---------------------------------------------------------------- command: check



def _run_checks(chosen: Sequence[Scenario], cfg: CheckConfig, show_progress: bool,
                jobs: int = 1, ray: str | None = None
                ) -> tuple[list[ScenarioResult], float]:
    """Check each scenario, in order (on `jobs` worker processes, or on Ray at `ray`:
    "local" or a cluster address); also the wall time.  Ctrl-C: interrupt.Stopped,
    with the results finished before it."""
    t0 = time.perf_counter()
    dpor = cfg.strategy == "dpor"
    # DPOR counts runs: complete executions and those cut short (sleep-blocked, cached).
    bar = _LazyProgress(None if dpor else cfg.runs * len(chosen), show_progress,
                        unit="runs" if dpor else "executions")
    done: dict[int, ScenarioResult] = {}

    def finished(i: int, r: ScenarioResult) -> None:
        done[i] = r
        bar.describe(_doing(chosen, len(done)))
        if not dpor:
            bar.reach(len(done) * cfg.runs)
    bar.describe(_doing(chosen, 0))
    try:
        results = check_many(chosen, cfg, jobs, progress=bar.advance, use_ray=ray is not None,
                             ray_address=None if ray == "local" else ray,
                             status=bar.status if dpor else None, units=bar.unit_status,
                             finished=finished)
    except RayError as e:
        raise BadInput(str(e)) from None
    except KeyboardInterrupt as e:
        bar.close()
        kept = [done[i] for i in sorted(done)]
        raise interrupt.Stopped(_stopped_line(e, cfg, bar, len(kept), len(chosen)), kept,
                                time.perf_counter() - t0) from None
    finally:
        bar.close()
    return results, time.perf_counter() - t0


def _doing(chosen: Sequence[Scenario], done: int) -> str:
    """The progress bar's name for the work: the scenario, or how many are done."""
    return chosen[0].name if len(chosen) == 1 else f"{done} of {len(chosen)} scenarios done"


def _stopped_line(e: KeyboardInterrupt, cfg: CheckConfig, bar: _LazyProgress, kept: int,
                  chosen: int) -> str:
    """What an interrupted check did, and where its checkpoint is (if any)."""
    what = f"{kept} of {chosen} scenarios finished, " if chosen > 1 else ""
    if isinstance(e, interrupt.Interrupted):
        where = str(e)
    elif cfg.state is not None:         # a second Ctrl-C, or one while shrinking
        where = (f"the last checkpoint is in {cfg.state}; faultline check --resume "
                 f"{cfg.state} continues")
    else:
        where = "no checkpoint" + (" (--state FILE keeps one)" if cfg.strategy == "dpor"
                                   and chosen == 1 else "")
    return f"{what}{bar.summary()}; {where}"


def _show_stopped(out: Console, cfg: CheckConfig, stopped: interrupt.Stopped,
                  json_out: bool) -> None:
    """The results an interrupted check finished (--json: all of them, marked so)."""
    if json_out:
        doc = _check_json(cfg, stopped.finished)
        if doc["verdict"] == "pass":            # of the finished ones: not a verdict
            doc["verdict"] = "interrupted"
        _emit_json({**doc, "interrupted": True})
    elif stopped.finished:
        _report_check(out, stopped.finished, stopped.seconds)


def _counterexample(r: ScenarioResult, cfg: CheckConfig) -> RunRecord:
    """r's counterexample, completed with the check's seed (none for DPOR, which takes
    none) and invariant mode."""
    ce = r.counterexample
    assert ce is not None
    return dataclasses.replace(ce, seed=None if cfg.strategy == "dpor" else cfg.seed,
                               options={**ce.options, "every_step": cfg.every_step})


def _write_trace(path: Path, record: RunRecord, replayed: RunResult, force: bool) -> None:
    """The counterexample file (cli.counterexample), written safely (check.running.files)."""
    files.write_text(path, counterexample.dump(record, replayed.events), files.COUNTEREXAMPLE,
                     force)


def _replay_hint(record: RunRecord, s: Scenario, trace_out: Path | None) -> str:
    if trace_out is not None:
        return f"faultline replay {shlex.quote(str(trace_out))}"
    if len(record.schedule) > LONG_SCHEDULE:
        return "the schedule is long: rerun the check with --trace-out FILE, " \
               "then faultline replay FILE"
    mode = "" if record.options.get("every_step", True) else " --end-invariants"
    return (f"faultline replay --scenario {shlex.quote(_scenario_arg(s))} "
            f"--policy {record.policy} --schedule {shlex.quote(record.schedule)}{mode}")


def _check_json(cfg: CheckConfig, results: Sequence[ScenarioResult]) -> dict[str, Any]:
    bad = any(r.verdict == "violation" for r in results)
    return {"verdict": "violation" if bad else "pass", "policy": cfg.policy,
            "strategy": cfg.strategy, "seed": cfg.seed, "runs": cfg.runs,
            "results": [r.to_json() for r in results]}


def _exit_status(results: Sequence[ScenarioResult]) -> int:
    # A violation the scenario records as a known finding is the expected result.
    bad = any((r.verdict == "violation" and r.expected != "violation") or not is_expected(r)
              for r in results)
    return EXIT_VIOLATION if bad else EXIT_OK


def _report_check(out: Console, results: Sequence[ScenarioResult], wall: float) -> None:
    out.print(results_table(results))
    _say(out, total_line(results, wall))
    if any(r.bound_reason is not None for r in results):
        _say(out, "(stated): the preemption bound the scenario file states, with its reason "
                  "(faultline show NAME); --preemptions overrides it")
    for r in results:
        if not_reproduced(r):
            _say(out, f"not reached: {r.scenario} under {r.policy} records a known violation "
                      f"(docs/findings.md) that this search did not reach; --strategy dpor "
                      f"reproduces it", "yellow")
        elif not is_expected(r):
            _say(out, f"unexpected: {r.scenario} under {r.policy}: expected {r.expected}, "
                      f"got {r.verdict}", "bold red")


@app.command()
def check(
    names: Annotated[list[str] | None, typer.Argument(
        metavar="SCENARIO", help="Catalog names or TOML files.")] = None,
    everything: Annotated[bool, typer.Option(
        "--all", help="Check every catalog scenario (in name order), then those named.")
    ] = False,
    policy: Annotated[str, typer.Option(
        help="Busy policy: xbusy, sbusy, or a seeded bug (faultline mutants).")] = "sbusy",
    strategy: Annotated[str, typer.Option(
        help="Exploration strategy: random (uniform), pct (priority change points), "
             "dpor (systematic: one execution per Mazurkiewicz trace) or portfolio "
             "(random, pct depth 2 and 3, and dpor bounded by --preemptions, else by the "
             "scenario's stated bound, in round-robin slices; the first violation wins; "
             "--runs in all).")
    ] = "random",
    dpor: Annotated[str, typer.Option(
        "--dpor", help="DPOR flavour: optimal (wakeup trees) or source (sleep sets).")
    ] = "optimal",
    preemptions: Annotated[str | None, typer.Option(
        help="DPOR preemption bound: K, A..B for iterative deepening, or none "
             "(default: the bound the scenario file states with its reason, else 2).")
    ] = None,
    max_executions: Annotated[int | None, typer.Option(
        min=1, help="DPOR: stop after this many executions (the result is then not "
                    "exhaustive).")] = None,
    depth: Annotated[int, typer.Option(min=1, help="PCT bug depth d (d-1 change points).")
                     ] = 3,
    runs: Annotated[int, typer.Option(min=1, help="Executions per scenario.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the exploration.")] = 1,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    trace_out: Annotated[Path | None, typer.Option(
        "--trace-out", help="Save the first counterexample to this file.")] = None,
    dot: Annotated[Path | None, typer.Option(
        "--dot", help="Write the happens-before graph of the counterexample's window "
                      "(its last steps after the setup; Graphviz DOT).")
    ] = None,
    dot_full: Annotated[bool, typer.Option(
        "--dot-full", help="--dot draws every step, the setup included.")] = False,
    every_step: Annotated[bool, typer.Option(
        "--step-invariants/--end-invariants",
        help="Check structural invariants after every step, or only at the end.")] = True,
    full: Annotated[bool, typer.Option(
        "--full", help="Show every step of the counterexample, setup included (default: "
                       "the window of the violation and the state at it).")] = False,
    coverage: Annotated[bool, typer.Option(
        "--coverage", help="Also show which model paths each scenario reached.")] = False,
    jobs: Annotated[int, typer.Option(
        min=1, help="Worker processes (default: one per core); results do not depend "
                    "on it.")] = _CORES,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS",
        help="Run the work units as Ray tasks instead: 'local' starts a Ray instance "
             "with --jobs CPUs, anything else is a cluster address for ray.init (auto, "
             "ray://HOST:10001). Results do not depend on it. Needs "
             "pip install 'faultline[ray]'.")] = None,
    state: Annotated[Path | None, typer.Option(
        "--state", help="DPOR: checkpoint the exploration to this file (10 s in, then "
                        "every 30 s, and at each bound; FAULTLINE_CHECKPOINT_SECONDS changes "
                        "the interval). A split exploration (--jobs > 1) is checkpointed as "
                        "its subtrees merge or pause.")
    ] = None,
    resume: Annotated[Path | None, typer.Option(
        "--resume", help="DPOR: continue the exploration saved in this checkpoint (its "
                         "scenario and settings, split included, are used; it goes on "
                         "checkpointing there)."
    )] = None,
    shrink: Annotated[bool, typer.Option(
        "--shrink/--no-shrink",
        help="Minimise a counterexample: fewest preemptions, then fewest steps.")] = True,
    race_detect: Annotated[bool, typer.Option(
        "--race-detect",
        help="Also check the locking discipline: every plain access to a model field must "
             "be ordered by a lock, busy or wakeup against conflicting ones (happens-"
             "before); a data race is a violation.")] = False,
    cache_states: Annotated[bool | None, typer.Option(
        "--cache-states/--no-cache-states",
        help="DPOR: stop a run at a state whose whole subtree an earlier run explored "
             "(canonical state digests; source-DPOR only; docs/state-caching.md says when "
             "this stays sound).  Default: on where the exploration is unbounded, where "
             "retry loops make stateless DPOR endless.")] = None,
    split: Annotated[int | None, typer.Option(
        "--split", min=0, max=checkpoint.MAX_SPLIT,
        help="DPOR: deal each tree out to the workers as the subtrees below its first N "
             "branching points (0: one unit per scenario; default 6 when there are more "
             "workers than scenarios, else 0). Results depend on N, never on --jobs.")
    ] = None,
    shrink_budget: Annotated[int | None, typer.Option(
        "--shrink-budget", min=1, metavar="EXECUTIONS",
        help="Shrinking may run this many executions (default 2000, or "
             "FAULTLINE_SHRINK_EXECUTIONS); the limit that decides the shrunk result.")
    ] = None,
    shrink_seconds: Annotated[float | None, typer.Option(
        "--shrink-seconds", min=0.0,
        help="Stop shrinking after this many seconds even within its budget (default 60, or "
             "FAULTLINE_SHRINK_SECONDS): a safety net; the output says when it was hit, "
             "since the shrunk result may then differ on another machine.")] = None,
    force: Annotated[bool, typer.Option(
        "--force",
        help="Overwrite output files (--trace-out, --dot, --state) that exist but are not "
             "faultline files of that kind. Symbolic links are refused even so.")] = False,
) -> None:
    """Check scenarios: run seeded executions and look for a violated property."""
    out = _out()
    with _reported():
        cfg = CheckConfig(policy=_policy(policy), strategy=_strategy(strategy), runs=runs,
                          seed=seed, every_step=every_step, depth=depth, dpor=_dpor(dpor),
                          preemptions=_preemptions(preemptions),
                          max_executions=max_executions, shrink=shrink,
                          race_detect=race_detect, cache_states=cache_states, split=split)
        if shrink_budget is not None:
            cfg = dataclasses.replace(cfg, shrink_executions=shrink_budget)
        if shrink_seconds is not None:
            cfg = dataclasses.replace(cfg, shrink_seconds=shrink_seconds)
        if resume is not None:
            if state is not None and state.absolute() != resume.absolute():
                raise BadInput("--resume goes on checkpointing to its own file: drop --state")
            cfg, chosen, jobs = _from_checkpoint(resume, cfg, jobs)
            if names or everything:
                raise BadInput("--resume checks the scenario its checkpoint names: drop the "
                               "scenario arguments and --all")
        else:
            if state is not None:
                if cfg.strategy != "dpor":
                    raise BadInput("--state checkpoints a DPOR exploration: add --strategy "
                                   "dpor")
                cfg = dataclasses.replace(cfg, state=str(state))
            chosen = _select(names or [], everything)
        if cfg.state is not None and len(chosen) != 1:
            raise BadInput("--state and --resume take exactly one scenario")
        if cfg.state is not None and ray is not None:
            raise BadInput("--state and --resume run in this process: drop --ray")
        _outputs(force, None if cfg.state is None else Path(cfg.state),
                 ("--trace-out", trace_out, files.COUNTEREXAMPLE), ("--dot", dot, files.DOT))
        if not json_out:
            _say(out, _check_header(cfg, chosen, preemptions, everything))
        try:
            results, wall = _run_checks(chosen, cfg, show_progress=not json_out, jobs=jobs,
                                        ray=ray)
        except interrupt.Stopped as stopped:
            _show_stopped(out, cfg, stopped, json_out)
            raise
        _after_check(out, chosen, results, wall, cfg, json_out, trace_out, full, force)
        _write_dot(dot, chosen, results, cfg, out, json_out, force, dot_full)
        if coverage and not json_out:
            out.print(coverage_table(chosen, results))
    raise typer.Exit(_exit_status(results))


def _check_header(cfg: CheckConfig, chosen: Sequence[Scenario], preemptions: str | None,
                  everything: bool = False) -> str:
    """The run description check prints first: every setting that shapes this run (a
    DPOR exploration takes no runs, seed or depth), and the faultline version (which
    fixes what `--all`, shown as catalog(N), means)."""
    names = [s.name for s in chosen]
    if everything:
        n = len(loader.catalog_names())
        names = [f"catalog({n})", *names[n:]]
    return (f"faultline check: policy={cfg.policy} strategy={cfg.strategy}"
            f"{_strategy_settings(cfg, preemptions)} "
            f"invariants={'step' if cfg.every_step else 'end'}"
            f"{' race-detect' if cfg.race_detect else ''}"
            f"{'' if cfg.shrink else ' no-shrink'}{_shrink_budget(cfg)} "
            f"scenarios={','.join(names)} version={__version__}")


def _strategy_settings(cfg: CheckConfig, preemptions: str | None) -> str:
    """The settings of cfg's strategy, each with a leading space."""
    if cfg.strategy != "dpor":
        what = {"pct": f" depth={cfg.depth}",
                portfolio.NAME: f" {portfolio.describe(cfg)}"}.get(cfg.strategy, "")
        return f"{what} runs={cfg.runs} seed={cfg.seed}"
    pre = preemptions or ("scenario" if cfg.preemptions is None else
                          ",".join("none" if b is None else str(b) for b in cfg.preemptions))
    asked = cfg.cache_states
    if cfg.preemptions is not None:
        # What the exploration will run: unbounded, states are cached (source DPOR).
        # A setting it refuses is reported when the check starts.
        with contextlib.suppress(ValueError):
            cfg = explore.stateful_dpor(cfg, list(cfg.preemptions))
    if cfg.cache_states:
        cache = " cache-states (source DPOR)"
    elif asked is False:
        cache = " no-cache-states"
    elif cfg.preemptions is None and not cfg.race_detect:
        cache = " cache-states where unbounded (source DPOR)"   # scenario by scenario
    else:
        cache = ""
    return (f" dpor={cfg.dpor} preemptions={pre}"
            f" max_executions={cfg.max_executions or 'none'}{cache}"
            f"{'' if cfg.split is None else f' split={cfg.split}'}")


def _shrink_budget(cfg: CheckConfig) -> str:
    """' shrink-budget=N/Ss' when shrinking runs with other than the default limits."""
    default = CheckConfig(policy=cfg.policy)
    if not cfg.shrink or (cfg.shrink_executions, cfg.shrink_seconds) == (
            default.shrink_executions, default.shrink_seconds):
        return ""
    return f" shrink-budget={cfg.shrink_executions}/{cfg.shrink_seconds:g}s"


def _from_checkpoint(path: Path, cfg: CheckConfig, jobs: int
                     ) -> tuple[CheckConfig, list[Scenario], int]:
    """The configuration, scenario and job count a checkpoint file records, once the
    file has been checked whole (checkpoint.read: seal and layout; check_resumable: it
    fits its scenario): a split exploration (check.search.split) resumes split as it
    was, on `jobs` workers; a sequential one in this process."""
    try:
        doc = checkpoint.read(path)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    pre = doc["preemptions"]
    new = dataclasses.replace(
        cfg, policy=doc["policy"], strategy="dpor", dpor=doc["dpor"],
        preemptions=None if pre is None else tuple(pre), max_executions=doc["max_executions"],
        every_step=doc["every_step"], npv_locks=doc["npv_locks"], state=str(path), resume=doc,
        race_detect=doc["race_detect"], cache_states=doc["cache_states"])
    depth = doc["split"]
    if cfg.split is not None and cfg.split != depth:
        raise BadInput(f"{path} was split at {depth} nodes: resume it with --split {depth} "
                       f"(or without --split)")
    new = dataclasses.replace(new, split=depth)
    # The scenario's file if it is still there, else the catalog scenario of that name.
    where = doc["scenario_path"]
    try:
        s = loader.load_path(where) if where and Path(where).is_file() else \
            _recorded_scenario(doc["scenario"], path)
    except ScenarioError as e:
        raise BadInput(f"{path}: scenario {doc['scenario']!r} cannot be loaded: {e}"
                       ) from None
    checkpoint.check_resumable(doc, s, new, str(path))
    return new, [s], jobs if depth else 1


def _write_dot(path: Path | None, chosen: Sequence[Scenario], results: list[ScenarioResult],
               cfg: CheckConfig, out: Console, quiet: bool, force: bool,
               full: bool = False) -> None:
    """--dot: the first counterexample's happens-before graph (its window, or with
    `full` every step), headed by files.DOT_HEADER (so that a later --dot knows the
    file for ours)."""
    if path is None:
        return
    first = next((i for i, r in enumerate(results) if r.verdict == "violation"), None)
    if first is None:
        if not quiet:
            _say(out, f"no violation: no graph written to {path}")
        return
    record = _counterexample(results[first], cfg)
    graph = explore.counterexample_dot(chosen[first], record, cfg.every_step, full=full)
    files.write_text(path, f"{files.DOT_HEADER}\n{graph}", files.DOT, force)
    if not quiet:
        _say(out, f"happens-before graph written to {path} (render: dot -Tsvg {path})")


def _after_check(out: Console, chosen: Sequence[Scenario], results: list[ScenarioResult],
                 wall: float, cfg: CheckConfig, json_out: bool, trace_out: Path | None,
                 full: bool, force: bool = False) -> None:
    """Report the results; replay, show and save the first counterexample."""
    if json_out:
        _emit_json(_check_json(cfg, results))
    else:
        _report_check(out, results, wall)
    first = next((i for i, r in enumerate(results) if r.verdict == "violation"), None)
    if first is None:
        if trace_out is not None and not json_out:
            _say(out, f"no violation: nothing to save in {trace_out}")
        return
    s, record = chosen[first], _counterexample(results[first], cfg)
    if json_out and trace_out is None:
        return
    anatomy = dissect(s, record, every_step=cfg.every_step)
    replayed = anatomy.result
    if trace_out is not None:
        _write_trace(trace_out, record, replayed, force)
    if not json_out:
        render_counterexample(out, record, replayed.events, _replay_hint(record, s, trace_out),
                              full=full, processes=_processes(s), command="counterexample",
                              wrap=not _piped(), anatomy=anatomy)
        note = _shrink_note(record, cfg)
        if note:
            _say(out, note, "yellow")


def _shrink_note(record: RunRecord, cfg: CheckConfig) -> str:
    """Say so when shrinking stopped at its budget rather than at a minimum."""
    stopped = record.options.get("shrink_stopped")
    if stopped == "seconds":
        runs = plural(int(record.options.get("shrink_runs", 0)), "execution")
        return (f"note: shrinking stopped at its time limit ({cfg.shrink_seconds:g} s) after "
                f"{runs}, before it was done: on a faster or slower machine the shrunk "
                f"counterexample may differ (--shrink-seconds raises the limit)")
    if stopped == "executions":
        return (f"note: shrinking used its whole budget of "
                f"{plural(cfg.shrink_executions, 'execution')} before it was done: the "
                f"counterexample may shrink further with a larger --shrink-budget")
    return ""


# ---------------------------------------------------------------- command: replay

def _load_record(path: Path) -> RunRecord:
    """A counterexample file -> RunRecord, every field checked (cli.counterexample)."""
    try:
        return counterexample.load(path)
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None


def _replay_record(file: Path | None, schedule: str | None, scenario: str | None,
                   policy: str | None) -> RunRecord:
    """The run to replay: a file's record with any overrides, or one built from flags."""
    if file is not None:
        record = _load_record(file)
    elif scenario is None or schedule is None:
        raise BadInput("replay needs a counterexample FILE, or --scenario NAME and "
                       "--schedule S (e.g. --schedule '0*12,1,2*3')")
    else:
        record = RunRecord(scenario=scenario, policy="sbusy", strategy="replay", seed=None,
                           schedule=schedule, verdict="")
    if schedule is not None:
        record = dataclasses.replace(record, schedule=schedule)
    if policy is not None:
        record = dataclasses.replace(record, policy=policy)
    _policy(record.policy)
    _schedule(record.schedule)
    return record


def _recorded_scenario(name: str, file: Path | None) -> Scenario:
    """The scenario a file names: a catalog name or a regular file (never a device or a
    pipe, which loading would read forever)."""
    if name not in loader.catalog_names() and not Path(name).is_file():
        raise BadInput(f"{file or 'the record'}: scenario: {name!r} is neither a catalog "
                       f"scenario nor a scenario file")
    return loader.load_scenario(name)


def _replay_scenario(record: RunRecord, override: str | None, file: Path | None
                     ) -> Scenario:
    """--scenario if given (as the user says, whatever the record names), else the
    recorded file if it still exists, else the recorded name; either way a scenario of
    the name the record gives."""
    if override is not None:
        return usage.load_scenario(override)
    if record.scenario_path and Path(record.scenario_path).is_file():
        s = loader.load_path(record.scenario_path)
    else:
        s = _recorded_scenario(record.scenario, file)
    if s.name != record.scenario:
        raise BadInput(f"{file or 'the record'}: scenario: the counterexample is of "
                       f"scenario {record.scenario!r}, but {s.source} is scenario {s.name!r} "
                       f"(--scenario replays it on another scenario all the same)")
    return s


def _replay_notes(out: Console, record: RunRecord, result: RunResult, verdict: str) -> None:
    extra = len(_schedule(record.schedule)) - result.outcome.steps
    if extra > 0:
        _say(out, f"note: the run ended {plural(extra, 'step')} before the schedule did",
             "yellow")
    if record.verdict and record.verdict != verdict:
        _say(out, f"note: the recorded verdict was {record.verdict}; this run's is "
                  f"{verdict}", "yellow")


@app.command()
def replay(
    file: Annotated[Path | None, typer.Argument(
        help="A counterexample file written by check --trace-out.")] = None,
    schedule: Annotated[str | None, typer.Option(
        help="A schedule string such as '0*12,1,2*3' (thread id, repeat count).")] = None,
    scenario: Annotated[str | None, typer.Option(
        help="Catalog name or TOML file (overrides the file's).")] = None,
    policy: Annotated[str | None, typer.Option(
        help="Any policy, seeded bugs included (faultline mutants); default: the file's, "
             "else sbusy. With a FILE recorded under another policy: its run under this "
             "one, setup aligned (the same thread decisions after the setup).")] = None,
    every_step: Annotated[bool | None, typer.Option(
        "--step-invariants/--end-invariants",
        help="Invariants after every step or at the end (default: the file's).")] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Show every step (default: a violation's window and the state at "
                       "it).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-run a recorded schedule step for step and show its trace."""
    out = _out()
    with _reported():
        record = _replay_record(file, schedule, scenario, None if file else policy)
        other = _policy(policy) if file and policy not in (None, record.policy) else None
        s = _replay_scenario(record, scenario, file)
        _schedule(record.schedule, s)          # no longer than the scenario's step bound
        es = every_step if every_step is not None else \
            bool(record.options.get("every_step", True))
        record = dataclasses.replace(record, scenario=s.name, scenario_path=s.source,
                                     options={**record.options, "every_step": es})
        if not json_out:
            render_run_description(dataclasses.replace(record, policy=other or record.policy),
                                   out, wrap=not _piped())
        if other is None:
            anatomy = dissect(s, record, every_step=es)
        else:
            anatomy, aligned = replay_under(s, record, other, every_step=es)
            record = dataclasses.replace(record, policy=other, schedule=schedule_to_str(
                anatomy.result.outcome.schedule))
            if not json_out:
                _say(out, aligned, "yellow")
        result = anatomy.result
        replayed = RunRecord.from_outcome(
            result.outcome, scenario=s.name, policy=record.policy, strategy="replay",
            seed=record.seed, version=__version__, scenario_path=s.source,
            options=record.options)
        if json_out:
            _emit_json({**dataclasses.asdict(replayed),
                        "events": [e.to_json() for e in result.events]})
        else:
            render_outcome(out, result.events, replayed.violation, full=full,
                           processes=_processes(s), anatomy=anatomy)
            _replay_notes(out, record, result, replayed.verdict)
    raise typer.Exit(EXIT_VIOLATION if replayed.violation else EXIT_OK)


app.command("mutants")(mutants_cmd.mutants)
app.command("sim")(sim_cmd.sim)
app.command("calibrate")(sim_cmd.calibrate)
app.command("spin")(spin_cmd.spin)
app.command("tour")(tour_cmd.tour)
app.command("report")(report_cmd.report)


def main() -> None:
    """The `faultline` console script."""
    try:
        app(prog_name="faultline")      # also under python -m faultline.cli.app
    finally:
        # The command has finished and said so: a Ctrl-C during interpreter shutdown
        # (joining a worker pool's threads) would only kill the process by SIGINT and
        # lose the exit status the command chose.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    main()
