"""A tiny document model (sections of paragraphs, bullet lists, tables, figures) rendered two ways:
report.md (images linked from plots/) and a self-contained report.html (images inlined as base64
data URIs, inline CSS, no external assets)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    highlight: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells shown bold
    note: str = ""


@dataclass
class Figure:
    path: str  # relative to the report folder, e.g. "plots/curves__intra.png"
    caption: str


@dataclass
class Bullets:
    items: list[str]


Block = str | Table | Figure | Bullets


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_markdown(t: Table) -> str:
    rows = [[("**" + _md_cell(c) + "**") if (i, j) in t.highlight and c not in ("", "—") else _md_cell(c)
             for j, c in enumerate(r)] for i, r in enumerate(t.rows)]
    body = tabulate(rows, headers=[_md_cell(c) for c in t.columns], tablefmt="pipe",
                    disable_numparse=True, stralign="left")
    out = [f"**{t.title}**", "", body] if t.title else [body]
    if t.note:
        out += ["", f"_{t.note}_"]
    return "\n".join(out)


def to_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += ["#" * s.level + " " + s.title, ""]
        for b in s.blocks:
            if isinstance(b, Table):
                out += [table_markdown(b), ""]
            elif isinstance(b, Figure):
                out += [f"![{b.caption}]({b.path})", "", f"_{b.caption}_", ""]
            elif isinstance(b, Bullets):
                out += [f"- {i}" for i in b.items] + [""]
            else:
                out += [str(b), ""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; padding-bottom: .15em; margin-top: 2em; }
h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0 1.2em 0; font-size: 0.92em; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
td.hl { font-weight: 700; background: #fff3c4 !important; }
p.note { color: #555; font-size: .9em; margin-top: -.8em; }
figure { margin: 1em 0 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9em; }
ul { margin-top: .2em; }
nav ul { columns: 2; }
"""


def _slug(text: str, seen: dict[str, int]) -> str:
    base = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "section"
    while "--" in base:
        base = base.replace("--", "-")
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}-{n}"


def table_html(t: Table) -> str:
    e = html.escape
    out = ["<table>"]
    if t.title:
        out.append(f"<caption>{e(t.title)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for i, r in enumerate(t.rows):
        cells = []
        for j, c in enumerate(r):
            cls = ' class="hl"' if (i, j) in t.highlight else ""
            cells.append(f"<td{cls}>{e(str(c))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    if t.note:
        out.append(f'<p class="note">{e(t.note)}</p>')
    return "\n".join(out)


def _img_html(f: Figure, root: Path) -> str:
    data = base64.b64encode((root / f.path).read_bytes()).decode("ascii")
    e = html.escape
    return (f'<figure><img alt="{e(f.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{e(f.caption)}</figcaption></figure>")


def to_html(title: str, sections: list[Section], root: Path) -> str:
    """`root` is the folder the figures' relative paths point into (read and inlined)."""
    e = html.escape
    seen: dict[str, int] = {}
    ids = [_slug(s.title, seen) for s in sections]
    nav = "".join(f'<li><a href="#{i}">{e(s.title)}</a></li>' for s, i in zip(sections, ids) if s.level == 2)
    body = [f"<h1>{e(title)}</h1>", f"<nav><ul>{nav}</ul></nav>"]
    for s, sid in zip(sections, ids):
        body.append(f'<h{s.level} id="{sid}">{e(s.title)}</h{s.level}>')
        for b in s.blocks:
            if isinstance(b, Table):
                body.append(table_html(b))
            elif isinstance(b, Figure):
                body.append(_img_html(b, root))
            elif isinstance(b, Bullets):
                body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
            else:
                body.append(f"<p>{e(str(b))}</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
