"""The timed simulator: accounting, the closed-queue bound, determinism, mechanisms, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_support import run as _run
from faultline.kern.pmap import PAGE_SIZE
from faultline.rt import context, ops
from faultline.rt.sync import Lock, mtx_lock, mtx_unlock
from faultline.sim.costs import CostModel
from faultline.sim.driver import SimError, TimedRun
from faultline.sim.ledger import Ledger
from faultline.sim.machine import CacheLines, Topology
from faultline.sim.simulate import SimConfig, simulate, sweep
from faultline.sim.workloads import build_vm, resident_file

US = 1_000
MS = 1_000_000


def _small(workload: str, policy: str = "sbusy", cpus: int = 4, **kw: object) -> SimConfig:
    args: dict[str, object] = {"duration_ns": 300 * US, "warmup_ns": 100 * US}
    args.update(kw)
    return SimConfig(workload, policy, cpus, **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- accounting

@pytest.mark.parametrize("workload,cpus", [("doexec", 6), ("page-fault2-shared", 8),
                                           ("hot-lock", 12)])
def test_every_cpu_ns_is_accounted_once(workload: str, cpus: int) -> None:
    """on-CPU work + spinning + off-CPU waiting (+ idle) = N x window, exactly."""
    p = simulate(_small(workload, "xbusy", cpus))
    total = (sum(p.work_share.values()) + sum(p.spin_share.values())
             + sum(p.offcpu_share.values()) + p.idle_share)
    assert total == pytest.approx(1.0, abs=1e-12)
    assert p.idle_share == 0.0          # the workers loop forever: no CPU ever idles
    assert p.ops > 0


def test_ledger_clips_to_the_window_and_keeps_intervals_contiguous() -> None:
    led = Ledger(2, start=100, end=200)
    led.begin(0, 0)
    led.begin(1, 0)
    led.work(0, "kernel", 150, None)             # [0,150): 50 inside
    led.open_wait(0, "sleep", "vmpfw", None)
    led.close_wait(0, 180)                       # [150,180)
    led.spin_for(0, "pmap pv list", 40, None, lock=True)   # [180,220): 20 inside
    led.open_wait(1, "spin", "vm object", None, lock=True)
    led.finish(0, 200)
    led.finish(1, 200)                           # the open spin runs to the end
    assert led.work_ns == {"kernel": 50}
    assert led.sleep_ns == {"vmpfw": 30}
    assert led.spin_ns == {"pmap pv list": 20, "vm object": 100}
    assert led.total_ns() == 2 * 100
    assert led.locks["vm object"].wait_ns == 100
    assert "vmpfw" not in led.locks              # a busy sleep is not a lock wait


def test_ledger_with_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        Ledger(1, 5, 5)


# ---------------------------------------------------------------- the closed-queue bound

def test_one_hot_lock_meets_the_closed_queue_bound() -> None:
    """N threads: think Z, hold S under one mutex.  X(N) <= min(N/(S+Z), 1/S), with S
    and Z the prices sim.costs charges (hold + its steps, think + the release step),
    and the simulation reaches the bound at both ends of the curve."""
    c = CostModel()
    s_min = c.work_ns["hot-lock hold"] + c.step_ns["Acquire"]
    s_max = s_min + c.handoff_socket_ns              # the lock word came from another CPU
    z = c.work_ns["hot-lock think"] + c.step_ns["Release"]
    window = 2 * MS
    for n in (1, 2, 4, 8, 16, 32):
        x = simulate(SimConfig("hot-lock", "sbusy", n, duration_ns=window,
                               warmup_ns=200 * US)).throughput
        bound = min(n / ((s_min + z) / 1e9), 1 / (s_min / 1e9))
        assert x <= bound * 1.001, (n, x, bound)
        if n == 1:
            assert x == pytest.approx(1e9 / (s_min + z), rel=0.01)
        if n == 32:                                  # far past the knee (S+Z)/S ~ 10
            assert x >= 0.97 * 1e9 / s_max, (n, x)


# ---------------------------------------------------------------- determinism

def test_same_config_same_json() -> None:
    cfg = _small("doexec", "xbusy", 6)
    a, b = simulate(cfg).to_json(), simulate(cfg).to_json()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_sweep_results_do_not_depend_on_jobs() -> None:
    configs = [_small("page-fault2-shared", pol, n, duration_ns=100 * US)
               for pol in ("xbusy", "sbusy") for n in (1, 3)]
    one = [p.to_json() for p in sweep(configs, jobs=1)]
    two = [p.to_json() for p in sweep(configs, jobs=2)]
    assert one == two
    assert [(d["policy"], d["cpus"]) for d in two] == [
        ("xbusy", 1), ("xbusy", 3), ("sbusy", 1), ("sbusy", 3)]


# ---------------------------------------------------------------- the mechanisms

@pytest.mark.slow
def test_doexec_busy_sleep_under_xbusy_only() -> None:
    """Pre-D51474 faults on libc's data pages sleep on each other's xbusy source page
    (vmpfw); D51474 sbusies the COW source, so nobody sleeps there."""
    x = simulate(_small("doexec", "xbusy", 16, duration_ns=1 * MS, warmup_ns=1 * MS))
    s = simulate(_small("doexec", "sbusy", 16, duration_ns=1 * MS, warmup_ns=1 * MS))
    assert x.offcpu_share.get("vmpfw", 0) > 0.01
    assert s.offcpu_share.get("vmpfw", 0) == 0
    assert s.top_lock == "pmap pv list"


@pytest.mark.slow
def test_page_fault1_is_the_same_under_both_policies() -> None:
    """Zero-fill faults xbusy a new page under both policies (negative control)."""
    x = simulate(_small("page-fault1", "xbusy", 8)).to_json()
    s = simulate(_small("page-fault1", "sbusy", 8)).to_json()
    x.pop("policy")
    s.pop("policy")
    assert x == s


def test_one_cpu_costs_land_in_the_anchor_ranges() -> None:
    """The calibration gates: ~105 us per exec within 2x; 0.5-2 us per fault."""
    ex = simulate(SimConfig("doexec", "sbusy", 1, duration_ns=3 * MS, warmup_ns=MS))
    assert 52.5 <= 3_000 / ex.ops <= 210
    for w in ("page-fault1", "page-fault2-shared", "page-fault4-shared"):
        p = simulate(SimConfig(w, "sbusy", 1, duration_ns=MS, warmup_ns=100 * US))
        us = 1_000 / p.work_count["trap"]
        assert 0.5 <= us <= 2.0, (w, us)


# ---------------------------------------------------------------- machine and layout

def test_topology_numbers_smt_siblings_adjacent() -> None:
    top, c = Topology(), CostModel()
    assert top.ncpus == 104
    assert top.socket_of(51) == 0 and top.socket_of(52) == 1
    assert top.handoff_ns(0, 1, c) == c.handoff_smt_ns
    assert top.handoff_ns(0, 2, c) == c.handoff_socket_ns
    assert top.handoff_ns(0, 103, c) == c.handoff_cross_ns


def test_cache_line_handoffs_serialise() -> None:
    top, c = Topology(), CostModel()
    lines = CacheLines(top, c)
    assert lines.write("L", 0, 0) == 0                  # first touch: ours
    assert lines.write("L", 0, 10) == 0                 # still ours
    assert lines.write("L", 2, 100) == c.handoff_socket_ns
    # Two more CPUs want it at the same instant: the second waits for the first.
    assert lines.write("L", 4, 100) == 2 * c.handoff_socket_ns
    assert lines.queued == c.handoff_socket_ns
    assert lines.read("L", 60, 500) == c.handoff_cross_ns   # across the sockets
    assert lines.read("L", 60, 600) == 0                    # now shared


def test_reservations_put_an_objects_pages_in_one_frame() -> None:
    vm = build_vm("sbusy", "superpage", seed=3)
    libc = resident_file(vm, "libc", 40)
    frames = {m.phys >> 9 for m in libc.pages.values()}
    assert len(frames) == 1
    assert {vm.pv_list_lock(m).label for m in libc.pages.values()} == {
        f"pv.sp{frames.pop()}"}
    other = resident_file(vm, "other", 2)
    assert vm.pv_list_lock(other.pages[0]) is not vm.pv_list_lock(libc.pages[0])


def test_hashed_pv_locks_share_cache_lines_in_pairs() -> None:
    vm = build_vm("sbusy", "256", seed=1)
    assert len(vm.pv_list_locks) == 256
    assert vm.pv_list_locks[4].line == vm.pv_list_locks[5].line
    assert vm.pv_list_locks[5].line != vm.pv_list_locks[6].line


def test_cost_is_free_without_a_timed_driver() -> None:
    """The checker never sees Cost ops: rt.ops.cost does not trap unless costing."""
    assert not context.costing
    coro = ops.cost("page zero").__await__()
    with pytest.raises(StopIteration):
        coro.send(None)


def test_unpriced_work_is_named() -> None:
    with pytest.raises(KeyError, match="no price for work 'polishing'"):
        CostModel().work("polishing", 1)


# ---------------------------------------------------------------- failures surface

def test_a_deadlock_under_the_timed_driver_is_reported() -> None:
    a, b = Lock("lock a", "A", "mtx"), Lock("lock b", "B", "mtx")

    async def one(first: Lock, second: Lock) -> None:
        await mtx_lock(first)
        await ops.cost("hot-lock hold")
        await mtx_lock(second)

    run = TimedRun(Topology(), 2, CostModel(), end_ns=10 * US)
    run.start("t0", one(a, b))
    run.start("t1", one(b, a))
    with pytest.raises(SimError, match="deadlock"):
        run.run()


def test_a_model_panic_stops_the_simulation() -> None:
    m = Lock("test mtx", "m", "mtx")

    async def bad() -> None:
        await mtx_unlock(m)                     # never locked: a KASSERT in FreeBSD

    run = TimedRun(Topology(), 1, CostModel(), end_ns=10 * US)
    run.start("t0", bad())
    with pytest.raises(SimError, match="panic"):
        run.run()


def test_more_threads_than_cpus_is_refused() -> None:
    async def idle() -> None:
        await ops.pause("idle")

    run = TimedRun(Topology(), 1, CostModel(), end_ns=10 * US)
    run.start("t0", idle())
    with pytest.raises(SimError, match="one thread per CPU"):
        run.start("t1", idle())


# ---------------------------------------------------------------- CLI

def test_cli_sim_json_points() -> None:
    r = _run("sim", "page-fault1", "--cpus", "1,2", "--policy", "xbusy,sbusy",
                 "--duration-ms", "0.1", "--warmup-ms", "0.05", "--jobs", "1", "--json")
    assert r.exit_code == 0, r.output
    points = json.loads(r.stdout)
    assert [(p["policy"], p["cpus"]) for p in points] == [
        ("xbusy", 1), ("xbusy", 2), ("sbusy", 1), ("sbusy", 2)]
    for p in points:
        assert set(p) >= {"workload", "policy", "cpus", "throughput", "offcpu_share",
                          "spin_share", "top_lock"}
        assert p["throughput"] > 0


@pytest.mark.slow
def test_cli_sim_writes_plots_flame_graph_and_trace(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _run("sim", "doexec", "--cpus", "1,4", "--policy", "xbusy,sbusy",
                 "--duration-ms", "0.3", "--warmup-ms", "0.3", "--jobs", "1",
                 "--out", str(out))
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert "points.json" in names
    assert {"doexec-throughput.png", "doexec-waiting.png", "doexec-locks.png"} <= set(names)
    assert "flame-doexec-xbusy-4.svg" in names and "flame-doexec-sbusy-4.svg" in names
    trace = json.loads((out / "trace-doexec-sbusy-4.json").read_text())
    assert any(e.get("ph") == "X" for e in trace["traceEvents"])
    assert "most lock wait" in r.stdout


@pytest.mark.parametrize("args,words", [
    (["sim", "nosuch"], "unknown workload"),
    (["sim", "doexec", "--cpus", "0"], "between 1 and 104"),
    (["sim", "doexec", "--cpus", "1,x"], "integers"),
    (["sim", "doexec", "--policy", "fast"], "unknown 'fast'"),
    (["sim", "doexec", "--pv-locks", "512"], "unknown '512'"),
])
def test_cli_sim_bad_input(args: list[str], words: str) -> None:
    r = _run(*args)
    assert r.exit_code == 2
    assert words in r.stderr


def test_cli_sim_out_must_be_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    r = _run("sim", "page-fault1", "--cpus", "1", "--out", str(f))
    assert r.exit_code == 2
    assert "not a directory" in r.stderr
    r = _run("sim", "page-fault1", "--cpus", "1", "--out", str(f / "sub"))
    assert r.exit_code == 2
    assert "cannot create" in r.stderr


@pytest.mark.slow
def test_cli_calibrate_json() -> None:
    r = _run("calibrate", "--duration-ms", "2", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert all(g["within"] for g in doc["gates"])
    assert doc["handoffs"]["socket_ns"] == 50


def test_page_size_matches_the_workloads() -> None:
    assert PAGE_SIZE == 4096
