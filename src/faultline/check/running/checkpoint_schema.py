"""What a checkpoint must be before it is resumed: its layout, and its fit to a scenario.

What lives here: `validate` (the whole layout of a checkpoint, sequential and split:
every field present, of the right type and in range; no unknown fields),
`check_belongs` and `check_resumable` (it is of this scenario, under these settings, by
this faultline, and its path or subtree roots replay on the scenario step for step),
`scenario_digest`, the limits a field may reach, and `CheckpointError`.  The layout
itself is described in check.running.checkpoint, which reads and writes it.
Rule kept: every check raises CheckpointError or schema.SchemaError naming the field
(`current.nodes[3].chosen`), before any of the checkpoint is used; nothing is repaired.
Must not be added: reading or writing files, resuming.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

from faultline import __version__
from faultline.check.running.schema import (
    SchemaError,
    array,
    boolean,
    field,
    integer,
    mapping,
    nullable,
    only_keys,
    pair,
    string,
)
from faultline.rt.execution import ReplayDivergence

if TYPE_CHECKING:
    from faultline.check.explore import CheckConfig
    from faultline.scenario.spec import Scenario

MAX_NPV_LOCKS = 1024          # pv-list locks (the kernel has a few hundred at most)
MAX_SPLIT = 1000              # frozen branching points of a split exploration (--split)
MAX_BOUNDS = 1000             # preemption bounds run in turn (--preemptions A..B)
MAX_PREEMPTIONS = 1_000_000   # one preemption bound
MAX_COUNT = 2 ** 63 - 1       # executions, steps and other counters
MAX_TID = 1_000_000           # a thread id
MAX_KEY_DEPTH = 8             # nesting of a footprint key (fl_keys are flat tuples)
MAX_PATH = 10_000_000         # nodes of a path (rt.trace.MAX_SCHEDULE_STEPS)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: damaged, of another layout, version or
    scenario.  The message names the file and the field (bad input for the CLI)."""


def scenario_digest(scenario: Scenario) -> str:
    """A digest of what the scenario says (not where its file is): resuming on a
    scenario that changed since would explore a different tree."""
    doc = dataclasses.asdict(scenario)
    doc.pop("source", None)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- validate: the layout

_HEADER = ("format", "faultline_version", "scenario", "scenario_path", "scenario_digest",
           "policy", "dpor", "preemptions", "max_executions", "every_step", "npv_locks",
           "race_detect", "cache_states")
_SEQ_KEYS = frozenset((*_HEADER, "split", "bound_index", "totals", "current", "finished",
                       "coverage"))
_SPLIT_KEYS = _SEQ_KEYS - {"coverage"}
_COUNTERS = ("executions", "sleep_blocked", "steps", "cache_hits")


def validate(doc: dict[str, Any]) -> None:
    """SchemaError unless `doc` has this layout's every field, each of the right type
    and in range (what `check_resumable` checks needs the scenario)."""
    from faultline.check.explore import DPOR_FLAVOURS
    from faultline.kern.policy import POLICIES
    split = integer(field(doc, "split"), "split", 0, MAX_SPLIT)
    only_keys(doc, _SPLIT_KEYS if split else _SEQ_KEYS, "")
    for key in ("format", "faultline_version", "scenario_digest"):
        string(field(doc, key), key)
    string(field(doc, "scenario"), "scenario", nonempty=True)
    string(field(doc, "scenario_path"), "scenario_path")
    string(field(doc, "policy"), "policy", tuple(POLICIES))
    string(field(doc, "dpor"), "dpor", DPOR_FLAVOURS)
    pre = nullable(array, field(doc, "preemptions"), "preemptions", MAX_BOUNDS)
    if pre is not None:
        if not pre:
            raise SchemaError("preemptions: expected null or at least one bound")
        for i, b in enumerate(pre):
            nullable(integer, b, f"preemptions[{i}]", 0, MAX_PREEMPTIONS)
    nullable(integer, field(doc, "max_executions"), "max_executions", 1, MAX_COUNT)
    for key in ("every_step", "race_detect", "cache_states"):
        boolean(field(doc, key), key)
    integer(field(doc, "npv_locks"), "npv_locks", 1, MAX_NPV_LOCKS)
    bounds = MAX_BOUNDS if pre is None else len(pre)
    index = integer(field(doc, "bound_index"), "bound_index", 0, bounds)
    cur, fin = field(doc, "current"), field(doc, "finished")
    if split:
        _split_totals(field(doc, "totals"), "totals")
        if cur is not None:
            _split_current(cur, "current")
    else:
        _totals(field(doc, "totals"), "totals", _COUNTERS)
        _coverage(field(doc, "coverage"), "coverage")
        if cur is not None:
            _seq_current(cur, "current")
    if fin is not None:
        _finished(fin, "finished")
        if cur is not None:
            raise SchemaError("finished: a finished exploration has no current bound")
    if cur is not None and index >= bounds:
        raise SchemaError(f"bound_index: {index} leaves no bound for current")


