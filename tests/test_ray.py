"""--ray: the local pool's work units as Ray tasks give exactly the --jobs 1 results, also
when a worker running a unit is killed (Ray re-runs the unit; nothing counts twice); an
address nothing answers at fails at once, as bad input."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from faultline.check.explore import CheckConfig, ScenarioResult
from faultline.check.running import ray_backend
from faultline.check.running.parallel import check_many
from faultline.scenario.loader import load_scenario
from faultline.scenario.spec import Scenario

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")       # ships with ray
pytestmark = pytest.mark.slow                # each module starts a local Ray instance


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    yield
    ray.shutdown()


def as_json(results: list[ScenarioResult]) -> str:
    return json.dumps([r.to_json() for r in results], sort_keys=True)


def tight(name: str) -> Scenario:
    """A catalog scenario whose step bound is 10% above its mean run length, so some
    interleavings exceed it: a violation that needs no mutant policy (Ray workers
    import faultline afresh, without the policies a test registers)."""
    s = load_scenario(name)
    mean = check_many([s], CheckConfig(runs=20), 1)[0].steps / 20
    return dataclasses.replace(s, step_bound=int(mean * 1.1))


@pytest.mark.usefixtures("local_ray")
@pytest.mark.parametrize(("names", "cfg"), [
    (["rw-race-shadow"], CheckConfig(runs=200, shrink=False)),
    (["tight:rw-race-shadow"], CheckConfig(runs=200)),
    (["collapse-bypass", "zero-fill-parallel"],
     CheckConfig(strategy="dpor", preemptions=(0, 1), max_executions=150)),
    (["cow-rename"], CheckConfig(strategy="portfolio", runs=100)),
], ids=["random", "random-violation", "dpor", "portfolio"])
def test_ray_gives_the_jobs_1_results(names: list[str], cfg: CheckConfig) -> None:
    scen = [tight(n[6:]) if n.startswith("tight:") else load_scenario(n) for n in names]
    local = check_many(scen, cfg, 1)
    assert as_json(check_many(scen, cfg, 2, use_ray=True)) == as_json(local)
    if names[0] == "rw-race-shadow":
        assert local[0].executions == 200
    if not isinstance(names[0], str):
        assert local[0].verdict == "violation" and local[0].executions < 200


def _kill_a_running_unit(stop: threading.Event, killed: list[str]) -> None:
    """SIGKILL the first Ray worker seen running a faultline unit for 0.1 s."""
    seen: dict[int, float] = {}
    while not stop.is_set() and not killed:
        now = time.monotonic()
        for p in psutil.process_iter(["pid", "cmdline"]):
            title = " ".join(p.info["cmdline"] or []).strip()
            if not title.startswith("ray::faultline.run_chunk"):
                continue
            if now - seen.setdefault(p.info["pid"], now) >= 0.1:
                os.kill(p.info["pid"], signal.SIGKILL)
                killed.append(title)
                return
        time.sleep(0.01)


@pytest.mark.usefixtures("local_ray")
def test_a_killed_worker_is_retried_and_nothing_counts_twice() -> None:
    scen = [load_scenario("rw-race-shadow")]
    cfg = CheckConfig(runs=2000, seed=3)
    local = check_many(scen, cfg, 1)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_a_running_unit, args=(stop, killed))
    killer.start()
    executions: list[int] = []
    try:
        remote = check_many(scen, cfg, 2, progress=executions.append, use_ray=True)
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was caught running a unit"
    assert as_json(remote) == as_json(local)
    assert remote[0].executions == 2000 == sum(executions)


# ---------------------------------------------------------------- unreachable addresses

def test_an_unreachable_address_fails_fast_as_bad_input() -> None:
    # A fresh process, so Ray is not already connected; ray.init would retry for minutes.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]            # closed again: nothing listens there
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "faultline.cli.app", "check", "cow-rename",
                          "--runs", "5", "--ray", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert time.monotonic() - t0 < 30
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"faultline: error: cannot reach Ray at 127.0.0.1:{port}")
    assert "connection refused" in last and "ray status" in last


@pytest.mark.parametrize(("address", "env", "dialled"), [
    ("ray://head:10001", None, ("head", 10001, True)),
    ("ray://[::1]:10001", None, ("::1", 10001, True)),
    ("auto", "ray://head:7000", ("head", 7000, True)),
    ("auto", "10.0.0.9:6379", ("10.0.0.9", 6379, False)),
    ("10.0.0.9:6380", None, ("10.0.0.9", 6380, False)),
    ("anyscale://cluster", None, None),               # not ours to probe
    ("10.0.0.9", None, None),                         # ray.init rejects it at once
])
def test_the_probe_dials_what_ray_init_would(monkeypatch: pytest.MonkeyPatch, address: str,
                                             env: str | None,
                                             dialled: tuple[str, int, bool] | None) -> None:
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert ray_backend._dialled(ray, address) == dialled
