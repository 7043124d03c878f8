"""The SPIN cross-check (faultline.spin, docs/spin.md): an independent Promela model of
the fault path agrees with faultline's verdicts.

(a) For rw-race-shadow, shared-shadow-inval and cow-rename under every policy the
    Promela model expresses, SPIN's verdict is faultline's (optimal DPOR within the
    scenario's stated preemption bound, both computed here).  A stated bound that
    misses what SPIN's unbounded search finds fails here: raise the scenario's bound.
(b) The model is not vacuous: each scenario reaches its coverage probes under sbusy;
    xbusy and sbusy pass everywhere; every expressible seeded bug not argued harmless
    is found on at least one of the three scenarios (but the one whose race none of them
    reaches); those argued harmless pass everywhere.
(c) `faultline spin`: exit statuses, JSON, and the errors for a scenario or policy the
    model does not have and for a missing spin.
(d) Reading pan's output, on recorded output of Debian's spin 6.5.2.

The agreement runs every pair once, on two worker processes (FAULTLINE_SPIN_TEST_JOBS),
the slow cow-rename pairs first: about four minutes on two cores.  Tests that need spin
skip if it is not installed (.ci/run installs it).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator

import pytest

from cli_support import run
from faultline.kern.mutants import MUTANTS
from faultline.kern.policy import all_policies
from faultline.spin import model as spin_model
from faultline.spin import run as spin_run
from faultline.spin.compare import PAIRS, PairResult, compare_all
from faultline.spin.errors import SpinModelError, SpinToolMissing, SpinUnsupported
from faultline.spin.model import NOT_EXPRESSIBLE, SCENARIOS, SWITCHES
from faultline.spin.pan import kind_of, parse_pan, parse_trail
from faultline.spin.run import require_verdict, run_spin

needs_spin = pytest.mark.skipif(shutil.which("spin") is None or shutil.which("gcc") is None,
                                reason="spin (or gcc) is not installed: apt-get install spin")

JOBS = int(os.environ.get("FAULTLINE_SPIN_TEST_JOBS", "2"))

# A seeded bug whose race none of the three scenarios reaches, in SPIN as in faultline.
NOT_REACHED_HERE = {
    "deallocate-before-unbusy": "it needs a fault whose first_object has a shadow for "
                                "its deallocation to collapse (its probe: swapin-vs-munmap)",
    "collapse-guesses-shadow": "it needs a collapse to meet a busy parent page over an "
                               "unbusied backing page: a page being swapped in, or a "
                               "placeholder whose fault has not reached the backing "
                               "page (its probes: swapin-vs-collapse, cow-vs-collapse)",
}


# ---------------------------------------------------------------- (a) agreement

@pytest.fixture(scope="module")
def pairs() -> Iterator[dict[tuple[str, str], PairResult]]:
    """Both verdicts of every pair, computed once for the module."""
    if shutil.which("spin") is None or shutil.which("gcc") is None:
        pytest.skip("spin (or gcc) is not installed: apt-get install spin")
    order = sorted(PAIRS, key=lambda p: p[0] != "cow-rename")     # the slow ones first
    yield {(r.scenario, r.policy): r for r in compare_all(order, jobs=JOBS)}


@needs_spin
@pytest.mark.parametrize(("scenario", "policy"), PAIRS, ids=[f"{s}:{p}" for s, p in PAIRS])
@pytest.mark.slow
def test_spin_agrees_with_faultline(pairs: dict[tuple[str, str], PairResult],
                                    scenario: str, policy: str) -> None:
    r = pairs[(scenario, policy)]
    spin_says = f"{r.spin.verdict} ({r.spin.report.violation})"
    assert r.faultline.exhaustive or r.faultline.verdict == "violation", \
        f"faultline's DPOR of {scenario} under {policy} did not finish its bound"
    assert r.spin.verdict == r.faultline.verdict, (
        f"{scenario} under {policy}: SPIN says {spin_says}, faultline (DPOR within "
        f"{r.faultline.preemption_bound} preemptions) says {r.faultline.verdict}")


def test_every_policy_is_expressed_or_has_a_reason() -> None:
    assert set(SWITCHES) | set(NOT_EXPRESSIBLE) == set(all_policies())
    assert not set(SWITCHES) & set(NOT_EXPRESSIBLE)
    assert set(PAIRS) == {(s, p) for s in SCENARIOS for p in SWITCHES}


# ---------------------------------------------------------------- (b) not vacuous

@needs_spin
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.slow
def test_scenario_reaches_its_probes(scenario: str) -> None:
    r = run_spin(scenario, "sbusy", probes=True)
    reached = {v.removeprefix("probe_") for v in r.report.violations
               if kind_of(v) == "probe"}
    assert set(SCENARIOS[scenario].probes) <= reached
    assert all(kind_of(v) == "probe" for v in r.report.violations)


@needs_spin
@pytest.mark.slow
def test_landed_policies_pass_and_seeded_bugs_are_found(
        pairs: dict[tuple[str, str], PairResult]) -> None:
    for (scenario, policy), r in pairs.items():
        if policy in ("xbusy", "sbusy"):
            assert r.spin.verdict == "pass", (scenario, policy, r.spin.report.violation)
    for name in SWITCHES:
        if name not in MUTANTS:
            continue
        found = [s for s in SCENARIOS if pairs[(s, name)].spin.verdict == "violation"]
        if MUTANTS[name].not_a_bug or name in NOT_REACHED_HERE:
            assert not found, f"{name} is argued harmless or unreached, yet SPIN finds it"
        else:
            assert found, f"SPIN finds the seeded bug {name} on none of the scenarios"


# ---------------------------------------------------------------- (c) the command

@needs_spin
@pytest.mark.slow
def test_cli_exit_statuses_and_json() -> None:
    clean = run("spin", "rw-race-shadow", "--policy", "xbusy")
    assert clean.exit_code == 0, clean.output
    assert "pass" in clean.stdout and "states stored" in clean.stdout
    bad = run("spin", "rw-race-shadow", "--policy", "first-m-early-release", "--trail")
    assert bad.exit_code == 1, bad.output
    assert "violation" in bad.stdout and "vm_fault_object" in bad.stdout
    js = run("spin", "cow-rename", "--policy", "rename-sbusied", "--json")
    assert js.exit_code == 1
    doc = json.loads(js.stdout)
    assert doc["verdict"] == "violation"
    assert doc["violation"] == "P2_identity_change_of_page_not_xbusied"
    assert doc["kind"] == "panic" and doc["trail"]
    assert doc["states_stored"] > 0 and doc["transitions"] >= doc["states_stored"]
    assert set(doc["seconds"]) == {"spin", "gcc", "pan", "total"}


def test_cli_unsupported_scenario_and_policies() -> None:
    r = run("spin", "rw-race-top")
    assert r.exit_code == 2
    assert "rw-race-top" in r.stderr
    assert "rw-race-shadow, shared-shadow-inval, cow-rename" in r.stderr
    r = run("spin", "cow-rename", "--policy", "busy-sleep-no-restart")
    assert r.exit_code == 2
    assert "not expressible" in r.stderr and "no munmap" in r.stderr
    r = run("spin", "cow-rename", "--policy", "no-such-policy")
    assert r.exit_code == 2 and "unknown policy" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_without_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spin_run.shutil, "which", lambda name: None)
    r = run("spin", "rw-race-shadow")
    assert r.exit_code == 2
    assert "apt-get install spin" in r.stderr
    with pytest.raises(SpinToolMissing):
        spin_run.require_tools()


def test_unsupported_names_raise() -> None:
    with pytest.raises(SpinUnsupported, match="supports rw-race-shadow"):
        spin_model.generate("cow-vs-collapse", "sbusy")
    with pytest.raises(SpinUnsupported, match="not expressible"):
        spin_model.generate("cow-rename", "cow-chases-chain")
    top = spin_model.generate("shared-shadow-inval", "no-shootdown")
    assert "#define MUTANT_NO_SHOOTDOWN" in top and '#include "shared-shadow-inval.pml"' in top


# ---------------------------------------------------------------- (d) pan's output

VIOLATION = """\
pan:1: assertion violated  !(memory_read_returns_stale_value) (at depth 359)
pan: wrote rw-race-shadow.pml.trail

