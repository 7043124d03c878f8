"""Race detection (--race-detect): small programs against the runtime, each run under
every interleaving and under DPOR, then the whole catalog, then one regression test per
model fix the mode led to.

Locking legend: (L) the box lock  (A) atomic  (B) the box busy word
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from faultline.check.explore import CheckConfig, check_scenario, replay, run_once
from faultline.check.judging.racedetect import RaceDetector
from faultline.check.search import dpor
from faultline.check.search.strategies import RandomStrategy, run_seed
from faultline.kern.vm_page import VmPage, locked_by
from faultline.rt import context, ops
from faultline.rt.context import Tracked, logging_accesses
from faultline.rt.execution import (
    Execution,
    FaultlineInternalError,
    Hooks,
    Outcome,
    Thread,
)
from faultline.rt.sync import BusyWord, Lock
from faultline.scenario.loader import catalog_names, load_catalog, load_scenario

Body = Callable[[], Coroutine[Any, Any, None]]


@dataclass(eq=False, slots=True)
class Box(Tracked):
    """A shared record: `x` under the box lock, `y` atomic."""

    name: str = locked_by("C", "box")
    x: int = locked_by("L", 0)
    y: int = locked_by("A", 0)
    ready: bool = locked_by("A", False)

    def __repr__(self) -> str:
        return self.name


Program = Callable[[], list[Body]]


def _main(bodies: list[Body]) -> Coroutine[Any, Any, None]:
    # Threads are spawned by a main thread, so their whole code runs inside steps.
    async def main() -> None:
        for i, body in enumerate(bodies):
            await ops.spawn(f"t{i + 1}", "p", body())
    return main()


def execution(program: Program, strategy: Any, observers: list[Hooks]) -> Execution:
    ex = Execution(strategy, [*observers, RaceDetector()], 200)
    ex.spawn("main", "-", _main(program()))
    return ex


class _Follow:
    """Follow a prefix, then take the first enabled thread; remember enabled sets."""

    def __init__(self, prefix: list[int]) -> None:
        self.prefix = prefix
        self.enabled: list[list[int]] = []

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        en = [t.tid for t in enabled]
        self.enabled.append(en)
        i = ex.steps
        tid = self.prefix[i] if i < len(self.prefix) else en[0]
        return next(t for t in enabled if t.tid == tid)


def every_interleaving(program: Program) -> list[Outcome]:
    """The outcome of every schedule of `program` (depth-first, re-executing)."""
    outs: list[Outcome] = []
    stack: list[list[int]] = [[]]
    with logging_accesses():
        while stack:
            prefix = stack.pop()
            f = _Follow(prefix)
            out = execution(program, f, []).run()
            outs.append(out)
            for i in range(len(prefix), len(f.enabled)):
                for alt in f.enabled[i][1:]:
                    stack.append([*out.schedule[:i], alt])
    return outs


def races(outs: list[Outcome]) -> list[str]:
    return [o.violation.message for o in outs
            if o.violation is not None and o.violation.kind == "data-race"]


def dpor_finds_race(program: Program) -> bool:
    with logging_accesses():
        r = dpor.explore(lambda rec: execution(program, rec, [rec]))  # type: ignore[arg-type]
    v = r.violation.violation if r.violation is not None else None
    assert v is None or v.kind == "data-race", v
    return v is not None


def verdict(program: Program) -> str:
    """'race' if every schedule reports one, 'clean' if none does, else 'some'; DPOR
    must agree on whether there is one at all."""
    outs = every_interleaving(program)
    others = [o.violation for o in outs
              if o.violation is not None and o.violation.kind != "data-race"]
    assert not others, others
    n = len(races(outs))
    assert dpor_finds_race(program) == (n > 0)
    return "clean" if n == 0 else "race" if n == len(outs) else "some"


# ---------------------------------------------------------------- locks

def unlocked_write_locked_read() -> list[Body]:
    b, m = Box(), Lock("box", "m", "mtx")

    async def writer() -> None:
        await ops.pause("w")
        b.x = 1

    async def reader() -> None:
        await ops.acquire(m)
        _ = b.x
        await ops.release(m)
    return [writer, reader]


def both_locked() -> list[Body]:
    b, m = Box(), Lock("box", "m", "mtx")

    async def writer() -> None:
        await ops.acquire(m)
        b.x += 1
        await ops.release(m)
    return [writer, writer]


def test_unlocked_write_against_locked_read_is_a_race() -> None:
    assert verdict(unlocked_write_locked_read) == "race"


def test_accesses_under_the_same_lock_do_not_race() -> None:
    assert verdict(both_locked) == "clean"


def shared_readers_then_writer(write_under_shared: bool) -> Program:
    def build() -> list[Body]:
        b, lk = Box(), Lock("box", "lk", "rw")

        async def reader() -> None:
            await ops.acquire(lk, "s")
            if write_under_shared:
                b.x = 2
            else:
                _ = b.x
            await ops.release(lk)

        async def reader2() -> None:
            await ops.acquire(lk, "s")
            _ = b.x
            await ops.release(lk)

        async def writer() -> None:
            await ops.acquire(lk, "x")
            b.x = 1
            await ops.release(lk)
        return [reader, reader2, writer]
    return build


def test_shared_holders_reading_do_not_race_and_a_writer_comes_after_them() -> None:
    assert verdict(shared_readers_then_writer(False)) == "clean"


def test_a_write_under_a_shared_hold_races_with_another_shared_holder() -> None:
    # Even when the holds do not overlap: a shared release does not order a later
    # shared acquisition (DPOR treats them as independent, so may never overlap them).
    outs = every_interleaving(shared_readers_then_writer(True))
    msgs = races(outs)
    assert msgs and all("box.x of box" in m for m in msgs)
    serial = [o for o in outs if o.schedule[:6] == [0, 0, 0, 1, 1, 2]]
    assert serial and all(o.violation is not None for o in serial)


def try_lock(record: list[bool]) -> Program:
    def build() -> list[Body]:
        b, m = Box(), Lock("box", "m", "mtx")

        async def holder() -> None:
            await ops.acquire(m)
            b.x = 1
            await ops.release(m)

        async def trier() -> None:
            got = await ops.try_acquire(m)
            record.append(got)
            _ = b.x
            if got:
                await ops.release(m)
        return [holder, trier]
    return build


def test_a_failed_try_lock_orders_nothing() -> None:
    record: list[bool] = []
    outs = every_interleaving(try_lock(record))
    assert len(record) == len(outs) and True in record and False in record
    for got, out in zip(record, outs):
        v = out.violation
        # A success orders the read (before or after the holder); a failure while the
        # holder holds the lock leaves it racing with the holder's write.
        assert (v is not None) == (not got), (got, out.schedule, v)


def test_downgrade_orders_later_shared_holders_and_upgrade_earlier_releases() -> None:
    def build() -> list[Body]:
        b, lk = Box(), Lock("box", "lk", "rw")

        async def writer() -> None:
            await ops.acquire(lk, "x")
            b.x = 1
            await ops.downgrade(lk)
            _ = b.x
            await ops.release(lk)

        async def upgrader() -> None:
            await ops.acquire(lk, "s")
            _ = b.x
            if await ops.try_upgrade(lk):
                b.x = 3
            await ops.release(lk)
        return [writer, upgrader]
    assert verdict(build) == "clean"


# ---------------------------------------------------------------- busy words

def busy_program(writer_action: str, reader_action: str) -> Program:
    """A writer busies the box (then writes x), a reader busies it (then reads x)."""
    def build() -> list[Body]:
        b, w = Box(), BusyWord("boxbusy")
        release = {"tryx": "xunbusy", "trys": "sunbusy"}

        async def writer() -> None:
            if await ops.busy(w, writer_action):
                b.x = 1
                await ops.busy(w, release[writer_action])

        async def reader() -> None:
            if await ops.busy(w, reader_action):
                _ = b.x
                await ops.busy(w, release[reader_action])
            else:
                await ops.pause("busy")
        return [writer, reader]
    return build


def test_busy_word_orders_exclusive_and_shared_holders() -> None:
    assert verdict(busy_program("tryx", "trys")) == "clean"
    assert verdict(busy_program("tryx", "tryx")) == "clean"


def test_a_write_under_a_shared_busy_races_with_another_sharer() -> None:
    assert verdict(busy_program("trys", "trys")) == "race"


def test_busy_downgrade_then_sunbusy_orders_the_next_exclusive_holder() -> None:
    def build() -> list[Body]:
        b, w = Box(), BusyWord("boxbusy")

        async def first() -> None:
            if await ops.busy(w, "tryx"):
                b.x = 1
                await ops.busy(w, "downgrade")
                _ = b.x
                await ops.busy(w, "sunbusy")

        async def second() -> None:
            if await ops.busy(w, "tryx"):
                b.x = 2
                await ops.busy(w, "xunbusy")
        return [first, second]
    assert verdict(build) == "clean"


# ---------------------------------------------------------------- sleep, wakeup, spawn

def handoff(write_after_wakeup: bool) -> Program:
    """The consumer sleeps, the producer waits until it does, writes x and wakes it:
    only wakeup -> resume orders the write before the consumer's read."""
    def build() -> list[Body]:
        b = Box()

        def going_to_sleep() -> bool:
            b.ready = True              # inside the sleep: an atomic access of the chan
            return True

        async def consumer() -> None:
            await ops.sleep(b, "wait", None, going_to_sleep)
            _ = b.x

        async def producer() -> None:
            while not await ops.atomic(b, "asleep?", lambda: b.ready, write=False):
                await ops.pause("spin")
            if not write_after_wakeup:
                b.x = 1
            await ops.wakeup(b)
            if write_after_wakeup:
                b.x = 1
        return [consumer, producer]
    return build


