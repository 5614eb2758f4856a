"""The one plotting style of the book and of ``ashlib``'s figures.

Every figure function of :mod:`ashlib.plotting` and :mod:`ashlib.experiments` draws inside
:func:`style` (a ``matplotlib.rc_context``), and every notebook calls :func:`use` once, so all
chapters share:

- the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), with a
  fixed colour per activation (:func:`color`), the same in every chapter;
- text at least the size of the book's body text when a figure is shown at its natural width
  (:data:`WIDTH` inches at :data:`DPI` dots per inch fit the page's content column);
- light grids, no top/right spines, legends without frames.

Helpers: :func:`legend_outside` puts a legend to the right of (or below) the data,
:func:`shared_norm` gives two compared panels one colour scale. Only matplotlib is imported.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterable, Iterator, TypeVar

__all__ = ["OKABE_ITO", "ACT_COLORS", "WIDTH", "DPI", "RC", "MAX_SERIES", "color", "use", "style",
           "styled", "legend_outside", "shared_norm", "footer"]

#: Okabe & Ito (2008), "Color Universal Design": eight colours, in the order of the cycle
OKABE_ITO = {
    "blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "vermillion": "#D55E00",
    "sky": "#56B4E9", "purple": "#CC79A7", "yellow": "#F0E442", "black": "#000000",
}

#: one colour per activation, the same in every chapter (keys: registry names and paper labels)
ACT_COLORS = {
    "relu": OKABE_ITO["orange"], "swish": OKABE_ITO["vermillion"], "silu": OKABE_ITO["vermillion"],
    "ash": OKABE_ITO["blue"], "leaky-ash": OKABE_ITO["green"], "fixed-ash-10": OKABE_ITO["sky"],
    "fixed-ash-50": OKABE_ITO["purple"], "fixed-ash-90": OKABE_ITO["black"],
    "sigmoid": OKABE_ITO["purple"], "agumbel": OKABE_ITO["blue"], "arelu": OKABE_ITO["green"],
    # the papers' labels of the same activations
    "ReLU": OKABE_ITO["orange"], "Swish": OKABE_ITO["vermillion"], "SiLU": OKABE_ITO["vermillion"],
    "ASH": OKABE_ITO["blue"], "L-ASH": OKABE_ITO["green"], "F-ASH-10": OKABE_ITO["sky"], "F-ASH-50": OKABE_ITO["purple"],
    "F-ASH-90": OKABE_ITO["black"],
}

#: natural width of a full-width figure (inches) and its resolution: 7.2 in x 100 dpi = 720 px,
#: the width of the book's content column at 1280 px
WIDTH = 7.2
DPI = 100
#: at most this many series on one axes; more are split into panels (facets)
MAX_SERIES = 8

#: 12 pt at 100 dpi is about 17 px, at least the body text (16 px) at natural size
RC: dict[str, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (WIDTH, 3.8),
    "figure.facecolor": "white",
    "font.size": 12,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "legend.title_fontsize": 11,
    "legend.frameon": False,
    "figure.titlesize": 12,
    "axes.prop_cycle": None,  # filled below (needs matplotlib's cycler)
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}


def _rc() -> dict[str, Any]:
    from cycler import cycler  # noqa: PLC0415 (ships with matplotlib)

    rc = dict(RC)
    rc["axes.prop_cycle"] = cycler(color=list(OKABE_ITO.values()))
    return rc


def color(name: str, default: str | None = None) -> str:
    """The colour of an activation (registry name or paper label); ``default`` (or black) otherwise."""
    return ACT_COLORS.get(name, ACT_COLORS.get(name.lower(), default or OKABE_ITO["black"]))


def use() -> None:
    """Make the book's style the default of this process (a notebook's first cell calls it)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.rcParams.update(_rc())


@contextlib.contextmanager
def style() -> Iterator[None]:
    """The book's style for the figures drawn inside the ``with`` block."""
    import matplotlib  # noqa: PLC0415

    with matplotlib.rc_context(_rc()):
        yield


F = TypeVar("F", bound=Callable[..., Any])


def styled(fn: F) -> F:
    """Decorator: run a figure function inside :func:`style`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def legend_outside(ax, where: str = "right", ncol: int | None = None, **kwargs: Any):
    """A legend beside the data: to the right of ``ax`` (``where="right"``) or under it (``"below"``)."""
    if where == "below":
        handles, _ = ax.get_legend_handles_labels()
        n = ncol or min(len(handles), 4) or 1
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=n, **kwargs)
    return ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), ncol=ncol or 1, **kwargs)


def shared_norm(*arrays: Iterable[float], vmin: float | None = None, vmax: float | None = None):
    """One ``matplotlib.colors.Normalize`` covering every finite value of ``arrays``: panels that are
    compared use it, so that one colour means one value in all of them."""
    import numpy as np  # noqa: PLC0415
    from matplotlib.colors import Normalize  # noqa: PLC0415

    vals = np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in arrays])
    vals = vals[np.isfinite(vals)]
    lo = float(vals.min()) if vmin is None and len(vals) else vmin
    hi = float(vals.max()) if vmax is None and len(vals) else vmax
    return Normalize(vmin=lo, vmax=hi)


def footer(fig, text: str) -> None:
    """Provenance under a figure (profile, seeds, device), in the body text size, wrapped."""
    fig.text(0.0, -0.01, text, fontsize=11, ha="left", va="top", color="0.25", wrap=True)
