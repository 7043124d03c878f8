"""The trap vocabulary: the only functions in faultline that ever yield to a driver.

What lives here: one frozen, slotted dataclass per operation, and one small
`async def` per primitive that traps with it.  Model code (`kern`) awaits these
and nothing else; a driver (`rt.execution`) receives the op objects and decides
which thread's pending op is performed next.  Rule kept: an op is performed
atomically by the driver; everything a coroutine does between two awaits is one
indivisible step.  Must not be added here: any knowledge of the VM model.

Two kinds of op:
  * scheduling points (Acquire, Release, Busy, Sleep, Resume, Wakeup, Atomic, Spawn,
    Pause): the driver may switch threads before performing them;
  * inline ops (Cost, Note): performed immediately, never a scheduling point; Cost is
    read only by the timed simulator, Note only by observers.

    thread:  ... code ... await op1 ... code ... await op2 ...
    driver:           [perform op1; run code up to op2]   [perform op2; ...]
                      '------------- one step -------'
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from faultline.rt import context


@dataclass(frozen=True, slots=True)
class Op:
    """Base of every trap."""

    inline = False   # performed without a scheduling point


@dataclass(frozen=True, slots=True)
class Acquire(Op):
    """Acquire `lock` in mode "x" or "s"; with `try_` never block and return success."""

    lock: Any
    mode: str
    try_: bool = False


@dataclass(frozen=True, slots=True)
class Release(Op):
    """Release one hold of `lock` by the calling thread."""

    lock: Any


@dataclass(frozen=True, slots=True)
class Upgrade(Op):
    """Try to turn our shared hold of `lock` into an exclusive one; never blocks."""

    lock: Any


@dataclass(frozen=True, slots=True)
class Downgrade(Op):
    """Turn our exclusive hold of `lock` into a shared one."""

    lock: Any


@dataclass(frozen=True, slots=True)
class Busy(Op):
    """An atomic operation `action` on a busy word (see rt.sync.BusyWord)."""

    word: Any
    action: str
    gate: Any = None      # a BlockCount whose non-zero count makes try-busy fail


@dataclass(frozen=True, slots=True)
class Sleep(Op):
    """Sleep on `chan` with `wmesg`, dropping `interlock` atomically.

    `check`, if given, runs atomically first; the thread sleeps only if it returns
    True (it may also set a waiters bit, as FreeBSD does under the sleepqueue lock).
    The op returns whether the thread went to sleep."""

    chan: Any
    wmesg: str
    interlock: Any = None
    check: Callable[[], bool] | None = None


@dataclass(frozen=True, slots=True)
class Resume(Op):
    """Second half of a sleep: enabled once the thread was woken on `chan`."""

    chan: Any
    wmesg: str


@dataclass(frozen=True, slots=True)
class Wakeup(Op):
    """Wake every sleeper on `chan`, or only the first with `one`."""

    chan: Any
    one: bool = False


@dataclass(frozen=True, slots=True)
class Atomic(Op):
    """Run `fn()` atomically and return its result; `obj` and `what` name the access.
    With `field`, `fn` touches only that one data field of `obj` (a racy load or store,
    a fetchadd, a cmpset), so it commutes with accesses to the object's other fields."""

    obj: Any
    what: str
    fn: Callable[[], Any]
    write: bool = True
    field: str | None = None
    blind: bool = False    # an add to `field` whose result nobody reads: adds commute


@dataclass(frozen=True, slots=True)
class Pause(Op):
    """Give up the CPU for a tick (FreeBSD pause()); always enabled, no effect."""

    wmesg: str


@dataclass(frozen=True, slots=True)
class Spawn(Op):
    """Start a new thread `name` in `group` running coroutine `coro`."""

    name: str
    group: str
    coro: Any


@dataclass(frozen=True, slots=True)
class Cost(Op):
    """`units` units of CPU work of kind `label` ("page zero", "page copy", ...): the
    simulator's cost model says what one unit costs; the model never names a time.
    `line`, if given, is a model object whose shared data the work writes (a page's
    pv list): the simulator adds the cache-line hand-off when another CPU wrote it."""

    label: str
    units: int = 1
    line: Any = None
    inline = True


@dataclass(frozen=True, slots=True)
class Note(Op):
    """Tell observers that `kind` happened, with `data`; not a scheduling point."""

    kind: str
    data: Any = None
    inline = True


