"""Live progress: what a work unit reports while it runs, carried to the checking process.

What lives here: `report(n)` and `status(text)`, which a unit calls as it goes (n more
executions; a DPOR exploration's status line), the `Listener` the checking process
hears them through, and the two ways they travel: in this process straight to the
listener (`into`), and from a worker as messages (`batched`: at most one every
FLUSH_SECONDS, and a last one when the unit ends, which `deliver` hands to the
listener on the other side).  Runners (check.running.runners, ray_backend) choose the
way and the channel.
Rule kept: progress only.  Nothing here reaches a result: a unit whose reports are
lost returns the same value, and wall clock decides only when a batch is sent.
Must not be added: results, or anything a merge reads.

    unit: report(1) ... status("...") --> sink --> (worker: batch --> pipe) --> Listener
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

# How often a worker's unit sends what it did: often enough that a bar moves smoothly,
# rarely enough that a message costs nothing next to the executions it counts.
FLUSH_SECONDS = 0.25

# (unit key, executions since the last message, latest status or None, unit ended)
Message = tuple[str, int, str | None, bool]


class Listener(Protocol):
    """Where progress ends up (the CLI's progress bar, through check_many)."""

    def executions(self, n: int) -> None:
        """`n` more executions ran (negative: a unit's attempt that did not count)."""

    def unit(self, key: str, text: str) -> None:
        """The status line of the running unit `key`; "" once it ended."""


_sink: Callable[[int, str | None], None] | None = None     # this process's current unit


def report(n: int = 1) -> None:
    """`n` more executions of the current unit ran (nothing happens outside a unit)."""
    if _sink is not None:
        _sink(n, None)


def status(text: str) -> None:
    """The current unit's status line (a DPOR exploration's progress figures)."""
    if _sink is not None:
        _sink(0, text)


@contextmanager
def _sinking(sink: Callable[[int, str | None], None]) -> Iterator[None]:
    global _sink
    previous, _sink = _sink, sink
    try:
        yield
    finally:
        _sink = previous


@contextmanager
def into(listener: Listener, key: str) -> Iterator[None]:
    """Reports made inside the block go straight to `listener`: a unit run in this
    process (check.running.runners.InlineRunner)."""
    def sink(n: int, text: str | None) -> None:
        if n:
            listener.executions(n)
        if text is not None:
            listener.unit(key, text)
    try:
        with _sinking(sink):
            yield
    finally:
        listener.unit(key, "")


class _Batch:
    """A unit's reports in a worker, sent as one Message at most every FLUSH_SECONDS
    (its first execution and its first status at once, so that a bar moves and shows
    the unit as soon as it starts)."""

    def __init__(self, key: str, send: Callable[[Message], None]) -> None:
        self.key, self.send = key, send
        self.count, self.text = 0, None
        self.last = float("-inf")
        self.told = False                    # a status was sent

    def add(self, n: int, text: str | None) -> None:
        self.count += n
        if text is not None:
            self.text = text
        if time.monotonic() - self.last >= FLUSH_SECONDS or (text and not self.told):
            self.told = self.told or self.text is not None
            self.flush(False)

    def flush(self, ended: bool) -> None:
        if self.count or self.text is not None or ended:
            self.send((self.key, self.count, self.text, ended))
        self.count, self.text = 0, None
        self.last = time.monotonic()


@contextmanager
def batched(key: str, send: Callable[[Message], None]) -> Iterator[None]:
    """Reports made inside the block (a unit run by a worker) go out through `send` as
    Messages; the last one, sent as the block ends however it ends, says so."""
    batch = _Batch(key, send)
    try:
        with _sinking(batch.add):
            yield
    finally:
        batch.flush(True)


def deliver(listener: Listener, message: Message) -> None:
    """Hand one Message to `listener` (on the checking process's side)."""
    key, n, text, ended = message
    if n:
        listener.executions(n)
    if ended:
        listener.unit(key, "")
    elif text is not None:
        listener.unit(key, text)
