"""One execution: threads (coroutines) stepped one op at a time under a strategy.

What lives here: `Thread`, the sleep queues, the mechanics of performing an op and
resuming a coroutine up to its next trap, deadlock and step-bound detection, and the
observer hook calls.  Rule kept: the execution knows the runtime's primitives and
nothing of the VM model; *which* enabled thread runs next is always the strategy's
decision (random, replay, DPOR, PCT, a timed simulator...).  Must not be added:
exploration logic (backtracking, shrinking) or any `if tracing:` branch; observers
subscribe to hooks instead.

    run():  while live threads:
              enabled <- threads whose pending op can be performed
              none enabled            -> deadlock
              steps == bound          -> no progress
              t <- strategy.choose(enabled)
              perform t.pending; resume t up to its next trap  (one step)
              observers.stepped(...)   (invariants, oracle, witness, trace)
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from faultline.rt import context, ops
from faultline.rt.sync import Lock, NotModelled, Panic


class FaultlineInternalError(Exception):
    """A bug in faultline, not in your scenario."""


class Violation(Exception):
    """A checked property failed; raised by model code or observers, ends the run."""

    def __init__(self, kind: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details or {}

    def __reduce__(self) -> tuple[type, tuple[str, str, dict[str, Any]]]:
        return (Violation, (self.kind, self.message, self.details))


class ReplayDivergence(Exception):
    """A recorded schedule asked for a thread that cannot run at that step."""


# ---------------------------------------------------------------- threads

@dataclass(eq=False, slots=True)
class Thread:
    """A model thread: a coroutine plus the op it is waiting to perform."""

    tid: int
    name: str
    group: str
    coro: Any
    pending: ops.Op | None = None
    done: bool = False
    woken: bool = False
    held: list[Lock] = field(default_factory=list)
    wchan: Any = None
    wmesg: str = ""
    steps: int = 0
    pause_waits: set[int] = field(default_factory=set)   # pause(): who must run first

    def __repr__(self) -> str:
        return self.name

    def where(self) -> tuple[str, int, str] | None:
        """(file, line, function) of the innermost model frame awaiting `pending`."""
        return await_site(self.coro)


def model_frames(coro: Any) -> Iterator[tuple[str, int, str]]:
    """(file, line, function) of each non-rt frame down a suspended coroutine's cr_await
    chain, outermost first."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        path = frame.f_code.co_filename
        if "/faultline/rt/" not in path:
            yield (path, frame.f_lineno, frame.f_code.co_name)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def await_site(coro: Any) -> tuple[str, int, str] | None:
    """The innermost non-rt frame of a suspended coroutine (model_frames' last)."""
    frames = tuple(model_frames(coro))
    return frames[-1] if frames else None


# ---------------------------------------------------------------- protocols

class Strategy(Protocol):
    """Chooses which enabled thread performs its pending op next."""

    def choose(self, ex: Execution, enabled: Sequence[Thread]) -> Thread: ...


class Observer(Protocol):
    """Hooks an execution calls; every method is optional (see Hooks)."""


class Hooks:
    """Default no-op observer; subclass and override what you need."""

    def created(self, ex: Execution, t: Thread) -> None:
        """Thread `t` was spawned."""

    def performing(self, ex: Execution, t: Thread, op: ops.Op) -> None:
        """`t` is about to perform `op`; only observers with `wants_sites` get this."""

    wants_sites = False
    wants_footprints = False      # record the plain model accesses of every step
    wants_accesses = False        # log every field access of every step (race detection)

    def acquiring(self, ex: Execution, t: Thread, op: ops.Acquire) -> None:
        """`t` is about to be granted a blocking acquisition (its site is still live)."""

    def stepped(self, ex: Execution, t: Thread, op: ops.Op, result: Any) -> None:
        """`t` performed `op` (returning `result`) and ran to its next trap."""

    def noted(self, ex: Execution, t: Thread, note: ops.Note) -> None:
        """Model code in `t` reported `note` (not a scheduling point)."""

    def costed(self, ex: Execution, t: Thread, cost: ops.Cost) -> None:
        """Model code in `t` charged simulated CPU time."""

    def terminated(self, ex: Execution, t: Thread) -> None:
        """`t` returned."""

    def finished(self, ex: Execution, outcome: Outcome) -> None:
        """The execution ended with `outcome`."""


@dataclass(slots=True)
class Outcome:
    """How an execution ended."""

    steps: int
    schedule: list[int]
    violation: Violation | None = None
    violation_thread: str | None = None

    @property
    def verdict(self) -> str:
        """"pass" or "violation"."""
        return "pass" if self.violation is None else "violation"


# ---------------------------------------------------------------- execution

