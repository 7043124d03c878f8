"""The scenario language's additions (issue 16): setup for forked children, run-time
mmap, waitpid, a read's `expect VALUE`, `[check] end_invariants`, the `fault` mark on
accesses no mapping ever covers, the default DPOR bound, and docs/scenarios.md (its
generated ops table and its worked example).  Each addition has a loader test and an
error-message test; a few also run, to show that the words mean what the docs say."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from faultline.check.explore import (
    DEFAULT_PREEMPTIONS,
    CheckConfig,
    build_execution,
    check_scenario,
)
from faultline.check.judging.invariants import StructureChecker
from faultline.check.search.strategies import RandomStrategy
from faultline.scenario import api
from faultline.scenario.loader import (
    ScenarioError,
    check_addresses,
    load_catalog,
    load_text,
    parse_op,
    validate,
)
from faultline.scenario.spec import (
    OP_NAMES,
    CheckSpec,
    MappingSpec,
    Op,
    ProcessSpec,
    ThreadSpec,
    ops_table,
)
from faultline.scenario.toml_out import to_toml
from faultline.scenario.world import World

SRC = "lang.toml"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "scenarios.md"

# Every addition at once: c's setup, c's mmap of the file, P's waitpid, expectations,
# a marked stray read, and [check].
ALL = """\
name = "lang"
description = "every addition of the scenario language"

[check]
end_invariants = true

[[file]]
name = "data"
pages = [10, 11, 12]

[[process]]
name = "p0"
[[process.map]]
addr = 0x1000
pages = 1
init = [1]
[[process.map]]
addr = 0x2000
pages = 1
share = "shared"

[[process]]
name = "c"
parent = "p0"
setup = ["write 0x1000 5", "write 0x2000 6"]

[[thread]]
name = "P"
process = "p0"
ops = ["fork c", "read 0x1000 expect 1", "read 0x2000 expect 6"]

[[thread]]
name = "C"
process = "c"
ops = ["read 0x1000 expect 5", "mmap 0x5000 1 rw shared data 1", "read 0x5000 expect 11",
       "exit"]

