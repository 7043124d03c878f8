"""How fast faultline explores, measured side by side in one process.

Prints, for a few catalog scenarios and for the DPOR validation suite: steps/s and
executions/s of random sampling, source DPOR and optimal DPOR; executions explored per
Mazurkiewicz trace (validation suite, traces counted by brute force); and the ratio of
faultline's steps/s to a bare coroutine-stepping loop timed in the same run, next to the
model floor (the same scenarios with every check taken away), which bounds that ratio;
the speed-up of seeded runs that start from the setup image over runs that re-run the
setup, on the whole catalog; and the speed-up of --jobs 2 over --jobs 1 on the whole
catalog, and on one scenario's DPOR tree dealt out as subtrees.

    python bench/check_speed.py            # about a minute on 2 cores
    python bench/check_speed.py --quick    # fewer runs
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from faultline.check.explore import CheckConfig, check_scenario
from faultline.check.search import dpor
from faultline.check.search.validation import PROGRAMS, enumerate_all, execution
from faultline.scenario.loader import load_scenario

SCENARIOS = ("rw-race-shadow", "shared-shadow-inval", "wire-vs-fault", "cow-vs-collapse")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


@types.coroutine
def _yield_once() -> Generator[int, None, None]:
    yield 0


def bare_loop(steps: int) -> float:
    """Steps per second of the simplest possible driver: send into a coroutine that
    awaits a one-yield trap in a loop (no ops, no scheduling, no checks)."""
    async def worker() -> None:
        for _ in range(steps):
            await _yield_once()
    coro = worker()
    t0 = time.perf_counter()
    try:
        while True:
            coro.send(None)
    except StopIteration:
        pass
    return steps / (time.perf_counter() - t0)


def model_floor(runs: int) -> float:
    """Steps per second of the catalog scenarios with every check taken away: the model
    code and the runtime's step loop, one seeded uniform choice per step, no observers
    (no invariants, oracle, coverage, witness or DPOR).  No strategy can beat it, so
    floor / bare bounds what faultline's steps/s can reach as a share of the bare loop
    while the model stays as it is; but for one thing: the checked runs count the setup
    steps they restore from the setup image as steps, as check's own figures do, so
    their rate is that of runs as long as they are, and the floor's runs replay theirs."""
    from faultline.check.search.strategies import RandomStrategy, run_seed
    from faultline.rt.execution import Execution
    from faultline.scenario.world import World
    steps, secs = 0, 0.0
    for name in SCENARIOS:
        s = load_scenario(name)
        for i in range(runs):
            ex = Execution(RandomStrategy(run_seed(1, i)), [], s.step_bound)
            t0 = time.perf_counter()
            ex.spawn("setup", "-", World(s, "sbusy").setup())
            steps += ex.run().steps
            secs += time.perf_counter() - t0
    return steps / secs


def row(name: str, how: str, execs: int, steps: int, secs: float, extra: str = "") -> None:
    print(f"{name:34s} {how:16s} {execs:8d} {steps:10d} {secs:8.2f} "
          f"{execs / secs:10.0f} {steps / secs:10.0f}  {extra}")


def header() -> None:
    print(f"{'':34s} {'strategy':16s} {'execs':>8s} {'steps':>10s} {'seconds':>8s} "
          f"{'execs/s':>10s} {'steps/s':>10s}")


def bench_catalog(runs: int, cap: int) -> dict[str, list[float]]:
    """steps/s per scenario, by strategy (random, dpor source, dpor optimal)."""
    rates: dict[str, list[float]] = {}
    for name in SCENARIOS:
        s = load_scenario(name)
        r, secs = timed(lambda s=s: check_scenario(s, CheckConfig(runs=runs)))
        row(name, "random", r.executions, r.steps, secs)
        rates.setdefault("random", []).append(r.steps / secs)
        for flavour in ("source", "optimal"):
            cfg = CheckConfig(strategy="dpor", dpor=flavour, max_executions=cap,
                              preemptions=(None,))
            res, secs = timed(lambda s=s, c=cfg: check_scenario(s, c))
            note = "exhaustive" if res.exhaustive else f"capped at {cap}"
            total = res.executions + res.sleep_blocked
            row(name, f"dpor {flavour}", res.executions, res.steps, secs,
                f"{note}, {res.sleep_blocked} sleep-blocked, {res.traces} distinct traces, "
                f"explored/traces {total / max(res.traces or 1, 1):.2f}")
            rates.setdefault(f"dpor {flavour}", []).append(res.steps / secs)
    return rates


