"""Reader for the IDX file format of MNIST and Fashion-MNIST.

An IDX file is: two zero bytes, one type byte (0x08 unsigned byte, 0x09 signed byte,
0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), one byte giving the number of
dimensions ``d``, then ``d`` big-endian uint32 sizes, then the values in C order,
big-endian. Files may be gzip-compressed (``.gz``). Format description:
http://yann.lecun.com/exdb/mnist/ (section "FILE FORMATS FOR THE MNIST DATABASE").
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ._common import DatasetFormatError

__all__ = ["read_idx", "IDX_DTYPES"]

#: IDX type byte -> numpy big-endian dtype
IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def _open_bytes(path: Path) -> bytes:
    """Read a file, un-gzipping it when its name ends in .gz (errors name the file)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; truncated gzip is EOFError
        raise DatasetFormatError(f"{path}: cannot read the file ({exc}); it is corrupt or truncated") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or ``.gz``) into a numpy array in native byte order.

    Args:
        path: the file.

    Returns:
        array of the shape and dtype recorded in the header.

    Raises:
        FileNotFoundError: the file does not exist.
        DatasetFormatError: the header is not IDX, or the file is shorter or longer than
            its header says (a truncated download, for example). The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: IDX file not found")
    raw = _open_bytes(path)
    if len(raw) < 4:
        raise DatasetFormatError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    zero0, zero1, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero0 != 0 or zero1 != 0 or type_code not in IDX_DTYPES:
        raise DatasetFormatError(
            f"{path}: not an IDX file (magic bytes {raw[:4].hex()}; expected 0000 followed by a "
            f"type byte in {sorted(hex(k) for k in IDX_DTYPES)} and the number of dimensions)"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DatasetFormatError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header_len})")
    shape = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = np.dtype(IDX_DTYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header_len
    if got != expected:
        raise DatasetFormatError(
            f"{path}: header says shape {tuple(shape)} of {dtype.name} ({expected} data bytes) "
            f"but the file holds {got} data bytes; the file is truncated or corrupt"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    return data.astype(dtype.newbyteorder("="))
