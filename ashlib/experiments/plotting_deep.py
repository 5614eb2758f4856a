"""Figures of the deep-network notebooks (05 ResNet, 06 DCGAN): curves, thresholds by depth,
Grad-CAM grids and GAN sample grids. Each function returns a matplotlib Figure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import matplotlib
import matplotlib.ticker
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from .. import plotstyle as style
from .labels import label

if TYPE_CHECKING:  # pragma: no cover
    from .ash_dcgan import DCGANResult
    from .ash_resnet import AshResNetResult

__all__ = ["training_curves", "validation_loss_curves", "thresholds_by_depth", "gradcam_grid", "sample_grid",
           "score_curves", "quality_curves", "image_grid"]

_COLOURS = {k: style.color(k) for k in ("ReLU", "Swish", "ASH", "L-ASH", "F-ASH-10", "F-ASH-50", "F-ASH-90", "SiLU")}
_footer = style.footer


def _band(ax, rows: list[dict[str, Any]], key: str, lab: str, scale: float = 1.0) -> None:
    x = [r["epoch"] for r in rows]
    y = [scale * r[key] for r in rows]
    ax.plot(x, y, label=lab, color=_COLOURS.get(lab), lw=1.6)
    sd = [None if r.get(key + "_sd") is None else scale * r[key + "_sd"] for r in rows]
    if all(s is not None for s in sd):
        ax.fill_between(x, [a - b for a, b in zip(y, sd)], [a + b for a, b in zip(y, sd)],
                        color=_COLOURS.get(lab), alpha=0.15, lw=0)


@style.styled
def training_curves(result: "AshResNetResult", keys: Sequence[str] = ("train_loss", "val_loss", "val_acc")) -> Figure:
    """Supp. Fig. 1 analogue: per activation, mean ± sd over seeds of the training loss, the
    validation loss and the validation accuracy by epoch."""

    curves = result.curves()
    titles = {"train_loss": "training loss", "val_loss": "validation loss", "val_acc": "validation accuracy",
              "train_acc": "training accuracy"}
    units = {"train_loss": "cross-entropy (nats)", "val_loss": "cross-entropy (nats)", "val_acc": "accuracy (%)",
             "train_acc": "accuracy (%)"}
    fig, axes = plt.subplots(1, len(keys), figsize=(style.WIDTH, 3.4), squeeze=False)
    axes = axes[0]
    for ax, key in zip(axes, keys):
        for act in result.acts():
            # accuracies are stored as fractions: shown in % like the tables
            _band(ax, [c for c in curves if c["act"] == act], key, label(act), 100.0 if key.endswith("_acc") else 1.0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(units.get(key, ""))
        ax.set_title(titles.get(key, key))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.1 if len(labels) <= 4 else 0.16, 1, 1))
    _footer(fig, result.config.describe() + f"; device {result.env.get('device')}; bands: ± 1 sd over seeds")
    return fig


def validation_loss_curves(result: "AshResNetResult") -> Figure:
    """Supp. Fig. 8 analogue: validation loss by epoch of ASH, L-ASH and F-ASH-k (mean ± sd over seeds)."""
    return training_curves(result, keys=("val_loss", "val_acc"))


@style.styled
def thresholds_by_depth(result: "AshResNetResult") -> Figure:
    """App. I / Supp. Fig. 9 analogue: per ASH site, the learned z, the k it implies and the
    measured active fraction, against the site's relative depth (0 = input, 1 = output)."""
    rows = [t for t in result.thresholds() if t["act"] == "ASH"] or result.thresholds()
    fig, axes = plt.subplots(1, 2, figsize=(style.WIDTH, 3.6))
    seeds = sorted({r["seed"] for r in rows})
    for s in seeds:
        rr = [r for r in rows if r["seed"] == s]
        d = [r["depth"] for r in rr]
        axes[0].plot(d, [r["z"] for r in rr], "o-", label=f"seed {s}", ms=4)
        axes[1].plot(d, [100 * r["k"] for r in rr], "o-", color=f"C{s}", ms=4, label=f"implied k, seed {s}")
        axes[1].plot(d, [100 * r["active"] for r in rr], "s--", color=f"C{s}", ms=4, mfc="none",
                     label=f"measured active, seed {s}")
    axes[0].axhline(0.0, color="k", lw=0.6)  # the initial z (k = 50 %)
    axes[0].set(xlabel="relative depth (0 input, 1 output)", ylabel="learned $z_k$", title="learned threshold $z_k$")
    axes[1].set(xlabel="relative depth (0 input, 1 output)", ylabel="kept fraction (%)", title="kept fraction")
    axes[0].legend(loc="best")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    _footer(fig, result.config.describe() + "; measured active: share of inputs with gate > 1/2 on held-out images")
    return fig


def image_grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """Tile (N, C, H, W) images in [0, 1] into one (H', W', C) array with 1-pixel gaps."""
    n, c, h, w = images.shape
    ncol = (n + nrow - 1) // nrow if nrow else 1
    grid = torch.ones(c, nrow * (h + 1) - 1, ncol * (w + 1) - 1)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = images[i]
    out = grid.permute(1, 2, 0)
    return (out[..., 0] if c == 1 else out).numpy()


