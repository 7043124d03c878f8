"""Flame graphs for the simulator: folded stacks of simulated CPU time drawn as one SVG.

What lives here: `flamegraph_svg`, which merges folded stacks ("root;frame;...;leaf" ->
nanoseconds) into a tree and lays it out root at the bottom, one rectangle per merged
frame per depth, width proportional to time, children in name order, each frame with a
"frame (N ns, P%)" tooltip.  Lock spinning ("spin ...") is drawn in blue, off-CPU sleeping
("sleep ...") in purple, everything else in warm colours picked by a crc32 of the name.

Rule kept: a pure function of its arguments; the same input gives a byte-identical SVG
(no clock, no randomness, no `hash()`), and every user-supplied string is XML-escaped.
Must not be added: scripts, external resources, or running the simulator.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

__all__ = ["MIN_FRAME_WIDTH", "flamegraph_svg"]

MIN_FRAME_WIDTH = 0.1
"""Frames narrower than this many pixels (and so all their descendants) are not drawn."""

_FRAME_H = 16
_FONT = 12
_CHAR_W = 0.59 * _FONT  # average Verdana advance at _FONT px
_XPAD = 10
_TOP = 56  # title and subtitle
_BOTTOM = 10
_ROOT = "all"

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _esc(text: str) -> str:
    """`text` safe inside XML character data and double- or single-quoted attributes."""
    text = _NOT_XML.sub("\ufffd", text)
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


@dataclass
class _Node:
    name: str
    value: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def _merge(folded: dict[str, int]) -> _Node:
    """The call tree: stacks sharing a prefix share nodes; weights add up the path."""
    root = _Node(_ROOT)
    for stack, weight in folded.items():
        if weight <= 0:
            continue
        root.value += weight
        node = root
        for frame in stack.split(";"):
            frame = frame.strip()
            if not frame:
                continue
            node = node.children.setdefault(frame, _Node(frame))
            node.value += weight
    return root


def _colour(name: str) -> str:
    """A stable fill: blue/aqua for spinning, purple for sleeping, warm otherwise."""
    h = zlib.crc32(name.encode("utf-8", "surrogatepass"))
    v1, v2, v3 = (((h >> s) & 0xFF) / 255 for s in (0, 8, 16))
    if name.startswith("spin "):
        r, g, b = 40 + 50 * v1, 150 + 60 * v2, 200 + 55 * v3
    elif name.startswith("sleep "):
        r, g, b = 140 + 50 * v1, 80 + 40 * v2, 190 + 60 * v3
    else:
        r, g, b = 205 + 50 * v1, 230 * v2, 55 * v3
    return f"rgb({round(r)},{round(g)},{round(b)})"


def _label(name: str, width: float) -> str:
    """The text that fits in `width` px: the whole name, a ".."-cut prefix, or nothing."""
    fits = int((width - 6) / _CHAR_W)
    if fits < 3:
        return ""
    if len(name) <= fits:
        return name
    return name[: fits - 2] + ".."


def _svg(width: int, height: int, body: list[str], title: str, subtitle: str) -> str:
    head = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">',
        "<style>text { font-family: Verdana, sans-serif; } "
        "g.frame:hover rect { stroke: black; stroke-width: 0.5; }</style>",
        f'<rect id="background" x="0" y="0" width="{width}" height="{height}" '
        'fill="rgb(248,248,240)"/>',
        f'<text x="{width / 2:.2f}" y="24" font-size="17" text-anchor="middle">'
        f"{_esc(title)}</text>",
        f'<text id="subtitle" x="{width / 2:.2f}" y="44" font-size="12" '
        f'text-anchor="middle" fill="rgb(80,80,80)">{_esc(subtitle)}</text>',
    ]
    return "\n".join([*head, *body, "</svg>"]) + "\n"


def flamegraph_svg(folded: dict[str, int], title: str, *, width: int = 1200,
                   subtitle: str = "") -> str:
    """A self-contained SVG flame graph of `folded` ("a;b;c" -> ns of simulated CPU time).

    The bottom frame, "all", is the total; non-positive weights and empty frame names are
    ignored.  The line under the title is `subtitle`, or the total time if none is given.
    With no positive weight the SVG says "no samples".
    """
    if width <= 2 * _XPAD:
        raise ValueError(f"width must be more than {2 * _XPAD} px, got {width}")
    root = _merge(folded)
    total = root.value
    if total <= 0:
        height = _TOP + 40
        body = [f'<text x="{width / 2:.2f}" y="{_TOP + 20}" font-size="{_FONT}" '
                'text-anchor="middle">no samples</text>']
        return _svg(width, height, body, title, subtitle)

    usable = width - 2 * _XPAD
    placed: list[tuple[int, float, float, _Node]] = []  # depth, x, w, node
    todo: list[tuple[int, float, _Node]] = [(0, float(_XPAD), root)]
    while todo:
        depth, x, node = todo.pop()
        w = node.value * usable / total
        if w < MIN_FRAME_WIDTH:
            continue
        placed.append((depth, x, w, node))
        child_x = x
        kids = [node.children[k] for k in sorted(node.children)]
        for kid in kids:
            todo.append((depth + 1, child_x, kid))
            child_x += kid.value * usable / total
    placed.sort(key=lambda p: (p[0], p[1]))

    max_depth = max(p[0] for p in placed)
    height = _TOP + (max_depth + 1) * _FRAME_H + _BOTTOM
    body: list[str] = []
    for depth, x, w, node in placed:
        y = height - _BOTTOM - (depth + 1) * _FRAME_H
        pct = 100 * node.value / total
        fill = "rgb(250,200,120)" if depth == 0 else _colour(node.name)
        body.append('<g class="frame">')
        body.append(f"<title>{_esc(node.name)} ({node.value} ns, {pct:.2f}%)</title>")
        body.append(f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{_FRAME_H - 1}" '
                    f'fill="{fill}" rx="2" ry="2"/>')
        label = _label(node.name, w)
        if label:
            body.append(f'<text x="{x + 3:.2f}" y="{y + _FRAME_H - 4}" '
                        f'font-size="{_FONT}">{_esc(label)}</text>')
        body.append("</g>")
    if not subtitle:
        subtitle = f"{total:,} ns of simulated CPU time in total"
    return _svg(width, height, body, title, subtitle)
