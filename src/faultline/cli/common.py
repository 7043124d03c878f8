"""What every faultline command shares: bad input as one line, bugs as tracebacks, output.

What lives here: `BadInput`, the `reported` block that turns exceptions into exit
statuses (2 bad input, one line on stderr; 3 a bug in faultline, with its traceback;
130 interrupted), the console and JSON printers, and the lazy progress bar.  Rule kept:
no command logic.  Must not be added: anything a single command needs alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from faultline.check.explore import SettingError
from faultline.check.running.checkpoint import CheckpointError
from faultline.check.running.files import OutputError
from faultline.cli.counterexample import CounterexampleError
from faultline.kern.vm_map import NotModelled
from faultline.rt.execution import FaultlineInternalError, ReplayDivergence
from faultline.rt.sync import not_modelled
from faultline.scenario.loader import ScenarioError

EXIT_OK, EXIT_VIOLATION, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
PIPE_WIDTH = 160              # rich width when stdout is not a terminal and COLUMNS unset
_CORES = max(1, os.cpu_count() or 1)    # --jobs default: one worker per core


# ---------------------------------------------------------------- errors and output

class BadInput(Exception):
    """Input faultline cannot use: reported as one stderr line, exit status 2."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _die(message: str) -> NoReturn:
    typer.echo(f"faultline: error: {_one_line(message)}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _internal(exc: Exception) -> NoReturn:
    traceback.print_exception(exc)
    what = _one_line(str(exc))
    if not isinstance(exc, FaultlineInternalError):
        what = f"bug in faultline, not in your scenario: {type(exc).__name__}: {what}"
    typer.echo(f"faultline: internal error: {what}", err=True)
    raise typer.Exit(EXIT_INTERNAL)


@contextmanager
def _reported() -> Iterator[None]:
    """Turn bad input raised inside the block into `faultline: error: ...` and exit 2;
    anything else unexpected is a bug in faultline (traceback, exit 3)."""
    try:
        yield
    except typer.Exit:
        raise
    except (BadInput, ScenarioError, CheckpointError, CounterexampleError, OutputError,
            SettingError) as e:
        _die(str(e))
    except ReplayDivergence as e:
        _die(f"replay diverged: {e}")
    except NotModelled as e:
        _die(f"not modelled: {e}")
    except FaultlineInternalError as e:
        nm = not_modelled(e)
        if nm is not None:
            _die(f"not modelled: {nm}")
        _internal(e)
    except KeyboardInterrupt as e:
        # A checkpointed run says where it saved (check.running.interrupt.Interrupted).
        typer.echo(f"faultline: interrupted{f': {e}' if str(e) else ''}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as e:
        _internal(e)


def _piped() -> bool:
    """stdout is neither a terminal nor given a width (COLUMNS): a log or a pipe."""
    return not sys.stdout.isatty() and "COLUMNS" not in os.environ


def _out() -> Console:
    return Console(highlight=False, width=PIPE_WIDTH if _piped() else None)


def _say(console: Console, line: str, style: str = "") -> None:
    # A log keeps each line whole (for grep); a terminal gets it wrapped at spaces.
    console.print(Text(line, style=style), soft_wrap=_piped())


def _emit_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def _line_seconds() -> float:
    """Seconds between plain progress lines (stderr not a terminal):
    FAULTLINE_PROGRESS_SECONDS, default 30; a bad value is the default."""
    try:
        return max(0.0, float(os.environ.get("FAULTLINE_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


class _Bar(Progress):
    """A rich progress bar with the running units' status lines under it."""

    def __init__(self, *columns: Any, rows: dict[str, str], **kw: Any) -> None:
        self.rows = rows            # before Progress.__init__, which renders once
        super().__init__(*columns, **kw)

    def get_renderables(self) -> Iterator[Any]:
        """The bar, then one line per running unit (cut to the terminal's width)."""
        yield self.make_tasks_table(self.tasks)
        for text in self.rows.values():
            yield Text(f"  {text}", no_wrap=True, overflow="ellipsis")


class _LazyProgress:
    """A transient progress bar on stderr that appears only once the work has taken
    longer than DELAY seconds, and only on a terminal; elsewhere (a CI log) a plain
    status line every FAULTLINE_PROGRESS_SECONDS (default 30).  Under the bar, one line
    per running unit that reports a status (a DPOR exploration: distinct traces and how
    big its tree is believed to be, check.search.gauge).  Wall clock is fine here: it
    never reaches a result.  `total` None: open-ended (DPOR, whose size is not known)."""

    DELAY = 1.0

    def __init__(self, total: int | None, enabled: bool, unit: str = "executions") -> None:
        self.console = Console(stderr=True)
        self.unit = unit
        self.total, self.enabled = total, enabled
        self.terminal = self.console.is_terminal
        self.done, self.label = 0, ""
        self.rows: dict[str, str] = {}          # running unit -> its status line
        self.line_every = _line_seconds()
        self.t0 = self.last_line = time.monotonic()
        self._bar: _Bar | None = None
        self._task: TaskID | None = None

    def describe(self, label: str) -> None:
        """Name the work in progress (a scenario, or how many are done)."""
        self.label = label
        self._sync()

    def status(self, text: str) -> None:
        """The status line of a DPOR exploration in this process."""
        self.unit_status("here", text)

    def unit_status(self, key: str, text: str) -> None:
        """The status line of the running unit `key` ("": it ended)."""
        # A new dict each time: rich's refresh thread may be reading the old one.
        rows = {k: v for k, v in self.rows.items() if k != key}
        if text:
            rows[key] = text
        self.rows = rows
        if self._bar is not None:
            self._bar.rows = rows
        self._sync()

    def advance(self, n: int = 1) -> None:
        """`n` more executions done (the check_scenario progress callback)."""
        self.done += n
        self._sync()

    def reach(self, done: int) -> None:
        """Jump to `done` (a scenario stopped early at a violation)."""
        self.done = done
        self._sync()

    def close(self) -> None:
        """Remove the bar, if it ever appeared."""
        if self._bar is not None:
            self._bar.stop()

    def summary(self) -> str:
        """What was done so far, for a line after the bar is gone."""
        elapsed = time.monotonic() - self.t0
        return f"{self.done:,} {self.unit} in {elapsed:,.1f} s"

    def _figures(self) -> str:
        elapsed = time.monotonic() - self.t0
        rate = f", {self.done / elapsed:,.1f}/s" if elapsed > 0 else ""
        of = "" if self.total is None else f" of {self.total:,}"
        return f"{self.done:,}{of} {self.unit}{rate}"

    def _sync(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not self.terminal:
            if now - self.last_line >= self.line_every:
                self.last_line = now
                units = "".join(f"; {text}" for text in self.rows.values())
                self.console.print(f"progress: {self.label}: {self._figures()}{units}",
                                   highlight=False, soft_wrap=True)
            return
        if self._bar is None:
            if now - self.t0 < self.DELAY:
                return
            self._start()
        assert self._bar is not None and self._task is not None
        self._bar.update(self._task, completed=max(self.done, 0), description=self.label,
                         figures=self._figures())

    def _start(self) -> None:
        columns = [TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.fields[figures]}"), TimeElapsedColumn()]
        if self.total is not None:
            columns.append(TimeRemainingColumn())
        self._bar = _Bar(*columns, rows=self.rows, console=self.console, transient=True)
        self._task = self._bar.add_task(self.label, total=self.total, figures="")
        self._bar.start()
