"""Shared helpers of the dataset loaders: error messages and optional torchvision."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

__all__ = ["DatasetFormatError", "missing_files_error", "torchvision_available", "torchvision_arrays"]


class DatasetFormatError(ValueError):
    """A dataset file exists but its content does not match the documented format."""


def missing_files_error(name: str, root: Path, expected: list[str], url: str) -> FileNotFoundError:
    """Build a FileNotFoundError that says what was looked for, where, and where to get it."""
    listing = "\n  ".join(expected)
    return FileNotFoundError(
        f"{name}: no data found under {str(root)!r}.\n"
        f"Expected layout (raw or .gz where noted):\n  {listing}\n"
        f"Download the files from the official page: {url}\n"
        "(ashlib never downloads anything itself; place the files there and call again.)"
    )


def torchvision_available() -> bool:
    """True when torchvision can be imported (checked without importing it)."""
    return importlib.util.find_spec("torchvision") is not None


def torchvision_arrays(cls_name: str, root: str | Path, train: bool) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(images, labels) as numpy arrays read by ``torchvision.datasets.<cls_name>``, or None.

    None when torchvision is not installed or does not find the files: the callers then fall
    back to ashlib's own reader, which explains what is missing.
    """
    if not torchvision_available():
        return None
    import torchvision.datasets as tvd  # noqa: PLC0415 (optional dependency)

    try:
        ds = getattr(tvd, cls_name)(str(root), train=train, download=False)
    except (RuntimeError, OSError, ValueError):
        return None
    return np.asarray(ds.data), np.asarray(ds.targets)
