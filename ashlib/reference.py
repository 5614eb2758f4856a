"""The plain ATen math of every activation: the readable definition, and the composite that
exports decompose to.

Every function here is a short chain of standard tensor operations with no Python branch on
tensor values, no custom autograd Function and no host synchronisation. That makes them:

* the definition a reader checks against the paper (and :mod:`ashlib.symbolic`);
* what :mod:`ashlib.functional` runs where a registered operator cannot go: under
  ``torch.jit.trace``, ``torch.export`` and therefore both ONNX exporters (the exported graph holds
  these operations, so it runs without ashlib installed), under ``torch.func`` transforms
  (vmap, grad, jvp, hessian) and forward-mode AD;
* the differentiable backward of the operators when a gradient of a gradient is asked for
  (``create_graph=True``: gradient penalties), and their exact fallback for inputs outside the
  fast kernels' range;
* the oracle of the kernel tests.

Plain autograd of these forms is accurate where the textbook forms are not: the sigmoid is
written ``exp(logsigmoid(u))``, whose derivative autograd forms as ``S(u) * S(-u)`` (no ``1 - S(u)``
that cancels in the tail), the softplus as ``-logsigmoid(-v)`` (full relative accuracy, unlike
``F.softplus``'s threshold), and the statistics are taken in units of a power of two near
``max|x|`` so that nothing overflows on maps near the float range. Inputs narrower than float64
are evaluated in float64 and cast back.

All functions take the statistics dims already normalised (a tuple of non-negative ints) and
parameters as numbers or tensors broadcastable to ``x``; argument checking is the caller's.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["wide", "statistics", "ash", "hard_ash", "topk_ash", "adaptive_gumbel", "adaptive_relu_exponential",
           "swish", "hard_ash_keep", "one_minus_exp_neg", "sigmoid", "softplus"]

Param = Union[float, Tensor]


def wide(x: Tensor) -> Tensor:
    """x in float64 (the dtype every reference formula is evaluated in)."""
    return x if x.dtype == torch.float64 else x.to(torch.float64)


def _param(v: Param, like: Tensor) -> Union[float, Tensor]:
    return v.to(like.dtype) if isinstance(v, Tensor) else float(v)


def sigmoid(u: Tensor) -> Tensor:
    """S(u) as exp(logsigmoid(u)): autograd's derivative is then S(u)*S(-u) to full relative accuracy."""
    return torch.exp(F.logsigmoid(u))


def softplus(v: Tensor) -> Tensor:
    """log(1 + e^v) to full relative accuracy for every v (``F.softplus`` returns v above 20)."""
    return -F.logsigmoid(-v)