[[thread]]
name = "W"
process = "p0"
ops = ["waitpid c", "read 0x9000 fault"]
"""


def load(text: str = ALL) -> object:
    return load_text(text, SRC)


def error(text: str) -> ScenarioError:
    """The ScenarioError loading `text` raises, checked to be one CLI-ready line."""
    with pytest.raises(ScenarioError) as info:
        load_text(text, SRC)
    err = info.value
    assert "\n" not in str(err) and str(err).startswith(f"{SRC}: {err.key}: expected ")
    return err


def edited(old: str, new: str, text: str = ALL) -> str:
    assert old in text
    return text.replace(old, new, 1)


def dpor(s: object, policy: str = "sbusy", bound: int = 1) -> object:
    return check_scenario(s, CheckConfig(policy=policy, strategy="dpor",  # type: ignore[arg-type]
                                         preemptions=(bound,), shrink=False))


def test_every_addition_loads_and_round_trips() -> None:
    s = load()
    c = s.processes[1]                                              # type: ignore[attr-defined]
    assert c.parent == "p0" and c.setup == (Op("write", addr=0x1000, value=5),
                                            Op("write", addr=0x2000, value=6))
    assert s.check == CheckSpec(end_invariants=True)              # type: ignore[attr-defined]
    assert load_text(to_toml(s), SRC) == s                         # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
def test_every_addition_runs_as_documented(policy: str) -> None:
    r = dpor(load(), policy)
    assert r.verdict == "pass" and r.exhaustive, r.counterexample   # type: ignore[attr-defined]


# ---------------------------------------------------------------- 1. setup of a child

def test_a_child_setup_is_read() -> None:
    s = load()
    assert [str(op) for op in s.processes[1].setup] == ["write 0x1000 5",  # type: ignore[attr-defined]
                                                        "write 0x2000 6"]


def test_a_child_setup_error_names_the_childs_setup() -> None:
    err = error(edited('setup = ["write 0x1000 5"', 'setup = ["write 0x1000"'))
    assert err.key == "process[1].setup[0]"
    assert err.expected == "'write ADDR VALUE [fault]'"
    err = error(edited('parent = "p0"\n', 'parent = "p0"\nimage = "ls"\n'))
    assert err.key == "process[1].image"
    assert err.expected == "no image in a process with a parent (it starts as a fork of 'p0')"


def test_a_child_setup_runs_after_the_fork_and_before_the_forkers_next_op() -> None:
    # P reads the shared page right after its fork: c's setup has written it by then,
    # in every interleaving; c's private page is c's own (P still reads 1).
    text = edited('ops = ["waitpid c", "read 0x9000 fault"]', 'ops = ["read 0x2000"]')
    r = dpor(load(text))
    assert r.verdict == "pass" and r.exhaustive, r.counterexample   # type: ignore[attr-defined]


# ---------------------------------------------------------------- 2. mmap at run time

@pytest.mark.parametrize(("text", "op"), [
    ("mmap 0x5000 2 rw", Op("mmap", addr=0x5000, pages=2, prot="rw")),
    ("mmap 0x5000 1 r shared", Op("mmap", addr=0x5000, pages=1, prot="r", share="shared")),
    ("mmap 0x5000 1 rw private data 2",
     Op("mmap", addr=0x5000, pages=1, prot="rw", share="private", file="data", offset=2)),
    ("mmap 0x5000 1 rx data 0", Op("mmap", addr=0x5000, pages=1, prot="rx", file="data",
                                    offset=0)),
])
def test_mmap_is_parsed(text: str, op: Op) -> None:
    assert parse_op(text, SRC, "k") == op
    assert parse_op(str(op), SRC, "k") == op


@pytest.mark.parametrize(("op", "words"), [
    ("mmap 0x5001 1 rw", "with ADDR a page-aligned"),
    ("mmap 0x5000 0 rw", "with PAGES an integer from 1 to 1024"),
    ("mmap 0x5000 1 wx", "with PROT one of: none, r, rw, rx, rwx"),
    ("mmap 0x5000 1 rw data", "'mmap ADDR PAGES PROT [private | shared] [FILE OFFSET]'"),
    ("mmap 0x5000 1 rw nofile 0", "with FILE the name of a [[file]]"),
    ("mmap 0x5000 2 rw data 2", "with OFFSET + PAGES at most 3 (file 'data' has 3 pages)"),
    ("mmap 0x2000 1 rw", "disjoint from every range process 'c' may hold "
                         "(process[0].map[1] maps [0x2000, 0x3000))"),
])
def test_mmap_is_checked_like_a_map(op: str, words: str) -> None:
    err = error(edited('"mmap 0x5000 1 rw shared data 1"', f'"{op}"'))
    assert err.key == "thread[1].ops[1]" and err.got == op
    assert words in str(err)


def test_mmaps_of_one_process_must_not_overlap() -> None:
    err = error(edited('"exit"', '"mmap 0x5000 1 r", "exit"'))
    assert err.key == "thread[1].ops[1]"
    assert "(thread[1].ops[3] maps [0x5000, 0x6000))" in err.expected


def test_a_run_time_mmap_of_a_file_shares_its_page() -> None:
    text = """\
name = "mmap-shares"
description = "a run-time shared mapping of a file page, written and seen elsewhere"
[[file]]
name = "data"
pages = [10, 11]
[[process]]
name = "p"
[[process]]
name = "q"
[[process.map]]
addr = 0x1000
pages = 2
file = "data"
prot = "r"
share = "shared"
[[thread]]
name = "T"
process = "p"
ops = ["mmap 0x5000 1 rw shared data 1", "read 0x5000 expect 11", "write 0x5000 9",
       "post m", "mmap 0x6000 1 rw", "read 0x6000 expect 0"]
