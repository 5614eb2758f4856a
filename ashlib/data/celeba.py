"""CelebA faces from the aligned-and-cropped image folder.

Layout (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, "Align&Cropped Images",
``img_align_celeba.zip`` extracted): ``root/img_align_celeba/000001.jpg`` ...
(202,599 JPEGs of 178 x 218 pixels). ``root/celeba/img_align_celeba`` (torchvision's
layout) and ``root`` itself holding the JPEGs are accepted too.

Each image is centre-cropped to a square of its shorter side (178 x 178, the face) and
resized to ``image_size`` (64 for DCGAN). Images are read lazily, one per access.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._common import DatasetFormatError, missing_files_error

__all__ = ["CelebAFolder", "load_celeba", "CELEBA_URL"]

CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
_EXTS = {".jpg", ".jpeg", ".png"}


def _image_folder(root: Path) -> Path | None:
    for cand in (root / "img_align_celeba", root / "celeba" / "img_align_celeba", root):
        if cand.is_dir() and any(p.suffix.lower() in _EXTS for p in cand.iterdir()):
            return cand
    return None


class CelebAFolder(Dataset):
    """Images of an extracted CelebA folder as float tensors (3, S, S) in [0, 1].

    Args:
        root: the folder (see the module docstring for the layouts accepted).
        image_size: side S of the square output.
        limit: use only the first ``limit`` files in sorted order (None: all).

    ``ds[i]`` returns ``(image, 0)``: a dummy label, so the loader looks like a labelled one.

    Raises:
        FileNotFoundError: no image folder under ``root``.
        DatasetFormatError (on access): an image file that PIL cannot decode, naming the file.
    """

    def __init__(self, root: str | Path, image_size: int = 64, limit: int | None = None) -> None:
        if image_size < 1:
            raise ValueError(f"image_size={image_size}; must be a positive integer")
        root = Path(root).expanduser()
        folder = _image_folder(root) if root.is_dir() else None
        if folder is None:
            raise missing_files_error(
                "CelebA", root,
                [f"{root}/img_align_celeba/000001.jpg ... 202599.jpg",
                 f"(or {root}/celeba/img_align_celeba/*.jpg)"],
                CELEBA_URL,
            )
        self.folder = folder
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _EXTS)
        if limit is not None:
            self.files = self.files[:limit]
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def load_image(self, path: Path) -> torch.Tensor:
        """Decode, centre-crop to a square and resize one file."""
        from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 (PIL comes with matplotlib)

        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                w, h = im.size
                s = min(w, h)
                left, top = (w - s) // 2, (h - s) // 2
                im = im.crop((left, top, left + s, top + s))
                im = im.resize((self.image_size, self.image_size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DatasetFormatError(f"{path}: cannot decode the image ({exc}); the file is truncated or corrupt") from exc
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load_image(self.files[index]), 0


def load_celeba(root: str | Path, image_size: int = 64, limit: int | None = None) -> CelebAFolder:
    """CelebA aligned faces as a lazily-read dataset; see :class:`CelebAFolder`."""
    return CelebAFolder(root, image_size=image_size, limit=limit)
