"""Fuzzing the command line with damaged input: checkpoints (check --resume),
counterexample files (replay) and scenario files (check).  Whatever the damage, the
exit status is 0, 1 or 2 (2: one `faultline: error:` line), never 3 and never a
traceback; a checkpoint changed anywhere without being sealed again is refused (exit 2)
or resumes to exactly the unchanged checkpoint's result.

The CLI runs in this process (typer's CliRunner, --jobs 1) so that hundreds of examples
take well under a minute.  Each test tallies its exit statuses (run with -s to see them);
FAULTLINE_FUZZ_EXAMPLES=5000 runs a longer campaign.
"""

from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from cli_support import TINY
from faultline.check.running import checkpoint
from faultline.cli.app import app
from faultline.scenario import loader
from test_checkpoint import SMALL, midway_checkpoints

# FAULTLINE_FUZZ_EXAMPLES scales every test (default 300 examples; 200 for scenarios).
EXAMPLES = int(os.environ.get("FAULTLINE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
SECONDS = 60            # one example running longer than this is a failure (a hang)

TALLY: dict[str, Counter[int]] = {}


class _TooSlow(BaseException):
    """An example ran past SECONDS (a BaseException: _reported must not swallow it)."""


def _alarm(signum: int, frame: object) -> None:
    raise _TooSlow


def invoke(kind: str, *args: str) -> Result:
    """Run the CLI in this process; check what every input may end in."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(SECONDS)
    try:
        res = CliRunner().invoke(app, list(args))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    TALLY.setdefault(kind, Counter())[res.exit_code] += 1
    assert not isinstance(res.exception, _TooSlow), f"faultline {args} ran past {SECONDS} s"
    # An exception escaping the app: CliRunner reports exit 1 with res.exception set.
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code in (0, 1, 2), (res.exit_code, res.stderr[-2000:])
    assert "Traceback" not in res.stdout + res.stderr, res.stderr[-2000:]
    if res.exit_code == 2:
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("faultline: error: "), res.stderr
    return res


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    for kind, counts in sorted(TALLY.items()):
        total = sum(counts.values())
        print(f"\nfuzzed {kind}: {total} runs, exit statuses "
              f"{dict(sorted(counts.items()))}")


# ---------------------------------------------------------------- mutations

def paths(doc: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key/index path in a JSON document (the root excluded)."""
    if isinstance(doc, dict):
        items: Any = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc)
    else:
        return
    for k, v in items:
        yield (*at, k)
        yield from paths(v, (*at, k))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


ODD = st.one_of(
    st.none(), st.booleans(), st.sampled_from([-1, 0, 1, 2, 7, 99, 1024, 1025, 10 ** 9,
                                               2 ** 63, -2 ** 63, 10 ** 30]),
    st.integers(), st.floats(), st.text(max_size=12), st.just([]), st.just({}),
    st.just([[0, []]]), st.just([-1]), st.just({"a": 1}), st.just("sha256:0"),
    st.just("0*99999999999"), st.just("faultline-dpor-checkpoint/2"))


@st.composite
def doc_mutation(draw: st.DrawFn, doc: dict[str, Any], where: list[tuple[Any, ...]]
                 ) -> tuple[str, str]:
    """(description, JSON text) of `doc` with one to three fields dropped, retyped,
    nudged or nested deeply (the text is not sealed again)."""
    doc = json.loads(json.dumps(doc))
    deep = None
    what = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(where))
        try:
            parent = _parent(doc, path)
            parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue                    # an earlier mutation removed it
        if not isinstance(parent, dict | list):
            continue                    # ... or replaced what held it
        how = draw(st.sampled_from(["drop", "odd", "nudge", "deep"]))
        what.append(f"{how} {'.'.join(map(str, path))}")
        if how == "drop":
            del parent[path[-1]]
        elif how == "odd":
            parent[path[-1]] = draw(ODD)
        elif how == "nudge" and type(parent[path[-1]]) is int:
            parent[path[-1]] += draw(st.sampled_from([-2, -1, 1, 2, 1000]))
        elif how == "deep":
            deep = draw(st.integers(1_000, 200_000))
            parent[path[-1]] = "\0deep\0"
    text = json.dumps(doc)
    if deep is not None:
        text = text.replace('"\\u0000deep\\u0000"', "[" * deep + "]" * deep)
    return "; ".join(what), text


