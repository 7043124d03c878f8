"""The report page, index.html: what faultline found and measured, on one self-contained page.

What lives here: `ReportData` (saved results: `check --json` documents, `mutants --json`
rows, `sim` points, the counterexample shown and the files beside the page) and
`render_page`, which lays them out as sections:

    header       what was run, and the verdict in three lines
    verdicts     each scenario's verdict per policy, against its expectation
    counterexample  one race found and explained: the readable view, how to replay it
    exploration  how much DPOR explored: bound, exhaustive or out of budget, and why
    mutants      each seeded bug: caught by which scenario, or argued not a bug
    contention / lock-profile / flame-graph   (report.page_sim)
    files        Perfetto traces, replay files, the results the page was built from

A section whose results were not given still appears, saying which command makes them.
Rule kept: a pure function of its input (no clock, no version beyond the results'), every
string escaped (report.html); pictures embedded, so the page opens anywhere without a
network.  Must not be added: reading or classifying result files, running anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faultline.check.explore import ScenarioResult
from faultline.report import page_sim
from faultline.report.html import Html, el, esc, join, link, table
from faultline.report.tables import is_expected, not_reproduced
from faultline.report.verdicts import how_far
from faultline.report.words import plural

__all__ = ["SECTIONS", "ReportData", "Shown", "render_page"]

SECTIONS = ("verdicts", "counterexample", "exploration", "mutants", "contention",
            "lock-profile", "flame-graph", "files")
"""The id of each section, in page order (a test opens each)."""

Doc = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Shown:
    """The counterexample the page explains."""

    title: str              # "rename-sbusied on cow-rename"
    about: str              # what the policy removes, or what the scenario races
    view: Html              # the readable view (report.violation_view), as a terminal shows it
    replay: str             # its replay file, relative to the page


@dataclass(slots=True)
class ReportData:
    """Everything on the page; every path is relative to `root`, the page's directory."""

    root: Path
    sources: list[str] = field(default_factory=list)      # result files the page is from
    checks: list[Doc] = field(default_factory=list)       # `check --json` documents
    mutants: list[Doc] = field(default_factory=list)      # `mutants --json` rows
    points: list[Doc] = field(default_factory=list)       # `sim --json` points
    shown: Shown | None = None
    replays: list[tuple[str, str]] = field(default_factory=list)   # (file, what it is)
    plots: list[tuple[str, str]] = field(default_factory=list)     # (PNG, caption)
    flames: list[tuple[str, str]] = field(default_factory=list)    # (SVG, caption)
    traces: list[tuple[str, str]] = field(default_factory=list)    # (Perfetto JSON, caption)


# ---------------------------------------------------------------- check results

def _result(doc: Doc) -> ScenarioResult:
    """A `check --json` result back as a ScenarioResult (no wall time, no trace)."""
    return ScenarioResult(
        scenario=str(doc["scenario"]), policy=str(doc["policy"]),
        strategy=str(doc["strategy"]), verdict=str(doc["verdict"]),
        executions=int(doc["executions"]), steps=int(doc["steps"]), seconds=0.0,
        coverage=dict(doc.get("coverage") or {}), expected=doc.get("expected"),
        exhaustive=bool(doc.get("exhaustive")), preemption_bound=doc.get("preemption_bound"),
        sleep_blocked=int(doc.get("sleep_blocked") or 0), bound_reason=doc.get("bound_reason"),
        cache_hits=doc.get("cache_hits"), subtrees=doc.get("subtrees"))


def _results(d: ReportData) -> list[tuple[ScenarioResult, int | None]]:
    """Every result with its check's execution budget (`max_executions`, if saved)."""
    return [(_result(r), c.get("max_executions")) for c in d.checks for r in c["results"]]


def _verdict(r: ScenarioResult) -> Html:
    cls = "pass" if r.verdict == "pass" else "violation"
    if not is_expected(r):
        cls = "differs"
    return el("span", r.verdict, class_=cls)


def _expectation(r: ScenarioResult) -> str:
    if not_reproduced(r):
        return f"{r.expected} (a known finding this search did not reach)"
    if r.expected == "violation" and r.verdict == "violation":
        return "violation: a race the model found in FreeBSD (docs/findings.md)"
    if not is_expected(r):
        return f"{r.expected}: DIFFERS"
    return r.expected or "-"


def _policy_column(results: list[tuple[ScenarioResult, int | None]]) -> bool:
    """Whether the tables need a policy column: more than one policy was checked."""
    return len({r.policy for r, _ in results}) > 1