def _counter(value: Any, name: str) -> int:
    return integer(value, name, 0, MAX_COUNT)


def _totals(value: Any, name: str, keys: tuple[str, ...], others: tuple[str, ...] = ()
            ) -> dict[str, Any]:
    """Counters `keys` (and fields `others`, which the caller checks)."""
    t = mapping(value, name)
    only_keys(t, frozenset((*keys, *others)), f"{name}.")
    for key in keys:
        _counter(field(t, key, f"{name}."), f"{name}.{key}")
    for key in others:
        field(t, key, f"{name}.")
    return t


def _coverage(value: Any, name: str) -> None:
    for label, n in mapping(value, name).items():
        _counter(n, f"{name}.{label}")


def _split_totals(value: Any, name: str) -> None:
    t = _totals(value, name, (*_COUNTERS, "subtrees"), ("coverage",))
    _coverage(t["coverage"], f"{name}.coverage")


def _finished(value: Any, name: str) -> None:
    f = mapping(value, name)
    only_keys(f, frozenset(("exhaustive", "preemption_bound", "violation")), f"{name}.")
    boolean(field(f, "exhaustive", f"{name}."), f"{name}.exhaustive")
    nullable(integer, field(f, "preemption_bound", f"{name}."), f"{name}.preemption_bound",
             0, MAX_PREEMPTIONS)
    v = nullable(string, field(f, "violation", f"{name}."), f"{name}.violation")
    if v is not None:
        from faultline.rt.trace import schedule_from_str
        try:
            schedule_from_str(v)
        except ValueError as e:
            raise SchemaError(f"{name}.violation: not a schedule ({e})") from None
        if f["exhaustive"]:
            raise SchemaError(f"{name}.exhaustive: true, but a violation stopped it")


def _tid(value: Any, name: str) -> int:
    return integer(value, name, 0, MAX_TID)


def _tids(value: Any, name: str) -> list[int]:
    return [_tid(x, f"{name}[{i}]") for i, x in enumerate(array(value, name))]


def _key(value: Any, name: str) -> None:
    # A footprint key: strings and integers, in lists as deep as MAX_KEY_DEPTH.
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if type(v) is list:
            if depth >= MAX_KEY_DEPTH:
                raise SchemaError(f"{name}: nested deeper than {MAX_KEY_DEPTH}")
            stack.extend((x, depth + 1) for x in v)
        elif type(v) not in (str, int):
            raise SchemaError(f"{name}: expected strings and integers, got {v!r:.40}")


def _accesses(value: Any, name: str) -> None:
    for i, a in enumerate(array(value, name)):
        k, kind = pair(a, f"{name}[{i}]")
        _key(k, f"{name}[{i}][0]")
        string(kind, f"{name}[{i}][1]")


def _by_thread(value: Any, name: str) -> None:
    for i, item in enumerate(array(value, name)):
        t, acc = pair(item, f"{name}[{i}]")
        _tid(t, f"{name}[{i}][0]")
        _accesses(acc, f"{name}[{i}][1]")


def _wut(value: Any, name: str) -> None:
    # Iterative: a wakeup tree may be as deep as a path is long.
    stack = [(value, 0)]
    while stack:
        level, depth = stack.pop()
        where = f"{name} (at depth {depth})"
        for item in array(level, where):
            it = array(item, where)
            if len(it) != 3:
                raise SchemaError(f"{where}: expected [thread, footprint, children]")
            _tid(it[0], where)
            _accesses(it[1], where)
            stack.append((it[2], depth + 1))


_NODE_KEYS = frozenset(("enabled", "pending", "chosen", "taken", "sleep", "backtrack",
                        "done", "preemptions", "last", "wut", "vpre", "cont"))


def _node(value: Any, name: str) -> None:
    d = mapping(value, name)
    only_keys(d, _NODE_KEYS, f"{name}.")
    for key in _NODE_KEYS:
        field(d, key, f"{name}.")
    enabled = _tids(d["enabled"], f"{name}.enabled")
    chosen = _tid(d["chosen"], f"{name}.chosen")
    if chosen not in enabled:
        raise SchemaError(f"{name}.chosen: thread {chosen} is not among the enabled "
                          f"{enabled}")
    for key in ("pending", "taken", "sleep"):
        _by_thread(d[key], f"{name}.{key}")
    _tids(d["backtrack"], f"{name}.backtrack")
    _tids(d["done"], f"{name}.done")
    integer(d["preemptions"], f"{name}.preemptions", 0, MAX_PREEMPTIONS)
    nullable(_tid, d["last"], f"{name}.last")
    _wut(d["wut"], f"{name}.wut")
    for i, item in enumerate(array(d["vpre"], f"{name}.vpre")):
        t, n = pair(item, f"{name}.vpre[{i}]")
        _tid(t, f"{name}.vpre[{i}][0]")
        integer(n, f"{name}.vpre[{i}][1]", 0, MAX_PREEMPTIONS)
    for i, item in enumerate(array(d["cont"], f"{name}.cont")):
        t, b = pair(item, f"{name}.cont[{i}]")
        _tid(t, f"{name}.cont[{i}][0]")
        boolean(b, f"{name}.cont[{i}][1]")


