"""A pickle reader that builds only plain data and numeric numpy arrays: it cannot run code.

:func:`load_plain_pickle` unpickles with a :class:`pickle.Unpickler` whose ``find_class``
hands out exactly the numpy callables an ndarray's pickle names (``_reconstruct``, ``ndarray``,
``dtype``, and ``_frombuffer`` for protocol 5), plus ``_codecs.encode`` with the ``latin1``
codec only (how Python 3 writes ``bytes`` at protocols 0 to 2), under both the numpy 1 (``numpy.core``) and the
numpy 2 (``numpy._core``) module names, and refuses every other global *before* it is looked up,
so a file whose objects reduce to ``os.system`` or ``eval`` fails without calling anything.
Dtypes that hold Python objects (``object``, structured dtypes) are refused as well. Without
globals, pickle can build only ``dict``, ``list``, ``tuple``, ``str``, ``bytes``, ``int``,
``float``, ``bool``, ``None``, ``set`` and ``frozenset``.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO, Callable

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "load_plain_pickle"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global (a function or class) that the restricted reader does not allow."""


def _safe_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject or dt.fields is not None or dt.subdtype is not None or dt.kind not in "biuf":
        raise UnsafePickleError(f"numpy dtype {dt!r} refused: only bool, integer and float arrays are allowed")
    return dt


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError(f"_codecs.encode refused for ({type(text).__name__}, {encoding!r}): only "
                                "(str, 'latin1'), the way pickle writes bytes, is allowed")
    return text.encode("latin1")


# the real callables, found through numpy's own reducers (numpy.core in numpy 1, numpy._core in numpy 2)
_RECONSTRUCT: Callable = np.ndarray.__reduce__(np.zeros(1))[0]
_FROMBUFFER: Callable = np.ndarray.__reduce_ex__(np.zeros(1), 5)[0]

_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _mod in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_mod}.multiarray", "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(f"{_mod}.numeric", "_frombuffer")] = _FROMBUFFER


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose only globals are numpy's ndarray reconstruction helpers (see the module docstring).

    ``persistent_load`` is not defined, so persistent ids are refused by :mod:`pickle` itself.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 (documented in the class)
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"global '{module}.{name}' refused: the file may only hold plain data "
                                    "(dicts, lists, bytes, str, numbers) and numeric numpy arrays") from None


def load_plain_pickle(file: BinaryIO | bytes, encoding: str = "bytes") -> Any:
    """Unpickle ``file`` (an open binary file or bytes) with :class:`RestrictedUnpickler`.

    ``encoding`` decodes Python 2 ``str`` objects (``"bytes"`` keeps them as bytes, as the
    CIFAR page recommends). Raises :class:`UnsafePickleError` for any global other than the
    numpy array helpers, and :class:`pickle.UnpicklingError`, ``EOFError`` and friends for
    a damaged file, like :func:`pickle.load`.
    """
    fh = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
    return RestrictedUnpickler(fh, encoding=encoding).load()