def _verdicts(d: ReportData) -> Html:
    results = _results(d)
    if not results:
        return _missing("faultline check --all --json > check.json")
    policy = _policy_column(results)
    rows = [[r.scenario, *([r.policy] if policy else []), _verdict(r), _expectation(r)]
            for r, _ in results]
    only = "" if policy else f" under {results[0][0].policy}"
    return table(["scenario", *(["policy"] if policy else []), f"verdict{only}", "expected"],
                 rows)


def _exploration(d: ReportData) -> Html:
    results = [(r, b) for r, b in _results(d) if r.strategy == "dpor"]
    if not results:
        return _missing("faultline check --all --strategy dpor --json > check.json")
    exhaustive = [r.scenario for r, _ in results if r.exhaustive]
    cut = [r.scenario for r, _ in results if not r.exhaustive and r.verdict == "pass"]
    stopped = [r.scenario for r, _ in results if r.verdict == "violation"]
    lines = [f"Exhaustive (every trace, within the bound): {len(exhaustive)}."]
    if cut:
        lines.append(f"Not exhaustive (out of budget): {len(cut)}; raise the budget, or run "
                     f"faultline check NAME --strategy dpor without one.")
    if stopped:
        lines.append(f"Stopped at a violation: {', '.join(stopped)}.")
    policy = _policy_column(results)
    rows = [[r.scenario, *([r.policy] if policy else []), _bound(r), how_far(r, b),
             f"{r.executions:,}", f"{r.steps:,}", r.bound_reason or "-"] for r, b in results]
    first = 2 if policy else 1
    return join([el("p", " ".join(lines)),
                 table(["scenario", *(["policy"] if policy else []), "bound", "explored",
                        "executions", "steps", "why this bound"], rows,
                       numeric=(first + 2, first + 3), class_="wide")])


def _bound(r: ScenarioResult) -> str:
    if r.preemption_bound is None:
        return "none (every interleaving)"
    return plural(r.preemption_bound, "preemption")


# ---------------------------------------------------------------- seeded bugs

def _mutant_verdict(row: Doc) -> Html:
    if row.get("caught"):
        return el("span", "caught", class_="pass")
    if row.get("not_a_bug"):
        unexplored = "; not explored in this run" if row.get("explored") is False else ""
        return el("span", f"not a bug (argued{unexplored})", class_="argued")
    return el("span", "SURVIVED", class_="differs")


def _mutants(d: ReportData) -> Html:
    if not d.mutants:
        return _missing("faultline mutants --json > mutants.json")
    caught = sum(bool(r.get("caught")) for r in d.mutants)
    argued = sum(bool(r.get("not_a_bug")) and not r.get("caught") for r in d.mutants)
    budget = d.mutants[0].get("max_executions")
    within = f", each probe explored for at most {plural(budget, 'execution')}" \
        if budget else ""
    intro = (f"{caught} of {plural(len(d.mutants), 'seeded bug')} caught, {argued} argued "
             f"not a bug (the argument is in each variant's docstring, kern/mutants.py; "
             f"docs/mutants.md){within}. Each is D51474 with one protection removed.")

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:,}"
    rows = [[el("code", str(r["mutant"])), _mutant_verdict(r),
             ", ".join(r.get("scenarios") or []) or "-", r.get("violation_kind") or "-",
             num(r.get("executions_to_violation")), num(r.get("counterexample_steps")),
             str(r.get("breaks") or "")] for r in d.mutants]
    return join([el("p", intro),
                 table(["seeded bug", "verdict", "caught by", "violation", "executions",
                        "ce steps", "protection removed"], rows, numeric=(4, 5),
                       class_="wide")])


# ---------------------------------------------------------------- the counterexample

def _counterexample(d: ReportData) -> Html:
    s = d.shown
    if s is None:
        return _missing("faultline check SCENARIO --policy MUTANT --strategy dpor "
                        "--trace-out ce.json")
    return join([el("h3", s.title), el("p", s.about), s.view,
                 el("p", [Html("Replay it step by step: "),
                          el("code", f"faultline replay {s.replay}"),
                          Html(" ("), link(s.replay, "the counterexample file"),
                          Html("; <code>--full</code> shows every step).")])])


# ---------------------------------------------------------------- files

