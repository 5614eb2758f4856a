"""Output tensors whose memory comes from the native block cache (``pool.c``).

The CPU operators allocate their large outputs (y, and dL/dx in the backward) here instead of
from glibc. glibc returns a freed block of many megabytes to the system whenever it ends up at the
top of the heap, and the next call page-faults the same memory in again, 4 kB at a time; whether a
process falls into that pattern depends on every allocation before it, so the same model runs at
full speed in one process and far slower in the next (measured in notebook 07: up to 2.2x the
time of a call on a 16 MiB feature map). A block from the cache is mapped once and, when the
tensor that owns it is freed, kept for the next output of the same size.

The tensors are ordinary CPU tensors (not views) that own their memory; one difference from
``torch.empty``: their storage cannot be resized in place, so ``resize_`` to a larger size, and an
``out=`` argument of a larger shape (``torch.cat(..., out=y)``), raise "Trying to resize storage
that is not resizable" where a ``torch.empty`` tensor would be resized. This holds for ``x.grad``
too when autograd takes dL/dx over as the gradient (optimizers, gradient clipping and DDP work on
it as on any other gradient).

What comes from here: y and dL/dx of the native kernels (float32 and bfloat16) on all routes,
and the outputs of ASH's ATen path; float64 and float16 inputs of the element-wise ops, and copies
made for non-dense views, still come from ``torch.empty``. The limit holds per process: each
DataLoader worker or DDP rank that runs the operators keeps its own cache.

- ``ASHLIB_POOL_MB`` (default 1024, or an eighth of the memory the process may use, the
  machine's or its container's, where that is less)
  caps the megabytes kept in free blocks; 0 turns the cache off (outputs then come from
  ``torch.empty``).
- A request takes a free block of its size (rounded up to :data:`GRAIN`) or the smallest one up
  to a quarter larger, so that, say, a smaller last batch reuses the full batches' blocks.
- :func:`release` unmaps the free blocks now; :func:`set_limit` changes the cap;
  :func:`cached_bytes` says what is kept.
- Requests under :data:`MIN_BYTES` (128 kB) take ``torch.empty``: glibc keeps small blocks in its heap.
- While the PyTorch profiler runs, every request takes ``torch.empty``, so that the profiler's
  memory events (``profile_memory=True``) count the outputs as they count any other op's.
"""
from __future__ import annotations

import ctypes
import math
import os
import threading
from typing import Dict, Optional, Sequence

import torch

__all__ = ["empty", "empty_on", "empty_like", "cached_bytes", "release", "set_limit", "MIN_BYTES", "enabled"]

#: smaller outputs come from torch.empty: 128 kB is glibc's initial mmap threshold, above which
#: it maps (and on free unmaps) each block until it has adapted, and may trim them later
MIN_BYTES = 1 << 17
#: the unit blocks are rounded up to (POOL_GRAIN in pool.c; a test checks that they agree)
GRAIN = 1 << 16
_DEFAULT_MB = 1024

_lock = threading.Lock()
_state: Dict[str, object] = {"lib": None, "checked": False}
_types: Dict[int, type] = {}
_ITEMSIZE: Dict[torch.dtype, int] = {}
_MAX_TYPES = 1024


def _lib():
    """The kernels' library with the pool functions set up, or None (no native kernels, an old
    build without them, or ASHLIB_POOL_MB=0)."""
    if _state["checked"]:
        return _state["lib"]
    with _lock:
        if _state["checked"]:
            return _state["lib"]
        from . import library
        lib = library()
        if lib is not None and hasattr(lib, "ashlib_pool_get"):
            size_t = ctypes.c_size_t
            lib.ashlib_pool_get.argtypes = [size_t, ctypes.POINTER(size_t)]
            lib.ashlib_pool_get.restype = ctypes.c_void_p
            lib.ashlib_pool_put.argtypes, lib.ashlib_pool_put.restype = [ctypes.c_void_p, size_t], None
            lib.ashlib_pool_size.argtypes, lib.ashlib_pool_size.restype = [size_t], size_t
            for name in ("ashlib_pool_set_limit", "ashlib_pool_release", "ashlib_pool_cached"):
                getattr(lib, name).restype = size_t
            lib.ashlib_pool_set_limit.argtypes = [size_t]
            lib.ashlib_pool_release.argtypes = lib.ashlib_pool_cached.argtypes = []
            mb = _limit_from_env()
            lib.ashlib_pool_set_limit(mb << 20)
            if mb == 0:
                lib = None
        else:
            lib = None
        _state["lib"], _state["checked"] = lib, True
    return lib


def _memory_bytes() -> Optional[int]:
    """The memory this process may use: the machine's, or its cgroup's limit where that is lower
    (a container); None when neither can be read."""
    found = []
    try:
        found.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                raw = fh.read().strip()
        except OSError:
            continue
        if raw.isdigit():
            found.append(int(raw))
    return min(found) if found else None