def test_wakeup_orders_the_waker_before_the_sleeper() -> None:
    assert verdict(handoff(False)) == "clean"
    assert verdict(handoff(True)) == "race"


def spawn_program(write_after_spawn: bool) -> Program:
    def build() -> list[Body]:
        b = Box()

        async def child() -> None:
            _ = b.x

        async def parent() -> None:
            await ops.pause("start")
            if not write_after_spawn:
                b.x = 1
            await ops.spawn("child", "p", child())
            if write_after_spawn:
                b.x = 1
        return [parent]
    return build


def test_spawn_orders_the_parent_before_the_child() -> None:
    assert verdict(spawn_program(False)) == "clean"
    assert verdict(spawn_program(True)) == "race"


# ---------------------------------------------------------------- atomics

def atomic_program(reader: str, writer: str) -> Program:
    def build() -> list[Body]:
        b = Box()

        async def w() -> None:
            if writer == "atomic_add":
                await ops.atomic_add(b, "y", 1)
            else:
                await ops.pause("w")
                b.y = 1

        async def r() -> None:
            if reader == "racy_load":
                await ops.racy_load(b, "y")
            elif reader == "atomic_add":
                await ops.atomic_add(b, "y", 2)
            else:
                await ops.pause("r")
                _ = b.y
        return [w, r]
    return build


