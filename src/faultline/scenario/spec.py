"""Scenario specification: plain data describing files, processes, mappings and threads.

What lives here: the dataclasses a scenario is made of (loaded from TOML by
`scenario.loader`, or built directly from Python), and the parsed form of the
per-thread operation language.  Rule kept: this is data only; nothing here knows
about the runtime or the VM model.  Do not add behaviour beyond validation helpers.

Operation language (one string per op, as in a TOML `ops = [...]` list): `OPS` below,
one `OpForm` per op (its syntax and what it does; docs/scenarios.md's table is rendered
from it by `ops_table`).  In a syntax, UPPER words are values, lower ones are literal
keywords, `[...]` is optional and `a | b` is a choice.  ADDR, VALUE, PAGES and OFFSET
are integers written in decimal or 0x-hex; ADDR must be page aligned for the ops that
take PAGES.

The `fault` mark: an access (the ops whose syntax offers the mark: read, write, mlock,
munlock) must name an address that some mapping of its process covers at some time
(its maps, its images, its mmaps, what it inherits), or be marked `fault`: the address
lies outside every mapping on purpose.  The loader checks this for scenario files (a
typo'd address would otherwise be a silent "must fault" check); at run time such an
access must fault anyway, and the memory oracle checks that, so the mark is not part
of the op's identity.

Limits (`Limits`, checked by the loader with the limit in the message): the model runs
whole address spaces one step at a time, so a scenario is small: user addresses below
amd64's VM_MAXUSER_ADDRESS, page contents of 64 bits, and bounded counts of pages,
ops, threads and processes, so that no single step does unbounded work.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Literal

PAGE_SIZE = 4096

Prot = Literal["none", "r", "rw", "rx", "rwx"]
Share = Literal["private", "shared"]
Inherit = Literal["share", "copy", "none", "zero"]
Verdict = Literal["pass", "violation"]

PROTS: tuple[str, ...] = ("none", "r", "rw", "rx", "rwx")
INHERITS: tuple[str, ...] = ("share", "copy", "none", "zero")


@dataclass(frozen=True, slots=True)
class Limits:
    """The largest scenario faultline accepts (every limit is named in its error)."""

    user_top: int = 0x8000_0000_0000      # amd64 VM_MAXUSER_ADDRESS (rounded): 128 TiB
    word_bits: int = 64                   # a page's content is one 64-bit word
    pages: int = 1024                     # per file, mapping, segment or range op
    total_pages: int = 4096               # files, maps and segments together
    ops: int = 1000                       # per thread, or per process setup
    threads: int = 64
    processes: int = 64
    files: int = 64
    images: int = 16
    segments: int = 16                    # per image
    mappings: int = 64                    # per process
    probes: int = 64
    step_bound: int = 10_000_000
    preemptions: int = 16                 # a stated [bound]
    text: int = 10_000                    # characters in a name, description or reason
    file_bytes: int = 1 << 20             # size of a scenario file


LIMITS = Limits()

@dataclass(frozen=True, slots=True)
class OpForm:
    """One op of the language: the words after its name, and what it does (one line)."""

    syntax: str
    doc: str


# The language.  Adding an op: a line here, its value words in PARAM_FIELDS (and a rule
# in the loader's _PARAMS) if they are new, and a case in World.do_op.
OPS: dict[str, OpForm] = {
    "read": OpForm("ADDR [expect VALUE | fault]",
                   "user load from ADDR (faulting as needed); with `expect VALUE` it must "
                   "return VALUE, checked in addition to the memory oracle"),
    "write": OpForm("ADDR VALUE [fault]",
                    "user store of integer VALUE at ADDR (a page holds one 64-bit word)"),
    "fork": OpForm("CHILD", "fork; CHILD names a [[process]] whose parent is this process"),
    "exit": OpForm("", "the process exits: its other threads leave, its vmspace is torn "
                       "down"),
    "exec": OpForm("IMAGE", "replace the vmspace by a fresh one mapping [[image]] IMAGE"),
    "mmap": OpForm("ADDR PAGES PROT [private | shared] [FILE OFFSET]",
                   "map PAGES pages at ADDR: anonymous, or [[file]] FILE from its page "
                   "OFFSET; private unless `shared`; checked like a [[process.map]]"),
    "munmap": OpForm("ADDR PAGES", "unmap PAGES pages starting at ADDR"),
    "mprotect": OpForm("ADDR PAGES PROT",
                       "change protection (PROT: " + ", ".join(PROTS) + ")"),
    "minherit": OpForm("ADDR PAGES INH",
                       "change inheritance (INH: " + ", ".join(INHERITS) + ")"),
    "mlock": OpForm("ADDR PAGES [fault]",
                    "wire the range (faults every page with VM_FAULT_WIRE)"),
    "munlock": OpForm("ADDR PAGES [fault]", "unwire the range"),
    "pageout": OpForm("ADDR",
                      "the page daemon launders the page the process holds at ADDR "
                      "(topmost resident page of its chain) to swap and frees it; a busy, "
                      "wired or file page is left alone"),
    "truncate": OpForm("FILE SIZE",
                       "truncate(2): [[file]] FILE shrinks to SIZE pages (0 to its size); "
                       "the pages past the end are unmapped everywhere and freed, waiting "
                       "for any busy on them, and an access to them faults (SIGBUS) unless "
                       "it reaches a private copy"),
    "pwrite": OpForm("FILE OFFSET VALUE",
                     "pwrite(2) of VALUE into page OFFSET of [[file]] FILE, through its "
                     "VM object (the buffer cache simplified, docs/model.md S35); fails "
                     "past the end of the file"),
    "msync": OpForm("ADDR PAGES [invalidate]",
                    "msync(2); with `invalidate` (MS_INVALIDATE) the range's PTEs are "
                    "removed and the clean cached pages of the files below it dropped "
                    "(vm_object_page_remove, waiting for any busy on them)"),
    "post": OpForm("EVENT", "set the scenario-level event flag EVENT and wake its waiters"),
    "wait": OpForm("EVENT", "block until EVENT has been posted"),
    "waitpid": OpForm("CHILD", "block until process CHILD, a child of this process, has "
                               "exited (an `exit` of CHILD returned)"),
}

OP_NAMES: tuple[str, ...] = tuple(OPS)

# The Op field each value word fills, and the field and value each keyword sets (the
# other keywords, like `expect`, only introduce the value after them).
PARAM_FIELDS: dict[str, str] = {
    "ADDR": "addr", "VALUE": "value", "PAGES": "pages", "PROT": "prot", "INH": "inherit",
    "CHILD": "target", "IMAGE": "target", "EVENT": "target", "FILE": "file",
    "OFFSET": "offset", "SIZE": "pages",
}
KEYWORD_FIELDS: dict[str, tuple[str, object]] = {
    "fault": ("fault", True), "private": ("share", "private"), "shared": ("share", "shared"),
    "invalidate": ("invalidate", True),
}


@dataclass(frozen=True, slots=True)
class Choice:
    """An optional part of a syntax, `[a | b]`: one of its alternatives, or nothing."""

    alternatives: tuple[tuple[Node, ...], ...]


Node = str | Choice          # a word (UPPER: a value, lower: a keyword) or a choice

_SYNTAX_TOKEN = re.compile(r"[\[\]|]|[^\s\[\]|]+")


@functools.cache
def op_grammar(name: str) -> tuple[Node, ...]:
    """The syntax of op `name` (a key of OPS) as a sequence of nodes."""
    tokens = _SYNTAX_TOKEN.findall(OPS[name].syntax)
    seq, end = _grammar_seq(tokens, 0)
    if end != len(tokens):
        raise ValueError(f"op {name!r}: unbalanced syntax {OPS[name].syntax!r}")
    return seq


def _grammar_seq(tokens: list[str], i: int) -> tuple[tuple[Node, ...], int]:
    seq: list[Node] = []
    while i < len(tokens) and tokens[i] not in ("]", "|"):
        if tokens[i] != "[":
            seq.append(tokens[i])
            i += 1
            continue
        alternatives = []
        while True:
            alt, i = _grammar_seq(tokens, i + 1)
            alternatives.append(alt)
            if i >= len(tokens) or tokens[i] == "]":
                break
        seq.append(Choice(tuple(alternatives)))
        i += 1
    return tuple(seq), i


def _given(seq: tuple[Node, ...], op: Op) -> bool:
    """Whether `op` has a field that a word of `seq` fills or sets."""
    for node in seq:
        if isinstance(node, Choice):
            if any(_given(alt, op) for alt in node.alternatives):
                return True
        elif node.isupper():
            if getattr(op, PARAM_FIELDS[node]) is not None:
                return True
        elif node in KEYWORD_FIELDS:
            name, value = KEYWORD_FIELDS[node]
            if getattr(op, name) == value:
                return True
    return False


def _render(seq: tuple[Node, ...], op: Op) -> list[str]:
    words: list[str] = []
    for node in seq:
        if isinstance(node, Choice):
            alt = next((a for a in node.alternatives if _given(a, op)), None)
            words += _render(alt, op) if alt is not None else []
        elif node.isupper():
            value = getattr(op, PARAM_FIELDS[node])
            words.append(hex(value) if node == "ADDR" else str(value))
        else:
            words.append(node)
    return words


def ops_table() -> str:
    """The op language as a Markdown table (docs/scenarios.md holds a copy of it)."""
    rows = ["| op | what it does |", "| --- | --- |"]
    for name, form in OPS.items():
        syntax = " ".join(w for w in (name, form.syntax) if w).replace("|", "\\|")
        rows.append(f"| `{syntax}` | {form.doc} |")
    return "\n".join(rows) + "\n"


@dataclass(frozen=True, slots=True)
class Op:
    """One parsed thread operation, e.g. Op("write", addr=0x1000, value=7).  `str(op)`
    is its text, rendered from OPS, so that it parses back to an equal Op."""

    name: str
    addr: int | None = None
    value: int | None = None        # write VALUE; read's `expect VALUE`
    pages: int | None = None        # the ops taking PAGES
    prot: str | None = None         # mprotect, mmap
    inherit: str | None = None      # minherit
    target: str | None = None       # fork/waitpid CHILD, exec IMAGE, post/wait EVENT
    share: str | None = None        # mmap: "private" or "shared" (None: private)
    file: str | None = None         # mmap FILE (None: anonymous memory)
    offset: int | None = None       # mmap/pwrite OFFSET, in pages into FILE
    invalidate: bool = False        # msync's `invalidate`
    # The writer's mark that the address is outside every mapping on purpose.  Checked
    # only when a file is loaded (module docstring): two ops differing in it run alike.
    fault: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        if self.name not in OPS:
            return self.name
        return " ".join([self.name, *_render(op_grammar(self.name), self)])


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file: its name and the integer content of each of its pages."""

    name: str
    pages: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MappingSpec:
    """One mmap() in a process's initial address space.

    `file` None means anonymous memory; `init` gives initial contents of anonymous
    pages (written by the process during setup, so they are resident in its object).
    `inherit` None means the default: "copy" for private, "share" for shared.
    """

    addr: int
    pages: int
    prot: str = "rw"
    share: str = "private"
    file: str | None = None
    offset: int = 0                   # in pages, into the file
    inherit: str | None = None
    init: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentSpec:
    """One segment of an executable image: a file range mapped privately at addr."""

    file: str
    addr: int
    pages: int
    offset: int = 0
    prot: str = "rx"


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """An executable image for `exec`: its segments (text read-only, data private COW)."""

    name: str
    segments: tuple[SegmentSpec, ...]


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """A process.  With `parent` None it exists at start with `mappings` (and `image`),
    and runs `setup` ops sequentially before any thread starts.

    With a parent it is created by the one `fork NAME` op of the parent (in a thread or
    in the parent's setup) and starts with what it inherits, so `mappings` and `image`
    must be empty.  Its `setup` ops are run as the child by the thread that forked it,
    right after fork returns and before that thread's next op; the child's threads
    start when they are done (with every other thread, if the fork is in a setup).  A
    child's setup is ordered after the fork and before the child's threads, not atomic:
    other threads run meanwhile when the fork is in a thread."""

    name: str
    parent: str | None = None
    mappings: tuple[MappingSpec, ...] = ()
    setup: tuple[Op, ...] = ()
    image: str | None = None          # start the process by exec'ing this image


