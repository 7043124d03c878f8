"""One simulated point, and a sweep of points over a runner.

What lives here: `SimConfig` (everything that determines a point: workload, policy,
CPU count, window, seed, pv-lock layout), `simulate` (build the workload's VM and
workers, run them under sim.driver, turn the ledger into a `SimPoint`) and `sweep`,
which runs independent points as work units on this process, local worker processes
or Ray, with the check command's runner code (check.running.runners).
Rule kept: a point is a pure function of its SimConfig: same config, same numbers
(wall time is reported beside a point, never in it).  Must not be added: rendering.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faultline.check.running.runners import Ordered, open_runner
from faultline.sim.costs import CostModel
from faultline.sim.driver import SimError, TimedRun
from faultline.sim.machine import Topology
from faultline.sim.workloads import build_vm, worker_seed, workload_named

DEFAULT_CPUS = (1, 2, 4, 8, 16, 26, 52, 78, 104)
DEFAULT_POLICIES = ("xbusy", "sbusy")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One point of a sweep."""

    workload: str
    policy: str
    cpus: int
    duration_ns: int = 4_000_000          # measured window
    warmup_ns: int = 1_000_000            # run before it, not measured
    seed: int = 1
    pv_locks: str = "maxcpu"
    shared_binary: bool = False
    profile: bool = False                 # folded stacks for a flame graph
    trace_window_ns: int = 0              # Perfetto trace of the window's start
    topology: Topology = field(default_factory=Topology)


@dataclass(slots=True)
class SimPoint:
    """What one point measured; `to_json` is the issue's point schema plus details."""

    config: SimConfig
    ops: int
    unit: str
    throughput: float                     # operations per simulated second
    work_share: dict[str, float]          # label -> share of all CPU time
    spin_share: dict[str, float]          # lock class -> share (on CPU)
    offcpu_share: dict[str, float]        # wait channel -> share (off CPU)
    idle_share: float
    lock_profile: list[dict[str, Any]]    # lock_profiling rows, by wait
    steps: int                            # model ops performed (simulator events)
    handoffs: int
    work_count: dict[str, int]            # label -> times charged (e.g. "trap": faults)
    folded: dict[str, int] = field(default_factory=dict)
    trace: list[list[Any]] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def top_lock(self) -> str | None:
        """The lock class with the most wait (spin + sleep), if any waited."""
        rows = [r for r in self.lock_profile if r["wait_ns"] > 0]
        return rows[0]["class"] if rows else None

    def lock_wait_ns(self) -> dict[str, int]:
        """Lock class -> total wait."""
        return {r["class"]: r["wait_ns"] for r in self.lock_profile}

    def to_json(self) -> dict[str, Any]:
        """The point as JSON: deterministic for a config (no wall time)."""
        c = self.config
        return {
            "workload": c.workload, "policy": c.policy, "cpus": c.cpus,
            "throughput": round(self.throughput, 3),
            "offcpu_share": _rounded(self.offcpu_share),
            "spin_share": _rounded(self.spin_share),
            "top_lock": self.top_lock,
            "lock_wait_ns": self.lock_wait_ns(),
            "work_share": _rounded(self.work_share),
            "idle_share": round(self.idle_share, 6),
            "ops": self.ops, "unit": self.unit,
            "lock_profile": self.lock_profile,
            "pv_locks": c.pv_locks, "seed": c.seed, "shared_binary": c.shared_binary,
            "duration_ms": c.duration_ns / 1e6, "warmup_ms": c.warmup_ns / 1e6,
            "model_steps": self.steps, "line_handoffs": self.handoffs,
            "faults": self.work_count.get("trap", 0),
        }


def _rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))}


def simulate(cfg: SimConfig, costs: CostModel | None = None) -> SimPoint:
    """Run one point; raises SimError if the model fails under it."""
    t0 = time.perf_counter()
    spec = workload_named(cfg.workload)
    costs = costs or CostModel()
    vm = build_vm(cfg.policy, cfg.pv_locks, cfg.seed)
    workers = spec.build(vm, cfg.cpus, cfg.shared_binary)
    run = TimedRun(cfg.topology, cfg.cpus, costs, cfg.warmup_ns + cfg.duration_ns,
                   cfg.warmup_ns, profile=cfg.profile, trace_window_ns=cfg.trace_window_ns)
    for i, (p, worker) in enumerate(workers):
        run.start(p.name, worker(p, worker_seed(cfg.seed, i), run.op_done),
                  root=cfg.workload)
    run.run()
    led = run.ledger
    total = cfg.cpus * led.window_ns()
    ops_done = led.ops.get(spec.unit, 0)
    rows = [{"class": name, "acquisitions": s.acquisitions, "contended": s.contended,
             "wait_ns": s.wait_ns, "max_wait_ns": s.max_wait_ns}
            for name, s in led.locks.items()]
    rows.sort(key=lambda r: (-r["wait_ns"], -r["acquisitions"], r["class"]))
    return SimPoint(
        config=cfg, ops=ops_done, unit=spec.unit,
        throughput=ops_done / (led.window_ns() / 1e9),
        work_share={k: v / total for k, v in led.work_ns.items()},
        spin_share={k: v / total for k, v in led.spin_ns.items()},
        offcpu_share={k: v / total for k, v in led.sleep_ns.items()},
        idle_share=led.idle_ns / total,
        lock_profile=rows, steps=run.ex.steps, handoffs=run.lines.transfers,
        work_count=dict(led.work_count),
        folded=dict(led.folded), trace=list(led.trace),
        wall_seconds=time.perf_counter() - t0)


def sweep(configs: Sequence[SimConfig], jobs: int = 1, *, use_ray: bool = False,
          ray_address: str | None = None,
          progress: Callable[[SimPoint], None] | None = None) -> list[SimPoint]:
    """Every point of `configs`, in order, on `jobs` workers (or Ray): the results do
    not depend on which worker ran what."""
    if jobs <= 1 and not use_ray:
        out = []
        for c in configs:
            pt = simulate(c)
            if progress is not None:
                progress(pt)
            out.append(pt)
        return out
    # Largest points first (the runner starts low positions first), so the long ones
    # do not start last; the results go back in the caller's order.
    order = sorted(range(len(configs)), key=lambda i: (-configs[i].cpus, i))
    with open_runner(jobs, use_ray, ray_address) as runner:
        work = Ordered(runner, len(configs))
        for pos, i in enumerate(order):
            work.offer(pos, simulate, configs[i])
        for _, pt in work.finished():
            if progress is not None:
                progress(pt)
        done = work.needed()
    out: list[SimPoint] = [done[0]] * len(configs)
    for pos, i in enumerate(order):
        out[i] = done[pos]
    return out


__all__ = ["DEFAULT_CPUS", "DEFAULT_POLICIES", "SimConfig", "SimError", "SimPoint",
           "simulate", "sweep"]
