"""Small helpers to summarise runs and show tables without pandas.

:func:`table` is what notebooks display: a :class:`Table` renders as a Markdown table (a real
HTML table in the book, via the ``text/markdown`` output) and prints as plain text in a
terminal. :func:`format_table` is the plain-text form, for logs and the command line.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

__all__ = ["mean_sd_se", "format_table", "pm", "Table", "table", "MathLine", "math_line", "Tex"]


def mean_sd_se(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (n - 1), standard error and n; sd and se are None for n < 2."""
    v = [float(x) for x in values]
    n = len(v)
    if n == 0:
        return {"mean": None, "sd": None, "se": None, "n": 0}
    mean = sum(v) / n
    if n < 2:
        return {"mean": mean, "sd": None, "se": None, "n": n}
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    return {"mean": mean, "sd": sd, "se": sd / math.sqrt(n), "n": n}


def pm(mean: float | None, spread: float | None, digits: int = 1) -> str:
    """``"97.5 ± 0.3"`` (or just the mean when there is no spread)."""
    if mean is None:
        return "-"
    if spread is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 2) -> str:
    """A plain-text table of ``rows`` (dicts), one column per key; floats rounded to ``digits``."""
    if not rows:
        return "(no rows)"
    if columns is None:
        columns = []
        for r in rows:
            columns += [k for k in r if k not in columns]

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(str(c)), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    line = lambda items: "  ".join(s.ljust(w) for s, w in zip(items, widths)).rstrip()  # noqa: E731
    out = [line([str(c) for c in columns]), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    return "\n".join(out)


def _columns(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    out: list[str] = []
    for r in rows:
        out += [k for k in r if k not in out]
    return out


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|$"})


def _md_escape(text: str) -> str:
    return text.translate(_MD_SPECIAL).replace("\n", " ")


class Table:
    """Rows (dicts) shown as a table: Markdown in a notebook (``_repr_markdown_``), plain text
    otherwise (``str``). ``caption`` (plain text) is shown above the table, ``digits`` rounds
    floats, ``headers`` renames columns for display (underscores in names are shown as spaces), ``markdown`` names columns whose cells are
    MyST Markdown already (links, math) and must not be escaped.

    >>> print(Table([{"a": 1.234, "b": "x"}], digits=1))
    a    b
    ---  -
    1.2  x
    >>> print(Table([{"a": 1.234, "b": "x|y"}], digits=1)._repr_markdown_())
    | a | b |
    |---:|:---|
    | 1.2 | x\\|y |
    """

    def __init__(self, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 2,
                 caption: str | None = None, headers: dict[str, str] | None = None,
                 markdown: Sequence[str] = ()) -> None:
        self.rows = list(rows)
        self.columns = _columns(self.rows, columns)
        self.digits = digits
        self.caption = caption
        self.headers = dict(headers or {})
        self.markdown = set(markdown)

    def _cell(self, v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.{self.digits}f}"
        return str(v)

    def __str__(self) -> str:
        shown = [{self.headers.get(c, c): r.get(c) for c in self.columns} for r in self.rows]
        text = format_table(shown, [self.headers.get(c, c) for c in self.columns], self.digits)
        return f"{self.caption}\n{text}" if self.caption else text

    __repr__ = __str__

    def _numeric(self, c: str) -> bool:
        vals = [r.get(c) for r in self.rows if r.get(c) is not None]
        return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)

    def _repr_markdown_(self) -> str:
        if not self.rows:
            return "(no rows)"
        # a key like "mean_val_loss" is shown as "mean val loss", so that narrow columns wrap between words
        head = "| " + " | ".join(_md_escape(str(self.headers.get(c, c)).replace("_", " ")) for c in self.columns) + " |"
        align = "|" + "|".join("---:" if self._numeric(c) else ":---" for c in self.columns) + "|"
        body = []
        for r in self.rows:
            cells = [self._cell(r.get(c)) if c in self.markdown else _md_escape(self._cell(r.get(c)))
                     for c in self.columns]
            body.append("| " + " | ".join(cells) + " |")
        out = "\n".join([head, align, *body])
        return f"{_md_escape(self.caption)}\n\n{out}" if self.caption else out


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 2,
          caption: str | None = None, headers: dict[str, str] | None = None, markdown: Sequence[str] = ()) -> Table:
    """A :class:`Table` of ``rows``; the last expression of a notebook cell, or ``display(table(...))``."""
    return Table(rows, columns, digits, caption, headers, markdown)


class Tex(str):
    """A string that :class:`MathLine` sets as LaTeX (not as text): ``Tex(r"x H(x - t)")``."""


class MathLine:
    """Text and sympy objects shown as one line of text with inline mathematics
    (``_repr_markdown_``): strings are set as text, :class:`Tex` strings as LaTeX, everything else
    through ``sympy.latex``. Being a paragraph, it wraps on narrow screens. Prints as plain text.

    >>> print(MathLine("limit:", 2, Tex(r"\\alpha"))._repr_markdown_())
    limit: $2$ $\\alpha$
    """

    def __init__(self, *parts: Any) -> None:
        self.parts = parts

    def _repr_markdown_(self) -> str:
        import sympy  # noqa: PLC0415 (only the symbolic notebooks use this)

        out = []
        for p in self.parts:
            if isinstance(p, Tex):
                out.append(f"${p}$")
            elif isinstance(p, str):
                out.append(_md_escape(p))
            else:
                out.append(f"${sympy.latex(p)}$")
        return " ".join(out)

    def __repr__(self) -> str:
        return " ".join(str(p) for p in self.parts)


def math_line(*parts: Any) -> MathLine:
    """A :class:`MathLine`; display it (``display(math_line("A3 - A4 =", expr))``)."""
    return MathLine(*parts)
