"""--cache-states: state keys are canonical, and DPOR that cuts runs at cached states
still reaches every end state, covers every trace and finds every bug that DPOR without
the cache does (docs/state-caching.md says why)."""

from __future__ import annotations

import enum
import json
import os
import random
import subprocess
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest

from faultline.check.explore import CheckConfig, build_execution, check_scenario
from faultline.check.running import checkpoint
from faultline.check.search.dpor import DporResult, explore
from faultline.check.search.statecache import StateCache, _digest, state_key
from faultline.check.search.strategies import RandomStrategy
from faultline.check.search.validation import (
    BUGGY,
    PROGRAMS,
    Cell,
    Program,
    _Follow,
    enumerate_all,
    execution,
    load,
    store,
    trace_key,
)
from faultline.kern import policy as P
from faultline.kern.mutants import RenameSbusied, SbusyWrite
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Outcome, Thread
from faultline.rt.sync import Flag, Lock, flag_post, flag_wait, mtx_lock, mtx_unlock
from faultline.scenario.loader import load_scenario
from faultline.scenario.oracle import CopyWindow, MemoryOracle

SRC = str(Path(__file__).resolve().parent.parent / "src")


# ---------------------------------------------------------------- programs

def lastzero_result(n: int) -> Program:
    """lastzero whose scanner stores the index it found (so end states differ)."""
    def build() -> list[Coroutine[Any, Any, None]]:
        a = [Cell(f"a{i}") for i in range(n + 1)]
        res = Cell("res")

        async def scanner() -> None:
            i = n
            while i > 0 and await load(a[i]) != 0:
                i -= 1
            await store(res, i)

        async def setter(i: int) -> None:
            await store(a[i], await load(a[i - 1]) + 1)
        return [scanner(), *(setter(i) for i in range(1, n + 1))]
    return build


def sections_then_race(n: int) -> Program:
    """n workers: a locked increment of x, then a racy store of their id to y; an
    observer reads x under the lock, then y, and stores what it saw.  The sections
    converge whatever their order; what follows them is cached."""
    def build() -> list[Coroutine[Any, Any, None]]:
        x, y, seen, m = Cell("x"), Cell("y"), Cell("seen"), Lock("mtx", "m", "mtx")

        async def worker(k: int) -> None:
            await mtx_lock(m)
            await store(x, await load(x) + 1)
            await mtx_unlock(m)
            await store(y, k)

        async def observer() -> None:
            await mtx_lock(m)
            v = await load(x)
            await mtx_unlock(m)
            await store(seen, v * 10 + await load(y))
        return [*(worker(k + 1) for k in range(n)), observer()]
    return build


def cas_seen(n: int) -> Program:
    """A CAS counter whose threads record the value they incremented from."""
    def build() -> list[Coroutine[Any, Any, None]]:
        x = Cell("x")
        got = [Cell(f"g{i}") for i in range(n)]

        async def inc(i: int) -> None:
            while True:
                v = await load(x)
                if await ops.cas(x, "value", v, v + 1):
                    await store(got[i], v)
                    return
        return [inc(i) for i in range(n)]
    return build


def generated(seed: int) -> Program:
    """A random program: 2-4 threads of 1-4 racy, locked or atomic updates of 1-3 cells,
    each thread storing what it read at the end."""
    rnd = random.Random(seed)
    nthreads, ncells, nlocks = rnd.randint(2, 4), rnd.randint(1, 3), rnd.randint(0, 2)
    kinds = ["load", "store", "inc", "cas", "add"] + (["locked"] if nlocks else [])
    code = [[(rnd.choice(kinds), rnd.randrange(ncells), rnd.randrange(max(nlocks, 1)),
              rnd.randint(1, 3)) for _ in range(rnd.randint(1, 4))] for _ in range(nthreads)]

    def build() -> list[Coroutine[Any, Any, None]]:
        cells = [Cell(f"c{i}") for i in range(ncells)]
        locks = [Lock("mtx", f"m{i}", "mtx") for i in range(nlocks)]
        out = [Cell(f"r{t}") for t in range(nthreads)]

        async def thread(t: int, steps: list[tuple[str, int, int, int]]) -> None:
            acc = 0
            for kind, c, lk, v in steps:
                if kind == "load":
                    acc = acc * 4 + await load(cells[c])
                elif kind == "store":
                    await store(cells[c], v + acc % 2)
                elif kind == "inc":
                    await store(cells[c], await load(cells[c]) + v)
                elif kind == "locked":
                    await mtx_lock(locks[lk])
                    await store(cells[c], await load(cells[c]) + v)
                    await mtx_unlock(locks[lk])
                elif kind == "cas":
                    old = await load(cells[c])
                    await ops.cas(cells[c], "value", old, old + v)
                else:
                    await ops.atomic_add(cells[c], "value", v)
            await store(out[t], acc)
        return [thread(t, s) for t, s in enumerate(code)]
    return build


