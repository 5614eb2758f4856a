"""ADE20K scene parsing (the MIT SceneParsing benchmark, 150 classes) from its extracted folder.

Layout (``ADEChallengeData2016.zip`` from http://sceneparsing.csail.mit.edu/, extracted)::

    root/ADEChallengeData2016/images/training/ADE_train_00000001.jpg ... (20,210 images)
    root/ADEChallengeData2016/images/validation/ADE_val_00000001.jpg ... (2,000 images)
    root/ADEChallengeData2016/annotations/training/ADE_train_00000001.png ...
    root/ADEChallengeData2016/annotations/validation/ADE_val_00000001.png ...

``root`` may also be the ``ADEChallengeData2016`` folder itself. An annotation is an 8-bit PNG
whose value is 0 for "other objects" (not scored by the benchmark) and 1..150 for the classes.
As in the benchmark's own evaluation, 0 becomes :data:`ADE20K_IGNORE` (left out of the loss
and of every metric) and class ``v`` becomes ``v - 1``, so targets are 0..149.

Each image is resized so that its shorter side is ``image_size`` (bilinear; its annotation with
nearest-neighbour, so no class is invented at a boundary) and centre-cropped to a square.
Images are read lazily, one per access. Nothing is downloaded: a missing folder raises a
FileNotFoundError that names the files expected and the official page.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ._common import DatasetFormatError, missing_files_error

__all__ = ["ADE20KFolder", "load_ade20k", "ADE20K_URL", "ADE20K_CLASSES", "ADE20K_IGNORE"]

ADE20K_URL = "http://sceneparsing.csail.mit.edu/ (ADEChallengeData2016.zip)"
#: number of scored classes
ADE20K_CLASSES = 150
#: target value of the unscored "other objects" pixels
ADE20K_IGNORE = 255
_SPLITS = {"training": "ADE_train_", "validation": "ADE_val_"}


def _base(root: Path) -> Path | None:
    for cand in (root / "ADEChallengeData2016", root):
        if (cand / "images").is_dir() and (cand / "annotations").is_dir():
            return cand
    return None


class ADE20KFolder(Dataset):
    """One split of ADEChallengeData2016 as (image (3, S, S) in [0, 1], int64 target (S, S)) pairs.

    Args:
        root: the folder holding ``ADEChallengeData2016`` (or that folder itself).
        split: ``"training"`` or ``"validation"``.
        image_size: side S of the square crop.
        limit: use only the first ``limit`` images in sorted order (None: all).

    Raises:
        FileNotFoundError: the split's images or annotations are missing (the message names them),
            or an image has no annotation file.
        DatasetFormatError (on access): a file that PIL cannot decode, naming the file.
    """

    num_classes = ADE20K_CLASSES
    ignore_index = ADE20K_IGNORE

    def __init__(self, root: str | Path, split: str = "training", image_size: int = 256, limit: int | None = None) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split={split!r}; allowed: {', '.join(_SPLITS)}")
        if image_size < 1:
            raise ValueError(f"image_size={image_size}; must be a positive integer")
        root = Path(root).expanduser()
        base = _base(root) if root.is_dir() else None
        prefix = _SPLITS[split]
        images = sorted((base / "images" / split).glob(prefix + "*.jpg")) if base is not None else []
        if not images:
            where = base if base is not None else root / "ADEChallengeData2016"
            raise missing_files_error(
                f"ADE20K ({split} split)", root,
                [f"{where}/images/{split}/{prefix}00000001.jpg ... (.jpg images)",
                 f"{where}/annotations/{split}/{prefix}00000001.png ... (8-bit PNG class maps, 0 = other)"],
                ADE20K_URL)
        if limit is not None:
            images = images[:limit]
        annotations = [base / "annotations" / split / (p.stem + ".png") for p in images]
        missing = [a for a in annotations if not a.is_file()]
        if missing:
            raise FileNotFoundError(f"ADE20K ({split} split): {len(missing)} image(s) have no annotation, e.g. "
                                    f"{missing[0]} for {images[annotations.index(missing[0])]}; extract "
                                    f"ADEChallengeData2016.zip completely ({ADE20K_URL})")
        self.images, self.annotations = images, annotations
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.images)

    def _read(self, path: Path, mode: str, resample: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 (PIL comes with matplotlib)

        try:
            with Image.open(path) as im:
                im = im.convert(mode)
                w, h = im.size
                scale = self.image_size / min(w, h)
                nw, nh = max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))
                im = im.resize((nw, nh), resample)
                left, top = (nw - self.image_size) // 2, (nh - self.image_size) // 2
                im = im.crop((left, top, left + self.image_size, top + self.image_size))
                return np.asarray(im, dtype=np.uint8).copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DatasetFormatError(f"{path}: cannot decode the image ({exc}); the file is truncated or corrupt") from exc

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image  # noqa: PLC0415

        img = torch.from_numpy(self._read(self.images[index], "RGB", Image.BILINEAR)).permute(2, 0, 1).float().div_(255.0)
        ann = torch.from_numpy(self._read(self.annotations[index], "L", Image.NEAREST)).long()
        if int(ann.max()) > ADE20K_CLASSES:
            raise DatasetFormatError(f"{self.annotations[index]}: class value {int(ann.max())} > {ADE20K_CLASSES}; "
                                     "not an ADEChallengeData2016 annotation")
        target = torch.where(ann == 0, torch.full_like(ann, ADE20K_IGNORE), ann - 1)
        return img, target


def load_ade20k(root: str | Path, image_size: int = 256, limit: int | None = None) -> tuple[ADE20KFolder, ADE20KFolder]:
    """(training, validation) splits of ADE20K; see :class:`ADE20KFolder`."""
    return (ADE20KFolder(root, "training", image_size, limit), ADE20KFolder(root, "validation", image_size, limit))
