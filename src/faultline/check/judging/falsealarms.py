"""False-alarm fuzzing: generated, legal scenarios must pass under every landed policy.

What lives here: `fuzz(seeds, ...)`, which checks `scenario.generate.random_scenario`
for each seed under each policy with a few seeded random and a few PCT executions
(`explore.check_scenario`, no shrinking), and classifies each scenario x policy as
`pass`, `violation` (a false alarm of the checker, or a model bug: every generated run
is legal), `not-modelled` (the model declined a legal path: neither) or `crash` (any
other exception: a bug in faultline, exit status 3 from the CLI); and `save`, which
writes a failing scenario as TOML, headed by what failed and the commands that replay
it, so it can be re-run with `faultline check FILE` or `faultline replay`.

Rules kept: a verdict depends only on (seed, policy, strategy, run seed): runs are
numbered `--seed K --runs 1` for K = 1..runs, so each is reproducible on its own from
the command line; and nothing here decides what counts as legal (the generator does)
or what a run's verdict is (explore does).  Must not be added: filtering violations by
kind or message, which would hide the false alarms this exists to find.
"""

from __future__ import annotations

import dataclasses
import shlex
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from faultline.check import explore
from faultline.check.explore import CheckConfig
from faultline.check.search.strategies import run_seed
from faultline.rt.sync import not_modelled
from faultline.rt.trace import schedule_to_str
from faultline.scenario.generate import random_scenario
from faultline.scenario.spec import Scenario
from faultline.scenario.toml_out import to_toml

Status = Literal["pass", "violation", "not-modelled", "crash"]
POLICIES: tuple[str, ...] = ("sbusy", "xbusy")
STRATEGIES: tuple[str, ...] = ("random", "pct")
_RANK: dict[str, int] = {"pass": 0, "not-modelled": 1, "violation": 2, "crash": 3}


@dataclass(frozen=True, slots=True)
class Verdict:
    """One scenario under one policy: how it ended and, unless it passed, the first
    run that did not (its strategy, run seed K and schedule, if one was taken)."""

    seed: int | str
    scenario: str
    policy: str
    status: Status
    executions: int
    kind: str = ""              # violation kind, or the exception's type for a crash
    message: str = ""
    strategy: str = ""
    run: int = 0                # the run's --seed (with --runs 1)
    schedule: str = ""
    detail: str = ""            # a crash's traceback

    def replay_lines(self, path: Path | str) -> list[str]:
        """Commands that re-run this verdict's failing run from the saved file."""
        if self.status == "pass":
            return []
        f = shlex.quote(str(path))
        lines = [f"faultline check {f} --policy {self.policy} --strategy {self.strategy} "
                 f"--seed {self.run} --runs 1 --no-shrink"]
        if self.schedule:
            lines.append(f"faultline replay --scenario {f} --policy {self.policy} "
                         f"--schedule {shlex.quote(self.schedule)}")
        return lines


@dataclass(slots=True)
class FuzzReport:
    """Every verdict, the executions run, and where failing scenarios were saved."""

    verdicts: list[Verdict] = field(default_factory=list)
    saved: dict[str, Path] = field(default_factory=dict)   # scenario name -> TOML

    @property
    def scenarios(self) -> int:
        return len({v.scenario for v in self.verdicts})

    @property
    def executions(self) -> int:
        return sum(v.executions for v in self.verdicts)

    def failures(self) -> list[Verdict]:
        """Violations and crashes: the verdicts a clean fuzz has none of."""
        return [v for v in self.verdicts if v.status in ("violation", "crash")]

    def counts(self) -> Counter[str]:
        """Verdicts by status, and violations and crashes by kind (`violation:memory`)."""
        out: Counter[str] = Counter(v.status for v in self.verdicts)
        out.update(f"{v.status}:{v.kind}" for v in self.failures())
        return out

    def merge(self, other: FuzzReport) -> None:
        self.verdicts += other.verdicts
        self.saved.update(other.saved)


