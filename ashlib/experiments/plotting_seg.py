"""Figures of the segmentation experiment (``ash-seg``, notebook 08): predicted maps against the
truth, held-out mIoU by activation with the spread over seeds, and curves by epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .. import plotstyle as style
from .labels import label

if TYPE_CHECKING:  # pragma: no cover
    from .ash_seg import AshSegResult

__all__ = ["class_colours", "prediction_grid", "miou_by_act", "seg_curves"]


def class_colours(n: int) -> ListedColormap:
    """One colour per class: class 0 (the background) light grey, then matplotlib's tab10 (cycled,
    with tab20's paler shades for classes beyond 10)."""
    import matplotlib  # noqa: PLC0415

    tab = list(matplotlib.colormaps["tab10"].colors) + list(matplotlib.colormaps["tab20"].colors[1::2])
    return ListedColormap([(0.88, 0.88, 0.88)] + [tab[i % len(tab)] for i in range(max(n - 1, 0))], name="classes")


@style.styled
def prediction_grid(result: "AshSegResult", seed: int | None = None) -> Figure:
    """Supp. Fig. 3 analogue: held-out images (first row), their true class maps (second row) and the
    maps predicted by each activation's U-Net of seed ``seed`` (default: the first), one row each."""
    seed = result.config.seeds[0] if seed is None else seed
    imgs, truth = result.show_images, result.show_truth
    acts = [a for a in result.acts() if (a, seed) in result.preds]
    if imgs is None or not len(imgs):
        raise ValueError("no shown images stored (n_show=0)")
    n = len(imgs)
    names = result.class_names
    cmap = class_colours(len(names))
    rows = ["image", "truth", *(label(a) for a in acts)]
    side = style.WIDTH * 0.8 / n
    extra = 0.9 if len(names) <= 12 else 0.1  # room for the legend
    fig, axes = plt.subplots(len(rows), n, figsize=(style.WIDTH, side * len(rows) + extra), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(imgs[j].permute(1, 2, 0).clamp(0, 1).numpy())
        t = truth[j].numpy().astype(float)
        t[t >= len(names)] = np.nan  # unscored pixels (ADE20K's "other") stay blank
        axes[1, j].imshow(t, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
        for i, act in enumerate(acts, start=2):
            axes[i, j].imshow(result.preds[(act, seed)][j].numpy(), cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5,
                              interpolation="nearest")
    for i, name in enumerate(rows):
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    if len(names) <= 12:
        handles = [Patch(color=cmap(c), label=nm) for c, nm in enumerate(names)]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=10, bbox_to_anchor=(0.55, 0.0))
    fig.subplots_adjust(left=0.2, right=1.0, top=1.0, bottom=extra / (side * len(rows) + extra), wspace=0.05, hspace=0.05)
    return fig


@style.styled
def miou_by_act(result: "AshSegResult") -> Figure:
    """Held-out mIoU and pixel accuracy (%) per activation: one dot per seed, the mean as a bar
    with ± 1 sd over seeds."""
    keys = [("miou", "mean IoU (%)"), ("pixel_acc", "pixel accuracy (%)")]
    if all(r.get("object_iou") is not None for r in result.rows):
        keys.append(("object_iou", "object IoU (%)"))
    fig, axes = plt.subplots(1, len(keys), figsize=(style.WIDTH, 3.2), squeeze=False)
    acts = result.acts()
    for ax, (key, title) in zip(axes[0], keys):
        for i, act in enumerate(acts):
            vals = [100 * r[key] for r in result.rows if r["act"] == act]
            mean = sum(vals) / len(vals)
            sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
            colour = style.color(act)
            ax.bar(i, mean, color=colour, alpha=0.35, width=0.6)
            ax.errorbar(i, mean, yerr=sd, color=colour, capsize=4, lw=1.4)
            ax.plot(i + np.linspace(-0.12, 0.12, len(vals)) if len(vals) > 1 else [i], vals, "o", color=colour, ms=4)
        ax.set_xticks(range(len(acts)), [label(a) for a in acts])
        ax.set_title(title)
        hi = max(100 * r[key] for r in result.rows)
        ax.set_ylim(0.0, min(100.0, 1.15 * hi + 1.0))  # bars start at 0: their heights compare
        ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return fig


@style.styled
def seg_curves(result: "AshSegResult") -> Figure:
    """Per activation, mean ± sd over seeds by epoch: training loss and held-out mIoU."""
    curves = result.curves()
    fig, axes = plt.subplots(1, 2, figsize=(style.WIDTH, 3.2))
    for ax, (key, title, scale) in zip(axes, [("train_loss", "training loss (per pixel)", 1.0),
                                              ("test_miou", "held-out mIoU (%)", 100.0)]):
        for act in result.acts():
            rows: list[dict[str, Any]] = [c for c in curves if c["act"] == label(act)]
            x = [r["epoch"] for r in rows]
            y = [scale * r[key] for r in rows]
            ax.plot(x, y, color=style.color(act), label=label(act))
            if all(r[key + "_sd"] is not None for r in rows):
                sd = [scale * r[key + "_sd"] for r in rows]
                ax.fill_between(x, [a - b for a, b in zip(y, sd)], [a + b for a, b in zip(y, sd)],
                                color=style.color(act), alpha=0.15, lw=0)
        ax.set_xlabel("epoch")
        ax.set_title(title)
    axes[0].legend(loc="best")
    fig.tight_layout()
    return fig
