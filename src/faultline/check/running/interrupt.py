"""Ctrl-C during a checkpointed run: stop at the next consistent point, checkpoint, exit.

What lives here: `deferred()`, a context manager under which the first SIGINT only
sets a flag, `Interrupted`, the KeyboardInterrupt a checkpointer raises once it
has seen the flag and saved, and `Stopped`, the one a check's caller raises with
what was done so far (the CLI prints it as one line and shows the finished results).
A DPOR path or a split exploration's merged state is consistent only between two
executions (or two merged units), which is where the checkpointers poll `requested()`;
a KeyboardInterrupt raised mid-execution would leave nothing consistent to save.  A
second Ctrl-C interrupts at once, as usual.
Rule kept: only the main thread's SIGINT handler is touched, only inside the block,
and the previous handler is always restored.  Elsewhere (a worker thread, a worker
process) `deferred()` does nothing and Ctrl-C behaves as it always does.
Must not be added: saving or deciding when to save (the checkpointers do).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

_requested = False


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, handled: the message says where the checkpoint is."""


def requested() -> bool:
    """Has Ctrl-C been pressed inside `deferred()`?"""
    return _requested


@contextmanager
def deferred(note: str = "") -> Iterator[None]:
    """The first Ctrl-C inside the block sets `requested()`; the second raises
    KeyboardInterrupt at once.  If the block ends normally after a Ctrl-C that nobody
    acted on (it came after the last poll), Interrupted(note) is raised then."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: FrameType | None) -> None:
        global _requested
        if _requested:
            raise KeyboardInterrupt
        _requested = True
    try:
        previous = signal.signal(signal.SIGINT, first)
    except ValueError:            # not the main interpreter's main thread
        yield
        return
    _requested = False
    try:
        yield
        late = _requested
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False
    if late:
        raise Interrupted(note)


class Stopped(KeyboardInterrupt):
    """Ctrl-C during a check, caught where its results are known: the one line that
    says what was done (and where the checkpoint is), and the scenarios' results
    finished before it, in their order (`finished`), to be shown all the same."""

    def __init__(self, line: str, finished: list[Any], seconds: float) -> None:
        super().__init__(line)
        self.finished, self.seconds = finished, seconds