@st.composite
def byte_mutation(draw: st.DrawFn, text: str) -> tuple[str, bytes]:
    """(description, bytes) of `text` truncated, with bytes flipped, or with a run of
    bytes inserted."""
    raw = text.encode()
    how = draw(st.sampled_from(["truncate", "flip", "insert"] if raw else ["insert"]))
    at = draw(st.integers(0, max(len(raw) - 1, 0)))
    if how == "truncate":
        return f"truncate at {at}", raw[:at]
    if how == "flip":
        out = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(out) - 1))
            out[i] ^= draw(st.integers(1, 255))
        return "flip", bytes(out)
    junk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from([b" ", b"\n", b"0",
                                                                      b"-", b"[", b"{"]))
    return f"insert {junk!r} at {at}", raw[:at] + junk + raw[at:]


# ---------------------------------------------------------------- (a) checkpoints

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, tuple[dict[str, Any], int, str]]:
    """Valid checkpoints (sequential and split, midway and finished, one with a
    violation), each with the exit status and output its unchanged resume gives."""
    where = tmp_path_factory.mktemp("fuzz-ck")
    docs: dict[str, dict[str, Any]] = dict(midway_checkpoints(where))
    (where / "tiny.toml").write_text(TINY)
    for name, args in {
        "finished-violation": [str(where / "tiny.toml"), "--split", "1"],
        "finished-capped": [str(where / "small.toml"), "--preemptions", "0..1",
                            "--max-executions", "30"],
    }.items():
        state = where / f"{name}.ckpt"
        CliRunner().invoke(app, ["check", *args, "--strategy", "dpor", "--jobs", "1",
                                 "--json", "--state", str(state)])
        docs[name] = checkpoint.read(state)
    out = {}
    for name, doc in docs.items():
        path = where / f"{name}.base.ckpt"
        path.write_text(checkpoint.seal(doc))
        res = CliRunner().invoke(app, ["check", "--resume", str(path), "--json", "--jobs",
                                       "1"])
        assert res.exit_code in (0, 1), res.stderr
        out[name] = (doc, res.exit_code, res.stdout)
    return out


