"""Loaders on small files written here in the real on-disk formats (IDX, CIFAR pickles, CelebA JPEGs)."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from ashlib.data import (DatasetFormatError, load_celeba, load_cifar10, load_cifar100, load_digits,
                         load_fashion_mnist, load_mnist, make_teacher_data, read_idx)


# ----------------------------------------------------------------------------- IDX writers (format spec)


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX as specified on yann.lecun.com: 0x0000, type 0x08, ndim, big-endian dims, data."""
    assert arr.dtype == np.uint8
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_mnist(folder, n_train=6, n_test=4, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        img = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        lbl = rng.integers(0, 10, size=n, dtype=np.uint8)
        for stem, arr in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lbl)):
            data = idx_bytes(arr)
            if gz:
                (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
            else:
                (folder / stem).write_bytes(data)
        out[prefix] = (img, lbl)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_raw_and_gz(tmp_path, gz):
    ref = write_mnist(tmp_path, gz=gz)
    ds = load_mnist(tmp_path, train=True, backend="ashlib")
    x, y = ds[torch.arange(len(ds))]
    assert x.shape == (6, 1, 28, 28) and x.dtype == torch.float32
    img, lbl = ref["train"]
    assert torch.equal(y, torch.as_tensor(lbl, dtype=torch.int64))
    # pixel 255 maps to 1.0, pixel v to v/255
    assert torch.allclose(x[:, 0], torch.as_tensor(img, dtype=torch.float32) / 255)
    test = load_mnist(tmp_path, train=False, backend="ashlib")
    assert len(test) == 4


def test_mnist_torchvision_layout_and_fashion(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw")
    assert len(load_mnist(tmp_path, backend="ashlib")) == 6
    write_mnist(tmp_path / "FashionMNIST" / "raw", n_train=3)
    assert len(load_fashion_mnist(tmp_path, backend="ashlib")) == 3


def test_mnist_missing_names_files_and_url(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path, backend="ashlib")
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and "yann.lecun.com" in msg


def test_mnist_truncated_file(tmp_path):
    write_mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DatasetFormatError, match="truncated") as err:
        load_mnist(tmp_path, backend="ashlib")
    assert str(p) in str(err.value)


def test_mnist_truncated_gzip(tmp_path):
    write_mnist(tmp_path, gz=True)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:20])
    with pytest.raises(DatasetFormatError) as err:
        load_mnist(tmp_path, backend="ashlib")
    assert str(p) in str(err.value)


def test_mnist_mislabelled_and_mismatched(tmp_path):
    write_mnist(tmp_path)
    bad = np.array([1, 2, 12, 3, 4, 5], dtype=np.uint8)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(bad))
    with pytest.raises(DatasetFormatError, match=r"label 12 at index 2 is outside 0\.\.9"):
        load_mnist(tmp_path, backend="ashlib")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(5, dtype=np.uint8)))
    with pytest.raises(DatasetFormatError, match="5 labels for 6 images"):
        load_mnist(tmp_path, backend="ashlib")


def test_idx_bad_magic(tmp_path):
    p = tmp_path / "x-idx1-ubyte"
    p.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(DatasetFormatError, match="not an IDX file"):
        read_idx(p)


def test_idx_other_dtype(tmp_path):
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    p = tmp_path / "ints"
    p.write_bytes(bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 3) + arr.tobytes())
    out = read_idx(p)
    assert out.shape == (2, 3) and out.tolist() == [[0, 1, 2], [3, 4, 5]]


# ----------------------------------------------------------------------------- CIFAR


def write_cifar_batch(path, n, label_key, n_classes, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, n_classes, size=n).tolist()
    # the official files are Python 2 pickles: their str keys come back as bytes
    batch = {b"batch_label": b"testing batch", b"data": data, label_key.encode(): labels,
             b"filenames": [b"f%d.png" % i for i in range(n)]}
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    return data, labels


