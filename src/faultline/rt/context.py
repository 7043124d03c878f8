"""The running thread, as seen by model code (FreeBSD's curthread).

What lives here: one module-level slot that the execution sets while it resumes a
thread's coroutine.  Rule kept: only `rt.execution` writes it; model code only reads it
through `curthread()`.  Must not be added: any other shared state.
"""

from __future__ import annotations

from typing import Any

current: Any = None   # the rt.execution.Thread being resumed, or None outside a step


def curthread() -> Any:
    """The thread whose step is executing now (FreeBSD: curthread)."""
    if current is None:
        raise RuntimeError("curthread() outside of an execution step")
    return current


def curtid() -> int:
    """The id of the thread whose step is executing now."""
    return curthread().tid


# Footprint recording (partial-order reduction): while a step runs under an explorer
# that asked for footprints, every write to a tracked model object and every explicit
# touch() lands here as (key_of(object), "w" or "r").  None when nobody records.
footprint_log: list[tuple[Any, str]] | None = None


def key_of(obj: Any) -> Any:
    """A name for `obj` that is the same in every re-execution of the same schedule
    prefix: its `fl_key` (built from allocation numbers and labels), else its id()
    (only stable within one run; explorers stabilise those themselves)."""
    k = getattr(obj, "fl_key", None)
    return k if k is not None else id(obj)


def touch(obj: Any, write: bool = True) -> None:
    """Record an access to `obj` made by plain model code (a container mutation, or a
    read inside an atomic op of an object other than the op's own)."""
    log = footprint_log
    if log is not None:
        log.append((key_of(obj), "w" if write else "r"))


class Tracked:
    """Base of model classes: attribute writes are recorded while footprints are on."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        log = footprint_log
        if log is not None:
            log.append((key_of(self), "w"))
        object.__setattr__(self, name, value)
