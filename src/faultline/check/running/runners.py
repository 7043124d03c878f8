"""Runners: where work units execute, and the in-order scheduler every merge reads from.

What lives here: the `Runner` protocol (submit a unit, wait for some, read a result,
cancel, poll for live progress), `InlineRunner` (this process, one unit at a time, in
submission order), `PoolRunner` (local worker processes, which never see Ctrl-C, send
their units' live progress over a pipe (check.running.live) and are terminated when the
check stops early), `open_runner` (picks one, or Ray through `check.running.ray_backend`),
and `Ordered`, which runs units at fixed positions 0..n-1 and lets the caller stop after
a position: positions after it are cancelled or ignored, positions before it always
finish, and a position whose value was partial may run `again`; while it waits it
polls the runner every POLL_SECONDS, and an `idle` callback may run (a checkpoint).
Rule kept: a merge reads only `Ordered.needed()`, the values of positions before the
stop, so what it computes never depends on the runner, the number of workers or the
order units finished in.  Must not be added: knowledge of strategies or results
(callers own both).

    offer(pos, fn, args) --> submit lowest offered positions (window) --> wait
        --> finished() yields (pos, value) --> caller may offer more or stop_after(pos)
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, suppress
from multiprocessing.queues import SimpleQueue
from typing import Any, Protocol

from faultline.check.running import live

# How often a wait for units wakes up to pass on live progress (and to let a
# checkpointer look at the clock and at Ctrl-C): wall clock, never a result.
POLL_SECONDS = 0.25


class Runner(Protocol):
    """Runs work units: module-level functions of picklable arguments, deterministic,
    whose return value is their only effect."""

    width: int       # units that run at once (a hint for how finely to split work)
    window: int      # units to keep submitted at once

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Start `fn(*args)`; a handle."""

    def wait(self, handles: Sequence[Any], timeout: float | None = None) -> list[Any]:
        """Some of `handles` (at least one) whose unit has finished; with `timeout`,
        possibly none once that many seconds have passed."""

    def result(self, handle: Any) -> Any:
        """The finished unit's value (or its exception, raised)."""

    def cancel(self, handle: Any) -> None:
        """Drop a unit whose value is no longer needed."""

    def poll(self) -> None:
        """Pass on the live progress units reported since the last poll."""


class _Deferred:
    """An InlineRunner handle: the call, run when it is first waited for."""

    __slots__ = ("args", "fn", "key", "ran", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], key: str) -> None:
        self.fn, self.args, self.key = fn, args, key
        self.ran, self.value = False, None

    def run(self, listener: live.Listener | None) -> None:
        if listener is None:
            self.value = self.fn(*self.args)
        else:
            with live.into(listener, self.key):
                self.value = self.fn(*self.args)
        self.ran = True


class InlineRunner:
    """Units run in this process when waited for, earliest submitted first; their live
    progress goes straight to `listener`."""

    width = window = 1

    def __init__(self, listener: live.Listener | None = None) -> None:
        self.listener = listener
        self._keys = itertools.count()

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Deferred:
        """Defer `fn(*args)`."""
        return _Deferred(fn, args, f"inline-{next(self._keys)}")

    def wait(self, handles: Sequence[_Deferred], timeout: float | None = None
             ) -> list[_Deferred]:
        """Run the first handle (unless it already ran); it cannot time out."""
        h = handles[0]
        if not h.ran:
            h.run(self.listener)
        return [h]

    def result(self, handle: _Deferred) -> Any:
        """The value."""
        return handle.value

    def cancel(self, handle: _Deferred) -> None:
        """Nothing to do: a deferred call that is never waited for never runs."""

    def poll(self) -> None:
        """Nothing to do: progress went to the listener as the unit ran."""


