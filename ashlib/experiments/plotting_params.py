"""Figures of the adaptive parameters over training (alpha, z_k, slope), for every experiment.

Input: the long-format rows of :func:`ashlib.analysis.trajectories.trajectory_rows` (keys
``epoch, site, quantity, mean, min, max, n`` plus the run's labels), e.g.
``Table1Result.trajectories()``. Figures are built without pyplot (no global state).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from ..analysis.trajectories import MOVE_THRESHOLD

__all__ = ["trajectory_figure"]

#: the scale each quantity is trained on (log for the positive ones), used for the y axis
_LOG = {"alpha", "slope"}


def trajectory_figure(rows: Sequence[dict[str, Any]], panel: Sequence[str] = ("quantity",),
                      line: Sequence[str] = ("site",), title: str | None = None, max_panels: int = 12,
                      panel_width: float = 3.2, panel_height: float = 2.4) -> Figure:
    """Small multiples of parameter trajectories: one panel per value of the ``panel`` keys, one line
    per value of the ``line`` keys, averaged over the other keys (seeds, folds).

    Each line is the mean over channels (geometric for alpha and slope) against the epoch, with the
    band between the smallest and the largest channel; epoch 0 is the start. A dotted band marks
    +- :data:`~ashlib.analysis.trajectories.MOVE_THRESHOLD` around the start of the first line: a
    trajectory inside it has not moved measurably, so an adaptive-vs-fixed verdict is not drawn.
    Alpha and slope are drawn on a log axis.

    Args:
        rows: trajectory rows (see the module docstring).
        panel: keys whose values make the panels (e.g. ``("student", "quantity")``).
        line: keys whose values make the lines within a panel (e.g. ``("site",)``).
        title: figure title.
        max_panels: draw at most this many panels (ValueError beyond, to keep figures readable).

    Raises:
        ValueError: no rows, a key missing from the rows, or more than ``max_panels`` panels.
    """
    if not rows:
        raise ValueError("rows is empty: no adaptive parameter was recorded")
    for key in (*panel, *line, "epoch", "quantity", "mean", "min", "max"):
        if key not in rows[0]:
            raise ValueError(f"key {key!r} is not in the trajectory rows; keys: {', '.join(rows[0])}")
    panels: dict[tuple, dict[tuple, dict[int, list[dict[str, Any]]]]] = {}
    for r in rows:
        p = tuple(r[k] for k in panel)
        ln = tuple(r[k] for k in line)
        panels.setdefault(p, {}).setdefault(ln, {}).setdefault(int(r["epoch"]), []).append(r)
    if len(panels) > max_panels:
        raise ValueError(f"{len(panels)} panels > max_panels={max_panels}; filter the rows or change `panel`")
    n = len(panels)
    cols = min(n, 3)
    nrows = (n + cols - 1) // cols
    fig = Figure(figsize=(panel_width * cols, panel_height * nrows + (0.4 if title else 0.0)), layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, (pkey, lines) in zip(axes.flat, panels.items()):
        quantity = next(iter(next(iter(lines.values())).values()))[0]["quantity"]
        log = quantity in _LOG
        first_start = None
        for i, (lkey, by_epoch) in enumerate(lines.items()):
            epochs = sorted(by_epoch)
            mean = [sum(r["mean"] for r in by_epoch[e]) / len(by_epoch[e]) for e in epochs]
            lo = [min(r["min"] for r in by_epoch[e]) for e in epochs]
            hi = [max(r["max"] for r in by_epoch[e]) for e in epochs]
            color = f"C{i % 10}"
            ax.plot(epochs, mean, color=color, lw=1.2, label=" ".join(map(str, lkey)))
            if any(h > m_lo for h, m_lo in zip(hi, lo)):
                ax.fill_between(epochs, lo, hi, color=color, alpha=0.15, lw=0)
            if first_start is None:
                first_start = mean[0]
        if first_start is not None:
            if log and first_start > 0:
                band = (first_start * math.exp(-MOVE_THRESHOLD), first_start * math.exp(MOVE_THRESHOLD))
            else:
                band = (first_start - MOVE_THRESHOLD, first_start + MOVE_THRESHOLD)
            ax.axhspan(*band, color="0.5", alpha=0.12, lw=0, hatch="..")
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity + (" (log scale)" if log else ""))
        ax.set_title(", ".join(map(str, pkey)), fontsize=9)
        if len(lines) <= 8:
            ax.legend(fontsize=6, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
