"""CIFAR-10 and CIFAR-100 from the official "python version" pickle batches.

Layouts (https://www.cs.toronto.edu/~kriz/cifar.html, the ``*-python.tar.gz`` archives,
extracted):

- CIFAR-10: ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5`` and ``test_batch``.
  Each is a pickled dict with ``b"data"`` (uint8, 10000 x 3072, rows are 3 planes of 32x32,
  red then green then blue) and ``b"labels"`` (10000 ints in 0..9).
- CIFAR-100: ``cifar-100-python/train`` and ``test``, with ``b"data"``, ``b"fine_labels"``
  (0..99) and ``b"coarse_labels"`` (0..19).

The batches are pickles; they are read by a restricted unpickler
(:mod:`ashlib.data.safe_pickle`) that builds only plain data and numeric arrays, so a crafted
batch cannot run code (torchvision's reader, ``backend="torchvision"``, uses plain pickle).

``root`` may be the folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` or that
folder itself.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import DatasetFormatError, missing_files_error, torchvision_arrays
from .safe_pickle import UnsafePickleError, load_plain_pickle
from .tensors import ImageTensorDataset

__all__ = ["load_cifar10", "load_cifar100", "read_cifar_batch", "CIFAR_URL"]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _check_plain(path: Path, key: Any, value: Any) -> None:
    """Refuse any value the CIFAR format does not hold: bytes/str, ints, lists of those, numeric arrays."""
    if isinstance(value, (bytes, str, int, np.ndarray)) and not isinstance(value, bool):
        return
    if isinstance(value, list) and all(isinstance(v, (bytes, str, int)) and not isinstance(v, bool) for v in value):
        return
    raise DatasetFormatError(f"{path}: entry {key!r} is a {type(value).__name__}; a CIFAR batch holds only byte "
                             "strings, lists of ints or byte strings, and uint8 arrays")


def read_cifar_batch(path: str | Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled CIFAR batch into (uint8 images (N, 3, 32, 32), int64 labels (N,)).

    The file is unpickled by :func:`ashlib.data.safe_pickle.load_plain_pickle`, which builds
    nothing but plain data and numeric numpy arrays: a file that names any other function or
    class (a crafted batch whose objects would run a command) is refused before anything is
    called.

    Raises:
        DatasetFormatError: the file is not a pickle of the documented dict, names a global other
            than numpy's array helpers, is truncated, has rows other than 3072 bytes, or labels
            outside ``0..num_classes-1``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            batch = load_plain_pickle(fh, encoding="bytes")
    except UnsafePickleError as exc:
        raise DatasetFormatError(f"{path}: refused, not a CIFAR batch ({exc}); the file was not unpickled "
                                 "further and nothing in it was run") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError) as exc:
        raise DatasetFormatError(f"{path}: not a readable CIFAR pickle batch ({type(exc).__name__}: {exc}); "
                                 "the file is truncated or corrupt") from exc
    if not isinstance(batch, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    for k, v in batch.items():
        if not isinstance(k, (bytes, str)):
            raise DatasetFormatError(f"{path}: dict key {k!r} is a {type(k).__name__}; expected bytes or str")
        _check_plain(path, k, v)
    keys = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in keys or label_key not in keys:
        raise DatasetFormatError(f"{path}: the dict lacks 'data' or {label_key!r} (keys: {sorted(keys)})")
    data = np.asarray(keys["data"])
    labels = np.asarray(keys[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetFormatError(f"{path}: 'data' must be uint8 of shape (N, 3072); got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DatasetFormatError(f"{path}: {labels.size} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(np.argmax((labels < 0) | (labels >= num_classes)))
        raise DatasetFormatError(
            f"{path}: label {int(labels[bad])} at index {bad} is outside 0..{num_classes - 1}; mislabelled or corrupt"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _folder(root: Path, name: str) -> Path:
    return root / name if (root / name).is_dir() else root


def _load(root: str | Path, train: bool, folder: str, files: list[str], label_key: str,
          num_classes: int, title: str) -> ImageTensorDataset:
    root = Path(root).expanduser()
    base = _folder(root, folder)
    paths = [base / f for f in files]
    if not all(p.is_file() for p in paths):
        missing = [str(p) for p in paths if not p.is_file()]
        expected = [f"{root}/{folder}/{f}" for f in files] + [f"(missing: {', '.join(missing)})"]
        raise missing_files_error(f"{title} ({'train' if train else 'test'} split)", root, expected, CIFAR_URL)
    parts = [read_cifar_batch(p, label_key, num_classes) for p in paths]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageTensorDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels))


def _via_torchvision(cls_name: str, root: str | Path, train: bool) -> ImageTensorDataset | None:
    arrays = torchvision_arrays(cls_name, root, train)
    if arrays is None:
        return None
    images = torch.from_numpy(np.ascontiguousarray(arrays[0].transpose(0, 3, 1, 2)))  # NHWC -> NCHW
    return ImageTensorDataset(images, torch.as_tensor(arrays[1], dtype=torch.int64))


def _check_backend(backend: str) -> None:
    if backend not in ("auto", "ashlib", "torchvision"):
        raise ValueError(f"backend={backend!r}; allowed: 'auto', 'ashlib', 'torchvision'")


def load_cifar10(root: str | Path, train: bool = True, backend: str = "auto") -> ImageTensorDataset:
    """CIFAR-10: float images (N, 3, 32, 32) in [0, 1] (stored as uint8) and labels 0..9.

    Args:
        root: folder with ``cifar-10-batches-py`` (or that folder itself).
        train: the five training batches (50,000 images) or ``test_batch`` (10,000).
        backend: ``"auto"`` or ``"ashlib"``: ashlib's restricted reader, which cannot run code from a
            crafted file; ``"torchvision"``: torchvision's reader, which unpickles with plain
            :func:`pickle.load` (only for files you trust).

    Raises:
        FileNotFoundError: batches missing (the message lists them and the download page).
        DatasetFormatError: a batch is truncated, corrupt or mislabelled.
    """
    _check_backend(backend)
    if backend == "torchvision":
        ds = _via_torchvision("CIFAR10", root, train)
        if ds is None:
            raise ImportError("backend='torchvision' but torchvision is not installed or did not find the files")
        return ds
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    return _load(root, train, "cifar-10-batches-py", files, "labels", 10, "CIFAR-10")


def load_cifar100(root: str | Path, train: bool = True, coarse: bool = False,
                  backend: str = "auto") -> ImageTensorDataset:
    """CIFAR-100: float images (N, 3, 32, 32) in [0, 1] and fine labels 0..99 (or coarse 0..19).

    See :func:`load_cifar10` for the arguments (``backend="auto"`` is ashlib's safe reader);
    ``coarse`` picks the 20 superclasses.
    """
    _check_backend(backend)
    if backend == "torchvision" and not coarse:
        ds = _via_torchvision("CIFAR100", root, train)
        if ds is None:
            raise ImportError("backend='torchvision' but torchvision is not installed or did not find the files")
        return ds
    key, n = ("coarse_labels", 20) if coarse else ("fine_labels", 100)
    return _load(root, train, "cifar-100-python", ["train" if train else "test"], key, n, "CIFAR-100")
