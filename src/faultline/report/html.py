"""HTML building blocks for the report page: escaping, elements, tables, images, terminal text.

What lives here: `Html` (a string already safe to paste into a page) and the functions
that make it: `esc`, `el` (one element), `table`, `image` (a file embedded as a data
URI, so the page needs nothing beside it to show its pictures), `link` (a relative
link to a file beside the page) and `terminal` (a rich renderable printed as it looks
on a terminal, colours kept, in a <pre>).

Rule kept: every piece of text that is not `Html` is escaped on the way in, so a
scenario name or a violation message can never become markup; nothing here reaches
the network (no external URL is ever loaded, only linked to).  Must not be added:
knowledge of faultline's results (report.page's) or scripts.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from rich.console import Console

__all__ = ["Html", "el", "esc", "image", "join", "link", "table", "terminal"]

# C0 controls other than tab and newline, and lone surrogates, are not allowed in HTML text.
_NOT_HTML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_MIME = {".png": "image/png", ".svg": "image/svg+xml"}


class Html(str):
    """Text that is already HTML: pasted as is, never escaped again."""

    __slots__ = ()


def esc(text: str | Html) -> Html:
    """`text` as HTML: escaped (quotes too, so it is safe in attributes) unless it
    already is HTML."""
    if isinstance(text, Html):
        return text
    return Html(html.escape(_NOT_HTML.sub("\ufffd", str(text)), quote=True))


def join(parts: Iterable[str | Html], sep: str = "\n") -> Html:
    """The parts, each escaped unless HTML, joined by `sep` (plain HTML)."""
    return Html(sep.join(esc(p) for p in parts))


def el(tag: str, body: str | Html | Iterable[str | Html] = "", **attrs: str | None) -> Html:
    """`<tag attrs>body</tag>`; attribute `class_` is `class`; a None attribute is left out."""
    content = esc(body) if isinstance(body, str) else join(body, "")
    shown = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"'
                    for k, v in attrs.items() if v is not None)
    return Html(f"<{tag}{shown}>{content}</{tag}>")


def table(headers: Sequence[str], rows: Iterable[Sequence[str | Html]], *,
          caption: str | Html | None = None, numeric: Iterable[int] = (),
          class_: str | None = None) -> Html:
    """A table; columns at the indices in `numeric` are right-aligned."""
    right = set(numeric)

    def cell(tag: str, i: int, body: str | Html) -> Html:
        return el(tag, body, class_="num" if i in right else None)

    head = el("tr", [cell("th", i, h) for i, h in enumerate(headers)])
    body = [el("tr", [cell("td", i, c) for i, c in enumerate(row)]) for row in rows]
    parts = ([el("caption", caption)] if caption is not None else []) + [
        el("thead", [head]), el("tbody", body)]
    return el("table", parts, class_=class_)


def image(path: Path, alt: str, *, class_: str | None = None) -> Html:
    """The PNG or SVG at `path`, embedded in an <img> as a data URI."""
    mime = _MIME[path.suffix.lower()]
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return Html(f'<img src="data:{mime};base64,{data}" alt="{esc(alt)}"'
                + (f' class="{esc(class_)}"' if class_ else "") + ">")


def link(href: str, text: str | Html) -> Html:
    """A link to `href`, a path relative to the page."""
    return el("a", text, href=href)


def terminal(render: Callable[[Console], None], width: int) -> Html:
    """What `render` prints on a `width`-column terminal with colours, as a <pre>."""
    console = Console(file=io.StringIO(), record=True, width=width, color_system="truecolor",
                      force_terminal=True, highlight=False)
    render(console)
    # rich escapes the text itself; the format must hold no other braces.
    return Html(console.export_html(inline_styles=True,
                                    code_format='<pre class="term"><code>{code}</code></pre>'))