def retry_until_free() -> Program:
    """A try-lock retry loop (try, pause, try again, as FreeBSD's fault restarts do)
    beside a thread that takes the lock twice: each extra trip is a new trace."""
    def build() -> list[Coroutine[Any, Any, None]]:
        lock = Lock("mtx", "L", "mtx")
        x, y = Cell("x"), Cell("y")

        async def retrier() -> None:
            while not await ops.try_acquire(lock):
                await ops.pause("retry")
            await store(x, await load(x) + 1)
            await ops.release(lock)

        async def holder() -> None:
            for _ in range(2):
                await mtx_lock(lock)
                await store(y, await load(y) + 1)
                await mtx_unlock(lock)
        return [retrier(), holder()]
    return build


def post_then_wait() -> Program:
    """A scenario's post/wait: whatever the order, the waiter reads the posted value."""
    def build() -> list[Coroutine[Any, Any, None]]:
        go, c, seen = Flag("go"), Cell("c"), Cell("seen")

        async def poster() -> None:
            await store(c, 7)
            await flag_post(go)

        async def waiter() -> None:
            await flag_wait(go)
            await store(seen, await load(c))
        return [waiter(), poster(), waiter()]
    return build


LOOPS: dict[str, tuple[Program, set[tuple[Any, ...]]]] = {
    # program, and every end state it can reach: (cells sorted by name, violation)
    "retry-until-free": (retry_until_free(), {((("x", 1), ("y", 2)), None)}),
    "post-then-wait": (post_then_wait(), {((("c", 7), ("seen", 7)), None)}),
}


EXTRA: dict[str, Program] = {
    "lastzero-result-3": lastzero_result(3),
    "sections-then-race-2": sections_then_race(2),
    "cas-seen-3": cas_seen(3),
}
ALL = {**PROGRAMS, **BUGGY, **EXTRA}


# ---------------------------------------------------------------- helpers

class Ends(Hooks):
    """The end state of a run: every cell the threads started with, and the violation.
    Its cells are part of the state key (cache_state), so a cell no thread can reach
    any more still tells states apart."""

    def __init__(self) -> None:
        self.cells: dict[str, Cell] = {}
        self.end: tuple[Any, ...] = ()

    def created(self, ex: Execution, t: Thread) -> None:
        for v in t.coro.cr_frame.f_locals.values():
            for c in v if isinstance(v, list) else [v]:
                if isinstance(c, Cell):
                    self.cells[c.name] = c

    def cache_state(self) -> dict[str, Cell]:
        return self.cells

    def finished(self, ex: Execution, outcome: Outcome) -> None:
        v = outcome.violation
        self.end = (tuple(sorted((n, c.value) for n, c in self.cells.items())),
                    None if v is None else v.message)


def replay(prog: Program, prefix: Sequence[int]) -> tuple[_Follow, Outcome, tuple[Any, ...]]:
    """Run prefix, then the lowest enabled thread."""
    f, e = _Follow(list(prefix)), Ends()
    out = execution(prog, f, [e]).run()
    return f, out, e.end


def completions(prog: Program, prefix: Sequence[int]) -> set[frozenset[Any]]:
    """The traces of every run that starts with `prefix`."""
    traces = set()
    stack = [list(prefix)]
    while stack:
        p = stack.pop()
        f, out, _ = replay(prog, p)
        traces.add(trace_key(f.steps))
        for i in range(len(p), len(f.enabled)):
            stack.extend([*out.schedule[:i], alt] for alt in f.enabled[i][1:])
    return traces


def dpor(prog: Program, **kw: Any) -> DporResult:
    return explore(lambda rec: execution(prog, rec, [rec, Ends()]),  # type: ignore[arg-type]
                   stop_on_violation=False, keep_schedules=True, **kw)


def ends(prog: Program, r: DporResult) -> set[tuple[Any, ...]]:
    return {replay(prog, s)[2] for s in r.schedules}


def covered(prog: Program, r: DporResult) -> set[frozenset[Any]]:
    """Traces of the executions, and of every run through a cut (its cached subtree
    stands for all of them)."""
    out = {trace_key(replay(prog, s)[0].steps) for s in r.schedules}
    for s in r.cut_schedules:
        out |= completions(prog, s)
    return out


