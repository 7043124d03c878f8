"""The running thread, as seen by model code (FreeBSD's curthread).

What lives here: the module-level slots that the execution sets while it resumes a
thread's coroutine (the thread, and whether anybody listens to its notes), and the two
access logs observers may ask for: footprints (what a step wrote, for partial-order
reduction) and accesses (every field read and write, for race detection), with the
`Tracked` base class that feeds them.  Rule kept: only `rt.execution` writes these
slots; model code only reads `current` through `curthread()`; logging costs nothing
unless an observer asked for it.  Must not be added: any other shared state.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType, FrameType
from typing import Any

current: Any = None   # the rt.execution.Thread being resumed, or None outside a step
# Whether the execution resuming `current` has an observer of notes: without one,
# rt.ops.note skips its trap (a yield through every frame awaiting it).
noting: bool = False
# Whether a timed driver (the simulator) reads Cost ops: without one, rt.ops.cost skips
# its trap.  Set for a whole timed run, not per step.
costing: bool = False


def curthread() -> Any:
    """The thread whose step is executing now (FreeBSD: curthread)."""
    if current is None:
        raise RuntimeError("curthread() outside of an execution step")
    return current


def curtid() -> int:
    """The id of the thread whose step is executing now."""
    t = current     # curthread() inlined: lock assertions ask at nearly every step
    if t is None:
        raise RuntimeError("curthread() outside of an execution step")
    return t.tid


# Footprint recording (partial-order reduction): while a step runs under an explorer
# that asked for footprints, every write to a tracked model object and every explicit
# touch() lands here.  An access to one field is logged at field level, as
# ((key_of(object), field), "w" or "r") plus (key_of(object), "f-w" or "f-r"): the
# second entry says "some field of it", so that it still conflicts with an access to
# the object as a whole ("w", "r"), but not with other fields' (check.search.dependency).
# An object with no stable key (an id()) and a touch() naming no field are logged
# at object level.  None when nobody records.
footprint_log: list[tuple[Any, str]] | None = None
_SOME_FIELD = {"w": "f-w", "r": "f-r", "add": "f-w"}    # "some field of it"
_WHOLE = {"w": "w", "r": "r", "add": "w"}               # an object with no stable key


def log_field(log: list[tuple[Any, str]], obj: Any, field: str, kind: str) -> None:
    """Log an access of `kind` ("w", "r", or "add": a blind add) to `obj.field` in
    footprint log `log`."""
    k = key_of(obj)
    if type(k) is int:
        log.append((k, _WHOLE[kind]))
    else:
        log.append(((k, field), kind))
        log.append((k, _SOME_FIELD[kind]))


def atomic_store(obj: Any, field: str, value: Any) -> None:
    """`obj.field = value` as an atomic instruction made inline, without a scheduling
    point (FreeBSD atomic_store/atomic_swap on a field that code holding different locks
    also writes, e.g. vm_page_bits_swap on a page's dirty bits).  DPOR sees it as a write
    of the step; race detection as an atomic write with acquire and release on `obj`."""
    _log_write(obj, field, INLINE_ATOMIC)
    object.__setattr__(obj, field, value)


def blind_add(obj: Any, field: str, delta: int) -> None:
    """`obj.field += delta` as an atomic_add_int op's function makes it: logged for race
    detection like any write, and in the step's footprint as a blind add ("add", which
    commutes with another; a plain write would race with it), still a write to
    observers that skip checks after steps that wrote nothing."""
    _log_write(obj, field, True, "add")
    object.__setattr__(obj, field, getattr(obj, field) + delta)


def _log_write(obj: Any, field: str, kind: Any, footprint: str = "w") -> None:
    # A write for the DPOR footprint (`footprint`: "w", or "add" for a blind add) and, in
    # race detection, for the access log (`kind`: True plain, INLINE_ATOMIC atomic),
    # sited at the model code that made it (the caller's caller).
    log = footprint_log
    if log is not None:
        log_field(log, obj, field, footprint)
    acc = access_log
    if acc is not None:
        acc.append((obj, field, kind, _site(sys._getframe(2))))


def key_of(obj: Any) -> Any:
    """A name for `obj` that is the same in every re-execution of the same schedule
    prefix: its `fl_key` (built from allocation numbers and labels), else its id()
    (only stable within one run; explorers stabilise those themselves)."""
    try:
        k = obj.fl_key          # cheaper than getattr(obj, "fl_key", None) when present
    except AttributeError:
        return id(obj)
    return k if k is not None else id(obj)


# Race detection (check/judging/racedetect.py): while a step runs under an observer that asked
# for accesses, every read of a tracked object's data field, every write, and every
# touch() lands here as (object, field, write, site), site being (code, line) of the
# innermost model frame or None inside an rt helper.  None when nobody records; the
# logging attribute hooks exist only inside `logging_accesses()`.
access_log: list[tuple[Any, str, bool, tuple[CodeType, int] | None]] | None = None

CONTENTS = "<contents>"     # the pseudo-field of a touch() that names no field
INLINE_ATOMIC = 2           # access_log's `write` for atomic_store and touch(atomic=True)


def touch(obj: Any, write: bool = True, field: str | None = None,
          atomic: bool = False) -> None:
    """Record an access to `obj` made by plain model code (a container mutation, or a
    read inside an atomic op of an object other than the op's own).  `field` names the
    container field mutated (`pages`, `ptes`, ...), so race detection sees the mutation
    as a write of that field; without it the access is to the object as a whole
    (CONTENTS), which only other such touches conflict with.  `atomic` marks a write
    FreeBSD makes with an atomic instruction inline, under a lock that orders it against
    every other writer, for lock-free readers (a PTE store, read by the MMU): race
    detection gives it the acquire and release of an atomic op on `obj`."""
    log = footprint_log
    if log is not None:
        if field is None:
            log.append((key_of(obj), "w" if write else "r"))
        else:
            log_field(log, obj, field, "w" if write else "r")
    acc = access_log
    if acc is not None:
        acc.append((obj, field or CONTENTS, INLINE_ATOMIC if atomic else write,
                    _site(sys._getframe(1))))


class Tracked:
    """Base of model classes: attribute writes are recorded while footprints are on
    (and, inside `logging_accesses()`, field reads and writes while accesses are).
    The hooks are installed only while somebody may record (see `_rehook`): without
    them a model write is a plain slot store, some twenty times cheaper."""

    __slots__ = ()


def _footprint_setattr(self: Any, name: str, value: Any) -> None:
    log = footprint_log
    if log is not None:                  # log_field(log, self, name, "w"), inlined: hot
        k = key_of(self)
        if type(k) is int:
            log.append((k, "w"))
        else:
            log.append(((k, name), "w"))
            log.append((k, "f-w"))
    object.__setattr__(self, name, value)


_recorders = 0              # executions recording footprints now
_hooking_writes = False     # Tracked writes go through _footprint_setattr


def recording_footprints(delta: int) -> None:
    """An execution starts (+1) or stops (-1) recording footprints, or starts a run
    that records none (0).  Tracked writes are hooked while any execution records, and
    stay hooked until a run that records none starts: re-hooking the model classes
    twice a run would also reset their attribute caches in a series of checked runs."""
    global _recorders, _hooking_writes
    _recorders += delta
    if _recorders:
        _hooking_writes = True
    elif delta == 0:
        _hooking_writes = False
    _rehook()


def _rehook() -> None:
    # Install the cheapest attribute hooks that serve the logs in use.  Assigning on
    # the base class updates every subclass's attribute slots.
    if _installed:
        setattr_hook = _logged_setattr
    elif _hooking_writes:
        setattr_hook = _footprint_setattr
    else:
        setattr_hook = None
    if vars(Tracked).get("__setattr__") is not setattr_hook:
        if setattr_hook is None:
            type.__delattr__(Tracked, "__setattr__")
        else:
            type.__setattr__(Tracked, "__setattr__", setattr_hook)
    if _installed and "__getattribute__" not in vars(Tracked):
        type.__setattr__(Tracked, "__getattribute__", _logged_getattribute)
    elif not _installed and "__getattribute__" in vars(Tracked):
        type.__delattr__(Tracked, "__getattribute__")


# ---------------------------------------------------------------- access logging

_installed = 0
_fields_of: dict[type, frozenset[str]] = {}
_frame_kind: dict[CodeType, int] = {}      # 0: skip (rt helper, generated), 1: model, 2: driver


def _fields(cls: type) -> frozenset[str]:
    # Data fields only (dataclass fields and slots), so method and property lookups
    # (fl_key, pindex(), ...) are not reads.
    fs = _fields_of.get(cls)
    if fs is None:
        names: set[str] = set()
        if dataclasses.is_dataclass(cls):
            names.update(f.name for f in dataclasses.fields(cls))
        for k in cls.__mro__:
            slots = k.__dict__.get("__slots__", ())
            names.update((slots,) if isinstance(slots, str) else slots)
        fs = _fields_of[cls] = frozenset(n for n in names if not n.startswith("__"))
    return fs


def _classify(code: CodeType) -> int:
    path = code.co_filename
    if path.endswith("/faultline/rt/execution.py"):
        kind = 2
    elif "/faultline/rt/" in path or path.startswith("<"):
        kind = 0
    else:
        kind = 1
    _frame_kind[code] = kind
    return kind


def _site(f: FrameType | None) -> tuple[CodeType, int] | None:
    """The innermost model frame's (code, line): past rt helpers and generated
    __init__s; None when the access is made by an rt helper the driver called (an
    op's own function: the op's await site stands for it)."""
    while f is not None:
        code = f.f_code
        kind = _frame_kind.get(code)
        if kind is None:
            kind = _classify(code)
        if kind == 1:
            return code, f.f_lineno
        if kind == 2:
            return None
        f = f.f_back
    return None


def _logged_setattr(self: Any, name: str, value: Any) -> None:
    _log_write(self, name, True)
    object.__setattr__(self, name, value)


def _logged_getattribute(self: Any, name: str) -> Any:
    value = object.__getattribute__(self, name)
    acc = access_log
    if acc is not None:
        fields = _fields_of.get(type(self)) or _fields(type(self))
        if name in fields:
            acc.append((self, name, False, _site(sys._getframe(1))))
    return value


@contextmanager
def logging_accesses(enabled: bool = True) -> Iterator[None]:
    """Within this block, Tracked objects log field reads and writes to `access_log`
    whenever an execution sets it (race detection).  Outside it the hooks are gone and
    attribute access costs what it always did.  Nestable; a no-op unless `enabled`."""
    global _installed
    if not enabled:
        yield
        return
    _installed += 1
    _rehook()
    try:
        yield
    finally:
        _installed -= 1
        _rehook()


def accesses_logged() -> bool:
    """Whether the logging hooks are installed (inside `logging_accesses()`)."""
    return _installed > 0
