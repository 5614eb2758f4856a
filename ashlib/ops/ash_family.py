"""Fused, memory-efficient ASH and Leaky ASH: custom autograd Functions with analytic backward.

The straightforward ASH in :func:`ashlib.functional._ash_family` is a chain of a dozen tensor
operations whose autograd graph keeps most intermediates alive. The Functions here compute the
same thing (the same numerical contract, see DESIGN.md) in a few passes over the data and save
only the input and per-sample statistics. Three backends supply the loops
(:func:`select_backend`):

* ``"native"``: CPU float32 and bfloat16, the C kernels of :mod:`ashlib.native`. One call per
  direction; each sample is handled while it is in cache: forward = float64 statistics, range
  check, output; backward = the row sums below and the element-wise gradient (pass 1), then the
  path through mu and sigma (pass 2).
* ``"triton"``: CUDA, the kernels of :mod:`ashlib.fused_triton` (statistics from ATen).
* ``"aten"``: chunked ATen operations (float64, float16, no C compiler, and wherever the
  kernel's own body is traced), working through the batch in chunks of samples so that one
  chunk's temporaries stay in cache.

The operator ``torch.ops.ashlib.ash`` and its backward are registered here with Python kernels
for every device and a Python autograd formula. Once the C++ library of
``native/ash_autograd.cpp`` is loaded, the CPU has C++ kernels for both operators and a C++
autograd formula ahead of these: they run the native path (what a ``torch.compile`` graph calls
on the CPU) and hand every other case to the Python kernels, registered again for that as
``ashlib_eager::ash_python`` and ``ash_backward_python``.

Notation for one sample's feature map :math:`x_1..x_n`: :math:`\\mu` and
:math:`\\sigma = \\sqrt{\\mathrm{Var}(x) + \\epsilon}` its statistics, :math:`t = \\mu + z\\sigma`,
:math:`A = 2\\alpha`, :math:`u_i = A (x_i - t)`, :math:`s_i = S(u_i)`, gate
:math:`G_i = \\ell + c\\,s_i` with :math:`c = 1 - \\ell` (:math:`\\ell = 0, c = 1` for ASH),
output :math:`y_i = x_i G_i`. With upstream gradient :math:`g` and
:math:`q_i = g_i S(u_i) S(-u_i)` (the sigmoid derivative, as a product for accuracy):

.. math::

    W = c A \\sum_i x_i q_i, \\qquad
    \\frac{\\partial L}{\\partial x_j} = g_j G_j + c A x_j q_j
        - \\frac{W}{n}\\Bigl(1 + z \\frac{x_j - \\mu}{\\sigma}\\Bigr)

(the last term is the path through :math:`\\mu` and :math:`\\sigma`, using
:math:`\\partial\\sigma/\\partial x_j = (x_j - \\mu)/(n\\sigma)`),

.. math::

    \\frac{\\partial L}{\\partial z} = -\\sum_{\\text{samples}} \\sigma W, \\qquad
    \\frac{\\partial L}{\\partial \\alpha} = \\frac{c}{\\alpha} \\sum_i x_i q_i u_i, \\qquad
    \\frac{\\partial L}{\\partial \\ell} = \\sum_i g_i x_i S(-u_i).

In the ATen backend both sigmoid factors come from ``softplus_backward``, which computes ``grad * S(beta * u)`` in
one pass from ``exp(beta * u)``; with ``beta = -1`` it gives :math:`S(-u)` to full relative
accuracy where ``1 - S(u)`` would cancel. Inputs for which this fast path could overflow or
lose accuracy (|x| near the dtype's range, an eps below ``sqrt(tiny)``, non-finite values, a
non-default ``dim``, tensor-valued z or alpha with more than one element) are handed to the
reference implementation, which handles them by power-of-two scaling.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import threading
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.autograd import forward_ad as _forward_ad

from . import _common as C
from . import native as _native
from .native import blocks as _blocks
from ._common import mean_sigma_path, split_threshold
from .. import reference as R

__all__ = ["ash", "leaky_ash", "hard_ash", "topk_ash", "select_backend", "BACKENDS", "DEFAULT_CHUNK_ELEMENTS",
           "topk_ash_kthvalue"]

Number = Union[int, float]

#: Elements per chunk of samples: bounds the backward temporaries (two or three chunk-sized
#: buffers) without paying per-call overhead on small chunks (measured on a 2-core CPU: 2^18 beat 2^20 and 2^22).
DEFAULT_CHUNK_ELEMENTS = 1 << 18
#: ``softplus_backward`` returns ``grad`` unchanged above this argument; S(40) rounds to 1 in
#: float32 and float64 alike, so the shortcut is exact.
_SP_THRESHOLD = 40.0
#: Relative size of mu**2 against the variance above which E[x^2] - mu^2 is recomputed two-pass.
_CANCELLATION_RATIO = 8.0


def _rows(x: Tensor) -> Tensor:
    """x as (samples, elements per sample)."""
    return x.reshape(1, -1) if x.dim() == 1 else x.reshape(x.shape[0], -1)


def _chunks(n_rows: int, n_cols: int, chunk_elements: int):
    step = max(1, chunk_elements // max(1, n_cols))
    for r0 in range(0, n_rows, step):
        yield r0, min(n_rows, r0 + step)


def _statistics(x2: Tensor, eps: float, chunk_elements: int, two_pass: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-sample mean, ``sqrt(var + eps)`` and the 2-norm (an upper bound on max|x|), float64, (N, 1).

    Accumulated in float64 whatever the input dtype: with alpha up to 1e3 the threshold t must
    be known to far better than float32 precision, because an error dt moves u = 2*alpha*(x - t)
    by 2*alpha*dt, which is the relative error of the output in the tail. One pass per chunk
    gives the sum and the norm (E[x^2] - mu^2); a second pass runs only where that difference
    would cancel (``two_pass``: always, so that no test is read on the host; the CUDA path).
    A norm that overflows comes back as inf and sends the call to the exact path.
    """
    n = x2.shape[1]
    s1 = torch.empty(x2.shape[0], 1, dtype=torch.float64, device=x2.device)
    nrm = torch.empty_like(s1)
    wide = _Widener(x2, chunk_elements)
    for r0, r1 in _chunks(x2.shape[0], n, chunk_elements):
        xd = wide(r0, r1)
        torch.sum(xd, dim=1, keepdim=True, out=s1[r0:r1])
        torch.linalg.vector_norm(xd, dim=1, keepdim=True, out=nrm[r0:r1])
    mu = s1 / n
    var = torch.clamp(nrm * nrm / n - mu * mu, min=0)
    if two_pass or bool(torch.any(mu * mu > _CANCELLATION_RATIO * var)):
        # E[x^2] - mu^2 lost too many digits: recompute the variance from x - mu
        for r0, r1 in _chunks(x2.shape[0], n, chunk_elements):
            d = wide(r0, r1, copy=True).sub_(mu[r0:r1])
            var[r0:r1] = torch.linalg.vector_norm(d, dim=1, keepdim=True) ** 2 / n
    sigma = torch.sqrt(var + eps)
    return mu, sigma, nrm


