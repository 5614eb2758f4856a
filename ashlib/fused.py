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
* ``"aten"``: chunked ATen operations (float64, float16, ``torch.compile``, no C compiler),
  working through the batch in chunks of samples so that one chunk's temporaries stay in cache.

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

import math
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ashlib import functional as AF

__all__ = ["ash", "leaky_ash", "fused_supported", "DEFAULT_CHUNK_ELEMENTS", "topk_ash_kthvalue"]

Number = Union[int, float]

#: Elements per chunk of samples: bounds the backward temporaries (two or three chunk-sized
#: buffers) without paying per-call overhead on small chunks (measured on a 2-core CPU: 2^18 beat 2^20 and 2^22).
DEFAULT_CHUNK_ELEMENTS = 1 << 18
#: ``softplus_backward`` returns ``grad`` unchanged above this argument; S(40) rounds to 1 in
#: float32 and float64 alike, so the shortcut is exact.
_SP_THRESHOLD = 40.0
#: Relative size of mu**2 against the variance above which E[x^2] - mu^2 is recomputed two-pass.
_CANCELLATION_RATIO = 8.0


def _scalar_value(v) -> Optional[float]:
    """A Python float for a number or a one-element tensor, None for anything else."""
    if AF._is_number(v):
        return float(v)
    if isinstance(v, Tensor) and v.numel() == 1 and v.is_floating_point():
        return float(v.detach())
    return None


def _default_dims(x: Tensor, dim) -> bool:
    if x.dim() == 0:
        return False
    return AF.reduce_dims(x, dim) == AF.reduce_dims(x, None)


def fused_supported(x: Tensor, z=0.0, alpha=1.0, dim=None, slope=None) -> bool:
    """Whether the fused path takes this call (before the data-dependent range check).

    It needs the default statistics dims (all dims but the batch, or dim 0 of a 1-D input), a
    floating-point input with elements, and z, alpha, slope given as numbers or one-element
    tensors. Everything else goes to the reference implementation.
    """
    if not (isinstance(x, Tensor) and x.is_floating_point() and x.numel() > 0 and _default_dims(x, dim)):
        return False
    for v in (z, alpha) + (() if slope is None else (slope,)):
        if not (AF._is_number(v) or (isinstance(v, Tensor) and v.numel() == 1 and v.is_floating_point())):
            return False
    return True


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _rows(x: Tensor) -> Tensor:
    """x as (samples, elements per sample)."""
    return x.reshape(1, -1) if x.dim() == 1 else x.reshape(x.shape[0], -1)


