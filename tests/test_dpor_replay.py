"""DPOR's shortcuts over a replayed prefix change nothing: kept nodes (Node.replayable)
and trace names carried from the previous run (_trace_key) give the exploration that
recording every node afresh and naming every trace from scratch gives."""

from __future__ import annotations

from typing import Any

import pytest

from faultline.check.explore import build_execution
from faultline.check.search import dpor as D
from faultline.rt.execution import Execution, Hooks, Thread
from faultline.scenario.loader import load_scenario


def _record_every_node(self: D._PathStrategy, ex: Execution, enabled: list[Thread]) -> Thread:
    tid = self._record(ex, ex.steps, [t.tid for t in enabled])
    return next(t for t in enabled if t.tid == tid)


def _fresh_names(steps: list[D.Step], clocks: list[dict[int, int]], names: list[Any]) -> int:
    return _trace_key(steps, clocks, [])


_trace_key = D._trace_key


def _explore(name: str, **kw: Any) -> tuple[Any, ...]:
    s = load_scenario(name)
    shares: list[float] = []

    def make(rec: Hooks) -> Execution:
        return build_execution(s, "sbusy", rec, [rec])[0]

    r = D.explore(make, keep_schedules=True, max_executions=60,
                  between=lambda nodes, res, n: shares.append(res.explored_share), **kw)
    return (r.executions, r.sleep_blocked, r.steps, r.exhaustive, r.trace_keys,
            r.schedules, r.cut_schedules, r.cache_hits, shares)


@pytest.mark.parametrize("kw", [{"optimal": True}, {"bound": 1},
                                {"bound": 2, "cache_states": True}])
@pytest.mark.slow
def test_replay_shortcuts_change_no_result(monkeypatch: pytest.MonkeyPatch,
                                           kw: dict[str, Any]) -> None:
    fast = _explore("rw-race-top", **kw)
    monkeypatch.setattr(D._PathStrategy, "choose", _record_every_node)
    monkeypatch.setattr(D, "_trace_key", _fresh_names)
    assert _explore("rw-race-top", **kw) == fast
