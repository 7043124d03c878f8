"""Checkpoints of a DPOR exploration: the path as JSON, sealed, written atomically.

What lives here: `dump_path`/`load_path` (the DPOR nodes, with their sleep sets,
backtrack sets and wakeup trees, to and from plain JSON data), `run_header`, `seal`,
`write_atomically` and `read`.  What a checkpoint must be before any of it is used
(`validate`: the whole layout; `check_resumable`: it fits the scenario and settings it
will be resumed with) lives in check.running.checkpoint_schema, re-exported here.
A checkpoint is taken between two executions, so resuming re-runs nothing twice and
loses nothing: the exploration continues with exactly the prefix it would have taken.

Layout (FORMAT): one JSON object.  `format` and `checksum` (sha256 of the canonical
JSON of every other field: sorted keys, no spaces) come first; then the run
(run_header: scenario, its file and digest, faultline version, policy and DPOR
settings), `split` (0: one sequential exploration; else the split depth,
check.search.split), `bound_index` (bounds finished), `totals`, `current` (the bound
in progress, or null), `finished` (null while running; the outcome once it ended) and,
sequential only, `coverage`.  The exact fields of each part are in `validate`
(checkpoint_schema).
Rule kept: a checkpoint whose checksum, layout or scenario does not match is refused
(CheckpointError naming the file and the field), never resumed into a different
result; plain data only (thread ids, footprint keys, counters), no model objects.
Must not be added: deciding when to checkpoint (the caller does, by wall clock).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultline import __version__
from faultline.check.running import files
from faultline.check.running.checkpoint_schema import (
    MAX_BOUNDS,
    MAX_NPV_LOCKS,
    MAX_PREEMPTIONS,
    MAX_SPLIT,
    CheckpointError,
    check_belongs,
    check_resumable,
    scenario_digest,
    validate,
)
from faultline.check.running.schema import SchemaError
from faultline.check.search.dpor import Node
from faultline.check.search.wakeup import WutNode

if TYPE_CHECKING:
    from faultline.check.explore import CheckConfig
    from faultline.scenario.spec import Scenario

FORMAT = files.CHECKPOINT_FORMAT + "3"     # 3: paused subtrees (split.Paused)

__all__ = ["FORMAT", "MAX_BOUNDS", "MAX_NPV_LOCKS", "MAX_PREEMPTIONS", "MAX_SPLIT",
           "CheckpointError", "check_belongs", "check_resumable", "checksum", "dump_path",
           "load_path", "read", "run_header", "scenario_digest", "seal", "validate",
           "write_atomically"]

# ---------------------------------------------------------------- the DPOR path

def _tup(x: Any) -> Any:
    """JSON lists back into the tuples footprints are made of."""
    return tuple(_tup(v) for v in x) if isinstance(x, list) else x


def _acc(acc: Any) -> tuple[Any, ...]:
    return tuple((_tup(k), a) for k, a in acc)


def _wut_out(nodes: list[WutNode]) -> list[Any]:
    return [[n.tid, n.acc, _wut_out(n.children)] for n in nodes]


def _wut_in(data: list[Any]) -> list[WutNode]:
    return [WutNode(t, _acc(a), _wut_in(c)) for t, a, c in data]


def dump_path(nodes: list[Node]) -> list[dict[str, Any]]:
    """The path as JSON-able data (a node's guide is its chosen branch's children)."""
    return [{"enabled": n.enabled, "pending": [[t, a] for t, a in sorted(n.pending.items())],
             "chosen": n.chosen, "taken": [[t, a] for t, a in sorted(n.taken.items())],
             "sleep": [[t, a] for t, a in sorted(n.sleep.items())],
             "backtrack": sorted(n.backtrack), "done": sorted(n.done),
             "preemptions": n.preemptions, "last": n.last, "wut": _wut_out(n.wut),
             "vpre": sorted(n.vpre.items()), "cont": sorted(n.cont.items())}
            for n in nodes]


def load_path(data: list[dict[str, Any]]) -> list[Node]:
    """Inverse of dump_path.  A node's guide is its chosen branch's children; the node
    below keeps the wakeup tree it had (a copy, if they were one list before: insertions
    never descend into the branch being explored, so the two never need to agree)."""
    nodes = []
    for d in data:
        n = Node(list(d["enabled"]), {t: _acc(a) for t, a in d["pending"]},
                 chosen=d["chosen"], taken={t: _acc(a) for t, a in d["taken"]},
                 sleep={t: _acc(a) for t, a in d["sleep"]}, backtrack=set(d["backtrack"]),
                 done=set(d["done"]), preemptions=d["preemptions"], last=d["last"],
                 wut=_wut_in(d["wut"]), vpre=dict(d["vpre"]), cont=dict(d["cont"]))
        nodes.append(n)
    for n in nodes:
        if n.wut and n.wut[0].tid == n.chosen:
            n.guide = n.wut[0].children
    return nodes


# ---------------------------------------------------------------- header, seal, files

def run_header(scenario: Scenario, cfg: CheckConfig) -> dict[str, Any]:
    """What every checkpoint records of its run, so that --resume alone re-creates it:
    the scenario (its file and a digest of it), the faultline that wrote it, the policy
    and the exploration's settings."""
    return {"format": FORMAT, "faultline_version": __version__,
            "scenario": scenario.name, "scenario_path": scenario.source,
            "scenario_digest": scenario_digest(scenario),
            "policy": cfg.policy, "dpor": cfg.dpor,
            "preemptions": None if cfg.preemptions is None else list(cfg.preemptions),
            "max_executions": cfg.max_executions, "every_step": cfg.every_step,
            "npv_locks": cfg.npv_locks, "race_detect": cfg.race_detect,
            "cache_states": cfg.cache_states}


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def checksum(content: dict[str, Any]) -> str:
    """The seal over everything but the checksum field itself."""
    body = {k: v for k, v in content.items() if k != "checksum"}
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()


