"""Source-DPOR with sleep sets: explore one execution per Mazurkiewicz trace (or more).

What lives here: `explore` (the stateless exploration loop: re-execute a prefix, extend
it, analyse races, backtrack), the path it keeps (`Node`: enabled threads, their pending
footprints, backtrack/done/sleep sets) and the race analysis over vector clocks.  The
algorithm is Abdulla, Aronis, Jonsson and Sagonas's source-DPOR (POPL 2014): after each
maximal execution E, for every race e1 < e2 it computes v = notdep(e1, E).e2 and, unless
an initial of v is already in backtrack(pre(E, e1)), adds one.  Sleep sets stop
re-exploring equivalent orders; a run whose every enabled thread sleeps is
"sleep-set blocked".  With `preemption_bound` K, schedules with more than K preemptive
context switches are not explored (bounded POR; the bound is reported): racing threads
are also tried at every earlier node within the budget (`_note_switches`), and a thread
sleeps only while the order that ran it first costs no more preemptions
(`_budget_sleep`).  With `cache_states`, a run that reaches a state whose subtree an
earlier run explored completely stops there, and the events of that subtree stand in
for its continuation in the race analysis (stateful DPOR, conservative form;
docs/state-caching.md).
Rule kept: the path is plain data (thread ids), so it can be checkpointed and replayed.
Must not be added: model knowledge (footprints come from `check.search.dependency`).

    explore:  prefix = []
              loop: run(prefix, extend by the lowest enabled thread not asleep)
                    analyse races of the run -> backtrack sets
                    prefix <- deepest node with an untried backtrack choice, or stop
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faultline.check.search.dependency import TICK, Access, footprint, ordered, races
from faultline.check.search.statecache import CacheEntry, StateCache, state_key
from faultline.check.search.wakeup import Event, WutNode, insert, weak_initial
from faultline.rt import ops
from faultline.rt.execution import Execution, Hooks, Outcome, Thread


@dataclass(slots=True)
class Node:
    """The state before one step of the current path."""

    enabled: list[int]
    pending: dict[int, tuple[Access, ...]]      # footprint of each live thread's next op
    chosen: int = -1
    taken: dict[int, tuple[Access, ...]] = field(default_factory=dict)  # full footprints
    sleep: dict[int, tuple[Access, ...]] = field(default_factory=dict)
    backtrack: set[int] = field(default_factory=set)
    done: set[int] = field(default_factory=set)
    preemptions: int = 0                         # preemptions on the path before here
    last: int | None = None                      # thread of the step before this node
    wut: list[WutNode] = field(default_factory=list)     # optimal: the wakeup tree
    guide: list[WutNode] = field(default_factory=list)   # wut of the node below
    # With cache_states (never checkpointed): the state's cache key (None: not cached),
    # the events run anywhere below so far (a bit mask over StateCache.events), and the
    # threads that bounded POR's free switches tried at every node above (see
    # _note_switches), which a later visit of the state must try too.
    key: bytes | None = None
    below: int = 0
    free: set[int] = field(default_factory=set)
    # Under a preemption bound: for each sleeper, the preemptions of the order that ran
    # it first (see _budget_sleep); and for each thread taken here, whether it could
    # still go on after its step (so that switching away from it was a preemption).
    vpre: dict[int, int] = field(default_factory=dict)
    cont: dict[int, bool] = field(default_factory=dict)
    # Its pending footprints name objects by fl_key only (never checkpointed).  A replay
    # (deterministic) keeps its enabled and pending as they are: naming the ops again
    # would give the same names and number no object (_PathStrategy.stable); an op
    # that numbers one is named where it first is pending, at a node not replayable.
    replayable: bool = False


@dataclass(slots=True)
class Step:
    """One executed event: its thread, footprint, and the thread it spawned (if any)."""

    tid: int
    acc: tuple[Access, ...]
    spawned: int | None = None


@dataclass(slots=True)
class DporResult:
    """What an exploration did."""

    executions: int = 0            # complete (maximal) executions
    sleep_blocked: int = 0
    steps: int = 0
    exhaustive: bool = True        # False if stopped by max_executions
    preemption_bound: int | None = None
    violation: Outcome | None = None
    schedules: list[list[int]] = field(default_factory=list)   # with keep_schedules
    cut_schedules: list[list[int]] = field(default_factory=list)   # the same, of cut runs
    # Progress figures (not checkpointed, never in a verdict): fingerprints of the
    # distinct Mazurkiewicz traces run, the share of the tree left of (and at) the
    # current path, taking sibling subtrees as equal (Kilby et al.'s estimate for DFS;
    # wild for most of a run: check.search.gauge says when to believe it), and the
    # branches still to take on the current path (each at least one more run).
    trace_keys: set[int] = field(default_factory=set)
    explored_share: float = 0.0
    pending: int = 0
    cache_hits: int = 0            # with cache_states: runs cut at a state explored before
    states: int = 0                # with cache_states: states whose subtree was completed
    # With split: the subtree's frozen path, and the branches its races asked for at
    # those nodes as (node index, thread), left to other subtrees (check.search.split).
    root: list[int] = field(default_factory=list)
    branches: set[tuple[int, int]] = field(default_factory=set)

    def runs(self) -> int:
        """Runs so far: complete executions, sleep-set blocked ones and cut ones."""
        return self.executions + self.sleep_blocked + self.cache_hits

    def estimate(self) -> int:
        """Estimated runs in the whole tree (rough until most of it is done: DPOR
        discovers branches only as it goes; check.search.gauge)."""
        return round(self.runs() / self.explored_share) if self.explored_share > 0 else 0


class _PathStrategy(Hooks):
    """Follows the prefix, then extends it; records nodes and steps (a Strategy and an
    observer at once).  A step's footprint is its op's plus every model object the code
    after the op wrote or touched (rt.context.footprint_log)."""

    wants_footprints = True

    def __init__(self, nodes: list[Node], prefix_len: int, bound: int | None,
                 optimal: bool = False, cache: StateCache | None = None) -> None:
        self.nodes = nodes
        self.prefix_len = prefix_len
        self.bound = bound
        self.optimal = optimal
        self.cache = cache
        self.steps: list[Step] = []
        self.serial: dict[int, int] = {}
        # tid -> (its pending op, the op's footprint, whether that names objects by
        # fl_key only)
        self.known: dict[int, tuple[ops.Op, tuple[Access, ...], bool]] = {}

    def resume_at(self, steps: list[Step], serial: dict[int, int]) -> None:
        """This run starts after `steps`, restored rather than run (a scenario's setup,
        check.running.setup_image): they are its first steps, as if it had run them,
        and `serial` (id -> number) the objects they named by order of appearance
        (see `stable`), as the restored copies' ids."""
        self.steps.extend(steps)
        self.serial.update(serial)

    def stable(self, acc: Iterable[Access]) -> tuple[Access, ...]:
        """Name objects by their order of first appearance in this run, so footprints
        compare across re-executions: a replayed prefix names the same objects alike,
        and any step touching an object unseen at a node collides with the first new
        name a sleeper used from there (conservative, hence sound)."""
        for k, _ in acc:
            if type(k) is int:
                break
        else:
            return tuple(acc)           # the common case: every object has a fl_key
        out = []
        for a in acc:
            k = a[0]
            if type(k) is int:          # an id(): objects without a stable fl_key
                s = self.serial.get(k)
                if s is None:
                    s = self.serial[k] = len(self.serial)
                a = (("seen", s), a[1])
            out.append(a)
        return tuple(out)

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        i = ex.steps
        if i < self.prefix_len and self.nodes[i].replayable:
            tid = self.nodes[i].chosen      # see Node.replayable
        else:
            tid = self._record(ex, i, [t.tid for t in enabled])
        for t in enabled:
            if t.tid == tid:
                return t
        raise ValueError(f"step {i}: thread {tid} is not enabled (enabled: "
                         f"{[t.tid for t in enabled]})")

    def _record(self, ex: Execution, i: int, en: list[int]) -> int:
        """Note the enabled threads and pending footprints at step i, making its node if
        the prefix ends before it; returns the thread to run."""
        pending: dict[int, tuple[Access, ...]] = {}
        replayable = True
        known = self.known
        for t in ex.threads:
            op = t.pending
            if op is None or t.done:
                continue
            # A pending op's footprint is fixed until its thread steps (the cache
            # holds the op, so its identity cannot be reused meanwhile).
            hit = known.get(t.tid)
            if hit is None or hit[0] is not op:
                fp = self.stable(footprint(op, t.tid))
                hit = known[t.tid] = (op, fp, not _unstable(fp))
            pending[t.tid] = hit[1]
            replayable &= hit[2]
        if i < self.prefix_len:
            node = self.nodes[i]
            if not node.enabled:                # a subtree's root, replayed the first time
                _enter_root(self.nodes, i, en)
            node.enabled, node.pending, node.replayable = en, pending, replayable
            return node.chosen
        node = Node(en, pending, replayable=replayable)
        if i > 0:
            prev = self.nodes[i - 1]
            node.sleep = _next_sleep(prev)
            node.last = prev.chosen
            node.preemptions = prev.preemptions + _is_preemption(prev, prev.chosen)
            if self.bound is not None:
                prev.cont[prev.chosen] = prev.chosen in en
                _budget_sleep(prev, node)
            node.wut = prev.guide if self.optimal else []
        if self.cache is not None and i % self.cache.stride == 0:
            node.key = self._key(ex, node)
            entry = self.cache.get(node.key)
            if entry is not None:
                raise _CacheHit(entry)
        self.nodes.append(node)
        return self._extend(node)

    def _key(self, ex: Execution, node: Node) -> bytes | None:
        """The cache key of the state before node: the execution's state, the sleep set
        with footprints, and under a bound the budget left, the thread that ran last
        (they decide which switches count as preemptions) and the sleepers' budgets."""
        sleep = tuple(sorted(node.sleep.items()))
        if any(_unstable(acc) for _, acc in sleep):
            return None               # run-local names: not comparable across runs
        extra = (sleep, None if self.bound is None else
                 (node.preemptions, node.last, tuple(sorted(node.vpre.items()))))
        return state_key(ex, extra)

    def _extend(self, node: Node) -> int:
        # Optimal DPOR: follow the wakeup tree handed down, if its branch can run.
        while node.wut:
            first = node.wut[0]
            if first.tid in node.enabled and first.tid not in node.sleep:
                node.chosen, node.guide = first.tid, first.children
                node.backtrack.add(first.tid)
                return first.tid
            node.wut.pop(0)
        order = sorted(node.enabled, key=lambda q: (q != node.last, q))   # prefer no switch
        for q in order:
            if q in node.sleep or not _within_bound(node, q, self.bound):
                continue
            node.chosen = q
            node.backtrack.add(q)
            if self.optimal:
                node.wut = [WutNode(q, node.pending.get(q, ()))]
                node.guide = node.wut[0].children
            return q
        raise _SleepBlocked

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        steps = self.steps
        node = self.nodes[len(steps)]
        acc = node.pending.get(t.tid, ())
        if ex.last_footprint:
            acc += self.stable(dict.fromkeys(ex.last_footprint))
        node.taken[t.tid] = acc
        if self.optimal and node.wut and node.wut[0].tid == t.tid:
            # The branch being explored is known by its real footprint only now (the
            # model writes its step made); insert() must judge races against that.
            node.wut[0].acc = acc
        steps.append(Step(t.tid, acc, ex.threads[-1].tid if type(op) is ops.Spawn else None))