def statistics(x: Tensor, dims: Sequence[int], eps: float) -> Tuple[Tensor, Tensor]:
    """Mean and ``sqrt(population variance + eps)`` of x over ``dims`` (keepdim), in x's dtype.

    The variance is computed from ``y = x / s`` with ``s`` a power of two near ``max|x|``
    (detached: sigma does not depend on it), so that neither the sum of squares nor eps/s^2
    over- or underflows; dividing and multiplying by a power of two is exact, so autograd's
    derivatives of these forms are those of the textbook formulas.
    """
    dims = tuple(dims)
    amax = torch.amax(x.detach().abs(), dim=dims, keepdim=True)
    ok = (amax > 0) & torch.isfinite(amax)
    safe = torch.where(ok, amax, torch.ones_like(amax))
    # log2 may round up to the next integer near the top of the range: the exponent is capped
    top = float(math.frexp(torch.finfo(x.dtype).max)[1] - 1)
    scale = torch.pow(2.0, torch.clamp(torch.floor(torch.log2(safe)), max=top))
    # the mean as sum(x/n): it cannot overflow, and its derivative 1/n does not pass through the
    # scale (scale * mean(x/scale) would multiply an upstream gradient by up to 2^1023)
    n = 1
    for d in dims:
        n = n * x.shape[d]
    mu = torch.sum(x / n, dim=dims, keepdim=True)
    y = x / scale
    my = mu / scale
    vy = torch.mean((y - my) ** 2, dim=dims, keepdim=True)
    if eps == 0:  # hard ASH only (no gradient flows through its statistics)
        return mu, scale * torch.sqrt(vy)
    root_eps = math.sqrt(eps)
    # scale >= sqrt(eps): sigma = scale * sqrt(vy + r^2), r = sqrt(eps)/scale <= 1. r^2 underflows
    # for scale > ~1e151 (a near-constant map near the float max), so below vy = r^2 the root is
    # r * sqrt(1 + (vy/r)/r); the unselected branch is evaluated at a harmless stand-in.
    r_a = root_eps / torch.clamp(scale, min=root_eps)
    low = (vy / r_a) <= r_a
    vy_hi = torch.where(low, torch.ones_like(vy), vy)
    sy_hi = torch.sqrt(vy_hi) * torch.sqrt(1 + (r_a / torch.sqrt(vy_hi)) ** 2)
    sy_lo = r_a * torch.sqrt(1 + (torch.where(low, vy, torch.zeros_like(vy)) / r_a) / r_a)
    sigma_a = scale * torch.where(low, sy_lo, sy_hi)
    # scale < sqrt(eps): sigma = sqrt(eps) * sqrt((scale/sqrt(eps))^2 vy + 1), the ratio < 1
    r_b = torch.clamp(scale, max=root_eps) / root_eps
    sigma_b = root_eps * torch.sqrt(r_b * r_b * vy + 1)
    return mu, torch.where(scale >= root_eps, sigma_a, sigma_b)


def _shifted(xc: Tensor, z: Param, dims: Sequence[int], eps: float) -> Tensor:
    """d = x - mu - z*sigma, clamped to the float range (an infinite d would meet a zero
    gradient as inf * 0)."""
    mu, sigma = statistics(xc, dims, eps)
    big = torch.finfo(xc.dtype).max
    return torch.clamp(xc - mu - _param(z, xc) * sigma, -big, big)


def ash(x: Tensor, z: Param = 0.0, alpha: Param = 1.0, slope: Optional[Param] = None,
        dims: Sequence[int] = (1,), eps: float = 1e-5) -> Tensor:
    r"""ASH :math:`x S(2\alpha(x - \mu - z\sigma))`; with ``slope`` = a, Leaky ASH
    :math:`x (a + (1 - a) S(u))`, written :math:`x (S(u) + a S(-u))` so that d/da has no cancellation."""
    xc = wide(x)
    u = 2 * _param(alpha, xc) * _shifted(xc, z, dims, eps)
    gate = sigmoid(u)
    if slope is not None:
        gate = gate + _param(slope, xc) * sigmoid(-u)
    return (xc * gate).to(x.dtype)


def hard_ash(x: Tensor, z: Param = 0.0, dims: Sequence[int] = (1,), eps: float = 1e-5) -> Tensor:
    """Hard ASH ``x * 1[x >= mu + z*sigma]``: the gate is piecewise constant, so no gradient
    flows through the statistics or z."""
    return torch.where(hard_ash_keep(x, z, dims, eps), x, torch.zeros_like(x))


def hard_ash_keep(x: Tensor, z: Param = 0.0, dims: Sequence[int] = (1,), eps: float = 1e-5) -> Tensor:
    """The mask ``x >= mu + z*sigma`` of hard ASH (statistics in float64, no gradient)."""
    return _shifted(wide(x).detach(), z.detach() if isinstance(z, Tensor) else z, dims, eps) >= 0


def topk_ash(x: Tensor, n_keep: int, dims: Sequence[int]) -> Tensor:
    """Keep the ``n_keep`` largest elements over ``dims`` of each slice (ties by position), zero the rest."""
    dims = tuple(dims)
    rest = [d for d in range(x.dim()) if d not in dims]
    perm = rest + list(dims)
    xp = x.permute(perm)
    flat = xp.reshape(tuple(xp.shape[: len(rest)]) + (-1,))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if n_keep > 0:
        idx = torch.topk(flat.detach(), n_keep, dim=-1).indices
        mask = mask.scatter(-1, idx, torch.ones_like(idx, dtype=torch.bool))
    out = torch.where(mask, flat, torch.zeros_like(flat)).reshape(xp.shape)
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return out.permute(inv)


