"""Scenario loader: TOML text, TOML files and the built-in catalog -> validated `Scenario`.

What lives here: `ScenarioError` (a one-line, CLI-ready error naming file, key and what was
expected), `parse_op` for the op mini-language documented in `scenario.spec`, the TOML
schema reader (`load_text`, `load_path`), the catalog helpers (`catalog_dir`,
`catalog_names`, `load_scenario`, `load_catalog`), `validate`, the value and
cross-reference checks shared by TOML-loaded and Python-built scenarios, and
`check_addresses` (files only) with `with_fault_marks`, for the `fault` mark.  The op
language's syntax is `spec.OPS`; parsing follows it, so a new op needs only its line
there (and a rule here for a new kind of value).

Rule kept: this module only turns text into `scenario.spec` dataclasses and rejects bad
input with `ScenarioError`.  Do not add runtime or VM-model behaviour, printing, exit
codes or other CLI presentation here, and do not define scenario dataclasses or their
defaults here (they live in `scenario.spec`).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import reprlib
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, NoReturn, TypeGuard, TypeVar, cast

from faultline.scenario.spec import (
    INHERITS,
    KEYWORD_FIELDS,
    LIMITS,
    OP_NAMES,
    OPS,
    PAGE_SIZE,
    PARAM_FIELDS,
    PROTS,
    BoundSpec,
    CheckSpec,
    Choice,
    FileSpec,
    ImageSpec,
    MappingSpec,
    Node,
    Op,
    ProcessSpec,
    Scenario,
    SegmentSpec,
    ThreadSpec,
    VmSpec,
    op_grammar,
)

__all__ = [
    "ScenarioError",
    "catalog_dir",
    "catalog_names",
    "check_addresses",
    "load_catalog",
    "load_path",
    "load_scenario",
    "load_text",
    "parse_op",
    "validate",
    "with_fault_marks",
]

T = TypeVar("T")

_POLICIES: tuple[str, ...] = ("sbusy", "xbusy")
_VERDICTS: tuple[str, ...] = ("pass", "violation")
_SHARES: tuple[str, ...] = ("private", "shared")

_TOP_KEYS = (
    "name", "description", "step_bound", "probes", "expect", "bound", "file", "image",
    "process", "thread", "vm", "check",
)
_BOUND_KEYS = ("preemptions", "reason")
_FILE_KEYS = ("name", "pages")
_IMAGE_KEYS = ("name", "segment")
_SEGMENT_KEYS = ("file", "addr", "pages", "offset", "prot")
_PROCESS_KEYS = ("name", "parent", "image", "setup", "map")
_MAP_KEYS = ("addr", "pages", "prot", "share", "file", "offset", "inherit", "init")
_THREAD_KEYS = ("name", "process", "ops")
_VM_KEYS = ("free_pages", "prefault")
_CHECK_KEYS = ("end_invariants",)

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_SCENARIO_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_KEY_PART_RE = re.compile(r"[A-Za-z0-9_-]+")
_INT_TEXT_RE = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)")
_ANY_RE = re.compile(r".*", re.DOTALL)

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxlong = 40
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


class _Absent(enum.Enum):
    """Marks "no value given"; None cannot, since it is a legal Python field value."""

    TOKEN = 0


_ABSENT = _Absent.TOKEN


def _show(value: object) -> str:
    """A short repr of `value` for error messages (never raises on huge ints)."""
    try:
        return _REPR.repr(value)
    except ValueError:  # int too large for str() under sys.get_int_max_str_digits()
        return f"<{type(value).__name__} too large to show>"


class ScenarioError(Exception):
    """A malformed scenario: in `file`, at `key` (e.g. `process[1].map[0].prot`), the value
    was not what was `expected`.  `got` is the offending value when there was one.

    `str(e)` is one line, ready for a CLI: `FILE: KEY: expected EXPECTED[, got GOT!r]`.
    """

    file: str
    key: str
    expected: str
    got: object

    def __init__(self, file: str, key: str, expected: str, got: object = _ABSENT) -> None:
        super().__init__(file, key, expected, got)
        self.file = file
        self.key = key
        self.expected = expected
        self.got = got

    def __str__(self) -> str:
        text = f"{self.file}: {self.key}: expected {self.expected}"
        if self.got is not _ABSENT:
            text += f", got {_show(self.got)}"
        return " ".join(text.splitlines())


@dataclass(frozen=True, slots=True)
class _Loc:
    """Where a value sits: the file and its dotted/indexed key path."""

    file: str
    key: str = ""

    def at(self, name: object) -> _Loc:
        text = str(name)
        part = text if _KEY_PART_RE.fullmatch(text) else json.dumps(text)
        return _Loc(self.file, f"{self.key}.{part}" if self.key else part)

    def item(self, index: int) -> _Loc:
        return _Loc(self.file, f"{self.key}[{index}]")

    def fail(self, expected: str, got: object = _ABSENT) -> NoReturn:
        raise ScenarioError(self.file, self.key, expected, got)


# ---------------------------------------------------------------------------------------
# Value rules, shared by the TOML reader and validate()


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class _Rule(Generic[T]):
    """What a value must be (`expected`, as said in errors) and the test for it."""

    expected: str
    accepts: Callable[[object], bool]

    def check(self, value: object, loc: _Loc) -> T:
        if not self.accepts(value):
            loc.fail(self.expected, value)
        return cast(T, value)


def _int_rule(minimum: int | None = None, maximum: int | None = None, *,
              aligned: bool = False, why: str = "") -> _Rule[int]:
    def accepts(value: object) -> bool:
        if not _is_int(value) or (minimum is not None and value < minimum):
            return False
        if maximum is not None and value > maximum:
            return False
        return not aligned or value % PAGE_SIZE == 0

    if maximum is None:
        bound = "" if minimum is None else f" >= {minimum}"
    else:
        show = hex if maximum >= 0x10000 else str
        bound = f" from {show(minimum or 0)} to {show(maximum)}"
    kind = f"a page-aligned (multiple of {PAGE_SIZE:#x}) integer" if aligned else "an integer"
    return _Rule(kind + bound + (f" ({why})" if why else ""), accepts)


def _str_rule(expected: str, pattern: re.Pattern[str] | None = None,
              longest: int = LIMITS.text) -> _Rule[str]:
    def accepts(value: object) -> bool:
        if not isinstance(value, str) or len(value) > longest:
            return False
        return bool(value.strip()) if pattern is None else bool(pattern.fullmatch(value))

    return _Rule(f"{expected} of at most {longest:,} characters", accepts)


def _choice_rule(choices: tuple[str, ...]) -> _Rule[str]:
    return _Rule("one of: " + ", ".join(choices), lambda value: value in choices)


_USER = "below amd64's VM_MAXUSER_ADDRESS, the top of a user address space"
_HALF_WORD = 1 << (LIMITS.word_bits - 1)
_INT = _int_rule(-_HALF_WORD, _HALF_WORD - 1, why="a page holds one 64-bit word")
_NAT = _int_rule(0)
_POS = _int_rule(1)
_ADDR = _int_rule(0, LIMITS.user_top - 1, why=_USER)
_PAGE_ADDR = _int_rule(0, LIMITS.user_top - PAGE_SIZE, aligned=True, why=_USER)
_PAGES = _int_rule(1, LIMITS.pages, why="the scenario limit on pages per file, map, "
                   "segment or range op")
_OFFSET = _int_rule(0, LIMITS.pages - 1, why="files hold at most "
                    f"{LIMITS.pages} pages")
_STEP_BOUND = _int_rule(1, LIMITS.step_bound, why="the scenario limit on steps per run")
_PREEMPTION_INT = _int_rule(0, LIMITS.preemptions, why="the limit on a stated bound")
# A stated bound is a number of preemptions, or "none": every interleaving (stateful
# DPOR ends the exploration; the reason then says what it costs).
_PREEMPTION_BOUND: _Rule[int | str] = _Rule(
    _PREEMPTION_INT.expected + ', or "none" (every interleaving)',
    lambda value: value == "none" or _PREEMPTION_INT.accepts(value))
_STRING = _str_rule("a string", _ANY_RE, longest=200)
_OP_STRING = _str_rule("an op string", _ANY_RE, longest=200)
_TEXT = _str_rule("a non-empty string")
_IDENT = _str_rule("an identifier ([A-Za-z_][A-Za-z0-9_.-]*)", _IDENT_RE, longest=64)
_SCENARIO_NAME = _str_rule("a scenario name ([a-z0-9][a-z0-9-]*)", _SCENARIO_NAME_RE,
                           longest=64)
_PROT = _choice_rule(PROTS)
_SHARE = _choice_rule(_SHARES)
_INHERIT = _choice_rule(INHERITS)
_VERDICT = _choice_rule(_VERDICTS)


def _seq(value: object, loc: _Loc, rule: _Rule[T], noun: str, min_len: int = 0,
         max_len: int = LIMITS.pages) -> tuple[T, ...]:
    """Check that `value` is a list (or tuple) of `min_len` to `max_len` items obeying
    `rule`."""
    if not isinstance(value, list | tuple) or len(value) < min_len:
        loc.fail(f"a {'non-empty ' if min_len else ''}list of {noun}", value)
    if len(value) > max_len:
        loc.fail(f"a list of at most {max_len:,} {noun} (a scenario limit)",
                 f"a list of {len(value):,}")
    return tuple(rule.check(item, loc.item(i)) for i, item in enumerate(value))


# ---------------------------------------------------------------------------------------
# The op mini-language

_INT_PARAMS = frozenset({"ADDR", "VALUE", "PAGES", "OFFSET", "SIZE"})
_PARAMS: dict[str, _Rule[Any]] = {
    "ADDR": _ADDR, "VALUE": _INT, "PAGES": _PAGES, "PROT": _PROT, "INH": _INHERIT,
    "CHILD": _IDENT, "IMAGE": _IDENT, "EVENT": _IDENT, "FILE": _IDENT, "OFFSET": _OFFSET,
    "SIZE": _int_rule(0, LIMITS.pages, why="files hold at most "
                      f"{LIMITS.pages} pages"),
}


def _words(seq: tuple[Node, ...]) -> set[str]:
    """Every word of a syntax, inside choices too."""
    out: set[str] = set()
    for node in seq:
        if isinstance(node, Choice):
            for alt in node.alternatives:
                out |= _words(alt)
        else:
            out.add(node)
    return out


# Ops on a range of whole pages (ADDR aligned, the range below the user top), and the
# accesses, the ops offering the `fault` mark (their address must be mapped at some time).
_RANGE_OPS = frozenset(n for n in OPS if {"ADDR", "PAGES"} <= _words(op_grammar(n)))
_ACCESS_OPS = frozenset(n for n in OPS if "fault" in _words(op_grammar(n)))


def _syntax(name: str) -> str:
    """Op `name`'s syntax, quoted as errors show it: 'write ADDR VALUE [fault]'."""
    return "'" + " ".join(w for w in (name, OPS[name].syntax) if w) + "'"