def test_racy_load_against_a_plain_write_is_exempt() -> None:
    assert verdict(atomic_program("racy_load", "plain")) == "clean"


def test_plain_read_against_an_atomic_add_is_a_race() -> None:
    assert verdict(atomic_program("plain", "atomic_add")) == "race"


def test_atomics_do_not_race_with_each_other() -> None:
    assert verdict(atomic_program("atomic_add", "atomic_add")) == "clean"
    assert verdict(atomic_program("racy_load", "atomic_add")) == "clean"


def test_an_atomic_op_orders_what_its_writer_did_before_it() -> None:
    def build() -> list[Body]:
        b = Box()

        async def publisher() -> None:
            await ops.pause("p")
            b.x = 1
            await ops.atomic(b, "set ready", lambda: setattr(b, "ready", True))

        async def consumer() -> None:
            if await ops.atomic(b, "ready?", lambda: b.ready, write=False):
                _ = b.x
        return [publisher, consumer]
    assert verdict(build) == "clean"


def test_an_atomic_ops_access_to_another_object_is_plain() -> None:
    # The op names `a`; reading `b` inside it is invisible to DPOR, so it is checked
    # like plain code.
    def build() -> list[Body]:
        a, b = Box("a"), Box("b")

        async def writer() -> None:
            await ops.pause("w")
            b.y = 1

        async def reader() -> None:
            await ops.atomic(a, "peek", lambda: b.y, write=False)
        return [writer, reader]
    assert verdict(build) == "race"