class Execution:
    """Runs threads to completion under `strategy`, calling `observers`' hooks."""

    def __init__(self, strategy: Strategy, observers: Sequence[Hooks] = (),
                 step_bound: int = 20_000) -> None:
        self.strategy = strategy
        self.observers = list(observers)
        self.step_bound = step_bound
        self.threads: list[Thread] = []
        self.steps = 0
        self.schedule: list[int] = []
        self.sleepq: dict[int, deque[Thread]] = {}   # keyed by id(chan): lookups only
        self.current: Thread | None = None
        self._site_observers = [o for o in self.observers if o.wants_sites]
        # The hooks observers override, bound once: most are Hooks' no-ops, which the
        # step loop would otherwise call for every observer at every step and note.
        self._on_stepped = _overriding(self.observers, "stepped")
        self._on_noted = _overriding(self.observers, "noted")
        self._on_costed = _overriding(self.observers, "costed")
        self._on_terminated = _overriding(self.observers, "terminated")
        self._on_acquiring = _overriding(self.observers, "acquiring")
        self._noting = bool(self._on_noted)      # for context.noting, while we step
        self._footprints = any(o.wants_footprints for o in self.observers)
        self._recording = False                 # counted in context.recording_footprints
        self.records_footprints = self._footprints      # last_footprint is filled per step
        self._accesses = any(o.wants_accesses for o in self.observers)
        # With wants_accesses: the op's own field accesses (an atomic op's function, a
        # sleep check, a spawned thread's first segment) and those of the code after it.
        self.op_accesses: list[Any] = []
        self.code_accesses: list[Any] = []
        self._pausers: list[Thread] = []        # threads waiting out a pause()
        self._live: list[Thread] = []           # threads not done, in tid order
        self.last_footprint: list[tuple[int, str]] = []

    # -- public
    def spawn(self, name: str, group: str, coro: Any) -> Thread:
        """Create a thread and run it up to its first trap."""
        t = Thread(len(self.threads), name, group, coro)
        self.threads.append(t)
        self._live.append(t)
        for o in self.observers:
            o.created(self, t)
        prev, prev_noting = context.current, context.noting
        context.current, context.noting = t, self._noting
        try:
            self._resume(t, None)
        finally:
            context.current, context.noting = prev, prev_noting
        return t

    def enabled(self) -> list[Thread]:
        """Threads that may take the next step, in tid order (paused ones only when no
        other thread can run)."""
        return self._awake([t for t in self._live if _can_perform(t)])

    def _awake(self, enabled: list[Thread]) -> list[Thread]:
        # pause() sleeps a tick: every thread that could run when it paused runs first
        # (round-robin fairness, so two spinners cannot starve the thread they wait on).
        if not self._pausers:
            return enabled
        ids = {t.tid for t in enabled}
        awake = [t for t in enabled if not t.pause_waits & ids]
        return awake or enabled

    def run(self) -> Outcome:
        """Step until every thread is done or a violation ends the run."""
        outcome = Outcome(0, self.schedule)
        live, choose, step = self._live, self.strategy.choose, self.step
        if self._footprints:
            self._record_footprints(True)
        else:
            context.recording_footprints(0)
        try:
            while live:
                # Most pending ops are always enabled: only an Acquire or a Resume
                # (the gated ops) needs _can_perform's test.
                enabled = [t for t in live
                           if type(t.pending) not in _GATED or _can_perform(t)]
                if self._pausers:
                    enabled = self._awake(enabled)
                if not enabled:
                    raise Violation("deadlock", self.describe_deadlock(list(live)))
                if self.steps >= self.step_bound:
                    raise Violation("no-progress", self.describe_no_progress(list(live)))
                step(choose(self, enabled))
        except Violation as v:
            outcome.violation = v
            outcome.violation_thread = self.current.name if self.current else None
        finally:
            self._close_all()
            self._record_footprints(False)
        outcome.steps = self.steps
        for o in self.observers:
            o.finished(self, outcome)
        return outcome

    def _close_all(self) -> None:
        # Threads cut short by a violation: close their coroutines (and those of spawns
        # not yet performed) so nothing is left half-run or never awaited.
        for t in self.threads:
            if type(t.pending) is ops.Spawn:
                t.pending.coro.close()
            if not t.done:
                t.coro.close()

    def step(self, t: Thread) -> None:
        """Perform `t`'s pending op and resume it to its next trap (one step)."""
        op = t.pending
        assert op is not None
        self.schedule.append(t.tid)
        self.steps += 1
        t.steps += 1
        if self._pausers or type(op) is _Pause:
            self._track_pauses(t, op)
        self.current = context.current = t
        context.noting = self._noting
        if self._footprints:
            if not self._recording:     # stepped before run(): start recording now
                self._record_footprints(True)
            self.last_footprint = context.footprint_log = []
        try:
            for o in self._site_observers:
                o.performing(self, t, op)
            if self._accesses:
                result = self._perform_logged(t, op)
            else:
                result = self._perform(t, op)
                self._resume(t, result)
            for stepped in self._on_stepped:
                stepped(self, t, op, result)
        finally:
            context.current = None
            context.footprint_log = None
        self.current = None

    def _track_pauses(self, t: Thread, op: ops.Op) -> None:
        # Every step releases its thread from the pausers' waits; a Pause starts one.
        if self._pausers:
            for other in self._pausers:
                other.pause_waits.discard(t.tid)
            self._pausers = [p for p in self._pausers if p.pause_waits]
        if type(op) is _Pause:
            t.pause_waits = {o.tid for o in self._live if o is not t and _can_perform(o)}
            if t.pause_waits and t not in self._pausers:
                self._pausers.append(t)

    def _record_footprints(self, on: bool) -> None:
        # Tracked writes are logged only while some execution records footprints.
        if on != self._recording:
            self._recording = on
            context.recording_footprints(1 if on else -1)

    def _perform_logged(self, t: Thread, op: ops.Op) -> Any:
        # The same as _perform + _resume, with the accesses of each half logged apart:
        # the op's are the primitive's own, the code's are plain.  Observers' hooks
        # after the step (invariant checks) are never logged.
        self.op_accesses = context.access_log = []
        try:
            result = self._perform(t, op)
            self.code_accesses = context.access_log = []
            self._resume(t, result)
        finally:
            context.access_log = None
        return result

    # -- performing ops
    def _perform(self, t: Thread, op: ops.Op) -> Any:
        handler = _HANDLERS.get(type(op))
        if handler is None:
            raise FaultlineInternalError(
                f"unknown op {op!r} yielded by thread {t.name} at {t.where()}")
        try:
            return handler(self, t, op)
        except Panic as p:
            raise Violation("panic", str(p)) from None
        except (Violation, NotModelled, ReplayDivergence):
            raise
        except Exception as e:
            raise FaultlineInternalError(
                f"bug in faultline, not in your scenario: {type(e).__name__}: {e} while "
                f"performing {op!r} for thread {t.name}") from e

    def _acquire(self, t: Thread, op: ops.Acquire) -> bool | None:
        if op.try_:
            if not op.lock.can_acquire(t.tid, op.mode):
                return False
        else:
            for acquiring in self._on_acquiring:
                acquiring(self, t, op)
        op.lock.grant(t.tid, op.mode)
        t.held.append(op.lock)
        return True if op.try_ else None

    def _release(self, t: Thread, op: ops.Release) -> None:
        op.lock.drop(t.tid)
        t.held.remove(op.lock)

    def _upgrade(self, t: Thread, op: ops.Upgrade) -> bool:
        return op.lock.upgrade(t.tid)

    def _downgrade(self, t: Thread, op: ops.Downgrade) -> None:
        op.lock.downgrade_to_shared(t.tid)

    def _busy(self, t: Thread, op: ops.Busy) -> Any:
        result, wake = op.word.apply(t.tid, op.action, op.gate)
        if wake:
            self.wake(op.word, one=False)
        return result

    def _sleep(self, t: Thread, op: ops.Sleep) -> bool:
        if op.check is not None and not op.check():
            return False
        if op.interlock is not None:
            self._release(t, ops.Release(op.interlock))
        self.sleepq.setdefault(id(op.chan), deque()).append(t)
        t.woken, t.wchan, t.wmesg = False, op.chan, op.wmesg
        return True

    def _resume_op(self, t: Thread, op: ops.Resume) -> None:
        t.wchan, t.wmesg = None, ""

    def _wakeup(self, t: Thread, op: ops.Wakeup) -> None:
        self.wake(op.chan, op.one)

    def wake(self, chan: Any, one: bool) -> list[Thread]:
        """wakeup / wakeup_one: make sleepers on `chan` runnable, FIFO; returns them."""
        q = self.sleepq.get(id(chan))
        woken = []
        while q:
            t = q.popleft()
            t.woken = True
            woken.append(t)
            if one:
                break
        return woken

    def _atomic(self, t: Thread, op: ops.Atomic) -> Any:
        return op.fn()

    def _pause(self, t: Thread, op: ops.Pause) -> None:
        return None

    def _spawn(self, t: Thread, op: ops.Spawn) -> None:
        self.spawn(op.name, op.group, op.coro)
        self.current = t

    # -- resuming coroutines
    def _resume(self, t: Thread, value: Any) -> None:
        """Send `value` into `t` and run it up to its next scheduling point (the
        caller has made `t` context.current)."""
        try:
            send = t.coro.send
            op = send(value)
            while True:
                inline = _INLINE.get(type(op))
                if inline is None:
                    inline = _is_inline(op, t)
                if not inline:
                    break
                self._inline(t, op)
                op = send(None)
            t.pending = op
        except StopIteration:
            t.done, t.pending = True, None
            self._live.remove(t)
            if t.held:
                raise Violation("panic", f"thread {t.name} exited holding {t.held}") from None
            for terminated in self._on_terminated:
                terminated(self, t)
        except Panic as p:
            raise Violation("panic", str(p)) from None
        except (Violation, NotModelled, FaultlineInternalError):
            raise
        except Exception as e:   # model code bug: report it as ours, with its site
            raise FaultlineInternalError(
                f"bug in faultline, not in your scenario: {type(e).__name__}: {e} "
                f"(thread {t.name})").with_traceback(sys.exc_info()[2]) from e

    def _inline(self, t: Thread, op: ops.Op) -> None:
        if type(op) is ops.Note:
            for noted in self._on_noted:
                noted(self, t, op)
        elif type(op) is ops.Cost:
            for costed in self._on_costed:
                costed(self, t, op)
        else:
            raise FaultlineInternalError(f"unknown inline op {op!r} from {t.name}")

    # -- diagnostics
    def describe_blocked(self, t: Thread) -> str:
        """What `t` waits for, in kernel words."""
        op = t.pending
        if type(op) is ops.Resume:
            return f"asleep on {t.wchan!r} ({t.wmesg})"
        if type(op) is ops.Acquire:
            lk = op.lock
            holder = f"owner {self.threads[lk.owner].name}" if lk.owner is not None else \
                "readers " + ",".join(self.threads[r].name for r in lk.readers)
            return f"blocked on {lk.name} {lk.label} ({'x' if op.mode == 'x' else 's'}; {holder})"
        return f"runnable at {op!r}"

    def describe_deadlock(self, live: list[Thread]) -> str:
        """The deadlock message: every live thread and what it waits for."""
        parts = [f"{t.name} {self.describe_blocked(t)}" for t in live]
        return "deadlock: no thread can run; " + "; ".join(parts)

    def describe_no_progress(self, live: list[Thread]) -> str:
        """The step-bound message, naming the probable cause."""
        spinning = sorted(live, key=lambda t: -t.steps)[:3]
        who = ", ".join(f"{t.name} ({t.steps} steps)" for t in spinning)
        return (f"no progress: the step bound of {self.step_bound} was reached with "
                f"{len(live)} thread(s) unfinished; busiest: {who}. Probable cause: a "
                f"livelock (a fault restarting forever) or a bound too small for the "
                f"scenario (raise step_bound in the scenario file)")


