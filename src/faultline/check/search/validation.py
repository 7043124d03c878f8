"""The DPOR validation suite: small programs against the runtime, and a brute-force
count of their Mazurkiewicz traces.

What lives here: `PROGRAMS` (name -> builder of a fresh Execution running the program),
`enumerate_all` (every interleaving, by depth-first search over the enabled threads)
and `trace_key` (the Mazurkiewicz class of a complete run: for every pair of dependent
steps, which came first).  The programs are the classics of the DPOR literature (N
independent writers, lastzero, indexer, readers and a writer, lock-protected
increments, a lock-order deadlock, a CAS retry loop, a sleep/wakeup hand-off), each
with a seeded bug variant where one exists.  Rule kept: programs use only runtime ops,
so their footprints are exact.  Must not be added: VM model code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from faultline.check.search.dependency import footprint, ordered
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Outcome, Strategy, Thread, Violation
from faultline.rt.sync import Flag, Lock, flag_post, flag_wait, mtx_lock, mtx_unlock

Program = Callable[[], list[Coroutine[Any, Any, None]]]


@dataclass(eq=False)
class Cell:
    """A shared memory word."""

    name: str
    value: int = 0

    def __repr__(self) -> str:
        return self.name

    @property
    def fl_key(self) -> tuple[str, str]:
        """Stable name for partial-order reduction."""
        return ("cell", self.name)


async def load(c: Cell) -> int:
    """A racy read."""
    return await ops.racy_load(c, "value")


async def store(c: Cell, v: int) -> None:
    """A racy write."""
    await ops.racy_store(c, "value", v)


def check(cond: bool, msg: str) -> None:
    """An assertion of the program: a violation if it fails."""
    if not cond:
        raise Violation("panic", msg)


# ---------------------------------------------------------------- programs

def writers(n: int) -> Program:
    """N threads, each writing its own variable: one trace."""
    def build() -> list[Coroutine[Any, Any, None]]:
        cells = [Cell(f"x{i}") for i in range(n)]
        return [store(c, 1) for c in cells]
    return build


def lastzero(n: int) -> Program:
    """Thread 0 scans a[n..0] for the last zero; thread i sets a[i] = a[i-1] + 1."""
    def build() -> list[Coroutine[Any, Any, None]]:
        a = [Cell(f"a{i}") for i in range(n + 1)]

        async def scanner() -> None:
            i = n
            while i > 0 and await load(a[i]) != 0:
                i -= 1

        async def setter(i: int) -> None:
            await store(a[i], await load(a[i - 1]) + 1)
        return [scanner(), *(setter(i) for i in range(1, n + 1))]
    return build


def indexer(n: int, size: int = 8) -> Program:
    """Threads insert into a hash table with CAS, probing linearly on collision."""
    def build() -> list[Coroutine[Any, Any, None]]:
        table = [Cell(f"t{i}") for i in range(size)]

        async def insert(tid: int) -> None:
            h = (tid * 7) % size
            while not await ops.cas(table[h], "value", 0, tid + 1):
                h = (h + 1) % size
        return [insert(t) for t in range(n)]
    return build


def readers_writer(n: int) -> Program:
    """N readers read x once; one writer writes it."""
    def build() -> list[Coroutine[Any, Any, None]]:
        x = Cell("x")

        async def reader() -> None:
            await load(x)
        return [*(reader() for _ in range(n)), store(x, 1)]
    return build


def locked_increments(n: int, buggy: bool = False) -> Program:
    """N threads increment x under a mutex (load; store): the result must be n.
    `buggy` drops the lock: lost updates."""
    def build() -> list[Coroutine[Any, Any, None]]:
        x, m = Cell("x"), Lock("mtx", "m", "mtx")
        done = Cell("done")

        async def inc() -> None:
            if not buggy:
                await mtx_lock(m)
            await store(x, await load(x) + 1)
            if not buggy:
                await mtx_unlock(m)
            if await ops.atomic_add(done, "value", 1) == n - 1:
                check(await load(x) == n, f"lost update: x = {x.value}, expected {n}")
        return [inc() for _ in range(n)]
    return build


def lock_order(buggy: bool = True) -> Program:
    """Two threads take two locks; in opposite orders (buggy) they can deadlock."""
    def build() -> list[Coroutine[Any, Any, None]]:
        a, b = Lock("lock a", "A", "mtx"), Lock("lock b", "B", "mtx")

        async def take(first: Lock, second: Lock) -> None:
            await mtx_lock(first)
            await mtx_lock(second)
            await mtx_unlock(second)
            await mtx_unlock(first)
        return [take(a, b), take(b, a) if buggy else take(a, b)]
    return build


def cas_counter(n: int) -> Program:
    """N threads increment a counter with a load + CAS retry loop."""
    def build() -> list[Coroutine[Any, Any, None]]:
        x = Cell("x")

        async def inc() -> None:
            while True:
                v = await load(x)
                if await ops.cas(x, "value", v, v + 1):
                    return
        return [inc() for _ in range(n)]
    return build


def handoff(buggy: bool = False) -> Program:
    """A producer publishes data then posts a flag; the consumer waits for the flag and
    must see the data.  `buggy` posts before publishing."""
    def build() -> list[Coroutine[Any, Any, None]]:
        data, flag = Cell("data"), Flag("ready")

        async def producer() -> None:
            if buggy:
                await flag_post(flag)
                await store(data, 42)
            else:
                await store(data, 42)
                await flag_post(flag)

        async def consumer() -> None:
            await flag_wait(flag)
            check(await load(data) == 42, "consumer saw the flag before the data")
        return [producer(), consumer()]
    return build


PROGRAMS: dict[str, Program] = {
    "writers-3": writers(3),
    "lastzero-2": lastzero(2),
    "lastzero-3": lastzero(3),
    "lastzero-4": lastzero(4),
    "indexer-3": indexer(3, 4),
    "readers-writer-3": readers_writer(3),
    "locked-increments-3": locked_increments(3),
    "lock-order-ok": lock_order(buggy=False),
    "cas-counter-3": cas_counter(3),
    "handoff": handoff(),
}
BUGGY: dict[str, Program] = {
    "locked-increments-2-unlocked": locked_increments(2, buggy=True),
    "lock-order-deadlock": lock_order(buggy=True),
    "handoff-early-post": handoff(buggy=True),
}


def execution(program: Program, strategy: Strategy, observers: list[Hooks],
              step_bound: int = 10_000) -> Execution:
    """A fresh execution of `program`: one thread per coroutine it builds."""
    ex = Execution(strategy, observers, step_bound)
    for i, coro in enumerate(program()):
        ex.spawn(f"t{i}", "p", coro)
    return ex


# ---------------------------------------------------------------- brute force

class _Follow(Hooks):
    """Follow a prefix, then take the first enabled thread; remember each node's
    enabled threads and the footprints of the steps taken."""

    def __init__(self, prefix: list[int]) -> None:
        self.prefix = prefix
        self.enabled: list[list[int]] = []
        self.steps: list[tuple[int, tuple[Any, ...]]] = []

    def choose(self, ex: Execution, enabled: Any) -> Thread:
        i = ex.steps
        en = [t.tid for t in enabled]
        self.enabled.append(en)
        tid = self.prefix[i] if i < len(self.prefix) else en[0]
        t = next(t for t in enabled if t.tid == tid)
        assert t.pending is not None
        self.steps.append((tid, footprint(t.pending, tid)))
        return t


def trace_key(steps: list[tuple[int, tuple[Any, ...]]]) -> frozenset[Any]:
    """The Mazurkiewicz class: the order of every dependent pair of steps, each step
    named by (thread, its index within the thread)."""
    named, count = [], {}
    for tid, acc in steps:
        k = count.get(tid, 0)
        count[tid] = k + 1
        named.append(((tid, k), acc))
    pairs = set()
    for j, (b, fb) in enumerate(named):
        for a, fa in named[:j]:
            if a[0] != b[0] and ordered(fa, fb):
                pairs.add((a, b))
    return frozenset(pairs)


@dataclass
class BruteForce:
    """Every interleaving of a program, grouped into Mazurkiewicz traces; `bounded[k]`
    holds the traces that have an interleaving with at most k preemptions."""

    executions: int
    traces: int
    violations: int
    bounded: dict[int, set[frozenset[Any]]]


def preemptions(schedule: list[int], enabled: list[list[int]]) -> int:
    """Context switches away from a thread that could have gone on."""
    n = 0
    for i in range(1, len(schedule)):
        prev = schedule[i - 1]
        if schedule[i] != prev and prev in enabled[i]:
            n += 1
    return n


def enumerate_all(program: Program, limit: int = 200_000) -> BruteForce:
    """Depth-first over every schedule (re-executing prefixes); counts traces."""
    keys: set[frozenset[Any]] = set()
    bounded: dict[int, set[frozenset[Any]]] = {k: set() for k in range(4)}
    stack: list[list[int]] = [[]]
    runs = violations = 0
    while stack:
        prefix = stack.pop()
        f = _Follow(prefix)
        out: Outcome = execution(program, f, []).run()
        runs += 1
        if runs > limit:
            raise RuntimeError(f"more than {limit} interleavings")
        violations += out.violation is not None
        key = trace_key(f.steps)
        keys.add(key)
        pre = preemptions(out.schedule, f.enabled)
        for k in range(pre, 4):
            bounded[k].add(key)
        for i in range(len(prefix), len(f.enabled)):
            for alt in f.enabled[i][1:]:
                stack.append([*out.schedule[:i], alt])
    return BruteForce(runs, len(keys), violations, bounded)
