"""Tests for faultline.scenario.loader: TOML schema, op language, validate() and errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultline.check.explore import CheckConfig, check_scenario
from faultline.scenario import loader
from faultline.scenario.loader import (
    ScenarioError,
    catalog_dir,
    catalog_names,
    load_catalog,
    load_path,
    load_scenario,
    load_text,
    parse_op,
    validate,
)
from faultline.scenario.spec import (
    OP_NAMES,
    FileSpec,
    ImageSpec,
    MappingSpec,
    Op,
    ProcessSpec,
    Scenario,
    SegmentSpec,
    ThreadSpec,
)

SRC = "scen.toml"

VALID = """\
name = "rw-race-shadow"
description = "a reader races a writer on a shadowed page"
step_bound = 5000
probes = ["vmpfw-restart", "cow-copy"]

[expect]
sbusy = "pass"
xbusy = "violation"

[[file]]
name = "libc"
pages = [11, 12, 13]

[[image]]
name = "ls"
[[image.segment]]
file = "libc"
addr = 0x10000
pages = 2
[[image.segment]]
file = "libc"
addr = 0x20000
pages = 1
offset = 2
prot = "rw"

[[process]]
name = "p0"
image = "ls"
setup = ["write 0x1000 5"]
[[process.map]]
addr = 0x1000
pages = 2
init = [5]
[[process.map]]
addr = 0x4000
pages = 2
prot = "r"
share = "shared"
file = "libc"
offset = 1
inherit = "copy"

[[process]]
name = "p1"
parent = "p0"

[[thread]]
name = "T1"
process = "p0"
ops = ["read 0x1000", "write 0x1000 7", "fork p1", "post go"]

[[thread]]
name = "T2"
process = "p1"
ops = [
  "wait go", "munmap 0x1000 1", "mprotect 0x4000 2 rw", "minherit 0x4000 1 none",
  "mlock 4096 1", "munlock 0x1000 1", "exec ls", "exit",
]