class _Widener:
    """Chunks of rows of a 2-D tensor as float64, converted into one buffer that every chunk
    reuses: a fresh float64 copy per chunk is an allocation of a few MB, which glibc serves by
    mmap and the kernel by a page fault per 4 kB, on every chunk of every call."""

    def __init__(self, x2: Tensor, chunk_elements: int):
        self.x2, self.buf = x2, None
        self.step = max(1, chunk_elements // max(1, x2.shape[1]))

    def __call__(self, r0: int, r1: int, copy: bool = False) -> Tensor:
        """Rows r0:r1 as float64 (x2's own rows when it is float64 and ``copy`` is False; the
        buffer is overwritten by the next call)."""
        part = self.x2[r0:r1]
        if part.dtype == torch.float64 and not copy:
            return part
        if self.buf is None:
            self.buf = torch.empty(min(self.step, self.x2.shape[0]), self.x2.shape[1], dtype=torch.float64,
                                   device=self.x2.device)
        return self.buf[: r1 - r0].copy_(part)


def _range_ok(x2: Tensor, mu: Tensor, sigma: Tensor, norm: Tensor, z: float, a: float, eps: float) -> bool:
    """True when every intermediate of the fast path is finite and accurate for this input."""
    fi = torch.finfo(C.half_to_float(x2.dtype))
    if not (math.isfinite(z) and math.isfinite(a) and eps >= math.sqrt(fi.tiny)):
        return False
    # x - t must be finite with room to spare (|x| <= norm); the sums of squares must not overflow
    bound = norm + torch.abs(mu + z * sigma)
    return bool(torch.all(torch.isfinite(bound) & (bound <= fi.max / 64)))


def _threshold_split(mu: Tensor, sigma: Tensor, z: float, cd: torch.dtype) -> Tuple[Tensor, Tensor]:
    """:func:`split_threshold` of t = mu + z*sigma."""
    return split_threshold(mu + z * sigma, cd)


BACKENDS = ("native", "triton", "aten")


def _native_lib(x: Tensor):
    """The native CPU kernels when they can take x (see :func:`ashlib.native.library_for`), else None."""
    return _native.library_for(x)


def _triton_ok(x: Tensor) -> bool:
    """CUDA tensors with Triton installed (CPU tensors too under TRITON_INTERPRET=1, for tests)."""
    if torch.compiler.is_compiling():
        return False
    try:
        from . import triton_ash as fused_triton
    except ImportError:
        return False
    return fused_triton.available(x)


def select_backend(x: Tensor, backend: Optional[str] = None) -> str:
    """The implementation the fused path uses for x: ``"native"`` (C kernels, CPU float32 and
    bfloat16), ``"triton"`` (CUDA with Triton installed) or ``"aten"`` (chunked ATen ops,
    everything else and under ``torch.compile``). ``backend`` asks for one; a backend that
    cannot take x raises ``ValueError``.
    """
    if backend is None:
        if _native_lib(x) is not None:
            return "native"
        return "triton" if _triton_ok(x) else "aten"
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}")
    if backend == "native" and _native_lib(x) is None:
        raise ValueError("backend='native' needs a CPU float32 or bfloat16 tensor and the compiled kernels "
                         "(see ashlib.native); got " f"{x.device.type} {x.dtype}")
    if backend == "triton" and not _triton_ok(x):
        raise ValueError("backend='triton' needs a CUDA float32/bfloat16/float16 tensor and Triton installed "
                         "(or TRITON_INTERPRET=1 for its interpreter on the CPU)")
    return backend


def _native_forward(lib, x2: Tensor, eps: float, zf: float, A: float,
                    lf: Optional[float], out: Optional[Tensor] = None, pair: bool = False):
    """(y, stats, ok) from the C kernels: each sample's statistics (float64, (2, N, 1): mu and
    sigma; with ``pair``, two separate (N, 1) tensors, as an operator must return them) and,
    while it is in cache, its output (into ``out``, a contiguous
    tensor of x2's shape, when given); ok is False when some sample fails the range check
    (y is then incomplete and the caller uses the reference)."""
    x2 = C.plain_values(x2)
    rows, n = x2.shape
    # the small blocks before the large one (see _native_grads)
    if pair:
        stats = (torch.empty(rows, 1, dtype=torch.float64), torch.empty(rows, 1, dtype=torch.float64))
        mp, sp = stats[0].data_ptr(), stats[1].data_ptr()
    else:
        stats = torch.empty(2, rows, 1, dtype=torch.float64)  # one allocation for mu and sigma
        mp = stats.data_ptr()
        sp = mp + 8 * rows
    y = _blocks.empty_like(x2) if out is None else out  # (the block cache: see native/blocks.py)
    fn = lib.ash_forward_f32 if x2.dtype == torch.float32 else lib.ash_forward_bf16
    xp, yp = x2.data_ptr(), y.data_ptr()
    ell = 0.0 if lf is None else lf
    row = n * x2.element_size()
    ok = _native.parallel_rows(rows, n, lambda r0, r1: fn(r1 - r0, n, xp + r0 * row, yp + r0 * row, eps, zf,
                                                          _CANCELLATION_RATIO, A, ell, mp + 8 * r0, sp + 8 * r0))
    return y, stats, all(ok)


_Totals = ctypes.c_double * 3


def _native_backward(lib, x2: Tensor, g2: Tensor, mp: int, sp: int, zf: float, A: float,
                     lf: Optional[float], need_x: bool, need_l: bool) -> Tuple[Optional[Tensor], float, float, float]:
    """(gx or None, sum of sigma*R1, sum of R2, sum of Rl) over all rows: the element-wise gradient
    and the totals the parameters' gradients are made of (R1, R2, Rl as in the ATen path; Rl is
    0 unless ``need_l`` or a slope is given). ``mp`` and ``sp`` are the addresses of the
    per-row mu and sigma (contiguous float64).

    No tensor is allocated besides gx: the totals come back in a small ctypes array per thread."""
    x2, g2 = C.plain_values(x2), C.plain_values(g2)
    rows, n = x2.shape
    gx = _blocks.empty_like(x2) if need_x else None
    fn = lib.ash_backward_f32 if x2.dtype == torch.float32 else lib.ash_backward_bf16
    row = n * x2.element_size()
    xp, gp = x2.data_ptr(), g2.data_ptr()
    gxp = gx.data_ptr() if need_x else None
    ell = 0.0 if lf is None else lf
    want_l = int(need_l and lf is not None)

    def call(r0, r1):
        tot = _Totals()
        code = fn(r1 - r0, n, xp + r0 * row, gp + r0 * row, None if gxp is None else gxp + r0 * row, mp + 8 * r0,
                  sp + 8 * r0, zf, A, ell, want_l, tot)
        return code, tot

    parts = _native.parallel_rows(rows, n, call)
    if any(code for code, _ in parts):
        raise MemoryError("ashlib.native: could not allocate a row buffer for the ASH backward")
    totals = [sum((tot[i] for _, tot in parts), 0.0) for i in range(3)]  # in chunk order, from +0.0 as in C++
    return gx, totals[0], totals[1], totals[2]


