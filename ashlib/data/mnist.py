"""MNIST and Fashion-MNIST from their IDX files.

Both datasets ship as four files with the same names:
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (each raw or ``.gz``). They are looked for in ``root``,
``root/raw``, ``root/<Name>`` and ``root/<Name>/raw`` (the last is torchvision's layout,
with ``<Name>`` = ``MNIST`` or ``FashionMNIST``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ._common import DatasetFormatError, missing_files_error, torchvision_available
from .idx import read_idx
from .tensors import ImageTensorDataset

__all__ = ["load_mnist", "load_fashion_mnist", "MNIST_URL", "FASHION_MNIST_URL"]

MNIST_URL = "http://yann.lecun.com/exdb/mnist/"
FASHION_MNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"

_STEMS = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(root: Path, folder: str, stem: str) -> Path | None:
    for base in (root, root / "raw", root / folder, root / folder / "raw"):
        for name in (stem, stem + ".gz"):
            if (base / name).is_file():
                return base / name
    return None


def _to_dataset(images: np.ndarray, labels: np.ndarray) -> ImageTensorDataset:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)).unsqueeze(1)
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    return ImageTensorDataset(x, y)


def _load_idx_pair(name: str, folder: str, url: str, root: str | Path, train: bool) -> ImageTensorDataset:
    root = Path(root).expanduser()
    img_stem, lbl_stem = _STEMS[train]
    img_path, lbl_path = _find(root, folder, img_stem), _find(root, folder, lbl_stem)
    if img_path is None or lbl_path is None:
        expected = [f"{root}/[raw/ | {folder}/ | {folder}/raw/]{s}[.gz]" for s in (img_stem, lbl_stem)]
        raise missing_files_error(f"{name} ({'train' if train else 'test'} split)", root, expected, url)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DatasetFormatError(
            f"{img_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetFormatError(f"{lbl_path}: expected a 1-D uint8 label file, got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DatasetFormatError(
            f"{lbl_path}: {len(labels)} labels for {len(images)} images in {img_path}; the files do not match"
        )
    if len(labels) and int(labels.max()) > 9:
        bad = int(np.argmax(labels > 9))
        raise DatasetFormatError(
            f"{lbl_path}: label {int(labels[bad])} at index {bad} is outside 0..9; the file is mislabelled or corrupt"
        )
    return _to_dataset(images, labels)


def _via_torchvision(cls_name: str, root: str | Path, train: bool) -> ImageTensorDataset | None:
    """Load with torchvision when it is installed and finds the files; None otherwise."""
    if not torchvision_available():
        return None
    import torchvision.datasets as tvd  # noqa: PLC0415 (optional dependency)

    try:
        ds = getattr(tvd, cls_name)(str(root), train=train, download=False)
    except (RuntimeError, OSError, ValueError):
        return None  # fall back to ashlib's reader, which explains what is missing
    return _to_dataset(ds.data.numpy(), ds.targets.numpy())


def load_mnist(root: str | Path, train: bool = True, backend: str = "auto") -> ImageTensorDataset:
    """MNIST as an ImageTensorDataset: float images (N, 1, 28, 28) in [0, 1] (stored as uint8), int64 labels.

    Args:
        root: folder holding the IDX files (see the module docstring for the layouts accepted).
        train: the 60,000-image training split (True) or the 10,000-image test split.
        backend: ``"auto"`` (torchvision when installed, else ashlib's IDX reader),
            ``"torchvision"`` or ``"ashlib"``.

    Raises:
        FileNotFoundError: files missing; the message lists the expected layout and the download page.
        DatasetFormatError: a file is truncated, not IDX, has the wrong shape, or holds labels outside 0..9.
    """
    return _load("MNIST", "MNIST", MNIST_URL, root, train, backend)


def load_fashion_mnist(root: str | Path, train: bool = True, backend: str = "auto") -> ImageTensorDataset:
    """Fashion-MNIST (same format and file names as MNIST); see :func:`load_mnist`."""
    return _load("Fashion-MNIST", "FashionMNIST", FASHION_MNIST_URL, root, train, backend)


def _load(name: str, folder: str, url: str, root: str | Path, train: bool, backend: str) -> ImageTensorDataset:
    if backend not in ("auto", "torchvision", "ashlib"):
        raise ValueError(f"backend={backend!r}; allowed: 'auto', 'torchvision', 'ashlib'")
    if backend in ("auto", "torchvision"):
        if backend == "torchvision" and not torchvision_available():
            raise ImportError("backend='torchvision' but torchvision is not installed")
        ds = _via_torchvision(folder, root, train)
        if ds is not None:
            return ds
    return _load_idx_pair(name, folder, url, root, train)
