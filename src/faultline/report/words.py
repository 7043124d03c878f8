"""How counts and paths read in printed lines: `plural` ("1 execution", "2,000
executions") and `shown_path` (a file of the package named inside it).

Rule kept: English only for what a person reads; JSON keeps its numbers bare.
Must not be added: anything but wording.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["plural", "shown_path"]

_PACKAGE = Path(__file__).resolve().parent.parent


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` and `noun`, made plural (`nouns`, else noun + "s") unless n is 1."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"


def shown_path(path: str) -> str:
    """A file of the package (a catalog scenario) as `scenario/catalog/X.toml`, never by
    where the package is installed; any other path as given."""
    try:
        return str(Path(path).resolve().relative_to(_PACKAGE))
    except (ValueError, OSError):
        return path
