"""The timed driver: the model's threads on N simulated CPUs, one SimPy process each.

What lives here: `TimedRun`, which runs model threads (the same coroutines the checker
runs) under SimPy.  SimPy's event queue decides when each thread's next op happens; the
runtime's `Execution` performs the op, exactly as under the checker.  Every op costs
the model step price plus the cache-line hand-off its lock, busy or atomic word needs
(sim.machine); `rt.ops.cost` work adds its price (sim.costs).  A thread whose lock is
held spins on-CPU while every holder runs and sleeps on the lock's turnstile
otherwise, as FreeBSD's adaptive mutexes, rwlocks and sx locks do; a busy-page wait is
a sleep (vmpfw) and pays the wake-up and a context switch.  Time goes to a ledger
(sim.ledger) that splits each CPU's time into work, spinning by lock class and off-CPU
waiting by channel.

    thread's SimPy process:  loop
        pending op blocked?  ->  yield a SimPy event (spin or sleep), re-check
        cost <- step price + hand-off of the op's line
        Execution.step(t)       (perform the op, run the code to the next trap)
        yield env.timeout(cost + the step's cost() work)

Rule kept: no second scheduler: a thread waits only on a SimPy event that the op
ending its wait triggers (a release wakes the lock's waiters in FIFO order; a wakeup
the sleepers).  Must not be added: workloads, metrics formulas or any knowledge of
what the model's objects are.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Generator, Sequence
from typing import Any

import simpy

from faultline.rt import context, ops
from faultline.rt.execution import Execution, Hooks, Thread, Violation
from faultline.rt.sync import Lock
from faultline.sim.costs import CostModel
from faultline.sim.ledger import Ledger
from faultline.sim.machine import CacheLines, Topology

_Acquire, _Release, _Upgrade, _Downgrade = ops.Acquire, ops.Release, ops.Upgrade, ops.Downgrade
_Busy, _Atomic, _Sleep, _Wakeup = ops.Busy, ops.Atomic, ops.Sleep, ops.Wakeup
_Resume, _Pause, _Spawn = ops.Resume, ops.Pause, ops.Spawn
_LOCK_OPS = frozenset((_Acquire, _Release, _Upgrade, _Downgrade))


class SimError(Exception):
    """The model failed under the timed driver (a violation, a deadlock, a panic)."""


class _NoSchedule(list[int]):
    """A schedule that records nothing: timed runs are replayed by seed, not by
    schedule, and millions of steps would fill memory."""

    def append(self, tid: int) -> None:
        """Drop the step."""


class _TimedExecution(Execution):
    """The runtime's execution, whose wake-ups also resume the woken SimPy processes."""

    def __init__(self, run: TimedRun) -> None:
        super().__init__(strategy=_Unused(), observers=[run], step_bound=sys.maxsize)
        self.schedule = _NoSchedule()
        self._run = run

    def wake(self, chan: Any, one: bool) -> list[Thread]:
        woken = super().wake(chan, one)
        for t in woken:
            self._run.woken(t)
        return woken


class _Unused:
    """Execution wants a strategy; the timed driver never asks one."""

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread:
        raise AssertionError("the timed driver schedules through SimPy")


