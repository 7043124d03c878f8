"""The world as a scenario's sequential setup leaves it, so that runs start there.

A scenario's setup (files, processes, mappings, their setup ops) runs in one thread
with nothing to interleave, yet every run used to re-run it: 90 to 160 model steps of
a catalog run's 300 to 600, before a DPOR run replayed its prefix or a random or PCT
run made its first choice.  Python cannot copy a
suspended coroutine, but when the setup is done nothing is suspended that cannot be
started again: the setup thread is about to start the scenario's threads, and every
other coroutine has finished.  So the first run pickles the world and the verdict
observers at that point (a few kilobytes), and every later run unpickles them (about
0.1 ms, against 1 to 3 ms for the steps), starts the setup thread again in a world
marked restored (`World.setup` then only starts the threads, from the same frame), and
goes on from step N with the first run's N steps as its own.  A DPOR run starts there
when its prefix passes the setup; a seeded run (random, PCT) always, since the setup
gives its strategy no choice to make: random draws nothing where one thread can run,
and PCT's draws and change points during the setup are replayed by its `resume_after`.

The state a restored run reaches is the state the steps would have built: the same
objects with the same fields and the same aliasing (one pickle keeps it), and the
setup thread suspended at the same op in the same frame, so state keys and footprints
are the same and DPOR explores the same tree (tests/test_setup_image.py compares whole
explorations).  The scenario's spec objects are frozen values and are shared, not
copied.  No image is taken (every run replays the setup, as before) when the setup
leaves anything else (a second thread, a sleeper), when it is too short to pay for
its unpickling, or when state pickle refuses.  Objects the
setup's footprints named by order of appearance (a page under construction has no
fl_key yet) keep their numbers under their copies' ids.
Rule kept: an image is taken once per exploration (or series of seeded runs), by its
first run, and only read after.
Must not be added: images of later points (a suspended scenario thread has no
pickled form), or anything shared between explorations.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from faultline.check.search import dpor
from faultline.rt.execution import Execution, Hooks, Strategy, Thread
from faultline.rt.ops import Op
from faultline.scenario.world import World

_SPEC = "faultline.scenario.spec"
# Unpickling an image costs about as much as 5 to 11 model steps (bigger worlds, more):
# a shorter setup is cheaper to run again.
MIN_STEPS = 12


class _Pickler(pickle.Pickler):
    """Pickles a world, leaving the scenario's spec objects (frozen values) by reference,
    and finds the objects among it whose id() is in `wanted`."""

    def __init__(self, file: io.BytesIO, shared: list[Any], wanted: dict[int, int]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared
        self.index: dict[int, int] = {}
        self.wanted = wanted
        self.found: dict[int, Any] = {}

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj).__module__ != _SPEC:
            if id(obj) in self.wanted:
                self.found[id(obj)] = obj
            return None
        n = self.index.get(id(obj))
        if n is None:
            n = self.index[id(obj)] = len(self.shared)
            self.shared.append(obj)
        return n


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, shared: list[Any]) -> None:
        super().__init__(file)
        self.shared = shared

    def persistent_load(self, pid: Any) -> Any:
        return self.shared[pid]


class SetupImage:
    """One exploration's image of its setup: taken by the first run (`taker`), then
    the start of every DPOR run whose prefix passes it (`execution`) and of every
    seeded run (`start`)."""

    def __init__(self) -> None:
        self.tried = False
        self.steps: list[dpor.Step] = []    # the setup's steps, as DPOR recorded them
        self.schedule: list[int] = []       # the setup's thread choices, one per step
        self._blob: bytes | None = None
        self._shared: list[Any] = []
        self._gone: list[int] = []          # numbers of named objects not in the world

    @property
    def length(self) -> int:
        """The steps the image stands for (0: there is none)."""
        return len(self.schedule) if self._blob is not None else 0

    def taker(self, world: World, observers: list[Hooks],
              rec: dpor._PathStrategy | None = None) -> Hooks:
        """An observer (to attach last) that takes the image when the setup is done.
        `observers` are the run's verdict observers, in their order; `rec` DPOR's path
        recorder, if the run has one (its steps and object numbers go with the image)."""
        self.tried = True
        return _Taker(self, world, rec, observers)

    def covers(self, rec: dpor._PathStrategy) -> bool:
        """Can this run start from the image (its prefix runs past the setup)?"""
        return self._blob is not None and rec.prefix_len - 1 >= len(self.schedule)

    def execution(self, rec: dpor._PathStrategy, step_bound: int
                  ) -> tuple[Execution, list[Hooks]]:
        """A DPOR run restored from the image, at the step after the setup: its
        execution (`rec` its strategy and first observer) and its verdict observers."""
        ex, observers, named = self._restore(rec, [rec], step_bound)
        # The objects the setup's footprints numbered, under their copies' ids; a
        # number whose object is gone keeps its place (no id is negative).
        serial = {id(obj): n for n, obj in named}
        serial.update((-1 - n, n) for n in self._gone)
        rec.resume_at(self.steps, serial)
        return ex, observers

    def start(self, strategy: Strategy, step_bound: int
              ) -> tuple[Execution, list[Hooks]] | None:
        """A seeded run restored from the image, at the step after the setup (its
        execution and verdict observers), or None if there is no image or `strategy`
        cannot start there (its `resume_after` says whether, and catches up)."""
        resume = getattr(strategy, "resume_after", None)
        if self._blob is None or resume is None or not resume(self.schedule):
            return None
        ex, observers, _ = self._restore(strategy, [], step_bound)
        return ex, observers

    def _restore(self, strategy: Strategy, first: list[Hooks], step_bound: int
                 ) -> tuple[Execution, list[Hooks], list[tuple[int, Any]]]:
        assert self._blob is not None
        world, observers, named = _Unpickler(io.BytesIO(self._blob), self._shared).load()
        world.restored = True
        ex = Execution(strategy, [*first, *observers], step_bound)
        n = len(self.schedule)
        ex.steps = n
        ex.schedule = list(self.schedule)
        t = ex.spawn("setup", "-", world.setup())
        t.steps = n
        return ex, observers, named

    def _take(self, ex: Execution, world: World, rec: dpor._PathStrategy | None,
              observers: list[Hooks]) -> None:
        # Only the setup thread, not asleep (a lone thread has no pause to wait out).
        if len(ex.threads) != 1 or ex.threads[0].wchan is not None or ex.steps < MIN_STEPS:
            return
        # With objects DPOR's recorder numbered, twice: the first pass finds which of
        # them are in the world, the second pickles them with it (one pickle keeps
        # them the same objects).
        serial = rec.serial if rec is not None else {}
        try:
            named: list[tuple[int, Any]] = []
            if serial:
                finder = _Pickler(io.BytesIO(), [], serial)
                finder.dump((world, observers))
                named = [(serial[i], obj) for i, obj in finder.found.items()]
            shared: list[Any] = []
            buf = io.BytesIO()
            _Pickler(buf, shared, {}).dump((world, observers, named))
        except (pickle.PicklingError, TypeError, AttributeError):
            return                      # some state has no pickled form: replay instead
        self._gone = sorted(set(serial.values()) - {n for n, _ in named})
        self._blob, self._shared = buf.getvalue(), shared
        self.steps = list(rec.steps) if rec is not None else []
        self.schedule = list(ex.schedule)


class _Taker(Hooks):
    """Takes the image after the step that ends the setup (observers before it have
    seen that step; the setup thread is suspended at its first thread start).  It
    holds nothing a verdict depends on, so state keys leave it out: a run that takes
    the image and one restored from it reach the same keys."""

    decides_no_verdict = True

    def __init__(self, image: SetupImage, world: World, rec: dpor._PathStrategy | None,
                 observers: list[Hooks]) -> None:
        self.image, self.world, self.rec, self.observers = image, world, rec, observers
        self.done = False

    def stepped(self, ex: Execution, t: Thread, op: Op, result: Any) -> None:
        if not self.done and not self.world.in_setup:
            self.done = True
            self.image._take(ex, self.world, self.rec, self.observers)