def _seq_current(value: Any, name: str) -> None:
    c = mapping(value, name)
    only_keys(c, frozenset((*_COUNTERS, "nodes", "prefix_len")), f"{name}.")
    _totals({k: v for k, v in c.items() if k not in ("nodes", "prefix_len")}, name,
            _COUNTERS)
    _dpor_path(c, name)


def _dpor_path(c: dict[str, Any], name: str) -> list[Any]:
    # A DPOR path: its nodes, and the prefix to replay, which between two executions
    # is the whole path (dpor.explore).
    nodes = array(field(c, "nodes", f"{name}."), f"{name}.nodes", MAX_PATH)
    for i, node in enumerate(nodes):
        _node(node, f"{name}.nodes[{i}]")
    prefix = integer(field(c, "prefix_len", f"{name}."), f"{name}.prefix_len")
    if not nodes or prefix != len(nodes):
        raise SchemaError(f"{name}.prefix_len: expected the path's length {len(nodes)} "
                          f"(at least 1), got {prefix}")
    return nodes


def _path(value: Any, name: str) -> tuple[int, ...]:
    return tuple(_tids(value, name))


def _split_current(value: Any, name: str) -> None:
    c = mapping(value, name)
    only_keys(c, frozenset(("roots", "explored", "merged", "totals", "partial")), f"{name}.")
    roots = [_path(r, f"{name}.roots[{i}]")
             for i, r in enumerate(array(field(c, "roots", f"{name}."), f"{name}.roots"))]
    if not roots or roots[0] != ():
        raise SchemaError(f"{name}.roots: expected the tree's root [] first")
    if len(set(roots)) != len(roots):
        raise SchemaError(f"{name}.roots: a root is listed twice")
    explored = array(field(c, "explored", f"{name}."), f"{name}.explored")
    paths = set()
    for i, item in enumerate(explored):
        p, r = pair(item, f"{name}.explored[{i}]")
        path, root = _path(p, f"{name}.explored[{i}][0]"), _path(r, f"{name}.explored[{i}][1]")
        if path[:len(root)] != root or root not in roots:
            raise SchemaError(f"{name}.explored[{i}]: not a subtree of one of the roots")
        paths.add(path)
    if len(paths) != len(explored):
        raise SchemaError(f"{name}.explored: a frozen path is listed twice")
    merged = integer(field(c, "merged", f"{name}."), f"{name}.merged", 0)
    if merged >= len(roots):
        raise SchemaError(f"{name}.merged: expected fewer than the {len(roots)} roots "
                          f"(once all are merged the bound is done), got {merged}")
    _split_totals(field(c, "totals", f"{name}."), f"{name}.totals")
    if c["totals"]["subtrees"] != len(explored):
        raise SchemaError(f"{name}.totals.subtrees: expected {len(explored)}, one per "
                          f"explored subtree")
    _partials(field(c, "partial", f"{name}."), f"{name}.partial", merged, len(roots))


def _partials(value: Any, name: str, merged: int, roots: int) -> None:
    """Paused units: [position, {nodes, prefix_len, totals, branches}], by position,
    each at a root not yet merged."""
    last = merged - 1
    for i, item in enumerate(array(value, name)):
        where = f"{name}[{i}]"
        pos, d = pair(item, where)
        pos = integer(pos, f"{where}[0]", last + 1, roots - 1)
        last = pos
        p = mapping(d, f"{where}[1]")
        only_keys(p, frozenset(("nodes", "prefix_len", "totals", "branches")), f"{where}[1].")
        nodes = _dpor_path(p, f"{where}[1]")
        t = _totals(field(p, "totals", f"{where}[1]."), f"{where}[1].totals", _COUNTERS,
                    ("coverage",))
        _coverage(t["coverage"], f"{where}[1].totals.coverage")
        for j, b in enumerate(array(field(p, "branches", f"{where}[1]."),
                                    f"{where}[1].branches")):
            k, q = pair(b, f"{where}[1].branches[{j}]")
            integer(k, f"{where}[1].branches[{j}][0]", 0, len(nodes) - 1)
            _tid(q, f"{where}[1].branches[{j}][1]")


# ---------------------------------------------------------------- fits the scenario

