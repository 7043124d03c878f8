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
