"""How fast the timed simulator runs, measured side by side with bare SimPy in one process.

Prints, for one doexec point and one page-fault1 point: SimPy events processed per wall
second by faultline's timed driver; the same number of events from a bare SimPy loop
(processes looping on env.timeout, the engine's floor); their ratio; and the model floor:
the same workload's steps performed by the runtime's plain Execution with no SimPy and
no timing at all (what the model code itself costs), as a ratio too.

    python bench/sim_speed.py            # about half a minute
    python bench/sim_speed.py --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import simpy

from faultline.rt.execution import Execution, Thread
from faultline.sim.simulate import SimConfig, simulate
from faultline.sim.workloads import build_vm, worker_seed, workload_named


def counted_events(cfg: SimConfig) -> tuple[int, int]:
    """(SimPy events processed, model steps) of one point, counted in a separate run."""
    count = [0]
    step = simpy.Environment.step

    def counting(env: simpy.Environment) -> None:
        count[0] += 1
        step(env)
    simpy.Environment.step = counting  # type: ignore[method-assign]
    try:
        p = simulate(cfg)
    finally:
        simpy.Environment.step = step  # type: ignore[method-assign]
    return count[0], p.steps


def timed_point(cfg: SimConfig) -> float:
    t0 = time.perf_counter()
    simulate(cfg)
    return time.perf_counter() - t0


def bare_simpy(events: int, procs: int) -> float:
    """Wall seconds for `procs` SimPy processes looping on timeouts, `events` in all."""
    env = simpy.Environment()
    per = events // procs

    def loop(i: int) -> Generator[simpy.Event, Any, None]:
        for k in range(per):
            yield env.timeout(1 + (i * 7 + k) % 13)
    for i in range(procs):
        env.process(loop(i))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


class _RoundRobin:
    def __init__(self) -> None:
        self.i = 0

    def choose(self, ex: Execution, enabled: list[Thread]) -> Thread:
        self.i += 1
        return enabled[self.i % len(enabled)]


def model_floor(cfg: SimConfig, steps: int) -> float:
    """Wall seconds for the plain runtime to perform `steps` steps of the workload."""
    vm = build_vm(cfg.policy, cfg.pv_locks, cfg.seed)
    workers = workload_named(cfg.workload).build(vm, cfg.cpus, False)
    ex = Execution(_RoundRobin(), step_bound=sys.maxsize)
    for i, (p, worker) in enumerate(workers):
        ex.spawn(p.name, p.name, worker(p, worker_seed(cfg.seed, i), lambda kind: None))
    choose = ex.strategy.choose
    t0 = time.perf_counter()
    for _ in range(steps):
        ex.step(choose(ex, ex.enabled()))
    elapsed = time.perf_counter() - t0
    ex._close_all()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter points")
    args = ap.parse_args()
    ms = 1_000_000
    points = [SimConfig("doexec", "sbusy", 26, duration_ns=(2 if args.quick else 6) * ms,
                        warmup_ns=ms),
              SimConfig("page-fault1", "sbusy", 8, duration_ns=(1 if args.quick else 3) * ms,
                        warmup_ns=0)]
    print(f"{'point':<26} {'events':>10} {'faultline ev/s':>15} {'bare SimPy ev/s':>16} "
          f"{'ratio':>6} {'model floor st/s':>17} {'driver/floor':>13}")
    for cfg in points:
        events, steps = counted_events(cfg)
        wall = timed_point(cfg)
        bare = bare_simpy(events, cfg.cpus)
        floor = model_floor(cfg, steps)
        ours, theirs = events / wall, events / bare
        name = f"{cfg.workload} {cfg.policy} N={cfg.cpus}"
        print(f"{name:<26} {events:>10,} {ours:>15,.0f} {theirs:>16,.0f} "
              f"{ours / theirs:>6.2f} {steps / floor:>17,.0f} {floor / wall:>13.2f}")
    print("ratio: faultline's timed driver / bare SimPy, same event count, same run;"
          " driver/floor: share of the driver's wall time the model code alone needs")


if __name__ == "__main__":
    main()