class PoolRunner:
    """Units on `jobs` local worker processes (forked on POSIX, so policies registered
    at run time, such as test mutants, exist in the workers too).  Their live progress
    comes back over `pipe` and goes to `listener` when polled."""

    def __init__(self, pool: ProcessPoolExecutor, jobs: int, pipe: SimpleQueue[Any],
                 listener: live.Listener | None = None) -> None:
        self.pool, self.width, self.window = pool, jobs, 2 * jobs
        self.pipe, self.listener = pipe, listener
        self._keys = itertools.count()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `fn(*args)` on the pool.  The first submit forks the workers: SIGINT is
        blocked meanwhile, so that none can be interrupted before its initializer has
        made it ignore Ctrl-C (a terminal's Ctrl-C reaches every worker too)."""
        key = f"pool-{next(self._keys)}"
        with _sigint_blocked():
            return self.pool.submit(_pool_unit, key, fn, *args)

    def wait(self, handles: Sequence[Future[Any]], timeout: float | None = None
             ) -> list[Future[Any]]:
        """The futures that are done, once at least one is (or `timeout` passed)."""
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return [h for h in handles if h in done]

    def result(self, handle: Future[Any]) -> Any:
        """The value."""
        return handle.result()

    def cancel(self, handle: Future[Any]) -> None:
        """Cancel if not started (a running unit finishes; its value is ignored)."""
        handle.cancel()

    def poll(self) -> None:
        """Hand the workers' progress messages so far to the listener."""
        while not self.pipe.empty():
            message = self.pipe.get()
            if self.listener is not None:
                live.deliver(self.listener, message)


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or \
            not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def open_runner(jobs: int, use_ray: bool = False, ray_address: str | None = None,
                listener: live.Listener | None = None) -> Iterator[Runner]:
    """A runner for `jobs` workers: Ray (at `ray_address`, or a local instance with
    `jobs` CPUs), else a local process pool, else (jobs 1) this process.  Units' live
    progress (check.running.live) reaches `listener` as they run."""
    if use_ray:
        from faultline.check.running.ray_backend import start_ray
        with start_ray(jobs, ray_address, listener) as runner:
            yield runner
        return
    if jobs <= 1:
        yield InlineRunner(listener)
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    pipe: SimpleQueue[Any] = ctx.SimpleQueue()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                               initializer=_worker_init, initargs=(os.getpid(), pipe))
    try:
        yield PoolRunner(pool, jobs, pipe, listener)
    except BaseException:
        # Ctrl-C, or an error: the units still running are not needed, and waiting
        # for them could take as long as the whole check.
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes (concurrent.futures has no public way)."""
    procs = getattr(pool, "_processes", None) or {}
    for proc in list(procs.values()):
        with suppress(Exception):
            proc.terminate()


class Ordered:
    """Units at positions 0..n-1 on a runner.  `offer` makes a position runnable (it
    may be offered late, once an earlier value is known), `settle` gives a value
    without running anything, `stop_after` says later positions are not needed,
    `deal_first` says which offered positions to submit first.
    `finished` yields (position, value) as units finish, until every needed position
    has a value; `needed` is then the values in position order."""

    def __init__(self, runner: Runner, n: int) -> None:
        self.runner, self.limit = runner, n
        self.offered: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self.inflight: dict[Any, int] = {}
        self.values: dict[int, Any] = {}
        self.settled: list[int] = []           # settled, not yet yielded
        self.rank: dict[int, int] = {}         # deal order (deal_first); else positions

    def deal_first(self, order: Sequence[int]) -> None:
        """Submit offered positions in `order` (positions it leaves out go after it, in
        position order) instead of lowest first.  Values are still `needed` in
        position order, so only the wall time can change."""
        self.rank = {p: i for i, p in enumerate(order)}

    def offer(self, pos: int, fn: Callable[..., Any], *args: Any) -> None:
        """Position `pos` is `fn(*args)`."""
        if pos < self.limit:
            self.offered[pos] = (fn, args)

    def settle(self, pos: int, value: Any) -> None:
        """Position `pos` has `value` (no unit runs for it)."""
        if pos < self.limit:
            self.values[pos] = value
            self.settled.append(pos)

    def stop_after(self, pos: int) -> None:
        """Positions after `pos` are not needed: cancel or forget them."""
        self.limit = min(self.limit, pos + 1)
        for h, p in list(self.inflight.items()):
            if p >= self.limit:
                self.runner.cancel(h)
                del self.inflight[h]
        self.offered = {p: u for p, u in self.offered.items() if p < self.limit}

    def needed(self) -> list[Any]:
        """The values of positions before the stop, in position order."""
        return [self.values[p] for p in range(self.limit)]

    def again(self, pos: int, fn: Callable[..., Any], *args: Any) -> None:
        """Position `pos`, whose value was partial (a paused unit), is `fn(*args)` now."""
        self.values.pop(pos, None)
        self.offer(pos, fn, *args)

    def finished(self, idle: Callable[[], None] | None = None,
                 every: float = POLL_SECONDS) -> Iterator[tuple[int, Any]]:
        """(position, value) of each unit as it finishes (and of each settled one).
        Every `every` seconds of waiting the runner passes on live progress, and
        `idle`, if given, is called when no unit finished meanwhile (a checkpointer's
        chance to save while workers are busy; an InlineRunner runs its units to the
        end, so there it is never called)."""
        while True:
            while self.settled:
                p = self.settled.pop(0)
                yield p, self.values[p]
            if all(p in self.values for p in range(self.limit)):
                return
            self._fill()
            if not self.inflight:
                raise RuntimeError("bug in faultline: a needed work unit was never offered")
            ready = self.runner.wait(list(self.inflight), every)
            # Before the values: a unit's last progress message was sent before it ended.
            self.runner.poll()
            if not ready and idle is not None:
                idle()
            for h in ready:
                if h not in self.inflight:     # stopped after an earlier value: not needed
                    continue
                p = self.inflight.pop(h)
                self.values[p] = self.runner.result(h)
                yield p, self.values[p]

    def _fill(self) -> None:
        # The lowest positions first (with one worker that is exactly position order),
        # unless deal_first gave an order.
        n = len(self.rank)
        for p in sorted(self.offered, key=lambda p: self.rank.get(p, n + p)):
            if len(self.inflight) >= self.runner.window:
                break
            fn, args = self.offered.pop(p)
            self.inflight[self.runner.submit(fn, *args)] = p


_pipe: SimpleQueue[Any] | None = None      # a pool worker's way back to the checking process


def _pool_unit(key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """A work unit in a pool worker, its live progress batched onto the pipe."""
    assert _pipe is not None
    with live.batched(key, _pipe.put):
        return fn(*args)


def _worker_init(parent: int, pipe: SimpleQueue[Any]) -> None:
    """A pool worker's initializer.  Workers ignore Ctrl-C: the checking process
    handles it (it stops them, after checkpointing with --state), and a worker's
    KeyboardInterrupt would only print tracebacks; SIGINT, blocked while the worker
    was forked (PoolRunner.submit), is ignored before it is unblocked.  A worker exits
    when the checking process is gone: a run killed with SIGKILL (to be resumed from
    --state) cannot shut its pool down, and its idle workers would otherwise wait on
    the task queue forever, holding its stdout open."""
    global _pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _pipe = pipe
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
