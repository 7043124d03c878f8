"""The false-alarm fuzz at scale: thousands of generated legal scenarios, both policies.

Prints scenarios, executions, verdicts (pass, violation, not-modelled, crash),
violations and crashes by kind, the failures grouped by their message with digits
and addresses blanked (one line per group: count, an example seed, the message), what
the scenarios exercised (scenario.generate.features) and the wall time.  With --save
DIR each failing scenario is written there as TOML with its replay commands.  Every
figure but the seconds is the same for the same arguments, whatever --jobs is.

    python bench/false_alarms.py                              # 2000 scenarios
    python bench/false_alarms.py --scenarios 5000 --jobs 2 --save /tmp/fuzz-findings
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from faultline.check.judging.falsealarms import FuzzReport, Verdict, fuzz_one
from faultline.scenario.generate import features, random_scenario


def _group(v: Verdict) -> str:
    """The failure's message with what varies from scenario to scenario blanked."""
    text = v.message.splitlines()[0] if v.message else ""
    text = re.sub(r"0x[0-9a-f]+", "ADDR", text)
    text = re.sub(r"\b(p|T|obj|page|f|img)\d+", r"\1N", text)
    text = re.sub(r"-?\d+", "N", text)
    return f"{v.status} {v.kind}: {text[:150]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=2000)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3, help="executions per strategy and policy")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--save", type=Path, default=None, help="directory for failing scenarios")
    ap.add_argument("--list", action="store_true", help="print every failing verdict")
    args = ap.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.scenarios)
    one = partial(fuzz_one, runs=args.runs, save_dir=args.save)
    t0 = time.perf_counter()
    report = FuzzReport()
    if args.jobs <= 1:
        for seed in seeds:
            report.merge(one(seed))
    else:
        with multiprocessing.Pool(args.jobs) as pool:
            for part in pool.imap(one, seeds, chunksize=8):     # in seed order
                report.merge(part)
    seconds = time.perf_counter() - t0
    shapes: Counter[str] = Counter()
    for seed in seeds:
        shapes += features(random_scenario(seed))

    counts = report.counts()
    print(f"scenarios {report.scenarios}  policies sbusy, xbusy  runs {args.runs} random "
          f"+ {args.runs} pct per policy")
    print(f"executions {report.executions}  seconds {seconds:.1f}  jobs {args.jobs}")
    print("verdicts (scenario x policy): " + ", ".join(
        f"{k} {counts[k]}" for k in ("pass", "violation", "not-modelled", "crash")))
    for key, n in sorted(counts.items()):
        if ":" in key:
            print(f"  {key}: {n}")
    nm = Counter(v.message for v in report.verdicts if v.status == "not-modelled")
    for message, n in nm.most_common():
        print(f"  not-modelled {n}: {message}")
    groups: dict[str, list[Verdict]] = {}
    for v in report.failures():
        groups.setdefault(_group(v), []).append(v)
    if groups:
        print("failures by message:")
    for key, vs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        seeds_of = sorted({str(v.seed) for v in vs}, key=lambda s: (len(s), s))
        print(f"  {len(vs):4d}  seeds {', '.join(seeds_of[:4])}  {key}")
    if args.list:
        for v in report.failures():
            print(f"{v.seed} {v.policy} {v.status} {v.kind} ({v.strategy} --seed {v.run}): "
                  f"{v.message}")
    print("shapes: " + ", ".join(f"{k} {n}" for k, n in sorted(shapes.items())))
    if args.save is not None:
        print(f"saved {len(report.saved)} scenarios under {args.save}")


if __name__ == "__main__":
    main()