@types.coroutine
def _trap(op: Op) -> Generator[Op, Any, Any]:
    """Hand `op` to the driver and return what the driver sends back."""
    return (yield op)


async def acquire(lock: Any, mode: str = "x") -> None:
    """Block until `lock` is held in `mode` ("x" exclusive, "s" shared)."""
    await _trap(Acquire(lock, mode))


async def try_acquire(lock: Any, mode: str = "x") -> bool:
    """Acquire `lock` in `mode` if that is possible now; never blocks."""
    return await _trap(Acquire(lock, mode, True))


async def release(lock: Any) -> None:
    """Release our hold of `lock`."""
    await _trap(Release(lock))


async def try_upgrade(lock: Any) -> bool:
    """Shared -> exclusive if we are the only holder; never blocks."""
    return await _trap(Upgrade(lock))


async def downgrade(lock: Any) -> None:
    """Exclusive -> shared."""
    await _trap(Downgrade(lock))


async def busy(word: Any, action: str, gate: Any = None) -> Any:
    """Perform busy-word `action` atomically (tryx, trys, xunbusy, sunbusy, ...)."""
    return await _trap(Busy(word, action, gate))


async def sleep(chan: Any, wmesg: str, interlock: Any = None,
                check: Callable[[], bool] | None = None) -> bool:
    """Sleep on `chan` (dropping `interlock`) unless `check` says no; True iff slept."""
    if not await _trap(Sleep(chan, wmesg, interlock, check)):
        return False
    await _trap(Resume(chan, wmesg))
    return True


async def wakeup(chan: Any, one: bool = False) -> None:
    """Wake the sleepers on `chan` (all of them, or the first with `one`)."""
    await _trap(Wakeup(chan, one))


async def atomic(obj: Any, what: str, fn: Callable[[], Any], write: bool = True,
                 field: str | None = None) -> Any:
    """Run `fn` as one indivisible step touching `obj` (only its `field`, if given);
    returns fn's result."""
    return await _trap(Atomic(obj, what, fn, write, field))


async def racy_load(obj: Any, field: str) -> Any:
    """An unlocked read of `obj.field`: a scheduling point (FreeBSD's racy reads)."""
    return await _trap(Atomic(obj, f"load {field}", lambda: getattr(obj, field), False,
                              field))


async def racy_store(obj: Any, field: str, value: Any) -> None:
    """An unlocked store of `value` into `obj.field`."""
    await _trap(Atomic(obj, f"store {field}", lambda: setattr(obj, field, value),
                              field=field))


async def atomic_add(obj: Any, field: str, delta: int) -> int:
    """atomic_fetchadd on `obj.field`; returns the old value."""
    def fetchadd() -> int:
        old = getattr(obj, field)
        setattr(obj, field, old + delta)
        return old
    return await _trap(Atomic(obj, f"fetchadd {field}", fetchadd, field=field))


async def atomic_add_int(obj: Any, field: str, delta: int) -> None:
    """atomic_add_int on `obj.field`: an add that returns nothing, so two of them
    commute (their order changes no value anybody reads)."""
    def add() -> None:
        context.blind_add(obj, field, delta)
    await _trap(Atomic(obj, f"add {field}", add, field=field, blind=True))


async def cas(obj: Any, field: str, expect: Any, new: Any) -> bool:
    """atomic_cmpset on `obj.field`; True iff it held `expect` and now holds `new`."""
    def cmpset() -> bool:
        if getattr(obj, field) != expect:
            return False
        setattr(obj, field, new)
        return True
    return await _trap(Atomic(obj, f"cas {field}", cmpset, field=field))


async def pause(wmesg: str) -> None:
    """Let other threads run for a tick before retrying (FreeBSD pause())."""
    await _trap(Pause(wmesg))


async def spawn(name: str, group: str, coro: Any) -> None:
    """Start coroutine `coro` as a new thread."""
    await _trap(Spawn(name, group, coro))


async def cost(label: str, units: int = 1, line: Any = None) -> None:
    """Charge `units` of CPU work of kind `label` (writing `line`'s shared data) to the
    simulated CPU; free (no trap) unless a timed driver is listening."""
    if context.costing:
        await _trap(Cost(label, units, line))


async def note(kind: str, data: Any = None) -> None:
    """Report a model event to observers (coverage, oracle) without a scheduling point."""
    if context.noting:      # nobody listening: the trap would change nothing
        await _trap(Note(kind, data))
