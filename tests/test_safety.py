"""Files that cannot run code: CIFAR pickles read by a restricted unpickler, checkpoints read with
``weights_only=True``. The crafted files below would run a shell command if they were unpickled
by plain :func:`pickle.load`; the tests check that the command did not run."""

from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest
import torch
from torch import nn

from ashlib.data import DatasetFormatError, load_cifar10, read_cifar_batch


class _RunsCommand:
    """Unpickling this object calls ``os.system(command)``: what an attacker would put in a data file."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _crafted_cifar(folder, marker):
    folder.mkdir(parents=True, exist_ok=True)
    batch = {b"batch_label": b"testing batch 1 of 1", b"data": _RunsCommand(f"touch {marker}"), b"labels": [0]}
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    return folder / "test_batch"


def test_crafted_cifar_batch_does_not_run_its_command(tmp_path):
    marker = tmp_path / "MARKER"
    path = _crafted_cifar(tmp_path / "cifar-10-batches-py", marker)
    with pytest.raises(DatasetFormatError) as err:
        load_cifar10(tmp_path, train=False, backend="ashlib")
    assert not marker.exists(), "loading the crafted CIFAR batch ran its command"
    assert str(path) in str(err.value)
    assert "posix" in str(err.value) or "os" in str(err.value)  # names the global it refused
    # the default backend reads CIFAR with the same reader (never torchvision's plain pickle.load)
    with pytest.raises(DatasetFormatError, match="test_batch"):
        load_cifar10(tmp_path, train=False)
    assert not marker.exists()


def test_crafted_cifar_other_globals_refused(tmp_path):
    """Globals next to the allowed numpy ones (a numpy function, builtins.eval, a class) are refused too."""
    marker = tmp_path / "MARKER2"
    for i, payload in enumerate([
        (eval, (f"__import__('os').system('touch {marker}')",)),
        (np.load, (str(tmp_path / "x.npy"),)),
        (np.frombuffer, (b"\x00",)),
    ]):
        class Obj:
            def __reduce__(self, payload=payload):
                return payload

        p = tmp_path / f"batch{i}"
        with open(p, "wb") as fh:
            pickle.dump({b"data": Obj(), b"labels": [0]}, fh, protocol=2)
        with pytest.raises(DatasetFormatError, match=f"batch{i}"):
            read_cifar_batch(p, "labels", 10)
    assert not marker.exists()


# ----------------------------------------------------------------------------- the real format


def _py2_str(b: bytes) -> bytes:
    """A Python 2 ``str`` as cPickle protocol 2 writes it: SHORT_BINSTRING or BINSTRING."""
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def _py2_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    return b"J" + struct.pack("<i", v)


def py2_cifar_pickle(data: np.ndarray, labels: list[int], filenames: list[bytes]) -> bytes:
    """The bytes of a CIFAR batch as the official files hold them, assembled opcode by opcode.

    The official ``data_batch_*`` files were written by Python 2's cPickle, protocol 2, with numpy
    1.x: a dict of py2 ``str`` keys, the ``data`` array reduced to
    ``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), 'b')`` and then BUILD with
    ``(1, shape, dtype('u1'), False, raw bytes)``, the dtype reduced to ``numpy.dtype('u1', 0, 1)``
    with state ``(3, '|', None, None, None, -1, -1, 0)``. Written here independently of
    ``pickle``/numpy's own reducers, so the reader is tested against the real layout.
    """
    out = [b"\x80\x02", b"}q\x00("]  # PROTO 2, EMPTY_DICT, BINPUT 0, MARK
    out += [_py2_str(b"batch_label"), _py2_str(b"training batch 1 of 5")]
    # data
    out += [_py2_str(b"data"), b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n",
            b"K\x00\x85", _py2_str(b"b"), b"\x87R"]  # (ndarray, (0,), 'b') REDUCE
    out += [b"(K\x01", _py2_int(data.shape[0]), _py2_int(data.shape[1]), b"\x86"]  # (1, shape,
    out += [b"cnumpy\ndtype\n", _py2_str(b"u1"), b"K\x00K\x01\x87R"]  # dtype('u1', 0, 1)
    out += [b"(K\x03", _py2_str(b"|"), b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"]  # BUILD dtype state
    out += [b"\x89", _py2_str(data.tobytes()), b"tb"]  # False, raw) BUILD array
    # labels
    out += [_py2_str(b"labels"), b"](", *[_py2_int(v) for v in labels], b"e"]
    out += [_py2_str(b"filenames"), b"](", *[_py2_str(f) for f in filenames], b"e"]
    out += [b"u."]  # SETITEMS, STOP
    return b"".join(out)


def test_py2_format_file_loads(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    labels = [3, 0, 9, 1]
    raw = py2_cifar_pickle(data, labels, [b"a.png", b"b.png", b"c.png", b"d.png"])
    # the assembled bytes are a valid pickle that plain pickle reads as the documented dict
    plain = pickle.loads(raw, encoding="bytes")
    assert sorted(plain) == [b"batch_label", b"data", b"filenames", b"labels"]
    assert np.array_equal(plain[b"data"], data)
    p = tmp_path / "data_batch_1"
    p.write_bytes(raw)
    images, y = read_cifar_batch(p, "labels", 10)
    assert images.dtype == np.uint8 and images.shape == (4, 3, 32, 32)
    assert np.array_equal(images.reshape(4, -1), data) and y.tolist() == labels


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_installed_numpy_pickles_load(tmp_path, protocol):
    """Files re-pickled by this Python and numpy (numpy 2 names numpy._core) still load."""
    rng = np.random.default_rng(protocol)
    data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"x", b"data": data, b"labels": [1, 2, 3], b"filenames": [b"a", b"b", b"c"]}
    p = tmp_path / "batch"
    p.write_bytes(pickle.dumps(batch, protocol=protocol))
    images, y = read_cifar_batch(p, "labels", 10)
    assert np.array_equal(images.reshape(3, -1), data) and y.tolist() == [1, 2, 3]


def test_object_arrays_and_other_values_refused(tmp_path):
    p = tmp_path / "batch"
    p.write_bytes(pickle.dumps({b"data": np.array([b"x", None], dtype=object), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DatasetFormatError, match="batch"):
        read_cifar_batch(p, "labels", 10)
    p.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": {0: 1}}, protocol=2))
    with pytest.raises(DatasetFormatError, match="batch"):
        read_cifar_batch(p, "labels", 10)


# ----------------------------------------------------------------------------- checkpoints

from ashlib.train import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, fit, seed_everything  # noqa: E402


def _tiny_fit(ckpt, epochs=2, **kw):
    seed_everything(0)
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, (x.sum(1) > 0).long())
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    return fit(model, data, epochs=epochs, batch_size=8, lr=0.1, seed=0, progress=False, checkpoint=ckpt, **kw)


def test_checkpoint_is_plain_data_with_a_version(tmp_path):
    ckpt = tmp_path / "run.pt"
    res = _tiny_fit(ckpt, record_epoch=lambda e, m: {"epoch": e, "w": m[0].weight.detach().clone()})
    state = torch.load(ckpt, weights_only=True)  # torch's own safe loader reads it without extra globals
    assert state["format"] == CHECKPOINT_FORMAT and state["version"] == CHECKPOINT_VERSION
    assert [r["epoch"] for r in state["records"]] == [1, 2] and len(res.records) == 2
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    # resuming a finished run trains nothing more and returns the saved records
    again = _tiny_fit(ckpt, record_epoch=lambda e, m: None)
    assert again.resumed_from == 2 and torch.equal(again.records[1]["w"], res.records[1]["w"])


def test_checkpoint_with_a_foreign_object_is_refused(tmp_path):
    marker = tmp_path / "MARKER"
    ckpt = tmp_path / "run.pt"
    _tiny_fit(ckpt)
    state = torch.load(ckpt, weights_only=True)
    state["history"].append(_RunsCommand(f"touch {marker}"))
    torch.save(state, ckpt)
    with pytest.raises(CheckpointError, match="posix.system") as err:
        _tiny_fit(ckpt, epochs=3)
    assert not marker.exists(), "resuming the crafted checkpoint ran its command"
    assert str(ckpt) in str(err.value) and "start over" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_checkpoint_of_another_version_or_program(tmp_path):
    ckpt = tmp_path / "run.pt"
    _tiny_fit(ckpt)
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "version": CHECKPOINT_VERSION + 1}, ckpt)
    with pytest.raises(CheckpointError, match=f"version {CHECKPOINT_VERSION + 1}.*resume=False"):
        _tiny_fit(ckpt)
    torch.save(nn.Linear(3, 4).state_dict(), ckpt)  # a bare state dict: readable, but not fit's checkpoint
    with pytest.raises(CheckpointError, match="not an ashlib fit checkpoint"):
        _tiny_fit(ckpt)
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match=str(ckpt)):
        _tiny_fit(ckpt)
    assert _tiny_fit(ckpt, resume=False).resumed_from == 0  # the way out the messages name
