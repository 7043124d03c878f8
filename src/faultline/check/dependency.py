"""The dependency relation over runtime ops, for partial-order reduction.

What lives here: `footprint(op)`, the (object, access) pairs an op touches, and two
relations over footprints: `races` (the order of the two accesses can change the
outcome, so DPOR may have to try both orders) and `ordered` (the second access must
come after the first: races plus the happens-before-only edges release -> acquire,
wakeup -> resume, downgrade -> shared acquire).  Rule kept: the relation is derived
from op kind and object only, and errs on the dependent side where unsure.
Must not be added: knowledge of the VM model.  (Plain model code between ops is
assumed to touch shared state only under a lock or busy whose ops order it; the race-
detection mode, check/racedetect.py, checks that assumption.)

    lock L:  acq-x/acq-s  try-x/try-s  rel-x/rel-s  upg  dgr
             acq-s || acq-s, rel-s || acq-s   independent
             rel -> acq, dgr -> acq-s         ordered, not a race (the acquire is
                                               disabled until the release)
             everything else on L             race
    busy W:  trys || trys, sunbusy || sunbusy independent; else race
    chan C:  sleep, resume, wake: wake -> resume ordered; wake || wake; else race
    obj O:   r || r independent; else race
"""

from __future__ import annotations

from typing import Any

from faultline.rt import ops
from faultline.rt.context import key_of

Access = tuple[Any, str]          # (stable key of the object, access kind)

_INDEPENDENT = {("acq-s", "acq-s"), ("rel-s", "rel-s"), ("rel-s", "acq-s"),
                ("acq-s", "rel-s"), ("r", "r"), ("trys", "trys"), ("sunbusy", "sunbusy"),
                ("wake", "wake")}
_ORDER_ONLY = {("rel-x", "acq-x"), ("rel-x", "acq-s"), ("rel-s", "acq-x"), ("dgr", "acq-s"),
               ("wake", "resume")}


def footprint(op: ops.Op | None, tid: int = -1) -> tuple[Access, ...]:
    """The accesses `op` makes when thread `tid` performs it now (a release is shared or
    exclusive according to what `tid` holds); empty for ops touching nothing shared."""
    match op:
        case ops.Release(lock=lk):
            return ((key_of(lk), "rel-" + (lk.held_by(tid) or "x")),)
        case ops.Acquire(lock=lk, mode=m, try_=tr):
            return ((key_of(lk), ("try-" if tr else "acq-") + m),)
        case ops.Upgrade(lock=lk):
            return ((key_of(lk), "upg"),)
        case ops.Downgrade(lock=lk):
            return ((key_of(lk), "dgr"),)
        case ops.Busy(word=w, action=a, gate=g):
            acc: tuple[Access, ...] = ((key_of(w), a),)
            return acc + (((key_of(g), "r"),) if g is not None else ())
        case ops.Sleep(chan=c, interlock=il):
            acc = ((key_of(c), "sleep"),)
            return acc + (((key_of(il), "rel-" + (il.held_by(tid) or "x")),) if il is not None
                          else ())
        case ops.Resume(chan=c):
            return ((key_of(c), "resume"),)
        case ops.Wakeup(chan=c):
            return ((key_of(c), "wake"),)
        case ops.Atomic(obj=o, write=w):
            return ((key_of(o), "w" if w else "r"),)
    return ()


def _pair(a: str, b: str) -> str:
    """'race', 'order' (a before b must stay before b) or 'none' for one object."""
    if (a, b) in _INDEPENDENT:
        return "none"
    if (a, b) in _ORDER_ONLY:
        return "order"
    if (b, a) in _ORDER_ONLY:
        return "order"
    return "race"


def relation(fa: tuple[Access, ...], fb: tuple[Access, ...]) -> str:
    """The strongest relation between two footprints: 'race' > 'order' > 'none'."""
    best = "none"
    for ka, xa in fa:
        for kb, xb in fb:
            if ka != kb:
                continue
            r = _pair(xa, xb)
            if r == "race":
                return "race"
            if r == "order":
                best = "order"
    return best


def races(fa: tuple[Access, ...], fb: tuple[Access, ...]) -> bool:
    """May swapping the two accesses change the outcome?"""
    return relation(fa, fb) == "race"


def ordered(fa: tuple[Access, ...], fb: tuple[Access, ...]) -> bool:
    """Does the first access happen before the second (race or order-only edge)?"""
    return relation(fa, fb) != "none"


def describe(acc: tuple[Access, ...], names: dict[int, Any]) -> str:
    """A footprint in words, for debugging."""
    return ", ".join(f"{x} {names.get(k, k)!r}" for k, x in acc)