def _int_text(text: str) -> int | None:
    """Decimal or 0x-hex integer text (optionally negative) -> int; None if it is not one."""
    if not _INT_TEXT_RE.fullmatch(text):
        return None
    try:
        return int(text, 16 if "x" in text.lower() else 10)
    except ValueError:  # more decimal digits than sys.get_int_max_str_digits() allows
        return None


def _param(op: str, param: str) -> _Rule[Any]:
    """The rule an op's value word obeys."""
    if param == "ADDR" and op in _RANGE_OPS:
        return _PAGE_ADDR
    return _PARAMS[param]


_Bound = tuple[tuple[str, str], ...]    # (syntax word, op word) pairs, in order


def _match(seq: tuple[Node, ...], args: list[str], i: int,
           bound: _Bound) -> Iterator[tuple[int, _Bound]]:
    """Every way `args[i:]` starts with `seq`: (where it ends, the words bound),
    optional parts present before absent."""
    if not seq:
        yield i, bound
        return
    head, rest = seq[0], seq[1:]
    if isinstance(head, Choice):
        for alt in head.alternatives:
            yield from _match(alt + rest, args, i, bound)
        yield from _match(rest, args, i, bound)
    elif i < len(args) and (head.isupper() or args[i] == head):
        yield from _match(rest, args, i + 1, (*bound, (head, args[i])))


