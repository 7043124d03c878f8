"""Tables for `faultline sim` and `faultline calibrate`: curves, waiting, locks, fits.

What lives here: `series_of` (how points group into curves: a policy, and the pv-lock
layout when a sweep varies it), `sweep_table` (one row per CPU count: throughput,
speedup, efficiency, off-CPU and spin shares, the lock waited on most), `lock_table`
(lock_profiling's columns for one point), `usl_table` (Universal Scalability Law fit
of each curve) and `shift_lines` (the bottleneck at the largest CPU count, per curve).
Rule kept: presentation only; every number comes from a SimPoint.
Must not be added: running points, or formatting that hides which point a figure is from.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from faultline.report.fit import Col, FitTable
from faultline.sim.simulate import SimPoint
from faultline.sim.usl import fit_usl

__all__ = ["lock_table", "series_of", "shift_lines", "sweep_table", "usl_table"]


def series_of(points: Sequence[SimPoint]) -> dict[str, list[SimPoint]]:
    """Curves in first-seen order: key 'policy', or 'policy pv=LAYOUT' when the points
    use more than one pv-lock layout; each curve sorted by CPU count."""
    layouts = {p.config.pv_locks for p in points}
    out: dict[str, list[SimPoint]] = {}
    for p in points:
        key = p.config.policy + (f" pv={p.config.pv_locks}" if len(layouts) > 1 else "")
        out.setdefault(key, []).append(p)
    for curve in out.values():
        curve.sort(key=lambda p: p.config.cpus)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def sweep_table(points: Sequence[SimPoint]) -> FitTable:
    """One row per (curve, CPU count); on a narrow terminal the shares of waiting go
    first, then efficiency and speedup."""
    unit = points[0].unit if points else "op"
    cols = [Col("curve"), Col("CPUs", justify="right"), Col(f"{unit}s/s", justify="right"),
            Col("speedup", drop=5, justify="right"), Col("efficiency", drop=4, justify="right"),
            Col("off-CPU", drop=3, justify="right"), Col("of it vmpfw", drop=1, justify="right"),
            Col("spinning", drop=2, justify="right"), Col("most lock wait", wrap=True)]
    rows = []
    for key, curve in series_of(points).items():
        base = next((p.throughput for p in curve if p.config.cpus == 1), None)
        for p in curve:
            speed = p.throughput / base if base else None
            rows.append([key, str(p.config.cpus), f"{p.throughput:,.0f}",
                         "-" if speed is None else f"{speed:.2f}",
                         "-" if speed is None else _pct(speed / p.config.cpus),
                         _pct(sum(p.offcpu_share.values())),
                         _pct(p.offcpu_share.get("vmpfw", 0.0)),
                         _pct(sum(p.spin_share.values())), p.top_lock or "-"])
    return FitTable(cols, rows, title=f"{points[0].config.workload if points else ''}: "
                                      f"{unit}s per simulated second", title_justify="left")


def lock_table(p: SimPoint, top: int = 8) -> FitTable:
    """The lock profile of one point, most wait first (lock_profiling's columns); on a
    narrow terminal the maximum wait goes first, then the counts."""
    c = p.config
    total = sum(r["wait_ns"] for r in p.lock_profile) or 1
    cols = [Col("lock class", wrap=True), Col("acquisitions", drop=3, justify="right"),
            Col("contended", drop=2, justify="right"),
            Col("total wait (us)", justify="right"),
            Col("max wait (us)", drop=1, justify="right"),
            Col("share of wait", justify="right")]
    rows = [[r["class"], f"{r['acquisitions']:,}", f"{r['contended']:,}",
             f"{r['wait_ns'] / 1000:,.1f}", f"{r['max_wait_ns'] / 1000:,.1f}",
             _pct(r["wait_ns"] / total)] for r in p.lock_profile[:top]]
    return FitTable(cols, rows, title=f"lock profile: {c.workload} {c.policy} "
                                      f"pv={c.pv_locks} at {c.cpus} CPUs",
                    title_justify="left")


def usl_table(points: Sequence[SimPoint]) -> Table | None:
    """sigma (contention), kappa (coherency) and N_max of each curve with a 1-CPU point
    and at least three CPU counts; None if no curve can be fitted."""
    t = Table(title="USL fit: sigma contention, kappa coherency", title_justify="left",
              caption="C(N) = N / (1 + sigma (N-1) + kappa N (N-1))", caption_justify="left")
    for col in ("curve", "sigma", "kappa", "N_max", "R^2"):
        t.add_column(col, justify="left" if col == "curve" else "right")
    rows = 0
    for key, curve in series_of(points).items():
        fit = fit_usl([(p.config.cpus, p.throughput) for p in curve])
        if fit is None:
            continue
        rows += 1
        t.add_row(Text(key), f"{fit.sigma:.4f}", f"{fit.kappa:.6f}",
                  "-" if fit.n_max is None else f"{fit.n_max:.0f}", f"{fit.r2:.3f}")
    return t if rows else None


def shift_lines(points: Sequence[SimPoint]) -> list[str]:
    """Per curve, at its largest CPU count: where the time went and the top lock."""
    lines = []
    for key, curve in series_of(points).items():
        p = curve[-1]
        off = sorted(p.offcpu_share.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
        spin = sorted(p.spin_share.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
        lines.append(
            f"{key} at {p.config.cpus} CPUs: off-CPU "
            + (", ".join(f"{k} {_pct(v)}" for k, v in off) or "none")
            + "; spinning " + (", ".join(f"{k} {_pct(v)}" for k, v in spin) or "none")
            + f"; most lock wait: {p.top_lock or 'none'}")
    return lines