def test_cifar10_layout_and_pixel_order(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    refs = [write_cifar_batch(folder / f"data_batch_{i}", 3, "labels", 10, i) for i in range(1, 6)]
    write_cifar_batch(folder / "test_batch", 2, "labels", 10, 9)
    ds = load_cifar10(tmp_path, backend="ashlib")
    assert len(ds) == 15
    x, y = ds[0]
    row = refs[0][0][0]
    # row layout: 1024 red values, 1024 green, 1024 blue, each 32 x 32 row-major
    assert x.shape == (3, 32, 32)
    assert x[1, 2, 5] == pytest.approx(row[1024 + 2 * 32 + 5] / 255)
    assert x[2, 31, 31] == pytest.approx(row[3071] / 255)
    assert int(y) == refs[0][1][0]
    assert len(load_cifar10(folder, train=False, backend="ashlib")) == 2


def test_cifar10_missing_truncated_mislabelled(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 5):
        write_cifar_batch(folder / f"data_batch_{i}", 2, "labels", 10, i)
    with pytest.raises(FileNotFoundError, match="data_batch_5") as err:
        load_cifar10(tmp_path, backend="ashlib")
    assert "cs.toronto.edu" in str(err.value)
    write_cifar_batch(folder / "data_batch_5", 2, "labels", 10, 5)
    p = folder / "data_batch_3"
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DatasetFormatError, match="data_batch_3"):
        load_cifar10(tmp_path, backend="ashlib")
    write_cifar_batch(p, 2, "labels", 10, 3)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 10]}, fh, protocol=2)
    with pytest.raises(DatasetFormatError, match=r"label 10 at index 1 is outside 0\.\.9"):
        load_cifar10(tmp_path, train=False, backend="ashlib")


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    with open(folder / "train", "wb") as fh:
        pickle.dump({b"data": data, b"fine_labels": [0, 99, 5, 7], b"coarse_labels": [0, 19, 1, 2]}, fh, protocol=2)
    fine = load_cifar100(tmp_path, backend="ashlib")
    assert fine[torch.arange(4)][1].tolist() == [0, 99, 5, 7]
    coarse = load_cifar100(tmp_path, coarse=True, backend="ashlib")
    assert coarse[torch.arange(4)][1].tolist() == [0, 19, 1, 2]


# ----------------------------------------------------------------------------- CelebA


def test_celeba_folder_crop_resize_and_corrupt(tmp_path):
    from PIL import Image

    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    # 178 x 218 like the aligned CelebA images: red square in the centre, blue bands above and below
    arr = np.zeros((218, 178, 3), np.uint8)
    arr[:, :, 2] = 255
    arr[20:198, :, :] = (255, 0, 0)
    Image.fromarray(arr).save(folder / "000001.jpg", quality=95)
    Image.fromarray(arr).save(folder / "000002.png")
    ds = load_celeba(tmp_path, image_size=16)
    assert len(ds) == 2
    x, label = ds[1]
    assert x.shape == (3, 16, 16) and label == 0
    # the centre crop (rows 20..197) is all red: the blue bands are cut away
    assert torch.allclose(x[0], torch.ones(16, 16)) and float(x[2].max()) == 0.0
    (folder / "000003.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = load_celeba(tmp_path, image_size=16)
    with pytest.raises(DatasetFormatError, match="000003.jpg"):
        ds[2]


def test_celeba_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="img_align_celeba") as err:
        load_celeba(tmp_path)
    assert "mmlab.ie.cuhk.edu.hk" in str(err.value)


# ----------------------------------------------------------------------------- digits


