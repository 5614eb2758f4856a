"""scikit-learn's handwritten digits, resized to LeNet5's input: the offline stand-in for MNIST.

The data are 1,797 real 8 x 8 grey-level digits (values 0..16) from the UCI "Optical
Recognition of Handwritten Digits" set, shipped inside scikit-learn, so they need no
download. Here each image is scaled to [0, 1], enlarged bilinearly to
``image_size - 2*padding`` pixels and padded with zeros to ``image_size`` (with the
defaults a 20 x 20 digit centred in 28 x 28, like MNIST's 20 x 20 box), then split into
train and test by a seeded, stratified permutation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

__all__ = ["load_digits"]


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits(image_size: int = 28, padding: int | None = None, test_fraction: float = 0.25,
                seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Train and test TensorDatasets of (float images (N, 1, S, S) in [0, 1], int64 labels 0..9).

    Args:
        image_size: side S of the output (28 or 32 for LeNet5; 8 keeps the original pixels).
        padding: zero border in pixels; default ``image_size // 7`` (4 for 28, like MNIST).
        test_fraction: share of each class held out for the test split.
        seed: seed of the split (the same seed always gives the same split).

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
        ValueError: bad sizes or fraction.
    """
    try:
        from sklearn.datasets import load_digits as _sk_digits  # noqa: PLC0415 (optional dependency)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn (or ashlib[data])") from exc
    if padding is None:
        padding = image_size // 7
    inner = image_size - 2 * padding
    if inner < 1 or padding < 0:
        raise ValueError(f"image_size={image_size}, padding={padding}: the digit would have {inner} pixels")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction}; must lie in (0, 1)")
    bunch = _sk_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if inner != 8:
        images = F.interpolate(images, size=(inner, inner), mode="bilinear", align_corners=False)
    images = F.pad(images, (padding,) * 4).clamp_(0.0, 1.0)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    tr, te = _stratified_split(bunch.target, test_fraction, seed)
    return (TensorDataset(images[tr], labels[tr]), TensorDataset(images[te], labels[te]))
