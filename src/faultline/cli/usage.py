"""Usage errors as one line, like every other bad input, and help with misspelt names.

What lives here: `OneLineUsage`, the click group behind the `faultline` app, which turns
click's usage errors (an unknown command or option, a missing argument, a value that
does not parse or is out of range) into `faultline: error: ...` and exit 2 instead of
typer's boxed message; `did_you_mean`; and `load_scenario`, the catalog-or-file lookup
every command uses, with a precise message for a name that is neither.
Rule kept: wording and lookup only; what counts as bad input is decided where the
value is used.  Must not be added: per-command argument checks.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from faultline.cli.common import BadInput, _die
from faultline.scenario import loader
from faultline.scenario.spec import Scenario

try:                                # typer 0.2x parses with its own copy of click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:                 # older typer: click itself
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[no-redef]


@contextmanager
def _one_line() -> Iterator[None]:
    try:
        yield
    except NoArgsIsHelpError:
        raise                       # bare `faultline`: the help, as before
    except UsageError as e:
        _die(usage_message(e))


def usage_message(e: UsageError) -> str:
    """click's message, lower-cased like ours, with where to look for help."""
    text = e.format_message().rstrip(".")
    if text[:2].istitle():          # "Invalid value ..." but not "CPU ..."
        text = text[0].lower() + text[1:]
    return f"{text} (see {e.ctx.command_path} --help)" if e.ctx is not None else text


class OneLineUsage(TyperGroup):
    """The app's group: usage errors, option parsing included, as one stderr line."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: typer.Context | None = None, **extra: Any) -> typer.Context:
        """Parse the group's own options (a usage error there is one line too)."""
        with _one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: typer.Context) -> Any:
        """Find the command and parse its arguments, then run it."""
        with _one_line():
            return super().invoke(ctx)


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """'; did you mean X?' (or 'X or Y') for the known names closest to `word`, else ''."""
    close = difflib.get_close_matches(word, list(known), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def load_scenario(name: str) -> Scenario:
    """The catalog scenario `name`, else the scenario file at that path.  Neither is bad
    input: a path-like name that does not exist is "no such file"; any other name is not
    in the catalog, with the catalog names it most resembles."""
    names: Sequence[str] = loader.catalog_names()
    if name in names or os.path.lexists(name):
        return loader.load_scenario(name)
    if name.endswith(".toml") or "/" in name or os.sep in name:
        raise BadInput(f"{name}: no such file{did_you_mean(Path(name).stem, names)}")
    raise BadInput(f"{name!r} is neither a catalog scenario nor a file"
                   f"{did_you_mean(name, names) or ' (faultline scenarios lists the catalog)'}")
