"""Running the SPIN cross-check of one (scenario, policy) pair: spin, gcc, pan.

What lives here: `run_spin`, which writes the Promela model and its generated top file
into a work directory, runs `spin -a`, compiles pan with gcc and runs it (stopping at the
first error, or with probes at none), reads its report (spin.pan), and with `trail`
replays the counterexample with `spin -t -p`; `SpinResult`, the report with the seconds
each tool took; and `require_tools`.  The seconds time the external tools for reports
only: nothing in the model or the verdict depends on a clock.
Rule kept: a failed tool, a search cut short by its depth limit or a path the model
leaves out is a SpinModelError, never a verdict.  Must not be added: the faultline side
of the comparison (spin.compare) or rendering (cli.spin_cmd).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faultline.spin.errors import SpinModelError, SpinToolMissing
from faultline.spin.model import TOP_FILE, policy_switches, spin_scenario, write_model
from faultline.spin.pan import PanReport, TrailStep, kind_of, parse_pan, parse_trail

# pan's search depth (-m): the deepest run of the three scenarios is under 400 steps.  A
# search that needs more says "max search depth too small" and is an error here.
PAN_DEPTH = 100_000
PAN_HASH_BITS = 22            # -w: a 4M-slot hash table; the state spaces are < 100k
# -O0: the state spaces take pan a tenth of a second, and -O2 would spend ~9 s compiling
# pan.c (it is ~370 kB); -DSAFETY: assertions and invalid end states, no cycles.
CFLAGS = ("-O0", "-DSAFETY")
TOOL_TIMEOUT = 900            # seconds: a tool that runs longer has gone wrong
INSTALL_HINT = "apt-get install spin (Debian's spin 6.5.x; gcc compiles pan)"


@dataclass(frozen=True)
class SpinResult:
    """The SPIN verdict of one pair, pan's figures and the seconds of each tool."""

    scenario: str
    policy: str
    switches: tuple[str, ...]
    report: PanReport
    spin_seconds: float
    gcc_seconds: float
    pan_seconds: float
    spin_version: str
    trail: tuple[TrailStep, ...] = field(default=())

    @property
    def verdict(self) -> str:
        """"pass" or "violation" (probe runs: see report.violations)."""
        return self.report.verdict

    @property
    def seconds(self) -> float:
        """spin, gcc and pan together."""
        return self.spin_seconds + self.gcc_seconds + self.pan_seconds

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values."""
        r = self.report
        return {
            "scenario": self.scenario, "policy": self.policy,
            "switches": list(self.switches), "verdict": r.verdict,
            "violation": r.violation, "kind": r.kind, "depth": r.depth,
            "states_stored": r.states_stored, "states_matched": r.states_matched,
            "transitions": r.transitions, "depth_reached": r.depth_reached,
            "state_vector_bytes": r.state_vector, "memory_mb": r.memory_mb,
            "pan_elapsed": r.pan_seconds,
            "seconds": {"spin": round(self.spin_seconds, 3),
                        "gcc": round(self.gcc_seconds, 3),
                        "pan": round(self.pan_seconds, 3),
                        "total": round(self.seconds, 3)},
            "spin_version": self.spin_version,
            "trail": [asdict(s) for s in self.trail],
        }


def require_tools() -> tuple[str, str]:
    """The paths of spin and gcc; SpinToolMissing says how to install them."""
    spin, gcc = shutil.which("spin"), shutil.which("gcc")
    if spin is None:
        raise SpinToolMissing(f"spin is not installed (not on PATH): {INSTALL_HINT}")
    if gcc is None:
        raise SpinToolMissing("gcc is not installed (not on PATH): it compiles SPIN's "
                              "verifier pan; apt-get install gcc")
    return spin, gcc


def _run(argv: list[str], cwd: Path, what: str, check: bool = True) -> tuple[str, float]:
    """Run a tool; its stdout and stderr, and the seconds it took.  `check`: a non-zero
    exit status is an error (pan's is not: it exits 0 or not whatever it found)."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                              timeout=TOOL_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise SpinModelError(f"{what} ran longer than {TOOL_TIMEOUT} s") from None
    took = time.perf_counter() - t0
    out = done.stdout + done.stderr
    if check and done.returncode != 0:
        raise SpinModelError(f"{what} failed (exit status {done.returncode}): "
                             f"{out.strip()[-2000:]}")
    return out, took


def _version(spin: str, cwd: Path) -> str:
    out, _ = _run([spin, "-V"], cwd, "spin -V")
    return out.strip().removeprefix("Spin Version ").split(" --")[0]


def require_verdict(report: PanReport, probes: bool = False) -> None:
    """A report that is no verdict is an error of the model."""
    if report.depth_limited:
        raise SpinModelError(f"pan: max search depth too small (-m{PAN_DEPTH}): the "
                             f"search was not exhaustive; raise spin.run.PAN_DEPTH")
    limits = [v for v in report.violations if kind_of(v) == "model-limit"]
    if limits:
        raise SpinModelError(f"the run reached a path the Promela model leaves out "
                             f"({limits[0]}): the model cannot judge this pair")
    if not probes and report.kind == "probe":
        raise SpinModelError(f"a coverage probe fired without -DPROBES: {report.violation}")


def run_spin(scenario: str, policy: str, *, workdir: Path | None = None,
             trail: bool = False, probes: bool = False) -> SpinResult:
    """Verify `scenario` under `policy` with SPIN.  In `workdir` (kept) if given, else a
    temporary directory.  `trail`: replay a counterexample with spin -t -p.  `probes`:
    compile the coverage probes in and let pan go on past errors (report.violations
    then lists the probes reached, and any property violated)."""
    switches = policy_switches(policy)
    spin_scenario(scenario)
    spin, gcc = require_tools()
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        return _run_in(workdir, scenario, policy, switches, spin, gcc, trail, probes)
    with tempfile.TemporaryDirectory(prefix="faultline-spin-") as tmp:
        return _run_in(Path(tmp), scenario, policy, switches, spin, gcc, trail, probes)


def _run_in(d: Path, scenario: str, policy: str, switches: tuple[str, ...], spin: str,
            gcc: str, trail: bool, probes: bool) -> SpinResult:
    write_model(d, scenario, policy, probes)
    _, spin_s = _run([spin, "-a", TOP_FILE], d, "spin -a")
    _, gcc_s = _run([gcc, *CFLAGS, "-o", "pan", "pan.c"], d, "gcc (pan.c)")
    pan_argv = ["./pan", "-n", f"-m{PAN_DEPTH}", f"-w{PAN_HASH_BITS}",
                "-c0" if probes else "-c1"]
    # pan's exit status says nothing about the verdict; its report does.
    pan_out, pan_s = _run(pan_argv, d, "pan", check=False)
    report = parse_pan(pan_out)
    require_verdict(report, probes)
    steps: tuple[TrailStep, ...] = ()
    if trail and report.verdict == "violation" and not probes:
        out, _ = _run([spin, "-t", "-p", TOP_FILE], d, "spin -t -p")
        steps = tuple(parse_trail(out))
    return SpinResult(scenario, policy, switches, report, spin_s, gcc_s, pan_s,
                      _version(spin, d), steps)