def _can_perform(t: Thread) -> bool:
    """Whether `t`'s pending op can be performed now (only Acquire and Resume wait)."""
    op = t.pending
    kind = type(op)
    if kind is _Acquire:
        if op.try_:
            return True
        # A recursive acquisition must reach grant() and panic, not wait on itself.
        return op.lock.can_acquire(t.tid, op.mode) or op.lock.held_by(t.tid) is not None
    if kind is _Resume:
        return t.woken
    return True


_Acquire, _Resume, _Pause = ops.Acquire, ops.Resume, ops.Pause
_GATED = frozenset((ops.Acquire, ops.Resume))     # the ops _can_perform may refuse
# Whether each op type is inline, for the resume loop's fast test; a type not listed
# goes through _is_inline, which rejects what is not an op.
_INLINE: dict[type, bool] = {
    k: k.inline for k in (ops.Acquire, ops.Release, ops.Upgrade, ops.Downgrade, ops.Busy,
                          ops.Sleep, ops.Resume, ops.Wakeup, ops.Atomic, ops.Pause,
                          ops.Spawn, ops.Cost, ops.Note)}


def _overriding(observers: Sequence[Hooks], hook: str) -> list[Callable[..., Any]]:
    """`hook` bound on each observer that overrides Hooks' no-op, in observer order."""
    default = getattr(Hooks, hook)
    bound = [getattr(o, hook) for o in observers]
    return [fn for fn in bound if getattr(fn, "__func__", None) is not default]


def _is_inline(op: Any, t: Thread) -> bool:
    if not isinstance(op, ops.Op):
        raise FaultlineInternalError(
            f"thread {t.name} yielded {op!r} (a {type(op).__name__!r}), which is not a "
            f"faultline op (await only the "
            f"functions of faultline.rt.ops)")
    return op.inline


_HANDLERS: dict[type, Callable[[Execution, Thread, Any], Any]] = {
    ops.Acquire: Execution._acquire,
    ops.Release: Execution._release,
    ops.Upgrade: Execution._upgrade,
    ops.Downgrade: Execution._downgrade,
    ops.Busy: Execution._busy,
    ops.Sleep: Execution._sleep,
    ops.Resume: Execution._resume_op,
    ops.Wakeup: Execution._wakeup,
    ops.Atomic: Execution._atomic,
    ops.Pause: Execution._pause,
    ops.Spawn: Execution._spawn,
}