@FUZZ
@given(data=st.data())
@pytest.mark.slow
def test_a_damaged_checkpoint_is_refused_or_resumes_unchanged(
        data: st.DataObject, checkpoints: dict[str, tuple[dict[str, Any], int, str]],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    name = data.draw(st.sampled_from(sorted(checkpoints)))
    doc, status, stdout = checkpoints[name]
    text = checkpoint.seal(doc)
    sealed = False
    if data.draw(st.booleans()):
        what, raw = data.draw(byte_mutation(text))
    else:
        on_disk = json.loads(text)          # with its (now stale) checksum
        what, mutated = data.draw(doc_mutation(on_disk, list(paths(on_disk))))
        raw = mutated.encode()
        # Sealed again as if faultline wrote it: then only the layout checks stand
        # between the damage and the run (a deep nesting cannot be sealed).
        if data.draw(st.booleans()):
            try:
                raw = checkpoint.seal(json.loads(mutated)).encode()
                sealed = True
            except (ValueError, RecursionError):
                pass
    path = tmp_path_factory.mktemp("ck") / "run.ckpt"
    path.write_bytes(raw)
    res = invoke("checkpoints", "check", "--resume", str(path), "--json", "--jobs", "1")
    if res.exit_code != 2 and not sealed:
        # Never a silently different result: unsealed damage is refused or harmless.
        assert (res.exit_code, res.stdout) == (status, stdout), (name, what)


# ---------------------------------------------------------------- (b) counterexamples

@pytest.fixture(scope="module")
def counterexamples(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Counterexample files written by check --trace-out: a no-progress violation
    of a tiny scenario, and a shrunk one of rw-race-shadow with a step bound of 100."""
    where = tmp_path_factory.mktemp("fuzz-ce")
    (where / "tiny.toml").write_text(TINY)
    tight = (loader.catalog_dir() / "rw-race-shadow.toml").read_text()
    (where / "tight.toml").write_text(tight.replace("step_bound = 4000", "step_bound = 100"))
    docs = []
    for name in ("tiny.toml", "tight.toml"):
        ce = where / f"{name}.json"
        res = CliRunner().invoke(app, ["check", str(where / name), "--runs", "3", "--jobs",
                                       "1", "--trace-out", str(ce)])
        assert res.exit_code == 1, res.stderr
        docs.append(json.loads(ce.read_text()))
    return docs


@FUZZ
@given(data=st.data())
@pytest.mark.slow
def test_a_damaged_counterexample_never_crashes_replay(
        data: st.DataObject, counterexamples: list[dict[str, Any]],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    doc = data.draw(st.sampled_from(counterexamples))
    if data.draw(st.booleans()):
        _, raw = data.draw(byte_mutation(json.dumps(doc)))
    else:
        # Events are many and replay ignores them: aim most damage at the rest.
        where = [p for p in paths(doc) if p[0] != "events" or len(p) <= 3]
        _, text = data.draw(doc_mutation(doc, where))
        raw = text.encode()
    path = tmp_path_factory.mktemp("ce") / "ce.json"
    path.write_bytes(raw)
    invoke("counterexamples", "replay", str(path), "--json")


# ---------------------------------------------------------------- (c) scenario files

SCENARIOS = {"tiny": TINY, "small": SMALL,
             **{name: (loader.catalog_dir() / f"{name}.toml").read_text()
                for name in ("rw-race-shadow", "fault-vs-fork", "exec-storm-small",
                             "wire-vs-fault", "mprotect-vs-fault", "cow-rename")}}
NUMBERS = st.sampled_from(["0", "-1", "1", "2", "3", "4096", "0x1000", "0x2000", "0x3000",
                           "0xfff", "4097", "65536", "1e3", "99"]) | \
    st.integers(-10, 70_000).map(str)


@st.composite
def toml_mutation(draw: st.DrawFn, text: str) -> str:
    """`text` with lines dropped, doubled or swapped, numbers or op words changed,
    or bytes damaged."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            lines = [""]
        how = draw(st.sampled_from(["drop", "double", "swap", "number", "word", "bytes"]))
        i = draw(st.integers(0, len(lines) - 1))
        if how == "drop":
            del lines[i]
        elif how == "double":
            lines.insert(i, lines[i])
        elif how == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif how == "number":
            spots = list(re.finditer(r"0x[0-9a-fA-F]+|\d+", lines[i]))
            if spots:
                m = draw(st.sampled_from(spots))
                lines[i] = lines[i][:m.start()] + draw(NUMBERS) + lines[i][m.end():]
        elif how == "word":
            word = draw(st.sampled_from(["read", "write", "fork", "exit", "munmap",
                                         "mprotect", "mlock", "munlock", "minherit",
                                         "wait", "post", "exec", "shared", "private",
                                         "rwx", "none", "zero", "copy", "p1", "p2"]))
            parts = lines[i].split(" ")
            parts[draw(st.integers(0, len(parts) - 1))] = word
            lines[i] = " ".join(parts)
        else:
            _, raw = draw(byte_mutation("\n".join(lines)))
            lines = raw.decode("utf-8", "replace").splitlines()
    return "\n".join(lines) + "\n"


@settings(FUZZ, max_examples=max(1, EXAMPLES * 2 // 3))
@given(data=st.data())
@pytest.mark.slow
def test_a_damaged_scenario_file_never_crashes_check(
        data: st.DataObject, tmp_path_factory: pytest.TempPathFactory) -> None:
    name = data.draw(st.sampled_from(sorted(SCENARIOS)))
    path = tmp_path_factory.mktemp("toml") / f"{name}.toml"
    path.write_text(data.draw(toml_mutation(SCENARIOS[name])))
    invoke("scenarios", "check", str(path), "--runs", "3", "--jobs", "1")