def test_digits_split_and_shape():
    tr, te = load_digits(image_size=28, seed=0)
    assert len(tr) + len(te) == 1797
    xtr, ytr = tr.tensors
    assert xtr.shape[1:] == (1, 28, 28) and 0.0 <= float(xtr.min()) and float(xtr.max()) <= 1.0
    # 4-pixel zero border (a 20 x 20 digit in a 28 x 28 frame, as MNIST)
    assert float(xtr[:, :, :4].abs().max()) == 0.0 and float(xtr[:, :, :, -4:].abs().max()) == 0.0
    # stratified: every class in both splits, roughly 25 % held out
    counts = torch.bincount(te.tensors[1], minlength=10)
    assert (counts > 0).all() and abs(len(te) / 1797 - 0.25) < 0.01
    tr2, te2 = load_digits(image_size=28, seed=0)
    assert torch.equal(te.tensors[0], te2.tensors[0])
    _, te3 = load_digits(image_size=28, seed=1)
    assert not torch.equal(te.tensors[1], te3.tensors[1]) or not torch.equal(te.tensors[0], te3.tensors[0])


def test_digits_native_size_matches_sklearn():
    from sklearn.datasets import load_digits as sk

    tr, te = load_digits(image_size=8, padding=0)
    bunch = sk()
    all_imgs = torch.cat([tr.tensors[0], te.tensors[0]]).reshape(-1, 64) * 16
    ref = torch.as_tensor(bunch.data, dtype=torch.float32)
    # same multiset of images: sort rows lexicographically via a hash-free comparison of sums
    assert torch.allclose(all_imgs.sum(), ref.sum())
    assert sorted(all_imgs.sum(1).tolist()) == sorted(ref.sum(1).tolist())


# ----------------------------------------------------------------------------- teacher simulation


def test_teacher_seeded_and_labels_are_threshold():
    a = make_teacher_data(n_samples=500, depth=1, activation="relu", seed=3)
    b = make_teacher_data(n_samples=500, depth=1, activation="relu", seed=3)
    c = make_teacher_data(n_samples=500, depth=1, activation="relu", seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    # recompute the teacher by hand with numpy: relu hidden layer, sigmoid output > 0.5
    lin = [m for m in a.teacher if isinstance(m, torch.nn.Linear)]
    w1, b1 = lin[0].weight.numpy().astype(np.float64), lin[0].bias.numpy().astype(np.float64)
    w2, b2 = lin[1].weight.numpy().astype(np.float64), lin[1].bias.numpy().astype(np.float64)
    h = np.maximum(a.x.numpy().astype(np.float64) @ w1.T + b1, 0)
    p = 1 / (1 + np.exp(-(h @ w2.T + b2)[:, 0]))
    agree = ((p > 0.5).astype(np.float32) == a.y.numpy()).mean()
    assert agree > 0.998  # float32 vs float64 may flip an example sitting on the boundary
    assert a.x.shape == (500, 10) and set(a.y.unique().tolist()) <= {0.0, 1.0}


def test_teacher_weight_distribution():
    d = make_teacher_data(n_samples=10, n_features=400, depth=1, width=400, seed=0)
    w = d.teacher[0].weight.flatten().double()
    # equal mixture of N(-1, 0.5^2) and N(1, 0.5^2): mean 0, E[w^2] = 1 + 0.25, P(w < 0) = 1/2
    assert abs(float(w.mean())) < 0.02
    assert float((w ** 2).mean()) == pytest.approx(1.25, abs=0.02)
    assert float((w < 0).double().mean()) == pytest.approx(0.5, abs=0.01)
    # bimodal: few weights near 0 (density of the mixture at 0 is 2 * 0.5 * phi(2)/0.5 ~ 0.108 per unit)
    assert float((w.abs() < 0.1).double().mean()) == pytest.approx(0.2 * 0.108, abs=0.006)
    bias = d.teacher[0].bias.double()
    assert float(bias.std()) == pytest.approx(0.5, abs=0.06)


def test_teacher_min_minority_and_bernoulli():
    d = make_teacher_data(n_samples=2000, depth=8, activation="sigmoid", seed=0, min_minority=0.1)
    assert min(d.positive_fraction, 1 - d.positive_fraction) >= 0.1
    assert d.config["draws"] >= 1
    e = make_teacher_data(n_samples=2000, depth=1, seed=0, label="bernoulli")
    assert set(e.y.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="label"):
        make_teacher_data(label="coin")
    with pytest.raises(ValueError, match="activation"):
        make_teacher_data(activation="tanh")
