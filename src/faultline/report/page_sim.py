"""The simulator's sections of the report page: the sweep, the plots, the lock profiles.

What lives here: `headline` (a line per curve at its largest CPU count), `contention`
(the sweep table of each workload and its PNG plots), `lock_profiles` (lock_profiling's
columns for each curve's largest point, side by side: xbusy before D51474, sbusy after)
and `flames` (the flame graphs, embedded).  Every figure comes from a saved point
(`SimPoint.to_json`), so a page built from `sim --json` output shows the same numbers
as `faultline sim` printed.

Each function takes at least one point or graph (report.page says when there are none).
Rule kept: presentation of saved points only; pictures are embedded (report.html.image).
Must not be added: running the simulator or drawing plots (report.sim_plots draws them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from faultline.report.html import Html, el, esc, image, join, link, table

__all__ = ["contention", "curves", "flames", "headline", "lock_profiles"]

Point = Mapping[str, Any]
TOP_LOCKS = 8                 # lock classes shown per profile


def curves(points: Sequence[Point]) -> dict[str, list[Point]]:
    """Curves in first-seen order, keyed 'workload policy' (and 'pv=LAYOUT' when the
    points of a workload use more than one pv-lock layout), each sorted by CPU count."""
    layouts: dict[str, set[str]] = {}
    for p in points:
        layouts.setdefault(str(p["workload"]), set()).add(str(p.get("pv_locks", "")))
    out: dict[str, list[Point]] = {}
    for p in points:
        w = str(p["workload"])
        pv = f" pv={p.get('pv_locks')}" if len(layouts[w]) > 1 else ""
        out.setdefault(f"{w} {p['policy']}{pv}", []).append(p)
    for curve in out.values():
        curve.sort(key=lambda p: int(p["cpus"]))
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _off(p: Point) -> float:
    return sum(float(v) for v in (p.get("offcpu_share") or {}).values())


def _spin(p: Point) -> float:
    return sum(float(v) for v in (p.get("spin_share") or {}).values())


def headline(points: Sequence[Point]) -> list[str]:
    """Per curve, at its largest CPU count: throughput, time asleep on a busy page, spinning."""
    lines = []
    for key, curve in curves(points).items():
        p = curve[-1]
        vmpfw = float((p.get("offcpu_share") or {}).get("vmpfw", 0.0))
        lines.append(f"{key} at {p['cpus']} simulated CPUs: {float(p['throughput']):,.0f} "
                     f"{p.get('unit', 'op')}s/s; asleep on a busy page (vmpfw) "
                     f"{_pct(vmpfw)} of CPU time, spinning on locks {_pct(_spin(p))}.")
    return lines


def _sweep(points: Sequence[Point]) -> Html:
    rows = []
    for key, curve in curves(points).items():
        base = next((float(p["throughput"]) for p in curve if int(p["cpus"]) == 1), None)
        for p in curve:
            speed = float(p["throughput"]) / base if base else None
            rows.append([key, str(p["cpus"]), f"{float(p['throughput']):,.0f}",
                         "-" if speed is None else f"{speed:.2f}", _pct(_off(p)),
                         _pct(float((p.get("offcpu_share") or {}).get("vmpfw", 0.0))),
                         _pct(_spin(p)), str(p.get("top_lock") or "-")])
    unit = points[0].get("unit", "op")
    return table(["curve", "CPUs", f"{unit}s/s", "speedup", "off-CPU", "of it vmpfw",
                  "spinning", "most lock wait"], rows, numeric=range(1, 7))


def contention(root: Path, points: Sequence[Point], plots: Sequence[tuple[str, str]]) -> Html:
    """The sweep table and the plots (throughput, off-CPU and spin, lock ranking)."""
    parts: list[str | Html] = [
        el("p", "Each point runs the model's own fault path on N simulated CPUs (a SimPy "
                "timed driver, costs from sim/costs.py, calibrated at one CPU: faultline "
                "calibrate, docs/simulator.md). vmpfw is a fault asleep on a busy page: "
                "the wait D51474's shared busy removes for concurrent read faults."),
        _sweep(points)]
    # The waiting chart has two panels (report.sim_plots): it gets a row of its own.
    figures = [el("figure", [image(root / path, caption), el("figcaption", caption)],
                  class_="wide" if path.endswith("-waiting.png") else None)
               for path, caption in plots]
    return join([*parts, el("div", figures, class_="plots")])


def _profile(key: str, p: Point) -> Html:
    rows = list(p.get("lock_profile") or [])[:TOP_LOCKS]

    def n(r: Mapping[str, Any], key: str) -> int:
        return int(r.get(key) or 0)
    total = sum(n(r, "wait_ns") for r in rows) or 1
    cells = [[str(r.get("class", "?")), f"{n(r, 'acquisitions'):,}", f"{n(r, 'contended'):,}",
              f"{n(r, 'wait_ns') / 1000:,.1f}", f"{n(r, 'max_wait_ns') / 1000:,.1f}",
              _pct(n(r, "wait_ns") / total)] for r in rows]
    return table(["lock class", "acquisitions", "contended", "total wait (us)",
                  "max wait (us)", "share of wait"], cells, numeric=range(1, 6),
                 caption=f"{key} at {p['cpus']} CPUs")


def lock_profiles(points: Sequence[Point]) -> Html:
    """Each curve's largest point's lock profile, side by side."""
    tables = [_profile(key, curve[-1]) for key, curve in curves(points).items()]
    return join([el("p", "lock_profiling's columns at each curve's largest CPU count: "
                         "acquisitions, how many waited, and the time spent waiting "
                         "(spinning and asleep)."),
                 el("div", tables, class_="pair")])


def flames(root: Path, graphs: Sequence[tuple[str, str]]) -> Html:
    """The flame graphs, embedded, each linked to its SVG file (hover shows each frame)."""
    parts: list[str | Html] = [el("p", "Simulated CPU time by model stack at each curve's "
                                       "largest point: spinning on a lock in blue, asleep "
                                       "off CPU in purple, work in warm colours.")]
    for path, caption in graphs:
        parts.append(el("figure", [image(root / path, caption),
                                   el("figcaption", [esc(caption), Html(" ("),
                                                     link(path, "SVG"), Html(")")])]))
    return join(parts)
