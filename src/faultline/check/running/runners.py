"""Runners: where work units execute, and the in-order scheduler every merge reads from.

What lives here: the `Runner` protocol (submit a unit, wait for some, read a result,
cancel), `InlineRunner` (this process, one unit at a time, in submission order),
`PoolRunner` (local worker processes, which ignore Ctrl-C and are terminated when the
check stops early), `open_runner` (picks one, or Ray through `check.running.ray_backend`),
and `Ordered`, which runs units at fixed positions 0..n-1 and lets the caller stop after
a position: positions after it are cancelled or ignored, positions before it always
finish; while it waits, an `idle` callback may run every so often (a checkpoint).
Rule kept: a merge reads only `Ordered.needed()`, the values of positions before the
stop, so what it computes never depends on the runner, the number of workers or the
order units finished in.  Must not be added: knowledge of strategies or results
(callers own both).

    offer(pos, fn, args) --> submit lowest offered positions (window) --> wait
        --> finished() yields (pos, value) --> caller may offer more or stop_after(pos)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager, suppress
from typing import Any, Protocol


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


class _Deferred:
    """An InlineRunner handle: the call, run when it is first waited for."""

    __slots__ = ("args", "fn", "ran", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.ran, self.value = False, None

    def run(self) -> None:
        self.value, self.ran = self.fn(*self.args), True


class InlineRunner:
    """Units run in this process when waited for, earliest submitted first."""

    width = window = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Deferred:
        """Defer `fn(*args)`."""
        return _Deferred(fn, args)

    def wait(self, handles: Sequence[_Deferred], timeout: float | None = None
             ) -> list[_Deferred]:
        """Run the first handle (unless it already ran); it cannot time out."""
        h = handles[0]
        if not h.ran:
            h.run()
        return [h]

    def result(self, handle: _Deferred) -> Any:
        """The value."""
        return handle.value

    def cancel(self, handle: _Deferred) -> None:
        """Nothing to do: a deferred call that is never waited for never runs."""


class PoolRunner:
    """Units on `jobs` local worker processes (forked on POSIX, so policies registered
    at run time, such as test mutants, exist in the workers too)."""

    def __init__(self, pool: ProcessPoolExecutor, jobs: int) -> None:
        self.pool, self.width, self.window = pool, jobs, 2 * jobs

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `fn(*args)` on the pool."""
        return self.pool.submit(fn, *args)

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


@contextmanager
def open_runner(jobs: int, use_ray: bool = False, ray_address: str | None = None
                ) -> Iterator[Runner]:
    """A runner for `jobs` workers: Ray (at `ray_address`, or a local instance with
    `jobs` CPUs), else a local process pool, else (jobs 1) this process."""
    if use_ray:
        from faultline.check.running.ray_backend import start_ray
        with start_ray(jobs, ray_address) as runner:
            yield runner
        return
    if jobs <= 1:
        yield InlineRunner()
        return
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                               initializer=_exit_with_parent, initargs=(os.getpid(),))
    try:
        yield PoolRunner(pool, jobs)
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
    without running anything, `stop_after` says later positions are not needed.
    `finished` yields (position, value) as units finish, until every needed position
    has a value; `needed` is then the values in position order."""

    def __init__(self, runner: Runner, n: int) -> None:
        self.runner, self.limit = runner, n
        self.offered: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self.inflight: dict[Any, int] = {}
        self.values: dict[int, Any] = {}
        self.settled: list[int] = []           # settled, not yet yielded

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

    def finished(self, idle: Callable[[], None] | None = None, every: float = 0.5
                 ) -> Iterator[tuple[int, Any]]:
        """(position, value) of each unit as it finishes (and of each settled one).
        With `idle`, it is called whenever `every` seconds pass with no unit finishing
        (a checkpointer's chance to save while workers are busy; an InlineRunner runs
        its units to the end, so there it is never called)."""
        while True:
            while self.settled:
                p = self.settled.pop(0)
                yield p, self.values[p]
            if all(p in self.values for p in range(self.limit)):
                return
            self._fill()
            if not self.inflight:
                raise RuntimeError("bug in faultline: a needed work unit was never offered")
            ready = self.runner.wait(list(self.inflight),
                                     None if idle is None else every)
            if not ready and idle is not None:
                idle()
            for h in ready:
                if h not in self.inflight:     # stopped after an earlier value: not needed
                    continue
                p = self.inflight.pop(h)
                self.values[p] = self.runner.result(h)
                yield p, self.values[p]

    def _fill(self) -> None:
        # The lowest positions first: with one worker that is exactly position order.
        for p in sorted(self.offered):
            if len(self.inflight) >= self.runner.window:
                break
            fn, args = self.offered.pop(p)
            self.inflight[self.runner.submit(fn, *args)] = p


def _exit_with_parent(parent: int) -> None:
    """A pool worker's initializer: exit when the checking process is gone.  A run
    killed with SIGKILL (to be resumed from --state) cannot shut its pool down, and
    its idle workers would otherwise wait on the task queue forever, holding its
    stdout open.  Workers ignore Ctrl-C: the checking process handles it (it stops
    them, after checkpointing with --state), and a worker's KeyboardInterrupt would
    only print tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
