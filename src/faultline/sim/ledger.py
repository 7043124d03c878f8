"""Where each simulated CPU's time went: work, spinning, sleeping, idle; locks; stacks.

What lives here: `Ledger`, which the timed driver charges as time passes.  Each CPU's
time is charged in contiguous intervals (work by label; spinning by lock class, on
CPU; sleeping by wait channel, off CPU; idle), clipped to the measured window
[start, end), so the four always add up to ncpus x (end - start).  Beside that: the
lock profile (lock_profiling's acquisitions, contended acquisitions, total and max
wait), operations completed, folded stacks for a flame graph (with `profile`), and
a Chrome/Perfetto trace of the first `trace_window_ns` of the window.
Rule kept: the ledger only adds up what the driver tells it; it never decides.
Must not be added: SimPy, prices, or any reading of what a lock protects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faultline.rt.execution import Thread

_RT_FRAMES = "/faultline/rt/"


@dataclass(slots=True)
class LockStat:
    """One lock class, FreeBSD lock_profiling style."""

    acquisitions: int = 0
    contended: int = 0
    wait_ns: int = 0
    max_wait_ns: int = 0


class Ledger:
    """The accounts of one timed run."""

    def __init__(self, ncpus: int, start: int, end: int, *, profile: bool = False,
                 trace_window_ns: int = 0) -> None:
        if not 0 <= start < end:
            raise ValueError(f"the measured window [{start}, {end}) ns is empty")
        self.ncpus, self.start, self.end = ncpus, start, end
        self.profile = profile
        self.trace_end = start + trace_window_ns if trace_window_ns else start
        self.work_ns: dict[str, int] = {}
        self.work_count: dict[str, int] = {}  # how many charges of each work label
        self.spin_ns: dict[str, int] = {}
        self.sleep_ns: dict[str, int] = {}
        self.idle_ns = 0
        self.locks: dict[str, LockStat] = {}
        self.ops: dict[str, int] = {}
        self.folded: dict[str, int] = {}
        self.trace: list[list[Any]] = []      # [cpu, name, t0, t1]
        self._last = [0] * ncpus              # accounted up to, per CPU
        # per CPU: the open wait (kind, key, stack, lock class waited for or None)
        self._open: list[tuple[str, str, tuple[str, ...] | None, str | None] | None] = \
            [None] * ncpus
        self._last_trace: list[list[Any] | None] = [None] * ncpus

    # -- charging time
    def begin(self, cpu: int, now: int) -> None:
        """CPU `cpu` gets its thread at `now`: idle before."""
        self._charge(cpu, "idle", "idle", now, None, None)

    def work(self, cpu: int, label: str, ns: int, stack: tuple[str, ...] | None) -> None:
        """`ns` of on-CPU work `label`, from where the CPU's accounts stand."""
        self._charge(cpu, "work", label, self._last[cpu] + ns, stack, None)

    def open_wait(self, cpu: int, kind: str, key: str, stack: tuple[str, ...] | None,
                  *, lock: bool = False) -> None:
        """From now the CPU waits: kind "spin" (on CPU, key what it spins on: a lock
        class, a busy word, an atomic's line) or "sleep" (off CPU, key a wait channel;
        "lock: CLASS" on a lock's turnstile); with `lock` the wait counts in the lock
        profile.  Closed by close_wait or finish."""
        cls = (key[6:] if key.startswith("lock: ") else key) if lock else None
        self._open[cpu] = (kind, key, stack, cls)

    def close_wait(self, cpu: int, now: int) -> None:
        """The wait opened last ends at `now`."""
        opened = self._open[cpu]
        assert opened is not None, "close_wait without open_wait"
        self._open[cpu] = None
        kind, key, stack, cls = opened
        self._charge(cpu, kind, key, now, stack, cls)

    def spin_for(self, cpu: int, key: str, ns: int, stack: tuple[str, ...] | None,
                 *, lock: bool = False) -> None:
        """`ns` of on-CPU spinning on `key`, from where the CPU's accounts stand."""
        self._charge(cpu, "spin", key, self._last[cpu] + ns, stack, key if lock else None)

    def idle(self, cpu: int) -> None:
        """The CPU's thread is done: idle from now on."""
        self._open[cpu] = ("idle", "idle", None, None)

    def finish(self, cpu: int, end: int) -> None:
        """Close the CPU's accounts at `end` (an open wait runs until then)."""
        opened = self._open[cpu]
        if opened is not None:
            self.close_wait(cpu, max(end, self._last[cpu]))
        elif self._last[cpu] < end:
            self._charge(cpu, "idle", "idle", end, None, None)

    def _charge(self, cpu: int, kind: str, key: str, t1: int,
                stack: tuple[str, ...] | None, lock_class: str | None) -> None:
        t0 = self._last[cpu]
        self._last[cpu] = t1
        a = t0 if t0 > self.start else self.start
        b = t1 if t1 < self.end else self.end
        if b <= a:
            return
        ns = b - a
        if kind == "work":
            table = self.work_ns
        elif kind == "spin":
            table = self.spin_ns
        elif kind == "sleep":
            table = self.sleep_ns
        else:
            self.idle_ns += ns
            return
        table[key] = table.get(key, 0) + ns
        if kind == "work":
            self.work_count[key] = self.work_count.get(key, 0) + 1
        if lock_class is not None:
            self._lock(lock_class).wait_ns += ns
        if self.profile and stack is not None:
            leaf = _leaf(kind, key)
            folded = ";".join(stack) + (";" + leaf if leaf else "")
            self.folded[folded] = self.folded.get(folded, 0) + ns
        if a < self.trace_end:
            self._trace(cpu, _leaf(kind, key) or "kernel", a, min(b, self.trace_end))

    def _trace(self, cpu: int, name: str, a: int, b: int) -> None:
        last = self._last_trace[cpu]
        if last is not None and last[1] == name and last[3] == a:
            last[3] = b
            return
        ev = [cpu, name, a, b]
        self.trace.append(ev)
        self._last_trace[cpu] = ev

    # -- locks and operations
    def _lock(self, name: str) -> LockStat:
        stat = self.locks.get(name)
        if stat is None:
            stat = self.locks[name] = LockStat()
        return stat

    def acquired(self, name: str, now: int) -> None:
        """A lock of class `name` was taken at `now`."""
        if self.start <= now < self.end:
            self._lock(name).acquisitions += 1

    def contended(self, name: str, wait_ns: int, now: int) -> None:
        """A lock of class `name` was taken at `now` after waiting `wait_ns`."""
        if self.start <= now < self.end:
            stat = self._lock(name)
            stat.contended += 1
            stat.max_wait_ns = max(stat.max_wait_ns, wait_ns)

    def op(self, kind: str, now: int) -> None:
        """One workload operation `kind` completed at `now`."""
        if self.start <= now < self.end:
            self.ops[kind] = self.ops.get(kind, 0) + 1

    # -- stacks
    def stack_of(self, t: Thread, roots: dict[int, str]) -> tuple[str, ...]:
        """The model functions `t` is in, outermost first, under its root name."""
        names = [roots.get(t.tid, t.group)]
        coro = t.coro
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            if _RT_FRAMES not in frame.f_code.co_filename:
                names.append(frame.f_code.co_name)
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return tuple(names)

    # -- totals
    def total_ns(self) -> int:
        """Everything charged: ncpus x window once every CPU is finished."""
        return (sum(self.work_ns.values()) + sum(self.spin_ns.values())
                + sum(self.sleep_ns.values()) + self.idle_ns)

    def window_ns(self) -> int:
        """The measured window's length."""
        return self.end - self.start


def _leaf(kind: str, key: str) -> str:
    if kind == "spin":
        return f"spin {key}"
    if kind == "sleep":
        return f"sleep {key}"
    if kind == "idle":
        return "idle"
    return "" if key == "kernel" else key
