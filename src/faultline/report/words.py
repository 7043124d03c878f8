"""How counts read in printed lines: `plural` ("1 execution", "2,000 executions").

Rule kept: English only for what a person reads; JSON keeps its numbers bare.
Must not be added: anything but wording.
"""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """`n` and `noun`, made plural (`nouns`, else noun + "s") unless n is 1."""
    return f"{n:,} {noun if n == 1 else nouns or noun + 's'}"
