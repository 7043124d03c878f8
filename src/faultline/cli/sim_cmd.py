"""The `faultline sim` and `faultline calibrate` commands: the contention simulator.

What lives here: parsing a sweep (workload, CPU counts, policies, pv-lock layouts,
window, seed), running its points (sim.simulate.sweep, over --jobs or --ray as check
does) with a progress bar, and gluing the report pieces: the comparison tables, the
JSON points, and with --out the PNG plots, a flame graph and a Perfetto trace of the
largest point of each curve.  `calibrate` runs the W5 calibration points at one CPU
and prints them beside the performance anchors.
Rule kept: thin; exit 0 when the sweep ran, 2 for bad input, 3 for a model failure
under the timed driver (a bug: the checker should have found it first).
Must not be added: simulation or metric logic.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from faultline.cli.common import _CORES, BadInput, _emit_json, _LazyProgress, _out, _reported, _say
from faultline.kern.policy import all_policies
from faultline.report.fit import Col, FitTable
from faultline.report.flamegraph import flamegraph_svg
from faultline.report.perfetto import chrome_trace
from faultline.report.sim_plots import write_sim_plots
from faultline.report.sim_tables import (
    lock_table,
    series_of,
    shift_lines,
    sweep_table,
    usl_table,
)
from faultline.report.words import plural
from faultline.sim import costs
from faultline.sim.machine import Topology
from faultline.sim.simulate import (
    DEFAULT_CPUS,
    DEFAULT_POLICIES,
    SimConfig,
    SimPoint,
    simulate,
    sweep,
)
from faultline.sim.workloads import PV_LAYOUTS, WORKLOADS

TRACE_WINDOW_NS = 200_000          # the Perfetto trace: the window's first 200 us


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInput(f"{what}: expected integers separated by commas, got {text!r}"
                       ) from None
    if not values:
        raise BadInput(f"{what}: expected at least one value")
    return values


def _names(text: str, known: Sequence[str], what: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    for v in values:
        if v not in known:
            raise BadInput(f"{what}: unknown {v!r}; known: {', '.join(known)}")
    if not values:
        raise BadInput(f"{what}: expected at least one value")
    return list(dict.fromkeys(values))


def sim(
    workload: Annotated[str, typer.Argument(
        help="doexec, page-fault1, page-fault2-shared, page-fault3-shared, "
             "page-fault4-shared or hot-lock.")],
    cpus: Annotated[str, typer.Option(
        help="Simulated CPU counts, comma-separated (1 to 104 on the default "
             "2 x 26 x 2 machine).")] = ",".join(map(str, DEFAULT_CPUS)),
    policy: Annotated[str, typer.Option(
        help="Busy policies, comma-separated: xbusy (before D51474), sbusy (D51474).")
    ] = ",".join(DEFAULT_POLICIES),
    duration_ms: Annotated[float, typer.Option(
        "--duration-ms", min=0.01, help="Measured simulated time per point.")] = 20.0,
    warmup_ms: Annotated[float, typer.Option(
        "--warmup-ms", min=0.0, help="Simulated time run before measuring.")] = 5.0,
    seed: Annotated[int, typer.Option(
        help="Seed: where reservations land, when workers start.")] = 1,
    pv_locks: Annotated[str, typer.Option(
        "--pv-locks", help="pv-list lock layouts, comma-separated: 256 (old hashed array), "
                           "maxcpu (hashed, non-NUMA kernels), superpage (NUMA kernels).")
    ] = "maxcpu",
    shared_binary: Annotated[bool, typer.Option(
        "--shared-binary", help="doexec: every worker executes the same program.")] = False,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Write plots (PNG), points.json, a flame graph (SVG) and a Perfetto "
                      "trace (JSON) of each curve's largest point here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the points as JSON.")
                        ] = False,
    jobs: Annotated[int, typer.Option(
        min=1, help="Worker processes (default: one per core); results do not depend "
                    "on it.")] = _CORES,
    ray: Annotated[str | None, typer.Option(
        "--ray", metavar="ADDRESS",
        help="Run the points as Ray tasks: 'local' or a cluster address (as check).")
    ] = None,
) -> None:
    """Simulate WORKLOAD on N CPUs under each policy: throughput, waiting, locks."""
    out = _out()
    with _reported():
        if workload not in WORKLOADS:
            raise BadInput(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
        top = Topology()
        counts = sorted(set(_int_list(cpus, "--cpus")))
        bad = [n for n in counts if not 1 <= n <= top.ncpus]
        if bad:
            raise BadInput(f"--cpus: {bad[0]} is not between 1 and {top.ncpus} "
                           f"({top.describe()})")
        policies = _names(policy, list(all_policies()), "--policy")
        layouts = _names(pv_locks, PV_LAYOUTS, "--pv-locks")
        if out_dir is not None:
            _writable_dir(out_dir)
        base = dict(workload=workload, duration_ns=int(duration_ms * 1e6),
                    warmup_ns=int(warmup_ms * 1e6), seed=seed, shared_binary=shared_binary,
                    topology=top)
        configs = []
        for pol in policies:
            for layout in layouts:
                for n in counts:
                    largest = n == counts[-1] and out_dir is not None
                    configs.append(SimConfig(
                        policy=pol, cpus=n, pv_locks=layout, profile=largest,
                        trace_window_ns=TRACE_WINDOW_NS if largest else 0, **base))
        if not json_out:
            _say(out, f"faultline sim {workload}: {plural(len(configs), 'point')} "
                      f"({', '.join(policies)} x pv={','.join(layouts)} x CPUs "
                      f"{','.join(map(str, counts))}); {warmup_ms:g} ms warm-up + "
                      f"{duration_ms:g} ms measured per point, seed {seed}; "
                      f"{top.describe()}")
        bar = _LazyProgress(len(configs), not json_out, unit="points")
        bar.describe("simulating")
        t0 = time.perf_counter()
        try:
            points = sweep(configs, jobs, use_ray=ray is not None,
                           ray_address=None if ray in (None, "local") else ray,
                           progress=lambda _pt: bar.advance())
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        docs = [p.to_json() for p in points]
        if out_dir is not None:
            written = write_sim_outputs(out_dir, points, docs)
        if json_out:
            _emit_json(docs)
            return
        out.print(sweep_table(points))
        fits = usl_table(points)
        if fits is not None:
            out.print(fits)
        for curve in series_of(points).values():
            out.print(lock_table(curve[-1], top=6))
        for line in shift_lines(points):
            _say(out, line)
        steps = sum(p.steps for p in points)
        _say(out, f"{plural(len(points), 'point')} in {wall:.1f} s wall "
                  f"({plural(steps, 'model step')}, {steps / wall:,.0f} steps/s over "
                  f"{plural(min(jobs, len(points)), 'job')})")
        if out_dir is not None:
            _say(out, f"wrote {plural(len(written), 'file')} to {out_dir}: "
                      + ", ".join(p.name for p in written))


def _writable_dir(path: Path) -> None:
    """--out: a directory we can write (made if missing), checked before any work."""
    if path.exists() and not path.is_dir():
        raise BadInput(f"--out: {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BadInput(f"--out: cannot create {path}: {e.strerror}") from None
    if not os.access(path, os.W_OK):
        raise BadInput(f"--out: {path} is not writable")


def write_sim_outputs(out_dir: Path, points: Sequence[SimPoint],
                      docs: list[dict[str, Any]]) -> list[Path]:
    """points.json, the plots, and per curve the largest point's flame graph and trace."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    path = out_dir / "points.json"
    path.write_text(json.dumps(docs, indent=2, sort_keys=True) + "\n")
    written.append(path)
    curves = series_of(points)
    plot_docs = []
    for key, curve in curves.items():
        for p in curve:
            plot_docs.append({**p.to_json(), "policy": key})
    written += write_sim_plots(plot_docs, out_dir)
    for key, curve in curves.items():
        p = curve[-1]
        stem = f"{p.config.workload}-{key.replace(' ', '-').replace('=', '')}-{p.config.cpus}"
        if p.folded:
            svg = out_dir / f"flame-{stem}.svg"
            total = sum(p.folded.values())
            svg.write_text(flamegraph_svg(
                p.folded, f"{p.config.workload}, {key}, {p.config.cpus} CPUs",
                subtitle=f"simulated CPU time by model stack: {total / 1e6:,.2f} CPU-ms "
                         f"(spin = on-CPU lock wait, sleep = off-CPU)"))
            written.append(svg)
        if p.trace:
            tr = out_dir / f"trace-{stem}.json"
            tr.write_text(json.dumps(chrome_trace(
                p.trace, f"{p.config.workload} {key} {p.config.cpus} CPUs", p.config.cpus))
                + "\n")
            written.append(tr)
    return written