def parse_op(text: str, where_file: str, key: str) -> Op:
    """Parse one op string of the language in `scenario.spec` (e.g. `"write 0x1000 7"`).

    Raises ScenarioError(where_file, key, ...) naming the op's syntax when it is malformed.
    """
    loc = _Loc(where_file, key)
    words = text.split() if isinstance(text, str) else []
    if not words or words[0] not in OPS:
        loc.fail("an op, one of: " + ", ".join(OP_NAMES), text)
    name, args = words[0], words[1:]
    syntax = _syntax(name)
    bound = next((b for end, b in _match(op_grammar(name), args, 0, ()) if end == len(args)),
                 None)
    if bound is None:
        loc.fail(syntax, text)
    fields: dict[str, Any] = {}
    for word, arg in bound:
        if word.isupper():
            rule = _param(name, word)
            value = _int_text(arg) if word in _INT_PARAMS else arg
            if not rule.accepts(value):
                loc.fail(f"{syntax} with {word} {rule.expected}", text)
            fields[PARAM_FIELDS[word]] = value
        elif word in KEYWORD_FIELDS:
            field_name, value = KEYWORD_FIELDS[word]
            fields[field_name] = value
    if name in _RANGE_OPS and fields["addr"] + fields["pages"] * PAGE_SIZE > LIMITS.user_top:
        loc.fail(f"{syntax} with a range ending at or below {LIMITS.user_top:#x} ({_USER})",
                 text)
    return Op(name, **fields)


# ---------------------------------------------------------------------------------------
# TOML tables -> dataclasses (types and per-value rules; cross-references are validate()'s)


def _table(value: object, loc: _Loc, allowed: tuple[str, ...]) -> dict[str, object]:
    """Check that `value` is a table whose keys are all in `allowed`."""
    if not isinstance(value, dict):
        loc.fail("a table", value)
    for key in value:
        if key not in allowed:
            loc.at(key).fail("one of: " + ", ".join(allowed))
    return cast(dict[str, object], value)


def _get(tbl: dict[str, object], key: str, loc: _Loc, rule: _Rule[T]) -> T:
    """A required key's value, checked by `rule`."""
    if key not in tbl:
        loc.at(key).fail(f"{rule.expected} (required key is missing)")
    return rule.check(tbl[key], loc.at(key))


def _optional(tbl: dict[str, object], loc: _Loc, rules: dict[str, _Rule[Any]]) -> dict[str, Any]:
    """The checked values of the optional keys present (absent ones keep spec defaults)."""
    return {key: rule.check(tbl[key], loc.at(key)) for key, rule in rules.items() if key in tbl}


def _list(
    tbl: dict[str, object], key: str, loc: _Loc, rule: _Rule[T], noun: str,
    *, min_len: int = 0, max_len: int = LIMITS.pages, required: bool = False,
) -> tuple[T, ...]:
    """A list-valued key as a tuple (empty when absent and not required)."""
    if key not in tbl:
        if required:
            loc.at(key).fail(f"a list of {noun} (required key is missing)")
        return ()
    return _seq(tbl[key], loc.at(key), rule, noun, min_len, max_len)


def _ops(tbl: dict[str, object], key: str, loc: _Loc, *, required: bool = False) -> tuple[Op, ...]:
    """A list of op strings, parsed."""
    texts = _list(tbl, key, loc, _OP_STRING, "op strings", max_len=LIMITS.ops,
                  required=required)
    at = loc.at(key)
    return tuple(parse_op(text, loc.file, at.item(i).key) for i, text in enumerate(texts))


def _read_all(
    tbl: dict[str, object], key: str, loc: _Loc, label: str,
    reader: Callable[[object, _Loc], T], most: int,
) -> tuple[T, ...]:
    """An array of at most `most` tables (`[[label]]`), each read by `reader`."""
    at = loc.at(key)
    items = tbl.get(key, [])
    if not isinstance(items, list):
        at.fail(f"an array of [[{label}]] tables", items)
    _check_count(len(items), most, at, f"[[{label}]] tables")
    return tuple(reader(item, at.item(i)) for i, item in enumerate(items))


def _check_count(n: int, most: int, loc: _Loc, noun: str) -> None:
    if n > most:
        loc.fail(f"at most {most:,} {noun} (a scenario limit)", f"{n:,} of them")


def _read_file(item: object, loc: _Loc) -> FileSpec:
    tbl = _table(item, loc, _FILE_KEYS)
    return FileSpec(
        name=_get(tbl, "name", loc, _IDENT),
        pages=_list(tbl, "pages", loc, _INT, "integers", min_len=1, required=True),
    )


def _read_segment(item: object, loc: _Loc) -> SegmentSpec:
    tbl = _table(item, loc, _SEGMENT_KEYS)
    return SegmentSpec(
        file=_get(tbl, "file", loc, _IDENT),
        addr=_get(tbl, "addr", loc, _PAGE_ADDR),
        pages=_get(tbl, "pages", loc, _PAGES),
        **_optional(tbl, loc, {"offset": _OFFSET, "prot": _PROT}),
    )


def _read_image(item: object, loc: _Loc) -> ImageSpec:
    tbl = _table(item, loc, _IMAGE_KEYS)
    return ImageSpec(
        name=_get(tbl, "name", loc, _IDENT),
        segments=_read_all(tbl, "segment", loc, "image.segment", _read_segment,
                           LIMITS.segments),
    )


_NO_OFFSET = "no offset in a map without file"
_NO_INIT = "no init in a map with file (init is for anonymous maps)"