def _enter_root(nodes: list[Node], i: int, enabled: list[int]) -> None:
    """Fill in what a root placeholder (see `explore`'s `root`) learns on first replay."""
    node = nodes[i]
    if node.chosen not in enabled:
        raise ValueError(f"step {i}: thread {node.chosen} is not enabled (enabled: "
                         f"{enabled}): the subtree's root does not replay")
    if i > 0:
        prev = nodes[i - 1]
        node.last = prev.chosen
        node.preemptions = prev.preemptions + _is_preemption(prev, prev.chosen)


class _SleepBlocked(Exception):
    """Every enabled thread is asleep: this run repeats an explored trace."""


class _CacheHit(Exception):
    """The run reached a state whose subtree was explored completely before."""

    def __init__(self, entry: CacheEntry) -> None:
        super().__init__()
        self.entry = entry


def _unstable(acc: tuple[Access, ...]) -> bool:
    """Does the footprint name an object by its order of appearance in one run?"""
    return any(type(k) is tuple and k and k[0] == "seen" for k, _ in acc)


def _is_preemption(node: Node, q: int) -> bool:
    """Taking q at node switches away from a thread that could have gone on."""
    return node.last is not None and q != node.last and node.last in node.enabled


def _within_bound(node: Node, q: int, bound: int | None) -> bool:
    return bound is None or node.preemptions + _is_preemption(node, q) <= bound