def check_policy(s: Scenario, seed: int | str, policy: str, runs: int,
                 strategies: Sequence[str] = STRATEGIES, depth: int = 3) -> Verdict:
    """`runs` executions of `s` per strategy under `policy`, stopping at the first that
    does not pass (a NotModelled run ends that strategy's runs, not the others')."""
    worst = Verdict(seed, s.name, policy, "pass", 0)
    done = 0
    for strategy in strategies:
        for run in range(1, runs + 1):
            v = _one_run(s, seed, policy, strategy, run, depth)
            done += 1
            if v.status != "pass" and _RANK[v.status] > _RANK[worst.status]:
                worst = v
            if v.status != "pass":
                break
        if worst.status in ("violation", "crash"):
            break
    return dataclasses.replace(worst, executions=done)


def _one_run(s: Scenario, seed: int | str, policy: str, strategy: str, run: int,
             depth: int) -> Verdict:
    cfg = CheckConfig(policy=policy, strategy=strategy, runs=1, seed=run, depth=depth,
                      shrink=False)

    def verdict(status: Status, kind: str = "", message: str = "", schedule: str = "",
                detail: str = "") -> Verdict:
        return Verdict(seed, s.name, policy, status, 1, kind, message, strategy, run,
                       schedule, detail)
    try:
        r = explore.check_scenario(s, cfg)
    except Exception as exc:
        nm = not_modelled(exc)
        if nm is not None:
            return verdict("not-modelled", "NotModelled", str(nm))
        return verdict("crash", type(exc).__name__, str(exc), _crash_schedule(s, cfg),
                       "".join(traceback.format_exception(exc)))
    ce = r.counterexample
    if ce is None:
        return verdict("pass")
    viol = ce.violation or {}
    return verdict("violation", str(viol.get("kind", "")), str(viol.get("message", "")),
                   ce.schedule)


def _crash_schedule(s: Scenario, cfg: CheckConfig) -> str:
    """The schedule a crashing run took up to the crash (run again, the same way:
    check_scenario's run 0 under seed K), so replay reproduces it."""
    strategy = explore.make_strategy(cfg.strategy, run_seed(cfg.seed, 0), cfg.depth,
                                     s.step_bound)
    ex, _, _ = explore.build_execution(s, cfg.policy, strategy, [])
    try:
        ex.run()
    except Exception:
        return schedule_to_str(ex.schedule)
    return ""        # it did not crash again: no schedule to offer


def save(s: Scenario, verdicts: Sequence[Verdict], directory: Path | str) -> Path:
    """Write `s` as `directory/NAME.toml`, headed by a comment giving each failing
    verdict's status, kind, message and replay commands; returns the path."""
    path = Path(directory) / f"{s.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    head = [f"# {s.name}: generated scenario that failed the false-alarm fuzz"]
    for v in verdicts:
        if v.status == "pass":
            continue
        head.append(f"# {v.policy}: {v.status} {v.kind} ({v.strategy} run --seed {v.run})")
        head += [f"#   {line}" for line in v.message.splitlines() or [""]]
        head += [f"#   $ {line}" for line in v.replay_lines(path)]
    path.write_text("\n".join(head) + "\n\n" + to_toml(s), encoding="utf-8")
    return path


def fuzz_one(seed: int | str, policies: Sequence[str] = POLICIES, runs: int = 3,
             strategies: Sequence[str] = STRATEGIES, save_dir: Path | str | None = None,
             generate: Callable[[int | str], Scenario] = random_scenario,
             depth: int = 3) -> FuzzReport:
    """The fuzz of one seed: its scenario under each policy (see `fuzz`)."""
    s = generate(seed)
    report = FuzzReport([check_policy(s, seed, p, runs, strategies, depth) for p in policies])
    if save_dir is not None and report.failures():
        report.saved[s.name] = save(s, report.verdicts, save_dir)
    return report


def fuzz(seeds: Iterable[int | str], policies: Sequence[str] = POLICIES, runs: int = 3,
         strategies: Sequence[str] = STRATEGIES, save_dir: Path | str | None = None,
         generate: Callable[[int | str], Scenario] = random_scenario,
         depth: int = 3) -> FuzzReport:
    """Check the generated scenario of every seed under every policy: `runs` seeded
    executions per strategy (random, then PCT of depth `depth`).  Any violation or
    crash is a finding; with `save_dir`, its scenario is saved there as TOML."""
    report = FuzzReport()
    for seed in seeds:
        report.merge(fuzz_one(seed, policies, runs, strategies, save_dir, generate, depth))
    return report


__all__ = ["POLICIES", "STRATEGIES", "FuzzReport", "Verdict", "check_policy", "fuzz",
           "fuzz_one", "save"]