def _aten_forward(x: Tensor, mu: Tensor, sigma: Tensor, zf: float, A: float, lf: Optional[float],
                  chunk_elements: int) -> Tensor:
    """The forward in chunked ATen ops: ``softplus_backward(grad, d, beta)`` evaluates
    ``grad * S(beta*d)`` in one pass, with d = x - t."""
    x2 = _rows(x)
    cd = C.half_to_float(x.dtype)
    t_hi, t_lo = _threshold_split(mu, sigma, zf, cd)
    out = _blocks.empty_on(x2.shape, x.dtype, x.device)
    buf = None
    for r0, r1 in _chunks(x2.shape[0], x2.shape[1], chunk_elements):
        xc = x2[r0:r1].to(cd)
        if x.dtype == cd:
            o = out[r0:r1]
        else:
            buf = torch.empty(xc.shape, dtype=cd, device=x.device) if buf is None else buf
            o = buf[: r1 - r0]
        torch.sub(xc, t_hi[r0:r1], out=o).sub_(t_lo[r0:r1])  # d = x - t
        torch.ops.aten.softplus_backward.grad_input(xc, o, A, _SP_THRESHOLD, grad_input=o)  # x*S(A*d)
        if lf is not None:
            torch.lerp(xc, o, 1.0 - lf, out=o)  # l*x + (1 - l)*x*S(u)
        if o.data_ptr() != out[r0:r1].data_ptr():
            out[r0:r1].copy_(o)
    return out


def _exact_backward(x: Tensor, grad: Tensor, mu: Tensor, sigma: Tensor, zf: float, A: float, lf: Optional[float]):
    """(gx, R1, R2, Rl) in float64 for inputs outside the fast paths' range (|x| near the dtype's
    limit, a tiny eps): the formulas of the module docstring written with x - mu (not x - t,
    which loses z*sigma when |mu| is huge) and every product ordered so that no intermediate
    overflows unless the result does."""
    xd, g = R.wide(x), R.wide(grad)
    n = xd.shape[1]
    big = torch.finfo(torch.float64).max
    xm = torch.clamp(xd - mu, -big, big)
    d = torch.clamp(xm - zf * sigma, -big, big)
    s_pos, s_neg = R.sigmoid(A * d), R.sigmoid(-A * d)
    c = 1.0 if lf is None else 1.0 - lf
    gate = s_pos if lf is None else s_pos + lf * s_neg
    q = g * s_pos * s_neg
    Rn = torch.sum((xd / n) * q, dim=1, keepdim=True)  # R1 / n without overflow
    R2 = torch.sum((xd * q) * d, dim=1, keepdim=True)
    Rl = torch.sum(g * xd * s_neg, dim=1, keepdim=True) if lf is not None else None
    Wn = (c * A) * Rn
    gx = g * gate + (c * A) * (xd * q) - Wn * (1.0 + zf * (xm / sigma))
    return gx, Rn * n, R2, Rl


#: terms added in the compute dtype before a row sum goes to float64 (as the C kernels' lanes do)
_SUM_GROUP = 16