@pytest.mark.parametrize("third", [False, True])
def test_inline_atomic_store_and_touch(third: bool) -> None:
    # Inline atomics (a PTE store, vm_page_bits_swap) are atomic writes: they do not
    # race with atomic ops, but a plain read of the field still races with them.
    def build() -> list[Body]:
        b = Box()

        async def one() -> None:
            await ops.pause("1")
            context.atomic_store(b, "y", 1)

        async def two() -> None:
            await ops.atomic_add(b, "y", 1)
            context.touch(b, field="x", atomic=True)

        async def three() -> None:
            await ops.pause("3")
            _ = b.y
        return [one, two, three] if third else [one, two]
    assert verdict(build) == ("race" if third else "clean")


# ---------------------------------------------------------------- what is not logged

class Peeker(Hooks):
    """An observer that reads model state after every step (like the invariants)."""

    def __init__(self, box: Box) -> None:
        self.box = box

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        _ = self.box.x


def test_setup_and_observers_are_not_logged() -> None:
    b = Box()

    async def writer() -> None:
        await ops.pause("w")
        b.x = 1
        await ops.pause("w")

    async def other() -> None:
        await ops.pause("o")
        await ops.pause("o")

    with logging_accesses():
        for i in range(20):
            ex = Execution(RandomStrategy(str(i)), [Peeker(b), RaceDetector()], 100)
            b.x = 5                      # before any step
            ex.spawn("w", "p", writer())
            ex.spawn("o", "p", other())
            out = ex.run()
            assert out.violation is None, out.violation


def test_the_message_names_field_locks_threads_sites_and_steps() -> None:
    outs = every_interleaving(unlocked_write_locked_read)
    msg = races(outs)[0]
    assert msg.startswith("data race on box.x of box (locked_by L: L the box lock):")
    assert "plain write by t1 (thread 1) in writer at test_race_detect.py:" in msg
    assert "plain read by t2 (thread 2) in reader at test_race_detect.py:" in msg
    assert ", step " in msg
    v = next(o.violation for o in outs if o.violation is not None)
    assert {v.details["first"]["access"], v.details["second"]["access"]} == \
        {"plain write", "plain read"}


def test_logging_hooks_come_and_go() -> None:
    assert "__getattribute__" not in vars(Tracked)
    plain = Tracked.__setattr__
    with logging_accesses(), logging_accesses():
        assert "__getattribute__" in vars(Tracked) and context.accesses_logged()
    assert "__getattribute__" not in vars(Tracked) and Tracked.__setattr__ is plain
    assert VmPage.__setattr__ is plain and not context.accesses_logged()


def test_the_detector_refuses_to_run_without_the_hooks() -> None:
    ex = execution(both_locked, RandomStrategy("1"), [])
    with pytest.raises(FaultlineInternalError):
        ex.run()


# ---------------------------------------------------------------- the catalog

CATALOG_RUNS = 40


