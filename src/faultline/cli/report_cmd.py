"""The `faultline report` command: one self-contained page from saved results.

What lives here: reading the files given (each classified by its shape: a `check
--json` document, `mutants --json` rows, `sim --json` points or a sim --out directory's
points.json, a counterexample file, a Perfetto trace, a flame graph; a directory stands
for the files in it), laying them out beside the page, and `build_report`, which
`faultline tour` calls too, so that a page rebuilt from a tour's saved results is the
tour's page:

    DIR/index.html           report.page.render_page
    DIR/results/*.json       check and mutants results, as given
    DIR/replay/*.json        counterexample files (those of check results made here)
    DIR/sim/                 points.json, the PNG plots (redrawn), flame graphs, traces

Each counterexample is replayed (check.judging.anatomy) to show it in the readable view:
a seeded bug's first, else the first given.
Rule kept: thin; bad input (an unreadable or unrecognised file, a counterexample of
another version) is one line and exit 2, before anything is written; a symbolic link
where a file goes is replaced, never written through.  Must not be
added: layout (report.page's).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from faultline import __version__
from faultline.check.judging.anatomy import Anatomy, dissect
from faultline.cli import counterexample
from faultline.cli.common import BadInput, _out, _reported, _say
from faultline.kern.mutants import MUTANTS
from faultline.report.html import terminal
from faultline.report.page import ReportData, Shown, render_page
from faultline.report.page_sim import curves
from faultline.report.sim_plots import write_sim_plots
from faultline.report.tables import first_sentence
from faultline.report.trace_view import render_counterexample
from faultline.report.words import plural
from faultline.rt.trace import Event, RunRecord
from faultline.scenario import loader
from faultline.scenario.spec import Scenario

DEFAULT_OUT = Path("faultline-report")
VIEW_WIDTH = 120               # columns of the counterexample view on the page
PAGE = "index.html"
_KINDS = "a check --json, mutants --json or sim --json output, a counterexample file " \
         "(check --trace-out), a Perfetto trace or a flame graph (sim --out)"


@dataclass
class Saved:
    """The results given, by kind, each with the file it came from."""

    checks: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    mutants: list[tuple[Path, list[dict[str, Any]]]] = field(default_factory=list)
    points: list[tuple[Path, list[dict[str, Any]]]] = field(default_factory=list)
    records: list[tuple[Path, RunRecord]] = field(default_factory=list)
    traces: list[Path] = field(default_factory=list)
    flames: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------- reading

def _expand(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory's JSON files and flame graphs, sorted, at any depth."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and (
                f.suffix == ".json" or (f.suffix == ".svg" and f.name.startswith("flame-"))))
        elif p.is_file():
            out.append(p)
        else:
            raise BadInput(f"{p}: no such file or directory")
    return list(dict.fromkeys(out))


def _is_rows(doc: Any, *keys: str) -> bool:
    return isinstance(doc, list) and bool(doc) and all(
        isinstance(r, dict) and all(k in r for k in keys) for r in doc)


def _read(path: Path, saved: Saved) -> None:
    """Add `path` to `saved` under its kind; BadInput if it is none of them."""
    if path.suffix == ".svg":
        saved.flames.append(path)
        return
    try:
        doc = json.loads(path.read_bytes())
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    except (ValueError, RecursionError):
        raise BadInput(f"{path}: not JSON; expected {_KINDS}") from None
    if isinstance(doc, dict) and "traceEvents" in doc:
        saved.traces.append(path)
    elif isinstance(doc, dict) and "faultline_version" in doc and "schedule" in doc:
        saved.records.append((path, counterexample.load(path)))
    elif isinstance(doc, dict) and _is_rows(doc.get("results"), "scenario", "policy",
                                            "strategy", "verdict", "executions", "steps"):
        saved.checks.append((path, doc))
    elif _is_rows(doc, "mutant", "caught"):
        saved.mutants.append((path, doc))
    elif _is_rows(doc, "workload", "policy", "cpus", "throughput"):
        saved.points.append((path, doc))
    else:
        raise BadInput(f"{path}: not a faultline result; expected {_KINDS}")


def read_results(paths: Sequence[Path]) -> Saved:
    """Every file given (directories expanded), classified and checked."""
    saved = Saved()
    for path in _expand(paths):
        if path.name != PAGE:
            _read(path, saved)
    return saved


# ---------------------------------------------------------------- laying files out

def _place(src: Path, out_dir: Path, sub: str, taken: set[str]) -> str:
    """Copy `src` to out_dir/sub (unless it is there already); its path from the page."""
    name, n = src.name, 1
    while f"{sub}/{name}" in taken:
        n += 1
        name = f"{src.stem}-{n}{src.suffix}"
    rel = f"{sub}/{name}"
    taken.add(rel)
    dest = out_dir / rel
    if not (dest.exists() and dest.resolve() == src.resolve()):
        shutil.copyfile(src, _fresh(dest))
    return rel


def _fresh(path: Path) -> Path:
    """`path`, ready to be written: its directory made, a symbolic link there removed
    (faultline never writes through a link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    return path


def _points(saved: Saved) -> list[dict[str, Any]]:
    """Every point once (the same point given twice counts once)."""
    seen: dict[str, dict[str, Any]] = {}
    for _, rows in saved.points:
        for p in rows:
            seen.setdefault(json.dumps(p, sort_keys=True), p)
    return list(seen.values())


def _sim_files(saved: Saved, points: list[dict[str, Any]], out_dir: Path, taken: set[str],
               data: ReportData) -> None:
    """The plots (drawn again from the points), and each curve's flame graph and trace
    (named as `faultline sim --out` names them), in curve order."""
    plot_docs = [{**p, "policy": key.split(" ", 1)[1]}
                 for key, curve in curves(points).items() for p in curve]
    try:
        written = write_sim_plots(plot_docs, out_dir / "sim")
    except ValueError as e:        # two different points for one curve and CPU count
        raise BadInput(f"the sim points given disagree: {e}") from None
    for path in sorted(written, key=_plot_order):
        workload, what = path.stem.rsplit("-", 1)
        data.plots.append((f"sim/{path.name}", f"{workload}: {_PLOT_CAPTIONS[what]}"))
        taken.add(f"sim/{path.name}")
    by_name = {f.name: f for f in saved.flames} | {f.name: f for f in saved.traces}
    for key, curve in curves(points).items():
        p = curve[-1]
        stem = f"{key.replace(' ', '-').replace('=', '')}-{p['cpus']}"
        about = f"{key} at {p['cpus']} simulated CPUs"
        if f"flame-{stem}.svg" in by_name:
            data.flames.append((_place(by_name.pop(f"flame-{stem}.svg"), out_dir, "sim",
                                       taken), about))
        if f"trace-{stem}.json" in by_name:
            data.traces.append((_place(by_name.pop(f"trace-{stem}.json"), out_dir, "sim",
                                       taken), f"{about}, the first 200 us, one track per CPU"))
    for name, f in sorted(by_name.items()):     # of points not given: shown all the same
        target = data.flames if f.suffix == ".svg" else data.traces
        target.append((_place(f, out_dir, "sim", taken), name))


# report.sim_plots' charts (<workload>-<chart>.png), in page order: the two narrow ones
# side by side, then the two-panel one.
_PLOT_CAPTIONS = {"throughput": "throughput as CPUs are added",
                  "locks": "which lock classes the waiting is on",
                  "waiting": "time asleep off CPU and spinning on locks"}


def _plot_order(path: Path) -> tuple[str, int]:
    workload, what = path.stem.rsplit("-", 1)
    return workload, list(_PLOT_CAPTIONS).index(what)


# ---------------------------------------------------------------- counterexamples

def _scenario(record: RunRecord) -> Scenario | None:
    """The scenario a record names: its file if it is still there, else the catalog's."""
    if record.scenario_path and Path(record.scenario_path).is_file():
        return loader.load_path(record.scenario_path)
    if record.scenario in loader.catalog_names():
        return loader.load_scenario(record.scenario)
    return None


def _from_check(doc: dict[str, Any]) -> list[RunRecord]:
    """The counterexamples a check document carries (schedule and violation only)."""
    out = []
    for r in doc["results"]:
        ce = r.get("counterexample")
        if r["verdict"] == "violation" and isinstance(ce, dict) and "schedule" in ce:
            out.append(RunRecord(scenario=str(r["scenario"]), policy=str(r["policy"]),
                                 strategy=str(r["strategy"]), seed=ce.get("seed"),
                                 schedule=str(ce["schedule"]), verdict="violation",
                                 violation=ce.get("violation"), version=__version__,
                                 options={"every_step": True}))
    return out


def _about(record: RunRecord, s: Scenario) -> tuple[str, str]:
    """A title, and what the run shows: the seeded bug's race, or the scenario's."""
    cls = MUTANTS.get(record.policy)
    if cls is None:
        return f"{s.name} under {record.policy}", first_sentence(s.description)
    race = " ".join((cls.__doc__ or "").split())
    return (f"{cls.name} on {s.name}",
            f"{cls.name}: D51474 with one protection removed ({cls.breaks}). {race} "
            f"The scenario: {first_sentence(s.description)}")


def _replay_file(path: Path | None, record: RunRecord, events: list[Event], out_dir: Path,
                 taken: set[str]) -> str:
    """The counterexample's file beside the page: the one given, or one written now."""
    if path is not None:
        return _place(path, out_dir, "replay", taken)
    rel = f"replay/{record.scenario}-{record.policy}.json"
    taken.add(rel)
    _fresh(out_dir / rel).write_text(counterexample.dump(record, events))
    return rel


def _counterexamples(saved: Saved, out_dir: Path, taken: set[str], data: ReportData,
                     out: Console) -> None:
    """Replay files for every counterexample given or carried by a check result, and
    the readable view of one: a seeded bug's first, else the first."""
    todo = [(path, r) for path, r in saved.records]
    todo += [(None, r) for _, doc in saved.checks for r in _from_check(doc)]
    seen: set[tuple[str, str, str]] = set()
    replayed: list[tuple[RunRecord, Scenario, Anatomy, str]] = []
    for path, record in todo:
        key = (record.scenario, record.policy, record.schedule)
        s = _scenario(record)
        if s is None:
            _say(out, f"note: cannot replay {record.scenario}: not in the catalog and no "
                      f"scenario file; pass its counterexample file", "yellow")
        if key in seen or s is None:
            continue
        seen.add(key)
        record = dataclasses.replace(record, scenario_path=record.scenario_path or s.source)
        anatomy = dissect(s, record, every_step=bool(record.options.get("every_step", True)))
        rel = _replay_file(path, record, anatomy.result.events, out_dir, taken)
        title, _ = _about(record, s)
        kind = (record.violation or {}).get("kind", "no violation")
        data.replays.append((rel, f"{title} ({kind})"))
        replayed.append((record, s, anatomy, rel))
    if not replayed:
        return
    record, s, anatomy, rel = next((r for r in replayed if r[0].policy in MUTANTS),
                                   replayed[0])
    processes = {t.name: t.process for t in s.threads}
    view = terminal(lambda c: render_counterexample(
        c, record, anatomy.result.events, f"faultline replay {rel}", processes=processes,
        command="counterexample", wrap=True, anatomy=anatomy), VIEW_WIDTH)
    data.shown = Shown(*_about(record, s), view, rel)


# ---------------------------------------------------------------- the page

def build_report(paths: Sequence[Path], out_dir: Path, out: Console | None = None) -> Path:
    """Lay the results in `paths` out in `out_dir` and write its index.html."""
    out = out or _out()
    saved = read_results(paths)
    make_dirs(out_dir)
    data = ReportData(root=out_dir)
    taken: set[str] = set()
    for path, doc in saved.checks:
        data.sources.append(_place(path, out_dir, "results", taken))
        data.checks.append(doc)
    for path, rows in saved.mutants:
        data.sources.append(_place(path, out_dir, "results", taken))
        data.mutants += rows
    points = _points(saved)
    for path, _ in saved.points:
        data.sources.append(_place(path, out_dir, "sim", taken))
    data.points = points
    if points:
        _sim_files(saved, points, out_dir, taken, data)
    else:
        data.flames = [(_place(f, out_dir, "sim", taken), f.name) for f in saved.flames]
        data.traces = [(_place(f, out_dir, "sim", taken), f.name) for f in saved.traces]
    _counterexamples(saved, out_dir, taken, data, out)
    page = out_dir / PAGE
    _fresh(page).write_text(render_page(data))
    return page


def check_out_dir(path: Path, force: bool) -> None:
    """--out: a directory or nothing yet, whose index.html, if any, is a report."""
    if path.exists() and not path.is_dir():
        raise BadInput(f"--out: {path} exists and is not a directory")
    page = path / PAGE
    if page.is_symlink():
        raise BadInput(f"--out: {page} is a symbolic link; faultline never writes through one")
    if page.is_file() and not force and "<title>faultline report</title>" not in \
            page.read_text(errors="replace")[:2000]:
        raise BadInput(f"--out: {page} exists and is not a faultline report (--force "
                       f"replaces it)")


def make_dirs(*paths: Path) -> None:
    """Make the output directories; one that cannot be made is bad input."""
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInput(f"--out: cannot create {path}: {e.strerror or e}") from None


def report(
    results: Annotated[list[Path], typer.Argument(
        metavar="RESULTS...", help="Saved results: check --json, mutants --json and sim "
                                   "--json outputs, counterexample files, a sim --out "
                                   "directory, or a report directory (faultline tour's).")],
    out_dir: Annotated[Path, typer.Option(
        "--out", help="Write index.html and the files it links to here.")] = DEFAULT_OUT,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an index.html that is not a faultline report.")] = False,
) -> None:
    """Build the report page (index.html) from saved results."""
    out = _out()
    with _reported():
        check_out_dir(out_dir, force)
        saved_from = _expand(results)
        page = build_report(saved_from, out_dir, out)
        _say(out, f"wrote {page} from {plural(len(saved_from), 'file')} (open it in a "
                  f"browser; it needs no network)")