def _row_sums64(w: Tensor) -> Tensor:
    """Row sums of a 2-D chunk as float64 (N, 1): groups of ``_SUM_GROUP`` terms are added in w's
    dtype, the group sums in float64. As accurate as the native kernels' sums (terms already
    rounded to float32 dominate the error), without ``sum(dtype=float64)``'s conversion of the
    whole chunk to float64 first. A group is every (m/16)-th term of the row, not 16 neighbours:
    summing over a strided dimension adds whole vectors, about 2.5x faster than a reduction over
    an innermost dimension of 16."""
    if w.dtype == torch.float64:
        return torch.sum(w, dim=1, keepdim=True)
    rows, n = w.shape
    m = n - n % _SUM_GROUP
    out = torch.sum(w[:, :m].reshape(rows, _SUM_GROUP, m // _SUM_GROUP).sum(1), dim=1, keepdim=True,
                    dtype=torch.float64)
    if m < n:
        out += torch.sum(w[:, m:], dim=1, keepdim=True, dtype=torch.float64)
    return out


def _aten_backward(x: Tensor, grad: Tensor, mu: Tensor, sigma: Tensor, zf: float, A: float, lf: Optional[float],
                   need_x: bool, need_w: bool, need_a: bool, need_l: bool, chunk_elements: int):
    """(gx or None, R1, R2 or None, Rl or None) in chunked ATen ops; S(u) and S(-u) both come
    from ``softplus_backward`` (beta = A and -A), so the tails keep full relative accuracy."""
    cd = C.half_to_float(x.dtype)
    x2 = _rows(x)
    g2 = _rows(grad)
    n_rows, n = x2.shape
    c = 1.0 if lf is None else 1.0 - lf
    t_hi, t_lo = _threshold_split(mu, sigma, zf, cd)
    gx = _blocks.empty_on(x2.shape, cd, x.device) if need_w else None
    R1_all = torch.zeros(n_rows, 1, dtype=torch.float64, device=x.device)
    R2_all = torch.zeros_like(R1_all) if need_a else None
    Rl_all = torch.zeros_like(R1_all) if (need_l and lf is not None) else None
    dbuf = qbuf = None
    for r0, r1 in _chunks(n_rows, n, chunk_elements):
        rows = r1 - r0
        xc = x2[r0:r1].to(cd)
        gc = g2[r0:r1].to(cd)
        if dbuf is None:
            dbuf = torch.empty(xc.shape, dtype=cd, device=x.device)
            qbuf = torch.empty_like(dbuf)
        d, q = dbuf[:rows], qbuf[:rows]
        torch.sub(xc, t_hi[r0:r1], out=d).sub_(t_lo[r0:r1])
        if Rl_all is not None:  # dL/dl = sum g*x*S(-u), from S(-u) directly (1 - S(u) cancels)
            torch.ops.aten.softplus_backward.grad_input(gc, d, -A, _SP_THRESHOLD, grad_input=q)
            Rl_all[r0:r1] = _row_sums64(q.mul_(xc))
        if not need_w:
            continue
        gs = gx[r0:r1]
        torch.ops.aten.softplus_backward.grad_input(gc, d, A, _SP_THRESHOLD, grad_input=gs)  # g*S(u)
        torch.ops.aten.softplus_backward.grad_input(gs, d, -A, _SP_THRESHOLD, grad_input=q)  # g*S(u)*S(-u)
        w = q.mul_(xc)  # x*g*S'(u)
        R1 = _row_sums64(w)
        R1_all[r0:r1] = R1
        if need_x:
            if lf is not None:
                torch.lerp(gc, gs, c, out=gs)  # l*g + c*g*S(u)
            gs.add_(w, alpha=c * A)
        if R2_all is not None:
            R2_all[r0:r1] = _row_sums64(w.mul_(d))
        if need_x:
            # the path through mu and sigma: -(W/n)(1 + z(x - mu)/sigma), W = c*A*R1, written
            # with d = x - t (accurate) as -(W/n)(1 + z^2 + z*d/sigma)
            k0, k1 = mean_sigma_path(R1, sigma[r0:r1], zf, c, A, n)
            k0, k1 = k0.to(cd), k1.to(cd)
            gs.addcmul_(d, k1).add_(k0)
    return (gx if need_x else None), R1_all, R2_all, Rl_all


# --- the registered operators ----------------------------------------------------------------------
#
# torch.ops.ashlib.ash works on a (rows, elements) view: one row per set of statistics. It returns
# the output and what its backward needs (per-row mu and sigma in float64, and whether the exact
# float64 path was taken). Everything that depends on the data (the parameters' values, the range
# check, the backend) is decided here, inside the kernel, where torch.compile and torch.export
# see only the operator and its fake (shape) implementation.


#: the smallest eps the fast kernels (native, Triton, the C++ route) take: below it the float32
#: variance could underflow, and the exact float64 path runs
_EPS_FAST_MIN = math.sqrt(torch.finfo(torch.float32).tiny)


def _read_params(z: Tensor, alpha: Tensor, slope: Optional[Tensor]) -> Tuple[float, float, Optional[float]]:
    """The one-element parameters as floats (read inside the kernel), checked."""
    zf, af = float(z), float(alpha)
    C.check_positive_scalar("alpha", af)
    if not math.isfinite(zf):
        raise C.range_error("z", zf, "finite")
    lf = None
    if slope is not None:
        lf = float(slope)
        C.check_positive_scalar("slope", lf)
    return zf, af, lf


def _ash_op(x: Tensor, z: Tensor, alpha: Tensor, slope: Optional[Tensor], eps: float,
            backend: Optional[str] = None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS
            ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(y, mu, sigma, exact) of ASH (or Leaky ASH when ``slope`` is given) over the rows of 2-D x.

    ``exact`` is a CPU bool: whether the exact float64 path was taken (read by the backward
    without a device synchronisation).

    On CPU tensors this runs only where the C++ kernel of ``ashlib::ash`` (native/ash_autograd.cpp)
    does not take the call, or before that library is loaded; the call below loads it (or starts
    its build), so that a process that only runs compiled graphs gets it too."""
    if x.device.type == "cpu" and not _fast_state["off"]:
        _fast_ready()
    y, mu, sigma, exact = _ash_forward(x, z, alpha, slope, eps, backend, chunk_elements)
    return y, mu, sigma, torch.tensor(exact)


def _ash_forward(x: Tensor, z: Tensor, alpha: Tensor, slope: Optional[Tensor], eps: float,
                 backend: Optional[str], chunk_elements: int) -> Tuple[Tensor, Tensor, Tensor, bool]:
    """The kernel of :func:`_ash_op`, with ``exact`` as a Python bool."""
    if not (eps > 0 and math.isfinite(eps)):
        raise C.range_error("eps", eps, "finite and > 0 (it keeps sigma and its gradient finite on a constant "
                            "feature map)")
    rows, n = x.shape
    no, yes = False, True
    backend = select_backend(x, backend)
    if backend == "triton":
        # nothing is read on the host (no device synchronisation): the statistics are float64 for
        # these float32/half inputs (no overflow), the kernels clamp x - t and read the
        # parameters themselves, and bad parameters fail device-side assertions
        _check_params_on_device(z, alpha, slope)
        if rows == 0 or n == 0:
            return _empty_forward(x) + (no,)
        x = C.plain_values(x).contiguous()  # (the kernels read x, alpha and the slope by pointer)
        if eps >= _EPS_FAST_MIN:  # (eps is a Python float)
            mu, sigma, _ = _statistics(x, eps, chunk_elements, two_pass=True)
            from . import triton_ash
            y = triton_ash.ash_forward(x, mu + z.reshape(()).to(torch.float64) * sigma, C.plain_values(alpha),
                                       None if slope is None else C.plain_values(slope))
            return y, mu, sigma, no
    else:
        zf, af, lf = _read_params(z, alpha, slope)
        if rows == 0 or n == 0:
            return _empty_forward(x) + (no,)
        A = 2.0 * af
        if backend == "native":
            x = x.contiguous()
            if eps >= _EPS_FAST_MIN:
                y, stats, ok = _native_forward(_native_lib(x), x, eps, zf, A, lf, pair=True)
                if ok:
                    return y, stats[0], stats[1], no
        else:
            mu, sigma, norm = _statistics(x, eps, chunk_elements)
            if _range_ok(x, mu, sigma, norm, zf, af, eps):
                return _aten_forward(x, mu, sigma, zf, A, lf, chunk_elements), mu, sigma, no
    # outside the fast paths' range (|x| near the dtype's limit, a tiny eps, non-finite values):
    # the reference formulas in float64 with scaled statistics
    mu, sigma = R.statistics(R.wide(x), (1,), eps)
    y = R.ash(x, z, alpha, slope, (1,), eps)
    return y if y._base is None else y.clone(), mu, sigma, yes


def _empty_forward(x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    mu = torch.zeros(x.shape[0], 1, dtype=torch.float64, device=x.device)
    return torch.empty_like(x), mu, torch.ones_like(mu)


def _check_params_on_device(z: Tensor, alpha: Tensor, slope: Optional[Tensor]) -> None:
    """The parameter checks of :func:`_read_params` as device-side assertions (no synchronisation:
    a bad value fails the next synchronising call with this message)."""
    torch._assert_async(torch.isfinite(z).all(), "z is out of range: z must be finite")
    torch._assert_async(((alpha > 0) & torch.isfinite(alpha)).all(),
                        "alpha is out of range: alpha must be finite and > 0")
    if slope is not None:
        torch._assert_async(((slope > 0) & torch.isfinite(slope)).all(),
                            "slope is out of range: slope must be finite and > 0")


def _ash_fake(x, z, alpha, slope, eps, backend=None, chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    stat = x.new_empty((x.shape[0], 1), dtype=torch.float64)
    return torch.empty_like(x), stat, torch.empty_like(stat), torch.empty((), dtype=torch.bool, device="cpu")


def _ash_backward_op(grad: Tensor, x: Tensor, z: Tensor, alpha: Tensor, slope: Optional[Tensor], mu: Tensor,
                     sigma: Tensor, exact: Tensor, eps: float, need: List[bool], backend: Optional[str] = None,
                     chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dL/dx, dL/dz, dL/dalpha, dL/dslope) of :func:`_ash_op`; entries not in ``need`` are left empty."""
    # (exact is a CPU tensor: reading it costs no device synchronisation)
    return _ash_grads(grad, x, z, alpha, slope, mu, sigma, bool(exact), need, backend, chunk_elements)


def _ash_grads(grad: Tensor, x: Tensor, z: Tensor, alpha: Tensor, slope: Optional[Tensor], mu: Tensor,
               sigma: Tensor, exact: bool, need: List[bool], backend: Optional[str],
               chunk_elements: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The kernel of :func:`_ash_backward_op`, with ``exact`` as a Python bool."""
    need_x, need_z, need_a, need_l = need
    need_l = need_l and slope is not None
    rows, n = x.shape
    if rows == 0 or n == 0:
        gl = torch.zeros_like(slope) if slope is not None else x.new_empty(0)
        return torch.zeros_like(x), torch.zeros_like(z), torch.zeros_like(alpha), gl
    backend = select_backend(x, backend)
    need_w = need_x or need_z or need_a
    f64 = torch.float64
    if backend == "triton" and not exact:
        from . import triton_ash
        alpha, slope = C.plain_values(alpha), None if slope is None else C.plain_values(slope)
        gx, R1, R2, Rl = triton_ash.ash_backward(C.plain_values(x).contiguous(),
                                                 C.plain_values(grad).to(x.dtype).contiguous(), mu, sigma, z, alpha,
                                                 slope, need_x, need_a, need_l)
        # the parameters stay on the device: A = 2 alpha and c = 1 - slope as tensors
        A = 2.0 * alpha.reshape(()).to(f64)
        c = 1.0 - slope.reshape(()).to(f64) if slope is not None else torch.ones_like(A)
    else:
        zf, af, lf = _read_params(z, alpha, slope)
        A = 2.0 * af
        c = 1.0 if lf is None else 1.0 - lf
        if exact:  # the forward took the exact path: so does the backward
            gx, R1, R2, Rl = _exact_backward(x, grad, mu, sigma, zf, A, lf)
        elif backend == "native":
            x = x.contiguous()
            plan = _native_plan(_native_lib(x), zf, A, lf, z, alpha, slope)
            mu, sigma = mu.contiguous(), sigma.contiguous()
            out = _native_grads(plan, x, grad, mu.data_ptr(), sigma.data_ptr(), [need_x, need_z, need_a, need_l])
            filler = (x, z, alpha, x.new_empty(0) if slope is None else slope)
            return tuple(torch.empty_like(f) if o is None else o for o, f in zip(out, filler))
        else:
            gx, R1, R2, Rl = _aten_backward(x, grad, mu, sigma, zf, A, lf, need_x, need_w, need_a, need_l,
                                            chunk_elements)
    gx = gx.to(x.dtype) if need_x else torch.empty_like(x)
    gz = (-(sigma * R1).sum() * (c * A)).reshape(z.shape).to(z.dtype) if need_z else torch.empty_like(z)
    ga = (R2.sum() * (2.0 * c)).reshape(alpha.shape).to(alpha.dtype) if need_a else torch.empty_like(alpha)
    if need_l:
        gl = Rl.sum().reshape(slope.shape).to(slope.dtype)
    else:
        gl = x.new_empty(0) if slope is None else torch.empty_like(slope)
    return gx, gz, ga, gl


def _ash_backward_fake(grad, x, z, alpha, slope, mu, sigma, exact, eps, need, backend=None,
                      chunk_elements=DEFAULT_CHUNK_ELEMENTS):
    gl = torch.empty_like(slope) if slope is not None else x.new_empty(0)
    return torch.empty_like(x), torch.empty_like(z), torch.empty_like(alpha), gl


def differentiable_grads(fn, grad: Tensor, inputs: Tuple[Optional[Tensor], ...], needs) -> List[Optional[Tensor]]:
    """The backward as a differentiable graph (for ``create_graph=True``: gradient penalties,
    Hessian-vector products): autograd of the plain reference formulas, recorded so that it can
    be differentiated again with respect to the inputs and ``grad``."""
    wanted = [i for i, t in enumerate(inputs) if t is not None and needs[i]]
    out: List[Optional[Tensor]] = [None] * len(inputs)
    if not wanted:
        return out
    with torch.enable_grad():
        y = fn(*inputs)
        grads = torch.autograd.grad(y, [inputs[i] for i in wanted], grad, create_graph=True, allow_unused=True)
    for i, g in zip(wanted, grads):
        out[i] = torch.zeros_like(inputs[i]) if g is None else g
    return out


def _reference_grads(grad: Tensor, x: Tensor, z: Tensor, alpha: Tensor, slope: Optional[Tensor],
                     dims: Tuple[int, ...], eps: float, needs) -> List[Optional[Tensor]]:
    """Every route's backward under ``create_graph=True``: :func:`differentiable_grads` of the
    reference ASH (statistics over ``dims`` of x as given, so that the graph reaches x itself)."""
    return differentiable_grads(lambda xx, zz, aa, ll: R.ash(xx, zz, aa, ll, dims, eps), grad,
                                (x, z, alpha, slope), needs)


def _ash_setup(ctx, inputs, output) -> None:
    x, z, alpha, slope, eps, backend, chunk_elements = inputs
    _, mu, sigma, exact = output
    ctx.save_for_backward(x, z, alpha, slope, mu, sigma, exact)
    ctx.eps, ctx.backend, ctx.chunk_elements = eps, backend, chunk_elements
    ctx.mark_non_differentiable(mu, sigma, exact)


def _ash_backward(ctx, grad, _gmu, _gsigma, _gexact):
    x, z, alpha, slope, mu, sigma, exact = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:4])
    needs[3] = needs[3] and slope is not None
    if torch.is_grad_enabled():  # a gradient of this gradient will be taken
        grads = _reference_grads(grad, x, z, alpha, slope, (1,), ctx.eps, needs)
    else:
        grads = list(torch.ops.ashlib.ash_backward(grad, x, z, alpha, slope, mu, sigma, exact, ctx.eps, needs,
                                                   ctx.backend, ctx.chunk_elements))
        grads = [g if nd else None for g, nd in zip(grads, needs)]
    return grads[0], grads[1], grads[2], grads[3], None, None, None


_STAT_ARGS = "float eps, str? backend=None, int chunk_elements=%d" % DEFAULT_CHUNK_ELEMENTS
C.define_op("ash(Tensor x, Tensor z, Tensor alpha, Tensor? slope, %s) -> (Tensor, Tensor, Tensor, Tensor)"
            % _STAT_ARGS, _ash_op, _ash_fake, _ash_backward, _ash_setup)
C.define_op("ash_backward(Tensor grad, Tensor x, Tensor z, Tensor alpha, Tensor? slope, Tensor mu, Tensor sigma, "
            "Tensor exact, float eps, bool[] need, str? backend=None, int chunk_elements=%d) "
            "-> (Tensor, Tensor, Tensor, Tensor)" % DEFAULT_CHUNK_ELEMENTS, _ash_backward_op, _ash_backward_fake)


# --- the C++ route: torch.ops.ashlib_eager.ash (native/ash_autograd.cpp) ------------------------
# _EagerASH's work in C++ around the same kernels, for the common case (contiguous CPU float32 or
# bfloat16 x, statistics over its trailing dims; channels_last maps with per-sample statistics);
# for anything else it throws NotImplementedError("ashlib_eager: fallback ...") before any output
# exists, and _ash_call then runs _EagerASH.

_FAST_DTYPES = (torch.float32, torch.bfloat16)
_FALLBACK = "ashlib_eager: fallback"
_fast_state = {"ready": None, "off": 0}  # ready: the chunking threshold set in C++
# what the C++ backward calls under create_graph=True (a Python kernel the dispatcher runs)
_GRAPH_LIB = torch.library.Library("ashlib_eager", "FRAGMENT")
_GRAPH_LIB.define("ash_grads_graph(Tensor grad, Tensor x, Tensor z, Tensor alpha, Tensor? slope, float eps, "
                  "int keep, bool[] needs) -> Tensor[]")


def _ash_grads_graph(grad, x, z, alpha, slope, eps, keep, needs):
    """The C++ route's backward under ``create_graph=True`` (:func:`_reference_grads`, statistics
    over x's dims from ``keep`` on; empty tensors where not needed)."""
    grads = _reference_grads(grad, x, z, alpha, slope, tuple(range(keep, x.dim())), eps, list(needs))
    return [grad.new_empty(0) if g is None else g for g in grads]


_GRAPH_LIB.impl("ash_grads_graph", _ash_grads_graph, "CompositeImplicitAutograd")
# the Python kernels of ashlib::ash and ashlib::ash_backward under names of their own: the C++
# library gives those two operators CPU kernels (native/ash_autograd.cpp) for the native fast
# path, which hand every other case to these
_GRAPH_LIB.define("ash_python(Tensor x, Tensor z, Tensor alpha, Tensor? slope, %s) "
                  "-> (Tensor, Tensor, Tensor, Tensor)" % _STAT_ARGS)
_GRAPH_LIB.impl("ash_python", _ash_op, "CompositeExplicitAutograd")
_GRAPH_LIB.define("ash_backward_python(Tensor grad, Tensor x, Tensor z, Tensor alpha, Tensor? slope, Tensor mu, "
                  "Tensor sigma, Tensor exact, float eps, bool[] need, str? backend=None, int chunk_elements=%d) "
                  "-> (Tensor, Tensor, Tensor, Tensor)" % DEFAULT_CHUNK_ELEMENTS)
_GRAPH_LIB.impl("ash_backward_python", _ash_backward_op, "CompositeExplicitAutograd")


_fast_lock = threading.Lock()


def _fast_ready() -> bool:
    """Whether the C++ operator is loaded and has the kernels' addresses and the row-chunking
    threshold (see native.eager_ops); set once, under a lock, again if the threshold changes."""
    if _fast_state["ready"] == _native.PARALLEL_MIN_ELEMENTS:
        return True
    if not _native.eager_ops():
        return False
    with _fast_lock:
        lib = _native.library()
        addresses = [_native.address(lib, f"ash_{kind}_{suf}")
                     for kind in ("forward", "backward") for suf in ("f32", "bf16")]
        pool = _blocks.address_of_pool_functions()
        if pool is not None:  # the C++ route takes its large outputs from the same block cache
            addresses += [*pool, _blocks.MIN_BYTES]
        pmin = _native.PARALLEL_MIN_ELEMENTS
        torch.ops.ashlib_eager.set_kernels(addresses, _CANCELLATION_RATIO, _EPS_FAST_MIN, pmin)
        _fast_state["ready"] = pmin
    return True


@contextlib.contextmanager
def python_route():
    """Inside this block ASH's eager calls skip the C++ operator and run the Python route (the
    same kernels and results, more time per call): for benchmarks and tests comparing the two.
    Process-wide, not thread-local."""
    _fast_state["off"] += 1
    try:
        yield
    finally:
        _fast_state["off"] -= 1


def _channels_last(x: Tensor) -> bool:
    return (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)) or \
        (x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d))


def _fast_ash(x: Tensor, p: list, eps: float, dims: Tuple[int, ...], backend: Optional[str]) -> Optional[Tensor]:
    """ASH through the C++ operator, or None when it does not take this call."""
    if (backend is not None and backend != "native") or x.dtype not in _FAST_DTYPES or x.device.type != "cpu" \
            or dims[-1] != x.dim() - 1 or len(dims) != dims[-1] - dims[0] + 1 or _fast_state["off"] \
            or not (x.is_contiguous() or (dims[0] == 1 and _channels_last(x))) or not _fast_ready():
        return None
    try:
        return torch.ops.ashlib_eager.ash(x, p[0], p[1], p[2], eps, dims[0])
    except NotImplementedError as err:
        if str(err).startswith(_FALLBACK):
            return None
        raise


def eager_ash(x, z, alpha, slope, dim, eps) -> Optional[Tensor]:
    """ASH (Leaky ASH with ``slope``) through the C++ operator, for the call most models make:
    tensors x (CPU float32 or bfloat16, contiguous or channels_last), one-element tensors z and
    alpha (and slope), statistics per sample (``dim=None``) or per token (``dim=-1``), a float
    eps > 0, in plain eager mode (no forward-mode AD either); None for any other call, which
    :func:`ashlib.functional.ash` then checks and routes in full.

    The same operator call, with the same arguments, as the full route makes for these inputs,
    without its general argument handling: a plain eager call's fixed cost, and every Python
    layer costs most right after a kernel has streamed a large tensor through the caches."""
    plain = C.PLAIN_TYPES
    if (type(x) not in plain or type(z) not in plain or type(alpha) not in plain
            or (slope is not None and type(slope) not in plain) or type(eps) is not float
            or not 0.0 < eps < math.inf):
        return None
    nd = x.dim()
    if nd == 0 or (dim is not None and (type(dim) is not int or dim != -1)):
        return None
    if z.numel() != 1 or alpha.numel() != 1 or (slope is not None and slope.numel() != 1):
        return None
    if not C.plain_eager(x, z, alpha, slope) or _forward_ad._current_level >= 0:
        return None
    dims = (nd - 1,) if dim is not None or nd == 1 else tuple(range(1, nd))
    return _fast_ash(x, [z, alpha, slope], eps, dims, None)


class _EagerASH(torch.autograd.Function):
    """``torch.ops.ashlib.ash`` and its backward without the dispatcher, for plain eager calls
    (see :func:`ashlib.ops._common.plain_eager`): the same kernels, the same saved tensors (x and
    the per-row statistics), the same differentiable backward under ``create_graph=True``, a
    fraction of the fixed cost per call.

    On the native backend the parameters are read once, in the forward, and the backward uses
    those values (the ones the output was computed with)."""

    operator = "ashlib::ash"

    @staticmethod
    def forward(ctx, x_in, z, alpha, slope, eps, backend, chunk_elements, dims):
        # the rows view is taken here, below autograd: no view nodes in the graph; the output is
        # a fresh tensor (not a view), so in-place ops on it work
        view = RowsView(x_in, dims)
        ctx.view, ctx.dims = view, dims
        ctx.eps, ctx.backend, ctx.chunk_elements = eps, backend, chunk_elements
        x = view.to_rows(x_in)
        lib = _native.library_for(x) if backend is None or backend == "native" else None
        if lib is not None and eps >= _EPS_FAST_MIN and view.n > 0 and view.rows > 0 and math.isfinite(eps):
            zf, af, lf = _read_params(z, alpha, slope)
            x = x.contiguous()
            y, y2 = view.new_output()
            shared = y2 is not None
            y2, stats, ok = _native_forward(lib, x, eps, zf, 2.0 * af, lf, out=y2)
            if ok:
                ctx.native = _native_plan(lib, zf, 2.0 * af, lf, z, alpha, slope)
                # x as given (its rows view is taken again in the backward); mu and sigma as one
                # (2, N, 1) tensor, read by address in the backward
                ctx.save_for_backward(x_in, stats, None, z, alpha, slope)
                return y if shared else y.copy_(view.restore(y2))
        y2, mu, sigma, exact = _ash_forward(x, z, alpha, slope, eps, backend, chunk_elements)
        ctx.native, ctx.exact = None, exact
        ctx.save_for_backward(x_in, mu, sigma, z, alpha, slope)
        y = view.restore(y2)
        return y.clone() if y.untyped_storage().data_ptr() == y2.untyped_storage().data_ptr() else y

    @staticmethod
    def backward(ctx, grad):
        x_in, mu, sigma, z, alpha, slope = ctx.saved_tensors  # (native: mu holds both statistics)
        needs = list(ctx.needs_input_grad[:4])
        needs[3] = needs[3] and slope is not None
        if torch.is_grad_enabled():  # a gradient of this gradient will be taken
            grads = _reference_grads(grad, x_in, z, alpha, slope, ctx.dims, ctx.eps, needs)
            return grads[0], grads[1], grads[2], grads[3], None, None, None, None
        view = ctx.view
        x = view.to_rows(x_in).contiguous()
        grad = view.to_rows(grad)
        if ctx.native is not None:
            grads = _native_grads(ctx.native, x, grad, mu.data_ptr(), mu.data_ptr() + 8 * x.shape[0], needs)
        else:
            grads = _ash_grads(grad, x, z, alpha, slope, mu, sigma, ctx.exact, needs, ctx.backend,
                               ctx.chunk_elements)
            grads = [g if nd else None for g, nd in zip(grads, needs)]
        gx = None if grads[0] is None else view.restore(grads[0])
        return gx, grads[1], grads[2], grads[3], None, None, None, None


def _native_plan(lib, zf: float, A: float, lf: Optional[float], z: Tensor, alpha: Tensor,
                 slope: Optional[Tensor]) -> tuple:
    """What :func:`_native_grads` needs: the kernels, the parameters as read (z, A = 2 alpha,
    the slope or None) and the (shape, dtype) of each parameter's gradient."""
    return (lib, zf, A, lf, (z.shape, z.dtype), (alpha.shape, alpha.dtype),
            None if slope is None else (slope.shape, slope.dtype))


def _native_grads(plan, x: Tensor, grad: Tensor, mp: int, sp: int, needs) -> list:
    """[dL/dx, dL/dz, dL/dalpha, dL/dslope] (None where not needed) from the native kernels, with
    the parameters as the forward read them (``plan``, see :func:`_native_plan`); ``mp``, ``sp``:
    addresses of the per-row mu and sigma (contiguous float64)."""
    lib, zf, A, lf, z_meta, a_meta, l_meta = plan
    need_x, need_z, need_a, need_l = needs
    c = 1.0 if lf is None else 1.0 - lf
    grad = C.plain_values(grad)
    g2 = grad if grad.dtype == x.dtype and grad.is_contiguous() else grad.to(x.dtype).contiguous()
    # the parameters' gradients are allocated before gx: small blocks placed after a large one
    # keep glibc from reusing its space, and the large blocks are then page-faulted in again
    gz = torch.empty(z_meta[0], dtype=z_meta[1]) if need_z else None
    ga = torch.empty(a_meta[0], dtype=a_meta[1]) if need_a else None
    gl = torch.empty(l_meta[0], dtype=l_meta[1]) if need_l else None
    gx, s_r1, s_r2, s_rl = _native_backward(lib, x, g2, mp, sp, zf, A, lf, need_x, need_l)
    # dL/dz = -c A sum(sigma R1), dL/dalpha = 2c sum(R2), dL/dslope = sum(Rl) (module docstring)
    for t, v in ((gz, -s_r1 * (c * A)), (ga, s_r2 * (2.0 * c)), (gl, s_rl)):
        if t is not None:
            t.fill_(v)
    return [gx, gz, ga, gl]


def _hard_ash_op(x: Tensor, z: Tensor, eps: float) -> Tuple[Tensor, Tensor]:
    """(y, keep) of hard ASH over the rows of 2-D x: y = x where x >= mu + z*sigma, else 0."""
    zf = float(z)
    if not math.isfinite(zf):
        raise C.range_error("z", zf, "finite")
    if x.numel() == 0:
        return torch.empty_like(x), torch.zeros_like(x, dtype=torch.bool)
    keep = R.hard_ash_keep(x, z, (1,), eps)
    return torch.where(keep, x, torch.zeros_like(x)), keep


def _hard_ash_fake(x, z, eps):
    return torch.empty_like(x), torch.empty_like(x, dtype=torch.bool)


def _topk_ash_op(x: Tensor, n_keep: int) -> Tuple[Tensor, Tensor]:
    """(y, keep) keeping the ``n_keep`` largest elements of each row of 2-D x (ties by position)."""
    if x.numel() == 0:
        return torch.empty_like(x), torch.zeros_like(x, dtype=torch.bool)
    keep = torch.zeros_like(x, dtype=torch.bool)
    if n_keep > 0:
        keep.scatter_(1, torch.topk(x, n_keep, dim=1).indices, True)
    return torch.where(keep, x, torch.zeros_like(x)), keep


def _topk_ash_fake(x, n_keep):
    return torch.empty_like(x), torch.empty_like(x, dtype=torch.bool)


def _mask_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.n_inputs = len(inputs)


def _mask_backward(ctx, grad, _gkeep):
    (keep,) = ctx.saved_tensors
    # the gate is piecewise constant: the gradient passes where the element was kept (a plain
    # ATen expression, so it is differentiable again)
    return (torch.where(keep, grad, torch.zeros_like(grad)),) + (None,) * (ctx.n_inputs - 1)


C.define_op("hard_ash(Tensor x, Tensor z, float eps) -> (Tensor, Tensor)", _hard_ash_op, _hard_ash_fake,
            _mask_backward, _mask_setup)
C.define_op("topk_ash(Tensor x, int n_keep) -> (Tensor, Tensor)", _topk_ash_op, _topk_ash_fake,
            _mask_backward, _mask_setup)


# --- rows views and the Python entry points --------------------------------------------------------


class RowsView:
    """How a tensor of one shape and layout becomes a (rows, elements) tensor with one row per set
    of statistics over ``dims``, and back.

    The reduced dims are put last in the order they have in memory, so a channels_last map, or
    statistics over the last dim, need no copy; results come back in x's memory format.
    :meth:`to_rows` applies the same permutation to any tensor of x's shape (a gradient whose
    strides differ from x's included).
    """

    __slots__ = ("shape", "perm", "inv", "pshape", "rows", "n", "stride", "dense", "dtype", "device", "contiguous")

    def __init__(self, x: Tensor, dims: Tuple[int, ...]) -> None:
        nd = x.dim()
        self.shape, self.stride, self.dtype, self.device = x.shape, x.stride(), x.dtype, x.device
        self.contiguous = x.is_contiguous()
        k = nd - len(dims)
        if dims[0] == k and (k == nd - 1 or self.contiguous):  # trailing dims in memory order: no permutation
            self.perm = self.inv = None
            self.pshape = x.shape
        else:
            keep = [d for d in range(nd) if d not in dims]
            red = sorted(dims, key=lambda d: (-x.stride(d), d)) if len(dims) > 1 else list(dims)
            perm = keep + red
            self.perm = perm
            self.inv = [0] * nd
            for i, p in enumerate(perm):
                self.inv[p] = i
            self.pshape = torch.Size([x.shape[p] for p in perm])
        self.rows = math.prod(self.pshape[:k])
        self.n = math.prod(self.pshape[k:])
        self.dense = None  # computed when first needed

    def new_output(self) -> Tuple[Tensor, Optional[Tensor]]:
        """A fresh tensor in x's shape and memory format, and its (rows, elements) view (None when
        the rows would be a copy): a kernel writes the rows and the tensor is the result."""
        if self.perm is None and self.contiguous:  # the common case, in two calls
            base = _blocks.empty_on(self.shape, self.dtype, self.device)  # (the block cache: native/blocks.py)
            return base, base.view(self.rows, self.n)
        if self.dense is None:
            self.dense = C.is_dense(torch.empty_strided(self.shape, self.stride, dtype=torch.bool, device="meta"))
        if self.dense:
            base = _blocks.empty_on(self.shape, self.dtype, self.device, self.stride)
        else:
            base = torch.empty(self.shape, dtype=self.dtype, device=self.device)
        rows = self.to_rows(base)
        shared = rows.untyped_storage().data_ptr() == base.untyped_storage().data_ptr() and rows.is_contiguous()
        return base, (rows if shared else None)

    def to_rows(self, t: Tensor) -> Tensor:
        """t (of x's shape) as (rows, elements): a view where the layout allows, else a copy."""
        if self.perm is not None:
            t = t.permute(self.perm)
        return t.reshape(self.rows, self.n)

    def restore(self, y2: Tensor) -> Tensor:
        """A (rows, elements) result in x's shape and memory format."""
        if self.perm is None and self.contiguous and y2.is_contiguous():
            return y2.view(self.shape)
        y = y2.reshape(self.pshape)
        if self.perm is not None:
            y = y.permute(self.inv)
        if y.stride() != self.stride:
            if self.dense is None:
                self.dense = C.is_dense(torch.empty_strided(self.shape, self.stride, dtype=torch.bool, device="meta"))
            if self.dense:
                y = torch.empty_strided(self.shape, self.stride, dtype=y.dtype, device=y.device).copy_(y)
        return y


def as_rows(x: Tensor, dims: Tuple[int, ...]):
    """x as a (rows, elements) tensor with one row per set of statistics over ``dims``, and a
    function that turns a result of that shape back into x's shape and memory format
    (see :class:`RowsView`)."""
    view = RowsView(x, dims)
    return view.to_rows(x), view.restore


def ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0, dim=None,
        eps: float = 1e-5, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, backend: Optional[str] = None) -> Tensor:
    r"""ASH through the registered operator ``torch.ops.ashlib.ash``, with one-element z and alpha.

    ``backend`` (None: the fastest available, see :func:`select_backend`) chooses the C kernels of
    :mod:`ashlib.ops.native` (CPU float32/bfloat16), Triton (CUDA) or chunked ATen ops, which
    process ``chunk_elements`` elements' worth of rows at a time. Public code calls
    :func:`ashlib.functional.ash`, which validates the arguments first.

    >>> import torch
    >>> torch.allclose(ash(torch.linspace(-2, 2, 5)), torch.tensor([-0.0360, -0.1192, 0., 0.8808, 1.9640]), atol=1e-4)
    True
    """
    return _ash_call(x, z, alpha, None, dim, eps, chunk_elements, backend)