def _next_sleep(prev: Node) -> dict[int, tuple[Access, ...]]:
    """Sleep set after taking prev.chosen: sleepers (and threads already explored from
    prev) whose next step is independent of the step taken stay asleep.  Both steps'
    full footprints are known: each was executed from this node or an ancestor."""
    p = prev.chosen
    fp = prev.taken.get(p, prev.pending.get(p, ()))
    cands = dict(prev.sleep)
    for q in prev.done:
        cands[q] = prev.taken.get(q, prev.pending.get(q, ()))
    return {q: f for q, f in cands.items()
            if q != p and q in prev.pending and not ordered(f, fp)}


def _budget_sleep(prev: Node, node: Node) -> None:
    """Sleep sets under a preemption bound.  A thread q asleep at `node` was explored
    first, from an ancestor a, and every step since (w) is independent of q's next one:
    a trace that runs q here, prefix(a).w.q.rest, is the trace of prefix(a).q.w.rest,
    explored under q's branch if that order is within the bound.  Its preemptions are
    counted in vpre[q] up to the end of w; it and the order here then share rest but
    for its first switch, which costs the other order at most one preemption more (from
    w's last thread, when that one could go on).  So q stays asleep only if that order
    costs no more than taking q here does; else it wakes (more runs, never fewer)."""
    p = prev.chosen
    last_fp = node.pending.get(p, ())
    vpre: dict[int, int] = {}
    for q, f in node.sleep.items():
        if q in prev.vpre:
            # q slept at prev too: the order running it first appends p after prev.last
            # there, a preemption if prev.last could go on (in the state with q's step
            # taken, which an access ordered with q's may change, so then assume so).
            back = prev.last
            goes_on = back is not None and back != p and (
                back in prev.enabled or ordered(f, prev.pending.get(back, ())))
            vpre[q] = prev.vpre[q] + goes_on
        else:
            # q was explored from prev: the order q.p pays q's switch-in, then p's.
            vpre[q] = prev.preemptions + _is_preemption(prev, q) + prev.cont.get(q, True)
        could_go_on = p in node.enabled or ordered(f, last_fp)
        if vpre[q] + could_go_on > node.preemptions + _is_preemption(node, q):
            del vpre[q]
    node.sleep = {q: f for q, f in node.sleep.items() if q in vpre}
    node.vpre = vpre


