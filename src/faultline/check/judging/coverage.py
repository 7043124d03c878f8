"""Event coverage: which model paths an execution reached, from the model's notes.

What lives here: `Coverage`, an observer turning notes into labels ("cow-copy",
"busy-sleep:vmpfw", "vmpfw-restart-sbusy", ...).  Rule kept: labels are derived from
notes only, so coverage costs nothing when no one asks.  Must not be added: verdicts.
"""

from __future__ import annotations

from faultline.rt.execution import Execution, Hooks, Thread
from faultline.rt.ops import Note


def labels_of(note: Note) -> list[str]:
    """The coverage labels one note stands for."""
    d = note.data
    kind = note.kind
    out = [kind]
    if kind in ("busy-sleep", "busy-nosleep") and isinstance(d, str):
        out.append(f"{kind}:{d}")
    elif kind == "vmpfw-restart" and d and d.get("sbusy"):
        out.append("vmpfw-restart-sbusy")
    elif kind == "cow-copy" and d and not d.get("src_xbusied"):
        out.append("cow-copy-sbusied-src")
    elif kind in ("sbusy-soft", "xbusy-soft") and d and d.get("might_be_cow"):
        out.append(f"{kind}-backing")
    elif kind == "shadow" and d and d.get("shared"):
        out.append("shadow-shared")
    elif kind == "page-remove-wait-busy" and d and d.get("sbusy"):
        out.append("page-remove-wait-sbusy")
    elif kind == "pmap-enter" and d and d.get("writable"):
        out.append("pmap-enter-writable")
    return out


class Coverage(Hooks):
    """Collects the set of labels reached in one execution."""

    def __init__(self) -> None:
        self.labels: set[str] = set()

    def noted(self, ex: Execution, t: Thread, note: Note) -> None:
        """Record the note's labels."""
        self.labels.update(labels_of(note))


def tally(coverage: dict[str, int], labels: set[str] | frozenset[str]) -> None:
    """Count one more execution reaching each of `labels`."""
    for label in labels:
        coverage[label] = coverage.get(label, 0) + 1


def probe_label(probe: str, policy: str) -> str | None:
    """A scenario probe is "label" or "POLICY:label"; the label it requires under
    `policy`, or None when the probe is for another policy."""
    head, sep, rest = probe.partition(":")
    if sep and head in ("xbusy", "sbusy"):
        return rest if head == policy else None
    return probe


def missing_probes(probes: tuple[str, ...], policy: str, reached: dict[str, int]) -> list[str]:
    """The probes of a scenario that no execution reached under `policy`."""
    out = []
    for p in probes:
        label = probe_label(p, policy)
        if label is not None and not reached.get(label):
            out.append(label)
    return out