class KeyAt(Hooks):
    """A strategy following `schedule`; records the state key before every step."""

    def __init__(self, schedule: list[int]) -> None:
        self.schedule = schedule
        self.keys: list[bytes | None] = []

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        self.keys.append(state_key(ex))
        tid = self.schedule[ex.steps] if ex.steps < len(self.schedule) else enabled[0].tid
        return next(t for t in enabled if t.tid == tid)


# ---------------------------------------------------------------- the key

class KeyedRandom(Hooks):
    def __init__(self, seed: str) -> None:
        self.random = RandomStrategy(seed)
        self.keys: list[bytes | None] = []

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        self.keys.append(state_key(ex))
        return self.random.choose(ex, enabled)


def catalog_keys(name: str, seed: str) -> list[bytes | None]:
    s = KeyedRandom(seed)
    build_execution(load_scenario(name), "sbusy", s, [])[0].run()  # type: ignore[arg-type]
    return s.keys


def test_key_is_stable_across_reexecutions() -> None:
    a, b = catalog_keys("cow-rename", "4"), catalog_keys("cow-rename", "4")
    assert a == b and None not in a
    assert len(set(a)) == len(a)           # the step count alone tells them apart


@pytest.mark.slow
def test_key_is_the_same_in_every_process() -> None:
    prog = ("import hashlib; from test_statecache import catalog_keys; "
            "print(hashlib.sha1(b''.join(catalog_keys('exec-storm-small', '2'))).hexdigest())")
    tests = str(Path(__file__).resolve().parent)
    out = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{tests}", "PYTHONHASHSEED": seed}
        out.add(subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True,
                               text=True, check=True).stdout)
    assert len(out) == 1


def test_digest_tells_tokens_apart_by_type_and_value_alone() -> None:
    """The digest reads marshal's format 2: equal strings digest alike however they
    were made (interned or built), a bool is not an int, and a token marshal cannot
    write (an int subclass in an fl_key) falls back to repr rather than failing."""
    built = "".join(["ob", "ject"])
    assert built is not sys.intern("object")   # two equal strings, one interned
    assert _digest([("K", (built, 0))]) == _digest([("K", ("object", 0))])
    assert _digest([True, 1]) != _digest([1, 1]) != _digest([1.0, 1])
    assert _digest([("T", 2), "a", "b"]) != _digest([("T", 2), "ab", ""])

    class Prot(enum.IntEnum):
        READ = 1
    assert _digest([("K", (Prot.READ, 0))]) == _digest([("K", (Prot.READ, 0))])
    assert _digest([("K", (Prot.READ, 0))]) != _digest([("K", (1, 0))])


def test_key_changes_with_the_model_state_and_the_context() -> None:
    keys: dict[str, bytes | None] = {}

    class Poke(Hooks):
        def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
            if ex.steps == 60:
                page = next(o.vm for o in ex.observers if hasattr(o, "vm")).pages[0]
                keys["before"] = state_key(ex)
                page.content += 1
                keys["changed"] = state_key(ex)
                page.content -= 1
                keys["after"] = state_key(ex)
                keys["asleep"] = state_key(ex, ((1, (("lock", "m"), "acq-x")),))
            return enabled[0]
    build_execution(load_scenario("cow-rename"), "sbusy", Poke(), [])[0].run()  # type: ignore[arg-type]
    assert keys["before"] is not None and keys["after"] == keys["before"]
    assert keys["changed"] != keys["before"] and keys["asleep"] != keys["before"]


def test_statistics_are_history_but_names_to_come_are_state() -> None:
    """Vm.counters (v_cow_faults, object_collapses...) decide nothing later: two runs
    that reach one state with different counts share a key.  The next map entry's
    name does decide later footprints, so it stays in the key."""
    keys: dict[str, bytes | None] = {}

    class Poke(Hooks):
        def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
            if ex.steps == 60:
                vm = next(o.vm for o in ex.observers if hasattr(o, "vm"))
                keys["before"] = state_key(ex)
                vm.count("v_cow_faults")
                vm.count("a statistic never counted before")
                keys["counted"] = state_key(ex)
                vm.serial()
                keys["named"] = state_key(ex)
            return enabled[0]
    build_execution(load_scenario("cow-rename"), "sbusy", Poke(), [])[0].run()  # type: ignore[arg-type]
    assert keys["before"] is not None and keys["counted"] == keys["before"]
    assert keys["named"] != keys["before"]