_Clocks = tuple[list[dict[int, int]], dict[Any, list[int]]]


def _clocks(steps: list[Step], keep: int = 0, old: _Clocks | None = None) -> _Clocks:
    """Vector clocks of the happens-before order (program order + ordered accesses),
    and the steps that touched each object (ascending), so that a step is compared
    only with the earlier steps that share an object with it.  `old` is the previous
    run's, whose first `keep` steps this run replayed unchanged: those are reused
    (clocks are never changed once made)."""
    clocks: list[dict[int, int]] = []
    last_of: dict[int, int] = {}
    born: dict[int, int] = {}
    by_key: dict[Any, list[int]] = {}
    first = 0
    if old is not None and keep > 0:
        first = min(keep, len(old[0]))
        clocks = old[0][:first]
        for j in range(first):
            s = steps[j]
            last_of[s.tid] = j
            if s.spawned is not None:
                born[s.spawned] = j
        for k, lst in old[1].items():
            n = bisect_left(lst, first)
            if n:
                by_key[k] = lst[:n]
    for j in range(first, len(steps)):
        s = steps[j]
        c: dict[int, int] = {}
        src = last_of.get(s.tid, born.get(s.tid))
        if src is not None:
            c = dict(clocks[src])
        for i in _sharing(by_key, s.acc, j):
            e = steps[i]
            if e.tid != s.tid and c.get(e.tid, 0) < i + 1 and ordered(e.acc, s.acc):
                _join(c, clocks[i])
        c[s.tid] = j + 1          # clocks count step positions, 1-based
        clocks.append(c)
        last_of[s.tid] = j
        if s.spawned is not None:
            born[s.spawned] = j
        for k, _ in s.acc:
            lst = by_key.setdefault(k, [])
            if not lst or lst[-1] != j:
                lst.append(j)
    return clocks, by_key


def _sharing(by_key: dict[Any, list[int]], acc: tuple[Access, ...], j: int) -> list[int]:
    """Steps before j that touched an object of `acc`, latest first; a Pause step and
    every other step count as sharing (dependency.TICK)."""
    if acc and acc[0][0] == TICK:
        return list(range(j - 1, -1, -1))
    found: list[int] = []
    for k, _ in acc:
        lst = by_key.get(k)
        if lst:
            found.extend(lst[:bisect_left(lst, j)])
    ticks = by_key.get(TICK)
    if ticks and ticks[0] < j:
        found.extend(ticks[:bisect_left(ticks, j)])
        found = sorted(set(found))
    elif len(acc) > 1:
        found = sorted(set(found))
    found.reverse()
    return found


def _join(c: dict[int, int], d: dict[int, int]) -> None:
    for k, v in d.items():
        if c.get(k, 0) < v:
            c[k] = v


def _hb(clocks: list[dict[int, int]], steps: list[Step], i: int, j: int) -> bool:
    """Does step i happen before step j?"""
    return clocks[j].get(steps[i].tid, 0) >= i + 1


