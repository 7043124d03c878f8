"""Checkpoints of a DPOR exploration: the path as JSON, written atomically.

What lives here: `dump_path`/`load_path` (the DPOR nodes, with their sleep sets,
backtrack sets and wakeup trees, to and from plain JSON data) and `write_atomically`.
A checkpoint is taken between two executions, so resuming re-runs nothing twice and
loses nothing: the exploration continues with exactly the prefix it would have taken.
Rule kept: plain data only (thread ids, footprint keys, counters); no model objects.
Must not be added: deciding when to checkpoint (the caller does, by wall clock).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultline.check.search.dpor import Node
from faultline.check.search.wakeup import WutNode

if TYPE_CHECKING:
    from faultline.check.explore import CheckConfig
    from faultline.scenario.spec import Scenario

FORMAT = "faultline-dpor-checkpoint/1"


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
                 wut=_wut_in(d["wut"]),
                 # Older checkpoints have neither: they kept no sleep sets under a bound.
                 vpre=dict(d.get("vpre", [])), cont=dict(d.get("cont", [])))
        nodes.append(n)
    for n in nodes:
        if n.wut and n.wut[0].tid == n.chosen:
            n.guide = n.wut[0].children
    return nodes


def run_header(scenario: Scenario, cfg: CheckConfig) -> dict[str, Any]:
    """What every checkpoint records of its run, so that --resume alone re-creates it:
    the scenario (and its file), the policy and the exploration's settings."""
    return {"format": FORMAT, "scenario": scenario.name, "scenario_path": scenario.source,
            "policy": cfg.policy, "dpor": cfg.dpor,
            "preemptions": None if cfg.preemptions is None else list(cfg.preemptions),
            "max_executions": cfg.max_executions, "every_step": cfg.every_step,
            "npv_locks": cfg.npv_locks, "race_detect": cfg.race_detect,
            "cache_states": cfg.cache_states}


def check_belongs(doc: dict[str, Any], scenario: Scenario, cfg: CheckConfig,
                  depth: int) -> None:
    """ValueError unless checkpoint `doc` is of `scenario` under cfg's policy, split at
    `depth` frozen nodes (0: one sequential exploration; check.search.split)."""
    if doc["scenario"] != scenario.name or doc["policy"] != cfg.policy:
        raise ValueError(f"checkpoint is for {doc['scenario']} under {doc['policy']}")
    split = doc.get("split", 0)
    if split != depth:
        raise ValueError(f"this checkpoint was split at {split} nodes, not {depth}: "
                         f"resume it with --split {split}")


def write_atomically(path: str | os.PathLike[str], doc: dict[str, Any]) -> None:
    """Write JSON to a temporary file and rename it over `path` (never half written)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True), encoding="utf-8")
    os.replace(tmp, p)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint file's contents; ValueError if it is not one."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not a faultline DPOR checkpoint ({FORMAT})")
    return doc
