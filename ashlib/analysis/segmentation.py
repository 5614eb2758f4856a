"""Semantic-segmentation metrics: the confusion matrix, per-class IoU, mean IoU and pixel accuracy.

The definitions are those of the scene-parsing benchmarks (ADE20K's, and mmsegmentation's
``mean_iou``): counts are summed over the whole evaluation set first, then

- IoU of class c = TP_c / (TP_c + FP_c + FN_c), from the dataset-wide confusion matrix;
  a class that occurs neither in the truth nor in the predictions has no IoU (NaN) and is
  left out of the mean;
- mIoU = the mean of the per-class IoUs that exist;
- pixel accuracy = correctly labelled pixels / scored pixels.

Pixels whose target is ``ignore_index`` are not scored (ADE20K's "other objects").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["confusion_matrix", "iou_per_class", "mean_iou", "pixel_accuracy", "segmentation_scores"]


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """``cm[t, p]`` = number of pixels of true class t predicted as p (int64, ``(C, C)``).

    Args:
        pred: predicted class per pixel (any shape, integer).
        target: true class per pixel (the same shape).
        num_classes: C; every scored value must be in ``0..C-1``.
        ignore_index: target value of pixels that are not scored (None: every pixel is scored).

    Raises:
        ValueError: shapes differ, or a scored value is outside ``0..C-1``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes}; must be >= 1")
    p = pred.reshape(-1).long()
    t = target.reshape(-1).long()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    if p.numel() and (int(torch.minimum(p.min(), t.min())) < 0 or int(torch.maximum(p.max(), t.max())) >= num_classes):
        raise ValueError(f"class values must lie in 0..{num_classes - 1}; got pred {int(p.min())}..{int(p.max())}, "
                         f"target {int(t.min())}..{int(t.max())}")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def iou_per_class(cm: Tensor) -> list[float]:
    """IoU of every class from a confusion matrix; NaN for a class absent from truth and predictions."""
    cm = cm.to(torch.float64)
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return [float(a / u) if u > 0 else math.nan for a, u in zip(tp.tolist(), union.tolist())]


def mean_iou(cm: Tensor) -> float:
    """Mean of the per-class IoUs that exist (NaN when none does)."""
    ious = [v for v in iou_per_class(cm) if not math.isnan(v)]
    return sum(ious) / len(ious) if ious else math.nan


def pixel_accuracy(cm: Tensor) -> float:
    """Share of scored pixels labelled correctly (NaN for an empty matrix)."""
    total = int(cm.sum())
    return int(cm.diagonal().sum()) / total if total else math.nan


def segmentation_scores(cm: Tensor) -> dict[str, object]:
    """``{"miou", "pixel_acc", "iou"}`` (``iou``: the per-class list) of a confusion matrix."""
    return {"miou": mean_iou(cm), "pixel_acc": pixel_accuracy(cm), "iou": iou_per_class(cm)}