[[thread]]
name = "U"
process = "p"
ops = ["read 0x5000"]
[[thread]]
name = "Q"
process = "q"
ops = ["wait m", "read 0x2000 expect 9"]
"""
    r = dpor(load(text))
    assert r.verdict == "pass" and r.exhaustive, r.counterexample   # type: ignore[attr-defined]


# ---------------------------------------------------------------- 3. waitpid

WAITPID = """\
name = "waitpid-orders"
description = "the parent reads what its child wrote before exiting"
[[process]]
name = "p0"
[[process.map]]
addr = 0x2000
pages = 1
share = "shared"
[[process]]
name = "c"
parent = "p0"
[[thread]]
name = "P"
process = "p0"
ops = ["fork c", "waitpid c", "read 0x2000 expect 6"]
[[thread]]
name = "C"
process = "c"
ops = ["write 0x2000 6", "exit"]
"""


def test_waitpid_is_read() -> None:
    s = load(WAITPID)
    assert s.threads[0].ops[1] == Op("waitpid", target="c")   # type: ignore[attr-defined]
    assert str(s.threads[0].ops[1]) == "waitpid c"              # type: ignore[attr-defined]


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('"waitpid c"', '"waitpid p0"', "thread[0].ops[1]",
     "'waitpid CHILD' with CHILD a [[process]] whose parent is 'p0'"),
    ('"write 0x2000 6", "exit"', '"write 0x2000 6"', "thread[0].ops[1]",
     "'waitpid CHILD' with an 'exit' op in a thread or the setup of 'c'"),
    ('name = "p0"\n', 'name = "p0"\nsetup = ["waitpid c"]\n', "process[0].setup[0]",
     "in a thread's ops, not in a setup"),
    ('"waitpid c"', '"waitpid"', "thread[0].ops[1]", "'waitpid CHILD'"),
])
def test_waitpid_errors(old: str, new: str, key: str, words: str) -> None:
    err = error(edited(old, new, WAITPID))
    assert err.key == key and words in err.expected


@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
def test_waitpid_waits_for_the_childs_exit(policy: str) -> None:
    assert dpor(load(WAITPID), policy).verdict == "pass"        # type: ignore[attr-defined]
    unordered = load(edited('"fork c", "waitpid c", ', '"fork c", ', WAITPID))
    r = dpor(unordered, policy)
    ce = r.counterexample                                        # type: ignore[attr-defined]
    assert r.verdict == "violation" and ce.violation["kind"] == "expect"  # type: ignore[attr-defined]


def test_waitpid_has_a_flag_per_waited_child() -> None:
    s = load(WAITPID)
    world = World(s, "sbusy")                                    # type: ignore[arg-type]
    assert list(world.exited) == ["c"] and not world.exited["c"].posted
    ex, _, _ = build_execution(s, "sbusy", RandomStrategy("1"), [])  # type: ignore[arg-type]
    assert ex.run().violation is None


# ---------------------------------------------------------------- 4. read ... expect VALUE

def test_expect_is_read() -> None:
    assert parse_op("read 0x1000 expect 7", SRC, "k") == Op("read", addr=0x1000, value=7)
    assert parse_op("read 0x1000 expect -0x10", SRC, "k").value == -16
    assert str(Op("read", addr=0x1000, value=7)) == "read 0x1000 expect 7"


@pytest.mark.parametrize(("op", "expected"), [
    ("read 0x1000 expect", "'read ADDR [expect VALUE | fault]'"),
    ("read 0x1000 7", "'read ADDR [expect VALUE | fault]'"),
    ("read 0x1000 expect 1 fault", "'read ADDR [expect VALUE | fault]'"),
    ("read 0x1000 expect seven", "'read ADDR [expect VALUE | fault]' with VALUE an integer"),
])
def test_expect_errors(op: str, expected: str) -> None:
    err = error(edited('"read 0x1000 expect 1"', f'"{op}"'))
    assert err.key == "thread[0].ops[1]" and err.expected.startswith(expected)


def test_an_unmet_expectation_is_a_violation_naming_thread_address_and_values() -> None:
    s = load(edited('"read 0x1000 expect 1"', '"read 0x1000 expect 2"'))
    r = check_scenario(s, CheckConfig(runs=3, shrink=False))    # type: ignore[arg-type]
    v = r.counterexample.violation                               # type: ignore[union-attr]
    assert r.verdict == "violation" and v["kind"] == "expect" and v["thread"] == "P"
    assert v["message"].startswith("thread P: p0 read 0x1000 -> 1, expected 2 (the "
                                   "scenario's expect): ")


# ---------------------------------------------------------------- 5. [check]

def _structure_every_step(s: object, every_step: bool = True) -> bool:
    ex, _, _ = build_execution(s, "sbusy", RandomStrategy("1"), [],  # type: ignore[arg-type]
                               every_step=every_step)
    [checker] = [o for o in ex.observers if isinstance(o, StructureChecker)]
    return checker.every_step


def test_end_invariants_is_read_and_turns_step_checks_off() -> None:
    on, off = load(), load(edited("end_invariants = true", "end_invariants = false"))
    assert on.check.end_invariants and not off.check.end_invariants  # type: ignore[attr-defined]
    assert load(WAITPID).check == CheckSpec()                    # type: ignore[attr-defined]
    assert not _structure_every_step(on)                         # the scenario asks
    assert _structure_every_step(off)
    assert not _structure_every_step(off, every_step=False)      # --end-invariants asks
    assert "[check]\nend_invariants = true" in to_toml(on)       # type: ignore[arg-type]
    assert "[check]" not in to_toml(off)                         # type: ignore[arg-type]


@pytest.mark.parametrize(("old", "new", "key", "expected"), [
    ("end_invariants = true", 'end_invariants = "yes"', "check.end_invariants",
     "true or false"),
    ("end_invariants = true", "every_step = false", "check.every_step",
     "one of: end_invariants"),
    ("[check]\nend_invariants = true", "check = 1", "check", "a table"),
])
def test_check_table_errors(old: str, new: str, key: str, expected: str) -> None:
    err = error(edited(old, new))
    assert (err.key, err.expected) == (key, expected)


# ---------------------------------------------------------------- 6. the `fault` mark

def test_addresses_mapped_at_some_time_need_no_mark() -> None:
    # A range with one page mapped; mapped until a munmap; inherited from the parent;
    # mapped by the process's own mmap (ALL's C reads 0x5000).
    check_addresses(load(edited('"read 0x9000 fault"', '"mlock 0x1000 3"')))  # type: ignore[arg-type]
    load(edited('"waitpid c"', '"munmap 0x1000 1", "read 0x1000", "waitpid c"'))
    load(edited('"read 0x1000 expect 5"', '"read 0x2000"'))
    assert parse_op("read 0x9000 fault", SRC, "k") == Op("read", addr=0x9000, fault=True)
    assert parse_op("mlock 0x9000 2 fault", SRC, "k").fault


@pytest.mark.parametrize(("old", "new", "key", "words"), [
    ('"read 0x9000 fault"', '"read 0x9000"', "thread[2].ops[1]",
     "expected an address that a mapping of process 'p0' covers at some time (its maps, "
     "images and mmaps, or what it inherits), or the mark `fault` ('read ADDR [expect "
     "VALUE | fault]') if the access must fault there, got 'read 0x9000'"),
    ('"read 0x9000 fault"', '"write 0x9008 3"', "thread[2].ops[1]", "got 'write 0x9008 3'"),
    ('"read 0x9000 fault"', '"mlock 0x8000 4"', "thread[2].ops[1]", "got 'mlock 0x8000 4'"),
    ('"read 0x9000 fault"', '"read 0x1000 fault"', "thread[2].ops[1]",
     "`fault` only where no mapping of process 'p0' ever covers the address "
     "(process[0].map[0] maps [0x1000, 0x2000)"),
    # The child's mmap is the child's: its parent never maps 0x5000.
    ('"read 0x9000 fault"', '"read 0x5000"', "thread[2].ops[1]", "process 'p0'"),
    ('"read 0x9000 fault"', '"pageout 0x9000 fault"', "thread[2].ops[1]",
     "expected 'pageout ADDR'"),
])
def test_a_stray_access_is_a_load_error_naming_the_op(old: str, new: str, key: str,
                                                      words: str) -> None:
    err = error(edited(old, new))
    assert err.key == key and words in str(err)


def test_the_catalog_loads_with_the_check() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 27
    for s in catalog:
        check_addresses(s)


def test_python_built_scenarios_are_marked_when_written() -> None:
    # validate() leaves the check to files (generated scenarios touch holes on purpose);
    # to_toml writes the marks, and the marked file loads back to an equal scenario.
    s = api.scenario("stray", "a read of an unmapped page",
                     processes=[ProcessSpec("p", mappings=(MappingSpec(0x1000, 1),))],
                     threads=[ThreadSpec("T", "p", api.ops("read 0x1000", "read 0x7000"))])
    validate(s)
    with pytest.raises(ScenarioError, match=r"thread\[0\]\.ops\[1\]"):
        check_addresses(s)
    text = to_toml(s)
    assert '"read 0x7000 fault"' in text and '"read 0x1000"' in text
    assert load_text(text, s.source) == s


@pytest.mark.parametrize("op", [Op("fork", target="c", fault=True),
                                Op("read", addr=0x1000, value=1, fault=True),
                                Op("read", addr=0x1000, fault=1)])  # type: ignore[arg-type]
def test_the_mark_is_only_where_the_syntax_has_it(op: Op) -> None:
    s = api.scenario("ok", "d", processes=[ProcessSpec("p", mappings=(MappingSpec(0x1000, 1),))],
                     threads=[ThreadSpec("T", "p", api.ops("read 0x1000"))])
    with pytest.raises(ScenarioError) as info:
        validate(dataclasses.replace(s, threads=(ThreadSpec("T", "p", (op,)),)))
    assert info.value.key == "thread[0].ops[0]"
    assert "whose fault is False, or True on an access" in info.value.expected


# ---------------------------------------------------------------- 7. the default bound

TWO_READERS = """\
name = "two-readers"
description = "two threads read one anonymous page"
[[process]]
name = "p"
[[process.map]]
addr = 0x1000
pages = 1
[[thread]]
name = "A"
process = "p"
ops = ["read 0x1000"]
[[thread]]
name = "B"
process = "p"
ops = ["read 0x1000"]
"""


def test_a_scenario_without_bound_gets_the_default_and_says_so() -> None:
    s = load(TWO_READERS)
    assert s.bound is None                                       # type: ignore[attr-defined]
    r = check_scenario(s, CheckConfig(strategy="dpor", shrink=False))  # type: ignore[arg-type]
    assert r.preemption_bound == DEFAULT_PREEMPTIONS == 2 and r.exhaustive
    assert r.bound_reason is not None and r.bound_reason.startswith("default: ")
    assert "states no [bound]" in r.bound_reason and "2 preemptions" in r.bound_reason
    assert r.to_json()["bound_reason"] == r.bound_reason


def test_an_explicit_bound_is_kept() -> None:
    s = load(TWO_READERS)
    one = check_scenario(s, CheckConfig(strategy="dpor", preemptions=(1,)))  # type: ignore[arg-type]
    assert one.preemption_bound == 1 and one.bound_reason is None
    free = check_scenario(s, CheckConfig(strategy="dpor", preemptions=(None,),  # type: ignore[arg-type]
                                         max_executions=5))
    assert free.preemption_bound is None and free.bound_reason is None


# ---------------------------------------------------------------- ops table and dispatch

def test_every_op_has_a_case_in_the_world() -> None:
    source = inspect.getsource(World.do_op)
    assert [n for n in OP_NAMES if f'case "{n}":' not in source] == []


# ---------------------------------------------------------------- 8. docs/scenarios.md

def _between(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def test_the_docs_ops_table_is_the_generated_one() -> None:
    doc = DOCS.read_text(encoding="utf-8")
    table = _between(doc, "<!-- ops-table: generated by faultline.scenario.spec.ops_table(); "
                          "do not edit by hand -->\n", "<!-- /ops-table -->")
    assert table == ops_table(), "docs/scenarios.md's ops table is stale: paste ops_table()"


def _worked_example() -> str:
    doc = DOCS.read_text(encoding="utf-8")
    block = _between(doc, "<!-- worked-example:", "\n```\n")
    match = re.search(r"```toml\n(.*)", block, re.DOTALL)
    assert match is not None
    return match.group(1) + "\n"


@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
def test_the_docs_worked_example_passes(policy: str) -> None:
    s = load_text(_worked_example(), "docs/scenarios.md")
    assert s.name == "my-rw-race" and s.expect[policy] == "pass"
    assert s.threads[1].ops[1] == Op("read", addr=0x1000, value=7)
    r = check_scenario(s, CheckConfig(policy=policy, strategy="dpor", shrink=False))
    assert r.verdict == "pass" and r.exhaustive and r.preemption_bound == 1
    assert r.executions < 100                       # "a few dozen executions"


def test_the_docs_worked_example_catches_the_seeded_bug() -> None:
    s = load_text(_worked_example(), "docs/scenarios.md")
    r = check_scenario(s, CheckConfig(policy="first-m-early-release", strategy="dpor",
                                      shrink=False))
    ce = r.counterexample
    assert r.verdict == "violation" and ce is not None and ce.violation is not None
    assert ce.violation["kind"] == "invariant" and "(O3)" in ce.violation["message"]
    assert r.executions < 100
