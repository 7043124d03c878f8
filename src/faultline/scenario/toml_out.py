"""A Scenario written back as TOML: `to_toml(s)`, which `loader.load_text` reads back
to an equal Scenario (same fields; `source` is whatever the reader is told).

What lives here: the writer and its TOML string quoting.  It exists so that a scenario
built in Python (a generated one that failed, say) can be saved as a file and replayed
with `faultline check FILE` or `faultline replay --scenario FILE`.  Rule kept: only
what `scenario.spec` holds is written, every value in the form the loader reads, and
defaults are left out where the loader restores them; an access no mapping ever
covers is written with its `fault` mark (`loader.with_fault_marks`), which a file needs
and a Python-built scenario may lack.  Must not be added: validation (the loader's) or
reading TOML.
"""

from __future__ import annotations

from collections.abc import Iterable

from faultline.scenario.loader import with_fault_marks
from faultline.scenario.spec import MappingSpec, Op, ProcessSpec, Scenario, SegmentSpec

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def toml_str(text: str) -> str:
    """`text` as a TOML basic string (control characters and DEL escaped)."""
    out = []
    for c in text:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _ints(values: Iterable[int]) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


def _strs(values: Iterable[str]) -> str:
    return "[" + ", ".join(toml_str(v) for v in values) + "]"


def _ops(ops: tuple[Op, ...]) -> str:
    if len(ops) <= 3:
        return _strs(str(op) for op in ops)
    return "[\n" + "".join(f"  {toml_str(str(op))},\n" for op in ops) + "]"


def _segment(g: SegmentSpec) -> list[str]:
    return ["[[image.segment]]", f"file = {toml_str(g.file)}", f"addr = {g.addr:#x}",
            f"pages = {g.pages}", f"offset = {g.offset}", f"prot = {toml_str(g.prot)}"]


def _mapping(m: MappingSpec) -> list[str]:
    out = ["[[process.map]]", f"addr = {m.addr:#x}", f"pages = {m.pages}",
           f"prot = {toml_str(m.prot)}", f"share = {toml_str(m.share)}"]
    if m.file is not None:
        out.append(f"file = {toml_str(m.file)}")
    if m.offset or m.file is not None:
        out.append(f"offset = {m.offset}")
    if m.inherit is not None:
        out.append(f"inherit = {toml_str(m.inherit)}")
    if m.init:
        out.append(f"init = {_ints(m.init)}")
    return out


def _process(p: ProcessSpec) -> list[str]:
    out = ["[[process]]", f"name = {toml_str(p.name)}"]
    if p.parent is not None:
        out.append(f"parent = {toml_str(p.parent)}")
    if p.image is not None:
        out.append(f"image = {toml_str(p.image)}")
    if p.setup:
        out.append(f"setup = {_ops(p.setup)}")
    for m in p.mappings:
        out += _mapping(m)
    return out


def to_toml(s: Scenario) -> str:
    """The scenario as a TOML document the loader reads back to an equal Scenario."""
    s = with_fault_marks(s)
    lines = [f"name = {toml_str(s.name)}", f"description = {toml_str(s.description)}",
             f"step_bound = {s.step_bound}"]
    if s.probes:
        lines.append(f"probes = {_strs(s.probes)}")
    if s.bound is not None:
        pre = '"none"' if s.bound.preemptions is None else str(s.bound.preemptions)
        lines += ["", "[bound]", f"preemptions = {pre}",
                  f"reason = {toml_str(s.bound.reason)}"]
    if s.vm.free_pages is not None or not s.vm.prefault:
        lines += ["", "[vm]"]
        if s.vm.free_pages is not None:
            lines.append(f"free_pages = {s.vm.free_pages}")
        if not s.vm.prefault:
            lines.append("prefault = false")
    if s.check.end_invariants:
        lines += ["", "[check]", "end_invariants = true"]
    if s.expect:
        lines += ["", "[expect]"] + [f"{policy} = {toml_str(verdict)}"
                                     for policy, verdict in s.expect.items()]
    for f in s.files:
        lines += ["", "[[file]]", f"name = {toml_str(f.name)}", f"pages = {_ints(f.pages)}"]
    for image in s.images:
        lines += ["", "[[image]]", f"name = {toml_str(image.name)}"]
        for g in image.segments:
            lines += _segment(g)
    for p in s.processes:
        lines += ["", *_process(p)]
    for t in s.threads:
        lines += ["", "[[thread]]", f"name = {toml_str(t.name)}",
                  f"process = {toml_str(t.process)}", f"ops = {_ops(t.ops)}"]
    return "\n".join(lines) + "\n"


__all__ = ["to_toml", "toml_str"]
