"""What the CLI test modules share: the in-process runner and the tiny scenario whose
every run ends in a no-progress violation (a deterministic counterexample)."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from faultline.cli.app import app

# A step bound far too small for the setup: every run ends in a no-progress violation.
TINY_TEMPLATE = """\
name = "tiny-bound"
description = "A step bound too small for the setup: a deterministic no-progress violation."
step_bound = 5
{expect}
[[file]]
name = "data"
pages = [10]

[[process]]
name = "p1"
[[process.map]]
addr = 0x1000
pages = 1
file = "data"
prot = "r"

[[thread]]
name = "R"
process = "p1"
ops = ["read 0x1000", "read 0x1000"]
"""
TINY = TINY_TEMPLATE.format(expect="")


def run(*args: str) -> Result:
    """Invoke the app in-process, stdout and stderr captured apart, as into a pipe: no
    COLUMNS (pytest-xdist's workers set it), so lines are as a log gets them."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": None})


def run_at(columns: int, *args: str) -> Result:
    """`run` on a terminal `columns` wide (COLUMNS, as a shell sets it)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns)})