def _read_mapping(item: object, loc: _Loc) -> MappingSpec:
    tbl = _table(item, loc, _MAP_KEYS)
    if "file" not in tbl and "offset" in tbl:
        loc.at("offset").fail(_NO_OFFSET, tbl["offset"])
    if "file" in tbl and "init" in tbl:
        loc.at("init").fail(_NO_INIT, tbl["init"])
    rules: dict[str, _Rule[Any]] = {
        "prot": _PROT, "share": _SHARE, "file": _IDENT, "offset": _OFFSET, "inherit": _INHERIT,
    }
    return MappingSpec(
        addr=_get(tbl, "addr", loc, _PAGE_ADDR),
        pages=_get(tbl, "pages", loc, _PAGES),
        init=_list(tbl, "init", loc, _INT, "integers"),
        **_optional(tbl, loc, rules),
    )


def _read_process(item: object, loc: _Loc) -> ProcessSpec:
    tbl = _table(item, loc, _PROCESS_KEYS)
    return ProcessSpec(
        name=_get(tbl, "name", loc, _IDENT),
        **_optional(tbl, loc, {"parent": _IDENT, "image": _IDENT}),
        setup=_ops(tbl, "setup", loc),
        mappings=_read_all(tbl, "map", loc, "process.map", _read_mapping, LIMITS.mappings),
    )


def _read_thread(item: object, loc: _Loc) -> ThreadSpec:
    tbl = _table(item, loc, _THREAD_KEYS)
    return ThreadSpec(
        name=_get(tbl, "name", loc, _IDENT),
        process=_get(tbl, "process", loc, _IDENT),
        ops=_ops(tbl, "ops", loc, required=True),
    )


def _read_expect(doc: dict[str, object], root: _Loc) -> dict[str, str]:
    if "expect" not in doc:
        return {}
    loc = root.at("expect")
    tbl = _table(doc["expect"], loc, _POLICIES)
    return {policy: _VERDICT.check(verdict, loc.at(policy)) for policy, verdict in tbl.items()}


def _read_bound(doc: dict[str, object], root: _Loc) -> BoundSpec | None:
    if "bound" not in doc:
        return None
    loc = root.at("bound")
    tbl = _table(doc["bound"], loc, _BOUND_KEYS)
    pre = _get(tbl, "preemptions", loc, _PREEMPTION_BOUND)
    return BoundSpec(preemptions=None if pre == "none" else cast(int, pre),
                     reason=_get(tbl, "reason", loc, _TEXT))


_FREE_PAGES = _int_rule(0, LIMITS.total_pages, why="free pages after setup")
_BOOL = _Rule("true or false", lambda value: isinstance(value, bool))


def _read_vm(doc: dict[str, object], root: _Loc) -> VmSpec:
    if "vm" not in doc:
        return VmSpec()
    loc = root.at("vm")
    tbl = _table(doc["vm"], loc, _VM_KEYS)
    return VmSpec(**_optional(tbl, loc, {"free_pages": _FREE_PAGES, "prefault": _BOOL}))


def _read_check(doc: dict[str, object], root: _Loc) -> CheckSpec:
    if "check" not in doc:
        return CheckSpec()
    loc = root.at("check")
    tbl = _table(doc["check"], loc, _CHECK_KEYS)
    return CheckSpec(**_optional(tbl, loc, {"end_invariants": _BOOL}))


def _read_scenario(doc: dict[str, object], root: _Loc) -> Scenario:
    tbl = _table(doc, root, _TOP_KEYS)
    return Scenario(
        name=_get(tbl, "name", root, _SCENARIO_NAME),
        description=_get(tbl, "description", root, _TEXT),
        **_optional(tbl, root, {"step_bound": _STEP_BOUND}),
        probes=_list(tbl, "probes", root, _STRING, "strings", max_len=LIMITS.probes),
        expect=_read_expect(tbl, root),
        bound=_read_bound(tbl, root),
        vm=_read_vm(tbl, root),
        check=_read_check(tbl, root),
        files=_read_all(tbl, "file", root, "file", _read_file, LIMITS.files),
        images=_read_all(tbl, "image", root, "image", _read_image, LIMITS.images),
        processes=_read_all(tbl, "process", root, "process", _read_process, LIMITS.processes),
        threads=_read_all(tbl, "thread", root, "thread", _read_thread, LIMITS.threads),
        source=root.file,
    )


