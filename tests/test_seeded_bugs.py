"""Seeded bugs (kern.mutants): each is caught by the catalog, through a consequence."""

from __future__ import annotations

import json

import pytest

from cli_support import run
from faultline.check.explore import CheckConfig, check_scenario, replay
from faultline.kern.mutants import MUTANTS, Mutant
from faultline.kern.policy import POLICIES, all_policies, policy_named
from faultline.scenario.loader import load_catalog, load_scenario

CAUGHT = ("sbusy-write", "rename-sbusied", "no-shootdown", "first-m-early-release",
          "busy-sleep-no-restart", "prefault-maps-invalid", "soft-fast-below-top",
          "early-valid-cow-copy", "cow-map-unlocked", "cow-chases-chain",
          "collapse-guesses-shadow", "deallocate-before-unbusy", "lost-wakeup")
ARGUED = ("sbusy-renamable", "rename-no-recheck", "early-unbusy-m-cow",
          "relookup-ignores-object", "sbusy-no-valid-recheck")


# Each caught seeded bug, the violation kind that catches it on its probe, and words of
# the message: the consequence, never a restatement of the protection removed.
CONSEQUENCES = [
    ("sbusy-write", "panic", "not xbusied (P4)"),        # vm_page_aflag_set PGA_WRITEABLE
    ("rename-sbusied", "panic", "not xbusied by us"),    # vm_page_rename's busy assert
    ("no-shootdown", "invariant", "a shadowed page stays mapped (O3)"),
    ("first-m-early-release", "invariant", "a shadowed page stays mapped (O3)"),
    ("busy-sleep-no-restart", "invariant", "where there is no map entry"),
    ("prefault-maps-invalid", "invariant", "maps invalid page"),
    ("soft-fast-below-top", "invariant", "not a page of the entry's top object"),
    ("early-valid-cow-copy", "invariant", "a shadowed page stays mapped (O3)"),
    ("cow-map-unlocked", "invariant", "a shadowed page stays mapped (O3)"),
    ("cow-chases-chain", "invariant", "a shadowed page stays mapped (O3)"),
    ("collapse-guesses-shadow", "panic", "freeing mapped page"),
    ("deallocate-before-unbusy", "deadlock", "asleep on obj1.pip (objtrm)"),
    ("lost-wakeup", "deadlock", "(vmpfw)"),
]


def test_every_seeded_bug_is_caught_or_argued() -> None:
    assert set(CAUGHT) | set(ARGUED) == set(MUTANTS)
    assert {n for n, cls in MUTANTS.items() if cls.not_a_bug} == set(ARGUED)
    assert [m for m, _, _ in CONSEQUENCES] == list(CAUGHT)


# The command over a few quick ones (every probe of each is checked, so all of CAUGHT
# takes minutes; test_the_consequence_that_catches_each covers each one's catch).
QUICK = ("no-shootdown", "prefault-maps-invalid", "deallocate-before-unbusy", "cow-chases-chain")


@pytest.mark.slow
def test_the_command_reports_caught_seeded_bugs() -> None:
    r = run("mutants", *QUICK, "--jobs", "1", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["mutant"] for row in rows] == list(QUICK)
    for row in rows:
        assert row["caught"] and not row["not_a_bug"], row
        assert row["scenario"] in MUTANTS[row["mutant"]].probes
        assert row["violation_kind"] in {"panic", "invariant", "memory", "deadlock",
                                         "no-progress"}
        assert row["executions_to_violation"] >= 1 and row["counterexample_steps"] > 0


@pytest.mark.parametrize("mutant,kind,words", CONSEQUENCES)
@pytest.mark.slow
def test_the_consequence_that_catches_each(mutant: str, kind: str, words: str) -> None:
    probe = {"soft-fast-below-top": "soft-fast-vs-sbusy"}.get(mutant)
    s = load_scenario(probe or MUTANTS[mutant].probes[0])
    r = check_scenario(s, CheckConfig(policy=mutant, strategy="dpor"))
    ce = r.counterexample
    assert r.verdict == "violation" and ce is not None and ce.violation is not None
    assert ce.violation["kind"] == kind and words in ce.violation["message"]
    again = replay(s, ce)                   # a counterexample file replays under its policy
    assert again.outcome.violation is not None
    assert again.outcome.violation.message == ce.violation["message"]


def test_seeded_bugs_are_policies_by_name_but_not_landed() -> None:
    assert set(POLICIES) == {"xbusy", "sbusy"}
    assert set(MUTANTS) <= set(all_policies())
    assert policy_named("no-shootdown").name == "no-shootdown"
    catalog = {s.name for s in load_catalog()}
    for cls in MUTANTS.values():
        assert cls.__doc__ and cls.breaks and cls.probes
        assert set(cls.probes) <= catalog


@pytest.mark.slow
def test_check_accepts_a_seeded_bug_and_exits_1() -> None:
    r = run("check", "rw-race-top", "--policy", "sbusy-write", "--strategy", "dpor",
            "--json", "--jobs", "1")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["results"][0]["verdict"] == "violation"


def test_mutants_bad_input() -> None:
    r = run("mutants", "nosuch")
    assert r.exit_code == 2 and "unknown seeded bug" in r.stderr
    r = run("mutants", "--strategy", "magic")
    assert r.exit_code == 2 and "unknown strategy" in r.stderr


class _Harmless(Mutant):
    """A variant that changes nothing a probe can see: it must survive, unargued."""

    name = "test-harmless"
    breaks = "nothing"
    probes = ("zero-fill-parallel",)


def test_a_survivor_fails_the_command_and_an_argued_one_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A seeded bug no probe catches makes `mutants` exit 1; one argued harmless is
    reported as "not a bug" and does not (few runs: the command's verdicts, not the
    search, are under test)."""
    r = run("mutants", "sbusy-renamable", "--strategy", "random", "--runs", "5",
            "--jobs", "1", "--json")
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)
    assert row["not_a_bug"] and not row["caught"]
    monkeypatch.setitem(MUTANTS, _Harmless.name, _Harmless)
    r = run("mutants", "test-harmless", "--strategy", "random", "--runs", "5",
            "--jobs", "1")
    assert r.exit_code == 1
    assert "SURVIVED" in r.stdout and "survived: test-harmless" in r.stdout


def test_every_mutant_overrides_one_decision_and_documents_it() -> None:
    from faultline.kern.policy import SbusyPolicy
    for cls in MUTANTS.values():
        own = {k for k, v in vars(cls).items() if callable(v) and not k.startswith("_")}
        assert own, cls.name
        if cls.base == "xbusy":             # the base policy's answer is restated
            own.discard("vm_fault_object_may_sbusy")
        assert all(hasattr(SbusyPolicy, k) for k in own), (cls.name, own)
        assert len(cls.__doc__ or "") > 80