def _files(d: ReportData) -> Html:
    items: list[Html] = []
    for path, what in d.traces:
        items.append(el("li", [link(path, path), Html(": "), esc(what),
                               Html(". Open it in Perfetto (ui.perfetto.dev, "
                                    "<em>Open trace file</em>) or chrome://tracing.")]))
    for path, what in d.replays:
        items.append(el("li", [link(path, path), Html(": "), esc(what), Html(" ("),
                               el("code", f"faultline replay {path}"), Html(")")]))
    for path, what in d.flames:
        items.append(el("li", [link(path, path), Html(": "), esc(what),
                               Html(" (opened alone, each frame names its time)")]))
    for path in d.sources:
        items.append(el("li", [link(path, path), Html(": saved results")]))
    if not items:
        return _missing("faultline tour")
    linked = [*d.sources, *(p for p, _ in (*d.traces, *d.replays, *d.flames))]
    rebuild = " ".join(sorted({p.split("/")[0] for p in linked}))
    return join([el("ul", items),
                 el("p", [Html("Rebuild this page from the files beside it, in this "
                               "directory: "),
                          el("code", f"faultline report {rebuild} --out DIR")])])


# ---------------------------------------------------------------- the page

def _missing(command: str) -> Html:
    return el("p", [Html("Not in these results. "), el("code", command),
                    Html(" makes them; pass the file to <code>faultline report</code>.")],
              class_="missing")


def _headline(d: ReportData) -> Html:
    lines = []
    results = [r for r, _ in _results(d)]
    if results:
        passed = sum(r.verdict == "pass" for r in results)
        found = sum(r.verdict == "violation" and r.expected == "violation" for r in results)
        differs = sum(not is_expected(r) for r in results)
        policies = ", ".join(sorted({r.policy for r in results}))
        lines.append(f"Checked {plural(len(results), 'scenario run')} under {policies}: "
                     f"{passed} pass, {found} show a known race in FreeBSD, "
                     f"{differs} differ from what the scenario expects.")
    if d.mutants:
        caught = sum(bool(r.get("caught")) for r in d.mutants)
        argued = sum(bool(r.get("not_a_bug")) and not r.get("caught") for r in d.mutants)
        survived = len(d.mutants) - caught - argued
        lines.append(f"Seeded bugs: {caught} of {len(d.mutants)} caught, {argued} argued "
                     f"not a bug, {survived} survived.")
    lines += page_sim.headline(d.points)
    return el("ul", [el("li", line) for line in lines]) if lines else Html("")


_TITLES = {
    "verdicts": "Verdicts: is D51474 correct on every scenario?",
    "counterexample": "A seeded race, found and explained",
    "exploration": "How much was explored",
    "mutants": "Seeded bugs: would the checker notice?",
    "contention": "Contention: the doexec exec storm, xbusy (before) and sbusy (D51474)",
    "lock-profile": "Lock profile, before and after",
    "flame-graph": "Flame graphs: where simulated CPU time goes",
    "files": "Files: traces, replays, results",
}


def render_page(d: ReportData) -> str:
    """index.html for `d`."""
    bodies = {"verdicts": _verdicts(d), "counterexample": _counterexample(d),
              "exploration": _exploration(d), "mutants": _mutants(d),
              "contention": page_sim.contention(d.root, d.points, d.plots) if d.points
              else _missing("faultline sim doexec --out DIR (then pass DIR)"),
              "lock-profile": page_sim.lock_profiles(d.points) if d.points
              else _missing("faultline sim doexec --json > points.json"),
              "flame-graph": page_sim.flames(d.root, d.flames) if d.flames
              else _missing("faultline sim doexec --out DIR (then pass DIR)"),
              "files": _files(d)}
    nav = el("nav", [link(f"#{k}", _TITLES[k].split(":")[0]) for k in SECTIONS])
    sections = [el("section", [el("h2", _TITLES[k]), bodies[k]], id=k) for k in SECTIONS]
    body = join([el("h1", "faultline report"),
                 el("p", "FreeBSD's vm_fault path as changed by D51474 (shared-busy soft "
                         "faults), checked for races and simulated under contention."),
                 _headline(d), nav, *sections])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\"><title>faultline report</title>"
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1f2328; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em;
margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num, th.num { text-align: right; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
table.wide { width: 100%; } table.wide td:last-child { min-width: 24em; }
.pass { color: #1a7f37; } .violation { color: #b35900; font-weight: 600; }
.differs { color: #cf222e; font-weight: 700; } .argued { color: #6e7781; }
.missing { color: #6e7781; font-style: italic; }
pre.term { background: #f6f8fa; border: 1px solid #d0d7de; padding: .8em; overflow-x: auto;
           font: 12px/1.3 ui-monospace, monospace; }
td:first-child, p code, td code { white-space: nowrap; }
img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
figure { margin: .5em 0; } figcaption { color: #57606a; font-size: 13px; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.plots figure { flex: 1 1 480px; min-width: 0; } .plots figure.wide { flex-basis: 100%; }
.pair { display: flex; flex-wrap: wrap; gap: 1.5em; }
code { font-family: ui-monospace, monospace; background: #f6f8fa; padding: 0 .2em; }
"""