# ---------------------------------------------------------------- calibrate

# (what, workload, unit, anchor text, low, high) for the one-CPU gates, in us per op.
_GATES = (
    ("exec (doexec, dynamic)", "doexec", "exec",
     "~105 us per pinned static exec (L-exec-2); within 2x", 52.5, 210.0),
    ("anonymous zero-fill fault", "page-fault1", "trap",
     "0.69-1.97 us (L-pft-1 1.11 us, Gorman, Baghdasaryan)", 0.5, 2.0),
    ("soft fault on a resident page (read)", "page-fault4-shared", "trap",
     "0.5-2 us (with prefault of up to 8 neighbours)", 0.5, 2.0),
    ("COW fault from a resident page", "page-fault2-shared", "trap",
     "0.5-2 us", 0.5, 2.0),
)


def calibrate(
    policy: Annotated[str, typer.Option(help="Busy policy to calibrate under.")] = "sbusy",
    duration_ms: Annotated[float, typer.Option(
        "--duration-ms", min=0.1, help="Measured simulated time per point.")] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Cost per exec and per fault at one CPU, beside the published anchors' ranges."""
    out = _out()
    with _reported():
        if policy not in all_policies():
            raise BadInput(f"unknown policy {policy!r}; known: {', '.join(all_policies())}")
        rows = []
        for what, workload, unit, anchor, lo, hi in _GATES:
            cfg = SimConfig(workload, policy, 1, duration_ns=int(duration_ms * 1e6),
                            warmup_ns=1_000_000)
            p = simulate(cfg)
            count = p.ops if unit == "exec" else p.work_count.get("trap", 0)
            us = (duration_ms * 1000) / count if count else float("inf")
            rows.append({"what": what, "workload": workload, "us_per_op": round(us, 3),
                         "count": count, "per": unit, "anchor": anchor, "low_us": lo,
                         "high_us": hi, "within": lo <= us <= hi})
        handoffs = {"smt_ns": costs.HANDOFF_SMT_NS, "socket_ns": costs.HANDOFF_SOCKET_NS,
                    "cross_socket_ns": costs.HANDOFF_CROSS_NS}
        if json_out:
            _emit_json({"policy": policy, "gates": rows, "handoffs": handoffs})
            return
        cols = [Col("operation", wrap=True), Col("simulated", wrap=True),
                Col("anchor", drop=1, wrap=True), Col("gate")]
        cells = [[r["what"], f"{r['us_per_op']:.2f} us ({plural(r['count'], r['per'])})",
                  r["anchor"], Text("ok" if r["within"] else "OUT OF RANGE",
                                    style="green" if r["within"] else "bold red")]
                 for r in rows]
        out.print(FitTable(cols, cells, title=f"calibration at 1 CPU ({policy}, "
                                              f"{duration_ms:g} ms measured)",
                           title_justify="left"))
        _say(out, f"cache-line hand-off: {costs.HANDOFF_SMT_NS} ns SMT siblings, "
                  f"{costs.HANDOFF_SOCKET_NS} ns same socket, {costs.HANDOFF_CROSS_NS} ns "
                  f"across sockets (anchors: 4-10, 44-51, 108-136 ns); constants in "
                  f"sim/costs.py")
    if not all(r["within"] for r in rows):
        raise typer.Exit(1)
