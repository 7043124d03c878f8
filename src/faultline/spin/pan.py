"""Reading what pan (SPIN's generated verifier) and `spin -t -p` print.

What lives here: `PanReport`, the verdict and the figures of one pan run (the property
violated and its kind, depth, states stored and matched, transitions, memory, pan's own
seconds, whether the search was complete), `parse_pan` that reads it from pan's output,
`kind_of` (which of faultline's kinds of violation a property of vm_fault.pml is), and
`TrailStep` / `parse_trail` for a counterexample replayed by `spin -t -p`.
Rule kept: pure text in, values out; a run whose result cannot be read is an error, never
a verdict.  Must not be added: running the tools (spin.run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from faultline.spin.errors import SpinModelError

DEADLOCK = "invalid end state"

# Property-name prefixes of vm_fault.pml and the kind of violation faultline gives the
# consequence they stand for (docs/model.md section 4); anything else is a KASSERT.
_KINDS = (("model_limit_", "model-limit"), ("probe_", "probe"), ("memory_", "memory"),
          ("O3_", "invariant"), ("W_", "invariant"), ("P3_P5_pte_", "invariant"),
          ("pte_without_", "invariant"))

_ASSERTION = re.compile(r"^pan:\d+: assertion violated\s+!\((\w+)\) \(at depth (\d+)\)",
                        re.M)
_END_STATE = re.compile(r"^pan:\d+: invalid end state \(at depth (\d+)\)", re.M)
_OTHER_ERROR = re.compile(r"^pan:\d+: (.*)$", re.M)


def kind_of(prop: str) -> str:
    """faultline's kind of violation for a property of the model: panic (a KASSERT),
    invariant, memory, deadlock; or probe / model-limit (not verdicts)."""
    if prop == DEADLOCK:
        return "deadlock"
    return next((kind for prefix, kind in _KINDS if prop.startswith(prefix)), "panic")


@dataclass(frozen=True)
class PanReport:
    """One pan run: its verdict ("pass" or "violation"), the first property violated
    (a name in vm_fault.pml, or "invalid end state"), and pan's figures."""

    verdict: str
    violation: str | None
    kind: str | None
    depth: int | None                  # depth of the first error
    violations: tuple[str, ...]        # every property reported, in order, once each
    errors: int
    states_stored: int
    states_matched: int
    transitions: int
    depth_reached: int
    state_vector: int                  # bytes
    memory_mb: float                   # total actual memory usage
    pan_seconds: float                 # pan's own elapsed time
    depth_limited: bool                # "max search depth too small": not exhaustive


def _number(pattern: str, text: str, what: str, cast: type = int) -> float | int:
    mo = re.search(pattern, text, re.M)
    if mo is None:
        raise SpinModelError(f"pan's output has no {what}; output was:\n{text[-2000:]}")
    return cast(mo.group(1))


def parse_pan(text: str) -> PanReport:
    """Read pan's output.  SpinModelError if it is not the output of a finished run,
    or reports an error this model cannot produce."""
    found: list[tuple[int, str, int]] = []           # (offset, property, depth)
    found += [(mo.start(), mo.group(1), int(mo.group(2))) for mo in _ASSERTION.finditer(text)]
    found += [(mo.start(), DEADLOCK, int(mo.group(1))) for mo in _END_STATE.finditer(text)]
    found.sort()
    known = {off for off, _, _ in found}
    for mo in _OTHER_ERROR.finditer(text):
        if mo.start() not in known and not mo.group(1).startswith(("wrote ", "elapsed",
                                                                     "rate ")):
            raise SpinModelError(f"pan reported an error the cross-check cannot read: "
                                 f"{mo.group(1)}")
    errors = int(_number(r"errors: (\d+)", text, "error count"))
    if errors and not found:
        raise SpinModelError(f"pan counted {errors} error(s) but named none; output was:"
                             f"\n{text[-2000:]}")
    names = tuple(dict.fromkeys(p for _, p, _ in found))
    first = found[0] if found else None
    return PanReport(
        verdict="violation" if first else "pass",
        violation=first[1] if first else None,
        kind=kind_of(first[1]) if first else None,
        depth=first[2] if first else None,
        violations=names,
        errors=errors,
        states_stored=int(_number(r"^\s*(\d+) states, stored", text, "states stored")),
        states_matched=int(_number(r"^\s*(\d+) states, matched", text, "states matched")),
        transitions=int(_number(r"^\s*(\d+) transitions", text, "transitions")),
        depth_reached=int(_number(r"depth reached (\d+)", text, "depth reached")),
        state_vector=int(_number(r"State-vector (\d+) byte", text, "state vector")),
        memory_mb=float(_number(r"^\s*([\d.]+)\s+total actual memory usage", text,
                                "memory usage", float)),
        pan_seconds=float(_number(r"^pan: elapsed time ([\d.e+-]+) seconds", text,
                                  "elapsed time", float)),
        depth_limited="max search depth too small" in text,
    )


@dataclass(frozen=True)
class TrailStep:
    """One step of a counterexample as `spin -t -p` replays it."""

    step: int
    pid: int
    proctype: str
    file: str
    line: int
    statement: str


_STEP = re.compile(r"^\s*(\d+):\s+proc\s+(\d+) \((\w+):\d+\) ([\w.+-]+):(\d+) "
                   r"\(state \d+\)\s+\[(.*)\]\s*$", re.M)


def parse_trail(text: str) -> list[TrailStep]:
    """The steps of `spin -t -p` output, in order."""
    return [TrailStep(int(mo.group(1)), int(mo.group(2)), mo.group(3), mo.group(4),
                      int(mo.group(5)), mo.group(6)) for mo in _STEP.finditer(text)]
