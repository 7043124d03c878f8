"""The memory oracle accepts exactly what FreeBSD may do, and no more.

Two kinds of test: whole scenarios run under both policies (the shapes the kernel really
produces must pass), and notes fed to the oracle by hand (a result the kernel cannot
produce must still fail)."""

from __future__ import annotations

from typing import Any

import pytest

from faultline.check.explore import CheckConfig, check_scenario
from faultline.rt.execution import Violation
from faultline.rt.ops import Note
from faultline.scenario.loader import load_text
from faultline.scenario.oracle import MemoryOracle
from faultline.scenario.spec import FileSpec, Scenario

PRIVATE_AND_SHARED = """\
name = "{name}"
description = "a private and a shared mapping of one file page"
step_bound = 20000
[[file]]
name = "data"
pages = [10]
[[process]]
name = "p1"
[[process.map]]
addr = 0x1000
pages = 1
prot = "rw"
file = "data"
[[process.map]]
addr = 0x2000
pages = 1
prot = "rw"
share = "shared"
file = "data"
"""

WRITE_FAULT_VS_MPROTECT = PRIVATE_AND_SHARED.format(name="write-fault-vs-mprotect") + """
[[thread]]
name = "W"
process = "p1"
ops = ["write 0x1000 5", "post w"]
[[thread]]
name = "M"
process = "p1"
ops = ["mprotect 0x1000 1 r", "post m"]
[[thread]]
name = "S"
process = "p1"
ops = ["wait w", "wait m", "write 0x2000 9", "read 0x1000"]
"""

MLOCK_THEN_SHARED_WRITER = PRIVATE_AND_SHARED.format(name="mlock-then-shared-writer") + """
[[thread]]
name = "T"
process = "p1"
ops = ["mlock 0x1000 1", "write 0x2000 9", "read 0x1000"]
"""


@pytest.mark.parametrize("text", [WRITE_FAULT_VS_MPROTECT, MLOCK_THEN_SHARED_WRITER],
                         ids=["write-fault-vs-mprotect", "mlock-then-shared-writer"])
@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
@pytest.mark.slow
def test_a_private_file_page_may_be_copied_by_a_fault_that_does_not_store(
        text: str, policy: str) -> None:
    """A write fault copies the page before the store, which a racing mprotect can make
    fail; mlock of a writable private mapping copies every page.  Either way the
    private mapping stops following the file (issue: the oracle's private-file rule)."""
    s = load_text(text, "<test>")
    for cfg in (CheckConfig(policy=policy, runs=300, shrink=False),
                CheckConfig(policy=policy, strategy="dpor", preemptions=(0, 1, 2),
                            shrink=False)):
        r = check_scenario(s, cfg)
        assert r.verdict == "pass", r.counterexample


def test_mlock_really_freezes_the_private_page() -> None:
    """Not vacuous: in the mlock shape the kernel does return the frozen value."""
    s = load_text(MLOCK_THEN_SHARED_WRITER, "<test>")
    from faultline.check.explore import run_once
    from faultline.check.search.strategies import RandomStrategy
    res = run_once(s, "sbusy", RandomStrategy("1"), record=True)
    reads = [e.data for e in res.events if e.kind == "note" and e.what == "user-access"
             and not e.data["write"]]
    assert reads and reads[-1]["value"] == 10


# ---------------------------------------------------------------- notes fed by hand

def oracle() -> MemoryOracle:
    s = Scenario(name="hand", description="d", files=(FileSpec("data", (10,)),))
    o = MemoryOracle(s)
    for addr, shared in ((0x1000, False), (0x2000, True)):
        note(o, "mmap", proc="p1", addr=addr, pages=1, prot="rw", shared=shared,
             object="vn:data", offset=0, inherit="copy")
    return o


def note(o: MemoryOracle, kind: str, **data: Any) -> None:
    o.noted(None, None, Note(kind, data))  # type: ignore[arg-type]


def access(o: MemoryOracle, va: int, value: int | None, write: bool = False,
           error: str = "KERN_PROTECTION_FAILURE") -> None:
    d: dict[str, Any] = {"proc": "p1", "va": va, "write": write, "value": value}
    if value is None:
        d["error"] = error
    note(o, "user-access", **d)


def test_a_private_file_page_never_copied_follows_the_file() -> None:
    o = oracle()
    access(o, 0x2000, 9, write=True)
    access(o, 0x1000, 9)
    o = oracle()
    access(o, 0x2000, 9, write=True)
    with pytest.raises(Violation, match="expected 9"):
        access(o, 0x1000, 10)          # a stale read: nothing can have copied the page


def test_a_failed_store_may_have_frozen_only_the_values_the_file_had() -> None:
    o = oracle()
    note(o, "mprotect-begin", proc="p1", addr=0x1000, pages=1, prot="r")
    note(o, "map-protect", map="p1", start=0x1000, end=0x2000, prot=1)
    note(o, "user-store-begin", proc="p1", va=0x1000)
    note(o, "mprotect-end", proc="p1", addr=0x1000, pages=1, prot="r", rv="KERN_SUCCESS")
    access(o, 0x1000, None, write=True)
    access(o, 0x2000, 9, write=True)
    access(o, 0x1000, 10)              # the copy the failed store's fault made
    access(o, 0x2000, 8, write=True)
    with pytest.raises(Violation, match="expected 10"):
        access(o, 0x1000, 8)           # once seen copied, it stays private


def test_a_copy_window_admits_no_value_the_file_never_held() -> None:
    o = oracle()
    note(o, "mlock-begin", proc="p1", addr=0x1000, pages=1)
    access(o, 0x2000, 9, write=True)
    note(o, "mlock-end", proc="p1", addr=0x1000, pages=1, rv="KERN_SUCCESS")
    access(o, 0x2000, 7, write=True)
    with pytest.raises(Violation, match="expected 7 or 9 or 10"):
        access(o, 0x1000, 11)
    o = oracle()
    note(o, "mlock-begin", proc="p1", addr=0x1000, pages=1)
    access(o, 0x2000, 9, write=True)
    note(o, "mlock-end", proc="p1", addr=0x1000, pages=1, rv="KERN_SUCCESS")
    access(o, 0x2000, 7, write=True)
    access(o, 0x1000, 9)               # frozen while mlock ran
