"""Shared helpers of the dataset loaders: error messages and optional torchvision."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["DatasetFormatError", "missing_files_error", "torchvision_available"]


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