def test_key_changes_with_what_the_oracle_would_accept() -> None:
    """The oracle's open copy windows and a file page's truncation decide later
    verdicts, so they are state (docs/model.md D14)."""
    keys: dict[str, bytes | None] = {}

    class Poke(Hooks):
        def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
            if ex.steps == 60:
                oracle = next(o for o in ex.observers if isinstance(o, MemoryOracle))
                cell = oracle.files["F"][2]
                keys["before"] = state_key(ex)
                oracle.copying[("p1", 0x3000)] = [CopyWindow(cell, {7, 8})]
                keys["window"] = state_key(ex)
                del oracle.copying[("p1", 0x3000)]
                cell.gone = True
                keys["gone"] = state_key(ex)
                cell.gone = False
                keys["after"] = state_key(ex)
            return enabled[0]
    build_execution(load_scenario("sbusy-vs-invalidate"), "sbusy", Poke(), [])[0].run()  # type: ignore[arg-type]
    assert keys["before"] is not None and keys["after"] == keys["before"]
    assert len({keys["before"], keys["window"], keys["gone"]}) == 3


def test_an_observer_it_does_not_know_means_no_key() -> None:
    prog = PROGRAMS["locked-increments-3"]
    s = KeyAt([])
    execution(prog, s, [Hooks()]).run()            # type: ignore[arg-type]
    assert s.keys and all(k is None for k in s.keys)
    r = explore(lambda rec: execution(prog, rec, [rec, Hooks()]), cache_states=True,
                stop_on_violation=False)
    assert r.cache_hits == 0 and r.executions == 36


def test_orders_that_converge_share_a_key() -> None:
    prog = sections_then_race(2)
    # Worker 1's section, then worker 2's, or the other way round: 8 steps each.
    a, b = KeyAt([0] * 4 + [1] * 4), KeyAt([1] * 4 + [0] * 4)
    execution(prog, a, []).run()              # type: ignore[arg-type]
    execution(prog, b, []).run()              # type: ignore[arg-type]
    assert a.keys[8] == b.keys[8] is not None
    assert a.keys[4] != b.keys[4]             # halfway: a different thread holds the lock
    # After the racy stores of y the orders differ in y's value: no shared key.
    c, d = KeyAt([0] * 5 + [1] * 5), KeyAt([1] * 5 + [0] * 5)
    execution(prog, c, []).run()              # type: ignore[arg-type]
    execution(prog, d, []).run()              # type: ignore[arg-type]
    assert c.keys[10] != d.keys[10]


# ---------------------------------------------------------------- exploration

@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.slow
def test_cached_dpor_reaches_every_end_state_and_covers_every_trace(name: str) -> None:
    prog = ALL[name]
    plain, cached = dpor(prog), dpor(prog, cache_states=True)
    assert cached.exhaustive
    assert ends(prog, cached) == ends(prog, plain)
    cov = covered(prog, cached)
    assert {trace_key(replay(prog, s)[0].steps) for s in plain.schedules} <= cov
    if name not in BUGGY:              # runs ending at a violation stop early
        assert completions(prog, []) <= cov        # every trace, by brute force
    print(f"{name}: {plain.executions} executions, {cached.executions} with the cache "
          f"({cached.cache_hits} runs cut)")


@pytest.mark.parametrize("bound", [0, 1, 2])
@pytest.mark.parametrize("name", ["locked-increments-3", "cas-counter-3", "lastzero-3",
                                  "readers-writer-3", "handoff", "sections-then-race-2"])
def test_cached_bounded_dpor_covers_every_trace_within_the_bound(name: str, bound: int) -> None:
    prog = ALL[name]
    bf = enumerate_all(prog)
    r = dpor(prog, bound=bound, cache_states=True)
    assert r.preemption_bound == bound and r.exhaustive
    assert bf.bounded[bound] <= covered(prog, r)


@pytest.mark.parametrize("name", sorted(BUGGY))
def test_every_seeded_bug_is_found_with_the_cache(name: str) -> None:
    r = explore(lambda rec: execution(BUGGY[name], rec, [rec]), cache_states=True)
    assert r.violation is not None and r.violation.violation is not None
    assert not r.exhaustive