def _races(steps: list[Step], clocks: list[dict[int, int]], by_key: dict[Any, list[int]],
           start: int = 0) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, start <= j, of racing steps not ordered through any other
    step.  Order-only edges (release -> acquire) do not hide a race: the acquire races
    with the previous acquire of the lock, whose release it waited for.  Races with
    j < start were analysed by an earlier run that shared this prefix (steps before
    start replay the same events with the same footprints), so they are skipped."""
    out = []
    prev_of: dict[int, int] = {}
    for j, s in enumerate(steps):
        prev = prev_of.get(s.tid)
        prev_of[s.tid] = j
        if j < start:
            continue
        # The clock of j's thread before j, joined as later races are accounted for.
        c: dict[int, int] = dict(clocks[prev]) if prev is not None else {}
        for i in _sharing(by_key, s.acc, j):
            e = steps[i]
            if e.tid == s.tid or c.get(e.tid, 0) >= i + 1:
                continue                      # ordered already (program order or via a later step)
            if not races(e.acc, s.acc):
                continue
            out.append((i, j))
            _join(c, clocks[i])
    return out


def _initials(steps: list[Step], clocks: list[dict[int, int]], i: int, j: int) -> set[int]:
    """Threads whose first event in v = notdep(i).steps[j] has no predecessor in v."""
    v = [k for k in range(i + 1, j) if not _hb(clocks, steps, i, k)] + [j]
    seen: set[int] = set()
    first: list[int] = []
    for k in v:
        if steps[k].tid not in seen:
            seen.add(steps[k].tid)
            first.append(k)
    return {steps[k].tid for k in first
            if not any(_hb(clocks, steps, m, k) for m in v if m < k)}


def _add_backtracks(nodes: list[Node], steps: list[Step], clocks: list[dict[int, int]],
                    by_key: dict[Any, list[int]], bound: int | None = None,
                    start: int = 0) -> None:
    """Race analysis of one run; `steps` may end with the pending ops of threads that
    never got to run them (blocked or cut short), as if they ran last: a lock acquire
    that deadlocked still races with the acquire it waited behind."""
    switch_in: dict[int, int] = {}
    for i, j in _races(steps, clocks, by_key, start):
        if i >= len(nodes):
            continue                          # both are pending ops: no node to change
        node = nodes[i]
        init = _initials(steps, clocks, i, j)
        if bound is not None:
            # Any initial of v may switch in earlier, where the budget allows, even
            # one explored from an ancestor (maybe only within a budget that such an
            # earlier switch would spare).
            _note_switches(switch_in, nodes, i, init)
        if init & node.sleep.keys():
            continue
        covered = sorted(init & node.backtrack)
        if covered:
            chosen = covered[:1]
        else:
            can = sorted(q for q in init if q in node.enabled)
            chosen = can[:1] if can else list(node.enabled)   # fallback: every thread
            node.backtrack.update(chosen)
    if bound is not None:
        _add_switches(nodes, switch_in, bound)


def _note_switches(switch_in: dict[int, int], nodes: list[Node], i: int,
                   threads: set[int] | list[int]) -> None:
    """Bounded POR: a reversal at node i may cost a preemption the bound forbids, and
    even one within the bound may leave too little budget for what must follow it.  An
    equivalent order may still be within the bound if a racing thread switches in
    earlier, where the budget allows.  So every initial of the reversal, and the
    thread whose step it overtakes, is tried at every node before i where it is
    enabled and within the bound (`_add_switches`, once per run).  Coons, Musuvathi and
    McKinley's rule (OOPSLA 2013: the reversing thread, also at the node starting the
    current block) missed end states on fuzzed programs here; this one missed none
    (docs/design-notes.md 1.7)."""
    tried = {*threads, nodes[i].chosen}
    nodes[i].free |= tried          # a cached copy of node i's state must redo this
    for q in tried:
        if switch_in.get(q, -1) < i:
            switch_in[q] = i


def _add_switches(nodes: list[Node], switch_in: dict[int, int], bound: int) -> None:
    """Add each thread q at every node before switch_in[q] that can take it."""
    for q, i in switch_in.items():
        for k in range(i):
            nk = nodes[k]
            if q in nk.enabled and _within_bound(nk, q, bound):
                nk.backtrack.add(q)


def _add_wakeups(nodes: list[Node], steps: list[Step], clocks: list[dict[int, int]],
                 by_key: dict[Any, list[int]], start: int = 0) -> None:
    """Optimal DPOR's race analysis: for each race (i, j) insert v = notdep(i).j into
    the wakeup tree at node i, unless a thread asleep there is a weak initial of v (that
    reversal was explored already)."""
    for i, j in _races(steps, clocks, by_key, start):
        if i >= len(nodes):
            continue
        node = nodes[i]
        ti = steps[i].tid                # step k follows step i iff its clock says so
        v: list[Event] = [(s.tid, s.acc) for s, c in zip(steps[i + 1:j], clocks[i + 1:j])
                          if c.get(ti, 0) <= i]
        v.append((steps[j].tid, steps[j].acc))
        sleepers = dict(node.sleep)
        for q in node.done:
            sleepers[q] = node.taken.get(q, node.pending.get(q, ()))
        if any(weak_initial(v, q, f) for q, f in sleepers.items()):
            continue
        insert(node.wut, v)


def _add_summary_backtracks(nodes: list[Node], steps: list[Step],
                            clocks: list[dict[int, int]], by_key: dict[Any, list[int]],
                            events: list[tuple[int, tuple[Access, ...]]],
                            bound: int | None) -> None:
    """A run cut at a cached state (conservative stateful DPOR, after Yang, Chen,
    Gopalakrishnan and Kirby, SPIN 2008): any event `events` lists may run next, in
    any order.  Every step of the path that such an event races with, and that does
    not happen before that event's thread already, is treated as a race (i, e) with
    e's position unknown, and backtracking at node i covers every reversal it could
    need: v = notdep(i).e begins either with the path's own steps after i that do not
    depend on step i (their initials are v's), or, when there are none, with the first
    step of some thread that has not moved since node i and runs below the cached
    state (all such threads are added)."""
    n = len(nodes)                     # steps[n:] are the pending ops: never ran
    src: dict[int, int] = {}           # each thread's last step, or the step spawning it
    for k, st in enumerate(steps[:n]):
        src[st.tid] = k
        if st.spawned is not None:
            src[st.spawned] = k
    below = {p for p, _ in events}
    pend = {st.tid: st.acc for st in steps[n:]}
    racing: set[int] = set()
    switch_in: dict[int, int] = {}
    after: dict[int, dict[int, int]] = {}   # each thread's clock once its pending op ran
    for p, acc in pend.items():
        c = dict(clocks[src[p]]) if p in src else {}
        for m in _sharing(by_key, acc, n):
            if c.get(steps[m].tid, 0) < m + 1 and ordered(steps[m].acc, acc):
                _join(c, clocks[m])
        after[p] = c
    for p, acc in events:
        # As _races would judge e placed right after the path: latest steps first, each
        # race ordering the earlier steps behind it.  Below the cut, p's first event is
        # its pending op and the rest follow it; what else orders them is unknown, so
        # this finds every race the cut-off runs had, and maybe more.
        pa = pend.get(p)
        if pa is not None and acc[:len(pa)] != pa and not _unstable(pa):
            c = dict(after[p])           # not p's first event: it follows the pending op
        else:
            k = src.get(p)
            c = dict(clocks[k]) if k is not None else {}
        for i in _sharing(by_key, acc, n):
            e = steps[i]
            if e.tid == p or c.get(e.tid, 0) >= i + 1 or not races(e.acc, acc):
                continue
            racing.add(i)
            _join(c, clocks[i])
    for i in sorted(racing):
        node = nodes[i]
        v = [k for k in range(i + 1, n) if not _hb(clocks, steps, i, k)]
        if v:
            init = _initials_of(steps, clocks, v)
            if bound is not None:
                # As _add_backtracks does, and the cut event's thread may be an
                # initial too: any thread running below the cut may switch in earlier.
                _note_switches(switch_in, nodes, i, init | (below & set(node.enabled)))
            if init & node.sleep.keys():
                continue
            can = sorted(q for q in init if q in node.enabled)
            covered = sorted(init & node.backtrack)
            if covered:
                chosen = covered[:1]
            else:
                chosen = can[:1] if can else list(node.enabled)
        else:
            # Every step after i depends on it: v starts below the cut, with the next
            # op of a thread idle since node i that nothing after step i orders.
            moved = {steps[k].tid for k in range(i, n)}
            moved |= {steps[k].spawned for k in range(i, n) if steps[k].spawned is not None}
            chosen = sorted(q for q in node.enabled if q in below and q not in moved
                            and q not in node.sleep and q in pend
                            and not any(ordered(steps[k].acc, pend[q]) for k in range(i, n))
                            ) or list(node.enabled)
        node.backtrack.update(chosen)
        if bound is not None:
            _note_switches(switch_in, nodes, i, chosen)
    if bound is not None:
        _add_switches(nodes, switch_in, bound)


def _initials_of(steps: list[Step], clocks: list[dict[int, int]], v: list[int]) -> set[int]:
    """Threads whose first step in v (ascending step indices) has no predecessor in v."""
    seen: set[int] = set()
    out: set[int] = set()
    for pos, k in enumerate(v):
        t = steps[k].tid
        if t in seen:
            continue
        seen.add(t)
        if not any(_hb(clocks, steps, m, k) for m in v[:pos]):
            out.add(t)
    return out


def explore(make: Callable[[Hooks], Execution], *, bound: int | None = None,
            max_executions: int | None = None, keep_schedules: bool = False,
            stop_on_violation: bool = True, optimal: bool = False,
            resume: tuple[list[Node], DporResult, int] | None = None,
            between: Callable[[list[Node], DporResult, int], None] | None = None,
            cache_states: bool = False, cache_limit: int = 100_000, cache_stride: int = 1,
            root: Sequence[int] = (), split: int = 0, estimate: bool = True
            ) -> DporResult:
    """Explore the program `make` builds (a fresh Execution whose strategy and first
    observer is the given path recorder) with source-DPOR and sleep sets, or with
    optimal DPOR's wakeup trees (`optimal`; with a preemption bound the source
    algorithm's conservative backtracking is used instead).  `between(nodes, result,
    prefix_len)` is called between executions (a checkpoint hook); `resume` restarts
    from such a triple.  `cache_states` prunes runs at states explored completely
    before (at most `cache_limit` remembered, keyed at every `cache_stride`-th
    scheduling point; always source-DPOR: a cut run has no event sequence to insert
    into a wakeup tree).  A resumed exploration starts with an empty cache.

    With `split` > 0 only one subtree is explored (check.search.split deals them out): the
    path's nodes up to and including its `split`-th branching node (two or more threads
    enabled) are frozen, following `root` and then the default choices.  Sleep sets and
    wakeup trees stay empty there (subtrees explored elsewhere cannot be known to be
    done), and the branches races ask for at them are returned in `branches` instead
    of taken; it may be resumed too, given the same `root` and `split` (check.search.split
    pauses its units).  Without `estimate`, the progress estimate (`explored_share`) is not
    kept: a walk of the whole path after every execution, wasted when nobody shows it."""
    optimal = optimal and bound is None and not cache_states
    cache = StateCache(cache_limit, cache_stride) if cache_states else None
    res = DporResult(preemption_bound=bound)
    nodes: list[Node] = []
    prefix_len = 0
    if resume is not None:
        nodes, res, prefix_len = resume
    elif root:
        nodes, prefix_len = _root_nodes(root, optimal), len(root)
    floor = -1                             # frozen nodes (known after the first run)
    old: _Clocks | None = None             # the previous run's clocks
    names: list[Any] = []                  # its events' names in _trace_key
    while True:
        rec = _PathStrategy(nodes, prefix_len, bound, optimal, cache)
        ex = make(rec)
        hit: CacheEntry | None = None
        try:
            outcome = ex.run()
        except _SleepBlocked:            # run() has closed the coroutines already
            outcome = None
        except _CacheHit as h:
            outcome, hit = None, h.entry
        del nodes[len(rec.steps):]
        pending = [Step(t.tid, rec.stable(footprint(t.pending, t.tid))) for t in ex.threads
                   if not t.done and t.pending is not None]
        res.steps += len(rec.steps)
        steps = rec.steps + pending
        # The replayed prefix's steps are the previous run's (see _races).
        keep = max(prefix_len - 1, 0)
        clocks, by_key = old = _clocks(steps, keep, old)
        del names[keep:]
        if hit is not None:
            res.cache_hits += 1
            if keep_schedules:
                res.cut_schedules.append(list(ex.schedule))
        elif outcome is None:
            res.sleep_blocked += 1
        else:
            res.executions += 1
            res.trace_keys.add(_trace_key(rec.steps, clocks, names))
            if keep_schedules:
                res.schedules.append(list(outcome.schedule))
            if outcome.violation is not None and res.violation is None:
                res.violation = outcome
                if stop_on_violation:
                    res.exhaustive = False
                    return res
        # Only races ending at or after the new branch are new (see _races).
        start = max(prefix_len - 1, 0)
        if optimal:
            _add_wakeups(nodes, steps, clocks, by_key, start)
        else:
            _add_backtracks(nodes, steps, clocks, by_key, bound, start)
        if cache is not None and nodes:
            # What ran below the last node: the blocked threads' next ops, and for a
            # cut run everything the cached subtree ran (and must stand in for).
            last = nodes[-1]
            last.below |= cache.mask((st.tid, st.acc) for st in pending)
            if hit is not None:
                last.below |= hit.below
                last.free |= hit.free
                _add_summary_backtracks(nodes, steps, clocks, by_key,
                                        cache.unmask(hit.below), bound)
                if bound is not None:
                    _add_switches(nodes, dict.fromkeys(sorted(hit.free), len(nodes)), bound)
        if floor < 0:
            floor = _frozen(nodes, split, len(root))
            res.root = [node.chosen for node in nodes[:floor]]
        if floor:
            # After every analysis above: all a run asked of the frozen nodes moves out.
            _harvest(nodes[:floor], res.branches, bound)
        if estimate:
            res.explored_share, res.pending = _explored_share(nodes, bound)
        if optimal:
            prefix_len = _next_branch(nodes, floor)
        else:
            prefix_len = _next_prefix(nodes, bound, None if cache is None else
                                      lambda node: _retire(nodes, node, cache), floor)
        if cache is not None:
            res.states = cache.stored
        if prefix_len < 0:
            return res
        if max_executions is not None and res.executions >= max_executions:
            res.exhaustive = False
            return res
        if between is not None:
            between(nodes, res, prefix_len)


def _retire(nodes: list[Node], node: Node, cache: StateCache) -> None:
    """`node` leaves the path with its subtree explored: cache it, and hand what ran
    below it (and the step taken from it) up to its parent."""
    node.below |= cache.mask(node.taken.items())
    if node.key is not None:
        cache.put(node.key, node.below, node.free)
    if nodes:
        parent = nodes[-1]
        parent.below |= node.below
        parent.free |= node.free


def _root_nodes(root: Sequence[int], optimal: bool) -> list[Node]:
    """Placeholders for a subtree's root path (filled in by its first replay).  Under
    optimal DPOR each one's wakeup tree holds just the branch taken, nested as the
    path is, so that insertions reach the frozen nodes as they would on a real path."""
    nodes = [Node([], {}, chosen=q) for q in root]
    if optimal:
        level: list[WutNode] = []
        for node in nodes:
            node.wut = level
            level.append(WutNode(node.chosen, ()))
            node.guide = level = level[0].children
    return nodes


def _frozen(nodes: list[Node], split: int, at_least: int) -> int:
    """How many nodes a split exploration freezes: up to its `split`-th branching node
    (or the whole path if it has fewer), and never fewer than the root's."""
    if not split:
        return 0
    seen = 0
    for k, node in enumerate(nodes):
        seen += len(node.enabled) > 1
        if seen == split:
            return max(k + 1, at_least)
    return len(nodes)


def _harvest(frozen: list[Node], branches: set[tuple[int, int]], bound: int | None) -> None:
    """Move the branches races added at frozen nodes (backtrack entries, or wakeup-tree
    branches beside the one taken) to `branches`."""
    for k, node in enumerate(frozen):
        asked = node.backtrack - {node.chosen}
        if node.wut:
            asked |= {w.tid for w in node.wut[1:]}
            del node.wut[1:]
        node.backtrack = {node.chosen}
        branches.update((k, q) for q in asked
                        if q in node.enabled and _within_bound(node, q, bound))


def _trace_key(steps: list[Step], clocks: list[dict[int, int]], names: list[Any]) -> int:
    """A fingerprint of the run's Mazurkiewicz trace: each event named by (thread, its
    n-th step) with the last event of every thread that happens before it, which is the
    same for every interleaving of the trace.  `names` holds the events named so far,
    those of the prefix this run shares with the previous one (see explore): a name
    depends only on the steps up to its own and their clocks."""
    nth: list[int] = []
    count: dict[int, int] = {}
    for s in steps:
        count[s.tid] = n = count.get(s.tid, 0) + 1
        nth.append(n)
    del names[len(steps):]
    for j in range(len(names), len(steps)):
        names.append((steps[j].tid, nth[j],
                      tuple(sorted((u, nth[p - 1]) for u, p in clocks[j].items()))))
    return hash(frozenset(names))


def _explored_share(nodes: list[Node], bound: int | None = None) -> tuple[float, int]:
    """The share of the tree explored (left of and at the current path), and the
    branches still to take on the path."""
    share, scale, pending = 0.0, 1.0, 0
    for node in nodes:
        # Most nodes have one branch, the one taken: it adds nothing and keeps the scale.
        bt, wut = node.backtrack, node.wut
        if (not node.done and (not bt or (len(bt) == 1 and node.chosen in bt))
                and (not wut or (len(wut) == 1 and wut[0].tid == node.chosen))):
            continue
        # Branches taken, and those still to take (stale or out-of-bound entries never run).
        todo = {w.tid for w in wut} | bt
        branches = {q for q in todo if q in node.enabled and q not in node.sleep
                    and _within_bound(node, q, bound)}
        branches |= node.done
        branches.add(node.chosen)
        share += scale * len(node.done - {node.chosen}) / len(branches)
        scale /= len(branches)
        pending += len(branches - node.done - {node.chosen})
    return share + scale, pending


def _next_branch(nodes: list[Node], floor: int = 0) -> int:
    """Optimal DPOR: drop the explored branch at the deepest node (its thread goes to
    sleep there) and take the next branch of that node's wakeup tree; pop exhausted
    nodes, but not the first `floor` (frozen).  Returns the new path length, or -1 when
    everything is explored."""
    while len(nodes) > floor:
        node = nodes[-1]
        node.done.add(node.chosen)
        if node.wut and node.wut[0].tid == node.chosen:
            node.wut.pop(0)
        while node.wut:
            first = node.wut[0]
            if first.tid in node.enabled and first.tid not in node.done:
                node.chosen, node.guide = first.tid, first.children
                return len(nodes)
            node.wut.pop(0)
        nodes.pop()
    return -1


def _next_prefix(nodes: list[Node], bound: int | None,
                 retire: Callable[[Node], None] | None = None, floor: int = 0) -> int:
    """Pick the deepest node with an untried, awake backtrack choice within the bound;
    cut the path there and return its new length (-1 when the exploration is done).
    `retire(node)` sees each node popped, after it left the path.  The first `floor`
    nodes (frozen) are never popped."""
    while len(nodes) > floor:
        node = nodes[-1]
        node.done.add(node.chosen)
        todo = sorted(q for q in node.backtrack - node.done - node.sleep.keys()
                      if q in node.enabled and _within_bound(node, q, bound))
        if todo:
            node.chosen = todo[0]
            return len(nodes)
        nodes.pop()
        if retire is not None:
            retire(node)
    return -1