def bench_validation() -> list[float]:
    rates = []
    for name, prog in PROGRAMS.items():
        traces = enumerate_all(prog).traces
        for flavour in ("source", "optimal"):
            res, secs = timed(lambda p=prog, f=flavour: dpor.explore(
                lambda rec: execution(p, rec, [rec]), stop_on_violation=False,
                optimal=f == "optimal"))
            total = res.executions + res.sleep_blocked
            row(name, f"dpor {flavour}", res.executions, res.steps, max(secs, 1e-9),
                f"traces {traces}, explored/traces {total / traces:.2f}")
            rates.append(res.steps / max(secs, 1e-9))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and a lower DPOR cap")
    args = ap.parse_args()
    runs, cap = (50, 200) if args.quick else (300, 1500)
    bare = bare_loop(1_000_000)
    print(f"bare coroutine-stepping loop: {bare:,.0f} steps/s\n")
    header()
    cat = bench_catalog(runs, cap)
    print()
    header()
    bench_validation()
    every = [r for rs in cat.values() for r in rs]
    mean = sum(every) / len(every)
    print(f"\ncatalog mean steps/s {mean:,.0f} = {100 * mean / bare:.1f}% of the bare loop")
    for how, rs in cat.items():
        m = sum(rs) / len(rs)
        print(f"  {how:12s} {m:10,.0f} steps/s = {100 * m / bare:.1f}%")
    floor = model_floor(runs)
    print(f"model floor (same scenarios, no checks, no DPOR) {floor:,.0f} steps/s = "
          f"{100 * floor / bare:.1f}% of the bare loop: the ceiling for the share above")
    print()
    bench_setup_image(max(runs // 10, 5))
    bench_jobs(runs)
    bench_split(args.quick)


def bench_setup_image(runs: int) -> None:
    """Random and PCT runs of every catalog scenario started from the setup image
    (check.running.setup_image) against the same runs re-running the setup,
    interleaved scenario by scenario so that machine noise hits both alike."""
    from faultline.check.explore import make_strategy, run_once
    from faultline.check.running.setup_image import SetupImage
    from faultline.check.search.strategies import run_seed
    from faultline.scenario.loader import load_catalog
    def series(s: Any, strategy: str, image: SetupImage | None) -> list[list[int]]:
        return [run_once(s, "sbusy", make_strategy(strategy, run_seed(1, i), 3, s.step_bound),
                         image=image).outcome.schedule for i in range(runs)]
    for strategy in ("random", "pct"):
        plain = imaged = 0.0
        same = True
        for s in load_catalog():
            a, t = timed(lambda s=s, k=strategy: series(s, k, None))
            plain += t
            b, t = timed(lambda s=s, k=strategy: series(s, k, SetupImage()))
            imaged += t
            same &= a == b
        print(f"catalog {strategy:6s} x{runs} runs: re-running the setup {plain:6.2f} s, "
              f"from the setup image {imaged:6.2f} s, speed-up {plain / imaged:.2f}x, "
              f"same schedules: {same}")


def bench_jobs(runs: int) -> None:
    """--jobs 2 against --jobs 1 on the whole catalog, random and bounded DPOR."""
    from faultline.check.running.parallel import check_many
    from faultline.scenario.loader import load_catalog
    catalog = load_catalog()
    for label, cfg in (("random", CheckConfig(runs=runs)),
                       ("dpor <= 1 preemption",
                        CheckConfig(strategy="dpor", preemptions=(1,), max_executions=500))):
        one, t1 = timed(lambda c=cfg: check_many(catalog, c, 1))
        two, t2 = timed(lambda c=cfg: check_many(catalog, c, 2))
        same = [r.to_json() for r in one] == [r.to_json() for r in two]
        print(f"catalog {label:22s} --jobs 1 {t1:7.2f} s  --jobs 2 {t2:7.2f} s  "
              f"speed-up {t1 / t2:.2f}x  identical results: {same}")


def bench_split(quick: bool) -> None:
    """One scenario's DPOR tree: --jobs 1 (one tree) against --jobs 2 (its subtrees
    dealt out, check.search.split), and the split run again in this process (identical?)."""
    import dataclasses

    from faultline.check.running.parallel import check_many
    from faultline.check.search.split import AUTO_DEPTH
    from faultline.scenario.loader import load_scenario
    s = load_scenario("rw-race-top")
    cfg = CheckConfig(strategy="dpor", preemptions=(1,) if quick else None)
    (whole,), t1 = timed(lambda: check_many([s], cfg, 1))
    (two,), t2 = timed(lambda: check_many([s], cfg, 2))
    (inline,), _ = timed(lambda: check_many([s], dataclasses.replace(cfg, split=AUTO_DEPTH), 1))
    print(f"{s.name} dpor <= {whole.preemption_bound} preemptions: --jobs 1 {t1:7.2f} s "
          f"({whole.executions:,} executions, {whole.traces:,} traces)  --jobs 2 {t2:7.2f} s "
          f"({two.executions:,} executions in {two.subtrees} subtrees, {two.traces:,} "
          f"traces)  speed-up {t1 / t2:.2f}x  split identical in one process: "
          f"{inline.to_json() == two.to_json()}")


if __name__ == "__main__":
    main()
