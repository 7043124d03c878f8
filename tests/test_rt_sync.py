"""Unit tests for the runtime primitives (rt.sync), driven through rt.execution.

Each test builds a few small coroutine programs, runs them in an `Execution` under
`RandomStrategy(seed)` (over many seeds), `ReplayStrategy`, or by stepping chosen threads
with `Execution.step`, and checks what the primitive guarantees: mutual exclusion,
sharing, wake-ups, try-op results, and the violations the driver reports.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultline.check.search.strategies import RandomStrategy, ReplayStrategy
from faultline.rt import context, ops
from faultline.rt.execution import (
    Execution,
    FaultlineInternalError,
    Hooks,
    Outcome,
    ReplayDivergence,
    Thread,
)
from faultline.rt.sync import (
    BlockCount,
    BusyWord,
    Flag,
    Lock,
    blockcount_acquire,
    blockcount_release,
    blockcount_sleep,
    flag_post,
    flag_wait,
    lock_assert,
    mtx_lock,
    mtx_trylock,
    mtx_unlock,
    rw_downgrade,
    rw_rlock,
    rw_try_rlock,
    rw_try_upgrade,
    rw_try_wlock,
    rw_unlock,
    rw_wlock,
)
from faultline.rt.trace import TraceRecorder, schedule_from_str, schedule_to_str
from faultline.rt.witness import Witness

Coro = Coroutine[Any, Any, Any]


# ---------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def _restore_curthread() -> Iterator[None]:
    """Keep rt.context clean between tests (see test_context_not_leaked_after_spawn)."""
    saved = context.current
    yield
    context.current = saved


@dataclass(eq=False)
class Box:
    """A shared memory cell for test programs."""

    label: str = "box"
    n: int = 0
    cur: int = 0
    overlap: int = 0
    log: list[Any] = field(default_factory=list)

    def __repr__(self) -> str:
        return self.label


def start(strategy: Any, *progs: Coro, observers: Sequence[Hooks] = (),
          step_bound: int = 20_000) -> tuple[Execution, list[Thread]]:
    """An execution with one thread per program (named t0, t1, ...), not yet run."""
    ex = Execution(strategy, observers, step_bound)
    threads = [ex.spawn(f"t{i}", "test", p) for i, p in enumerate(progs)]
    return ex, threads


def run(progs: Sequence[Coro], seed: int | str = 0, **kw: Any) -> tuple[Execution, Outcome]:
    """Run `progs` to the end under RandomStrategy(seed)."""
    ex, _ = start(RandomStrategy(seed), *progs, **kw)
    return ex, ex.run()


async def enter(occ: Box) -> None:
    """Enter a critical section, counting an overlap if somebody else is inside."""
    if await ops.atomic_add(occ, "cur", 1) != 0:
        occ.overlap += 1


async def leave(occ: Box) -> None:
    """Leave a critical section."""
    await ops.atomic_add(occ, "cur", -1)


async def split_increment(box: Box) -> None:
    """box.n += 1 as two separate atomic steps (a load, then a store)."""
    v = await ops.racy_load(box, "n")
    await ops.racy_store(box, "n", v + 1)


def sleepers_check(word: BusyWord) -> Callable[[], bool]:
    """The vm_page_busy_sleep check: sleep only if busied, setting the waiters bit."""
    def check() -> bool:
        if not word.busied():
            return False
        word.waiters = True
        return True
    return check


# ---------------------------------------------------------------- mutex

def _incrementers(m: Lock | None, box: Box, occ: Box, nthreads: int,
                  rounds: int) -> list[Coro]:
    async def worker() -> None:
        for _ in range(rounds):
            if m is not None:
                await mtx_lock(m)
            await enter(occ)
            await split_increment(box)
            await leave(occ)
            if m is not None:
                await mtx_unlock(m)
    return [worker() for _ in range(nthreads)]


def test_unprotected_split_increment_loses_updates_for_some_seed() -> None:
    lost, overlapped = [], 0
    for seed in range(200):
        box, occ = Box(), Box("occ")
        _, out = run(_incrementers(None, box, occ, 3, 2), seed)
        assert out.violation is None
        assert box.n <= 6
        if box.n < 6:
            lost.append(seed)
        overlapped += occ.overlap
    assert lost, "the unprotected counter never lost an update: the test proves nothing"
    assert overlapped > 0


def test_mutex_gives_mutual_exclusion_and_exact_count_over_200_seeds() -> None:
    for seed in range(200):
        m, box, occ = Lock("test mtx", "m0", "mtx"), Box(), Box("occ")
        ex, out = run(_incrementers(m, box, occ, 3, 2), seed)
        assert out.violation is None, (seed, out.violation)
        assert box.n == 6, seed
        assert occ.overlap == 0, seed
        assert not m.locked()
        assert all(t.done and not t.held for t in ex.threads)


def _trylock_run(seed: int) -> tuple[Outcome, list[bool]]:
    m = Lock("test mtx", "m0", "mtx")
    held, tried, freed = Flag("held"), Flag("tried"), Flag("freed")
    got: list[bool] = []

    async def holder() -> None:
        await mtx_lock(m)
        await flag_post(held)
        await flag_wait(tried)
        await mtx_unlock(m)
        await flag_post(freed)

    async def trier() -> None:
        await flag_wait(held)
        got.append(await mtx_trylock(m))
        await flag_post(tried)
        await flag_wait(freed)
        got.append(await mtx_trylock(m))
        await mtx_unlock(m)

    return run([holder(), trier()], seed)[1], got


def test_mtx_trylock_fails_while_held_and_succeeds_when_free() -> None:
    for seed in range(20):
        out, got = _trylock_run(seed)
        assert out.violation is None, (seed, out.violation)
        assert got == [False, True], seed


def test_thread_exiting_with_a_lock_held_panics() -> None:
    m = Lock("test mtx", "m0", "mtx")

    async def prog() -> None:
        await mtx_lock(m)

    assert "t0 exited holding [m0]" in _panic_of(prog())


def test_mutex_has_no_shared_mode() -> None:
    m = Lock("test mtx", "m0", "mtx")

    async def prog() -> None:
        await rw_rlock(m)

    _, out = run([prog()])
    assert out.violation is not None and out.violation.kind == "panic"
    assert "no shared mode" in out.violation.message


# ---------------------------------------------------------------- rwlock

def test_rw_readers_share_the_lock() -> None:
    # each reader waits, while holding the read lock, for the other to hold it too:
    # this can only finish if two readers hold the lock at once.
    for seed in range(50):
        lk = Lock("test rw", "rw0")
        a, b = Flag("a"), Flag("b")

        async def reader(mine: Flag, other: Flag, lk: Lock = lk) -> None:
            await rw_rlock(lk)
            await flag_post(mine)
            await flag_wait(other)
            lock_assert(lk, "s")
            await rw_unlock(lk)

        _, out = run([reader(a, b), reader(b, a)], seed)
        assert out.violation is None, (seed, out.violation)
        assert not lk.locked()


def test_rw_writer_excludes_readers_and_writers() -> None:
    shared_seen = 0
    for seed in range(100):
        lk = Lock("test rw", "rw0")
        readers, writers = Box("readers"), Box("writers")
        bad: list[str] = []

        async def reader(lk: Lock = lk, readers: Box = readers, writers: Box = writers,
                         bad: list[str] = bad) -> int:
            await rw_rlock(lk)
            others = await ops.atomic_add(readers, "n", 1)
            if await ops.racy_load(writers, "n"):
                bad.append("reader saw a writer")
            await ops.atomic_add(readers, "n", -1)
            await rw_unlock(lk)
            return others

        async def writer(lk: Lock = lk, readers: Box = readers, writers: Box = writers,
                         bad: list[str] = bad) -> None:
            await rw_wlock(lk)
            if await ops.atomic_add(writers, "n", 1):
                bad.append("two writers")
            if await ops.racy_load(readers, "n"):
                bad.append("writer saw a reader")
            await ops.atomic_add(writers, "n", -1)
            await rw_unlock(lk)

        log = Box("log")

        async def logged(c: Coro, log: Box = log) -> None:
            log.log.append(await c)

        _, out = run([logged(reader()), logged(reader()), writer(), writer(),
                      logged(reader())], seed)
        assert out.violation is None, (seed, out.violation)
        assert bad == [], (seed, bad)
        shared_seen += any(x for x in log.log)
    assert shared_seen > 0, "readers never overlapped: sharing was not exercised"


def _try_results_run(seed: int) -> tuple[Outcome, dict[str, bool], Lock]:
    lk = Lock("test rw", "rw0")
    held, done, freed, xheld, xdone = (Flag(n) for n in ("held", "done", "freed",
                                                           "xheld", "xdone"))
    res: dict[str, bool] = {}

    async def first() -> None:
        await rw_rlock(lk)
        await flag_post(held)
        await flag_wait(done)
        await rw_unlock(lk)
        await flag_post(freed)
        await flag_wait(xheld)
        res["try_r vs writer"] = await rw_try_rlock(lk)
        res["try_w vs writer"] = await rw_try_wlock(lk)
        await flag_post(xdone)

    async def second() -> None:
        await flag_wait(held)
        res["try_w vs reader"] = await rw_try_wlock(lk)
        res["try_r vs reader"] = await rw_try_rlock(lk)
        await rw_unlock(lk)
        await flag_post(done)
        await flag_wait(freed)
        res["try_w free"] = await rw_try_wlock(lk)
        await flag_post(xheld)
        await flag_wait(xdone)
        await rw_unlock(lk)

    return run([first(), second()], seed)[1], res, lk


def test_rw_try_wlock_and_try_rlock_results() -> None:
    for seed in range(30):
        out, res, lk = _try_results_run(seed)
        assert out.violation is None, (seed, out.violation)
        assert res == {"try_w vs reader": False, "try_r vs reader": True, "try_w free": True,
                       "try_r vs writer": False, "try_w vs writer": False}, seed
        assert not lk.locked()


def _try_upgrade_run(seed: int) -> tuple[Outcome, list[Any], Lock]:
    lk = Lock("test rw", "rw0")
    held, tried, left = Flag("held"), Flag("tried"), Flag("left")
    res: list[Any] = []

    async def upgrader() -> None:
        await rw_rlock(lk)
        await flag_wait(held)
        res.append(await rw_try_upgrade(lk))        # two readers: fails
        res.append(lk.held_by(context.curtid()))    # and we are still a reader
        await flag_post(tried)
        await flag_wait(left)
        res.append(await rw_try_upgrade(lk))        # sole reader: succeeds
        lock_assert(lk, "x")
        res.append((lk.owner, list(lk.readers)))
        await rw_unlock(lk)

    async def other() -> None:
        await rw_rlock(lk)
        await flag_post(held)
        await flag_wait(tried)
        await rw_unlock(lk)
        await flag_post(left)

    return run([upgrader(), other()], seed)[1], res, lk


def test_rw_try_upgrade_succeeds_only_for_a_sole_reader() -> None:
    for seed in range(30):
        out, res, lk = _try_upgrade_run(seed)
        assert out.violation is None, (seed, out.violation)
        assert res == [False, "s", True, (0, [])], seed
        assert not lk.locked()


def _downgrade_run(seed: int) -> tuple[Outcome, list[Any], Lock]:
    lk = Lock("test rw", "rw0")
    wl, rin = Flag("wl"), Flag("rin")
    seen: list[Any] = []

    async def writer() -> None:
        await rw_wlock(lk)
        await flag_post(wl)
        await rw_downgrade(lk)
        lock_assert(lk, "s")
        await flag_wait(rin)              # deadlocks unless the reader got in
        await rw_unlock(lk)

    async def reader() -> None:
        await flag_wait(wl)
        await rw_rlock(lk)
        seen.append(sorted(lk.readers))   # the downgraded writer still reads
        await flag_post(rin)
        await rw_unlock(lk)

    return run([writer(), reader()], seed)[1], seen, lk


def test_rw_downgrade_lets_another_reader_in() -> None:
    for seed in range(30):
        out, seen, lk = _downgrade_run(seed)
        assert out.violation is None, (seed, out.violation)
        assert seen == [[0, 1]], seed
        assert not lk.locked()


def _panic_of(prog: Coro) -> str:
    _, out = run([prog])
    assert out.violation is not None, "expected a panic"
    assert out.violation.kind == "panic", out.violation.message
    assert out.violation_thread == "t0"
    return out.violation.message


def test_rw_recursive_shared_acquisition_panics() -> None:
    lk = Lock("test rw", "rw0")

    async def prog() -> None:
        await rw_rlock(lk)
        await rw_rlock(lk)

    assert "recursive" in _panic_of(prog())


def test_rw_recursive_try_rlock_panics() -> None:
    lk = Lock("test rw", "rw0")

    async def prog() -> None:
        await rw_rlock(lk)
        await rw_try_rlock(lk)

    assert "recursive" in _panic_of(prog())


def test_rw_try_wlock_on_own_lock_fails_without_recursing() -> None:
    lk = Lock("test rw", "rw0")
    res: list[bool] = []

    async def prog() -> None:
        await rw_wlock(lk)
        res.append(await rw_try_wlock(lk))
        await rw_unlock(lk)

    _, out = run([prog()])
    assert out.violation is None
    assert res == [False]


@pytest.mark.parametrize("kind", ["mtx", "rw", "sx"])
def test_recursive_exclusive_acquisition_panics(kind: str) -> None:
    lk = Lock("test lock", "l0", kind)

    async def prog() -> None:
        await rw_wlock(lk)
        await rw_wlock(lk)

    assert "recursive" in _panic_of(prog())


def test_releasing_an_unheld_lock_panics() -> None:
    lk = Lock("test rw", "rw0")

    async def prog() -> None:
        await rw_unlock(lk)

    assert "does not hold it" in _panic_of(prog())


def test_releasing_a_lock_held_by_another_thread_panics() -> None:
    lk = Lock("test rw", "rw0")
    got = Flag("got")

    async def owner() -> None:
        await rw_wlock(lk)
        await flag_post(got)
        await ops.pause("hold")
        await rw_unlock(lk)

    async def thief() -> None:
        await flag_wait(got)
        await rw_unlock(lk)

    for seed in range(10):
        lk.owner = None
        got.posted = False
        _, out = run([owner(), thief()], seed)
        assert out.violation is not None and out.violation.kind == "panic"
        assert out.violation_thread == "t1"
        assert "released by thread 1" in out.violation.message


def test_upgrade_and_downgrade_without_the_right_hold_panic() -> None:
    lk = Lock("test rw", "rw0")

    async def up() -> None:
        await rw_try_upgrade(lk)

    async def down() -> None:
        await rw_downgrade(lk)

    async def down_shared() -> None:
        await rw_rlock(lk)
        await rw_downgrade(lk)

    assert "upgrade without a shared hold" in _panic_of(up())
    assert "downgrade without an exclusive hold" in _panic_of(down())
    lk.readers.clear()
    assert "downgrade without an exclusive hold" in _panic_of(down_shared())


def test_mutex_downgrade_panics() -> None:
    m = Lock("test mtx", "m0", "mtx")

    async def prog() -> None:
        await mtx_lock(m)
        await rw_downgrade(m)
        await mtx_unlock(m)

    _panic_of(prog())


# ---------------------------------------------------------------- sx as a map lock

def _map_upgrade_run(seed: int) -> tuple[Outcome, list[Any], Lock]:
    lk = Lock("vm map (user)", "map0", "sx")
    held, dropped = Flag("held"), Flag("dropped")
    log: list[Any] = []

    async def faulter() -> None:
        await rw_rlock(lk)
        await flag_wait(held)
        ok = await rw_try_upgrade(lk)
        log.append(("upgrade", ok))
        if not ok:                        # vm_map_lock_upgrade failed: relock
            await rw_unlock(lk)
            await flag_post(dropped)
            await rw_wlock(lk)
        lock_assert(lk, "x")
        log.append(("x", lk.owner, list(lk.readers)))
        await rw_unlock(lk)

    async def reader() -> None:
        await rw_rlock(lk)
        await flag_post(held)
        await flag_wait(dropped)
        log.append(("reader leaves",))
        await rw_unlock(lk)

    return run([faulter(), reader()], seed)[1], log, lk


def test_sx_map_lock_failed_upgrade_then_unlock_and_xlock() -> None:
    # vm_map_lock_upgrade: sx_try_upgrade fails while another reader holds the map,
    # so the caller drops its shared lock and takes the lock exclusively.
    for seed in range(40):
        out, log, lk = _map_upgrade_run(seed)
        assert out.violation is None, (seed, out.violation)
        assert log == [("upgrade", False), ("reader leaves",), ("x", 0, [])], seed
        assert not lk.locked()


# ---------------------------------------------------------------- sleep / wakeup

def test_sleep_with_false_check_does_not_sleep_and_keeps_interlock() -> None:
    m, chan = Lock("test mtx", "m0", "mtx"), Box("chan")
    res: list[Any] = []

    async def prog() -> None:
        await mtx_lock(m)
        res.append(await ops.sleep(chan, "never", m, lambda: False))
        res.append(m.held_by(context.curtid()))
        await mtx_unlock(m)

    ex, out = run([prog()])
    assert out.violation is None
    assert res == [False, "x"]
    assert out.steps == 3               # lock, sleep (not slept: no Resume step), unlock
    assert not ex.sleepq.get(id(chan))


def test_sleep_drops_interlock_atomically_no_lost_wakeup() -> None:
    slept_total = 0
    for seed in range(150):
        m, chan, cond = Lock("test mtx", "m0", "mtx"), Box("chan"), Box("cond")
        res: list[Any] = []

        async def sleeper(m: Lock = m, chan: Box = chan, cond: Box = cond,
                          res: list[Any] = res) -> None:
            await mtx_lock(m)
            while not cond.n:
                res.append(await ops.sleep(chan, "cv", m))
                res.append(m.held_by(context.curtid()))    # interlock was dropped
                await mtx_lock(m)
            await mtx_unlock(m)

        async def waker(m: Lock = m, chan: Box = chan, cond: Box = cond) -> None:
            await mtx_lock(m)
            cond.n = 1
            await ops.wakeup(chan)
            await mtx_unlock(m)

        _, out = run([sleeper(), waker()], seed)
        assert out.violation is None, (seed, out.violation)
        assert res in ([], [True, None]), (seed, res)
        slept_total += bool(res)
    assert 0 < slept_total < 150


def _sleeper(chan: Any, wmesg: str, order: list[str], name: str) -> Coro:
    async def prog() -> None:
        await ops.sleep(chan, wmesg)
        order.append(name)
    return prog()


def test_wakeup_wakes_all_sleepers() -> None:
    chan, order = Box("chan"), []

    async def waker() -> None:
        await ops.wakeup(chan)

    ex, ts = start(RandomStrategy(0), *(_sleeper(chan, "zz", order, f"s{i}")
                                        for i in range(3)), waker())
    for i in (2, 0, 1):
        ex.step(ts[i])
    assert [t.tid for t in ex.sleepq[id(chan)]] == [2, 0, 1]
    assert ex.enabled() == [ts[3]]
    assert {t.wmesg for t in ts[:3]} == {"zz"}
    ex.step(ts[3])
    assert all(t.woken for t in ts[:3])
    assert not ex.sleepq[id(chan)]
    out = ex.run()
    assert out.violation is None
    assert sorted(order) == ["s0", "s1", "s2"]
    assert all(t.wchan is None and t.wmesg == "" for t in ts[:3])


def test_wakeup_one_wakes_exactly_one_in_fifo_order() -> None:
    chan, order = Box("chan"), []
    woken: list[list[int]] = []

    async def waker() -> None:
        for _ in range(3):
            await ops.wakeup(chan, one=True)

    ex, ts = start(RandomStrategy(0), *(_sleeper(chan, "zz", order, f"s{i}")
                                        for i in range(3)), waker())
    for i in (1, 2, 0):
        ex.step(ts[i])
    for _ in range(3):
        ex.step(ts[3])
        woken.append([t.tid for t in ts[:3] if t.woken])
    assert woken == [[1], [1, 2], [0, 1, 2]]
    assert ex.run().violation is None
    assert sorted(order) == ["s0", "s1", "s2"]


def test_wakeup_with_no_sleepers_is_harmless_and_later_sleepers_stay_asleep() -> None:
    chan = Box("chan")

    async def waker() -> None:
        await ops.wakeup(chan)

    async def late() -> None:
        await ops.sleep(chan, "late")

    ex, (w, _) = start(RandomStrategy(0), waker(), late())
    ex.step(w)
    assert w.done
    out = ex.run()
    assert out.violation is not None and out.violation.kind == "deadlock"
    assert "t1 asleep on chan (late)" in out.violation.message


def test_never_woken_sleeper_is_a_deadlock_naming_thread_and_wmesg() -> None:
    chan = Box("rendezvous")

    async def sleeper() -> None:
        await ops.sleep(chan, "lonely")

    async def bystander() -> None:
        await ops.pause("p")

    for seed in range(5):
        _, out = run([bystander(), sleeper()], seed)
        assert out.violation is not None and out.violation.kind == "deadlock"
        msg = out.violation.message
        assert "t1" in msg and "lonely" in msg and "rendezvous" in msg, msg
        assert "t0" not in msg      # the bystander finished; only live threads are named


def test_deadlock_message_names_lock_holders() -> None:
    lk = Lock("test rw", "rw0")

    async def holder() -> None:
        await rw_rlock(lk)
        await ops.sleep(Box("forever"), "hold")

    async def blocked() -> None:
        await rw_wlock(lk)

    ex, (h, _) = start(RandomStrategy(0), holder(), blocked())
    ex.step(h)
    out = ex.run()
    assert out.violation is not None and out.violation.kind == "deadlock"
    assert "t1 blocked on test rw rw0 (x; readers t0)" in out.violation.message
    assert "t0 asleep on forever (hold)" in out.violation.message


# ---------------------------------------------------------------- blockcount

def _blockcount_progs(bc: BlockCount, m: Lock, nworkers: int, res: list[Any]) -> list[Coro]:
    async def waiter() -> None:
        slept = 0
        await mtx_lock(m)
        while await blockcount_sleep(bc, "bcwait", m):
            slept += 1
            await mtx_lock(m)
        res.append(("drained", bc.count, slept))
        await mtx_unlock(m)

    async def worker(i: int) -> None:
        await ops.pause(f"work {i}")
        await blockcount_release(bc)

    return [waiter(), *(worker(i) for i in range(nworkers))]


def test_blockcount_sleep_waits_until_the_count_drains() -> None:
    bc, m, res = BlockCount("pip", count=2), Lock("test mtx", "m0", "mtx"), []
    ex, ts = start(RandomStrategy(0), *_blockcount_progs(bc, m, 2, res))
    waiter, w1, w2 = ts
    ex.step(waiter)                       # lock m
    ex.step(waiter)                       # count 2: sleeps, dropping m
    assert bc.waiters and waiter.wchan is bc and waiter.wmesg == "bcwait"
    assert not m.locked()
    ex.step(w1)
    ex.step(w1)                           # release: 2 -> 1, no wake
    assert bc.count == 1 and not waiter.woken
    ex.step(w2)
    ex.step(w2)                           # release: 1 -> 0, wants a wakeup
    assert bc.count == 0 and not bc.waiters
    out = ex.run()
    assert out.violation is None
    assert res == [("drained", 0, 1)]


def test_blockcount_no_lost_wakeup_over_300_seeds() -> None:
    slept = 0
    for seed in range(300):
        bc, m, res = BlockCount("pip"), Lock("test mtx", "m0", "mtx"), []

        async def setup(bc: BlockCount = bc) -> None:
            await blockcount_acquire(bc, 3)

        ex, _ = start(RandomStrategy(seed), setup())
        for p in _blockcount_progs(bc, m, 3, res):
            ex.spawn(f"p{len(ex.threads)}", "test", p)
        # the setup thread must raise the count before anything else runs
        ex.step(ex.threads[0])
        out = ex.run()
        assert out.violation is None, (seed, out.violation)
        assert len(res) == 1 and res[0][1] == 0, (seed, res)
        slept += res[0][2] > 0
    assert slept > 0, "the waiter never slept: the wakeup path was not exercised"


def test_blockcount_underflow_panics() -> None:
    bc = BlockCount("pip", count=1)

    async def prog() -> None:
        await blockcount_release(bc, 2)

    assert "underflow" in _panic_of(prog())


# ---------------------------------------------------------------- busy word

def test_busy_tryx_trys_xunbusy_sunbusy_downgrade_tryupgrade_free() -> None:
    w = BusyWord("pg0")
    seen: list[Any] = []

    async def prog() -> None:
        tid = context.curtid()
        seen.append((await ops.busy(w, "tryx"), w.state()))          # U -> X
        seen.append((await ops.busy(w, "tryx"), w.state()))          # fails
        seen.append((await ops.busy(w, "trys"), w.state()))          # fails
        seen.append((await ops.busy(w, "tryupgrade"), w.state()))    # not shared: no
        seen.append((await ops.busy(w, "downgrade"), w.state()))     # X -> S(1)
        seen.append((await ops.busy(w, "trys"), w.state()))          # S(2)
        seen.append((await ops.busy(w, "tryx"), w.state()))          # fails
        seen.append((await ops.busy(w, "tryupgrade"), w.state()))    # S(2): no
        seen.append((await ops.busy(w, "sunbusy"), w.state()))       # S(1)
        seen.append((await ops.busy(w, "tryupgrade"), w.state()))    # S(1) -> X
        assert w.xowner == tid
        seen.append((await ops.busy(w, "xunbusy"), w.state()))       # U
        seen.append((await ops.busy(w, "trys"), w.state()))          # S(1)
        seen.append((await ops.busy(w, "sunbusy"), w.state()))       # U
        seen.append((await ops.busy(w, "tryx"), w.state()))
        seen.append((await ops.busy(w, "free"), w.state()))          # FREED
        seen.append((await ops.busy(w, "tryx"), w.state()))
        seen.append((await ops.busy(w, "trys"), w.state()))
        seen.append((await ops.busy(w, "tryupgrade"), w.state()))

    _, out = run([prog()])
    assert out.violation is None, out.violation
    assert seen == [
        (True, "X(0)"), (False, "X(0)"), (False, "X(0)"), (False, "X(0)"),
        (None, "S(1)"), (True, "S(2)"), (False, "S(2)"), (False, "S(2)"),
        (None, "S(1)"), (True, "X(0)"), (None, "U"), (True, "S(1)"), (None, "U"),
        (True, "X(0)"), (None, "FREED"), (False, "FREED"), (False, "FREED"),
        (False, "FREED")]
    assert w.busied()


def test_busy_gate_makes_tryx_and_trys_fail() -> None:
    w, gate = BusyWord("pg0"), BlockCount("object busy", count=1)
    res: list[Any] = []

    async def prog() -> None:
        res.append(await ops.busy(w, "tryx", gate))
        res.append(await ops.busy(w, "trys", gate))
        res.append(w.state())
        await blockcount_release(gate)
        res.append(await ops.busy(w, "trys", gate))
        res.append(await ops.busy(w, "sunbusy", gate))
        res.append(await ops.busy(w, "tryx", gate))
        res.append(w.state())
        gate.count = 1
        res.append(await ops.busy(w, "xunbusy", gate))   # releases ignore the gate
        res.append(w.state())

    _, out = run([prog()])
    assert out.violation is None, out.violation
    assert res == [False, False, "U", True, None, True, "X(0)", None, "U"]


@pytest.mark.parametrize("action, msg", [("xunbusy", "xunbusy by thread 0"),
                                         ("downgrade", "downgrade by non-owner 0"),
                                         ("free", "not exclusively busied by 0"),
                                         ("sunbusy", "not shared-busied")])
def test_busy_release_without_holding_panics(action: str, msg: str) -> None:
    w = BusyWord("pg0")

    async def prog() -> None:
        await ops.busy(w, action)

    assert msg in _panic_of(prog())


def test_busy_xunbusy_by_another_thread_panics() -> None:
    w = BusyWord("pg0")

    async def owner() -> None:
        await ops.busy(w, "tryx")
        await ops.sleep(Box("forever"), "hold")

    async def other() -> None:
        await ops.busy(w, "xunbusy")

    ex, (o, _) = start(RandomStrategy(0), owner(), other())
    ex.step(o)
    out = ex.run()
    assert out.violation is not None and out.violation.kind == "panic"
    assert out.violation_thread == "t1"
    assert "xunbusy by thread 1, busy state X(0)" in out.violation.message


def test_busy_sleeper_woken_by_xunbusy() -> None:
    w, order = BusyWord("pg0"), []

    async def owner() -> None:
        await ops.busy(w, "tryx")
        await ops.busy(w, "xunbusy")

    async def sleeper() -> None:
        order.append(await ops.sleep(w, "pbusy", None, sleepers_check(w)))

    ex, (o, s) = start(RandomStrategy(0), owner(), sleeper())
    ex.step(o)
    ex.step(s)
    assert w.state() == "X(0)+W" and s.wchan is w and not s.woken
    assert ex.enabled() == [o]
    ex.step(o)
    assert s.woken and w.state() == "U"
    assert ex.run().violation is None
    assert order == [True]


def test_busy_sleeper_not_sleeping_on_unbusied_word() -> None:
    w, order = BusyWord("pg0"), []

    async def sleeper() -> None:
        order.append(await ops.sleep(w, "pbusy", None, sleepers_check(w)))

    _, out = run([sleeper()])
    assert out.violation is None
    assert order == [False] and w.state() == "U"


def test_busy_sleeper_woken_by_last_sunbusy_only() -> None:
    w, order = BusyWord("pg0"), []

    async def sharer() -> None:
        await ops.busy(w, "trys")
        await ops.busy(w, "sunbusy")

    async def sleeper() -> None:
        order.append(await ops.sleep(w, "pbusy", None, sleepers_check(w)))

    ex, (a, b, s) = start(RandomStrategy(0), sharer(), sharer(), sleeper())
    ex.step(a)
    ex.step(b)
    ex.step(s)
    assert w.state() == "S(2)+W" and not s.woken
    ex.step(a)                           # non-last sunbusy: no wakeup
    assert w.state() == "S(1)+W" and not s.woken
    assert s not in ex.enabled()
    ex.step(b)                           # last sunbusy: wakes the sleeper
    assert w.state() == "U" and s.woken
    assert ex.run().violation is None
    assert order == [True]


@pytest.mark.parametrize("action, after", [("downgrade", "S(1)"), ("free", "FREED")])
def test_busy_downgrade_and_free_wake_sleepers(action: str, after: str) -> None:
    w = BusyWord("pg0")

    async def owner() -> None:
        await ops.busy(w, "tryx")
        await ops.busy(w, action)
        if action == "downgrade":
            await ops.busy(w, "sunbusy")

    async def sleeper() -> None:
        await ops.sleep(w, "pbusy", None, sleepers_check(w))

    ex, (o, s) = start(RandomStrategy(0), owner(), sleeper())
    ex.step(o)
    ex.step(s)
    assert not s.woken and w.waiters
    ex.step(o)
    assert s.woken and w.state() == after
    assert ex.run().violation is None


def test_unknown_busy_action_is_reported_clearly() -> None:
    w = BusyWord("pg0")

    async def prog() -> None:
        await ops.busy(w, "tryxx")

    with pytest.raises((FaultlineInternalError, ValueError), match="tryxx"):
        run([prog()])


# ---------------------------------------------------------------- flags

def test_flag_post_wakes_waiters() -> None:
    resumed = 0
    for seed in range(50):
        f, log, rec = Flag("go"), [], TraceRecorder()

        async def waiter(i: int, f: Flag = f, log: list[Any] = log) -> None:
            await flag_wait(f)
            log.append(("passed", i, f.posted))

        async def poster(f: Flag = f, log: list[Any] = log) -> None:
            await ops.pause("before")
            log.append(("posting",))
            await flag_post(f)

        _, out = run([waiter(0), waiter(1), poster()], seed, observers=[rec])
        assert out.violation is None, (seed, out.violation)
        assert log[0] == ("posting",), (seed, log)
        assert sorted(log[1:]) == [("passed", 0, True), ("passed", 1, True)]
        resumed += sum(e.kind == "Resume" for e in rec.events)
    assert resumed > 0, "no waiter ever slept: the wakeup path was not exercised"


def test_flag_wait_on_posted_flag_does_not_sleep() -> None:
    f = Flag("go", posted=True)
    rec = TraceRecorder()

    async def waiter() -> None:
        await flag_wait(f)

    _, out = run([waiter()], observers=[rec])
    assert out.violation is None
    assert [e.kind for e in rec.events] == ["Sleep"]       # its check fails: no Resume


def test_flag_never_posted_is_a_deadlock() -> None:
    f = Flag("go")

    async def waiter() -> None:
        await flag_wait(f)

    _, out = run([waiter()])
    assert out.violation is not None and out.violation.kind == "deadlock"
    assert "t0 asleep on go (uwait)" in out.violation.message


# ---------------------------------------------------------------- step bound

def test_infinite_pause_loop_hits_the_step_bound() -> None:
    async def spinner() -> None:
        while True:
            await ops.pause("spin")

    _, out = run([spinner()], step_bound=50)
    assert out.violation is not None and out.violation.kind == "no-progress"
    assert out.steps == 50
    msg = out.violation.message
    assert "step bound of 50" in msg and "livelock" in msg
    assert "t0 (50 steps)" in msg


def test_step_bound_not_hit_by_a_finishing_program() -> None:
    async def short() -> None:
        for _ in range(10):
            await ops.pause("p")

    _, out = run([short()], step_bound=10)
    assert out.violation is None and out.steps == 10


# ---------------------------------------------------------------- lock order

def _ab_ba(a: Lock, b: Lock) -> list[Coro]:
    async def one(x: Lock, y: Lock) -> None:
        await rw_wlock(x)
        await rw_wlock(y)
        await rw_unlock(y)
        await rw_unlock(x)
    return [one(a, b), one(b, a)]


def test_lock_order_deadlock_found_by_some_seed() -> None:
    kinds = []
    for seed in range(100):
        a, b = Lock("lock A", "a0"), Lock("lock B", "b0")
        _, out = run(_ab_ba(a, b), seed)
        kinds.append(out.violation.kind if out.violation else "pass")
    assert "deadlock" in kinds
    assert "pass" in kinds
    assert set(kinds) <= {"deadlock", "pass", "lock-order"}


def test_witness_reports_lock_order_reversal_naming_both_classes() -> None:
    kinds = set()
    for seed in range(100):
        a, b = Lock("lock A", "a0"), Lock("lock B", "b0")
        _, out = run(_ab_ba(a, b), seed, observers=[Witness()])
        # with WITNESS every run fails: a deadlock, or a reversal once one order ran
        assert out.violation is not None, seed
        kinds.add(out.violation.kind)
        if out.violation.kind == "lock-order":
            msg = out.violation.message
            assert "lock order reversal" in msg
            assert "lock A" in msg and "lock B" in msg
            # both directions are reported with their acquisition sites
            assert len(re.findall(r"test_rt_sync\.py:\d+ one \(step \d+\)", msg)) == 2, msg
            assert set(out.violation.details) == {"first", "second"}
    assert kinds == {"lock-order", "deadlock"}


def test_witness_static_vm_order() -> None:
    def locks() -> tuple[Lock, Lock]:
        return Lock("vm object", "obj0"), Lock("pmap", "pmap0", "mtx")

    async def wrong(obj: Lock, pm: Lock) -> None:
        await mtx_lock(pm)
        await rw_wlock(obj)
        await rw_unlock(obj)
        await mtx_unlock(pm)

    async def right(obj: Lock, pm: Lock) -> None:
        await rw_wlock(obj)
        await mtx_lock(pm)
        await mtx_unlock(pm)
        await rw_unlock(obj)

    _, out = run([wrong(*locks())], observers=[Witness()])
    assert out.violation is not None and out.violation.kind == "lock-order"
    assert "vm object -> pmap: static order (subr_witness.c)" in out.violation.message
    _, out = run([right(*locks())], observers=[Witness()])
    assert out.violation is None


def test_witness_try_locks_never_report_lock_order() -> None:
    tried = 0
    for seed in range(100):
        a, b = Lock("lock A", "a0"), Lock("lock B", "b0")
        wit = Witness()
        got: list[bool] = []

        async def ordered(a: Lock = a, b: Lock = b) -> None:
            await rw_wlock(a)
            await rw_wlock(b)
            await rw_unlock(b)
            await rw_unlock(a)

        async def reversed_try(a: Lock = a, b: Lock = b, got: list[bool] = got) -> None:
            await rw_wlock(b)
            ok = await rw_try_wlock(a)
            got.append(ok)
            if ok:
                await rw_unlock(a)
            await rw_unlock(b)

        _, out = run([ordered(), reversed_try()], seed, observers=[wit])
        assert out.violation is None, (seed, out.violation)
        assert ("lock B", "lock A") not in wit.edges
        tried += got == [True]
    assert tried > 0


def test_witness_same_class_nesting() -> None:
    def nest(dupok: bool) -> Outcome:
        x, y = Lock("vm object", "obj0", dupok=dupok), Lock("vm object", "obj1", dupok=dupok)

        async def prog() -> None:
            await rw_wlock(x)
            await rw_wlock(y)
            await rw_unlock(y)
            await rw_unlock(x)

        return run([prog()], observers=[Witness()])[1]

    assert nest(True).violation is None
    out = nest(False)
    assert out.violation is not None and out.violation.kind == "lock-order"
    assert "acquired a second vm object (obj1) while holding obj0" in out.violation.message


def test_witness_same_class_try_lock_is_allowed_without_dupok() -> None:
    x, y = Lock("vm object", "obj0"), Lock("vm object", "obj1")
    res: list[bool] = []

    async def prog() -> None:
        await rw_wlock(x)
        res.append(await rw_try_wlock(y))
        await rw_unlock(y)
        await rw_unlock(x)

    _, out = run([prog()], observers=[Witness()])
    assert out.violation is None and res == [True]


# ---------------------------------------------------------------- bad ops

@types.coroutine
def _yield_raw(obj: Any) -> Any:
    return (yield obj)


@dataclass(frozen=True, slots=True)
class Bogus(ops.Op):
    tag: str = "bogus-tag"


@dataclass(frozen=True, slots=True)
class BogusInline(ops.Op):
    tag: str = "inline-tag"
    inline = True


def test_unknown_op_subclass_is_an_internal_error_naming_the_op() -> None:
    async def prog() -> None:
        await ops.pause("first")
        await _yield_raw(Bogus())

    ex, _ = start(RandomStrategy(0), prog())
    with pytest.raises(FaultlineInternalError, match=r"unknown op Bogus\(tag='bogus-tag'\)"):
        ex.run()


def test_unknown_inline_op_is_an_internal_error_naming_the_op() -> None:
    async def prog() -> None:
        await _yield_raw(BogusInline())

    with pytest.raises(FaultlineInternalError, match="BogusInline"):
        start(RandomStrategy(0), prog())


def test_non_op_yield_is_an_internal_error() -> None:
    async def prog() -> None:
        await ops.pause("first")
        await _yield_raw(42)

    ex, _ = start(RandomStrategy(0), prog())
    with pytest.raises(FaultlineInternalError, match="'int'"):
        ex.run()


def test_non_op_yield_message_names_the_yielded_object() -> None:
    async def prog() -> None:
        await _yield_raw("not-an-op-sentinel")

    with pytest.raises(FaultlineInternalError) as info:
        start(RandomStrategy(0), prog())
    assert "not-an-op-sentinel" in str(info.value)


# ---------------------------------------------------------------- curthread

def test_context_not_leaked_after_spawn() -> None:
    seen: list[Any] = []

    async def child() -> None:
        await ops.pause("child")

    async def parent() -> None:
        await ops.spawn("kid", "test", child())
        await ops.pause("parent")

    async def other() -> None:
        await ops.pause("other")

        def probe() -> None:
            try:
                seen.append(context.curtid())
            except RuntimeError:
                seen.append(None)
        await ops.atomic(None, "probe", probe)

    context.current = None
    # (a paused thread yields: t1 cannot run twice in a row while t2 can run)
    ex, _ = start(ReplayStrategy([0, 0, 1, 2, 1]), parent(), other())
    out = ex.run()
    assert out.violation is None and out.schedule == [0, 0, 1, 2, 1]
    leaked = context.current
    context.current = None
    # inside t1's atomic step, curthread must be t1 or unavailable, never the spawner t0
    assert seen in ([1], [None]), seen
    assert leaked is None, leaked


def test_curthread_is_the_running_thread_in_model_code() -> None:
    seen: list[tuple[str, int]] = []

    async def prog(name: str) -> None:
        for _ in range(3):
            seen.append((name, context.curtid()))
            await ops.pause(name)

    for seed in range(10):
        seen.clear()
        context.current = None
        _, out = run([prog("t0"), prog("t1")], seed)
        assert out.violation is None
        assert all(name == f"t{tid}" for name, tid in seen)
        assert len(seen) == 6


# ---------------------------------------------------------------- determinism / replay

def _racy_program() -> list[Coro]:
    m, box, occ = Lock("test mtx", "m0", "mtx"), Box(), Box("occ")
    return [*_incrementers(None, box, occ, 2, 2), *_incrementers(m, Box(), occ, 2, 1)]


def test_same_seed_same_schedule() -> None:
    schedules = set()
    for seed in range(20):
        _, o1 = run(_racy_program(), seed)
        _, o2 = run(_racy_program(), seed)
        assert o1.schedule == o2.schedule, seed
        assert o1.steps == len(o1.schedule)
        schedules.add(tuple(o1.schedule))
    assert len(schedules) > 1, "different seeds should explore different schedules"


def test_string_seeds_are_deterministic_too() -> None:
    _, o1 = run(_racy_program(), "7/3")
    _, o2 = run(_racy_program(), "7/3")
    assert o1.schedule == o2.schedule


def test_replay_reproduces_a_recorded_schedule_exactly() -> None:
    for seed in range(20):
        box = Box()
        progs = _incrementers(None, box, Box("occ"), 3, 2)
        _, o1 = run(progs, seed)
        box2 = Box()
        ex, _ = start(ReplayStrategy(o1.schedule), *_incrementers(None, box2, Box("occ"), 3, 2))
        o2 = ex.run()
        assert o2.schedule == o1.schedule and o2.steps == o1.steps
        assert box2.n == box.n
        assert o2.verdict == o1.verdict == "pass"


def test_replay_reproduces_a_violation() -> None:
    for seed in range(50):
        _, o1 = run(_ab_ba(Lock("lock A", "a0"), Lock("lock B", "b0")), seed)
        if o1.violation is not None:
            break
    else:
        pytest.fail("no deadlocking seed in 50")
    ex, _ = start(ReplayStrategy(o1.schedule), *_ab_ba(Lock("lock A", "a0"),
                                                         Lock("lock B", "b0")))
    o2 = ex.run()
    assert o2.violation is not None
    assert (o2.violation.kind, o2.violation.message) == (o1.violation.kind,
                                                         o1.violation.message)
    assert o2.schedule == o1.schedule


def test_replay_divergence_for_a_thread_that_cannot_run() -> None:
    lk = Lock("test rw", "rw0")

    async def prog() -> None:
        await rw_wlock(lk)
        await ops.pause("hold")
        await rw_unlock(lk)

    # t0 takes the lock, then the schedule asks for t1, which is blocked on it
    ex, _ = start(ReplayStrategy([0, 1]), prog(), prog())
    with pytest.raises(ReplayDivergence, match=r"step 2: .*thread 1.*enabled: 0=t0"):
        ex.run()
    # a tid that does not exist at all
    lk.owner = None
    ex, _ = start(ReplayStrategy([5]), prog())
    with pytest.raises(ReplayDivergence, match="thread 5"):
        ex.run()


def test_replay_divergence_for_a_schedule_that_ends_early() -> None:
    async def prog() -> None:
        await ops.pause("a")
        await ops.pause("b")

    ex, _ = start(ReplayStrategy([0]), prog())
    with pytest.raises(ReplayDivergence, match="ends after 1 steps"):
        ex.run()


# ---------------------------------------------------------------- trace

@given(st.lists(st.integers(min_value=0, max_value=5), max_size=60))
@settings(max_examples=200, deadline=None)
def test_schedule_string_round_trip(schedule: list[int]) -> None:
    text = schedule_to_str(schedule)
    assert schedule_from_str(text) == schedule
    assert len(text.split(",")) <= max(1, len(schedule))


def test_schedule_string_examples() -> None:
    assert schedule_to_str([0, 0, 0, 1, 2, 2]) == "0*3,1,2*2"
    assert schedule_to_str([]) == ""
    assert schedule_from_str("") == []
    assert schedule_from_str(" 3*2 , 1 ") == [3, 3, 1]


@pytest.mark.parametrize("text", ["a", "1*0", "-1", "1*x", "1**2", "1*2*3", "1.5", "1*-2",
                                  "*3", "0,x"])
def test_schedule_from_bad_string_raises(text: str) -> None:
    with pytest.raises(ValueError):
        schedule_from_str(text)


def test_trace_recorder_records_every_step_with_its_site() -> None:
    m = Lock("test mtx", "m0", "mtx")

    async def traced_worker_fn() -> None:
        await mtx_lock(m)
        await ops.note("inside", {"k": 1})
        await ops.pause("p")
        await mtx_unlock(m)

    rec = TraceRecorder()
    _, out = run([traced_worker_fn(), traced_worker_fn()], 3, observers=[rec])
    assert out.violation is None
    steps = [e for e in rec.events if e.kind != "note"]
    notes = [e for e in rec.events if e.kind == "note"]
    assert len(steps) == out.steps == 6
    assert [e.step for e in steps] == list(range(1, 7))
    assert [int(e.thread[1:]) for e in steps] == out.schedule
    assert {e.kind for e in steps} == {"Acquire", "Pause", "Release"}
    assert all(e.function == "traced_worker_fn" for e in steps)
    assert all(e.file.endswith("test_rt_sync.py") and e.line > 0 for e in steps)
    assert {e.what for e in steps} == {"mtx_lock m0", "pause \"p\"", "unlock m0"}
    assert len(notes) == 2 and all(n.what == "inside" and n.data == {"k": 1} for n in notes)
    lines = {e.what: e.line for e in steps}
    assert lines["mtx_lock m0"] < lines["pause \"p\""] < lines["unlock m0"]


def test_trace_recorder_does_not_change_the_schedule() -> None:
    for seed in range(10):
        _, o1 = run(_racy_program(), seed)
        _, o2 = run(_racy_program(), seed, observers=[TraceRecorder()])
        assert o1.schedule == o2.schedule