def _chunks(n_rows: int, n_cols: int, chunk_elements: int):
    step = max(1, chunk_elements // max(1, n_cols))
    for r0 in range(0, n_rows, step):
        yield r0, min(n_rows, r0 + step)


def _statistics(x2: Tensor, eps: float, chunk_elements: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per-sample mean, ``sqrt(var + eps)`` and the 2-norm (an upper bound on max|x|), float64, (N, 1).

    Accumulated in float64 whatever the input dtype: with alpha up to 1e3 the threshold t must
    be known to far better than float32 precision, because an error dt moves u = 2*alpha*(x - t)
    by 2*alpha*dt, which is the relative error of the output in the tail. One pass per chunk
    gives the sum and the norm (E[x^2] - mu^2); a second pass runs only where that difference
    would cancel. A norm that overflows comes back as inf and sends the call to the reference.
    """
    n = x2.shape[1]
    s1 = torch.empty(x2.shape[0], 1, dtype=torch.float64, device=x2.device)
    nrm = torch.empty_like(s1)
    for r0, r1 in _chunks(x2.shape[0], n, chunk_elements):
        xd = x2[r0:r1].to(torch.float64)
        torch.sum(xd, dim=1, keepdim=True, out=s1[r0:r1])
        torch.linalg.vector_norm(xd, dim=1, keepdim=True, out=nrm[r0:r1])
    mu = s1 / n
    var = torch.clamp(nrm * nrm / n - mu * mu, min=0)
    if bool(torch.any(mu * mu > _CANCELLATION_RATIO * var)):
        # E[x^2] - mu^2 lost too many digits: recompute the variance from x - mu
        for r0, r1 in _chunks(x2.shape[0], n, chunk_elements):
            d = x2[r0:r1].to(torch.float64) - mu[r0:r1]
            var[r0:r1] = torch.linalg.vector_norm(d, dim=1, keepdim=True) ** 2 / n
    sigma = torch.sqrt(var + eps)
    return mu, sigma, nrm


def _range_ok(x2: Tensor, mu: Tensor, sigma: Tensor, norm: Tensor, z: float, a: float, eps: float) -> bool:
    """True when every intermediate of the fast path is finite and accurate for this input."""
    fi = torch.finfo(_compute_dtype(x2))
    if not (math.isfinite(z) and math.isfinite(a) and eps >= math.sqrt(fi.tiny)):
        return False
    # x - t must be finite with room to spare (|x| <= norm); the sums of squares must not overflow
    bound = norm + torch.abs(mu + z * sigma)
    return bool(torch.all(torch.isfinite(bound) & (bound <= fi.max / 64)))


def split_threshold(t: Tensor, cd: torch.dtype) -> Tuple[Tensor, Tensor]:
    """A float64 threshold t as t_hi + t_lo in the compute dtype ``cd``.

    x - t_hi is exact where it matters (Sterbenz: x within a factor 2 of t_hi), and then
    subtracting t_lo leaves x - t correct to the compute dtype's relative precision, which a
    single rounded t cannot give once 2*alpha*|t| is large. (The C kernels do the same per sample.)
    """
    t_hi = t.to(cd)
    t_lo = (t - t_hi.to(torch.float64)).to(cd)
    return t_hi, t_lo


def _threshold_split(mu: Tensor, sigma: Tensor, z: float, cd: torch.dtype) -> Tuple[Tensor, Tensor]:
    """:func:`split_threshold` of t = mu + z*sigma."""
    return split_threshold(mu + z * sigma, cd)


def mean_sigma_path(R1: Tensor, sigma: Tensor, z: float, c: float, A: float, n: int) -> Tuple[Tensor, Tensor]:
    """Per-sample (k0, k1), float64, such that the path of dL/dx through mu and sigma is
    k0 + k1*d with d = x - t: -(W/n)(1 + z(x - mu)/sigma) = -(W/n)(1 + z^2 + z d/sigma),
    W = c*A*R1 (see the module docstring)."""
    Wn = R1 * (c * A / n)
    return Wn * (-(1.0 + z * z)), Wn * (-z) / sigma


BACKENDS = ("native", "triton", "aten")


def _native_lib(x: Tensor):
    """The native CPU kernels when they can take x (see :func:`ashlib.native.library_for`), else None."""
    from ashlib import native
    return native.library_for(x)


def _triton_ok(x: Tensor) -> bool:
    """CUDA tensors with Triton installed (CPU tensors too under TRITON_INTERPRET=1, for tests)."""
    if torch.compiler.is_compiling():
        return False
    try:
        from ashlib import fused_triton
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


def _ptr_rows(t: Tensor, r0: int) -> int:
    """Address of row r0 of a contiguous 2-D tensor (or of element r0 of a 1-D one)."""
    return t.data_ptr() + r0 * t.stride(0) * t.element_size()


def _native_forward(lib, x2: Tensor, eps: float, zf: float, A: float,
                    lf: Optional[float]) -> Tuple[Tensor, Tensor, Tensor, bool]:
    """(y, mu, sigma, ok) from the C kernels: each sample's statistics (float64, (N, 1)) and,
    while it is in cache, its output; ok is False when some sample fails the range check
    (y is then incomplete and the caller uses the reference)."""
    from ashlib import native
    from ashlib.native import parallel_rows
    rows, n = x2.shape
    mu = torch.empty(rows, 1, dtype=torch.float64)
    sigma = torch.empty_like(mu)
    y = torch.empty_like(x2)
    fn = getattr(lib, "ash_forward_" + native.DTYPE_SUFFIX[x2.dtype])
    ok = parallel_rows(rows, n, lambda r0, r1: fn(r1 - r0, n, _ptr_rows(x2, r0), _ptr_rows(y, r0), eps, zf,
                                                  _CANCELLATION_RATIO, A, 0.0 if lf is None else lf,
                                                  _ptr_rows(mu, r0), _ptr_rows(sigma, r0)))
    return y, mu, sigma, all(ok)


def _native_backward(lib, x2: Tensor, g2: Tensor, mu: Tensor, sigma: Tensor, zf: float, A: float,
                     lf: Optional[float], need_x: bool, need_a: bool, need_l: bool):
    """(gx or None, R1, R2 or None, Rl or None), as the ATen path computes them."""
    from ashlib import native
    from ashlib.native import parallel_rows
    rows, n = x2.shape
    gx = torch.empty_like(x2) if need_x else None
    R1 = torch.empty(rows, 1, dtype=torch.float64)
    R2 = torch.empty_like(R1) if need_a else None
    Rl = torch.empty_like(R1) if (need_l and lf is not None) else None
    fn = getattr(lib, "ash_backward_" + native.DTYPE_SUFFIX[x2.dtype])

    def opt(t, r0):
        return None if t is None else _ptr_rows(t, r0)

    codes = parallel_rows(rows, n, lambda r0, r1: fn(
        r1 - r0, n, _ptr_rows(x2, r0), _ptr_rows(g2, r0), opt(gx, r0), _ptr_rows(mu, r0), _ptr_rows(sigma, r0),
        zf, A, 0.0 if lf is None else lf, _ptr_rows(R1, r0), opt(R2, r0), opt(Rl, r0)))
    if any(codes):
        raise MemoryError("ashlib.native: could not allocate a row buffer for the ASH backward")
    return gx, R1, R2, Rl


def _aten_forward(x: Tensor, mu: Tensor, sigma: Tensor, zf: float, A: float, lf: Optional[float],
                  chunk_elements: int) -> Tensor:
    """The forward in chunked ATen ops: ``softplus_backward(grad, d, beta)`` evaluates
    ``grad * S(beta*d)`` in one pass, with d = x - t."""
    x2 = _rows(x)
    cd = _compute_dtype(x)
    t_hi, t_lo = _threshold_split(mu, sigma, zf, cd)
    out = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
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


def _aten_backward(x: Tensor, grad: Tensor, mu: Tensor, sigma: Tensor, zf: float, A: float, lf: Optional[float],
                   need_x: bool, need_w: bool, need_a: bool, need_l: bool, chunk_elements: int):
    """(gx or None, R1, R2 or None, Rl or None) in chunked ATen ops; S(u) and S(-u) both come
    from ``softplus_backward`` (beta = A and -A), so the tails keep full relative accuracy."""
    cd = _compute_dtype(x)
    x2 = _rows(x)
    g2 = _rows(grad)
    n_rows, n = x2.shape
    c = 1.0 if lf is None else 1.0 - lf
    t_hi, t_lo = _threshold_split(mu, sigma, zf, cd)
    gx = torch.empty(x2.shape, dtype=cd, device=x.device) if need_w else None
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
            Rl_all[r0:r1] = torch.sum(q.mul_(xc), dim=1, keepdim=True, dtype=torch.float64)
        if not need_w:
            continue
        gs = gx[r0:r1]
        torch.ops.aten.softplus_backward.grad_input(gc, d, A, _SP_THRESHOLD, grad_input=gs)  # g*S(u)
        torch.ops.aten.softplus_backward.grad_input(gs, d, -A, _SP_THRESHOLD, grad_input=q)  # g*S(u)*S(-u)
        w = q.mul_(xc)  # x*g*S'(u)
        R1 = torch.sum(w, dim=1, keepdim=True, dtype=torch.float64)
        R1_all[r0:r1] = R1
        if need_x:
            if lf is not None:
                torch.lerp(gc, gs, c, out=gs)  # l*g + c*g*S(u)
            gs.add_(w, alpha=c * A)
        if R2_all is not None:
            R2_all[r0:r1] = torch.sum(w.mul_(d), dim=1, keepdim=True, dtype=torch.float64)
        if need_x:
            # the path through mu and sigma: -(W/n)(1 + z(x - mu)/sigma), W = c*A*R1, written
            # with d = x - t (accurate) as -(W/n)(1 + z^2 + z*d/sigma)
            k0, k1 = mean_sigma_path(R1, sigma[r0:r1], zf, c, A, n)
            k0, k1 = k0.to(cd), k1.to(cd)
            gs.addcmul_(d, k1).add_(k0)
    return (gx if need_x else None), R1_all, R2_all, Rl_all


class _FusedASHFunction(torch.autograd.Function):
    """ASH / Leaky ASH over the rows of a (samples, elements) view, analytic backward.

    ``backend`` picks the loops: the C kernels of :mod:`ashlib.native`, the Triton kernels of
    :mod:`ashlib.fused_triton` or chunked ATen ops; all compute the quantities of the module
    docstring (R1 = sum x q, R2 = sum x q d, Rl = sum g x S(-u) per sample) in float32 (the
    input's dtype for float64) with float64 sums.
    """

    @staticmethod
    def forward(ctx, x: Tensor, z, alpha, slope, mu: Tensor, sigma: Tensor, zf: float, af: float,
                lf: Optional[float], chunk_elements: int, backend: str, out: Optional[Tensor]) -> Tensor:
        A = 2.0 * af
        if out is not None:
            pass  # the native kernels computed it with the statistics (see _fused)
        elif backend == "triton":
            from ashlib import fused_triton
            out = fused_triton.ash_forward(_rows(x), mu + zf * sigma, A, lf)
        else:
            out = _aten_forward(x, mu, sigma, zf, A, lf, chunk_elements)
        ctx.save_for_backward(x, mu, sigma)
        ctx.params = (zf, af, lf, chunk_elements, backend)
        ctx.param_meta = tuple((v.shape, v.dtype) if isinstance(v, Tensor) else None for v in (z, alpha, slope))
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mu, sigma = ctx.saved_tensors
        zf, af, lf, chunk_elements, backend = ctx.params
        need_x, need_z, need_a, need_l = ctx.needs_input_grad[:4]
        A = 2.0 * af
        c = 1.0 if lf is None else 1.0 - lf
        need_w = need_x or need_z or need_a
        if backend == "native":
            g2 = _rows(grad.to(x.dtype)).contiguous()
            gx, R1_all, R2_all, Rl_all = _native_backward(_native_lib(x), _rows(x), g2, mu, sigma, zf, A, lf,
                                                          need_x, need_a, need_l)
        elif backend == "triton":
            from ashlib import fused_triton
            g2 = _rows(grad.to(x.dtype)).contiguous()
            gx, R1_all, R2_all, Rl_all = fused_triton.ash_backward(_rows(x), g2, mu, sigma, zf, A, lf,
                                                                   need_x, need_a, need_l)
        else:
            gx, R1_all, R2_all, Rl_all = _aten_backward(x, grad, mu, sigma, zf, A, lf, need_x, need_w, need_a,
                                                        need_l, chunk_elements)
        grads = [None] * 12
        if need_x:
            grads[0] = gx.reshape(x.shape).to(x.dtype)

        def _param_grad(total: Tensor, meta):
            shape, dtype = meta
            return total.reshape(shape).to(dtype)

        if need_z:  # dL/dz = -sum sigma*W
            grads[1] = _param_grad(-(sigma * R1_all).sum() * (c * A), ctx.param_meta[0])
        if need_a:  # dL/dalpha = (c/alpha) sum x q u = 2c sum x q d
            grads[2] = _param_grad(R2_all.sum() * (2.0 * c), ctx.param_meta[1])
        if need_l:
            grads[3] = _param_grad(Rl_all.sum(), ctx.param_meta[2])
        return tuple(grads)


def _fused(x: Tensor, z, alpha, slope, dim, eps: float, chunk_elements: int,
           backend: Optional[str] = None) -> Optional[Tensor]:
    """The fused result, or None when this input must go to the reference implementation."""
    if not fused_supported(x, z, alpha, dim, slope):
        return None
    backend = select_backend(x, backend)
    zf, af = _scalar_value(z), _scalar_value(alpha)
    lf = None if slope is None else _scalar_value(slope)
    if backend != "aten" and not x.is_contiguous():
        x = x.contiguous()
    out = None
    with torch.no_grad():
        if backend == "native":
            if not (math.isfinite(zf) and math.isfinite(af) and eps >= math.sqrt(torch.finfo(torch.float32).tiny)):
                return None
            y2, mu, sigma, ok = _native_forward(_native_lib(x), _rows(x.detach()), eps, zf, 2.0 * af, lf)
            if not ok:
                return None
            out = y2.reshape(x.shape)
        else:
            x2 = _rows(x.detach())
            mu, sigma, norm = _statistics(x2, eps, chunk_elements)
            if not _range_ok(x2, mu, sigma, norm, zf, af, eps):
                return None
    return _FusedASHFunction.apply(x, z, alpha, slope, mu, sigma, zf, af, lf, chunk_elements, backend, out)


def _check_eps(eps) -> None:
    if not (AF._is_number(eps) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps={eps!r} is out of range: eps must be finite and > 0 (it keeps sigma and "
                         "its gradient finite on a constant feature map)")


def ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0,
        dim=None, eps: float = 1e-5, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        backend: Optional[str] = None) -> Tensor:
    r"""Fused ASH, :math:`x\,S(2\alpha(x - \mu_X - z\sigma_X))` (same contract as :func:`ashlib.functional.ash`).

    Saves only ``x`` and per-sample statistics for backward. ``backend`` (None: the fastest
    available, see :func:`select_backend`) chooses the C kernels of :mod:`ashlib.native` (CPU
    float32/bfloat16, one sample at a time), Triton (CUDA) or chunked ATen ops, which process
    ``chunk_elements`` elements' worth of samples at a time. Falls back to the reference implementation for
    inputs outside the fast path's range (see the module docstring).

    >>> import torch
    >>> torch.allclose(ash(torch.linspace(-2, 2, 5)), torch.tensor([-0.0360, -0.1192, 0., 0.8808, 1.9640]), atol=1e-4)
    True
    """
    AF.check_positive("alpha", alpha)
    _check_eps(eps)
    out = _fused(x, z, alpha, None, dim, eps, chunk_elements, backend)
    return AF._ash_family(x, z, alpha, dim, eps) if out is None else out


def leaky_ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0,
              slope: Union[Number, Tensor] = 0.01, dim=None, eps: float = 1e-5,
              chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, backend: Optional[str] = None) -> Tensor:
    r"""Fused Leaky ASH, :math:`x(\ell + (1 - \ell) S(2\alpha(x - \mu_X - z\sigma_X)))`."""
    if AF._is_number(slope) and not (slope > 0 and math.isfinite(slope)):
        raise ValueError(f"slope={slope!r} is out of range: slope must be finite and > 0")
    AF.check_positive("alpha", alpha)
    _check_eps(eps)
    out = _fused(x, z, alpha, slope, dim, eps, chunk_elements, backend)
    return AF._ash_family(x, z, alpha, dim, eps, slope=slope) if out is None else out


def topk_ash_kthvalue(x: Tensor, k: float) -> Tensor:
    """Exact top-k ASH by a per-sample threshold from ``torch.kthvalue`` (no sort, no scatter).

    Keeps every element >= the ``round(k*n)``-th largest value of its sample (statistics over
    all dims but the batch), so ties at the threshold may keep a few more than ``round(k*n)``;
    :func:`ashlib.functional.topk_ash` keeps exactly that many. Used by the benchmarks to time
    the "sorting" alternative the ASH paper argues against.
    """
    AF.check_open_unit("k", k)
    x2 = _rows(x)
    n = x2.shape[1]
    n_keep = int(round(k * n))
    if n_keep == 0:
        return torch.zeros_like(x)
    thr = torch.kthvalue(x2.detach(), n - n_keep + 1, dim=1, keepdim=True).values
    return (x2 * (x2 >= thr)).reshape(x.shape)
