"""The Promela model of the fault path: its files, and what each scenario and policy is.

What lives here: the scenarios the model has (`SCENARIOS`: catalog name, Promela file,
thread names in spawn order, coverage probes), the compile-time switches that make each
faultline policy (`SWITCHES`) or the reason a policy has none (`NOT_EXPRESSIBLE`),
the generated top file (`generate`), and the copy of the model into a work directory.
The model itself is `model/*.pml` (package data; docs/spin.md describes it).
Rule kept: a policy maps to switches of the one model, never to an expected answer.
Must not be added: running spin (spin.run) or parsing pan (spin.pan).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from faultline.spin.errors import SpinUnsupported

MODEL_FILE = "vm_fault.pml"
TOP_FILE = "faultline.pml"          # the generated file spin is run on


@dataclass(frozen=True)
class SpinScenario:
    """A catalog scenario the Promela model has: its file, its threads (pan's process
    ids 2, 3, ... in this order) and the model paths it must reach under sbusy (the
    PROBE points of vm_fault.pml; faultline's scenario probes in the model's words)."""

    name: str
    file: str
    threads: tuple[str, ...]
    probes: tuple[str, ...]


SCENARIOS: dict[str, SpinScenario] = {s.name: s for s in (
    SpinScenario("rw-race-shadow", "rw-race-shadow.pml", ("R", "W"),
                 ("busy_sleep", "cow_copy", "cow_copy_sbusied_src", "sbusy_soft",
                  "soft_fast")),
    SpinScenario("shared-shadow-inval", "shared-shadow-inval.pml", ("P1", "P2", "P3"),
                 ("busy_sleep", "cow_copy", "cow_copy_sbusied_src", "remove_all",
                  "sbusy_soft", "soft_fast", "xbusy_soft")),
    SpinScenario("cow-rename", "cow-rename.pml", ("W1", "W3", "X"),
                 ("collapse", "collapse_free_shadowed", "collapse_rename",
                  "collapse_wait_busy", "cow_copy", "cow_copy_sbusied_src", "cow_rename",
                  "sbusy_soft", "xbusy_soft")),
)}

# Each faultline policy as -D switches of vm_fault.pml: the landed policies, and each
# seeded bug (kern.mutants) as D51474 with the one answer it overrides.
SWITCHES: dict[str, tuple[str, ...]] = {
    "xbusy": ("POLICY_XBUSY",),
    "sbusy": ("POLICY_SBUSY",),
    "sbusy-write": ("POLICY_SBUSY", "MUTANT_SBUSY_WRITE"),
    "rename-sbusied": ("POLICY_SBUSY", "MUTANT_RENAME_SBUSIED"),
    "no-shootdown": ("POLICY_SBUSY", "MUTANT_NO_SHOOTDOWN"),
    "rename-no-recheck": ("POLICY_SBUSY", "MUTANT_RENAME_NO_RECHECK"),
    "sbusy-renamable": ("POLICY_SBUSY", "MUTANT_SBUSY_RENAMABLE"),
    "first-m-early-release": ("POLICY_SBUSY", "MUTANT_FIRST_M_EARLY_RELEASE"),
    "early-unbusy-m-cow": ("POLICY_SBUSY", "MUTANT_EARLY_UNBUSY_M_COW"),
    "soft-fast-below-top": ("POLICY_SBUSY", "MUTANT_SOFT_FAST_BELOW_TOP"),
    "collapse-guesses-shadow": ("POLICY_SBUSY", "MUTANT_COLLAPSE_GUESSES_SHADOW"),
    "deallocate-before-unbusy": ("POLICY_SBUSY", "MUTANT_DEALLOCATE_BEFORE_UNBUSY"),
    "lost-wakeup": ("POLICY_SBUSY", "MUTANT_LOST_WAKEUP"),
}

# Policies the model cannot express, and why (docs/spin.md).
NOT_EXPRESSIBLE: dict[str, str] = {
    "busy-sleep-no-restart": (
        "it keeps a lookup made before a vmpfw sleep, which matters only if the map "
        "entry changes meanwhile; the Promela model has no munmap, mprotect or fork, "
        "and a process exits only from its one thread, so its switch would be the "
        "landed policy under another name"),
    "prefault-maps-invalid": (
        "vm_fault_prefault maps the neighbouring addresses, and the Promela model has "
        "one page index"),
    "early-valid-cow-copy": (
        "its consequence needs a fault that restarts after vm_fault_cow (a relookup "
        "that fails after pager I/O dropped the map); the Promela model has no pager "
        "I/O and no relookup, so the copy would only turn valid while still xbusied by "
        "a fault that always maps it"),
    "cow-map-unlocked": (
        "it needs a fork with INHERIT_SHARE between vm_fault_cow's racy ONEMAPPING read "
        "and pmap_enter; the Promela model has no fork"),
    "relookup-ignores-object": (
        "the Promela model has no vm_fault_relookup (no pager I/O drops the map before "
        "found:)"),
    "cow-chases-chain": (
        "it renames a page two objects below first_object; the Promela model's chain "
        "has two objects"),
    "sbusy-no-valid-recheck": (
        "its re-check matters only if a page can turn invalid, and the Promela model "
        "has no truncation or msync: no page ever does"),
}


def spin_scenario(name: str) -> SpinScenario:
    """The Promela model of catalog scenario `name`; SpinUnsupported names the others."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SpinUnsupported(
            f"scenario {name!r} has no Promela model; the SPIN cross-check supports "
            f"{', '.join(SCENARIOS)}") from None