[[thread]]
name = "T3"
process = "p0"
ops = []
"""

VALID_DOC: dict[str, Any] = tomllib.loads(VALID)


def _op(name: str, **fields: Any) -> Op:
    return Op(name, **fields)


EXPECTED = Scenario(
    name="rw-race-shadow",
    description="a reader races a writer on a shadowed page",
    files=(FileSpec("libc", (11, 12, 13)),),
    images=(
        ImageSpec("ls", (
            SegmentSpec(file="libc", addr=0x10000, pages=2),
            SegmentSpec(file="libc", addr=0x20000, pages=1, offset=2, prot="rw"),
        )),
    ),
    processes=(
        ProcessSpec(
            name="p0",
            image="ls",
            setup=(_op("write", addr=0x1000, value=5),),
            mappings=(
                MappingSpec(addr=0x1000, pages=2, init=(5,)),
                MappingSpec(addr=0x4000, pages=2, prot="r", share="shared", file="libc",
                            offset=1, inherit="copy"),
            ),
        ),
        ProcessSpec(name="p1", parent="p0"),
    ),
    threads=(
        ThreadSpec("T1", "p0", (
            _op("read", addr=0x1000),
            _op("write", addr=0x1000, value=7),
            _op("fork", target="p1"),
            _op("post", target="go"),
        )),
        ThreadSpec("T2", "p1", (
            _op("wait", target="go"),
            _op("munmap", addr=0x1000, pages=1),
            _op("mprotect", addr=0x4000, pages=2, prot="rw"),
            _op("minherit", addr=0x4000, pages=1, inherit="none"),
            _op("mlock", addr=0x1000, pages=1),
            _op("munlock", addr=0x1000, pages=1),
            _op("exec", target="ls"),
            _op("exit"),
        )),
        ThreadSpec("T3", "p0", ()),
    ),
    step_bound=5000,
    expect={"sbusy": "pass", "xbusy": "violation"},
    probes=("vmpfw-restart", "cow-copy"),
    source=SRC,
)


# ---------------------------------------------------------------------------------------
# A tiny TOML serializer (inline tables, so any nested dict/list document can be written)


def toml_str(text: str) -> str:
    """A TOML basic string (JSON's escapes, minus \\uXXXX surrogate pairs, plus DEL)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_str(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def dumps(doc: dict[str, Any]) -> str:
    return "".join(f"{toml_str(key)} = {toml_value(value)}\n" for key, value in doc.items())


def load_doc(doc: dict[str, Any]) -> Scenario:
    return load_text(dumps(doc), SRC)


def doc_error(edit: Callable[[dict[str, Any]], object]) -> ScenarioError:
    """Apply `edit` to a copy of VALID_DOC and return the ScenarioError loading it raises."""
    doc = copy.deepcopy(VALID_DOC)
    edit(doc)
    return load_error(dumps(doc))


def load_error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_text(text, SRC)
    return check_message(info.value, SRC)


def check_message(err: ScenarioError, file: str) -> ScenarioError:
    message = str(err)
    assert len(message.splitlines()) == 1
    assert "\n" not in message
    assert message.startswith(f"{file}: {err.key}: expected {err.expected}")
    assert "Traceback" not in message
    return err


# ---------------------------------------------------------------------------------------
# Valid documents


def test_valid_example_round_trips() -> None:
    assert load_text(VALID, SRC) == EXPECTED


def test_serializer_agrees_with_tomllib() -> None:
    assert load_doc(VALID_DOC) == EXPECTED


def test_defaults_come_from_spec() -> None:
    s = load_text(
        'name = "m"\ndescription = "d"\n[[process]]\nname = "p"\n[[process.map]]\n'
        'addr = 0\npages = 1\n[[thread]]\nname = "t"\nprocess = "p"\nops = []\n',
        SRC,
    )
    assert s.step_bound == Scenario("x", "y").step_bound
    assert s.expect == {} and s.probes == () and s.files == () and s.images == ()
    assert s.processes[0].mappings == (MappingSpec(addr=0, pages=1),)
    assert s.source == SRC


def test_load_path_sets_source(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(VALID, encoding="utf-8")
    assert load_path(path) == dataclasses.replace(EXPECTED, source=str(path))
    assert load_scenario(str(path)).source == str(path)


def test_validate_accepts_python_built() -> None:
    validate(EXPECTED)


# ---------------------------------------------------------------------------------------
# One test per kind of error


def test_unknown_key() -> None:
    err = doc_error(lambda d: d["process"][0]["map"][1].update(colour="red"))
    assert err.key == "process[0].map[1].colour"
    assert err.expected == "one of: addr, pages, prot, share, file, offset, inherit, init"


def test_unknown_top_level_key() -> None:
    err = doc_error(lambda d: d.update(threads=[]))
    assert err.key == "threads"
    assert err.expected.startswith("one of: name, description,")


def test_unknown_expect_policy() -> None:
    err = doc_error(lambda d: d["expect"].update(nobusy="pass"))
    assert err.key == "expect.nobusy"
    assert err.expected == "one of: sbusy, xbusy"


def test_wrong_type() -> None:
    err = doc_error(lambda d: d["process"][0]["map"][1].update(pages="2"))
    assert err.key == "process[0].map[1].pages"
    assert str(err) == (f"{SRC}: process[0].map[1].pages: expected an integer from 1 to 1024 "
                        "(the scenario limit on pages per file, map, segment or range op), "
                        "got '2'")


def test_bool_is_not_an_integer() -> None:
    err = doc_error(lambda d: d.update(step_bound=True))
    assert err.key == "step_bound"
    assert err.got is True


def test_wrong_type_in_list_names_the_element() -> None:
    err = doc_error(lambda d: d["file"][0]["pages"].append("x"))
    assert err.key == "file[0].pages[3]"


def test_missing_required_key() -> None:
    err = doc_error(lambda d: d["thread"][2].pop("ops"))
    assert err.key == "thread[2].ops"
    assert "missing" in err.expected


def test_table_expected() -> None:
    err = doc_error(lambda d: d.update(process={"name": "p0"}))
    assert err.key == "process"
    assert err.expected == "an array of [[process]] tables"


def test_bad_op_string() -> None:
    err = doc_error(lambda d: d["thread"][0]["ops"].__setitem__(1, "write 0x1000"))
    assert err.key == "thread[0].ops[1]"
    assert err.expected == "'write ADDR VALUE [fault]'"
    assert err.got == "write 0x1000"


def test_unknown_op_name() -> None:
    err = doc_error(lambda d: d["process"][0]["setup"].append("jump 0x1000"))
    assert err.key == "process[0].setup[1]"
    assert err.expected.startswith("an op, one of: read, write, fork")


def test_unaligned_munmap() -> None:
    err = doc_error(lambda d: d["thread"][1]["ops"].__setitem__(1, "munmap 0x1001 1"))
    assert err.key == "thread[1].ops[1]"
    assert err.expected.startswith("'munmap ADDR PAGES' with ADDR a page-aligned")


def test_unknown_file_reference() -> None:
    err = doc_error(lambda d: d["process"][0]["map"][1].update(file="libm"))
    assert err.key == "process[0].map[1].file"
    assert err.expected == "the name of a [[file]]"
    assert err.got == "libm"


def test_unknown_segment_file_reference() -> None:
    err = doc_error(lambda d: d["image"][0]["segment"][1].update(file="nope"))
    assert err.key == "image[0].segment[1].file"


def test_file_range_exceeded() -> None:
    err = doc_error(lambda d: d["process"][0]["map"][1].update(pages=3))
    assert err.key == "process[0].map[1].pages"
    assert err.expected.startswith("at most 2 pages")


def test_duplicate_name() -> None:
    err = doc_error(lambda d: d["thread"][2].update(name="T1"))
    assert err.key == "thread[2].name"
    assert "thread[0]" in err.expected


def test_fork_of_a_non_child() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["process"].append({"name": "p2"})
        d["thread"][0]["ops"].append("fork p2")

    err = doc_error(edit)
    assert err.key == "thread[0].ops[4]"
    assert err.got == "fork p2"


def test_fork_twice() -> None:
    err = doc_error(lambda d: d["process"][0]["setup"].append("fork p1"))
    assert err.key == "thread[0].ops[2]"


def test_child_never_forked() -> None:
    err = doc_error(lambda d: d["thread"][0]["ops"].remove("fork p1"))
    assert err.key == "process[1].parent"


def test_child_with_map() -> None:
    err = doc_error(lambda d: d["process"][1].update(map=[{"addr": 0, "pages": 1}]))
    assert err.key == "process[1].map"


def test_parent_cycle() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["process"] += [{"name": "a", "parent": "b"}, {"name": "b", "parent": "a"}]

    err = doc_error(edit)
    assert err.key == "process[2].parent"
    assert "chain" in err.expected


def test_exec_of_unknown_image() -> None:
    err = doc_error(lambda d: d["thread"][1]["ops"].__setitem__(6, "exec cat"))
    assert err.key == "thread[1].ops[6]"


def test_wait_without_post() -> None:
    err = doc_error(lambda d: d["thread"][0]["ops"].remove("post go"))
    assert err.key == "thread[1].ops[0]"
    assert err.got == "wait go"


def test_overlapping_maps() -> None:
    err = doc_error(lambda d: d["process"][0]["map"][1].update(addr=0x2000))
    assert err.key == "process[0].map[1]"
    assert "process[0].map[0] [0x1000, 0x3000)" in err.expected


def test_overlapping_segments() -> None:
    err = doc_error(lambda d: d["image"][0]["segment"][1].update(addr=0x11000))
    assert err.key == "image[0].segment[1]"


def test_offset_without_file() -> None:
    err = doc_error(lambda d: d["process"][0]["map"][0].update(offset=0))
    assert err.key == "process[0].map[0].offset"


def test_init_longer_than_map() -> None:
    err = doc_error(lambda d: d["process"][0]["map"][0].update(init=[1, 2, 3]))
    assert err.key == "process[0].map[0].init"


def test_no_threads() -> None:
    err = doc_error(lambda d: d.pop("thread"))
    assert err.key == "thread"


def test_bad_scenario_name() -> None:
    err = doc_error(lambda d: d.update(name="Bad Name"))
    assert err.key == "name"


def test_bad_toml_syntax() -> None:
    err = load_error(VALID + "\n[[thread]\n")
    assert err.key == "<toml>"
    assert "line" in err.expected


def test_odd_key_is_quoted_on_one_line() -> None:
    err = load_error('"a\\nb" = 1\n')
    assert err.key == '"a\\nb"'


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_path(tmp_path / "missing.toml")
    err = check_message(info.value, str(tmp_path / "missing.toml"))
    assert err.key == "<toml>"


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"name = \"\xff\"\n")
    with pytest.raises(ScenarioError) as info:
        load_path(path)
    assert check_message(info.value, str(path)).key == "<toml>"


def test_unknown_scenario() -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario("no-such-scenario")
    err = check_message(info.value, "no-such-scenario")
    assert err.key == "<scenario>"
    assert err.expected == "a catalog scenario name or a path to a .toml file"


def test_cli_message_has_no_traceback() -> None:
    err = load_error('name = "x"\ndescription = "multi\\nline"\nprobes = ["a\\nb", 3]\n')
    assert "\n" not in str(err)
    assert err.key == "probes[1]"


def test_error_pickles() -> None:
    err = ScenarioError("f", "k", "e", got=[1])
    again = pickle.loads(pickle.dumps(err))
    assert (again.file, again.key, again.expected, again.got) == ("f", "k", "e", [1])
    assert str(again) == "f: k: expected e, got [1]"
    assert str(ScenarioError("f", "k", "e")) == "f: k: expected e"


# ---------------------------------------------------------------------------------------
# parse_op


@pytest.mark.parametrize(
    ("text", "op"),
    [
        ("read 0", Op("read", addr=0)),
        ("  write   0x1000   -3 ", Op("write", addr=0x1000, value=-3)),
        ("write 4096 0xff", Op("write", addr=4096, value=255)),
        ("fork child.1", Op("fork", target="child.1")),
        ("exit", Op("exit")),
        ("exec ls", Op("exec", target="ls")),
        ("munmap 0x2000 3", Op("munmap", addr=0x2000, pages=3)),
        ("mprotect 0 1 none", Op("mprotect", addr=0, pages=1, prot="none")),
        ("minherit 0x1000 1 zero", Op("minherit", addr=0x1000, pages=1, inherit="zero")),
        ("mlock 0x1000 1", Op("mlock", addr=0x1000, pages=1)),
        ("munlock 0x1000 1", Op("munlock", addr=0x1000, pages=1)),
        ("post ev_1", Op("post", target="ev_1")),
        ("wait ev-1", Op("wait", target="ev-1")),
    ],
)
def test_parse_op_accepts(text: str, op: Op) -> None:
    assert parse_op(text, SRC, "k") == op
    assert parse_op(str(op), SRC, "k") == op


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "READ 0", "read", "read -1", "read 0x", "read 1.5", "read 0b1", "read 1 2",
        "write 0", "fork", "fork 1p", "fork a b", "exit now", "munmap 0x1000 0",
        "munmap 0x1000", "mprotect 0x1000 1 wx", "minherit 0x1000 1 cow", "mlock 12 1",
        "munlock 0x1000 -1", "post", "wait a/b", "read " + "9" * 5000,
    ],
)
def test_parse_op_rejects(text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_op(text, SRC, "thread[0].ops[0]")
    assert check_message(info.value, SRC).key == "thread[0].ops[0]"


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_op_has_a_syntax(name: str) -> None:
    if name == "exit":
        assert parse_op(name, SRC, "k") == Op("exit")
        return
    with pytest.raises(ScenarioError) as info:
        parse_op(name, SRC, "k")
    assert info.value.expected.startswith(f"'{name} ")


# ---------------------------------------------------------------------------------------
# validate() on Python-built scenarios


def test_validate_python_built_error_names_source() -> None:
    bad = dataclasses.replace(EXPECTED, source="<python>",
                              threads=(ThreadSpec("T1", "nobody", ()),))
    with pytest.raises(ScenarioError) as info:
        validate(bad)
    err = check_message(info.value, "<python>")
    assert err.key == "thread[0].process"


def test_validate_rejects_malformed_python_op() -> None:
    thread = ThreadSpec("T3", "p0", (Op("write", addr=0x1000),))
    bad = dataclasses.replace(EXPECTED, threads=(*EXPECTED.threads[:2], thread))
    with pytest.raises(ScenarioError) as info:
        validate(bad)
    assert info.value.key == "thread[2].ops[0]"


def test_validate_rejects_bad_python_values() -> None:
    p0 = dataclasses.replace(EXPECTED.processes[0], mappings=(MappingSpec(addr=0, pages=0),))
    bad = dataclasses.replace(EXPECTED, processes=(p0, EXPECTED.processes[1]))
    with pytest.raises(ScenarioError) as info:
        validate(bad)
    assert info.value.key == "process[0].map[0].pages"


# ---------------------------------------------------------------------------------------
# Catalog


def test_catalog_loads() -> None:
    names = catalog_names()
    assert names == sorted(names)
    assert catalog_dir().name == "catalog"
    assert [s.source for s in load_catalog()] == [
        str(catalog_dir() / f"{name}.toml") for name in names
    ]


def test_catalog_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "b-two.toml").write_text(VALID.replace("rw-race-shadow", "b-two"), "utf-8")
    (tmp_path / "a-one.toml").write_text(VALID.replace("rw-race-shadow", "a-one"), "utf-8")
    (tmp_path / "notes.txt").write_text("not a scenario", "utf-8")
    monkeypatch.setattr(loader, "catalog_dir", lambda: tmp_path)
    assert catalog_names() == ["a-one", "b-two"]
    assert [s.name for s in load_catalog()] == ["a-one", "b-two"]
    assert load_scenario("b-two").name == "b-two"


