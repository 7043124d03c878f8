"""Chrome / Perfetto trace JSON of a simulated window: one track per CPU.

What lives here: `chrome_trace`, which turns the ledger's trace intervals
([cpu, name, t0_ns, t1_ns], already merged per CPU) into the Trace Event Format that
ui.perfetto.dev and chrome://tracing open: complete ("X") events in microseconds, a
process per point and a named thread per CPU.  Rule kept: same input, same bytes.
Must not be added: anything that decides what goes in the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def chrome_trace(events: Sequence[Sequence[Any]], title: str, ncpus: int) -> dict[str, Any]:
    """The trace document for one point (`title` names it in the UI)."""
    out: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": title}}]
    for cpu in range(ncpus):
        out.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": cpu,
                    "args": {"name": f"cpu{cpu}"}})
        out.append({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": cpu,
                    "args": {"sort_index": cpu}})
    for cpu, name, t0, t1 in events:
        out.append({"name": name, "cat": _category(name), "ph": "X", "pid": 1, "tid": cpu,
                    "ts": t0 / 1000, "dur": (t1 - t0) / 1000})
    return {"traceEvents": out, "displayTimeUnit": "ns",
            "otherData": {"source": "faultline sim", "point": title}}


def _category(name: str) -> str:
    if name.startswith("spin "):
        return "spin"
    if name.startswith("sleep "):
        return "off-cpu"
    return "idle" if name == "idle" else "work"