def _default_mb() -> int:
    """1024, or an eighth of the memory this process may use where that is less."""
    total = _memory_bytes()
    return _DEFAULT_MB if total is None else max(0, min(_DEFAULT_MB, total // 8 >> 20))


def _limit_from_env() -> int:
    raw = os.environ.get("ASHLIB_POOL_MB", "").strip() or str(_default_mb())
    try:
        mb = int(raw)
    except ValueError:
        raise ValueError(f"ASHLIB_POOL_MB must be a whole number of megabytes (0 turns the cache off), "
                         f"got {raw!r}") from None
    if mb < 0:
        raise ValueError(f"ASHLIB_POOL_MB must be >= 0, got {mb}")
    return mb


def enabled() -> bool:
    """Whether large outputs come from the block cache in this process."""
    return _lib() is not None


def _block_type(size: int) -> type:
    """A ctypes byte array type of ``size`` (a block's size: a multiple of :data:`GRAIN`, so that
    few sizes occur) whose instances give their block back when freed (the tensor made from one
    holds the only reference to it)."""
    t = _types.get(size)
    if t is None:
        put = _state["lib"].ashlib_pool_put

        def __del__(self, put=put, size=size, addressof=ctypes.addressof):  # (no globals: shutdown)
            put(addressof(self), size)

        if len(_types) >= _MAX_TYPES:  # (live blocks keep their own type alive)
            _types.clear()
        t = _types.setdefault(size, type(f"_Block{size}", (ctypes.c_ubyte * size,), {"__del__": __del__}))
    return t


_profiling = getattr(torch._C._autograd, "_profiler_enabled", lambda: False)


def empty(shape: Sequence[int], dtype: torch.dtype, stride: Optional[Sequence[int]] = None) -> torch.Tensor:
    """An uninitialised CPU tensor, contiguous or with ``stride`` (which must make it dense: every
    element of its storage used once, as in channels_last), its memory from the block cache when it
    is at least :data:`MIN_BYTES` (else, or when the cache is off or out of memory, ``torch.empty``
    or ``torch.empty_strided``)."""
    shape = tuple(shape)
    numel = math.prod(shape)
    itemsize = _ITEMSIZE.get(dtype) or _ITEMSIZE.setdefault(dtype, torch.empty((), dtype=dtype).element_size())
    nbytes = numel * itemsize
    # (under the profiler, torch's allocator: its memory events count what an op allocates,
    # and a block from here would be missing from them)
    lib = _lib() if nbytes >= MIN_BYTES and not _profiling() else None
    size = ctypes.c_size_t()
    address = lib.ashlib_pool_get(nbytes, ctypes.byref(size)) if lib is not None else None
    if not address:  # (for a request that is too large, torch raises its own error)
        return torch.empty(shape, dtype=dtype) if stride is None else torch.empty_strided(shape, stride, dtype=dtype)
    block = _block_type(size.value).from_address(address)
    flat = torch.frombuffer(block, dtype=dtype, count=numel)
    if stride is None:
        return flat.resize_(shape)  # (the storage holds numel elements already: nothing is reallocated)
    return torch.empty((0,), dtype=dtype).set_(flat.untyped_storage(), 0, shape, tuple(stride))


def empty_on(shape: Sequence[int], dtype: torch.dtype, device: torch.device,
             stride: Optional[Sequence[int]] = None) -> torch.Tensor:
    """:func:`empty` for a CPU ``device``, ``torch.empty`` (or ``torch.empty_strided``) on any other."""
    if torch.device(device).type == "cpu":
        return empty(shape, dtype, stride)
    shape = tuple(shape)
    return torch.empty(shape, dtype=dtype, device=device) if stride is None else \
        torch.empty_strided(shape, stride, dtype=dtype, device=device)


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """:func:`empty` in the shape and dtype of a contiguous CPU tensor ``x``."""
    return empty(x.shape, x.dtype)


def cached_bytes() -> int:
    """Bytes kept in free blocks now (0 when the cache is off)."""
    lib = _lib()
    return int(lib.ashlib_pool_cached()) if lib is not None else 0


def release() -> int:
    """Unmap every free block now; returns the bytes given back to the system."""
    lib = _lib()
    return int(lib.ashlib_pool_release()) if lib is not None else 0


def set_limit(megabytes: int) -> int:
    """Keep at most ``megabytes`` in free blocks from now on (0: keep none; blocks are then unmapped
    as soon as their tensor is freed); returns the bytes unmapped now. Raises when the cache is
    off in this process (no native kernels, or ``ASHLIB_POOL_MB=0``)."""
    if megabytes < 0:
        raise ValueError(f"megabytes must be >= 0, got {megabytes}")
    lib = _lib()
    if lib is None:
        raise RuntimeError("the block cache is off in this process (no native kernels, or ASHLIB_POOL_MB=0)")
    return int(lib.ashlib_pool_set_limit(int(megabytes) << 20))


def address_of_pool_functions() -> Optional[tuple]:
    """(get, put) addresses for the C++ route (ash_autograd.cpp), or None when the cache is off."""
    lib = _lib()
    if lib is None:
        return None
    from . import address
    return address(lib, "ashlib_pool_get"), address(lib, "ashlib_pool_put")