def leaky_ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0,
              slope: Union[Number, Tensor] = 0.01, dim=None, eps: float = 1e-5,
              chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, backend: Optional[str] = None) -> Tensor:
    r"""Leaky ASH :math:`x(\ell + (1 - \ell) S(2\alpha(x - \mu_X - z\sigma_X)))` through ``torch.ops.ashlib.ash``."""
    return _ash_call(x, z, alpha, slope, dim, eps, chunk_elements, backend)


def _ash_call(x, z, alpha, slope, dim, eps, chunk_elements, backend) -> Tensor:
    dims = C.reduce_dims(x, dim)
    p = [C.as_param(z, x), C.as_param(alpha, x), None if slope is None else C.as_param(slope, x)]
    for name, v in zip(("z", "alpha", "slope"), p):
        if v is not None and v.numel() != 1:
            raise ValueError(f"{name} has {v.numel()} elements: the operator takes one value "
                             "(ashlib.functional.ash accepts tensors broadcastable to x)")
    if x.device.type in C.EAGER_DEVICES and C.plain_eager(x, *p):
        y = _fast_ash(x, p, float(eps), dims, backend)
        if y is not None:
            return y
        return _EagerASH.apply(x, p[0], p[1], p[2], float(eps), backend, chunk_elements, dims)
    x2, restore = as_rows(x, dims)
    return restore(torch.ops.ashlib.ash(x2, p[0], p[1], p[2], float(eps), backend, chunk_elements)[0])