def policy_switches(policy: str) -> tuple[str, ...]:
    """The -D switches of `policy`; SpinUnsupported says why a policy has none."""
    if policy in SWITCHES:
        return SWITCHES[policy]
    expressible = ", ".join(SWITCHES)
    if policy in NOT_EXPRESSIBLE:
        raise SpinUnsupported(
            f"policy {policy!r} is not expressible in the Promela model: "
            f"{NOT_EXPRESSIBLE[policy]}; expressible: {expressible}")
    raise SpinUnsupported(f"unknown policy {policy!r}; the Promela model expresses "
                          f"{expressible}")


def generate(scenario: str, policy: str, probes: bool = False) -> str:
    """The top file spin is run on: the policy's switches, then the scenario."""
    sc, switches = spin_scenario(scenario), policy_switches(policy)
    lines = [f"/* Generated by `faultline spin`: scenario {scenario}, policy {policy} "
             f"(docs/spin.md). */",
             "/* By hand: spin -a faultline.pml && gcc -O0 -DSAFETY -o pan pan.c && "
             "./pan -m100000 */"]
    lines += [f"#define {s}" for s in (*switches, *(("PROBES",) if probes else ()))]
    lines.append(f'#include "{sc.file}"')
    return "\n".join(lines) + "\n"


def model_files() -> dict[str, str]:
    """Every file of the Promela model, by name (package data)."""
    root = resources.files(__package__).joinpath("model")
    return {f.name: f.read_text(encoding="utf-8") for f in root.iterdir()
            if f.name.endswith(".pml")}


def write_model(dest: Path, scenario: str, policy: str, probes: bool = False) -> Path:
    """Write the model and the generated top file into `dest`; return the top file."""
    top = generate(scenario, policy, probes)      # validates both names first
    for name, text in model_files().items():
        (dest / name).write_text(text, encoding="utf-8")
    path = dest / TOP_FILE
    path.write_text(top, encoding="utf-8")
    return path


# The FreeBSD function (or the model's own part) each label of the Thread proctype in
# vm_fault.pml stands for, for showing a trail.
LABELS: dict[str, str] = {
    "NextOp": "next op", "OpDone": "next op", "ThreadEnd": "thread end",
    "Access": "trap: user access", "RetryFault": "vm_fault_lookup",
    "SoftFast": "vm_fault_soft_fast", "SoftFastFail": "vm_fault_soft_fast",
    "SlowPath": "vm_fault", "Walk": "vm_fault_object", "Next": "vm_fault_next",
    "BusySleep": "vm_fault_busy_sleep", "Zerofill": "vm_fault_zerofill",
    "Found": "found:", "FoundMap": "found:", "Cow": "vm_fault_cow",
    "Deallocate": "vm_fault_deallocate", "FaultDeallocated": "vm_fault_deallocate",
    "Exit": "vmspace_exit", "ObjDeallocate": "vm_object_deallocate",
}

_REGION = re.compile(r"^(?:inline\s+(\w+)|proctype\s+(\w+)|(\w+):\s*$)")


def model_regions() -> dict[str, list[tuple[int, str]]]:
    """For each model file, the lines where a named region starts: an inline (a
    FreeBSD function or primitive), a proctype, or a label of vm_fault() (RetryFault,
    Walk, Found, Cow...).  A trail step is shown with the region its line is in."""
    regions: dict[str, list[tuple[int, str]]] = {}
    for name, text in model_files().items():
        marks = []
        for i, line in enumerate(text.splitlines(), start=1):
            mo = _REGION.match(line)
            if mo and not line.startswith("end_"):
                marks.append((i, next(g for g in mo.groups() if g)))
        regions[name] = marks
    return regions