@pytest.mark.slow
def test_random_programs_reach_the_same_end_states() -> None:
    # 400 of these found no difference, and found the misses of three weakened
    # variants of the cut's race analysis; a few dozen keep it honest.
    saved = 0
    for seed in range(40):
        prog = generated(seed)
        plain = dpor(prog, max_executions=600)
        if not plain.exhaustive:
            continue
        cached = dpor(prog, cache_states=True)
        assert ends(prog, cached) == ends(prog, plain), seed
        saved += plain.executions - cached.executions
    print(f"random programs: {saved} executions saved")


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_loops_end_with_exactly_their_end_states(name: str) -> None:
    # Unbounded, as `check` runs it by default now: every trip round the loop that
    # converges on an explored state is cut, and the end states are the known ones,
    # as stateless DPOR (which ends here only because the programs are tiny) finds.
    prog, known = LOOPS[name]
    cached, plain = dpor(prog, cache_states=True), dpor(prog)
    assert cached.exhaustive and plain.exhaustive
    assert ends(prog, cached) == ends(prog, plain) == known
    assert cached.executions < plain.executions


def test_a_small_cache_only_loses_pruning() -> None:
    prog = sections_then_race(3)
    big, small = dpor(prog, cache_states=True), dpor(prog, cache_states=True, cache_limit=3)
    assert ends(prog, small) == ends(prog, big) == ends(prog, dpor(prog))
    assert small.cache_hits < big.cache_hits


def test_keys_every_few_steps_find_the_same_end_states() -> None:
    prog = sections_then_race(3)
    assert ends(prog, dpor(prog, cache_states=True, cache_stride=4)) == ends(prog, dpor(prog))


def test_cache_drops_its_oldest_entries() -> None:
    c = StateCache(limit=2)
    for k in (b"a", b"b", b"c"):
        c.put(k, c.mask([(0, ())]), set())
    assert c.get(b"a") is None and c.get(b"c") is not None
    assert c.unmask(c.get(b"c").below) == [(0, ())]        # type: ignore[union-attr]
    c.put(b"d", c.mask([(1, ((("seen", 0), "w"),))]), set())
    assert c.get(b"d") is None                 # run-local names: never cached


# ---------------------------------------------------------------- the catalog

@pytest.mark.parametrize(("scenario", "bound"), [("collapse-bypass", None),
                                                 ("rw-race-shadow", 1),
                                                 ("cow-vs-collapse", 1)])
@pytest.mark.slow
def test_catalog_verdicts_and_probes_match(scenario: str, bound: int | None) -> None:
    s = load_scenario(scenario)
    plain = check_scenario(s, CheckConfig(strategy="dpor", dpor="source", preemptions=(bound,),
                                          cache_states=False))
    cached = check_scenario(s, CheckConfig(strategy="dpor", preemptions=(bound,),
                                           cache_states=True))
    assert cached.verdict == plain.verdict == "pass" and cached.exhaustive
    assert set(cached.coverage) == set(plain.coverage)
    assert cached.cache_hits and cached.executions < plain.executions
    print(f"{scenario} (bound {bound}): {plain.executions} executions, "
          f"{cached.executions} with the cache ({cached.cache_hits} runs cut)")


@pytest.mark.parametrize(("policy", "scenario", "kinds"), [
    (RenameSbusied, "cow-vs-collapse", {"panic"}),
    (SbusyWrite, "rw-race-top", {"panic"}),
])
def test_mutants_are_caught_with_the_cache(policy: type[P.Policy], scenario: str,
                                           kinds: set[str]) -> None:
    r = check_scenario(load_scenario(scenario),
                       CheckConfig(policy=policy.name, strategy="dpor", preemptions=(1,),
                                   cache_states=True, shrink=False))
    assert r.verdict == "violation" and r.counterexample is not None
    assert r.counterexample.violation is not None
    assert r.counterexample.violation["kind"] in kinds


def test_json_reports_cache_hits_only_with_the_cache() -> None:
    s = load_scenario("rw-race-shadow")
    cfg = CheckConfig(strategy="dpor", preemptions=(1,), cache_states=True)
    one, two = check_scenario(s, cfg).to_json(), check_scenario(s, cfg).to_json()
    assert json.dumps(one) == json.dumps(two) and "cache_hits" in one
    assert "cache_hits" not in check_scenario(s, CheckConfig(strategy="dpor",
                                                             preemptions=(1,))).to_json()


@pytest.mark.slow
def test_checkpoints_record_source_dpor(tmp_path: Path) -> None:
    state = tmp_path / "run.ckpt"
    s = load_scenario("rw-race-shadow")
    check_scenario(s, CheckConfig(strategy="dpor", preemptions=(0, 1), cache_states=True,
                                  state=str(state), checkpoint_seconds=0.0))
    doc = checkpoint.read(state)
    assert doc["dpor"] == "source"
    doc["dpor"] = "optimal"
    with pytest.raises(ValueError, match="optimal"):
        check_scenario(s, CheckConfig(strategy="dpor", preemptions=(0, 1), cache_states=True,
                                      resume=doc))