@style.styled
def gradcam_grid(images: torch.Tensor, maps: dict[str, torch.Tensor], masks: torch.Tensor | None = None,
                 caption: str = "") -> Figure:
    """Supp. Fig. 2 analogue: the input images in the first row, then one row of Grad-CAM maps
    (overlaid on the image) per entry of ``maps`` (name -> (N, H, W) maps in [0, 1])."""
    n = len(images)
    side = style.WIDTH * 0.8 / n  # leave a fifth of the width for the row labels
    fig, axes = plt.subplots(1 + len(maps), n, figsize=(style.WIDTH, side * (1 + len(maps)) + 0.4), squeeze=False)
    for j in range(n):
        img = images[j].permute(1, 2, 0).clamp(0, 1).numpy()
        axes[0, j].imshow(img if img.shape[-1] == 3 else img[..., 0], cmap=None if img.shape[-1] == 3 else "gray")
        if masks is not None:
            axes[0, j].contour(masks[j].numpy(), levels=[0.5], colors="w", linewidths=0.6)
        for i, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(img.mean(-1), cmap="gray")
            axes[i, j].imshow(m[j].numpy(), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
    for i, name in enumerate(["input", *maps]):
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    # the images fill the figure (no empty band above the caption, which goes below the axes)
    fig.subplots_adjust(left=0.2, right=1.0, top=1.0, bottom=0.0, wspace=0.05, hspace=0.05)
    if caption:
        _footer(fig, caption)
    return fig


@style.styled
def sample_grid(result: "DCGANResult", epochs: Sequence[int] | None = None, n: int = 8) -> Figure:
    """Supp. Fig. 6 analogue: fixed-noise generator samples, one row per activation, one panel per epoch."""
    acts = result.acts()
    all_epochs = sorted(result.samples[acts[0]]) if acts else []
    if epochs is None:
        k = min(4, len(all_epochs))
        epochs = [all_epochs[round(i * (len(all_epochs) - 1) / max(k - 1, 1))] for i in range(k)]
    fig, axes = plt.subplots(len(acts), len(epochs), figsize=(style.WIDTH, 1.5 * len(acts) + 0.6),
                             squeeze=False)
    for i, act in enumerate(acts):
        for j, e in enumerate(epochs):
            imgs = (result.samples[act][e][:n] + 1) / 2
            side = int(round(n ** 0.5))
            g = image_grid(imgs, side if side * side == n else 2)
            axes[i, j].imshow(g, cmap="gray" if g.ndim == 2 else None, vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            axes[i, j].grid(False)
            if i == 0:
                axes[i, j].set_title(f"epoch {e}")
        axes[i, 0].set_ylabel(result.label(act), rotation=0, ha="right", va="center")
    fig.tight_layout()
    _footer(fig, result.config.describe())
    return fig


@style.styled
def score_curves(result: "DCGANResult") -> Figure:
    """Frechet distance (classifier features) by epoch per generator activation (mean ± sd over seeds),
    with the real-vs-real distance as the floor."""
    fig, ax = plt.subplots(figsize=(style.WIDTH, 3.6))
    for act in result.acts():
        rows = result.score_curve(act)
        _band(ax, rows, "fd", result.label(act))
    if result.fd_real is not None:
        ax.axhline(result.fd_real, color="k", ls=":", lw=1, label="real train vs real test")
    ax.set(xlabel="epoch", ylabel="Fréchet distance (features)", title="sample quality (lower is better)")
    ax.set_yscale("log")
    style.legend_outside(ax)
    fig.tight_layout()
    _footer(fig, result.config.describe())
    return fig


@style.styled
def quality_curves(result: "DCGANResult") -> Figure:
    """Four panels by epoch per generator activation (mean ± sd over seeds): the Frechet distance (log
    axis, real-vs-real floor dotted), the recognisable share (the quality bar dashed, real images
    dotted), precision and recall (real images dotted). The quality score is the recognisable share
    on digits, precision on CelebA (``result.quality_key()``)."""
    panels = [("fd", "Fréchet distance (lower is better)"), ("recognisable", "recognisable share"),
              ("precision", "precision (realistic share)"), ("recall", "recall (variety covered)")]
    fig, axes = plt.subplots(2, 2, figsize=(style.WIDTH, 5.6), sharex=True)
    key = result.quality_key()
    for ax, (k, title) in zip(axes.flat, panels):
        for act in result.acts():
            rows = [r for r in result.score_curve(act) if r.get(k) is not None]
            if rows:
                _band(ax, rows, k, result.label(act))
        ref = result.real_scores.get(k)
        if ref is not None:
            ax.axhline(ref, color="k", ls=":", lw=1, label="real training vs held-out images")
        if k == key and result.quality_bar() is not None:
            ax.axhline(result.quality_bar(), color="k", ls="--", lw=1, label="quality bar")
        if k == "fd":
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.01))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    _footer(fig, result.config.describe() + "; bands: ± 1 sd over seeds")
    return fig


matplotlib.rcParams.setdefault("figure.dpi", 100)
