"""The page builder: :class:`ReportDocument` writes the HTML page and the Markdown of the
report side by side, one block (heading, paragraph, box, list, table, figure) at a time.

The user's text (study names, file names, covariate names) is escaped in both: :func:`escape`
for HTML, :func:`md` for Markdown. The HTML page is self-contained: inline CSS, figures as
base64 PNG, no external resources.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from typing import Any

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#1d1d1d;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.scroll{max-width:100%;overflow-x:auto;margin:.8em 0}table{border-collapse:collapse;font-size:.86em}
p.caption{font-size:.9em;color:#333;margin:.8em 0 .2em}.small{font-size:.85em;color:#555}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.alert{border-left:5px solid #b2182b;background:#fbeaea;padding:.6em 1em;margin:1em 0}
.note{border-left:5px solid #c25e00;background:#fdf3e7;padding:.6em 1em;margin:1em 0}
.ok{border-left:5px solid #1b7837;background:#eaf5ec;padding:.6em 1em;margin:1em 0}
.answer{font-size:1.05em;background:#f4f7fb;border-left:5px solid #1b4f8a;padding:.8em 1em}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#333;margin-top:.4em}
code{background:#f4f4f4;padding:0 .25em}details{margin:.6em 0}
"""
#: Sets ``body[data-images-loaded]`` once the page has loaded (read by the browser test).
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.every(function (im) { return im.complete && im.naturalWidth > 0; });
  document.body.dataset.imagesLoaded = ok ? "true" : "false";
});
"""
#: A table cell that is right-aligned as a number.
_NUMERIC_CELL = re.compile(r"^[-0-9.\[\], n/a<>]+$")
#: "<" that would open raw HTML in Markdown (a tag, closing tag, comment, declaration or
#: autolink): CommonMark passes such HTML through to the page.
_MD_HTML_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def escape(text: Any) -> str:
    """``str(text)`` escaped for HTML text and attribute values.

    Examples
    --------
    >>> escape('<b>"A & B"</b>')
    '&lt;b&gt;&quot;A &amp; B&quot;&lt;/b&gt;'
    """
    return html.escape(str(text), quote=True)


def md(text: Any) -> str:
    """Text for the Markdown report: no raw HTML can come through.

    Every "<" that could open a tag, comment or autolink becomes ``&lt;`` (which Markdown shows
    as "<"); other text, e.g. "P(HR < 0.8)", stays as written.

    Examples
    --------
    >>> md("<script>alert(1)</script> P(HR < 0.8)")
    '&lt;script>alert(1)&lt;/script> P(HR < 0.8)'
    """
    return _MD_HTML_OPEN.sub("&lt;", str(text))


def md_line(text: Any) -> str:
    """:func:`md` on one line (a list item, heading or caption: a line break would end it).

    Examples
    --------
    >>> md_line("Trial A\\n<b>arm</b>")
    'Trial A &lt;b>arm&lt;/b>'
    """
    return " ".join(md(text).splitlines())


def md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown pipe table ("|" in cells escaped, line breaks as spaces).

    Examples
    --------
    >>> print(md_table(["Study", "HR"], [["A|B", "0.80"], ["C", "1.10"]]))
    | Study | HR |
    |---|---|
    | A\\|B | 0.80 |
    | C | 1.10 |
    """

    def cell(c: Any) -> str:
        return md(c).replace("|", "\\|").replace("\r", " ").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _html_cell(row: Sequence[str], j: int, *, first: bool, multiline: bool, notes_col: int | None) -> str:
    """Cell ``j`` of a row as ``<td>``; the notes go under the first cell."""
    c = row[j]
    text = "<br>".join(escape(part) for part in str(c).split("; ")) if multiline else escape(c)
    if first and notes_col is not None and row[notes_col]:
        notes = "<br>".join(escape(part) for part in str(row[notes_col]).split("; "))
        text += f'<br><span class="small">{notes}</span>'
    cls = ' class="num"' if _NUMERIC_CELL.match(str(c)) else ""
    return f"<td{cls}>{text}</td>"


