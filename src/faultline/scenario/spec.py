"""Scenario specification: plain data describing files, processes, mappings and threads.

What lives here: the dataclasses a scenario is made of (loaded from TOML by
`scenario.loader`, or built directly from Python), and the parsed form of the
per-thread operation language.  Rule kept: this is data only; nothing here knows
about the runtime or the VM model.  Do not add behaviour beyond validation helpers.

Operation language (one string per op, as in a TOML `ops = [...]` list):

    read ADDR                 user load from ADDR (faults as needed)
    write ADDR VALUE          user store of integer VALUE at ADDR
    fork CHILD                fork; CHILD names a [[process]] whose parent is this process
    exit                      the process exits (tears down its vmspace)
    exec IMAGE                replace the vmspace by a fresh one for [[image]] IMAGE
    munmap ADDR PAGES         unmap PAGES pages starting at ADDR
    mprotect ADDR PAGES PROT  change protection (PROT: "r", "rw", "rx", "rwx", "none")
    minherit ADDR PAGES INH   change inheritance (INH: "share", "copy", "none", "zero")
    mlock ADDR PAGES          wire the range (faults every page with VM_FAULT_WIRE)
    pageout ADDR              the page daemon launders the page the process holds at
                              ADDR (topmost resident page of its chain) to swap and
                              frees it; a busy, wired or file page is left alone
    munlock ADDR PAGES        unwire the range
    post EVENT                set the scenario-level event flag EVENT and wake its waiters
    wait EVENT                block until EVENT has been posted

ADDR and VALUE are integers written in decimal or 0x-hex; ADDR must be page aligned
for munmap/mprotect/minherit/mlock/munlock.

Limits (`Limits`, checked by the loader with the limit in the message): the model runs
whole address spaces one step at a time, so a scenario is small: user addresses below
amd64's VM_MAXUSER_ADDRESS, page contents of 64 bits, and bounded counts of pages,
ops, threads and processes, so that no single step does unbounded work.
"""

from __future__ import annotations

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

OP_NAMES: tuple[str, ...] = (
    "read", "write", "fork", "exit", "exec", "munmap", "mprotect", "minherit",
    "mlock", "munlock", "post", "wait", "pageout",
)


@dataclass(frozen=True, slots=True)
class Op:
    """One parsed thread operation, e.g. Op("write", addr=0x1000, value=7)."""

    name: str
    addr: int | None = None
    value: int | None = None        # write VALUE
    pages: int | None = None        # munmap/mprotect/minherit/mlock/munlock
    prot: str | None = None         # mprotect
    inherit: str | None = None      # minherit
    target: str | None = None       # fork CHILD, exec IMAGE, post/wait EVENT

    def __str__(self) -> str:
        parts = [self.name]
        if self.addr is not None:
            parts.append(hex(self.addr))
        for extra in (self.pages, self.value, self.prot, self.inherit, self.target):
            if extra is not None:
                parts.append(str(extra))
        return " ".join(parts)


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
    """A process.  With `parent` None it exists at start with `mappings` and runs `setup`
    ops sequentially before any thread starts; with a parent it is created by a
    `fork NAME` op of a thread of the parent (then `mappings` must be empty)."""

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
    None: no bound, every interleaving (the reason then says what that costs)."""

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
    bound: BoundSpec | None = None    # DPOR's default preemption bound (None: unbounded)
    vm: VmSpec = field(default_factory=lambda: VmSpec())   # the [vm] table
    source: str = "<python>"          # file it was loaded from