# ---------------------------------------------------------------------------------------
# Fuzzing: load_text returns a Scenario or raises ScenarioError, nothing else


def assert_total(text: str) -> None:
    try:
        scenario = load_text(text, "fuzz.toml")
    except ScenarioError as err:
        check_message(err, "fuzz.toml")
    else:
        assert isinstance(scenario, Scenario)
        validate(scenario)


SCHEMA_KEYS = sorted({
    *loader._TOP_KEYS, *loader._FILE_KEYS, *loader._IMAGE_KEYS, *loader._SEGMENT_KEYS,
    *loader._PROCESS_KEYS, *loader._MAP_KEYS, *loader._THREAD_KEYS, "sbusy", "xbusy",
})
NAMES = ["p0", "p1", "libc", "ls", "T1", "go", "", "rw", "pass", "copy", "shared", "Bad Name"]
INTS = [-1, 0, 1, 2, 4095, 4096, 0x10000, 2**63 - 1, -(2**63)]

keys = st.sampled_from(SCHEMA_KEYS) | st.text(max_size=8)
leaves = (
    st.integers() | st.sampled_from(INTS) | st.booleans() | st.text(max_size=12)
    | st.sampled_from(NAMES) | st.floats(allow_nan=False)
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
op_words = (
    st.sampled_from([*OP_NAMES, "0x1000", "4096", "1", "0", "-1", "0x1001", "rw", "none",
                     "zero", "p1", "go", "ls", "0x", "1e3"])
    | st.text(max_size=6)
)
junk_ops = st.lists(op_words, max_size=5).map(" ".join) | st.text(max_size=20)


def node_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, child in node.items():
            yield (*path, key)
            yield from node_paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield (*path, index)
            yield from node_paths(child, (*path, index))


def node_at(doc: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = doc
    for part in path:
        node = node[part]
    return node


def container(doc: dict[str, Any], path: tuple[Any, ...]) -> Any:
    return node_at(doc, path[:-1])


def mutate(doc: dict[str, Any], data: st.DataObject) -> None:
    paths = list(node_paths(doc))
    kind = data.draw(st.sampled_from(["delete", "retype", "junk-op", "dup", "rename", "int",
                                      "add-key"]))
    if not paths or kind == "add-key":
        dicts = [doc, *(n for p in paths if isinstance(n := node_at(doc, p), dict))]
        data.draw(st.sampled_from(dicts))[data.draw(keys)] = data.draw(values)
        return
    path = data.draw(st.sampled_from(paths))
    parent, last = container(doc, path), path[-1]
    if kind == "delete":
        del parent[last]
    elif kind == "retype":
        parent[last] = data.draw(values)
    elif kind == "dup" and isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    elif kind == "rename":
        parent[last] = data.draw(st.sampled_from(NAMES))
    elif kind == "int":
        parent[last] = data.draw(st.sampled_from(INTS) | st.integers())
    else:
        op_lists = [p for p in paths if p[-1] in ("ops", "setup")
                    and isinstance(container(doc, p)[p[-1]], list)]
        if op_lists:
            target = data.draw(st.sampled_from(op_lists))
            container(doc, target)[target[-1]].append(data.draw(junk_ops))


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.data())
@pytest.mark.slow
def test_fuzz_mutated_valid_document(data: st.DataObject) -> None:
    doc = copy.deepcopy(VALID_DOC)
    for _ in range(data.draw(st.integers(1, 4))):
        mutate(doc, data)
    assert_total(dumps(doc))


@FUZZ
@given(st.dictionaries(keys, values, max_size=6))
@pytest.mark.slow
def test_fuzz_random_document(doc: dict[str, Any]) -> None:
    text = dumps(doc)
    assert tomllib.loads(text) == doc  # the serializer is faithful, so the loader sees `doc`
    assert_total(text)


@FUZZ
@given(st.text(max_size=200) | st.lists(st.sampled_from(VALID.splitlines()), max_size=30)
       .map("\n".join))
def test_fuzz_raw_text(text: str) -> None:
    assert_total(text)


@FUZZ
@given(st.text(max_size=40) | junk_ops)
def test_fuzz_parse_op(text: str) -> None:
    try:
        op = parse_op(text, SRC, "k")
    except ScenarioError as err:
        check_message(err, SRC)
    else:
        assert parse_op(str(op), SRC, "k") == op


def scalar_fields(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths (attribute names and tuple indices) to int/str/None fields of a scenario."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if f.name != "source" and (value is None or isinstance(value, int | str)):
                yield (*path, f.name)
            elif isinstance(value, tuple):
                yield from scalar_fields(value, (*path, f.name))
    elif isinstance(node, tuple):
        for index, child in enumerate(node):
            yield from scalar_fields(child, (*path, index))


def replaced(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, tuple):
        return (*node[:head], replaced(node[head], rest, value), *node[head + 1:])
    return dataclasses.replace(node, **{head: replaced(getattr(node, head), rest, value)})


@FUZZ
@given(st.data())
def test_fuzz_validate_python_built(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(list(scalar_fields(EXPECTED))))
    value = data.draw(leaves | st.none())
    scenario = replaced(EXPECTED, path, value)
    try:
        validate(scenario)
    except ScenarioError as err:
        check_message(err, SRC)


# ---------------------------------------------------------------------------------------
# The DPOR bound a scenario states


def test_stated_bound_is_read() -> None:
    doc = copy.deepcopy(VALID_DOC)
    doc["bound"] = {"preemptions": 2, "reason": "every race needs one preemption"}
    s = load_doc(doc)
    assert s.bound is not None
    assert (s.bound.preemptions, s.bound.reason) == (2, "every race needs one preemption")
    assert load_doc(VALID_DOC).bound is None


def test_stated_bound_needs_a_reason() -> None:
    err = doc_error(lambda d: d.update(bound={"preemptions": 1}))
    assert err.key == "bound.reason" and "missing" in err.expected


def test_stated_bound_is_not_negative() -> None:
    err = doc_error(lambda d: d.update(bound={"preemptions": -1, "reason": "r"}))
    assert err.key == "bound.preemptions"
    assert err.expected == ('an integer from 0 to 16 (the limit on a stated bound), or "none" '
                            '(every interleaving)')


def test_stated_bound_may_be_none() -> None:
    doc = copy.deepcopy(VALID_DOC)
    doc["bound"] = {"preemptions": "none", "reason": "stateful DPOR ends it in seconds"}
    s = load_doc(doc)
    assert s.bound is not None and s.bound.preemptions is None
    r = check_scenario(s, CheckConfig(strategy="dpor", shrink=False))
    assert r.preemption_bound is None and r.exhaustive and r.cache_hits is not None
    assert r.bound_reason == "stateful DPOR ends it in seconds"
    err = doc_error(lambda d: d.update(bound={"preemptions": "all", "reason": "r"}))
    assert err.key == "bound.preemptions" and "none" in err.expected


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize(("edit", "key", "words"), [
    (lambda d: d["process"][0]["map"][0].update(addr=2**70), "process[0].map[0].addr",
     "VM_MAXUSER_ADDRESS"),
    (lambda d: d["process"][0]["map"][0].update(addr=0x7FFFFFFFF000, pages=2),
     "process[0].map[0].pages", "ending at or below 0x800000000000"),
    (lambda d: d["process"][0]["map"][0].update(pages=10**9), "process[0].map[0].pages",
     "from 1 to 1024"),
    (lambda d: d["thread"][0].update(ops=["munmap 0x1000 99999999999"]), "thread[0].ops[0]",
     "from 1 to 1024"),
    (lambda d: d["thread"][0].update(ops=["munmap 0x7ffffffff000 2"]), "thread[0].ops[0]",
     "range ending at or below"),
    (lambda d: d["thread"][0].update(ops=["read 0x800000000000"]), "thread[0].ops[0]",
     "VM_MAXUSER_ADDRESS"),
    (lambda d: d["thread"][0].update(ops=[f"write 0x1000 {2**63}"]), "thread[0].ops[0]",
     "64-bit word"),
    (lambda d: d["file"][0].update(pages=[0] * 1025), "file[0].pages", "at most 1,024"),
    (lambda d: d["thread"][0].update(ops=["read 0x1000"] * 1001), "thread[0].ops",
     "at most 1,000 op strings"),
    (lambda d: d.update(thread=[{"name": f"T{i}", "process": "p0", "ops": []}
                                for i in range(65)]), "thread", "at most 64 [[thread]]"),
    (lambda d: d.update(step_bound=10**12), "step_bound", "limit on steps per run"),
    (lambda d: d.update(description="x" * 10_001), "description", "at most 10,000 characters"),
    (lambda d: d["process"][0]["map"].extend(
        {"addr": 0x1000000 * (i + 1), "pages": 1024} for i in range(4)),
     "<all pages>", "at most 4,096 pages"),
])
def test_scenario_limits_name_the_limit(edit: Callable[[dict[str, Any]], None], key: str,
                                        words: str) -> None:
    """Everything that makes one step's work grow (pages, addresses, values, counts) is
    bounded, and the error says by what."""
    err = doc_error(edit)
    assert err.key == key
    assert words in str(err)


def test_an_oversized_scenario_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text(VALID + "# " + "x" * (1 << 20) + "\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="at most 1,048,576 bytes"):
        load_path(big)


def test_python_built_scenarios_obey_the_same_limits() -> None:
    s = dataclasses.replace(EXPECTED, step_bound=10**12)
    with pytest.raises(ScenarioError, match="limit on steps per run"):
        validate(s)
