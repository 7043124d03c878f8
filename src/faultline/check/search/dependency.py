"""The dependency relation over runtime ops, for partial-order reduction.

What lives here: `footprint(op)`, the (object, access) pairs an op touches, and two
relations over footprints: `races` (the order of the two accesses can change the
outcome, so DPOR may have to try both orders) and `ordered` (the second access must
come after the first: races plus the happens-before-only edges release -> acquire,
wakeup -> resume, downgrade -> shared acquire).  Rule kept: the relation is derived
from op kind and object only, and errs on the dependent side where unsure.
Must not be added: knowledge of the VM model.  (Plain model code between ops is
assumed to touch shared state only under a lock or busy whose ops order it; the race-
detection mode, check/judging/racedetect.py, checks that assumption.)

    lock L:  acq-x/acq-s  try-x/try-s  rel-x/rel-s  upg  dgr
             acq-s || acq-s, rel-s || acq-s   independent
             rel -> acq, dgr -> acq-s         ordered, not a race (the acquire is
                                               disabled until the release)
             everything else on L             race
    busy W:  trys || trys, sunbusy || sunbusy independent; else race
    chan C:  sleep, resume, wake on C's queue (C, chan): wake -> resume ordered;
             wake || wake; else race.  A sleep's check also reads and may write C as a whole (w)
    obj O:   r || r independent; else race
    add:     add || add (blind adds to one field commute); else race
    field:   an access to one field F of O is (O.F, r|w) plus (O, f-r|f-w), "some field of
             O": f-* || f-* and f-r || r independent, so accesses to different fields
             commute, while a whole-object access (an Atomic op, a touch() naming no
             field) still meets every field's (write: all; read: the writes)
    pause:   races with every step of every other thread (see TICK)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from faultline.rt import ops
from faultline.rt.context import key_of, log_field

Access = tuple[Any, str]          # (stable key of the object, access kind)

_INDEPENDENT = {("acq-s", "acq-s"), ("rel-s", "rel-s"), ("rel-s", "acq-s"),
                ("acq-s", "rel-s"), ("r", "r"), ("trys", "trys"), ("sunbusy", "sunbusy"),
                ("wake", "wake"),
                # "some field": two field-level accesses meet again at the field's own
                # key, where a write to the same field races; a read of the whole object
                # commutes with a field read.
                ("f-w", "f-w"), ("f-w", "f-r"), ("f-r", "f-w"), ("f-r", "f-r"),
                ("f-r", "r"), ("r", "f-r"),
                ("add", "add")}      # blind adds to one field (ops.atomic_add_int)
_ORDER_ONLY = {("rel-x", "acq-x"), ("rel-x", "acq-s"), ("rel-s", "acq-x"), ("dgr", "acq-s"),
               ("wake", "resume")}


# pause() waits until every thread that could run when it paused has stepped
# (rt.execution), so what a Pause does depends on every other thread's state, and each
# of their steps afterwards may be the one that lets the pauser go on.  Its footprint
# names TICK, and a footprint naming TICK races with every footprint (check.search.dpor also
# compares it with every step, not only with steps sharing an object).
TICK = "pause-tick"


def footprint(op: ops.Op | None, tid: int = -1) -> tuple[Access, ...]:
    """The accesses `op` makes when thread `tid` performs it now (a release is shared or
    exclusive according to what `tid` holds); empty for ops touching nothing shared."""
    fn = _FOOTPRINTS.get(type(op))
    if fn is None:
        fn = _footprint_of_type(type(op))
    return fn(op, tid)


def _release_mode(lk: Any, tid: int) -> str:
    return _REL_MODE[lk.held_by(tid)]


def _fp_release(op: ops.Release, tid: int) -> tuple[Access, ...]:
    lk = op.lock
    return ((key_of(lk), _release_mode(lk, tid)),)


def _fp_acquire(op: ops.Acquire, tid: int) -> tuple[Access, ...]:
    return ((key_of(op.lock), ("try-" if op.try_ else "acq-") + op.mode),)


def _fp_upgrade(op: ops.Upgrade, tid: int) -> tuple[Access, ...]:
    return ((key_of(op.lock), "upg"),)


def _fp_downgrade(op: ops.Downgrade, tid: int) -> tuple[Access, ...]:
    return ((key_of(op.lock), "dgr"),)


def _fp_busy(op: ops.Busy, tid: int) -> tuple[Access, ...]:
    g = op.gate
    if g is None:
        return ((key_of(op.word), op.action),)
    return ((key_of(op.word), op.action), (key_of(g), "r"))


def _chan(chan: Any) -> Any:
    """The key of `chan`'s sleep queue: apart from the object's own fields (a wakeup on
    a process commutes with a racy load of its flags), except for an object with no
    stable key, whose id() explorers rename."""
    k = key_of(chan)
    return k if type(k) is int else (k, "chan")


def _fp_sleep(op: ops.Sleep, tid: int) -> tuple[Access, ...]:
    # The check reads the channel object (sleep(9) callers test what they sleep on), and
    # may write it (a waiters bit).
    acc: tuple[Access, ...] = ((_chan(op.chan), "sleep"),)
    if op.check is not None:
        acc += ((key_of(op.chan), "w"),)
    il = op.interlock
    if il is None:
        return acc
    return (*acc, (key_of(il), _release_mode(il, tid)))


def _fp_resume(op: ops.Resume, tid: int) -> tuple[Access, ...]:
    return ((_chan(op.chan), "resume"),)


def _fp_wakeup(op: ops.Wakeup, tid: int) -> tuple[Access, ...]:
    return ((_chan(op.chan), "wake"),)


def _fp_atomic(op: ops.Atomic, tid: int) -> tuple[Access, ...]:
    kind = "w" if op.write else "r"
    if op.field is None:
        return ((key_of(op.obj), kind),)
    acc: list[Access] = []                      # named as model code's accesses are
    log_field(acc, op.obj, op.field, "add" if op.blind else kind)
    return tuple(acc)


def _fp_pause(op: ops.Pause, tid: int) -> tuple[Access, ...]:
    return ((TICK, "pause"),)


def _fp_none(op: Any, tid: int) -> tuple[Access, ...]:
    return ()


_REL_MODE = {"x": "rel-x", "s": "rel-s", None: "rel-x"}   # held_by(tid) -> release kind
# footprint() dispatches on the op's exact type (a match on class patterns costs an
# isinstance test per case, and it runs for every live thread at every DPOR step).
_FOOTPRINTS: dict[type, Callable[[Any, int], tuple[Access, ...]]] = {
    ops.Release: _fp_release, ops.Acquire: _fp_acquire, ops.Upgrade: _fp_upgrade,
    ops.Downgrade: _fp_downgrade, ops.Busy: _fp_busy, ops.Sleep: _fp_sleep,
    ops.Resume: _fp_resume, ops.Wakeup: _fp_wakeup, ops.Atomic: _fp_atomic,
    ops.Pause: _fp_pause, type(None): _fp_none,
}


def _footprint_of_type(t: type) -> Callable[[Any, int], tuple[Access, ...]]:
    # A subclass of an op gets its base's footprint (as a class pattern would match it);
    # anything else touches nothing shared.
    for base in t.__mro__:
        fn = _FOOTPRINTS.get(base)
        if fn is not None:
            break
    else:
        fn = _fp_none
    _FOOTPRINTS[t] = fn
    return fn


def _pair(a: str, b: str) -> str:
    """'race', 'order' (a before b must stay before b) or 'none' for one object."""
    if (a, b) in _INDEPENDENT:
        return "none"
    if (a, b) in _ORDER_ONLY:
        return "order"
    if (b, a) in _ORDER_ONLY:
        return "order"
    return "race"


_PAIRS: dict[tuple[str, str], str] = {}     # _pair, memoised (a handful of kinds)


def _kind_pair(a: str, b: str) -> str:
    r = _PAIRS.get((a, b))
    if r is None:
        r = _PAIRS[(a, b)] = _pair(a, b)
    return r


def relation(fa: tuple[Access, ...], fb: tuple[Access, ...]) -> str:
    """The strongest relation between two footprints: 'race' > 'order' > 'none'."""
    if (fa and fa[0][0] == TICK) or (fb and fb[0][0] == TICK):
        return "race"               # a Pause leads its step's footprint
    best = "none"
    for ka, xa in fa:
        for kb, xb in fb:
            if ka != kb:
                continue
            r = _kind_pair(xa, xb)
            if r == "race":
                return "race"
            if r == "order":
                best = "order"
    return best


# races() and ordered() are relation() compared with a constant, each stopping at the
# first pair that settles it: DPOR asks them for every pair of steps it compares.

def races(fa: tuple[Access, ...], fb: tuple[Access, ...]) -> bool:
    """May swapping the two accesses change the outcome?"""
    if (fa and fa[0][0] == TICK) or (fb and fb[0][0] == TICK):
        return True
    for ka, xa in fa:
        for kb, xb in fb:
            if ka == kb and _kind_pair(xa, xb) == "race":
                return True
    return False


def ordered(fa: tuple[Access, ...], fb: tuple[Access, ...]) -> bool:
    """Does the first access happen before the second (race or order-only edge)?"""
    if (fa and fa[0][0] == TICK) or (fb and fb[0][0] == TICK):
        return True
    for ka, xa in fa:
        for kb, xb in fb:
            if ka == kb and _kind_pair(xa, xb) != "none":
                return True
    return False


def describe(acc: tuple[Access, ...], names: dict[int, Any]) -> str:
    """A footprint in words, for debugging."""
    return ", ".join(f"{x} {names.get(k, k)!r}" for k, x in acc)
