"""Canonical digests of an execution's state at a scheduling point (for --cache-states).

What lives here: `state_key(ex)`, a blake2b digest of everything that decides how the
execution can go on from here, or None when some value cannot be canonicalised (the
state then matches nothing: sound, just no pruning), and `StateCache`, a bounded map
from such keys (plus the explorer's own context) to what an earlier, completely
explored visit of that state did.  The soundness argument is in docs/state-caching.md.

What the digest covers:
  * every thread: done, woken, wait channel and message, locks held, pause() waits,
    its pending op, and its coroutine: the whole cr_await chain, each frame by code
    identity (file, qualified name, first line), f_lasti, locals and value stack;
  * the execution: the step bound, the sleep queues, the threads waiting out a
    pause().  Not step counts: with them no retry loop would ever converge;
  * the model, reached from those frames and from the structure checker: every object,
    page, map, entry, pmap, pv list, process, lock, busy word and blockcount;
  * the observers whose state decides later verdicts: the memory oracle's expected
    values (file pages past a truncation included), fork and copy windows and in-flux
    ranges; the lock-order graph's edges.  Coverage
    labels decide no verdict and are left out; so are the oracle's access count and
    the wording of witness edges (messages, not verdicts).  Any other observer either
    says what of its state matters (a `cache_state()` method returning it), says it
    decides no verdict (`decides_no_verdict = True`: the setup image's taker), or makes
    the key None.

Canonical form: objects with an `fl_key` are named by it (the names footprints use),
other objects by their first visit in a traversal whose order is fixed by the state
itself, never by id(); containers keep their order except sets, which are sorted;
functions are named by their code and closure.  Rule kept: read-only, deterministic
across processes (no hash() of strings, no id() in the digest).  Must not be added:
exploration logic (check.search.dpor decides when a hit may prune).
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import hashlib
import marshal
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from types import (
    BuiltinFunctionType,
    CellType,
    CodeType,
    CoroutineType,
    FunctionType,
    GeneratorType,
    MethodType,
    ModuleType,
)
from typing import Any

from faultline.check.judging.coverage import Coverage
from faultline.check.judging.invariants import StructureChecker
from faultline.rt.execution import Execution, Thread
from faultline.rt.witness import Witness
from faultline.scenario.oracle import MemoryOracle


class _Uncanonical(Exception):
    """A value with no canonical form: the state gets no key."""


_ATOMS = (int, str, bool, float, bytes, type(None))
_fields_cache: dict[type, tuple[str, ...]] = {}
# Fields that are bookkeeping, not state: a thread's step count decides nothing but the
# wording of a "no progress" verdict (docs/state-caching.md, section 1).  A model class
# names its own in `fl_history` (kern.vm.Vm's statistics).
_NOT_STATE: dict[type, frozenset[str]] = {Thread: frozenset({"steps"})}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _fields_cache.get(cls)
    if names is None:
        if dataclasses.is_dataclass(cls):
            names = tuple(f.name for f in dataclasses.fields(cls))
        else:
            found: list[str] = []
            for k in reversed(cls.__mro__):
                slots = k.__dict__.get("__slots__", ())
                for s in (slots,) if isinstance(slots, str) else slots:
                    if s not in found and s not in ("__dict__", "__weakref__"):
                        found.append(s)
            names = tuple(found)
        skip = _history(cls)
        if skip:
            names = tuple(n for n in names if n not in skip)
        _fields_cache[cls] = names
    return names


def _history(cls: type) -> frozenset[str]:
    """The fields of `cls` that are history, not state (left out of the key)."""
    return _NOT_STATE.get(cls) or getattr(cls, "fl_history", frozenset())


def _plain(t: type) -> bool:
    # Classes whose state is their fields: dataclasses and faultline's own classes
    # (a C type keeps state a field walk cannot see).
    return (t is object or dataclasses.is_dataclass(t)
            or t.__module__.startswith("faultline.")) and not issubclass(t, BaseException)


def _code(co: CodeType) -> tuple[str, str, int]:
    return (co.co_filename, co.co_qualname, co.co_firstlineno)


def _atom(x: Any) -> str:
    """A canonical string for an immutable value (set elements are sorted by it)."""
    t = type(x)
    if t in _ATOMS:
        return f"{t.__name__}:{x!r}"
    if isinstance(x, enum.Enum):
        return f"E:{t.__module__}.{t.__qualname__}:{x.value!r}"
    if t is tuple:
        return "(" + ",".join(_atom(v) for v in x) + ")"
    if t is frozenset:
        return "{" + ",".join(sorted(_atom(v) for v in x)) + "}"
    key = getattr(t, "fl_key", None)
    if key is not None:
        return "K:" + _atom(x.fl_key)
    raise _Uncanonical(t.__qualname__)


_UNSET = object()
_MEMO: dict[int, tuple[Any, tuple[Any, ...]]] = {}    # id -> (pinned value, its tokens)
_MEMO_LIMIT = 20_000


def _frozen(t: type) -> bool:
    params = getattr(t, "__dataclass_params__", None)
    return params is not None and params.frozen


class _Encoder:
    """Flattens a state into a list of atoms; every container and object writes a
    header (tag and size) first, so the token list parses one way only.  Mutable
    objects are named once (by fl_key, else by visit number) and referred to after
    that; frozen dataclasses are values (their identity cannot matter), and those
    holding no mutable object are encoded once per process (the scenario's spec)."""

    def __init__(self) -> None:
        self.out: list[Any] = []
        self.serial: dict[int, int] = {}        # id -> visit number (objects only)
        self.keyed: dict[Any, list[int]] = {}   # fl_key -> ids of the objects carrying it
        self.named = 0                          # mutable objects met (first or again)

    def value(self, x: Any) -> None:
        t = type(x)
        if t in _ATOMS:
            self.out.append(x)
            return
        h = _HANDLERS.get(t)
        if h is None:
            h = _HANDLERS[t] = _handler_for(t)
        h(self, x)

    # -- values
    def _tuple(self, x: tuple[Any, ...]) -> None:
        out = self.out
        out.append(("T", len(x)))
        for v in x:
            if type(v) in _ATOMS:       # inline: most values are atoms
                out.append(v)
            else:
                self.value(v)

    def _enum(self, x: enum.Enum) -> None:
        t = type(x)
        self.out.append(("E", t.__module__, t.__qualname__, x.value))

    def _frozenset(self, x: frozenset[Any]) -> None:
        self.out.append(("F", tuple(sorted(_atom(v) for v in x))))

    def _range(self, x: range) -> None:
        self.out.append(("range", x.start, x.stop, x.step))

    def _class(self, x: type) -> None:
        self.out.append(("C", x.__module__, x.__qualname__))

    def _module(self, x: ModuleType) -> None:
        self.out.append(("M", x.__name__))

    def _frozen_value(self, x: Any) -> None:
        memo = _MEMO.get(id(x))
        if memo is not None and memo[0] is x:
            self.out.extend(memo[1])
            return
        out, named, start = self.out, self.named, len(self.out)
        self._fields(x, type(x), "V")
        if self.named == named:                 # no mutable object inside: a pure value
            if len(_MEMO) >= _MEMO_LIMIT:
                _MEMO.clear()
            _MEMO[id(x)] = (x, tuple(out[start:]))

    def _function(self, f: FunctionType) -> None:
        self.named += 1                         # closures may hold mutable cells
        self.out.append(("fn", *_code(f.__code__)))
        self.value(f.__defaults__)
        self.value(f.__kwdefaults__)
        cells = f.__closure__ or ()
        self.out.append(("cells", len(cells)))
        for c in cells:
            try:
                self.value(c.cell_contents)
            except ValueError:
                self.out.append(("empty",))

    def _method(self, x: MethodType) -> None:
        self.out.append("method")
        self.value(x.__self__)
        self.value(x.__func__)

    def _builtin(self, x: BuiltinFunctionType) -> None:
        owner = x.__self__
        self.out.append(("builtin", x.__qualname__))
        if not isinstance(owner, ModuleType | type(None)):
            self.value(owner)

    # -- mutable objects: named at their first visit
    def name_of(self, x: Any) -> Any:
        """The name an already visited object was given."""
        n = self.serial.get(id(x))
        if n is None:
            raise _Uncanonical("unvisited")
        if getattr(type(x), "fl_key", None) is not None:
            return ("k", (x.fl_key, self.keyed[x.fl_key].index(id(x))))
        return ("R", n)

    def _keyed(self, x: Any) -> None:
        self.named += 1
        i = id(x)
        serial = self.serial
        if i in serial:
            k = x.fl_key
            self.out.append(("k", (k, self.keyed[k].index(i))))
            return
        serial[i] = len(serial)
        k = x.fl_key
        ids = self.keyed.setdefault(k, [])
        # Two live objects may share a name (an exec'd process's old and new map):
        # the second is told apart by its position among them.
        ids.append(i)
        self.out.append(("K", (k, len(ids) - 1)))
        self._fields(x, type(x), "O")

    def _mutable(self, x: Any, write: Callable[[_Encoder, Any], None]) -> None:
        self.named += 1
        i = id(x)
        serial = self.serial
        n = serial.get(i)
        if n is not None:
            self.out.append(("R", n))
            return
        serial[i] = len(serial)
        write(self, x)

    def _list(self, x: list[Any]) -> None:
        out = self.out
        out.append(("L", len(x)))
        for v in x:
            if type(v) in _ATOMS:
                out.append(v)
            else:
                self.value(v)

    def _dict(self, x: dict[Any, Any]) -> None:
        out = self.out
        out.append(("D", len(x)))           # insertion order: code may iterate it
        for k, v in x.items():
            if type(k) in _ATOMS:
                out.append(k)
            else:
                self.value(k)
            if type(v) in _ATOMS:
                out.append(v)
            else:
                self.value(v)

    def _set(self, x: set[Any]) -> None:
        self.out.append(("S", tuple(sorted(_atom(v) for v in x))))

    def _fields(self, x: Any, t: type, tag: str) -> None:
        names = _field_names(t)
        d = getattr(x, "__dict__", None)
        extra = []
        if d and len(d) != len(names):         # attributes beyond the fields (Vm's)
            history = _history(t)
            extra = sorted(k for k in d if k not in names and k not in history)
        out = self.out
        out.append((tag, t.__module__, t.__qualname__, len(names) + len(extra)))
        for name in names:
            v = getattr(x, name, _UNSET) if d is None else d.get(name, _UNSET)
            if type(v) in _ATOMS:
                out.append(v)
            elif v is _UNSET:
                out.append(("unset",))
            else:
                self.value(v)
        for name in extra:
            self.out.append(name)
            self.value(d[name])  # type: ignore[index]

    def _coroutine(self, c: Any) -> None:
        # One frame per link of the await chain: code, position, locals.
        frame = c.cr_frame if type(c) is CoroutineType else c.gi_frame
        if frame is None:
            code = c.cr_code if type(c) is CoroutineType else c.gi_code
            self.out.append(("coro-done", *_code(code)))
            return
        code = frame.f_code
        self.out.append(("coro", *_code(code), frame.f_lasti))
        loc = frame.f_locals
        out = self.out
        out.append(("locals", len(loc)))
        for name, v in loc.items():
            out.append(name)
            if type(v) in _ATOMS:
                out.append(v)
            else:
                self.value(v)
        # The value stack, which f_locals does not show: a for loop's iterator (its
        # position tells iterations with equal locals apart), a partial expression
        # awaiting an operand, a with block's exit.  The garbage collector's view of a
        # suspended coroutine lists its name, bound locals, then that stack, in order.
        stack = [r for r in gc.get_referents(c)
                 if r is not frame and r is not loc and type(r) is not CodeType
                 and not (type(r) is FunctionType and r.__code__ is code)]
        if stack and stack[-1] is None:
            # Last comes the saved exception (None or not there, as history decides):
            # a suspended await keeps its awaitable on top, so a final None is not stack.
            stack.pop()
        out.append("stack")
        self._list(stack)
        self.value(c.cr_await if type(c) is CoroutineType else c.gi_yieldfrom)


def _iterator(enc: _Encoder, x: Any) -> None:
    # A built-in iterator is what its pickling says: (iter, (sequence,), position).
    enc._mutable(x, lambda e, y: (e.out.append(("it", type(y).__name__)),
                                  e.value(y.__reduce__())))


def _cell(enc: _Encoder, x: CellType) -> None:
    # A closure cell, shared by a frame and the functions it made.
    def write(e: _Encoder, c: CellType) -> None:
        try:
            v = c.cell_contents
        except ValueError:
            e.out.append(("empty",))
            return
        e.out.append("cell")
        e.value(v)
    enc._mutable(x, write)


_ITERATORS = frozenset(type(i) for i in (iter([]), iter(()), iter(range(0)), iter({}),
                                         iter({}.values()), iter({}.items()), iter(""),
                                         reversed([]), enumerate([]), zip()))


def _uncanonical(enc: _Encoder, x: Any) -> None:
    raise _Uncanonical(type(x).__qualname__)   # C types, exceptions, iterators, frames...


def _handler_for(t: type) -> Callable[[_Encoder, Any], None]:
    """How values of type t are encoded (decided once per type)."""
    E = _Encoder
    simple: dict[type, Callable[[_Encoder, Any], None]] = {
        tuple: E._tuple, frozenset: E._frozenset, range: E._range, FunctionType: E._function,
        MethodType: E._method, BuiltinFunctionType: E._builtin, ModuleType: E._module}
    mutable: dict[type, Callable[[_Encoder, Any], None]] = {
        list: E._list, deque: E._list, dict: E._dict, OrderedDict: E._dict, set: E._set,
        CoroutineType: E._coroutine, GeneratorType: E._coroutine}
    if t in simple:
        return simple[t]
    if t in _ITERATORS:
        return _iterator
    if t is CellType:
        return _cell
    if t in mutable:
        write = mutable[t]
        return lambda enc, x: enc._mutable(x, write)
    if issubclass(t, enum.Enum):
        return E._enum
    if issubclass(t, type):
        return E._class
    if getattr(t, "fl_key", None) is not None:
        return E._keyed
    if _plain(t):
        if _frozen(t):
            return E._frozen_value
        return lambda enc, x: enc._mutable(x, lambda e, y: e._fields(y, t, "O"))
    return _uncanonical


_HANDLERS: dict[type, Callable[[_Encoder, Any], None]] = {}


def _encode(ex: Execution, extra: Any, skip: tuple[Any, ...] = ()) -> list[Any]:
    enc = _Encoder()
    # Not the step count: see docs/state-caching.md, section 1 (loops converge).
    enc.out.append(("step-bound", ex.step_bound))
    enc.value(ex.threads)
    enc.value([t.tid for t in ex._pausers])
    # The sleep queues are keyed by id(chan); every queued thread records its chan,
    # which the threads' encoding above has named already.
    queues = []
    for q in ex.sleepq.values():
        if q:
            chan = q[0].wchan
            if any(t.wchan is not chan for t in q):
                raise _Uncanonical("sleep queue")
            queues.append((enc.name_of(chan), tuple(t.tid for t in q)))
    enc.out.append(("sleepq", tuple(sorted(queues, key=repr))))
    for o in ex.observers:
        if (o is ex.strategy or type(o) is Coverage or o in skip
                or getattr(o, "decides_no_verdict", False)):
            continue                        # the explorer's own state; no verdict
        own = getattr(o, "cache_state", None)
        if own is not None:
            enc.out.append(("observer", type(o).__qualname__))
            enc.value(own())
        elif type(o) is StructureChecker:
            enc.out.append(("structure", o.every_step))
            enc.value(o.vm)
        elif type(o) is MemoryOracle:
            enc.out.append("oracle")
            enc.value(o.files)
            enc.value(o.procs)
            enc.value(o.forks)
            enc.value(o.in_flux)
            enc.value(o.copying)        # open copy windows widen what a read may see
        elif type(o) is Witness:
            enc.out.append(("witness", tuple(sorted(o.edges))))
        else:
            raise _Uncanonical(type(o).__qualname__)
    enc.out.append("extra")
    enc.value(extra)
    return enc.out


def state_key(ex: Execution, extra: Any = None, skip: tuple[Any, ...] = ()) -> bytes | None:
    """The digest of `ex`'s state between two steps, with `extra` (the explorer's own
    context: sleep set, preemption budget...) mixed in; None if some part of the state
    has no canonical form.  Observers in `skip` (and the strategy) are left out: they
    must hold nothing a verdict depends on."""
    try:
        tokens = _encode(ex, extra, skip)
    except _Uncanonical:
        return None
    return _digest(tokens)


def _digest(tokens: list[Any]) -> bytes:
    """Hash a token list.  marshal's format 2 writes the atoms and tuples tokens are
    made of by type and value alone (no back-references, no interning flag, bools
    apart from ints), and four times as fast as repr; a token marshal refuses (an int
    or str subclass inside an fl_key) sends the whole list through repr instead.  The
    leading byte keeps the two encodings' digests apart."""
    try:
        data = b"m" + marshal.dumps(tokens, 2)
    except ValueError:
        data = b"r" + repr(tokens).encode()
    return hashlib.blake2b(data, digest_size=20).digest()


def describe_state(ex: Execution, extra: Any = None, skip: tuple[Any, ...] = ()) -> list[Any]:
    """The token list behind state_key (for debugging a key that differs)."""
    return _encode(ex, extra, skip)


# ---------------------------------------------------------------- the cache

@dataclass(frozen=True, slots=True)
class CacheEntry:
    """What the complete exploration below a state did: the events (thread, footprint)
    it ran anywhere, as a bit mask over StateCache.events, and the threads its bounded
    free switches tried at every node above it."""

    below: int
    free: frozenset[int]


class StateCache:
    """Keys of completely explored states -> CacheEntry, at most `limit` of them (the
    oldest are dropped first: forgetting a state is always sound), taken at scheduling
    points whose step count is a multiple of `stride` (two visits of a state at step
    counts of other residues are not both keyed: less pruning, never less soundness,
    docs/state-caching.md section 1).  Events are
    interned so that an entry's summary is one integer however large its subtree."""

    TAINTED = 1        # bit 0: some event names an object only this run can name

    def __init__(self, limit: int = 100_000, stride: int = 1) -> None:
        self.limit = limit
        self.stride = stride
        self.entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self.stored = 0                 # distinct states ever recorded (some forgotten)
        self.events: list[tuple[int, tuple[Any, ...]]] = [(-1, ())]
        self._index: dict[tuple[int, tuple[Any, ...]], int] = {}
        self._tainted: set[int] = set()

    def get(self, key: bytes | None) -> CacheEntry | None:
        """The entry of a completely explored state, or None."""
        return None if key is None else self.entries.get(key)

    def put(self, key: bytes, below: int, free: set[int]) -> None:
        """Record a state whose subtree is now completely explored."""
        if below & self.TAINTED:
            return
        self.stored += key not in self.entries
        self.entries[key] = CacheEntry(below, frozenset(free))
        if len(self.entries) > self.limit:
            self.entries.popitem(last=False)

    def mask(self, events: Any) -> int:
        """The bit mask of (thread, footprint) events."""
        m = 0
        for ev in events:
            bit = self._index.get(ev)
            if bit is None:
                bit = self._index[ev] = len(self.events)
                self.events.append(ev)
                if any(type(k) is tuple and k and k[0] == "seen" for k, _ in ev[1]):
                    self._tainted.add(bit)
            m |= 1 << bit
            if bit in self._tainted:
                m |= self.TAINTED
        return m

    def unmask(self, m: int) -> list[tuple[int, tuple[Any, ...]]]:
        """The events of a mask (bit 0 aside)."""
        bits = bin(m >> 1)[:1:-1]          # least significant first
        return [self.events[i + 1] for i, c in enumerate(bits) if c == "1"]