def one_minus_exp_neg(u: Tensor) -> Tensor:
    """1 - e^{-u} for u >= 0 whose autograd derivative is e^{-u} to full relative accuracy.

    Below ln 2 it is ``2 t / (1 + t)`` with ``t = tanh(u/2)`` (the same as ``-expm1(-u)``, to full
    relative accuracy for small u, and its derivative ``(1 - t)/(1 + t)`` loses nothing there);
    above, ``1 - exp(-u)``, where the result is >= 1/2 and the subtraction loses nothing. tanh
    rather than expm1 also lets the TorchScript ONNX exporter, which has no expm1, export it.
    """
    t = torch.tanh(0.5 * torch.clamp(u, max=_LN2))
    return torch.where(u < _LN2, 2 * t / (1 + t), 1 - torch.exp(-u))


_LN2 = math.log(2.0)
#: log1p(q)/q = sum_j (-1)^j q^j / (j + 1): 20 terms reach 1e-21 for q below e^-2.5
_H_SERIES = [(-1.0) ** j / (j + 1) for j in range(20)]
#: below v = x + log(alpha) = -2.5 the adaptive Gumbel exponent L is taken from the series
_G_SERIES_BELOW = -2.5


def adaptive_gumbel(x: Tensor, alpha: Param) -> Tensor:
    r"""Adaptive Gumbel :math:`1 - (1 + \alpha e^x)^{-1/\alpha} = 1 - e^{-L}`,
    :math:`L = \log(1 + q) / \alpha`, :math:`q = \alpha e^x`.

    :math:`L = \mathrm{softplus}(x + \log\alpha)/\alpha` where :math:`q \ge e^{-2.5}`. Below, that
    form is accurate but its derivative in alpha, :math:`(S(v) - \mathrm{softplus}(v))/\alpha^2`,
    is a difference of two nearly equal terms (both ~q, the difference ~ -q^2/2), so there
    :math:`L = e^x h(q)` with :math:`h(q) = \log(1+q)/q` from its series, whose autograd derivative
    :math:`e^{2x} h'(q)` loses nothing.
    """
    xc = wide(x)
    a = _param(alpha, xc)
    a_t = a if isinstance(a, Tensor) else torch.tensor(a, dtype=xc.dtype, device=xc.device)
    log_a = torch.log(a_t)
    v = xc + log_a
    small = v < _G_SERIES_BELOW
    # the series branch, at an x clamped into its own region so that no unselected element
    # overflows (an infinite intermediate would meet where()'s zero gradient as inf * 0)
    x_s = torch.minimum(xc, (_G_SERIES_BELOW - log_a).detach())
    ex = torch.exp(x_s)
    q = a_t * ex
    h = torch.full_like(q, _H_SERIES[-1])
    for c in reversed(_H_SERIES[:-1]):
        h = h * q + c
    L = torch.where(small, ex * h, softplus(v) / a_t)
    return one_minus_exp_neg(L).to(x.dtype)


def adaptive_relu_exponential(x: Tensor, alpha: Param) -> Tensor:
    r"""Adaptive ReLU with the exponential CDF, :math:`x (1 - e^{-\alpha x}) 1[x > 0]`
    (x is clamped at 0 first, so that exp(-alpha*x) cannot overflow for x < 0)."""
    xc = wide(x)
    xp = torch.clamp(xc, min=0)
    return (xp * one_minus_exp_neg(_param(alpha, xc) * xp)).to(x.dtype)


def swish(x: Tensor, beta: Param = 1.0) -> Tensor:
    r"""Swish :math:`x S(\beta x)` (adaptive ReLU with the logistic CDF at beta = alpha)."""
    xc = wide(x)
    return (xc * sigmoid(_param(beta, xc) * xc)).to(x.dtype)
