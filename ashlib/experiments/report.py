"""Small helpers to summarise runs and print tables without pandas."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

__all__ = ["mean_sd_se", "format_table", "pm"]


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
