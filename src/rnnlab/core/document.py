"""A small document model for the report, its Markdown and self-contained HTML
rendering, how the report writes numbers, and the prose templates that fill it.

It sits in core so that each task (a lower layer than ``rnnlab.study``) can write its
own section: headings, paragraphs, bullet lists, tables and figures go into a
:class:`Document`; sentences come from Jinja2 macros in a template file beside the code
that uses them (:class:`Prose`); numbers go through the formatting functions below, so
every section writes them alike ("missing" where a run is not finished).
"""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

MISSING = "missing"  # a number whose run is not finished (or unreadable)
NOT_REPORTED = "not reported"  # a number the exercise did not give


# -- how the report writes numbers ---------------------------------------------------
def pct(value: float | None, missing: str = MISSING) -> str:
    """A percentage (or points) with two decimals."""
    return missing if value is None else f"{value:.2f}"


def signed(value: float | None, missing: str = MISSING) -> str:
    return missing if value is None else f"{value:+.2f}"


def fixed(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def thousands(value: int) -> str:
    return f"{value:,}"


def mean_std(values: Sequence[float], expected: int) -> str:
    """Mean ± sample standard deviation over seeds, with how many of them finished."""
    if not values:
        return MISSING
    n = f"n={len(values)}" + (f" of {expected}" if len(values) < expected else "")
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f} ({n})"


def difference(value: float | None, ref: float | None, ran: bool) -> str:
    """rnnlab minus the reference; "—" where the experiment was not part of the run."""
    if ref is None:
        return NOT_REPORTED
    return signed(value - ref) if value is not None else (MISSING if ran else "—")


def target_cell(target: float | None, value: float | None) -> str:
    """The target with whether ``value`` meets it (nothing said while ``value`` is missing)."""
    if target is None:
        return "—"
    if value is None:
        return f"{target:.2f}"
    return f"{target:.2f}" + (" (met)" if value >= target - 1e-9 else " (not met)")


def seconds(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1f}"


def binomial_se(percent: float, n: int) -> float:
    """Standard error, in points, of an accuracy measured on ``n`` independent items: the
    noise the report quotes beside a single run's number (NaN without items)."""
    p = percent / 100
    return 100 * math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else math.nan


# -- blocks ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    level: int
    text: str

    def markdown(self, base: Path) -> list[str]:
        return ["#" * self.level + " " + self.text, ""]

    def html(self) -> str:
        return f"<h{self.level}>{html.escape(self.text)}</h{self.level}>"


@dataclass(frozen=True)
class Paragraph:
    text: str

    def markdown(self, base: Path) -> list[str]:
        return [self.text, ""]

    def html(self) -> str:
        return f"<p>{html.escape(self.text)}</p>"


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]

    def markdown(self, base: Path) -> list[str]:
        return [f"- {item}" for item in self.items] + [""]

    def html(self) -> str:
        return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in self.items) + "</ul>"


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    right: frozenset[int]  # the columns aligned right (numbers)

    def markdown(self, base: Path) -> list[str]:
        def cell(text: str) -> str:
            return text.replace("|", "\\|")

        rule = "|".join("---:" if i in self.right else "---" for i in range(len(self.header)))
        return ["| " + " | ".join(cell(h) for h in self.header) + " |", "|" + rule + "|",
                *["| " + " | ".join(cell(c) for c in row) + " |" for row in self.rows], ""]

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(self.html_cell(i, c) for i, c in enumerate(row)) + "</tr>"
                       for row in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def html_cell(self, column: int, text: str) -> str:
        classes = " ".join(name for name, on in (("r", column in self.right),
                                                 ("missing", MISSING in text)) if on)
        opening = f'<td class="{classes}">' if classes else "<td>"
        return f"{opening}{html.escape(text)}</td>"


@dataclass(frozen=True)
class Figure:
    path: Path  # a PNG inside the report's folder
    caption: str

    def markdown(self, base: Path) -> list[str]:
        return [f"![{self.caption}]({self.path.relative_to(base).as_posix()})", "",
                f"*{self.caption}*", ""]

    def html(self) -> str:  # the image embedded, so the page travels alone
        data = base64.b64encode(self.path.read_bytes()).decode("ascii")
        return (f'<figure><img alt="{html.escape(self.caption)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(self.caption)}</figcaption></figure>")


Block = Heading | Paragraph | Bullets | Table | Figure


@dataclass
class Document:
    """The report as a list of blocks, written top to bottom."""

    blocks: list[Block] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(Heading(level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(Paragraph(text))

    def bullets(self, items: Iterable[str]) -> None:
        items = tuple(items)
        if items:  # an empty list writes nothing
            self.blocks.append(Bullets(items))

    def table(self, header: Sequence[str], rows: Iterable[Sequence[str]],
              right: Iterable[int] = ()) -> None:
        self.blocks.append(Table(tuple(map(str, header)),
                                 tuple(tuple(map(str, row)) for row in rows), frozenset(right)))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(Figure(path, caption))


def render_markdown(doc: Document, base: Path) -> str:
    """Markdown, figures linked relative to ``base`` (the folder report.md is written to)."""
    lines = [line for block in doc.blocks for line in block.markdown(base)]
    return "\n".join(lines).rstrip() + "\n"


CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #ccc; } h2 { border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; } th { background: #f3f3f3; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
td.missing { color: #b00; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
"""


def render_html(doc: Document, title: str) -> str:
    """One self-contained HTML page: styles inline, figures embedded."""
    head = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>")
    return "\n".join([head, *(block.html() for block in doc.blocks), "</body></html>\n"])


# -- prose templates -------------------------------------------------------------------
FILTERS = {"pct": pct, "signed": signed, "fixed": fixed, "thousands": thousands,
           "target": target_cell}


def template_environment() -> jinja2.Environment:
    # Plain text out (Markdown and HTML escape it themselves); an unknown name fails loudly.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters.update(FILTERS)
    return env


class Prose:
    """The sentences of one part of the report: Jinja2 macros in one template file beside
    the code that uses them, so wording is read and changed apart from the logic.

    ``say(macro, **values)`` renders one macro to one paragraph, list item or caption.
    Line breaks and indentation inside a macro collapse to single spaces, so a template
    wraps its sentences freely. The filters of :data:`FILTERS` write numbers.
    """

    def __init__(self, path: Path):
        self.path = path
        self.loaded: Any = None  # the template's module, read on first use

    def say(self, macro: str, **values: Any) -> str:
        if self.loaded is None:
            source = self.path.read_text(encoding="utf-8")
            self.loaded = template_environment().from_string(source).module
        write = getattr(self.loaded, macro, None)
        if not callable(write):
            known = sorted(name for name in vars(self.loaded) if not name.startswith("_"))
            raise KeyError(f"{self.path.name} has no macro {macro!r}; it has {', '.join(known)}")
        return " ".join(str(write(**values)).split())
