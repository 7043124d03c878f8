"""Synchronization primitives: mtx, rwlock, sx, the page busy word, blockcounts, flags.

What lives here: the state of each primitive and the pure transitions the driver
applies when it performs an op on it, plus the model-facing helpers that trap with
those ops (`mtx_lock`, `rw_wlock`, `sx_try_upgrade`, ...).  Rule kept: state changes
only inside a transition called by the driver (one atomic step); helpers only trap.
Waiters are kept in FIFO order by the driver's sleep queues, never in sets.
Must not be added: anything that knows what a page or an object is.

Locks block by *enabledness*: a thread whose pending Acquire cannot be granted is
simply not schedulable (as in loom and CHESS), which saves the spurious wake-up
steps a sleep-queue implementation would add.  The busy word is different, as in
FreeBSD: it is only ever *tried*, and waiting is an explicit sleep on the word
(`vm_page_busy_sleep`), so the model shows every wake-up and every restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faultline.rt import ops
from faultline.rt.context import curtid


class Panic(Exception):
    """A KASSERT failed: the model reached a state FreeBSD's contract forbids."""


class NotModelled(Exception):
    """The scenario reaches a FreeBSD path the model does not implement (bad input,
    not a bug): raised by model code, passed through the execution untouched."""


def not_modelled(exc: BaseException) -> NotModelled | None:
    """The NotModelled behind `exc`: a driver may wrap model exceptions (in
    FaultlineInternalError), so look down the cause chain."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NotModelled):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def kassert(cond: bool, msg: str) -> None:
    """FreeBSD KASSERT: raise Panic(msg) unless `cond`."""
    if not cond:
        raise Panic(msg)


# ---------------------------------------------------------------- locks

@dataclass(eq=False, slots=True)
class Lock:
    """A mutex ("mtx"), reader/writer lock ("rw") or shared/exclusive lock ("sx").

    `name` is the WITNESS class (e.g. "vm object"), `label` names this instance.
    `dupok` allows holding two locks of the same class (FreeBSD RW_DUPOK).  `line`
    names the cache line the lock word sits on when several locks share one (the
    simulator's coherence cost; None: a line of its own)."""

    name: str
    label: str
    kind: str = "rw"
    dupok: bool = False
    line: Any = None
    owner: int | None = None
    readers: list[int] = field(default_factory=list)

    def __repr__(self) -> str:
        return self.label

    @property
    def fl_key(self) -> tuple[str, str]:
        """Stable name for partial-order reduction."""
        return ("lock", self.label)

    # -- transitions, called by the driver only
    def can_acquire(self, tid: int, mode: str) -> bool:
        """Whether `tid` could take the lock in `mode` right now."""
        if mode == "x":
            return self.owner is None and not self.readers
        return self.owner is None

    def grant(self, tid: int, mode: str) -> None:
        """Record that `tid` now holds the lock in `mode`."""
        if self.owner == tid or tid in self.readers:
            raise Panic(f"{self.label}: recursive acquisition by thread {tid}")
        if mode == "x":
            self.owner = tid
        else:
            if self.kind == "mtx":
                raise Panic(f"{self.label}: a mutex has no shared mode")
            self.readers.append(tid)

    def drop(self, tid: int) -> str:
        """Release `tid`'s hold; returns the mode it held."""
        if self.owner == tid:
            self.owner = None
            return "x"
        if tid in self.readers:
            self.readers.remove(tid)
            return "s"
        raise Panic(f"{self.label}: released by thread {tid}, which does not hold it")

    def upgrade(self, tid: int) -> bool:
        """Shared -> exclusive iff `tid` is the only reader."""
        if self.readers != [tid]:
            if tid not in self.readers:
                raise Panic(f"{self.label}: upgrade without a shared hold")
            return False
        self.readers.clear()
        self.owner = tid
        return True

    def downgrade_to_shared(self, tid: int) -> None:
        """Exclusive -> shared."""
        if self.kind == "mtx":
            raise Panic(f"{self.label}: a mutex cannot be downgraded")
        if self.owner != tid:
            raise Panic(f"{self.label}: downgrade without an exclusive hold")
        self.owner = None
        self.readers.append(tid)

    # -- queries (owner checks need curthread)
    def held_by(self, tid: int) -> str | None:
        """The mode `tid` holds the lock in, or None."""
        if self.owner == tid:
            return "x"
        return "s" if tid in self.readers else None

    def locked(self) -> bool:
        """Whether anybody holds the lock."""
        return self.owner is not None or bool(self.readers)


def lock_assert(lock: Lock, what: str) -> None:
    """rw_assert/sx_assert/mtx_assert: what in {"x", "s", "held", "unheld"}."""
    tid = curtid()
    mode = lock.held_by(tid)
    ok = mode is not None if what == "held" else mode == _ASSERTED_MODE[what]
    if not ok:
        # Formatted only on failure: model code asserts a lock at nearly every step.
        raise Panic(f"lock {lock.label} not {what}-held by thread {tid} (mode {mode})")


_ASSERTED_MODE: dict[str, str | None] = {"x": "x", "s": "s", "unheld": None}


async def mtx_lock(m: Lock) -> None:
    """mtx_lock."""
    await ops.acquire(m, "x")


async def mtx_unlock(m: Lock) -> None:
    """mtx_unlock."""
    await ops.release(m)


async def mtx_trylock(m: Lock) -> bool:
    """mtx_trylock."""
    return await ops.try_acquire(m, "x")


async def rw_wlock(lk: Lock) -> None:
    """rw_wlock / sx_xlock."""
    await ops.acquire(lk, "x")


async def rw_rlock(lk: Lock) -> None:
    """rw_rlock / sx_slock."""
    await ops.acquire(lk, "s")


async def rw_unlock(lk: Lock) -> None:
    """rw_unlock / sx_unlock (either mode)."""
    await ops.release(lk)


async def rw_try_wlock(lk: Lock) -> bool:
    """rw_try_wlock / sx_try_xlock."""
    return await ops.try_acquire(lk, "x")


async def rw_try_rlock(lk: Lock) -> bool:
    """rw_try_rlock / sx_try_slock."""
    return await ops.try_acquire(lk, "s")


async def rw_try_upgrade(lk: Lock) -> bool:
    """rw_try_upgrade / sx_try_upgrade."""
    return await ops.try_upgrade(lk)


async def rw_downgrade(lk: Lock) -> None:
    """rw_downgrade / sx_downgrade."""
    await ops.downgrade(lk)


# ---------------------------------------------------------------- busy word

@dataclass(eq=False, slots=True)
class BusyWord:
    """vm_page busy_lock: unbusied, exclusive (owner recorded, as under INVARIANTS),
    or shared by `shares` threads; `waiters` is VPB_BIT_WAITERS; `freed` is VPB_FREED.
    Shared holders are counted, not named, as in FreeBSD."""

    label: str
    xowner: int | None = None
    shares: int = 0
    waiters: bool = False
    freed: bool = False

    def __repr__(self) -> str:
        return self.label

    @property
    def fl_key(self) -> tuple[str, str]:
        """Stable name for partial-order reduction."""
        return ("busy", self.label)

    def busied(self) -> bool:
        """vm_page_busied."""
        return self.xowner is not None or self.shares > 0 or self.freed

    def state(self) -> str:
        """A short rendering: U, X(tid), S(n), FREED; '+W' when waiters are flagged."""
        if self.freed:
            s = "FREED"
        elif self.xowner is not None:
            s = f"X({self.xowner})"
        elif self.shares:
            s = f"S({self.shares})"
        else:
            s = "U"
        return s + ("+W" if self.waiters else "")

    def apply(self, tid: int, action: str, gate: Any) -> tuple[Any, bool]:
        """Perform `action` for `tid`; returns (result, wake_waiters)."""
        fn = _BUSY_ACTIONS.get(action)
        if fn is None:
            raise ValueError(f"unknown busy action {action!r}; known: {', '.join(_BUSY_ACTIONS)}")
        return fn(self, tid, gate)


def _gate_closed(gate: Any) -> bool:
    return gate is not None and gate.count > 0


def _busy_tryx(w: BusyWord, tid: int, gate: Any) -> tuple[bool, bool]:
    # vm_page_tryxbusy: CAS UNBUSIED -> xbusy, then back off if the object is busied.
    if w.freed or w.xowner is not None or w.shares or _gate_closed(gate):
        return False, False
    w.xowner = tid
    return True, False


def _busy_trys(w: BusyWord, tid: int, gate: Any) -> tuple[bool, bool]:
    # vm_page_trysbusy: fail if exclusively busied, freed, or the object is busied.
    if w.freed or w.xowner is not None or _gate_closed(gate):
        return False, False
    w.shares += 1
    return True, False


def _release_waiters(w: BusyWord) -> bool:
    wake, w.waiters = w.waiters, False
    return wake


def _busy_xunbusy(w: BusyWord, tid: int, gate: Any) -> tuple[None, bool]:
    if w.xowner != tid:
        raise Panic(f"{w.label}: xunbusy by thread {tid}, busy state {w.state()}")
    w.xowner = None
    return None, _release_waiters(w)


def _busy_sunbusy(w: BusyWord, tid: int, gate: Any) -> tuple[None, bool]:
    if w.shares <= 0:
        raise Panic(f"{w.label}: sunbusy of a page that is not shared-busied ({w.state()})")
    w.shares -= 1
    return None, w.shares == 0 and _release_waiters(w)


def _busy_downgrade(w: BusyWord, tid: int, gate: Any) -> tuple[None, bool]:
    if w.xowner != tid:
        raise Panic(f"{w.label}: downgrade by non-owner {tid} ({w.state()})")
    w.xowner, w.shares = None, 1
    return None, _release_waiters(w)


def _busy_tryupgrade(w: BusyWord, tid: int, gate: Any) -> tuple[bool, bool]:
    if w.shares != 1 or w.xowner is not None:
        return False, False
    w.shares, w.xowner = 0, tid
    return True, False


def _busy_free(w: BusyWord, tid: int, gate: Any) -> tuple[None, bool]:
    # vm_page_busy_free: the word becomes VPB_FREED and sleepers are woken.
    if w.xowner != tid:
        raise Panic(f"{w.label}: freeing a page not exclusively busied by {tid} ({w.state()})")
    w.xowner, w.freed = None, True
    return None, _release_waiters(w)


_BUSY_ACTIONS = {
    "tryx": _busy_tryx, "trys": _busy_trys, "xunbusy": _busy_xunbusy,
    "sunbusy": _busy_sunbusy, "downgrade": _busy_downgrade,
    "tryupgrade": _busy_tryupgrade, "free": _busy_free,
}
BUSY_ACTIONS = tuple(_BUSY_ACTIONS)


# ---------------------------------------------------------------- blockcount

@dataclass(eq=False, slots=True)
class BlockCount:
    """FreeBSD blockcount_t (paging-in-progress, object busy): a counter that
    waiters sleep on until it drains to zero."""

    label: str
    count: int = 0
    waiters: bool = False

    def __repr__(self) -> str:
        return self.label

    @property
    def fl_key(self) -> tuple[str, str]:
        """Stable name for partial-order reduction."""
        return ("blockcount", self.label)


async def blockcount_acquire(bc: BlockCount, n: int = 1) -> None:
    """blockcount_acquire: count += n (callers hold the lock that orders it)."""
    await ops.atomic_add_int(bc, "count", n)


async def blockcount_release(bc: BlockCount, n: int = 1) -> None:
    """blockcount_release: count -= n; wake the waiters when it drains."""
    def release() -> bool:
        if bc.count < n:
            raise Panic(f"{bc.label}: blockcount underflow ({bc.count} - {n})")
        bc.count -= n
        if bc.count == 0 and bc.waiters:
            bc.waiters = False
            return True
        return False
    if await ops.atomic(bc, "blockcount_release", release):
        await ops.wakeup(bc)


async def blockcount_sleep(bc: BlockCount, wmesg: str, interlock: Lock | None) -> bool:
    """_blockcount_sleep: drop `interlock` and sleep while the count is non-zero.
    True iff it slept (then the interlock is not reacquired)."""
    def still_busy() -> bool:
        if bc.count == 0:
            return False
        bc.waiters = True
        return True
    return await ops.sleep(bc, wmesg, interlock, still_busy)


# ---------------------------------------------------------------- flags

@dataclass(eq=False, slots=True)
class Flag:
    """A one-shot user-level event (scenario `post`/`wait`)."""

    label: str
    posted: bool = False

    def __repr__(self) -> str:
        return self.label

    @property
    def fl_key(self) -> tuple[str, str]:
        """Stable name for partial-order reduction."""
        return ("flag", self.label)


async def flag_post(f: Flag) -> None:
    """Set the flag and wake its waiters."""
    await ops.atomic(f, "post", lambda: setattr(f, "posted", True))
    await ops.wakeup(f)


async def flag_wait(f: Flag) -> None:
    """Block until the flag is posted.  One sleep whose check reads the flag: a flag is
    never unposted, so a waiter woken by its post needs no second test (a test-and-sleep
    loop would only add orders of the same two outcomes for DPOR to explore)."""
    await ops.sleep(f, "uwait", None, lambda: not f.posted)
