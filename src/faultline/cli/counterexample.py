"""The counterexample file: what `check --trace-out` writes and `replay FILE` reads.

What lives here: `dump` (a RunRecord's fields, its events and our version, as the file's
text) and `load` (a file back into a RunRecord, every field checked first).  The file
is one JSON object: the RunRecord fields (scenario, policy, strategy, seed, schedule,
verdict, violation, version, scenario_path, options), `events` (the replayed trace, for
people and tools; replay ignores it) and `faultline_version`.
Compatibility: replay accepts only counterexamples written by this faultline version.
A schedule is a list of thread choices, and only the same model takes the same choices
through the same steps: under another version's model the same schedule may diverge,
or worse, replay without complaint into a different run, so it is refused with a
message saying which version wrote it.
Rule kept: nothing in a file reaches the checker unchecked (each field's type and
range; the schedule's length before it is expanded); a problem is a CounterexampleError
naming the file and the field.  Must not be added: replaying, rendering.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from faultline import __version__
from faultline.check.running.checkpoint import MAX_NPV_LOCKS
from faultline.check.running.schema import (
    SchemaError,
    array,
    boolean,
    field,
    integer,
    mapping,
    nullable,
    only_keys,
    string,
)
from faultline.rt.trace import Event, RunRecord, ScheduleTooLong, schedule_from_str

_RECORD = tuple(f.name for f in dataclasses.fields(RunRecord))
_KEYS = frozenset((*_RECORD, "events", "faultline_version"))
_EVENT = frozenset(f.name for f in dataclasses.fields(Event))
_MAX_COUNT = 2 ** 63 - 1


class CounterexampleError(ValueError):
    """A file replay cannot use; the message names the file and the field."""


def dump(record: RunRecord, events: list[Event]) -> str:
    """The counterexample file's text."""
    doc = {**dataclasses.asdict(record), "events": [e.to_json() for e in events],
           "faultline_version": __version__}
    return json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n"


def load(path: Path) -> RunRecord:
    """The RunRecord in counterexample file `path`; CounterexampleError if it is not one
    this faultline can replay, OSError if it cannot be read."""
    what = f"{path}: not a faultline counterexample file"
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise CounterexampleError(f"{what} (JSON nested too deeply)") from None
    except ValueError as e:   # UnicodeDecodeError, JSONDecodeError, an int too long
        raise CounterexampleError(f"{what} (expected JSON: {e})") from None
    if not isinstance(doc, dict):
        raise CounterexampleError(f"{what} (expected a JSON object)")
    try:
        _check(doc)
    except SchemaError as e:
        raise CounterexampleError(f"{path}: {e}") from None
    except RecursionError:
        raise CounterexampleError(f"{path}: nested too deeply") from None
    return RunRecord(**{k: doc[k] for k in _RECORD})


def _check(doc: dict[str, Any]) -> None:
    only_keys(doc, _KEYS, "")
    for key in ("faultline_version", "version"):
        made = string(field(doc, key), key)
        if made != __version__:
            raise SchemaError(f"{key}: written by faultline {made or '(unknown)'}; this is "
                              f"faultline {__version__}, which replays only its own "
                              f"counterexamples (another version's model may take the same "
                              f"schedule through different steps): replay it with that "
                              f"version, or run the check again with this one")
    string(field(doc, "scenario"), "scenario", nonempty=True)
    string(field(doc, "scenario_path"), "scenario_path")
    string(field(doc, "policy"), "policy", nonempty=True)
    string(field(doc, "strategy"), "strategy")
    nullable(integer, field(doc, "seed"), "seed", -_MAX_COUNT, _MAX_COUNT)
    schedule = string(field(doc, "schedule"), "schedule")
    try:
        schedule_from_str(schedule)       # no longer than rt.trace.MAX_SCHEDULE_STEPS
    except ScheduleTooLong as e:
        raise SchemaError(f"schedule: {e}, faultline's limit for any schedule") from None
    except ValueError:
        raise SchemaError("schedule: bad schedule: expected thread ids with optional repeat "
                          "counts, like '0*12,1,2*3'") from None
    string(field(doc, "verdict"), "verdict", ("pass", "violation", ""))
    v = nullable(mapping, field(doc, "violation"), "violation")
    if v is not None:
        only_keys(v, frozenset(("kind", "message", "thread", "step")), "violation.")
        string(field(v, "kind", "violation."), "violation.kind")
        string(field(v, "message", "violation."), "violation.message")
        nullable(string, field(v, "thread", "violation."), "violation.thread")
        integer(field(v, "step", "violation."), "violation.step", 0, _MAX_COUNT)
    _options(mapping(field(doc, "options"), "options"))
    if "events" in doc:
        _events(doc["events"])


# Each option a counterexample may carry, and its check.
_OPTIONS: dict[str, Any] = {
    "npv_locks": lambda v, n: integer(v, n, 1, MAX_NPV_LOCKS),
    "every_step": boolean,
    "race_detect": boolean,
    "preemptions": lambda v, n: integer(v, n, 0, _MAX_COUNT),
    "preemption_bound": lambda v, n: nullable(integer, v, n, 0, _MAX_COUNT),
    "shrunk_from_steps": lambda v, n: integer(v, n, 0, _MAX_COUNT),
    "shrunk_from_preemptions": lambda v, n: integer(v, n, 0, _MAX_COUNT),
    "shrink_runs": lambda v, n: integer(v, n, 0, _MAX_COUNT),
    "shrink_stopped": lambda v, n: string(v, n, ("executions", "seconds")),
    "run_seed": string,
    "portfolio_member": string,
}


def _options(options: dict[str, Any]) -> None:
    only_keys(options, frozenset(_OPTIONS), "options.")
    for key, value in options.items():
        _OPTIONS[key](value, f"options.{key}")


def _events(value: Any) -> None:
    for i, item in enumerate(array(value, "events")):
        e = mapping(item, f"events[{i}]")
        only_keys(e, _EVENT, f"events[{i}].")
        for key in ("step", "line"):
            if key in e:
                integer(e[key], f"events[{i}].{key}", 0, _MAX_COUNT)
        for key in ("thread", "kind", "what", "result", "file", "function"):
            if key in e:
                string(e[key], f"events[{i}].{key}")