def check_belongs(doc: dict[str, Any], scenario: Scenario, cfg: CheckConfig,
                  depth: int) -> None:
    """CheckpointError unless checkpoint `doc` is of `scenario` under cfg's policy,
    split at `depth` frozen nodes (0: one sequential exploration; check.search.split)."""
    if doc["scenario"] != scenario.name or doc["policy"] != cfg.policy:
        raise CheckpointError(f"checkpoint is for {doc['scenario']} under {doc['policy']}")
    split = doc.get("split", 0)
    if split != depth:
        raise CheckpointError(f"this checkpoint was split at {split} nodes, not {depth}: "
                              f"resume it with --split {split}")


def check_resumable(doc: dict[str, Any], scenario: Scenario, cfg: CheckConfig,
                    where: str) -> None:
    """CheckpointError (naming `where`, the file, and the field) unless the validated
    checkpoint `doc` can be resumed on `scenario` with `cfg` (the settings it records):
    the same faultline, scenario name and content, a bound index within the scenario's
    bounds, and a path (or subtree roots) that replays on it step for step."""
    from faultline.check import explore
    if doc["faultline_version"] != __version__:
        raise CheckpointError(f"{where}: faultline_version: written by faultline "
                              f"{doc['faultline_version']}, this is {__version__}; resume it "
                              f"with that version, or start the exploration again")
    if doc["scenario"] != scenario.name:
        raise CheckpointError(f"{where}: scenario: the checkpoint names {doc['scenario']!r} "
                              f"but {scenario.source} is scenario {scenario.name!r}")
    if doc["scenario_digest"] != scenario_digest(scenario):
        raise CheckpointError(f"{where}: scenario_digest: scenario {scenario.name} "
                              f"({scenario.source}) changed since the checkpoint was "
                              f"written; resuming would explore a different tree")
    bounds, _ = explore.dpor_bounds(scenario, cfg)
    index = doc["bound_index"]
    if index > len(bounds):
        raise CheckpointError(f"{where}: bound_index: {index}, but {scenario.name} is "
                              f"explored in {len(bounds)} bound(s)")
    done, fin = index == len(bounds), doc["finished"]
    if done != (fin is not None):
        raise CheckpointError(f"{where}: finished: expected {'an outcome' if done else 'null'} "
                              f"with bound_index {index} of {len(bounds)}")
    if fin is not None and fin["preemption_bound"] not in bounds:
        raise CheckpointError(f"{where}: finished.preemption_bound: "
                              f"{fin['preemption_bound']} is not one of the bounds {bounds}")
    try:
        _replays(doc, scenario, cfg, explore)
    except (ValueError, ReplayDivergence) as e:     # or a path beyond the step bound
        raise CheckpointError(f"{where}: {e}") from None


def _replays(doc: dict[str, Any], scenario: Scenario, cfg: CheckConfig, explore: Any
             ) -> None:
    cur, fin = doc["current"], doc["finished"]
    if cur is not None and not doc["split"]:
        _replays_path(cur["nodes"], "current.nodes", scenario, cfg, explore)
    if cur is not None and doc["split"]:
        for i, root in enumerate(cur["roots"][cur["merged"]:], cur["merged"]):
            try:
                explore.enabled_along(scenario, cfg, root)
            except (ValueError, ReplayDivergence) as e:
                raise ValueError(f"current.roots[{i}]: {e}") from None
        for i, (pos, p) in enumerate(cur["partial"]):
            _replays_path(p["nodes"], f"current.partial[{i}][1].nodes", scenario, cfg,
                          explore, tuple(cur["roots"][pos]))
    if fin is not None and fin["violation"] is not None:
        # Resuming a finished run reports its violation again (replayed, then shrunk).
        try:
            explore.violation_of(scenario, cfg, fin["violation"])
        except (ValueError, ReplayDivergence) as e:
            raise ValueError(f"finished.violation: {e}") from None


def _replays_path(nodes: list[dict[str, Any]], name: str, scenario: Scenario,
                  cfg: CheckConfig, explore: Any, root: tuple[int, ...] = ()) -> None:
    """ValueError unless the path `nodes` (under `root`, a paused subtree's) replays on
    the scenario with the threads it records enabled at each step."""
    chosen = [n["chosen"] for n in nodes]
    if tuple(chosen[:len(root)]) != root:
        raise ValueError(f"{name}: does not start with its subtree's root {list(root)}")
    try:
        seen = explore.enabled_along(scenario, cfg, chosen)
    except (ValueError, ReplayDivergence) as e:
        raise ValueError(f"{name}: {e}") from None
    for i, (node, en) in enumerate(zip(nodes, seen)):
        if set(node["enabled"]) != set(en):
            raise ValueError(f"{name}[{i}].enabled: {node['enabled']}, but "
                             f"threads {en} can run there in {scenario.name}")
