"""Checks of JSON input, field by field: the words every file validator uses.

What lives here: `SchemaError` and small checkers (`field`, `integer`, `string`,
`boolean`, `array`, `mapping`, `nullable`) that return the value when it is what the
caller expects and otherwise raise SchemaError naming the field, as a dotted path
(`current.nodes[3].chosen`), what was expected and what was found.
Rule kept: a checker never converts or repairs a value (1.0 is not an integer, true is
not 1), so what passes is exactly what the code reading it expects.
Must not be added: knowledge of a particular file format (checkpoint, counterexample).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class SchemaError(ValueError):
    """A field missing or of the wrong type or range; the message names the field."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def field(doc: Mapping[str, Any], key: str, where: str = "") -> Any:
    """doc[key], or SchemaError if it is missing."""
    if key not in doc:
        raise SchemaError(f"{where}{key}: missing")
    return doc[key]


def integer(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """An int (not a bool) within lo..hi."""
    if type(value) is not int:
        raise SchemaError(f"{name}: expected an integer, got {_shown(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
        raise SchemaError(f"{name}: expected an integer in {span}, got {_shown(value)}")
    return value


def string(value: Any, name: str, choices: tuple[str, ...] | None = None,
           nonempty: bool = False) -> str:
    """A str (one of `choices`, if given)."""
    if type(value) is not str:
        raise SchemaError(f"{name}: expected a string, got {_shown(value)}")
    if choices is not None and value not in choices:
        raise SchemaError(f"{name}: expected one of {', '.join(choices)}, got {_shown(value)}")
    if nonempty and not value:
        raise SchemaError(f"{name}: expected a non-empty string")
    return value


def boolean(value: Any, name: str) -> bool:
    """true or false."""
    if type(value) is not bool:
        raise SchemaError(f"{name}: expected true or false, got {_shown(value)}")
    return value


def array(value: Any, name: str, max_len: int | None = None) -> list[Any]:
    """A list (of at most max_len items)."""
    if type(value) is not list:
        raise SchemaError(f"{name}: expected a list, got {_shown(value)}")
    if max_len is not None and len(value) > max_len:
        raise SchemaError(f"{name}: expected at most {max_len:,} items, got {len(value):,}")
    return value


def mapping(value: Any, name: str) -> dict[str, Any]:
    """A JSON object."""
    if type(value) is not dict:
        raise SchemaError(f"{name}: expected an object, got {_shown(value)}")
    return value


def nullable(check: Callable[..., T], value: Any, name: str, *args: Any, **kw: Any
             ) -> T | None:
    """None, or what `check` accepts."""
    return None if value is None else check(value, name, *args, **kw)


def pair(value: Any, name: str) -> list[Any]:
    """A list of exactly two items."""
    v = array(value, name)
    if len(v) != 2:
        raise SchemaError(f"{name}: expected a pair [a, b], got {len(v)} items")
    return v


def only_keys(doc: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    """SchemaError if `doc` has a key not in `allowed`."""
    extra = sorted(set(doc) - allowed)
    if extra:
        raise SchemaError(f"{where}{extra[0]}: not a field this version knows")