(Spin Version 6.5.2 -- 6 December 2019)
Warning: Search not completed
	+ Partial Order Reduction

Full statespace search for:
	never claim         	- (none specified)
	assertion violations	+
	cycle checks       	- (disabled by -DSAFETY)
	invalid end states	+

State-vector 156 byte, depth reached 359, errors: 1
     5994 states, stored
     1031 states, matched
     7025 transitions (= stored+matched)
     3906 atomic steps
hash conflicts:         1 (resolved)

Stats on memory usage (in Megabytes):
    1.052	equivalent memory usage for states (stored*(State-vector + overhead))
    1.351	actual memory usage for states
   32.000	memory used for hash table (-w22)
    5.341	memory used for DFS stack (-m100000)
   38.610	total actual memory usage



pan: elapsed time 0.01 seconds
"""

CLEAN = """\

(Spin Version 6.5.2 -- 6 December 2019)
	+ Partial Order Reduction

Full statespace search for:
	never claim         	- (none specified)
	assertion violations	+
	cycle checks       	- (disabled by -DSAFETY)
	invalid end states	+

State-vector 156 byte, depth reached 376, errors: 0
    13438 states, stored
     2604 states, matched
    16042 transitions (= stored+matched)
     8957 atomic steps
hash conflicts:         5 (resolved)