def hard_ash(x: Tensor, z: Union[Number, Tensor], dims: Tuple[int, ...], eps: float) -> Tensor:
    """Hard ASH through ``torch.ops.ashlib.hard_ash`` (one-element z)."""
    x2, restore = as_rows(x, dims)
    return restore(torch.ops.ashlib.hard_ash(x2, C.as_param(z, x), float(eps))[0])


def topk_ash(x: Tensor, n_keep: int, dims: Tuple[int, ...]) -> Tensor:
    """Exact top-k ASH through ``torch.ops.ashlib.topk_ash``."""
    x2, restore = as_rows(x, dims)
    return restore(torch.ops.ashlib.topk_ash(x2, int(n_keep))[0])


def topk_ash_kthvalue(x: Tensor, k: float) -> Tensor:
    """Exact top-k ASH by a per-sample threshold from ``torch.kthvalue`` (no sort, no scatter).

    Keeps every element >= the ``round(k*n)``-th largest value of its sample (statistics over
    all dims but the batch), so ties at the threshold may keep a few more than ``round(k*n)``;
    :func:`ashlib.functional.topk_ash` keeps exactly that many. Used by the benchmarks to time
    the "sorting" alternative the ASH paper argues against.
    """
    if not (0.0 < k < 1.0):
        raise C.range_error("k", k, "in the open interval (0, 1)")
    x2 = _rows(x)
    n = x2.shape[1]
    n_keep = int(round(k * n))
    if n_keep == 0:
        return torch.zeros_like(x)
    thr = torch.kthvalue(x2.detach(), n - n_keep + 1, dim=1, keepdim=True).values
    return (x2 * (x2 >= thr)).reshape(x.shape)
