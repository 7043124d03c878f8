"""Random well-formed scenarios, for fuzzing the checker with runs that must pass.

What lives here: `random_scenario(seed)`, a small valid scenario drawn from one seed:
1-3 root processes (some started from an image), forks (in a setup or a thread, and
grandchildren), `exit`, `exec`, 1-3 threads per process, shared/private file/anonymous
mappings (with `init` values sometimes), reads, writes and page-outs to swap, the range
ops on whole,
partial, middle-of-mapping, two-mapping and hole ranges, and sometimes one post/wait
event in a shape that cannot deadlock; and `features(s)`, what a scenario exercises,
read off the scenario itself (for coverage tests and the bench).

Rules kept: every choice comes from one `random.Random(seed)`, and nothing iterates a
set, so a seed gives the same scenario in every process and Python run; every
scenario goes through `api.scenario` (the loader's validation).  Shapes the model
raises NotModelled for (mprotect adding write to a wired entry, fork of a wired
writable COPY entry) are steered away from, conservatively (`_Gen.legalise`).  Nothing
else is excluded: a shape is never dropped because the checker currently fails on it.
Must not be added: running or judging scenarios (check.judging.falsealarms does that).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from faultline.scenario import api
from faultline.scenario.spec import (
    INHERITS,
    PAGE_SIZE,
    FileSpec,
    ImageSpec,
    MappingSpec,
    Op,
    ProcessSpec,
    Scenario,
    SegmentSpec,
    ThreadSpec,
)

T = TypeVar("T")

BASE = 0x1000                  # first page of the window every address falls in
WINDOW = 10                    # pages in the window
STEP_BOUND = 20_000            # generous: a legal run must never hit the no-progress bound
MAX_PROCS = 5
MAX_THREADS = 7
MAX_BASE_OPS = 5               # per thread, before fork/exec/post/wait are added

_WRITABLE = ("rw", "rwx")
_PROT_CHOICES = (("rw", 5), ("r", 2), ("rwx", 1), ("rx", 1), ("none", 1))
_MPROTECT_CHOICES = (("r", 3), ("rw", 3), ("none", 1), ("rx", 1), ("rwx", 1))
_SEGMENT_PROTS = (("rx", 3), ("rw", 3), ("r", 1), ("rwx", 1))
_THREAD_OPS = (("read", 28), ("write", 28), ("munmap", 6), ("mprotect", 8),
               ("minherit", 6), ("mlock", 7), ("munlock", 4), ("pageout", 5))
_SETUP_OPS = (("read", 2), ("write", 3), ("munmap", 1), ("mprotect", 1), ("minherit", 1),
              ("mlock", 1), ("pageout", 1))
RANGE_OPS = ("munmap", "mprotect", "minherit", "mlock", "munlock")


@dataclass(frozen=True, slots=True)
class Region:
    """An address range some entry may cover (a mapping or an image segment), in pages,
    with the protection and inheritance it starts with."""

    start: int
    pages: int
    prot: str
    inherit: str

    @property
    def end(self) -> int:
        return self.start + self.pages


@dataclass(slots=True)
class _Proc:
    """A process being generated (mutable until the scenario is built)."""

    name: str
    parent: str | None = None
    image: str | None = None
    mappings: list[MappingSpec] = field(default_factory=list)
    setup: list[Op] = field(default_factory=list)


@dataclass(slots=True)
class _Thread:
    name: str
    proc: str
    ops: list[Op] = field(default_factory=list)


def _pick(rng: random.Random, weighted: Sequence[tuple[T, int]]) -> T:
    """One of the values, drawn with the given weights."""
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def _page(p: int) -> int:
    return BASE + p * PAGE_SIZE


def _overlaps(a: int, n: int, b: int, m: int) -> bool:
    return a < b + m and b < a + n


# ---------------------------------------------------------------------------------------
# Static facts shared by generation, legalisation and features()


def regions_of(s_procs: Mapping[str, _Proc | ProcessSpec],
               images: Mapping[str, ImageSpec], ops_of: Mapping[str, list[Op]],
               name: str) -> list[Region]:
    """Every range an entry of process `name` may cover, whatever the interleaving: the
    mappings of its root ancestor and the segments of every image it or an ancestor
    starts from or execs (ranges may overlap: an exec replaces the mappings)."""
    chain = _chain(s_procs, name)
    root = s_procs[chain[-1]]
    out = [Region((m.addr - BASE) // PAGE_SIZE, m.pages, m.prot,
                  m.inherit or ("share" if m.share == "shared" else "copy"))
           for m in root.mappings]
    names = [root.image] if root.image is not None else []
    names += [op.target for p in chain for op in ops_of[p] if op.name == "exec"
              and op.target is not None]
    seen: list[str] = []
    for image in names:
        if image in seen:
            continue
        seen.append(image)
        out += [Region((g.addr - BASE) // PAGE_SIZE, g.pages, g.prot, "copy")
                for g in images[image].segments]
    return out


def _chain(procs: Mapping[str, _Proc | ProcessSpec], name: str) -> list[str]:
    """`name` and its ancestors, nearest first."""
    out = [name]
    while (parent := procs[out[-1]].parent) is not None:
        out.append(parent)
    return out


def _range_pages(op: Op) -> tuple[int, int]:
    assert op.addr is not None and op.pages is not None
    return (op.addr - BASE) // PAGE_SIZE, op.pages


# ---------------------------------------------------------------------------------------
# The generator


class _Gen:
    """One scenario's worth of choices, all from `rng`."""

    def __init__(self, seed: int | str) -> None:
        self.rng = random.Random(seed)
        self.files: list[FileSpec] = []
        self.images: dict[str, ImageSpec] = {}
        self.procs: dict[str, _Proc] = {}
        self.threads: list[_Thread] = []
        self.values = 0

    # -- files, images, mappings
    def make_files(self) -> None:
        for f in range(self.rng.randint(1, 2)):
            n = self.rng.randint(2, 5)
            self.files.append(FileSpec(f"f{f + 1}", tuple(100 * (f + 1) + i + 1
                                                           for i in range(n))))

    def place(self, busy: list[tuple[int, int]], count: int, max_pages: int
              ) -> list[tuple[int, int]]:
        """Up to `count` disjoint (page, pages) ranges in the window avoiding `busy`:
        sometimes adjacent (a range spanning two mappings has no hole), sometimes
        with holes between them."""
        out: list[tuple[int, int]] = []
        cursor = self.rng.randint(0, 2)
        for _ in range(count):
            cursor += self.rng.choice((0, 0, 1, 2))
            n = self.rng.randint(1, max_pages)
            while cursor + n > WINDOW and n > 1:
                n -= 1
            if cursor + n > WINDOW:
                break
            if any(_overlaps(cursor, n, b, m) for b, m in busy):
                cursor += n
                continue
            out.append((cursor, n))
            cursor += n
        return out

    def file_range(self, pages: int) -> tuple[str, int, int]:
        """A file, an offset into it and how many of `pages` pages fit there."""
        f = self.rng.choice(self.files)
        pages = min(pages, len(f.pages))
        return f.name, self.rng.randint(0, len(f.pages) - pages), pages

    def make_images(self) -> None:
        for i in range(_pick(self.rng, ((0, 11), (1, 7), (2, 2)))):
            segs = []
            for page, n in self.place([], self.rng.randint(1, 3), 2):
                name, offset, n = self.file_range(n)
                segs.append(SegmentSpec(name, _page(page), n, offset,
                                        _pick(self.rng, _SEGMENT_PROTS)))
            if segs:
                self.images[f"img{i + 1}"] = ImageSpec(f"img{i + 1}", tuple(segs))

    def mapping(self, page: int, pages: int) -> MappingSpec:
        rng = self.rng
        share = "shared" if rng.random() < 0.4 else "private"
        prot = _pick(rng, _PROT_CHOICES)
        inherit = rng.choice(INHERITS) if rng.random() < 0.35 else None
        if rng.random() < 0.5:
            name, offset, pages = self.file_range(pages)
            return MappingSpec(_page(page), pages, prot, share, name, offset, inherit)
        init: tuple[int, ...] = ()
        if rng.random() < 0.4:
            init = tuple(self.value() for _ in range(rng.randint(1, pages)))
        return MappingSpec(_page(page), pages, prot, share, None, 0, inherit, init)

    def value(self) -> int:
        # Distinct values, so the oracle can tell every store apart.
        self.values += 1
        return self.values

    # -- processes and threads
    def make_processes(self) -> None:
        rng = self.rng
        roots = _pick(rng, ((1, 4), (2, 4), (3, 2)))
        for r in range(roots):
            p = self.procs[f"p{r + 1}"] = _Proc(f"p{r + 1}")
            busy: list[tuple[int, int]] = []
            if self.images and rng.random() < 0.2:
                p.image = rng.choice(list(self.images))
                busy = [((g.addr - BASE) // PAGE_SIZE, g.pages)
                        for g in self.images[p.image].segments]
            count = _pick(rng, ((0, 1), (1, 4), (2, 5), (3, 3)))
            p.mappings = [self.mapping(page, n) for page, n in self.place(busy, count, 4)]
        for root in list(self.procs):
            for _ in range(_pick(rng, ((0, 10), (1, 7), (2, 3)))):
                child = self.child_of(root)
                if child is not None and rng.random() < 0.2:
                    self.child_of(child)

    def child_of(self, parent: str) -> str | None:
        if len(self.procs) >= MAX_PROCS:
            return None
        name = f"p{len(self.procs) + 1}"
        self.procs[name] = _Proc(name, parent=parent)
        return name

    def make_threads(self) -> None:
        for p in self.procs.values():
            n = _pick(self.rng, ((1, 9), (2, 8), (3, 3)))
            for i in range(n):
                if len(self.threads) >= MAX_THREADS and (i or p.parent is not None):
                    break                      # a root keeps one thread
                self.threads.append(_Thread(f"T{len(self.threads) + 1}", p.name))

    def ops_of(self) -> dict[str, list[Op]]:
        out: dict[str, list[Op]] = {name: list(p.setup) for name, p in self.procs.items()}
        for t in self.threads:
            out[t.proc] += t.ops
        return out

    def regions(self, proc: str) -> list[Region]:
        return regions_of(self.procs, self.images, self.ops_of(), proc)

    # -- ops
    def address(self, proc: str) -> int:
        rng = self.rng
        regions = self.regions(proc)
        if regions and rng.random() < 0.85:
            r = rng.choice(regions)
            page = rng.randrange(r.start, r.end)
        else:
            page = rng.randrange(WINDOW)
        return _page(page) + (rng.choice((8, 0x800, 0xff8)) if rng.random() < 0.15 else 0)

    def span(self, proc: str) -> tuple[int, int]:
        """(page, pages) of a range op: a whole region, its head or tail, its middle,
        from one region into the next, a hole, or anywhere."""
        rng = self.rng
        regions = sorted(self.regions(proc), key=lambda r: (r.start, r.pages))
        shape = rng.choice(("whole", "middle", "head", "tail", "span", "hole", "any"))
        if regions:
            wide = [q for q in regions if q.pages >= 3]
            r = rng.choice(wide if shape == "middle" and wide else regions)
            if shape == "whole":
                return r.start, r.pages
            if shape == "middle" and r.pages >= 3:
                a = rng.randint(r.start + 1, r.end - 2)
                return a, rng.randint(1, r.end - 1 - a)
            if shape in ("head", "tail") and r.pages >= 2:
                k = rng.randint(1, r.pages - 1)
                return (r.start, k) if shape == "head" else (r.start + k, r.pages - k)
            later = [q for q in regions if q.start >= r.end]
            if shape == "span" and later:
                q = later[0]
                a = rng.randint(r.start, r.end - 1)
                return a, rng.randint(q.start, q.end - 1) + 1 - a
            holes = [p for p in range(WINDOW) if not any(q.start <= p < q.end
                                                         for q in regions)]
            if shape == "hole" and holes:
                a = rng.choice(holes)
                return a, 2 if a + 1 < WINDOW and rng.random() < 0.3 else 1
        a = rng.randrange(WINDOW)
        return a, rng.randint(1, min(4, WINDOW - a))

    def op(self, proc: str, kind: str) -> Op:
        rng = self.rng
        if kind == "read":
            return Op("read", addr=self.address(proc))
        if kind == "write":
            return Op("write", addr=self.address(proc), value=self.value())
        if kind == "pageout":
            return Op("pageout", addr=self.address(proc))
        page, pages = self.span(proc)
        addr = _page(page)
        if kind == "mprotect":
            return Op(kind, addr=addr, pages=pages, prot=_pick(rng, _MPROTECT_CHOICES))
        if kind == "minherit":
            return Op(kind, addr=addr, pages=pages, inherit=rng.choice(INHERITS))
        return Op(kind, addr=addr, pages=pages)

    def make_ops(self) -> None:
        rng = self.rng
        for p in self.procs.values():
            if p.parent is None and rng.random() < 0.4:
                p.setup = [self.op(p.name, _pick(rng, _SETUP_OPS))
                           for _ in range(rng.randint(1, 2))]
        for t in self.threads:
            n = min(_pick(rng, ((1, 2), (2, 4), (3, 4), (4, 3), (5, 2))), MAX_BASE_OPS)
            t.ops = [self.op(t.proc, _pick(rng, _THREAD_OPS)) for _ in range(n)]

    def place_forks(self) -> None:
        """Each child is forked once: in its root parent's setup sometimes, else at a
        random point of one of the parent's threads (a parent without threads gets
        its fork in setup if it is a root, else the child is dropped)."""
        rng = self.rng
        for name, p in list(self.procs.items()):
            if p.parent is None or name not in self.procs:
                continue
            parent = self.procs[p.parent]
            threads = [t for t in self.threads if t.proc == parent.name]
            fork = Op("fork", target=name)
            if parent.parent is None and (not threads or rng.random() < 0.25):
                parent.setup.insert(rng.randint(0, len(parent.setup)), fork)
            elif threads:
                t = rng.choice(threads)
                t.ops.insert(rng.randint(0, len(t.ops)), fork)
            else:
                self.drop(name)

    def drop(self, name: str) -> None:
        for child in [c for c, q in self.procs.items() if q.parent == name]:
            self.drop(child)
        del self.procs[name]
        self.threads = [t for t in self.threads if t.proc != name]

    def place_exits_and_execs(self) -> None:
        rng = self.rng
        for t in self.threads:
            if self.images and rng.random() < 0.12:
                t.ops.insert(rng.randint(0, len(t.ops)), Op("exec",
                                                            target=rng.choice(list(self.images))))
            if rng.random() < 0.12:
                t.ops.append(Op("exit"))    # nothing after it would run

    # -- events
    def stable(self, proc: str) -> bool:
        """No thread of `proc` exits or execs, so none of them is ever stopped and
        thread_single never waits for a thread blocked in `wait`."""
        return not any(op.name in ("exit", "exec") for t in self.threads if t.proc == proc
                       for op in t.ops)

    def runs_surely(self, proc: str, waiter: _Thread) -> bool:
        """Every thread of `proc` starts and runs all its ops in every run, whatever
        `waiter` (the only thread with a `wait`) does."""
        p = self.procs[proc]
        if not self.stable(proc):
            return False
        if p.parent is None:
            return True
        if any(op.target == proc for op in self.procs[p.parent].setup if op.name == "fork"):
            return self.runs_surely(p.parent, waiter)
        forker = next(t for t in self.threads if t.proc == p.parent
                      and any(op.name == "fork" and op.target == proc for op in t.ops))
        return forker is not waiter and self.runs_surely(p.parent, waiter)

    def place_event(self) -> None:
        """Sometimes one event: a `post` in a thread that surely runs to its end, and a
        `wait` in a thread whose process never exits or execs.  Waits whose poster
        could be stopped (its process exits or execs first) or never start would
        deadlock legitimately, so they are never generated."""
        rng = self.rng
        if rng.random() >= 0.25:
            return
        waiters = [t for t in self.threads if self.stable(t.proc)]
        rng.shuffle(waiters)
        for waiter in waiters:
            posters = [t for t in self.threads if t is not waiter
                       and self.runs_surely(t.proc, waiter)]
            if posters:
                poster = rng.choice(posters)
                poster.ops.insert(rng.randint(0, len(poster.ops)), Op("post", target="E"))
                waiter.ops.insert(rng.randint(0, len(waiter.ops)), Op("wait", target="E"))
                return

    # -- NotModelled shapes
    def legalise(self) -> None:
        """Steer away from what the model raises NotModelled for, conservatively (per
        region, whatever the interleaving and however entries are clipped):

        - mprotect adding write to a wired entry: an mprotect with write over a region
          its process may wire and that may lack write becomes mprotect r;
        - fork of a wired writable COPY entry: in a process that forks, an mlock of a
          region that may be writable and inherited COPY becomes munlock.

        Protections and inheritance come down from ancestors (before the fork);
        wiring does not (the child's entries start unwired)."""
        changed = True
        while changed:
            changed = False
            for name in self.procs:
                changed |= self._legalise_mprotect(name)
        for name in self.procs:
            self._legalise_mlock(name)

    def _own(self, proc: str) -> list[list[Op]]:
        return [self.procs[proc].setup, *[t.ops for t in self.threads if t.proc == proc]]

    def _lineage_ops(self, proc: str) -> list[Op]:
        return [op for p in _chain(self.procs, proc) for ops in self._own(p) for op in ops]

    def _touching(self, ops: list[Op], name: str, r: Region) -> list[Op]:
        return [op for op in ops if op.name == name and _overlaps(*_range_pages(op),
                                                                  r.start, r.pages)]

    def _legalise_mprotect(self, proc: str) -> bool:
        own = [op for ops in self._own(proc) for op in ops]
        lineage = self._lineage_ops(proc)
        changed = False
        for ops in self._own(proc):
            for i, op in enumerate(ops):
                if op.name != "mprotect" or op.prot not in _WRITABLE:
                    continue
                for r in self.regions(proc):
                    if not _overlaps(*_range_pages(op), r.start, r.pages):
                        continue
                    wired = self._touching(own, "mlock", r)
                    readonly = r.prot not in _WRITABLE or any(
                        o.prot not in _WRITABLE for o in self._touching(lineage, "mprotect", r))
                    if wired and readonly:
                        ops[i] = Op("mprotect", addr=op.addr, pages=op.pages, prot="r")
                        changed = True
                        break
        return changed

    def _legalise_mlock(self, proc: str) -> None:
        own = [op for ops in self._own(proc) for op in ops]
        if not any(op.name == "fork" for op in own):
            return
        lineage = self._lineage_ops(proc)
        for r in self.regions(proc):
            writable = r.prot in _WRITABLE or any(
                o.prot in _WRITABLE for o in self._touching(lineage, "mprotect", r))
            copy = r.inherit == "copy" or any(
                o.inherit == "copy" for o in self._touching(lineage, "minherit", r))
            if not (writable and copy):
                continue
            for ops in self._own(proc):
                for i, op in enumerate(ops):
                    if op.name == "mlock" and _overlaps(*_range_pages(op), r.start, r.pages):
                        ops[i] = Op("munlock", addr=op.addr, pages=op.pages)

    # -- the whole scenario
    def build(self, seed: int | str) -> Scenario:
        self.make_files()
        self.make_images()
        self.make_processes()
        self.make_threads()
        self.make_ops()
        self.place_forks()
        self.place_exits_and_execs()
        self.place_event()
        self.legalise()
        # A thread with no op left cannot be written in TOML (ops is required there).
        self.threads = [t for t in self.threads if t.ops]
        if not self.threads:
            root = next(iter(self.procs))
            self.threads.append(_Thread("T1", root, [Op("read", addr=_page(0))]))
        used = {g.file for i in self.images.values() for g in i.segments} | {
            m.file for p in self.procs.values() for m in p.mappings if m.file is not None}
        return api.scenario(
            scenario_name(seed), f"generated by faultline.scenario.generate from seed {seed!r}",
            files=[f for f in self.files if f.name in used],
            images=list(self.images.values()),
            processes=[ProcessSpec(p.name, p.parent, tuple(p.mappings), tuple(p.setup),
                                   p.image) for p in self.procs.values()],
            threads=[ThreadSpec(t.name, t.proc, tuple(t.ops)) for t in self.threads],
            step_bound=STEP_BOUND)


def scenario_name(seed: int | str) -> str:
    """The generated scenario's name for `seed` (a valid scenario and file name)."""
    text = "".join(c if c.isalnum() else "-" for c in str(seed).lower())
    return f"fuzz-{text.strip('-') or 'seed'}"


def random_scenario(seed: int | str) -> Scenario:
    """A small, valid, randomly shaped scenario; the same one for the same seed."""
    return _Gen(seed).build(seed)


# ---------------------------------------------------------------------------------------
# What a scenario exercises


def features(s: Scenario) -> Counter[str]:
    """Counts of the shapes `s` contains, read off the scenario (not the generator):
    processes, forks, exits, execs, mappings by kind, each range op and each range
    shape relative to the regions its process may have (whole, partial, middle of a
    region, spanning two regions, touching a hole), and range ops of two threads of one
    process that overlap."""
    out: Counter[str] = Counter()
    procs = {p.name: p for p in s.processes}
    images = {i.name: i for i in s.images}
    ops_of: dict[str, list[Op]] = {p.name: list(p.setup) for p in s.processes}
    for t in s.threads:
        ops_of[t.process] += t.ops
    out["process"] += len(s.processes)
    out["root"] += sum(p.parent is None for p in s.processes)
    out["image-root"] += sum(p.image is not None for p in s.processes)
    out["grandchild"] += sum(p.parent is not None and procs[p.parent].parent is not None
                             for p in s.processes)
    out["multi-root"] += out["root"] > 1
    per_proc = Counter(t.process for t in s.threads)
    out["multi-thread-process"] += sum(n > 1 for n in per_proc.values())
    for p in s.processes:
        out["fork-in-setup"] += sum(op.name == "fork" for op in p.setup)
        for m in p.mappings:
            out["map:" + m.share] += 1
            out["map:file" if m.file else "map:anon"] += 1
            out["map:init"] += bool(m.init)
            out["map:inherit"] += m.inherit is not None
    for name, ops in ops_of.items():
        regions = regions_of(procs, images, ops_of, name)
        for op in ops:
            out["op:" + op.name] += 1
            if op.name in RANGE_OPS:
                out.update("range:" + k for k in range_shapes(_range_pages(op), regions))
    for t in s.threads:
        out["fork-in-thread"] += sum(op.name == "fork" for op in t.ops)
    out["overlapping-range-ops"] += _overlapping_pairs(s)
    return out


def range_shapes(span: tuple[int, int], regions: list[Region]) -> list[str]:
    """How the range (page, pages) sits on `regions`: whole, partial, middle, spans-two
    (over two or more regions), hole (covers a page in no region)."""
    a, n = span
    hit = [r for r in regions if _overlaps(a, n, r.start, r.pages)]
    shapes = []
    if any(not any(r.start <= p < r.end for r in regions) for p in range(a, a + n)):
        shapes.append("hole")
    distinct = {(r.start, r.pages) for r in hit}
    if len(distinct) >= 2:
        shapes.append("spans-two")
    for r in hit:
        if (a, n) == (r.start, r.pages):
            shapes.append("whole")
        elif r.start < a and a + n < r.end:
            shapes.append("middle")
        else:
            shapes.append("partial")
    return sorted(set(shapes))


def _overlapping_pairs(s: Scenario) -> int:
    count = 0
    for i, t in enumerate(s.threads):
        for u in s.threads[i + 1:]:
            if t.process != u.process:
                continue
            count += sum(_overlaps(*_range_pages(a), *_range_pages(b))
                         for a in t.ops if a.name in RANGE_OPS
                         for b in u.ops if b.name in RANGE_OPS)
    return count


__all__ = ["RANGE_OPS", "Region", "features", "random_scenario", "range_shapes",
           "regions_of", "scenario_name"]