@pytest.mark.parametrize("policy", ["sbusy", "xbusy"])
@pytest.mark.slow
def test_the_catalog_has_no_data_race(policy: str) -> None:
    """Every scenario: 40 seeded random runs, then exhaustive DPOR without preemptions.
    About 10 s per policy."""
    bad = []
    for s in load_catalog():
        for strategy, kw in (("random", {"runs": CATALOG_RUNS}),
                             ("dpor", {"preemptions": (0,)})):
            r = check_scenario(s, CheckConfig(policy=policy, strategy=strategy, shrink=False,
                                              race_detect=True, **kw))  # type: ignore[arg-type]
            v = r.counterexample and r.counterexample.violation
            # A finding the scenario records (docs/findings.md) is not a data race.
            if r.verdict != "pass" and not (s.expect.get(policy) == "violation"
                                            and v and v["kind"] != "data-race"):
                bad.append((s.name, strategy, v))
            assert strategy == "random" or r.exhaustive
    assert not bad, bad


def test_a_data_race_counterexample_replays_and_says_so() -> None:
    # With the PTE stores unmarked (as before the mode), zero-fill-parallel races.
    from faultline.kern import pmap
    s = load_scenario("zero-fill-parallel")
    orig = pmap.touch

    def unmarked(obj: Any, write: bool = True, field: str | None = None,
                 atomic: bool = False) -> None:
        orig(obj, write, field)
    pmap.touch = unmarked  # type: ignore[assignment]
    try:
        r = check_scenario(s, CheckConfig(runs=10, race_detect=True))
        assert r.verdict == "violation" and r.counterexample is not None
        assert r.counterexample.violation["kind"] == "data-race"
        assert r.counterexample.options["race_detect"] is True
        again = replay(s, r.counterexample)
        v = again.outcome.violation
        assert v is not None and v.kind == "data-race"
    finally:
        pmap.touch = orig  # type: ignore[assignment]


def test_race_detection_is_off_by_default() -> None:
    s = load_scenario("zero-fill-parallel")
    out = run_once(s, "sbusy", RandomStrategy(run_seed(1, 0)))
    assert out.outcome.violation is None
    assert "__getattribute__" not in vars(Tracked)


# ---------------------------------------------------------------- model fixes

# Each race the mode found in the catalog, with a run set that reports it once the fix
# is reverted (checked by hand when the fix was made).
FIXES = {
    "proc.nthreads: thread start counts with atomic_add (world.start_thread)":
        ("zero-fill-parallel", "dpor", 0),
    "vm_object.flags: racy load in vm_object_deallocate":
        ("cow-vs-collapse", "random", 5),
    "vm_object.flags: racy load in vm_fault_can_cow_rename":
        ("shared-shadow-inval-collapse", "random", 16),
    "vm_page.valid: racy load in vm_fault_object_may_sbusy":
        ("rw-race-top", "dpor", 0),
    "vm_page.content: PTE stores are atomic for the MMU (pmap)":
        ("zero-fill-parallel", "dpor", 0),
    "vm_page.valid: pmap_enter asserts P3 only for busied pages":
        ("rw-race-top", "dpor", 0),
    "vm_page.dirty: vm_page_dirty is an atomic swap":
        ("hard-cow-vs-fork", "dpor", 0),
    "vm_object.flags: deallocate_anon asserts OBJ_ANON under the shadow's lock":
        ("cow-vs-collapse", "dpor", 0),
}


@pytest.mark.parametrize("fix", sorted(FIXES))
def test_model_fix_regression(fix: str) -> None:
    name, strategy, n = FIXES[fix]
    assert name in catalog_names()
    for policy in ("sbusy", "xbusy"):
        kw: dict[str, Any] = {"runs": n} if strategy == "random" else {"preemptions": (n,)}
        r = check_scenario(load_scenario(name), CheckConfig(
            policy=policy, strategy=strategy, race_detect=True, shrink=False, **kw))
        assert r.verdict == "pass", r.counterexample
