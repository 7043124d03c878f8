"""The simulator's output pieces: the SVG flame graph, the USL fit and the sweep PNGs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from faultline.report.flamegraph import MIN_FRAME_WIDTH, flamegraph_svg
from faultline.sim.usl import UslFit, fit_usl, usl_capacity

SVG = "{http://www.w3.org/2000/svg}"


# ---------------------------------------------------------------- flame graph

def _frames(svg: str) -> dict[str, tuple[float, float, str]]:
    """Frame tooltip name -> (rect width, rect y, tooltip), from <g class="frame">."""
    root = ET.fromstring(svg)
    out: dict[str, tuple[float, float, str]] = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") != "frame":
            continue
        tip = g.findtext(f"{SVG}title") or ""
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        name = tip.rsplit(" (", 1)[0]
        key = name if name not in out else f"{name}@{rect.get('y')}"
        out[key] = (float(rect.get("width", "0")), float(rect.get("y", "0")), tip)
    return out


FOLDED = {
    "vm_fault;vm_map_lookup;spin vm map": 300,
    "vm_fault;vm_page_busy;sleep vmpfw": 500,
    "vm_fault;vm_map_lookup": 100,
    "pmap_enter": 100,
}


def test_flamegraph_merges_frames_one_rect_per_frame_per_depth() -> None:
    frames = _frames(flamegraph_svg(FOLDED, "fault path"))
    assert set(frames) == {"all", "vm_fault", "vm_map_lookup", "spin vm map",
                           "vm_page_busy", "sleep vmpfw", "pmap_enter"}
    svg = flamegraph_svg(FOLDED, "fault path")
    rects = [r for r in ET.fromstring(svg).iter(f"{SVG}rect") if r.get("id") != "background"]
    assert len(rects) == 7


def test_flamegraph_widths_are_proportional_and_root_is_at_the_bottom() -> None:
    frames = _frames(flamegraph_svg(FOLDED, "t", width=1020))
    usable = 1000  # width less 10 px padding each side
    for name, ns in [("all", 1000), ("vm_fault", 900), ("vm_map_lookup", 400),
                     ("spin vm map", 300), ("sleep vmpfw", 500), ("pmap_enter", 100)]:
        assert frames[name][0] == pytest.approx(usable * ns / 1000, abs=0.01)
    assert frames["all"][1] > frames["vm_fault"][1] > frames["vm_map_lookup"][1]
    assert frames["vm_fault"][2] == "vm_fault (900 ns, 90.00%)"
    assert frames["sleep vmpfw"][2] == "sleep vmpfw (500 ns, 50.00%)"


def test_flamegraph_children_in_name_order_and_special_colours() -> None:
    svg = flamegraph_svg(FOLDED, "t")
    root = ET.fromstring(svg)
    x: dict[str, float] = {}
    fill: dict[str, str] = {}
    for g in root.iter(f"{SVG}g"):
        rect = g.find(f"{SVG}rect")
        if rect is None:
            continue
        name = (g.findtext(f"{SVG}title") or "").rsplit(" (", 1)[0]
        x[name] = float(rect.get("x", "0"))
        fill[name] = rect.get("fill", "")
    assert x["pmap_enter"] < x["vm_fault"]
    assert x["vm_map_lookup"] < x["vm_page_busy"]

    def rgb(name: str) -> tuple[int, ...]:
        return tuple(int(v) for v in fill[name][4:-1].split(","))
    r, g, b = rgb("spin vm map")
    assert b > r and g > r  # blue/aqua
    r, g, b = rgb("sleep vmpfw")
    assert b > g and r > g  # purple
    r, g, b = rgb("vm_fault")
    assert r >= 205 and b <= 55  # warm


def test_flamegraph_escapes_names_and_title() -> None:
    svg = flamegraph_svg({"a<&>b;c\"'d": 10}, "x <&> y", subtitle="s & t")
    root = ET.fromstring(svg)  # well-formed despite the specials
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "x <&> y" in texts and "s & t" in texts
    tips = [t.text for t in root.iter(f"{SVG}title")]
    assert "a<&>b (10 ns, 100.00%)" in tips
    assert "c\"'d (10 ns, 100.00%)" in tips
    assert "a<&>b" not in svg


def test_flamegraph_is_deterministic() -> None:
    a = flamegraph_svg(FOLDED, "t", subtitle="1 CPU")
    b = flamegraph_svg(dict(reversed(list(FOLDED.items()))), "t", subtitle="1 CPU")
    assert a == b


def test_flamegraph_omits_narrow_frames_and_labels() -> None:
    folded = {"big": 1_000_000, "tiny;deeper": 1}
    frames = _frames(flamegraph_svg(folded, "t", width=1020))
    assert "tiny" not in frames and "deeper" not in frames
    assert MIN_FRAME_WIDTH > 1000 * 1 / 1_000_001
    svg = flamegraph_svg({"a_rather_long_frame_name": 10, "b": 2000}, "t", width=220)
    labels = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert "a_rather_long_frame_name" not in labels  # 1 px wide: no label


def test_flamegraph_subtitle_defaults_to_total() -> None:
    root = ET.fromstring(flamegraph_svg(FOLDED, "t"))
    sub = next(t for t in root.iter(f"{SVG}text") if t.get("id") == "subtitle")
    assert sub.text == "1,000 ns of simulated CPU time in total"


@pytest.mark.parametrize("folded", [{}, {"a;b": 0}, {"a": -5}])
def test_flamegraph_no_samples(folded: dict[str, int]) -> None:
    svg = flamegraph_svg(folded, "empty")
    root = ET.fromstring(svg)
    assert "no samples" in [t.text for t in root.iter(f"{SVG}text")]
    assert not [g for g in root.iter(f"{SVG}g") if g.get("class") == "frame"]


# ---------------------------------------------------------------- USL

NS = [1, 2, 4, 8, 16, 26, 52, 78, 104]


def test_usl_recovers_exact_parameters() -> None:
    fit = fit_usl([(n, 2500.0 * usl_capacity(n, 0.05, 0.001)) for n in NS])
    assert isinstance(fit, UslFit)
    assert fit.sigma == pytest.approx(0.05, abs=1e-9)
    assert fit.kappa == pytest.approx(0.001, abs=1e-9)
    assert fit.n_max == pytest.approx((0.95 / 0.001) ** 0.5, rel=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.capacity(8) == pytest.approx(usl_capacity(8, 0.05, 0.001))


def test_usl_linear_data_has_no_contention_and_no_peak() -> None:
    fit = fit_usl([(n, 100.0 * n) for n in NS])
    assert fit is not None
    assert fit.sigma == 0 and fit.kappa == 0 and fit.n_max is None
    assert fit.r2 == pytest.approx(1.0)


def test_usl_clamps_to_nonnegative() -> None:
    # superlinear-ish data would want negative sigma
    fit = fit_usl([(1, 1.0), (2, 2.1), (4, 4.5), (8, 9.5)])
    assert fit is not None and fit.sigma >= 0 and fit.kappa >= 0
    # pure contention, no coherency: kappa comes out 0, sigma alone refitted
    fit = fit_usl([(n, usl_capacity(n, 0.2, 0.0)) for n in NS])
    assert fit is not None
    assert fit.kappa == pytest.approx(0.0, abs=1e-12)
    assert fit.sigma == pytest.approx(0.2, abs=1e-9) and fit.n_max is None


def test_usl_point_order_does_not_matter() -> None:
    pts = [(n, 10.0 * usl_capacity(n, 0.1, 0.002) * (1 + 0.01 * (n % 3))) for n in NS]
    assert fit_usl(pts) == fit_usl(list(reversed(pts)))


@pytest.mark.parametrize("points", [
    [(2, 2.0), (4, 3.5), (8, 6.0)],  # no N == 1
    [(1, 1.0), (2, 1.9)],  # two distinct N
    [(1, 1.0), (1, 1.1), (2, 1.9), (2, 1.8)],
    [(1, 0.0), (2, 1.9), (4, 3.0)],  # X(1) <= 0
    [],
])
def test_usl_needs_enough_points(points: list[tuple[int, float]]) -> None:
    assert fit_usl(points) is None


# ---------------------------------------------------------------- sweep plots

def _point(policy: str, cpus: int, workload: str = "kbuild") -> dict[str, Any]:
    x = 1000.0 * usl_capacity(cpus, 0.1 if policy == "xbusy" else 0.02, 0.001)
    return {
        "workload": workload, "policy": policy, "cpus": cpus, "throughput": x,
        "offcpu_share": {"vmpfw": 0.01 * cpus, "swread": 0.005},
        "spin_share": {"vm map": 0.002 * cpus},
        "top_lock": "vm object",
        "lock_wait_ns": {"vm object": 5000 * cpus, "vm map": 300, "pvh": 0,
                         f"page {policy}": 100},
    }


@pytest.mark.slow
def test_write_sim_plots_writes_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from faultline.report.sim_plots import write_sim_plots

    points = [_point(pol, n) for pol in ("xbusy", "sbusy") for n in (1, 4, 16)]
    paths = write_sim_plots(points, tmp_path / "plots")
    names = [p.name for p in paths]
    assert names == ["kbuild-locks.png", "kbuild-throughput.png", "kbuild-waiting.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = write_sim_plots(points, tmp_path / "again")
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]


def test_write_sim_plots_odd_workload_names_and_no_lock_waits(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from faultline.report.sim_plots import write_sim_plots

    points = [dict(_point("xbusy", n, workload="a/b c"), lock_wait_ns={}, offcpu_share={})
              for n in (1, 2, 3)]
    paths = write_sim_plots(points, tmp_path)
    assert len(paths) == 3 and all(p.parent == tmp_path for p in paths)
    assert all(p.name.startswith("a_b_c-") for p in paths)


def test_write_sim_plots_empty_and_duplicates(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from faultline.report.sim_plots import write_sim_plots

    assert write_sim_plots([], tmp_path / "none") == []
    assert not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="two points"):
        write_sim_plots([_point("xbusy", 1), _point("xbusy", 1)], tmp_path)
