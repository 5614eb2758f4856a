"""Fused, memory-efficient ASH and Leaky ASH: custom autograd Functions with analytic backward.

The straightforward ASH in :func:`ashlib.functional._ash_family` is a chain of a dozen tensor
operations whose autograd graph keeps most intermediates alive. The Functions here compute the
same thing (the same numerical contract, see DESIGN.md) in a few passes over the data, save
only the input and per-sample statistics, and work through the batch in chunks of samples so
that one chunk's temporaries stay in cache.

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

Both sigmoid factors come from ``softplus_backward``, which computes ``grad * S(beta * u)`` in
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
#: buffers) without paying per-call overhead on small chunks (measured: 2^18..2^20 is best on CPU).
DEFAULT_CHUNK_ELEMENTS = 1 << 20
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
    """Per-sample mean, ``sqrt(var + eps)`` and an upper bound on max|x|, shape (N, 1).

    One pass per chunk for the sum and the 2-norm (E[x^2] - mu^2); a second pass only where
    that difference would cancel (mu**2 much larger than the variance). A norm that overflows
    comes back as inf and sends the call to the reference path.
    """
    cd = _compute_dtype(x2)
    n = x2.shape[1]
    s1 = torch.empty(x2.shape[0], 1, dtype=cd, device=x2.device)
    nrm = torch.empty_like(s1)
    for r0, r1 in _chunks(x2.shape[0], n, chunk_elements):
        xc = x2[r0:r1].to(cd)
        torch.sum(xc, dim=1, keepdim=True, out=s1[r0:r1])
        torch.linalg.vector_norm(xc, dim=1, keepdim=True, out=nrm[r0:r1])
    mu = s1 / n
    var = torch.clamp(nrm * nrm / n - mu * mu, min=0)
    if bool(torch.any(mu * mu > _CANCELLATION_RATIO * var)):
        # E[x^2] - mu^2 lost too many digits: recompute the variance from x - mu
        for r0, r1 in _chunks(x2.shape[0], n, chunk_elements):
            d = x2[r0:r1].to(cd) - mu[r0:r1]
            var[r0:r1] = torch.linalg.vector_norm(d, dim=1, keepdim=True) ** 2 / n
    sigma = torch.sqrt(var + eps)
    return mu, sigma, nrm


def _range_ok(x2: Tensor, mu: Tensor, sigma: Tensor, amax_bound: Tensor, z: float, a: float,
              eps: float) -> bool:
    """True when every intermediate of the fast path is finite and accurate for this input."""
    cd = _compute_dtype(x2)
    fi = torch.finfo(cd)
    if not (math.isfinite(z) and math.isfinite(a) and eps >= math.sqrt(fi.tiny)):
        return False
    t = mu + z * sigma
    # |u| <= 2a (max|x| + |t|) must stay far from overflow, and so must the norm itself
    bound = 2 * a * (amax_bound + torch.abs(t))
    return bool(torch.all(torch.isfinite(bound) & (bound <= fi.max / 64)))


class _FusedASHFunction(torch.autograd.Function):
    """ASH / Leaky ASH over the rows of a (samples, elements) view, analytic backward."""

    @staticmethod
    def forward(ctx, x: Tensor, z, alpha, slope, mu: Tensor, sigma: Tensor, zf: float, af: float,
                lf: Optional[float], chunk_elements: int) -> Tensor:
        x2 = _rows(x)
        cd = _compute_dtype(x)
        A = 2.0 * af
        t = mu + zf * sigma
        neg_At = t * (-A)
        out = torch.empty(x2.shape, dtype=x.dtype, device=x.device)
        buf = None
        for r0, r1 in _chunks(x2.shape[0], x2.shape[1], chunk_elements):
            xc = x2[r0:r1].to(cd)
            if x.dtype == cd:
                o = out[r0:r1]
            else:
                buf = torch.empty(xc.shape, dtype=cd, device=x.device) if buf is None else buf
                o = buf[: r1 - r0]
            torch.add(neg_At[r0:r1], xc, alpha=A, out=o)  # u = A*(x - t)
            torch.ops.aten.softplus_backward.grad_input(xc, o, 1.0, _SP_THRESHOLD, grad_input=o)  # x*S(u)
            if lf is not None:
                torch.lerp(xc, o, 1.0 - lf, out=o)  # l*x + (1 - l)*x*S(u)
            if o.data_ptr() != out[r0:r1].data_ptr():
                out[r0:r1].copy_(o)
        ctx.save_for_backward(x, mu, sigma)
        ctx.params = (zf, af, lf, chunk_elements)
        ctx.param_shapes = tuple(v.shape if isinstance(v, Tensor) else None for v in (z, alpha, slope))
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mu, sigma = ctx.saved_tensors
        zf, af, lf, chunk_elements = ctx.params
        need_x, need_z, need_a, need_l = ctx.needs_input_grad[:4]
        cd = _compute_dtype(x)
        x2 = _rows(x)
        g2 = _rows(grad)
        n_rows, n = x2.shape
        A = 2.0 * af
        c = 1.0 if lf is None else 1.0 - lf
        t = mu + zf * sigma
        neg_At = t * (-A)
        gx = torch.empty(x2.shape, dtype=cd, device=x.device) if need_x or need_z or need_a else None
        W_all = torch.zeros(n_rows, 1, dtype=cd, device=x.device)
        R2_all = torch.zeros_like(W_all) if need_a else None
        Rl_all = torch.zeros_like(W_all) if (need_l and lf is not None) else None
        ubuf = qbuf = None
        for r0, r1 in _chunks(n_rows, n, chunk_elements):
            rows = r1 - r0
            xc = x2[r0:r1].to(cd)
            gc = g2[r0:r1].to(cd)
            if ubuf is None:
                ubuf = torch.empty(xc.shape, dtype=cd, device=x.device)
                qbuf = torch.empty_like(ubuf)
            u, q = ubuf[:rows], qbuf[:rows]
            torch.add(neg_At[r0:r1], xc, alpha=A, out=u)
            if Rl_all is not None:  # dL/dl = sum g*x*S(-u), from S(-u) directly (1 - S(u) cancels)
                torch.ops.aten.softplus_backward.grad_input(gc, u, -1.0, _SP_THRESHOLD, grad_input=q)
                Rl_all[r0:r1] = torch.sum(q.mul_(xc), dim=1, keepdim=True)
            if gx is None:
                continue
            gs = gx[r0:r1]
            torch.ops.aten.softplus_backward.grad_input(gc, u, 1.0, _SP_THRESHOLD, grad_input=gs)  # g*S(u)
            torch.ops.aten.softplus_backward.grad_input(gs, u, -1.0, _SP_THRESHOLD, grad_input=q)  # g*S'(u)
            w = torch.mul(xc, q)
            W = torch.sum(w, dim=1, keepdim=True) * (c * A)
            W_all[r0:r1] = W
            if R2_all is not None:
                R2_all[r0:r1] = torch.sum(w.mul_(u), dim=1, keepdim=True)
            del w
            if not need_x:
                continue
            # dL/dx = l*g + c*g*S(u) + x*(c*A*q + k1) + k0, k1*x + k0 = -(W/n)(1 + z(x - mu)/sigma)
            k1 = W * (-zf / n) / sigma[r0:r1]
            k0 = -(W / n) - k1 * mu[r0:r1]
            if lf is not None:
                torch.lerp(gc, gs, c, out=gs)
            torch.add(k1, q, alpha=c * A, out=q)
            gs.addcmul_(xc, q).add_(k0)
        grads = [None] * 10
        if need_x:
            grads[0] = gx.reshape(x.shape).to(x.dtype)
        if need_z:
            grads[1] = (-(sigma * W_all).sum()).reshape(ctx.param_shapes[0])
        if need_a:
            grads[2] = (R2_all.sum() * (c / af)).reshape(ctx.param_shapes[1])
        if need_l:
            grads[3] = Rl_all.sum().reshape(ctx.param_shapes[2])
        return tuple(grads)


def _fused(x: Tensor, z, alpha, slope, dim, eps: float, chunk_elements: int) -> Optional[Tensor]:
    """The fused result, or None when this input must go to the reference implementation."""
    if not fused_supported(x, z, alpha, dim, slope):
        return None
    zf, af = _scalar_value(z), _scalar_value(alpha)
    lf = None if slope is None else _scalar_value(slope)
    x2 = _rows(x)
    with torch.no_grad():
        mu, sigma, amax_bound = _statistics(x2.detach(), eps, chunk_elements)
        if not _range_ok(x2, mu, sigma, amax_bound, zf, af, eps):
            return None
    return _FusedASHFunction.apply(x, z, alpha, slope, mu, sigma, zf, af, lf, chunk_elements)


def _check_eps(eps) -> None:
    if not (AF._is_number(eps) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps={eps!r} is out of range: eps must be finite and > 0 (it keeps sigma and "
                         "its gradient finite on a constant feature map)")


def ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0,
        dim=None, eps: float = 1e-5, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tensor:
    r"""Fused ASH, :math:`x\,S(2\alpha(x - \mu_X - z\sigma_X))` (same contract as :func:`ashlib.functional.ash`).

    Saves only ``x`` and per-sample statistics for backward; processes ``chunk_elements``
    elements' worth of samples at a time. Falls back to the reference implementation for
    inputs outside the fast path's range (see the module docstring).

    >>> import torch
    >>> torch.allclose(ash(torch.linspace(-2, 2, 5)), torch.tensor([-0.0360, -0.1192, 0., 0.8808, 1.9640]), atol=1e-4)
    True
    """
    AF.check_positive("alpha", alpha)
    _check_eps(eps)
    out = _fused(x, z, alpha, None, dim, eps, chunk_elements)
    return AF._ash_family(x, z, alpha, dim, eps) if out is None else out


def leaky_ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0,
              slope: Union[Number, Tensor] = 0.01, dim=None, eps: float = 1e-5,
              chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> Tensor:
    r"""Fused Leaky ASH, :math:`x(\ell + (1 - \ell) S(2\alpha(x - \mu_X - z\sigma_X)))`."""
    if AF._is_number(slope) and not (slope > 0 and math.isfinite(slope)):
        raise ValueError(f"slope={slope!r} is out of range: slope must be finite and > 0")
    AF.check_positive("alpha", alpha)
    _check_eps(eps)
    out = _fused(x, z, alpha, slope, dim, eps, chunk_elements)
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
