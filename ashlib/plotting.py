"""Figures the notebooks share (matplotlib).

Each function draws into an ``Axes`` it is given (or a new one) and returns it, so that
notebooks can combine panels freely. Curves come from the formulas of
:mod:`ashlib.symbolic` (evaluated with numpy) or from :mod:`ashlib.functional`, never from
formulas written again here. Other figures can be appended as further functions; keep each
one self-contained.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import sympy as sp
import torch

from . import functional as AF
from . import symbolic as AS
from .plotstyle import legend_outside, styled

__all__ = ["new_axes", "plot_ash_alpha_sweep", "plot_kept_fraction", "plot_adaptive_gumbel",
           "plot_adaptive_relu"]


def new_axes(ax=None, figsize=(7.2, 3.8)):
    """Return ``ax``, or the axes of a new figure when ``ax`` is None."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _numpy_fn(expr: sp.Expr, *symbols: sp.Symbol):
    return sp.lambdify(symbols, expr, modules="numpy")


@styled
def plot_ash_alpha_sweep(alphas: Sequence[float] = (1, 2, 5, 10), threshold: float = 1.0,
                         xlim: tuple = (-3.0, 4.0), ax=None, n: int = 1401):
    """Supplementary Figure 7 of the ASH appendix, redrawn.

    The hard ASH :math:`x H(x - a)` (App. A2) against its tanh smoothing
    :math:`\\tfrac12 x (1 + \\tanh(\\alpha (x - a)))` (App. A3, equal to A4) for each alpha,
    with the threshold ``a`` fixed (``a = mu + z*sigma`` of one feature map).
    """
    ax = new_axes(ax)
    xs = np.linspace(*xlim, n)
    smooth = _numpy_fn(AS.ASH_TANH, AS.x, AS.t, AS.alpha)
    hard = np.where(xs >= threshold, xs, 0.0)  # App. A1 keeps x >= t: H(0) = 1
    for a in alphas:
        ax.plot(xs, smooth(xs, threshold, a), lw=1.4, label=fr"smooth, $\alpha={a:g}$")
    ax.plot(xs, hard, "k--", lw=1.2, label=r"hard $xH(x-a)$")
    ax.axvline(threshold, color="0.7", lw=0.8)
    ax.set_xlabel("input $x$")
    ax.set_ylabel(r"output $\mathcal{A}(x)$")
    ax.set_title(f"ASH, threshold $a = {threshold:g}$")
    legend_outside(ax)
    return ax


@styled
def plot_kept_fraction(ks: Sequence[float], kept: Mapping[str, Sequence[float]], ax=None,
                       title: str = "fraction kept by the Gaussian threshold"):
    """Kept fraction against the target fraction k, one line per kind of feature map.

    ``kept[name][i]`` is the mean fraction of elements at or above ``mu + z_{k_i} sigma``;
    the diagonal is what ASH intends (exactly the top k).
    """
    ax = new_axes(ax)
    ks = np.asarray(ks, dtype=float)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls=":", label="target: kept = k")
    for name, vals in kept.items():
        ax.plot(ks, np.asarray(vals, dtype=float), marker="o", ms=3, lw=1.3, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("target fraction $k$")
    ax.set_ylabel(r"kept fraction, $x \geq \mu_X + z_k\sigma_X$")
    ax.set_title(title)
    legend_outside(ax)
    return ax


@styled
def plot_adaptive_gumbel(alphas: Sequence[float] = (1, 2, 5), xlim: tuple = (-10.0, 10.0),
                         ax=None, limits: bool = True, n: int = 801):
    """Left panel of Farhadi et al.'s Figure 1: adaptive Gumbel for several alpha.

    Curves from :func:`ashlib.functional.adaptive_gumbel`; with ``limits`` also the sigmoid
    (alpha = 1) and the Gumbel CDF (the alpha -> 0 limit) from :mod:`ashlib.symbolic`.
    """
    ax = new_axes(ax)
    xs = np.linspace(*xlim, n)
    xt = torch.from_numpy(xs)
    for a in alphas:
        ax.plot(xs, AF.adaptive_gumbel(xt, float(a)).numpy(), lw=1.5, label=fr"$\alpha={a:g}$")
    if limits:
        gumbel = _numpy_fn(AS.GUMBEL_CDF, AS.x)
        ax.plot(xs, gumbel(xs), "k--", lw=1.0, label=r"Gumbel, $\alpha\to 0$")
        ax.plot(xs, 1 / (1 + np.exp(-xs)), color="0.5", ls=":", lw=1.6, label="sigmoid")
    ax.set_xlabel("input $x$")
    ax.set_ylabel(r"output $\sigma_\alpha(x)$")
    ax.set_title("Adaptive Gumbel")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(loc="upper left")
    return ax


@styled
def plot_adaptive_relu(alphas: Sequence[float] = (1, 2, 5), xlim: tuple = (-1.0, 1.0),
                       ax=None, cdf: str = "exponential", relu: bool = True, n: int = 801):
    """Right panel of Farhadi et al.'s Figure 1: adaptive ReLU for several alpha, with ReLU."""
    ax = new_axes(ax)
    xs = np.linspace(*xlim, n)
    xt = torch.from_numpy(xs)
    for a in alphas:
        ax.plot(xs, AF.adaptive_relu(xt, float(a), cdf=cdf).numpy(), lw=1.5, label=fr"$\alpha={a:g}$")
    if relu:
        ax.plot(xs, np.maximum(xs, 0), "k--", lw=1.0, label=r"ReLU, $\alpha\to\infty$")
    ax.set_xlabel("input $x$")
    ax.set_ylabel(r"output $x F_\alpha(x)$")
    ax.set_title(f"Adaptive ReLU ({cdf} CDF)")
    ax.legend(loc="upper left")
    return ax