def _parse_toml(text: str, source: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError, or an int too long to convert
        raise ScenarioError(source, "<toml>", f"valid TOML ({exc})") from None
    except RecursionError:
        raise ScenarioError(source, "<toml>", "valid TOML (nesting too deep)") from None


def load_text(text: str, source: str) -> Scenario:
    """Parse and validate a scenario from TOML `text`; `source` names it in errors.
    A file's accesses also pass `check_addresses`.

    Raises ScenarioError (key `<toml>` for TOML syntax errors) on any problem.
    """
    scenario = _read_scenario(_parse_toml(text, source), _Loc(source))
    validate(scenario)
    check_addresses(scenario)
    return scenario


def load_path(path: str | os.PathLike[str]) -> Scenario:
    """Read, parse and validate the TOML scenario file at `path` (its `source`).

    An unreadable or non-UTF-8 file is a ScenarioError with key `<toml>`, like bad TOML.
    """
    source = os.fsdecode(path)
    try:
        with open(path, "rb") as f:
            data = f.read(LIMITS.file_bytes + 1)
        if len(data) > LIMITS.file_bytes:
            raise ScenarioError(source, "<toml>", f"a scenario file of at most "
                                f"{LIMITS.file_bytes:,} bytes (a scenario limit)")
        text = data.decode("utf-8-sig")
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL; UnicodeDecodeError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ScenarioError(source, "<toml>", f"a readable UTF-8 TOML file ({reason})") from None
    return load_text(text, source)


# ---------------------------------------------------------------------------------------
# The built-in catalog


def catalog_dir() -> Path:
    """The directory holding the built-in scenarios (`catalog/*.toml` next to this module)."""
    return Path(__file__).resolve().parent / "catalog"


def catalog_names() -> list[str]:
    """Sorted names (file stems) of the built-in scenarios."""
    directory = catalog_dir()
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.toml") if path.is_file())


def load_scenario(name_or_path: str) -> Scenario:
    """Load a catalog scenario by name, else the scenario file at that path."""
    if name_or_path in catalog_names():
        return load_path(catalog_dir() / f"{name_or_path}.toml")
    if os.path.exists(name_or_path):
        return load_path(name_or_path)
    raise ScenarioError(
        name_or_path, "<scenario>", "a catalog scenario name or a path to a .toml file"
    )


def load_catalog() -> list[Scenario]:
    """Every built-in scenario, in name order."""
    return [load_path(catalog_dir() / f"{name}.toml") for name in catalog_names()]


# ---------------------------------------------------------------------------------------
# validate(): values and cross-references, on dataclasses (keys use the TOML spelling)


def validate(s: Scenario) -> None:
    """Check a scenario's values and cross-references; raise ScenarioError on the first problem.

    Checks unique names, file/image/process references, file ranges, non-overlapping maps,
    parent chains, that each child is forked exactly once by its parent, exec targets,
    that every waited event is posted, that every waited child is ours and exits, that
    a run-time mmap maps a file range that exists and nothing its process may already
    hold, and the limits of `spec.LIMITS`.  Errors name `s.source` and TOML-style keys
    (`process[1].map[0].addr`), so Python-built scenarios get the same messages.
    (`check_addresses`, which files also pass, is separate: generated scenarios touch
    unmapped addresses on purpose without saying so.)
    """
    root = _Loc(s.source)
    _check_header(s, root)
    pages_of = _check_files(s.files, root.at("file"))
    images = _check_images(s.images, root.at("image"), pages_of)
    procs = _check_processes(s.processes, root.at("process"), pages_of, images)
    _check_threads(s.threads, root.at("thread"), procs)
    _check_ops(s, root, procs, images, pages_of)
    _check_total_pages(s, root)
    _check_mmaps(s, root)


def _check_total_pages(s: Scenario, root: _Loc) -> None:
    """Files, maps and image segments together stay within LIMITS.total_pages."""
    total = sum(len(f.pages) for f in s.files)
    total += sum(m.pages for p in s.processes for m in p.mappings)
    total += sum(seg.pages for image in s.images for seg in image.segments)
    total += sum(site.op.pages or 0 for site in _op_sites(s, root) if site.op.name == "mmap")
    if total > LIMITS.total_pages:
        _Loc(root.file, "<all pages>").fail(f"at most {LIMITS.total_pages:,} pages in all "
                                            "files, maps, mmaps and segments (a scenario "
                                            "limit)", f"{total:,} pages")


def _check_header(s: Scenario, root: _Loc) -> None:
    _SCENARIO_NAME.check(s.name, root.at("name"))
    _TEXT.check(s.description, root.at("description"))
    if not isinstance(s.vm, VmSpec):
        root.at("vm").fail("a VmSpec (a [vm] table)", s.vm)
    if s.vm.free_pages is not None:
        _FREE_PAGES.check(s.vm.free_pages, root.at("vm").at("free_pages"))
    _BOOL.check(s.vm.prefault, root.at("vm").at("prefault"))
    if not isinstance(s.check, CheckSpec):
        root.at("check").fail("a CheckSpec (a [check] table)", s.check)
    _BOOL.check(s.check.end_invariants, root.at("check").at("end_invariants"))
    _STEP_BOUND.check(s.step_bound, root.at("step_bound"))
    _seq(s.probes, root.at("probes"), _STRING, "strings", max_len=LIMITS.probes)
    if s.bound is not None:
        if not isinstance(s.bound, BoundSpec):
            root.at("bound").fail("a BoundSpec (a [bound] table)", s.bound)
        if s.bound.preemptions is not None:
            _PREEMPTION_INT.check(s.bound.preemptions, root.at("bound").at("preemptions"))
        _TEXT.check(s.bound.reason, root.at("bound").at("reason"))
    loc = root.at("expect")
    for policy, verdict in _table(s.expect, loc, _POLICIES).items():
        _VERDICT.check(verdict, loc.at(policy))


def _check_names(names: Sequence[object], loc: _Loc, label: str) -> None:
    """Names of the `[[label]]` tables at `loc` are identifiers, each used once."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        at = loc.item(i).at("name")
        ident = _IDENT.check(name, at)
        if ident in seen:
            at.fail(f"a unique [[{label}]] name ({loc.item(seen[ident]).key} has it)", name)
        seen[ident] = i


def _check_files(files: Sequence[FileSpec], loc: _Loc) -> dict[str, int]:
    _check_count(len(files), LIMITS.files, loc, "[[file]] tables")
    _check_names([f.name for f in files], loc, "file")
    for i, f in enumerate(files):
        _seq(f.pages, loc.item(i).at("pages"), _INT, "integers", min_len=1)
    return {f.name: len(f.pages) for f in files}


def _check_file_range(file: object, offset: int, pages: int, loc: _Loc,
                      pages_of: dict[str, int]) -> None:
    """`file` names a [[file]] holding pages [offset, offset + pages)."""
    name = _IDENT.check(file, loc.at("file"))
    if name not in pages_of:
        loc.at("file").fail("the name of a [[file]]", name)
    size = pages_of[name]
    if offset >= size:
        loc.at("offset").fail(f"an offset < {size} (file {name!r} has {size} pages)", offset)
    if offset + pages > size:
        room = f"file {name!r} has {size} pages, offset is {offset}"
        loc.at("pages").fail(f"at most {size - offset} pages ({room})", pages)


def _span(addr: int, pages: int) -> str:
    return f"[{addr:#x}, {addr + pages * PAGE_SIZE:#x})"


def _check_disjoint(ranges: Sequence[tuple[int, int]], loc: _Loc) -> None:
    """The (addr, pages) ranges listed at `loc` do not overlap."""
    for j, (addr, pages) in enumerate(ranges):
        for i in range(j):
            other, other_pages = ranges[i]
            if addr < other + other_pages * PAGE_SIZE and other < addr + pages * PAGE_SIZE:
                where = f"{loc.item(i).key} {_span(other, other_pages)}"
                loc.item(j).fail(f"a range disjoint from {where}", _span(addr, pages))


def _check_user_range(addr: int, pages: int, loc: _Loc) -> None:
    """[addr, addr + pages) lies in the user address space."""
    if addr + pages * PAGE_SIZE > LIMITS.user_top:
        loc.at("pages").fail(f"a range ending at or below {LIMITS.user_top:#x} ({_USER})",
                             _span(addr, pages))


def _check_segment(seg: SegmentSpec, loc: _Loc, pages_of: dict[str, int]) -> None:
    addr = _PAGE_ADDR.check(seg.addr, loc.at("addr"))
    pages = _PAGES.check(seg.pages, loc.at("pages"))
    _check_user_range(addr, pages, loc)
    offset = _OFFSET.check(seg.offset, loc.at("offset"))
    _PROT.check(seg.prot, loc.at("prot"))
    _check_file_range(seg.file, offset, pages, loc, pages_of)


def _check_images(images: Sequence[ImageSpec], loc: _Loc,
                  pages_of: dict[str, int]) -> set[str]:
    _check_count(len(images), LIMITS.images, loc, "[[image]] tables")
    _check_names([image.name for image in images], loc, "image")
    for i, image in enumerate(images):
        at = loc.item(i).at("segment")
        if not image.segments:
            at.fail("one or more [[image.segment]] tables")
        _check_count(len(image.segments), LIMITS.segments, at, "[[image.segment]] tables")
        for j, seg in enumerate(image.segments):
            _check_segment(seg, at.item(j), pages_of)
        _check_disjoint([(seg.addr, seg.pages) for seg in image.segments], at)
    return {image.name for image in images}


def _check_mapping(m: MappingSpec, loc: _Loc, pages_of: dict[str, int]) -> None:
    addr = _PAGE_ADDR.check(m.addr, loc.at("addr"))
    pages = _PAGES.check(m.pages, loc.at("pages"))
    _check_user_range(addr, pages, loc)
    _PROT.check(m.prot, loc.at("prot"))
    _SHARE.check(m.share, loc.at("share"))
    offset = _OFFSET.check(m.offset, loc.at("offset"))
    if m.inherit is not None:
        _INHERIT.check(m.inherit, loc.at("inherit"))
    init = _seq(m.init, loc.at("init"), _INT, "integers")
    if m.file is not None:
        if init:
            loc.at("init").fail(_NO_INIT, init)
        _check_file_range(m.file, offset, pages, loc, pages_of)
        return
    if offset:
        loc.at("offset").fail(_NO_OFFSET, offset)
    if len(init) > pages:
        loc.at("init").fail(f"at most {pages} values (one per page)", init)


def _check_root_process(p: ProcessSpec, loc: _Loc, pages_of: dict[str, int],
                        images: set[str]) -> None:
    if p.image is not None and _IDENT.check(p.image, loc.at("image")) not in images:
        loc.at("image").fail("the name of an [[image]]", p.image)
    maps = loc.at("map")
    _check_count(len(p.mappings), LIMITS.mappings, maps, "[[process.map]] tables")
    for j, m in enumerate(p.mappings):
        _check_mapping(m, maps.item(j), pages_of)
    _check_disjoint([(m.addr, m.pages) for m in p.mappings], maps)


def _check_child_process(p: ProcessSpec, loc: _Loc, procs: dict[str, ProcessSpec]) -> None:
    parent = _IDENT.check(p.parent, loc.at("parent"))
    if parent == p.name or parent not in procs:
        loc.at("parent").fail("the name of another [[process]]", parent)
    forked = f"in a process with a parent (it starts as a fork of {parent!r})"
    if p.mappings:
        loc.at("map").fail(f"no map {forked}")
    if p.image is not None:
        loc.at("image").fail(f"no image {forked}", p.image)


def _check_no_cycles(processes: Sequence[ProcessSpec], loc: _Loc,
                     procs: dict[str, ProcessSpec]) -> None:
    for i, p in enumerate(processes):
        seen = {p.name}
        parent = p.parent
        while parent is not None:
            if parent in seen:
                at = loc.item(i).at("parent")
                at.fail("a parent chain ending at a process without parent", p.parent)
            seen.add(parent)
            parent = procs[parent].parent


def _check_processes(processes: Sequence[ProcessSpec], loc: _Loc, pages_of: dict[str, int],
                     images: set[str]) -> dict[str, ProcessSpec]:
    if not processes:
        loc.fail("one or more [[process]] tables")
    _check_count(len(processes), LIMITS.processes, loc, "[[process]] tables")
    _check_names([p.name for p in processes], loc, "process")
    procs = {p.name: p for p in processes}
    for i, p in enumerate(processes):
        if p.parent is None:
            _check_root_process(p, loc.item(i), pages_of, images)
        else:
            _check_child_process(p, loc.item(i), procs)
    _check_no_cycles(processes, loc, procs)
    return procs


def _check_threads(threads: Sequence[ThreadSpec], loc: _Loc,
                   procs: dict[str, ProcessSpec]) -> None:
    if not threads:
        loc.fail("one or more [[thread]] tables")
    _check_count(len(threads), LIMITS.threads, loc, "[[thread]] tables")
    _check_names([t.name for t in threads], loc, "thread")
    for i, t in enumerate(threads):
        at = loc.item(i).at("process")
        if _IDENT.check(t.process, at) not in procs:
            at.fail("the name of a [[process]]", t.process)


class _Site(NamedTuple):
    """Where an op is, the process running it, the op, and whether it is in a setup."""

    loc: _Loc
    owner: str
    op: Op
    setup: bool


def _op_sites(s: Scenario, root: _Loc) -> list[_Site]:
    """Every op of the scenario: setups first, then threads."""
    sites: list[_Site] = []
    for i, p in enumerate(s.processes):
        at = root.at("process").item(i).at("setup")
        _check_count(len(p.setup), LIMITS.ops, at, "ops")
        sites += [_Site(at.item(j), p.name, op, True) for j, op in enumerate(p.setup)]
    for i, t in enumerate(s.threads):
        at = root.at("thread").item(i).at("ops")
        _check_count(len(t.ops), LIMITS.ops, at, "ops")
        sites += [_Site(at.item(j), t.process, op, False) for j, op in enumerate(t.ops)]
    return sites


def _check_op_form(op: object, loc: _Loc) -> None:
    """A (possibly Python-built) op is one `parse_op` could have produced."""
    if not isinstance(op, Op):
        loc.fail("an Op", op)
    try:
        text = str(op)
    except (TypeError, ValueError):  # e.g. hex() of a non-int addr
        loc.fail("an Op whose addr is an integer", op)
    if parse_op(text, loc.file, loc.key) != op:
        loc.fail("an Op with only the fields its name takes", op)
    # The mark is not part of the Op's identity, so the test above cannot see it.
    if op.fault is not False and (op.fault is not True or "fault" not in text.split()):
        accesses = ", ".join(sorted(_ACCESS_OPS))
        loc.fail(f"an Op whose fault is False, or True on an access ({accesses}) "
                 "whose syntax can say it", op)


@dataclass(slots=True)
class _Refs:
    """What ops refer to: processes, images, file sizes, posted events, the processes
    with an `exit` op, and where each child is forked (filled in as forks are checked)."""

    procs: dict[str, ProcessSpec]
    images: set[str]
    pages_of: dict[str, int]
    posted: set[str | None]
    exiting: set[str]
    forks: dict[str, _Loc]


def _check_fork(site: _Site, refs: _Refs) -> None:
    loc, owner, op = site.loc, site.owner, site.op
    child = refs.procs.get(str(op.target))
    if child is None or child.parent != owner:
        loc.fail(f"'fork CHILD' with CHILD a [[process]] whose parent is {owner!r}", str(op))
    if child.name in refs.forks:
        loc.fail(f"one fork of {child.name!r} ({refs.forks[child.name].key} forks it)",
                 str(op))
    refs.forks[child.name] = loc


def _check_exec(site: _Site, refs: _Refs) -> None:
    if site.op.target not in refs.images:
        site.loc.fail("'exec IMAGE' with IMAGE the name of an [[image]]", str(site.op))


def _check_wait(site: _Site, refs: _Refs) -> None:
    if site.op.target not in refs.posted:
        site.loc.fail(f"'wait EVENT' with a 'post {site.op.target}' somewhere", str(site.op))


def _check_waitpid(site: _Site, refs: _Refs) -> None:
    loc, owner, op = site.loc, site.owner, site.op
    child = refs.procs.get(str(op.target))
    if child is None or child.parent != owner:
        loc.fail(f"'waitpid CHILD' with CHILD a [[process]] whose parent is {owner!r}",
                 str(op))
    if site.setup:
        loc.fail("'waitpid CHILD' in a thread's ops, not in a setup (a setup runs before "
                 "the child's threads start)", str(op))
    if child.name not in refs.exiting:
        loc.fail(f"'waitpid CHILD' with an 'exit' op in a thread or the setup of "
                 f"{child.name!r} (a process exits only by exit)", str(op))


def _check_mmap(site: _Site, refs: _Refs) -> None:
    # What [[process.map]] checks of a file range (the syntax has checked the rest).
    op = site.op
    if op.file is None:
        return
    size = refs.pages_of.get(op.file)
    if size is None:
        site.loc.fail(f"{_syntax('mmap')} with FILE the name of a [[file]]", str(op))
    if _int_or(op.offset) + _int_or(op.pages) > size:
        site.loc.fail(f"{_syntax('mmap')} with OFFSET + PAGES at most {size} (file "
                      f"{op.file!r} has {size} pages)", str(op))


def _check_file_op(site: _Site, refs: _Refs) -> None:
    # truncate and pwrite: FILE names a [[file]], SIZE or OFFSET lies within it.
    op = site.op
    size = refs.pages_of.get(str(op.file))
    if size is None:
        site.loc.fail(f"{_syntax(op.name)} with FILE the name of a [[file]]", str(op))
    if op.name == "truncate" and _int_or(op.pages) > size:
        site.loc.fail(f"{_syntax(op.name)} with SIZE at most {size} (file {op.file!r} "
                      f"has {size} pages; files only shrink)", str(op))
    if op.name == "pwrite" and _int_or(op.offset) >= size:
        site.loc.fail(f"{_syntax(op.name)} with OFFSET below {size} (file {op.file!r} "
                      f"has {size} pages)", str(op))


def _int_or(value: int | None, default: int = 0) -> int:
    return default if value is None else value


# Cross-reference checks by op name (the syntax has checked each op's own values).
_OP_CHECKS: dict[str, Callable[[_Site, _Refs], None]] = {
    "fork": _check_fork, "exec": _check_exec, "wait": _check_wait,
    "waitpid": _check_waitpid, "mmap": _check_mmap, "truncate": _check_file_op,
    "pwrite": _check_file_op,
}


def _check_ops(s: Scenario, root: _Loc, procs: dict[str, ProcessSpec], images: set[str],
               pages_of: dict[str, int]) -> None:
    sites = _op_sites(s, root)
    for site in sites:
        _check_op_form(site.op, site.loc)
    refs = _Refs(procs, images, pages_of,
                 posted={site.op.target for site in sites if site.op.name == "post"},
                 exiting={site.owner for site in sites if site.op.name == "exit"}, forks={})
    for site in sites:
        check = _OP_CHECKS.get(site.op.name)
        if check is not None:
            check(site, refs)
    for i, p in enumerate(s.processes):
        if p.parent is not None and p.name not in refs.forks:
            at = root.at("process").item(i).at("parent")
            at.fail(f"a 'fork {p.name}' op in a thread or the setup of {p.parent!r}")


# ---------------------------------------------------------------------------------------
# What a process may map: run-time mmaps, and the addresses accesses name


@dataclass(frozen=True, slots=True)
class _Range:
    """Addresses [start, end) a mapping may cover, and where it comes from (a key)."""

    start: int
    end: int
    what: str

    def meets(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end


def _own_ranges(s: Scenario, root: _Loc) -> dict[str, list[_Range]]:
    """Per process, the ranges it maps itself: its maps, its image and the images it
    execs, and its run-time mmaps."""
    own: dict[str, list[_Range]] = {p.name: [] for p in s.processes}
    index = {image.name: k for k, image in enumerate(s.images)}

    def image(proc: str, name: str | None) -> None:
        k = index[str(name)]
        own[proc] += [_Range(g.addr, g.addr + g.pages * PAGE_SIZE, f"image[{k}].segment[{j}]")
                      for j, g in enumerate(s.images[k].segments)]

    for i, p in enumerate(s.processes):
        own[p.name] += [_Range(m.addr, m.addr + m.pages * PAGE_SIZE, f"process[{i}].map[{j}]")
                        for j, m in enumerate(p.mappings)]
        if p.image is not None:
            image(p.name, p.image)
    for site in _op_sites(s, root):
        op = site.op
        if op.name == "exec":
            image(site.owner, op.target)
        elif op.name == "mmap":
            addr = _int_or(op.addr)
            own[site.owner].append(_Range(addr, addr + _int_or(op.pages) * PAGE_SIZE,
                                          site.loc.key))
    return own


def _ranges_ever(s: Scenario, root: _Loc) -> dict[str, list[_Range]]:
    """Per process, every range a mapping of it may cover at some time: its own, and
    whatever its ancestors may hold, which it may inherit at fork (over-approximated:
    the loader cannot tell what is mapped when)."""
    own = _own_ranges(s, root)
    parent = {p.name: p.parent for p in s.processes}
    out: dict[str, list[_Range]] = {}
    for name in own:
        chain: list[_Range] = []
        proc: str | None = name
        while proc is not None:
            chain += own[proc]
            proc = parent[proc]
        out[name] = chain
    return out


def _check_mmaps(s: Scenario, root: _Loc) -> None:
    """A run-time mmap maps nothing its process may already hold: the model's mmap is
    neither MAP_FIXED's replacement nor a search for free space."""
    ranges = _ranges_ever(s, root)
    for site in _op_sites(s, root):
        op = site.op
        if op.name != "mmap":
            continue
        start = _int_or(op.addr)
        end = start + _int_or(op.pages) * PAGE_SIZE
        for r in ranges[site.owner]:
            if r.what != site.loc.key and r.meets(start, end):
                site.loc.fail(f"{_syntax('mmap')} with a range disjoint from every range "
                              f"process {site.owner!r} may hold ({r.what} maps "
                              f"{_span_of(r)})", str(op))


def _span_of(r: _Range) -> str:
    return f"[{r.start:#x}, {r.end:#x})"


def _accesses(s: Scenario, root: _Loc) -> Iterator[tuple[_Site, _Range | None]]:
    """Every access (an op offering the `fault` mark) and a range of its process that
    its pages meet at some time (None: none ever does)."""
    ranges = _ranges_ever(s, root)
    for site in _op_sites(s, root):
        op = site.op
        if op.name in _ACCESS_OPS:
            start = _int_or(op.addr) - _int_or(op.addr) % PAGE_SIZE
            end = start + _int_or(op.pages, 1) * PAGE_SIZE
            yield site, next((r for r in ranges.get(site.owner, []) if r.meets(start, end)),
                             None)


def check_addresses(s: Scenario) -> None:
    """Raise ScenarioError naming the first access of valid scenario `s` whose address
    no mapping of its process ever covers and that is not marked `fault` (a typo'd
    address would be a silent "must fault" check), or that is marked although a
    mapping covers it.

    A range op (mlock, munlock) needs one of its pages covered.  Files are checked
    (load_text); validate() does not check it, since generated scenarios touch
    unmapped addresses on purpose without marking them (to_toml marks them)."""
    for site, hit in _accesses(s, _Loc(s.source)):
        op = site.op
        if hit is None and not op.fault:
            site.loc.fail(f"an address that a mapping of process {site.owner!r} covers at "
                          "some time (its maps, images and mmaps, or what it inherits), or "
                          f"the mark `fault` ({_syntax(op.name)}) if the access must fault "
                          "there", str(op))
        if hit is not None and op.fault:
            site.loc.fail(f"`fault` only where no mapping of process {site.owner!r} ever "
                          f"covers the address ({hit.what} maps {_span_of(hit)}; the memory "
                          "oracle decides whether an access there must fault)", str(op))


def with_fault_marks(s: Scenario) -> Scenario:
    """`s` with exactly the accesses `check_addresses` wants marked marked `fault`:
    equal to `s` (the mark is not part of an op's identity), and what `to_toml` writes
    so that a Python-built scenario touching unmapped addresses loads from its file."""
    marks = {site.loc.key: hit is None for site, hit in _accesses(s, _Loc(s.source))}

    def marked(at: str, ops: tuple[Op, ...]) -> tuple[Op, ...]:
        return tuple(dataclasses.replace(op, fault=marks.get(f"{at}[{j}]", False))
                     for j, op in enumerate(ops))

    processes = tuple(dataclasses.replace(p, setup=marked(f"process[{i}].setup", p.setup))
                      for i, p in enumerate(s.processes))
    threads = tuple(dataclasses.replace(t, ops=marked(f"thread[{i}].ops", t.ops))
                    for i, t in enumerate(s.threads))
    return dataclasses.replace(s, processes=processes, threads=threads)
