"""In-memory datasets that can be indexed by a whole batch of indices at once.

``fit`` (``ashlib.train``) iterates such datasets without a DataLoader: one fancy-index per
batch is much cheaper than collating single examples, which matters for the tiny networks
of the Farhadi experiments on a CPU.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import Dataset, TensorDataset

__all__ = ["ImageTensorDataset", "SegmentationTensorDataset", "is_batch_indexable", "subset", "dataset_tensors"]


class ImageTensorDataset(Dataset):
    """uint8 images (N, C, H, W) kept as bytes and returned as float32 in [0, 1], with labels.

    Args:
        images: uint8 tensor (N, C, H, W).
        labels: int64 tensor (N,).

    ``ds[i]`` gives ``(image, label)``; ``ds[index_tensor]`` gives a batch.
    """

    batch_indexable = True

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W); got {images.dtype} {tuple(images.shape)}")
        if labels.dim() != 1 or len(labels) != len(images):
            raise ValueError(f"labels must be 1-D with {len(images)} entries; got {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):  # noqa: ANN001 (int, slice or index tensor)
        return self.images[index].float().div_(255.0), self.labels[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored tensors (uint8 images, labels), like TensorDataset.tensors."""
        return self.images, self.labels


def is_batch_indexable(ds: Dataset) -> bool:
    """True when ``ds[index_tensor]`` returns a whole batch (TensorDataset and ImageTensorDataset)."""
    return isinstance(ds, TensorDataset) or bool(getattr(ds, "batch_indexable", False))


def subset(ds: Dataset, indices: Sequence[int] | torch.Tensor) -> Dataset:
    """The examples ``indices`` of ``ds``, as a dataset of the same kind when it is batch-indexable."""
    idx = torch.as_tensor(indices, dtype=torch.long)
    if isinstance(ds, TensorDataset):
        return TensorDataset(*(t[idx] for t in ds.tensors))
    if isinstance(ds, ImageTensorDataset):
        return ImageTensorDataset(ds.images[idx], ds.labels[idx])
    return torch.utils.data.Subset(ds, idx.tolist())


def dataset_tensors(ds: Dataset) -> tuple[torch.Tensor, ...]:
    """All examples of a batch-indexable dataset as tensors (inputs, targets)."""
    if not is_batch_indexable(ds):
        raise TypeError(f"{type(ds).__name__} is not batch-indexable")
    return tuple(ds[torch.arange(len(ds))])


class SegmentationTensorDataset(Dataset):
    """uint8 images (N, C, H, W), returned as float32 in [0, 1], with int64 class maps (N, H, W).

    ``ds[i]`` gives ``(image, class_map)``; ``ds[index_tensor]`` gives a batch (like
    :class:`ImageTensorDataset`, for semantic segmentation).
    """

    batch_indexable = True

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W); got {images.dtype} {tuple(images.shape)}")
        if targets.dim() != 3 or targets.shape != (images.shape[0], *images.shape[2:]):
            raise ValueError(f"targets must be (N, H, W) = {(images.shape[0], *images.shape[2:])}; "
                             f"got {tuple(targets.shape)}")
        self.images = images
        self.targets = targets.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):  # noqa: ANN001 (int, slice or index tensor)
        return self.images[index].float().div_(255.0), self.targets[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored tensors (uint8 images, class maps)."""
        return self.images, self.targets