Stats on memory usage (in Megabytes):
    2.358	equivalent memory usage for states (stored*(State-vector + overhead))
    2.435	actual memory usage for states
   32.000	memory used for hash table (-w22)
    5.341	memory used for DFS stack (-m100000)
   39.684	total actual memory usage



pan: elapsed time 0.02 seconds
pan: rate    671900 states/second
"""

DEADLOCK_HEAD = "pan:1: invalid end state (at depth 211)\npan: wrote x.pml.trail\n"
DEPTH_HEAD = "error: max search depth too small\n"


def test_parse_a_violation() -> None:
    r = parse_pan(VIOLATION)
    assert (r.verdict, r.violation, r.kind, r.depth) == \
        ("violation", "memory_read_returns_stale_value", "memory", 359)
    assert (r.states_stored, r.states_matched, r.transitions) == (5994, 1031, 7025)
    assert (r.depth_reached, r.state_vector, r.errors) == (359, 156, 1)
    assert r.memory_mb == pytest.approx(38.61) and r.pan_seconds == pytest.approx(0.01)
    assert not r.depth_limited
    require_verdict(r)


def test_parse_a_clean_run() -> None:
    r = parse_pan(CLEAN)
    assert (r.verdict, r.violation, r.kind, r.errors) == ("pass", None, None, 0)
    assert (r.states_stored, r.transitions, r.depth_reached) == (13438, 16042, 376)
    require_verdict(r)


def test_parse_a_deadlock_and_a_depth_limit() -> None:
    d = parse_pan(DEADLOCK_HEAD + VIOLATION.split("\n", 2)[2])
    assert (d.verdict, d.violation, d.kind, d.depth) == \
        ("violation", "invalid end state", "deadlock", 211)
    cut = parse_pan(DEPTH_HEAD + CLEAN.replace("errors: 0", "errors: 0"))
    assert cut.depth_limited and cut.verdict == "pass"
    with pytest.raises(SpinModelError, match="max search depth too small"):
        require_verdict(cut)


def test_parse_refuses_what_it_cannot_read() -> None:
    with pytest.raises(SpinModelError):
        parse_pan("pan: out of memory\n")
    limit = parse_pan(VIOLATION.replace("memory_read_returns_stale_value",
                                        "model_limit_pager_io"))
    assert limit.kind == "model-limit"
    with pytest.raises(SpinModelError, match="leaves out"):
        require_verdict(limit)


def test_kinds_and_trail() -> None:
    assert kind_of("O3_shadowed_page_stays_mapped") == "invariant"
    assert kind_of("P4_writable_mapping_of_page_not_xbusied") == "panic"
    assert kind_of("invalid end state") == "deadlock"
    steps = parse_trail(
        "  6:\tproc  4 (Thread:1) vm_fault.pml:597 (state 27)\t[((kind==1))]\n"
        "  7:\tproc  0 (:init::1) cow-rename.pml:48 (state 1)\t[obj_backing[0] = 1]\n"
        " 61:\tproc  2 (Thread:1) vm_fault.pml:157 (state 103)\t[obj_wlock[fo] = me]\n")
    assert [(s.step, s.pid, s.line, s.statement) for s in steps] == \
        [(6, 4, 597, "((kind==1))"), (61, 2, 157, "obj_wlock[fo] = me")]
