"""Charts of a contention-simulator sweep: throughput, waiting and lock ranking as PNGs.

What lives here: `write_sim_plots`, which takes the sweep's points (one per workload,
policy and CPU count) and writes three PNGs per workload: `<workload>-throughput.png`
(operations per simulated second against simulated CPUs, one line per policy, dashed
linear scaling from each policy's 1-CPU point), `<workload>-waiting.png` (off-CPU and
spinning shares of CPU time against simulated CPUs, the "vmpfw" channel drawn on its own)
and `<workload>-locks.png` (each lock class's share of lock waiting at the largest CPU
count, policies side by side, top 8 classes).

Rule kept: plotting only, on matplotlib's object API with the Agg canvas: no pyplot, so
no global backend switch and no figure left open; no dates or version strings in the
files, so the same points give the same bytes.  Must not be added: running the simulator,
fitting or aggregating repeated runs (one point per workload, policy and CPU count).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["TOP_LOCKS", "VMPFW", "write_sim_plots"]

TOP_LOCKS = 8
"""How many lock classes the locks chart ranks."""
VMPFW = "vmpfw"
"""The off-CPU wait channel of a fault waiting for a busy page, drawn on its own."""

_DPI = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

# (policy, cpus) -> point, per workload
_Series = dict[str, dict[int, Mapping[str, Any]]]


def _file_stem(workload: str) -> str:
    """A file-name-safe stem; a name that had to change gets a crc32 suffix to stay unique."""
    safe = _UNSAFE.sub("_", workload) or "_"
    if safe != workload:
        safe += f"-{zlib.crc32(workload.encode('utf-8', 'surrogatepass')):08x}"
    return safe


def _group(points: Sequence[Mapping[str, Any]]) -> dict[str, _Series]:
    """workload -> policy -> cpus -> point; a repeated (workload, policy, cpus) is an error."""
    out: dict[str, _Series] = {}
    for p in points:
        w, pol, n = str(p["workload"]), str(p["policy"]), int(p["cpus"])
        per_cpu = out.setdefault(w, {}).setdefault(pol, {})
        if n in per_cpu:
            raise ValueError(f"two points for workload {w!r}, policy {pol!r}, {n} CPUs")
        per_cpu[n] = p
    return out


def _colours(series: _Series) -> dict[str, str]:
    """One colour per policy, by policy name order."""
    return {pol: f"C{i % 10}" for i, pol in enumerate(sorted(series))}


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return path


def _throughput(workload: str, series: _Series, path: Path) -> Path:
    fig = _new_figure(8, 5)
    ax = fig.add_subplot()
    colours = _colours(series)
    for pol in sorted(series):
        cpus = sorted(series[pol])
        ax.plot(cpus, [float(series[pol][n]["throughput"]) for n in cpus], marker="o",
                color=colours[pol], label=pol)
        if 1 in series[pol]:
            one = float(series[pol][1]["throughput"])
            ax.plot(cpus, [one * n for n in cpus], linestyle="--", linewidth=1,
                    color=colours[pol], alpha=0.6, label=f"{pol}: linear from 1 CPU")
    ax.set_title(f"{workload}: throughput as CPUs are added")
    ax.set_xlabel("simulated CPUs")
    ax.set_ylabel("operations per simulated second")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def _share_total(point: Mapping[str, Any], key: str) -> float:
    return 100 * sum(float(v) for v in (point.get(key) or {}).values())


def _waiting(workload: str, series: _Series, path: Path) -> Path:
    fig = _new_figure(12, 5)
    off_ax, spin_ax = fig.subplots(1, 2, sharey=True)
    colours = _colours(series)
    for pol in sorted(series):
        cpus = sorted(series[pol])
        pts = [series[pol][n] for n in cpus]
        off_ax.plot(cpus, [_share_total(p, "offcpu_share") for p in pts], marker="o",
                    color=colours[pol], label=f"{pol}: all off-CPU waits")
        if any(VMPFW in (p.get("offcpu_share") or {}) for p in pts):
            vmpfw = [100 * float((p.get("offcpu_share") or {}).get(VMPFW, 0.0)) for p in pts]
            off_ax.plot(cpus, vmpfw, marker="x", linestyle=":", linewidth=2,
                        color=colours[pol], label=f"{pol}: {VMPFW} (busy page) only")
        spin_ax.plot(cpus, [_share_total(p, "spin_share") for p in pts], marker="o",
                     color=colours[pol], label=f"{pol}: all lock spinning")
    off_ax.set_title("sleeping off-CPU")
    spin_ax.set_title("spinning on locks")
    off_ax.set_ylabel("percent of simulated CPU time")
    for ax in (off_ax, spin_ax):
        ax.set_xlabel("simulated CPUs")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    fig.suptitle(f"{workload}: where CPU time goes waiting")
    return _save(fig, path)


def _lock_shares(point: Mapping[str, Any]) -> dict[str, float]:
    """Lock class -> share of this point's total lock wait (empty if there was none)."""
    waits = {str(k): float(v) for k, v in (point.get("lock_wait_ns") or {}).items() if v > 0}
    total = sum(waits.values())
    return {k: v / total for k, v in waits.items()} if total > 0 else {}


def _locks(workload: str, series: _Series, path: Path) -> Path:
    fig = _new_figure(9, 6)
    ax = fig.add_subplot()
    colours = _colours(series)
    policies = sorted(series)
    at = {pol: max(series[pol]) for pol in policies}
    shares = {pol: _lock_shares(series[pol][at[pol]]) for pol in policies}
    best: dict[str, float] = {}
    for per_class in shares.values():
        for cls, s in per_class.items():
            best[cls] = max(best.get(cls, 0.0), s)
    top = sorted(best, key=lambda c: (-best[c], c))[:TOP_LOCKS]
    cpus_text = ", ".join(sorted({str(n) for n in at.values()}, key=int))
    ax.set_title(f"{workload}: share of lock waiting per lock class at {cpus_text} "
                 "simulated CPUs")
    if not top:
        ax.text(0.5, 0.5, "no lock waiting recorded", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return _save(fig, path)
    bar_h = 0.8 / len(policies)
    rows = range(len(top))
    for i, pol in enumerate(policies):
        ys = [r - 0.4 + bar_h * (i + 0.5) for r in rows]
        vals = [100 * shares[pol].get(cls, 0.0) for cls in top]
        bars = ax.barh(ys, vals, height=bar_h, color=colours[pol],
                       label=f"{pol} ({at[pol]} CPUs)")
        ax.bar_label(bars, fmt="%.1f%%", padding=2, fontsize="x-small")
    ax.set_yticks(list(rows), top)
    ax.invert_yaxis()
    ax.set_xlabel("percent of all lock waiting (spinning and sleeping)")
    ax.set_xlim(0, 110)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def write_sim_plots(points: Sequence[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """Write the throughput, waiting and locks PNGs of every workload into `out_dir`.

    Each point has "workload", "policy", "cpus", "throughput" and optionally
    "offcpu_share", "spin_share" (name -> share of CPU time) and "lock_wait_ns" (lock class
    -> ns).  Returns the paths written, sorted; no points, no files.
    """
    by_workload = _group(points)
    if not by_workload:
        return []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for workload in sorted(by_workload):
        series = by_workload[workload]
        stem = _file_stem(workload)
        written.append(_throughput(workload, series, out_dir / f"{stem}-throughput.png"))
        written.append(_waiting(workload, series, out_dir / f"{stem}-waiting.png"))
        written.append(_locks(workload, series, out_dir / f"{stem}-locks.png"))
    return sorted(written)