def html_table(header: Sequence[str], body: Sequence[Sequence[str]], *, table_id: str | None = None,
               caption: str | None = None, multiline_cols: Iterable[int] = (),
               notes_col: int | None = None) -> str:
    """An HTML table in a horizontally scrolling box.

    Parameters
    ----------
    header, body
        The column names and the rows of cells.
    table_id
        The ``id`` of the ``<table>``.
    caption
        A paragraph above the table.
    multiline_cols
        Columns whose cells break at each "; ".
    notes_col
        A column written under the first cell in small type instead of as a column.

    Returns
    -------
    str
        The HTML.

    Examples
    --------
    >>> print(html_table(["Study", "HR"], [["A", "0.80"]], table_id="hrs", caption="Hazard ratios"))
    <p class="caption">Hazard ratios</p>
    <div class="scroll"><table id="hrs">
    <thead><tr><th>Study</th><th>HR</th></tr></thead><tbody>
    <tr><td>A</td><td class="num">0.80</td></tr>
    </tbody></table></div>
    """
    multi = set(multiline_cols)
    attrs = f' id="{escape(table_id)}"' if table_id else ""
    out = [f'<p class="caption">{escape(caption)}</p>'] if caption else []
    out.append(f'<div class="scroll"><table{attrs}>')
    shown = [j for j in range(len(header)) if j != notes_col]
    out.append("<thead><tr>" + "".join(f"<th>{escape(header[j])}</th>" for j in shown) + "</tr></thead><tbody>")
    for row in body:
        cells = [_html_cell(row, j, first=j == shown[0], multiline=j in multi, notes_col=notes_col) for j in shown]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


class ReportDocument:
    """Builds the HTML and the Markdown of the report side by side.

    Each method adds one block to both; :meth:`page` and :meth:`markdown` return the results.
    """

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        """A heading of ``level`` (1 to 3), with ``anchor`` as its HTML ``id``."""
        ident = f' id="{escape(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{ident}>{escape(text)}</h{level}>")
        self.md.append("#" * level + " " + md_line(text) + "\n")

    def para(self, text: str, cls: str | None = None) -> None:
        """A paragraph (``cls``: its HTML class)."""
        attr = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{attr}>{escape(text)}</p>")
        self.md.append(md(text) + "\n")

    def box(self, cls: str, title: str, items: Sequence[str]) -> None:
        """A coloured box (``alert``, ``note`` or ``ok``) with a title and a list; a quote in Markdown."""
        lis = "".join(f"<li>{escape(i)}</li>" for i in items)
        self.html.append(f'<div class="{cls}"><strong>{escape(title)}</strong><ul>{lis}</ul></div>')
        self.md.append(f"> **{md_line(title)}**\n>\n" + "\n".join(f"> - {md_line(i)}" for i in items) + "\n")

    def bullets(self, items: Sequence[str]) -> None:
        """A bulleted list (nothing when ``items`` is empty)."""
        if not items:
            return
        self.html.append("<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>")
        self.md.append("\n".join(f"- {md_line(i)}" for i in items) + "\n")

    def table(self, header: Sequence[str], body: Sequence[Sequence[str]], *, table_id: str | None = None,
              caption: str | None = None, collapsed: str | None = None,
              multiline_cols: Iterable[int] = (), notes_col: int | None = None) -> None:
        """A table (see :func:`html_table`); ``collapsed``: the HTML shows it folded under this summary."""
        block = html_table(header, body, table_id=table_id, caption=caption, multiline_cols=multiline_cols,
                           notes_col=notes_col)
        if collapsed:
            block = f"<details><summary>{escape(collapsed)}</summary>{block}</details>"
        self.html.append(block)
        if caption:
            self.md.append(f"*{md_line(caption)}*\n")
        self.md.append(md_table(header, body) + "\n")

    def figure(self, name: str, png: bytes, caption: str) -> None:
        """A figure: embedded as base64 PNG in the HTML, linked as figures/<name>.png in Markdown."""
        data = base64.b64encode(png).decode("ascii")
        self.html.append(
            f'<figure id="fig-{escape(name)}"><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)} (Vector version: figures/{escape(name)}.svg.)</figcaption></figure>"
        )
        self.md.append(f"![{name}](figures/{name}.png)\n\n*{md_line(caption)}* ([SVG](figures/{name}.svg))\n")

    def page(self, title: str) -> str:
        """The whole HTML page, titled ``title``."""
        body_html = "\n".join(self.html)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body data-images-loaded=\"pending\">\n{body_html}\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
        )

    def markdown(self) -> str:
        """The whole Markdown document."""
        return "\n".join(self.md)