class TimedRun(Hooks):
    """One timed simulation: threads started with `start`, run until `end_ns`; the
    ledger measures [warmup_ns, end_ns)."""

    def __init__(self, topology: Topology, ncpus: int, costs: CostModel, end_ns: int,
                 warmup_ns: int = 0, *, profile: bool = False,
                 trace_window_ns: int = 0) -> None:
        if not 1 <= ncpus <= topology.ncpus:
            raise ValueError(f"{ncpus} CPUs asked for, the machine has "
                             f"{topology.describe()}")
        self.topology, self.ncpus, self.costs = topology, ncpus, costs
        self.env = simpy.Environment()
        self.ex = _TimedExecution(self)
        self.lines = CacheLines(topology, costs)
        self.ledger = Ledger(ncpus, warmup_ns, end_ns, profile=profile,
                             trace_window_ns=trace_window_ns)
        self.end_ns = end_ns
        self.cpu_of: dict[int, int] = {}                  # tid -> CPU
        self.on_cpu: dict[int, bool] = {}                 # tid -> running (not asleep)
        self._waiting: dict[int, simpy.Event] = {}        # tid -> the event it waits on
        self._lock_waiters: dict[Any, deque[tuple[Thread, simpy.Event]]] = {}
        # tid -> the cost() work its code did since its last step was charged
        self._work: dict[int, list[tuple[str, int, tuple[str, ...] | None]]] = {}
        self.error: SimError | None = None
        self.roots: dict[int, str] = {}                   # tid -> its flame-graph root
        self._done = self.env.event()                     # the run is over
        self._step_ns = {k: costs.step_ns[k.__name__] for k in (
            _Acquire, _Release, _Upgrade, _Downgrade, _Busy, _Sleep, _Wakeup, _Resume,
            _Pause, _Spawn)}
        self._atomic_write_ns = costs.step_ns["Atomic write"]
        self._atomic_read_ns = costs.step_ns["Atomic read"]
        self.env.process(self._timer())

    # -- building a run
    def start(self, name: str, coro: Any, root: str = "") -> Thread:
        """Start model thread `name` on the next free CPU (one thread per CPU)."""
        if len(self.cpu_of) >= self.ncpus:
            coro.close()
            raise self._no_cpu(name)
        prev, context.costing = context.costing, True
        try:
            t = self.ex.spawn(name, name, coro)
        finally:
            context.costing = prev
        if root:
            self.roots[t.tid] = root
        return t

    def _no_cpu(self, name: str) -> SimError:
        return SimError(f"thread {name} needs a CPU: all {self.ncpus} have a thread "
                        f"(the simulator pins one thread per CPU)")

    def op_done(self, kind: str) -> None:
        """A workload finished one operation (an exec, a touched page) now."""
        self.ledger.op(kind, int(self.env.now))

    def _timer(self) -> Generator[simpy.Event, Any, None]:
        yield self.env.timeout(self.end_ns)
        if not self._done.triggered:
            self._done.succeed()

    def created(self, ex: Execution, t: Thread) -> None:
        """Give the new thread a CPU and a SimPy process."""
        cpu = len(self.cpu_of)
        if cpu >= self.ncpus:
            raise self._no_cpu(t.name)
        self.cpu_of[t.tid] = cpu
        self.on_cpu[t.tid] = True
        self.ledger.begin(cpu, int(self.env.now))
        self.env.process(self._thread(t, cpu))

    def run(self) -> None:
        """Run to `end_ns`; raises SimError if the model failed or deadlocked."""
        prev = context.costing
        context.costing = True
        try:
            self.env.run(until=self._done)
            live = [t for t in self.ex.threads if not t.done]
            # Every live thread waits for an event only another thread's op can trigger,
            # and none is pending: nobody will ever wake them.
            if self.error is None and live and all(
                    (ev := self._waiting.get(t.tid)) is not None and not ev.triggered
                    for t in live):
                self.error = SimError(self.ex.describe_deadlock(live))
        finally:
            context.costing = prev
            self.ex._close_all()
        if self.error is not None:
            raise self.error
        for cpu in range(self.ncpus):
            self.ledger.finish(cpu, self.end_ns)

    # -- the per-thread process
    def _thread(self, t: Thread, cpu: int) -> Generator[simpy.Event, Any, None]:
        env, ledger, ex = self.env, self.ledger, self.ex
        try:
            first = self._charge_work(t, cpu, None)      # the code before its first trap
            if first:
                yield env.timeout(first)
            while not t.done:
                op = t.pending
                kind = type(op)
                if kind is _Acquire and not op.try_:
                    if not self._can_take(t, op):
                        yield from self._wait_lock(t, cpu, op)
                elif kind is _Resume:
                    if not t.woken:
                        yield from self._sleep(t, cpu, op.wmesg)
                elif kind is _Pause:
                    yield from self._pause(t, cpu, op.wmesg)
                now = int(env.now)
                handoff, line_of = self._handoff(op, kind, cpu, now)
                site = ledger.stack_of(t, self.roots) if ledger.profile else None
                try:
                    ex.step(t)
                except Violation as v:
                    raise SimError(f"{v.kind}: {v.message} (thread {t.name}, "
                                   f"t={now} ns)") from v
                if kind is _Acquire and (not op.try_ or (t.held and t.held[-1] is op.lock)):
                    ledger.acquired(op.lock.name, now)
                elif kind is _Release or kind is _Downgrade:
                    self._released(op.lock)
                elif kind is _Sleep and op.interlock is not None and t.wchan is not None:
                    self._released(op.interlock)
                step = self._step_price(op, kind)
                ledger.work(cpu, "kernel", step, site)
                if handoff:
                    # Waiting behind other CPUs' hand-offs of the line is contention
                    # (spinning on the lock or busy word); the hop itself is work.
                    queued = self.lines.queued
                    if queued:
                        ledger.spin_for(cpu, line_of, queued, site, lock=kind in _LOCK_OPS)
                        if kind is _Acquire:
                            ledger.contended(line_of, queued, now)
                    ledger.work(cpu, "cache-line hand-off", handoff - queued, site)
                work = self._charge_work(t, cpu, site)
                yield env.timeout(step + handoff + work)
            ledger.idle(cpu)
        except SimError as e:
            # Stop the whole simulation: the model state is no longer trustworthy.
            if self.error is None:
                self.error = e
            if not self._done.triggered:
                self._done.succeed()

    def _step_price(self, op: Any, kind: type) -> int:
        if kind is _Atomic:
            return self._atomic_write_ns if op.write else self._atomic_read_ns
        return self._step_ns[kind]

    def costed(self, ex: Execution, t: Thread, cost: ops.Cost) -> None:
        """A `cost()` in the step being performed: price it, charge it after the step."""
        ns = self.costs.work(cost.label, cost.units)
        if cost.line is not None:
            # The work writes shared data (a page's pv list head): its line's hand-off.
            ns += self.lines.write(("data", context.key_of(cost.line)), self.cpu_of[t.tid],
                                   int(self.env.now))
        stack = self.ledger.stack_of(t, self.roots) if self.ledger.profile else None
        self._work.setdefault(t.tid, []).append((cost.label, ns, stack))

    def _charge_work(self, t: Thread, cpu: int, site: tuple[str, ...] | None) -> int:
        """Charge the cost() work `t` did in its last step; returns its total ns."""
        total = 0
        for label, ns, stack in self._work.pop(t.tid, ()):
            self.ledger.work(cpu, label, ns, stack if stack is not None else site)
            total += ns
        return total

    # -- locks
    def _can_take(self, t: Thread, op: ops.Acquire) -> bool:
        lock = op.lock
        # A recursive acquisition must reach grant() and panic, not wait on itself.
        return lock.can_acquire(t.tid, op.mode) or lock.held_by(t.tid) is not None

    def _holders_running(self, lock: Lock) -> bool:
        """Adaptive spinning: spin while every holder of `lock` is on a CPU."""
        on = self.on_cpu
        if lock.owner is not None:
            return on.get(lock.owner, False)
        return all(on.get(r, False) for r in lock.readers)

    def _wait_lock(self, t: Thread, cpu: int, op: ops.Acquire
                   ) -> Generator[simpy.Event, Any, None]:
        lock, env, ledger = op.lock, self.env, self.ledger
        start = int(env.now)
        waiters = self._lock_waiters.setdefault(_lock_key(lock), deque())
        first = True
        while not self._can_take(t, op):
            spin = self._holders_running(lock)
            ev = env.event()
            if first:
                waiters.append((t, ev))
                first = False
            else:
                waiters.appendleft((t, ev))       # keep our place at the head
            stack = ledger.stack_of(t, self.roots) if ledger.profile else None
            self._waiting[t.tid] = ev
            if spin:
                ledger.open_wait(cpu, "spin", lock.name, stack, lock=True)
                yield ev
            else:
                self.on_cpu[t.tid] = False
                ledger.open_wait(cpu, "sleep", f"lock: {lock.name}", stack, lock=True)
                yield ev
                yield env.timeout(self.costs.wakeup_ns)
                self.on_cpu[t.tid] = True
                ledger.close_wait(cpu, int(env.now))
                ledger.work(cpu, "context switch", self.costs.cswitch_ns, stack)
                yield env.timeout(self.costs.cswitch_ns)
                continue
            ledger.close_wait(cpu, int(env.now))
        ledger.contended(lock.name, int(env.now) - start, int(env.now))

    def _released(self, lock: Lock) -> None:
        """A hold of `lock` went: wake its first waiter, and every waiter after it that
        may share the lock with it (they re-check when they run)."""
        q = self._lock_waiters.get(_lock_key(lock))
        if not q:
            return
        t, ev = q.popleft()
        ev.succeed()
        mode = t.pending.mode if type(t.pending) is _Acquire else "x"
        while q and mode == "s":
            t, ev = q[0]
            if type(t.pending) is not _Acquire or t.pending.mode != "s":
                break
            q.popleft()
            ev.succeed()

    # -- sleeping
    def _sleep(self, t: Thread, cpu: int, wmesg: str) -> Generator[simpy.Event, Any, None]:
        env = self.env
        ev = self._waiting[t.tid] = env.event()
        self.on_cpu[t.tid] = False
        stack = self.ledger.stack_of(t, self.roots) if self.ledger.profile else None
        self.ledger.open_wait(cpu, "sleep", wmesg, stack)
        yield ev
        yield env.timeout(self.costs.wakeup_ns)
        self.on_cpu[t.tid] = True
        self.ledger.close_wait(cpu, int(env.now))
        self.ledger.work(cpu, "context switch", self.costs.cswitch_ns, stack)
        yield env.timeout(self.costs.cswitch_ns)

    def woken(self, t: Thread) -> None:
        """wakeup() made `t` runnable: end its SimPy wait (if its process already waits;
        otherwise it finds `t.woken` set when it reaches the Resume)."""
        ev = self._waiting.get(t.tid)
        if ev is not None and not ev.triggered:
            ev.succeed()

    def _pause(self, t: Thread, cpu: int, wmesg: str) -> Generator[simpy.Event, Any, None]:
        stack = self.ledger.stack_of(t, self.roots) if self.ledger.profile else None
        self.on_cpu[t.tid] = False
        self.ledger.open_wait(cpu, "sleep", wmesg, stack)
        yield self.env.timeout(self.costs.pause(wmesg))
        self.on_cpu[t.tid] = True
        self.ledger.close_wait(cpu, int(self.env.now))

    # -- coherence
    def _handoff(self, op: Any, kind: type, cpu: int, now: int) -> tuple[int, str]:
        """The hand-off the op's memory access needs (0 if the line is ours), and
        what the line holds: a lock class, "vm page busy", or the atomic's object."""
        lines = self.lines
        if kind in _LOCK_OPS:
            return lines.write(_lock_key(op.lock), cpu, now), op.lock.name
        if kind is _Busy:
            return lines.write(context.key_of(op.word), cpu, now), "atomic: page busy"
        if kind is _Atomic:
            key = context.key_of(op.obj)
            what = _atomic_class(op.obj)
            if op.write:
                return lines.write(key, cpu, now), what
            return lines.read(key, cpu, now), what
        if kind is _Sleep or kind is _Wakeup:
            # The sleep queue chain lock of the channel (sleepq_lock).
            return (lines.write(("sleepq", context.key_of(op.chan)), cpu, now),
                    "sleepq chain")
        return 0, ""


def _atomic_class(obj: Any) -> str:
    """Name the line an atomic op touches by its object's kind (VmObject -> 'vm object
    fields')."""
    name = type(obj).__name__
    if name == "BlockCount":      # vm_object's paging_in_progress or busy counter
        return "atomic: object pip" if obj.label.endswith(".pip") else "atomic: object busy"
    return _ATOMIC_CLASSES.get(name) or f"atomic: {name}"


_ATOMIC_CLASSES = {"VmObject": "atomic: vm object", "VmPage": "atomic: vm page",
                   "Proc": "atomic: proc", "Pmap": "user access",
                   "VmDomain": "atomic: free page count", "VmMap": "atomic: vm map"}


def _lock_key(lock: Lock) -> Any:
    """The cache line of a lock word: shared with its neighbours, or its own."""
    return lock.line if lock.line is not None else ("lock", lock.label)

