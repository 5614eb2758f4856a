"""Figures of the training experiments (Farhadi et al. Tables 1 and 2, Figures 2 to 4).

Every function takes a results object from :mod:`ashlib.experiments.farhadi` and returns a
``matplotlib.figure.Figure`` built without pyplot (no global state; works with any backend).
Numbers from the paper are always drawn hatched and labelled "paper".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import functional as AF
from .. import plotstyle as style

if TYPE_CHECKING:  # pragma: no cover
    from .farhadi import Table1Result, Table2Result

__all__ = ["table1_figure", "alpha_histogram", "learned_activations", "alpha_spread_figure", "table2_figure",
           "table2_curves"]

_SHORT = {"sigmoid": "Sig", "agumbel": "AGumb", "relu": "ReLU", "arelu": "AReLU"}
_COLORS = {k: style.color(k) for k in ("sigmoid", "agumbel", "relu", "arelu")}
_footer = style.footer


@style.styled
def table1_figure(result: "Table1Result") -> Figure:
    """Grouped bars: our mean test accuracy (error bar: se over seeds and folds) beside the paper's
    Table 1, one group per (hidden layers, teacher)."""
    summ = result.summary()
    groups = [(d, t) for d in result.config.depths for t in result.config.teachers]
    students = list(result.config.students)
    fig = Figure(figsize=(style.WIDTH, 4.2))
    ax = fig.add_subplot(111)
    w = 0.8 / (2 * len(students))
    for gi, (d, t) in enumerate(groups):
        for si, s in enumerate(students):
            cell = next((c for c in summ if (c["depth"], c["teacher"], c["student"]) == (d, t, s)), None)
            if cell is None:
                continue
            x = gi + (2 * si - len(students)) * w + w / 2
            ax.bar(x, cell["acc_mean"], w, yerr=cell["acc_se"] or 0, color=_COLORS.get(s), capsize=2)
            if cell["paper"] is not None:
                ax.bar(x + w, cell["paper"], w, facecolor="white", edgecolor=_COLORS.get(s), hatch="///", lw=1)
        maj = next((c["majority"] for c in summ if (c["depth"], c["teacher"]) == (d, t)), None)
        if maj is not None:
            ax.hlines(maj, gi - 0.42, gi + 0.42, colors="k", linestyles=":", lw=1.2)
    ax.set_xticks(range(len(groups)), [f"{d} layer{'s' if d > 1 else ''}\n{_SHORT.get(t, t)} teacher" for d, t in groups])
    ax.set_ylabel("test accuracy (%)")
    lo = min(min(c["acc_mean"] for c in summ), min(c["paper"] or 100 for c in summ))
    ax.set_ylim(max(0, lo - 10), 100)
    from matplotlib.lines import Line2D  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    handles = [Patch(color=_COLORS.get(s), label=_SHORT.get(s, s)) for s in students]
    handles += [Patch(facecolor="white", edgecolor="0.3", hatch="///", label="paper (hatched)"),
                Line2D([], [], color="k", ls=":", label="majority class")]
    style.legend_outside(ax, handles=handles)
    ax.set_title("Farhadi et al. Table 1: ours (solid) and paper (hatched)")
    cfg = result.config
    _footer(fig, f"profile {cfg.profile}; seeds {list(cfg.seeds)}, folds {list(cfg.folds)} of {cfg.k_folds}; "
                 f"{cfg.epochs} epochs, lr {cfg.lr}, batch {cfg.batch_size}; device {result.env.get('device')}")
    fig.tight_layout()
    return fig


@style.styled
def alpha_histogram(result: "Table1Result", depth: int | None = None) -> Figure:
    """Figure 2 of the paper, rebuilt: histogram of the fitted alphas (log10) of the AGumb and AReLU
    students, all layers, runs and teachers pooled; only the nets of ``depth`` hidden layers if given
    (the paper's Figure 2 shows the 1-layer nets)."""
    rows = result.alpha_rows(depth=depth)
    fig = Figure(figsize=(style.WIDTH, 3.6))
    ax = fig.add_subplot(111)
    vals = {s: np.log10([r["alpha"] for r in rows if r["student"] == s]) for s in ("agumbel", "arelu")}
    allv = np.concatenate([v for v in vals.values() if len(v)]) if any(len(v) for v in vals.values()) else np.zeros(1)
    bins = np.linspace(allv.min() - 0.05, allv.max() + 0.05, 40)
    for s, v in vals.items():
        if len(v):
            ax.hist(v, bins=bins, alpha=0.6, color=_COLORS[s], label=f"{_SHORT[s]} (n={len(v)})")
    ax.axvline(0.0, color="k", lw=1, ls=":", label=r"initial $\alpha = 1$")
    ax.set_xlabel(r"fitted $\log_{10}\alpha$ (dimensionless)")
    ax.set_ylabel("neurons (count)")
    style.legend_outside(ax)
    ax.set_title("Fitted alphas (cf. Farhadi et al. Fig. 2)")
    where = "all depths" if depth is None else f"{depth}-layer nets"
    _footer(fig, f"profile {result.config.profile}; seeds {list(result.config.seeds)}; {where}, both teachers")
    fig.tight_layout()
    return fig


@style.styled
def learned_activations(result: "Table1Result", student: str, teacher: str | None = None,
                        seed: int | None = None) -> Figure:
    """Figures 3 and 4 of the paper, rebuilt: the learned activation of every neuron, one panel per
    layer of the deepest student, from the first fold of ``seed`` (default: the first seed; grey: the
    activation at alpha = 1)."""
    depth = max(result.config.depths)
    teacher = teacher or result.config.teachers[-1]
    run = next((r for r in result.rows if (r["depth"], r["teacher"], r["student"]) == (depth, teacher, student)
                and r.get("alphas") and (seed is None or r["seed"] == seed)), None)
    cols = min(depth, 4)
    rows_n = math.ceil(depth / cols)
    fig = Figure(figsize=(style.WIDTH, 1.9 * rows_n + 0.9))
    x = torch.linspace(-4, 4, 201, dtype=torch.float64)
    fn = AF.adaptive_gumbel if student == "agumbel" else AF.adaptive_relu
    for layer in range(depth):
        ax = fig.add_subplot(rows_n, cols, layer + 1, sharex=fig.axes[0] if fig.axes else None)
        ax.plot(x, fn(x, 1.0), color="0.6", lw=2.5)
        if run is not None:
            for a in run["alphas"][layer]:
                ax.plot(x, fn(x, torch.tensor(a, dtype=torch.float64)), color=_COLORS[student], lw=0.8, alpha=0.8)
        ax.set_title(f"layer {layer + 1}")
        ax.set_xticks([-4, 0, 4])
        if layer % cols == 0:
            ax.set_ylabel("output")
        if layer >= depth - cols:
            ax.set_xlabel("input $x$")
    fig.suptitle(f"Learned {_SHORT[student]} activations by layer ({depth}-layer student, "
                 f"{_SHORT.get(teacher, teacher)} teacher; grey: " + r"$\alpha = 1$)")
    _footer(fig, f"profile {result.config.profile}; seed {run['seed'] if run else '-'}, fold {run['fold'] if run else '-'}")
    fig.tight_layout()
    return fig


@style.styled
def alpha_spread_figure(result: "Table1Result") -> Figure:
    """Spread of log alpha across each layer's neurons (sd, mean over runs) in the deepest students."""
    spread = result.alpha_spread()
    fig = Figure(figsize=(style.WIDTH, 3.6))
    ax = fig.add_subplot(111)
    for s in ("agumbel", "arelu"):
        for t, ls in zip(result.config.teachers, ("-", "--", ":")):
            pts = [p for p in spread if (p["student"], p["teacher"]) == (s, t)]
            if pts:
                ax.plot([p["layer"] for p in pts], [p["sd_log_alpha"] for p in pts], ls, marker="o", ms=3,
                        color=_COLORS[s], label=f"{_SHORT[s]}, {_SHORT.get(t, t)} teacher")
    ax.set_xlabel("hidden layer (1 = next to the input)")
    ax.set_ylabel(r"sd of $\log\alpha$ in the layer")
    style.legend_outside(ax)
    ax.set_title("How much the learned activations differ, by layer")
    _footer(fig, f"profile {result.config.profile}; seeds {list(result.config.seeds)}, folds {list(result.config.folds)}")
    fig.tight_layout()
    return fig


@style.styled
def table2_figure(result: "Table2Result") -> Figure:
    """Two heat maps side by side, on one colour scale: our mean test accuracy per (conv, FC) and the
    paper's Table 2."""
    cfg = result.config
    summ = {(s["conv"], s["fc"]): s for s in result.summary()}
    convs, fcs = list(cfg.conv_acts), list(cfg.fc_acts)
    ours = np.array([[summ[(c, f)]["acc_mean"] if (c, f) in summ else np.nan for f in fcs] for c in convs])
    paper = np.array([[summ[(c, f)]["paper"] if (c, f) in summ and summ[(c, f)]["paper"] else np.nan
                       for f in fcs] for c in convs], dtype=float)
    fig = Figure(figsize=(style.WIDTH, 3.6), layout="constrained")
    norm = style.shared_norm(ours, paper)
    axes = [fig.add_subplot(1, 2, i + 1) for i in range(2)]
    for i, (ax, mat, title) in enumerate(zip(axes, (ours, paper), (f"ours ({cfg.dataset}, {cfg.profile})", "paper (MNIST)"))):
        im = ax.imshow(mat, cmap="viridis", norm=norm)
        for a in range(len(convs)):
            for b in range(len(fcs)):
                if not np.isnan(mat[a, b]):
                    light = norm(mat[a, b]) < 0.6  # dark cells of viridis: white text
                    ax.text(b, a, f"{mat[a, b]:.1f}", ha="center", va="center", color="w" if light else "k")
        ax.set_xticks(range(len(fcs)), [_SHORT.get(f, f) for f in fcs])
        ax.set_yticks(range(len(convs)), [_SHORT.get(c, c) for c in convs] if i == 0 else [])
        ax.set_xlabel("fully connected layer")
        if i == 0:
            ax.set_ylabel("conv layers")
        ax.set_title(title)
        ax.grid(False)
    fig.colorbar(im, ax=axes, fraction=0.046, label="test accuracy (%)")
    extra = [f"{_SHORT.get(c, c)}/{_SHORT.get(f, f)} {s['acc_mean']:.1f}" for (c, f), s in summ.items()
             if c not in convs or f not in fcs]
    _footer(fig, f"seeds {list(cfg.seeds)}; {cfg.epochs} epochs; device {result.env.get('device')}"
                 + (f"; baselines: {', '.join(extra)}" if extra else ""))
    return fig


@style.styled
def table2_curves(result: "Table2Result") -> Figure:
    """Training loss and test accuracy per epoch, mean over seeds (cf. Farhadi et al. Fig. 6): one
    column of panels per convolutional activation, one line per fully connected activation, so that
    no panel has more than a few series; all panels of a row share the y axis."""
    pairs = [p for p in result.config.pairs() if any((r["conv"], r["fc"]) == p for r in result.rows)]
    convs = list(dict.fromkeys(c for c, _ in pairs))
    fig = Figure(figsize=(style.WIDTH, 5.6))
    axes = fig.subplots(2, len(convs), sharex=True, sharey="row", squeeze=False)
    for j, conv in enumerate(convs):
        for conv_, fc in pairs:
            if conv_ != conv:
                continue
            runs = [r for r in result.rows if (r["conv"], r["fc"]) == (conv, fc)]
            loss = np.mean([r["train_loss_curve"] for r in runs], axis=0)
            acc = 100 * np.mean([r["test_acc_curve"] for r in runs], axis=0)
            ep = np.arange(1, len(loss) + 1)
            axes[0, j].plot(ep, loss, "o-", ms=3, color=_COLORS.get(fc), label=f"FC {_SHORT.get(fc, fc)}")
            axes[1, j].plot(ep, acc, "o-", ms=3, color=_COLORS.get(fc), label=f"FC {_SHORT.get(fc, fc)}")
        axes[0, j].set_title(f"conv {_SHORT.get(conv, conv)}")
        axes[1, j].set_xlabel("epoch")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_ylabel("training loss")
    axes[1, 0].set_ylabel("test accuracy (%)")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles),
               bbox_to_anchor=(0.5, -0.04))
    fig.suptitle("LeNet5: conv/FC activation pairs (mean over seeds)")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