def seal(doc: dict[str, Any]) -> str:
    """The file's text: `format` and `checksum` first (a reader sees what it is at a
    glance), then the other fields in key order."""
    body = {k: doc[k] for k in sorted(doc) if k != "checksum"}
    head = {"format": body.pop("format", FORMAT), "checksum": checksum(doc)}
    return json.dumps({**head, **body}, separators=(",", ":"), allow_nan=False) + "\n"


def write_atomically(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Seal `doc` and write it through check.running.files (a unique temporary file in
    the same directory, fsync, rename): never half written, never through a symlink,
    never over a file that is not a checkpoint."""
    files.write_text(path, seal(doc), files.CHECKPOINT)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint file's contents (without its checksum), checked: the seal, then
    `validate`.  CheckpointError (naming the file, and the field) if anything is off;
    OSError if it cannot be read."""
    raw = Path(path).read_bytes()
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise CheckpointError(f"{path}: not a faultline DPOR checkpoint (JSON nested too "
                              f"deeply)") from None
    except ValueError as e:      # JSONDecodeError, UnicodeDecodeError, an int too long
        raise CheckpointError(f"{path}: not a faultline DPOR checkpoint (expected JSON: "
                              f"{e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("format"), str) \
            or not doc["format"].startswith(files.CHECKPOINT_FORMAT):
        raise CheckpointError(f"{path}: not a faultline DPOR checkpoint ({FORMAT})")
    if doc["format"] != FORMAT:
        raise CheckpointError(f"{path}: a checkpoint of layout {doc['format']}, which this "
                              f"faultline ({FORMAT}) cannot resume: start the exploration "
                              f"again")
    seal_ = doc.get("checksum")
    if not isinstance(seal_, str):
        raise CheckpointError(f"{path}: checksum: missing (every {FORMAT} checkpoint has "
                              f"one)")
    try:
        ok = seal_ == checksum(doc)
    except (ValueError, RecursionError):     # NaN, or nesting json.dumps cannot follow
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: checksum mismatch: the file was changed or "
                              f"damaged after faultline wrote it")
    del doc["checksum"]
    try:
        validate(doc)
    except SchemaError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply") from None
    return doc