@dataclass(frozen=True, slots=True)
class ThreadSpec:
    """A thread of `process` running `ops` concurrently with every other thread."""

    name: str
    process: str
    ops: tuple[Op, ...]


@dataclass(frozen=True, slots=True)
class BoundSpec:
    """The preemption bound within which DPOR explores the scenario by default, and why
    that bound is enough (stated in the file, reported with every systematic verdict).
    None: no bound, every interleaving (the reason then says what that costs).  A
    scenario without a [bound] is explored within the checker's default bound
    (`check.explore.DEFAULT_PREEMPTIONS`), and its verdict's reason says so."""

    preemptions: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class VmSpec:
    """Machine settings (the `[vm]` table).  `free_pages`: pages vm_page_alloc may
    still hand out once setup is done (None: memory never runs out; with a number,
    faults that find none free release everything and sleep in vm_waitpfault until a
    page is freed).  `prefault`: vm_fault_prefault and exec's MAP_PREFAULT pre-mapping
    as FreeBSD does them; false keeps the state space of scenarios written before
    prefault was modelled."""

    free_pages: int | None = None
    prefault: bool = True


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """How the scenario is checked (the `[check]` table).  `end_invariants`: check the
    structural invariants at the end of each run only, as the CLI's --end-invariants
    does (either turns it on), for a scenario whose runs are long and whose
    intermediate states are not the point (the memory oracle still checks every
    access)."""

    end_invariants: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario; `expect` maps a policy name to the expected verdict."""

    name: str
    description: str
    files: tuple[FileSpec, ...] = ()
    images: tuple[ImageSpec, ...] = ()
    processes: tuple[ProcessSpec, ...] = ()
    threads: tuple[ThreadSpec, ...] = ()
    step_bound: int = 20_000
    expect: dict[str, str] = field(default_factory=dict)
    probes: tuple[str, ...] = ()      # event-coverage labels this scenario exists to reach
    bound: BoundSpec | None = None    # DPOR's preemption bound (None: the checker's default)
    vm: VmSpec = field(default_factory=lambda: VmSpec())   # the [vm] table
    check: CheckSpec = field(default_factory=lambda: CheckSpec())   # the [check] table
    source: str = "<python>"          # file it was loaded from
