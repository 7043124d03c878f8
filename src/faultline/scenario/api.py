"""The Python API for scenarios: what TOML cannot say (loops, sizes, generated trees).

What lives here: `ops` (parse op strings into `Op`s), `scenario` (build and validate a
`Scenario` from plain Python values) and generators for parameterised workloads:
`exec_storm` (N processes exec'ing one dynamically linked image, as in doexec) and
`fault_storm` (N threads of one process touching the same pages).  Rule kept: every
scenario built here goes through the same `validate` as a TOML file, so it gets the
same errors.  Must not be added: running or checking scenarios.

    >>> from faultline.scenario.api import exec_storm
    >>> s = exec_storm(8)                    # 8 processes, one exec each
    >>> [t.name for t in s.threads][:2]
    ['E1', 'E2']
"""

from __future__ import annotations

from collections.abc import Iterable

from faultline.scenario.loader import parse_op, validate
from faultline.scenario.spec import (
    BoundSpec,
    CheckSpec,
    FileSpec,
    ImageSpec,
    MappingSpec,
    Op,
    ProcessSpec,
    Scenario,
    SegmentSpec,
    ThreadSpec,
)

PAGE = 4096


def ops(*texts: str, where: str = "<python>") -> tuple[Op, ...]:
    """Parse op strings ("read 0x1000", "write 0x1000 7", ...) into Ops."""
    return tuple(parse_op(t, where, f"ops[{i}]") for i, t in enumerate(texts))


def scenario(name: str, description: str, *, files: Iterable[FileSpec] = (),
             images: Iterable[ImageSpec] = (), processes: Iterable[ProcessSpec] = (),
             threads: Iterable[ThreadSpec] = (), step_bound: int = 20_000,
             expect: dict[str, str] | None = None, probes: Iterable[str] = (),
             bound: BoundSpec | None = None, check: CheckSpec | None = None,
             source: str = "<python>") -> Scenario:
    """Build a Scenario and validate it (raises ScenarioError like the TOML loader;
    `loader.check_addresses`, which files also pass, is left to the caller)."""
    s = Scenario(name=name, description=description, files=tuple(files),
                 images=tuple(images), processes=tuple(processes), threads=tuple(threads),
                 step_bound=step_bound, expect=dict(expect or {}), probes=tuple(probes),
                 bound=bound, check=check or CheckSpec(), source=source)
    validate(s)
    return s


def shared_image(lib_pages: int = 4, data_pages: int = 2) -> tuple[list[FileSpec], ImageSpec]:
    """A dynamically linked program: its own text and data, rtld, and libc's text and
    data, all file-backed; text read-only, data private copy-on-write."""
    files = [FileSpec("prog", (1, 2)), FileSpec("ld", (11,)),
             FileSpec("libc", tuple(20 + i for i in range(lib_pages + data_pages)))]
    segs = (SegmentSpec("prog", 0x10000, 1, 0, "rx"), SegmentSpec("prog", 0x11000, 1, 1, "rw"),
            SegmentSpec("ld", 0x20000, 1, 0, "rx"),
            SegmentSpec("libc", 0x30000, lib_pages, 0, "rx"),
            SegmentSpec("libc", 0x30000 + lib_pages * PAGE, data_pages, lib_pages, "rw"))
    return files, ImageSpec("sh", segs)


def exec_storm(nprocs: int, execs: int = 1, lib_pages: int = 4) -> Scenario:
    """doexec in miniature: `nprocs` processes each exec the shared image `execs` times
    and, after each exec, touch rtld and libc text, write one libc data page (a COW
    copy from the shared vnode page) and read the other through its private shadow."""
    if nprocs < 1 or execs < 1:
        raise ValueError("exec_storm needs at least one process and one exec")
    files, image = shared_image(lib_pages)
    data = 0x30000 + lib_pages * PAGE
    procs, threads = [], []
    for i in range(1, nprocs + 1):
        procs.append(ProcessSpec(f"p{i}", image="sh"))
        body: list[str] = []
        for n in range(execs):
            if n:
                body.append("exec sh")
            body += ["read 0x20000", f"read {0x30000 + (i % lib_pages) * PAGE:#x}",
                     f"write {data:#x} {100 + i}", f"read {data + PAGE:#x}", "read 0x10000"]
        threads.append(ThreadSpec(f"E{i}", f"p{i}", ops(*body)))
    return scenario(f"exec-storm-{nprocs}", f"{nprocs} processes exec'ing one shared image",
                    files=files, images=[image], processes=procs, threads=threads,
                    step_bound=4000 * nprocs * execs, expect={"xbusy": "pass", "sbusy": "pass"},
                    probes=["cow-copy", "pager-read"])


def fault_storm(nthreads: int, pages: int = 1, writers: int = 1) -> Scenario:
    """`nthreads` threads of one process read the same cold file pages through a
    private mapping whose shadow already exists; `writers` of them also write."""
    if nthreads < 1 or not 0 <= writers <= nthreads:
        raise ValueError("fault_storm needs nthreads >= 1 and 0 <= writers <= nthreads")
    files = [FileSpec("data", tuple(range(10, 10 + pages + 1)))]
    addr = 0x1000
    mapping = MappingSpec(addr, pages + 1, "rw", "private", "data")
    setup = ops(f"write {addr + pages * PAGE:#x} 99")          # creates the shadow
    threads = []
    for i in range(nthreads):
        body = [f"read {addr + p * PAGE:#x}" for p in range(pages)]
        if i < writers:
            body.append(f"write {addr:#x} {1000 + i}")
        threads.append(ThreadSpec(f"T{i}", "p1", ops(*body)))
    return scenario(f"fault-storm-{nthreads}", f"{nthreads} threads faulting {pages} page(s)",
                    files=files, processes=[ProcessSpec("p1", mappings=(mapping,), setup=setup)],
                    threads=threads, step_bound=3000 * nthreads * (pages + 1),
                    probes=["pager-read"])
