"""Pure tensor functions of the activations: the math, with no parameters and no state.

Every function here is the numerically careful form of a formula in
:mod:`ashlib.symbolic` (see the numerical contract in DESIGN.md): float64 results agree with
50-digit references to about 1e-12 relative, float32 to about 1e-5, outputs and gradients are
finite for every finite input, and half-precision inputs are computed in float32 and cast back.

Where the textbook formula loses digits, the implementation says why next to the code.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    "ash", "hard_ash", "topk_ash", "leaky_ash", "adaptive_gumbel", "adaptive_relu", "swish",
    "z_from_k", "k_from_z", "reduce_dims", "map_statistics",
]

Number = Union[int, float]
Dim = Optional[Union[int, Sequence[int]]]
_STD_NORMAL = NormalDist()


# --- argument checks ---------------------------------------------------------------------


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_open_unit(name: str, value) -> None:
    """Raise ValueError unless ``value`` (a number) lies in the open interval (0, 1)."""
    if _is_number(value) and not (0.0 < value < 1.0):
        raise ValueError(f"{name}={value!r} is out of range: {name} must lie in the open interval (0, 1)")


def check_positive(name: str, value) -> None:
    """Raise ValueError unless ``value`` (a number, or a tensor outside compilation) is > 0."""
    if _is_number(value):
        ok = value > 0 and math.isfinite(value)
    elif isinstance(value, Tensor) and not _compiling() and value.device.type == "cpu":
        if value.numel() == 1:  # the common case (a module's alpha): one float, no tensor ops
            v = value.item()
            ok = v > 0 and math.isfinite(v)
        else:
            ok = bool(torch.all(value > 0)) and bool(torch.all(torch.isfinite(value)))
    else:  # a CUDA tensor: checking would synchronise the device on every call
        return
    if not ok:
        shown = value if _is_number(value) else value.detach().flatten()[:8].tolist()
        raise ValueError(f"{name}={shown!r} is out of range: {name} must be finite and > 0")


def check_nonnegative(name: str, value) -> None:
    """Raise ValueError unless ``value`` (a number) is >= 0."""
    if _is_number(value) and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name}={value!r} is out of range: {name} must be finite and >= 0")


def _compiling() -> bool:
    try:
        return torch.compiler.is_compiling()
    except AttributeError:  # older torch
        return False


# --- dtype helpers -----------------------------------------------------------------------


def _compute_dtype(x: Tensor, wide: bool = False) -> torch.dtype:
    """The dtype a formula is evaluated in for input ``x``.

    Half-precision inputs are computed in float32: their own precision cannot represent the
    intermediates (eps, exp of moderate numbers). With ``wide=True`` every input narrower than
    float64 is computed in float64: the element-wise formulas of Farhadi et al. and Swish have
    derivatives such as x**2 * exp(-alpha*x) whose factors underflow float32 (exp(-100) is
    subnormal) while the product is a normal number, and adaptive Gumbel multiplies the
    rounding error of its exponent L by L (up to ~70).
    """
    if not x.is_floating_point():
        raise ValueError(f"x has dtype {x.dtype}; a floating-point tensor is required")
    if x.dtype == torch.float64:
        return x.dtype
    if wide:
        return torch.float64
    if x.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return x.dtype


def _as_tensor(v, like: Tensor) -> Tensor:
    if isinstance(v, Tensor):
        return v.to(dtype=like.dtype, device=like.device)
    return torch.as_tensor(v, dtype=like.dtype, device=like.device)


# --- elementary functions with accurate derivatives ---------------------------------------


class _Sigmoid(torch.autograd.Function):
    """sigmoid(u) whose derivative is S(u)*S(-u), not S*(1 - S).

    ``1 - S(u)`` cancels catastrophically for u > ~20 (it becomes 0 or a rounding error), which
    ruins d/d alpha of Swish and ASH where the true derivative is tiny but far above 1e-30.
    """

    @staticmethod
    def forward(ctx, u: Tensor) -> Tensor:
        ctx.save_for_backward(u)
        return torch.sigmoid(u)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (u,) = ctx.saved_tensors
        return grad * (torch.sigmoid(u) * torch.sigmoid(-u))


class _OneMinusExpNeg(torch.autograd.Function):
    """1 - exp(-u), computed as -expm1(-u), with derivative exp(-u) computed directly.

    Autograd of expm1 forms exp(-u) as expm1(-u) + 1, which has an absolute error of 1e-16
    and so no relative accuracy once exp(-u) is small.
    """

    @staticmethod
    def forward(ctx, u: Tensor) -> Tensor:
        ctx.save_for_backward(u)
        return -torch.expm1(-u)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (u,) = ctx.saved_tensors
        return grad * torch.exp(-u)


def _softplus(v: Tensor) -> Tensor:
    # log(1 + exp(v)) to full relative accuracy for every v. torch's F.softplus switches to the
    # identity above a threshold (an error of exp(-20) relative), so it is not used here.
    return -torch.nn.functional.logsigmoid(-v)


#: Coefficients c_j of g(q) = (q/(1+q) - log1p(q)) / q**2 = sum_j c_j q**j, c_j = (-1)**(j+1) (j+1)/(j+2).
_G_SERIES = [(-1.0) ** (j + 1) * (j + 1) / (j + 2) for j in range(24)]
#: Below this value of v = x + log(alpha) (q = e**v < e**-2.5 = 0.082) the series is used.
_G_SERIES_BELOW = -2.5


class _AdaptiveGumbel(torch.autograd.Function):
    """sigma_alpha(x) = 1 - exp(-L), L = log(1 + alpha*exp(x)) / alpha, with analytic derivatives.

    The forward uses ``L = softplus(x + log alpha) / alpha`` and ``-expm1(-L)``, which keep full
    relative accuracy where the printed form returns 0 (output ~ e**x) or overflows.
    The derivative dL/dalpha = (q/(1+q) - log1p(q)) / alpha**2 (q = alpha*e**x) is a difference
    of two nearly equal terms when q is small (both ~ q, the difference ~ -q**2/2), so it is
    taken from its Taylor series there. exp(-L) * dL/dalpha is formed only where exp(-L) > 0:
    dL/dalpha may overflow exactly where exp(-L) underflows, and their product is then 0.
    """

    @staticmethod
    def forward(ctx, x: Tensor, a: Tensor) -> Tensor:
        log_a = torch.log(a)
        v = x + log_a
        L = _softplus(v) / a
        ctx.save_for_backward(x, a, v, L)
        return -torch.expm1(-L)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, a, v, L = ctx.saved_tensors
        e = torch.exp(-L)
        gx = ga = None
        if ctx.needs_input_grad[0]:
            gx = grad * (e * (torch.sigmoid(v) / a))
        if ctx.needs_input_grad[1]:
            direct = -((_softplus(v) - torch.sigmoid(v)) / a) / a
            v_s = torch.clamp(v, max=_G_SERIES_BELOW)
            q = torch.exp(v_s)
            g = torch.full_like(q, _G_SERIES[-1])
            for c in reversed(_G_SERIES[:-1]):
                g = g * q + c
            ex = torch.exp(v_s - torch.log(a))  # e**x where the series applies
            series = (ex * ex) * g
            dL_da = torch.where(v < _G_SERIES_BELOW, series, direct)
            ga = grad * torch.where(e > 0, e * dL_da, torch.zeros_like(e))
        return gx, ga


# --- the Gaussian percentile map -----------------------------------------------------------


def z_from_k(k: Union[Number, Tensor]) -> Union[float, Tensor]:
    """Gaussian quantile z_k = Phi^-1(1 - k): the threshold in standard deviations above the
    mean that keeps the top fraction ``k`` of a normal sample (ASH README section 2).

    Computed as -Phi^-1(k), which keeps full relative accuracy for small k.

    >>> round(z_from_k(0.025), 6)
    1.959964
    """
    if isinstance(k, Tensor):
        return -torch.special.ndtri(k)
    check_open_unit("k", k)
    return -_STD_NORMAL.inv_cdf(k)


def k_from_z(z: Union[Number, Tensor]) -> Union[float, Tensor]:
    """Fraction of a normal sample above mean + z*std: k = 1 - Phi(z), computed as Phi(-z)."""
    if isinstance(z, Tensor):
        return torch.special.ndtr(-z)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# --- ASH -----------------------------------------------------------------------------------


def reduce_dims(x: Tensor, dim: Dim = None) -> Tuple[int, ...]:
    """The dims ASH takes its statistics over: ``dim`` normalised to a sorted tuple.

    ``None`` means every dim but the batch (dim 0) when ``x.dim() >= 2``, and dim 0 for 1-D x.
    """
    if x.dim() == 0:
        raise ValueError("x is a 0-d tensor; ASH needs at least one dimension to take statistics over")
    if dim is None:
        return tuple(range(1, x.dim())) if x.dim() >= 2 else (0,)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims:
        raise ValueError("dim=() is empty: give at least one dimension")
    out = []
    for d in dims:
        if not -x.dim() <= d < x.dim():
            raise ValueError(f"dim={dim!r} is out of range for a {x.dim()}-d input: each dim must lie in "
                             f"[{-x.dim()}, {x.dim() - 1}]")
        out.append(d % x.dim())
    return tuple(sorted(set(out)))


def _scaled_statistics(xc: Tensor, dims: Tuple[int, ...]):
    """Per-sample power-of-two scale and the mean and variance of x / scale.

    Dividing by a power of two near max|x| is exact and keeps every intermediate in [-2, 2),
    so the statistics neither overflow (|x| near the float max) nor underflow.
    """
    amax = torch.amax(xc.detach().abs(), dim=dims, keepdim=True)
    _, exponent = torch.frexp(amax)
    scale = torch.ldexp(torch.ones_like(amax), exponent - 1)
    y = xc / scale
    my = torch.mean(y, dim=dims, keepdim=True)
    vy = torch.mean((y - my) ** 2, dim=dims, keepdim=True)
    return scale, y, my, vy


def _sigma_over_scale(scale: Tensor, vy: Tensor, eps: float) -> Tuple[Tensor, Tensor]:
    """sigma = sqrt(scale^2 vy + eps) and sigma / scale, both without overflow or underflow."""
    root_eps = math.sqrt(eps)
    if eps == 0:
        sy = torch.sqrt(vy)
        return scale * sy, sy
    # scale >= sqrt(eps): sigma/scale = hypot(sqrt(vy), sqrt(eps)/scale); eps/scale^2 itself
    # would underflow to 0 for scale > ~1e151 (a constant map near the float max)
    sy_a = torch.hypot(torch.sqrt(vy), root_eps / torch.clamp(scale, min=root_eps))
    # scale < sqrt(eps), a map far below sqrt(eps): sigma ~ sqrt(eps); eps/scale^2 would overflow
    r_b = torch.clamp(scale, max=root_eps) / root_eps
    sigma_b = root_eps * torch.sqrt(r_b * r_b * vy + 1)
    case_a = scale >= root_eps
    sigma = torch.where(case_a, scale * sy_a, sigma_b)
    return sigma, torch.where(case_a, sy_a, sigma_b / scale)


class _MapStatistics(torch.autograd.Function):
    """Per-sample (mu, sigma = sqrt(population variance + eps)) over ``dims``, with keepdim.

    Computed in units of a power-of-two scale (no overflow for |x| up to the float max), with
    the analytic derivative d mu/dx_j = 1/n, d sigma/dx_j = (x_j - mu)/(n sigma) formed from
    scale-free ratios: differentiating through the scaled formulas would multiply and divide
    by the scale (up to 2**1023) and overflow to inf * 0 on huge maps.
    """

    @staticmethod
    def forward(ctx, xc: Tensor, dims: Tuple[int, ...], eps: float):
        scale, y, my, vy = _scaled_statistics(xc, dims)
        sigma, sy = _sigma_over_scale(scale, vy, eps)
        ctx.dims = dims
        ctx.n = math.prod(xc.shape[d] for d in dims)
        ctx.save_for_backward(y, my, sy)
        return scale * my, sigma

    @staticmethod
    def backward(ctx, grad_mu: Tensor, grad_sigma: Tensor):
        y, my, sy = ctx.saved_tensors
        # (x_j - mu) / sigma = (y_j - my) / sy, |.| <= sqrt(n); sy > 0 whenever y_j != my
        ratio = torch.where(y == my, torch.zeros_like(y), (y - my) / torch.where(sy > 0, sy, torch.ones_like(sy)))
        return (grad_mu + grad_sigma * ratio) / ctx.n, None, None


def map_statistics(x: Tensor, dim: Dim = None, eps: float = 1e-5) -> Tuple[Tensor, Tensor]:
    """Per-sample mean and ``sqrt(population variance + eps)`` over ``dim`` (keepdim), as ASH uses.

    Differentiable (gradients flow back to x); finite for every finite x.
    """
    check_nonnegative("eps", eps)
    dims = reduce_dims(x, dim)
    xc = x.to(_compute_dtype(x, wide=True))
    mu, sigma = _MapStatistics.apply(xc, dims, float(eps))
    return mu.to(x.dtype), sigma.to(x.dtype)


def _ash_argument(xc: Tensor, z, alpha, dims: Tuple[int, ...], eps: float) -> Tensor:
    """u = 2*alpha*(x - mu - z*sigma), computed without overflow for any finite x."""
    mu, sigma = _MapStatistics.apply(xc, dims, float(eps))
    z = _as_tensor(z, xc)
    two_alpha = 2 * _as_tensor(alpha, xc)
    # x - t itself can exceed the float range (x = max, t = -max): it is clamped so that an
    # infinite u (where the sigmoid is flat) cannot meet a zero gradient as inf * 0 in backward
    big = torch.finfo(xc.dtype).max
    return two_alpha * torch.clamp(xc - mu - z * sigma, -big, big)


def _ash_family(x: Tensor, z, alpha, dim: Dim, eps: float, slope=None, hard: bool = False) -> Tensor:
    check_positive("alpha", alpha)
    if hard:
        check_nonnegative("eps", eps)
    elif not (_is_number(eps) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps={eps!r} is out of range: eps must be finite and > 0 (it keeps sigma and "
                         "its gradient finite on a constant feature map)")
    dims = reduce_dims(x, dim)
    # float64 throughout: in float32 the rounding of x - t (relative to |t|) is multiplied by
    # |u| in the tail, which breaks the 1e-5 contract there
    xc = x.to(_compute_dtype(x, wide=True))
    u = _ash_argument(xc, z, alpha, dims, eps)
    if hard:
        out = xc * (u >= 0).to(xc.dtype)
    else:
        gate = _Sigmoid.apply(u)
        if slope is not None:
            # a + (1 - a) S(u) written as S(u) + a S(-u): d/da = S(-u) without the cancellation of 1 - S(u)
            gate = gate + _as_tensor(slope, xc) * _Sigmoid.apply(-u)
        out = xc * gate
    return out.to(x.dtype)


_IMPLS = ("fused", "reference")


def _check_impl(impl: str) -> str:
    if impl not in _IMPLS:
        raise ValueError(f"impl={impl!r} is not supported: impl must be one of {_IMPLS}")
    return impl


def ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0,
        dim: Dim = None, eps: float = 1e-5, *, impl: str = "fused") -> Tensor:
    r"""Adaptive SwisH (Lee et al., NeurIPS 2022, App. eq. A4).

    .. math:: \mathrm{ASH}(x_i) = \frac{x_i}{1 + e^{-2\alpha (x_i - \mu_X - z \sigma_X)}}

    with :math:`\mu_X` and :math:`\sigma_X = \sqrt{\mathrm{Var}(X) + \epsilon}` the mean and
    standard deviation of one sample's feature map over ``dim``. Gradients flow through
    :math:`\mu_X` and :math:`\sigma_X`. ``z = z_from_k(k)`` keeps about the top fraction k.

    Args:
        x: input, any shape with at least one dim; float64/32/16 or bfloat16.
        z: threshold in standard deviations (number or tensor broadcastable to x).
        alpha: sharpness > 0; alpha -> inf gives :func:`hard_ash`.
        dim: dims of the statistics; default every dim but the batch (dim 0), or dim 0 for 1-D x.
        eps: added to the variance, > 0.
        impl: ``"fused"`` (default; :mod:`ashlib.fused`, saves only x and per-sample statistics)
            or ``"reference"`` (the straightforward autograd form below).
    """
    if _check_impl(impl) == "fused":
        from ashlib import fused
        return fused.ash(x, z, alpha, dim, eps)
    return _ash_family(x, z, alpha, dim, eps)


def hard_ash(x: Tensor, z: Union[Number, Tensor] = 0.0, dim: Dim = None, eps: float = 1e-5) -> Tensor:
    r"""Hard ASH (App. eq. A2): :math:`x_i \, H(x_i - \mu_X - z\sigma_X)`, keeping ``x >= mu + z*sigma``.

    The limit of :func:`ash` as alpha -> inf (off the threshold). Its derivative with respect
    to z is zero almost everywhere, which is why the paper smooths it.
    """
    return _ash_family(x, z, 1.0, dim, eps, hard=True)


def leaky_ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0,
              slope: Union[Number, Tensor] = 0.01, dim: Dim = None, eps: float = 1e-5, *,
              impl: str = "fused") -> Tensor:
    r"""Leaky ASH (App. eq. A8, smoothed like A4).

    .. math:: x_i \left(a + (1 - a)\, S(2\alpha(x_i - \mu_X - z\sigma_X))\right)

    so that values above the threshold pass with slope 1 and values below with slope ``a``.
    ``impl`` as in :func:`ash`.
    """
    if _is_number(slope) and not (slope > 0 and math.isfinite(slope)):
        raise ValueError(f"slope={slope!r} is out of range: slope must be finite and > 0")
    if _check_impl(impl) == "fused":
        from ashlib import fused
        return fused.leaky_ash(x, z, alpha, slope, dim, eps)
    return _ash_family(x, z, alpha, dim, eps, slope=slope)


def topk_ash(x: Tensor, k: float, dim: Dim = None) -> Tensor:
    """Exact ASH by rank: keep the ``round(k*n)`` largest elements of each sample, zero the rest.

    ``n`` is the number of elements over ``dim`` (default: all but the batch dim). Ties are
    broken by position, so exactly ``round(k*n)`` elements are kept.
    """
    check_open_unit("k", k)
    dims = reduce_dims(x, dim)
    rest = [d for d in range(x.dim()) if d not in dims]
    perm = rest + list(dims)
    xp = x.permute(perm)
    batch_shape = xp.shape[: len(rest)]
    flat = xp.reshape(*batch_shape, -1) if rest else xp.reshape(1, -1)
    n = flat.shape[-1]
    n_keep = int(round(k * n))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if n_keep > 0:
        idx = torch.topk(flat.detach(), n_keep, dim=-1).indices
        mask.scatter_(-1, idx, True)
    out = (flat * mask).reshape(xp.shape)
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return out.permute(inv)


# --- Farhadi et al. -------------------------------------------------------------------------


def adaptive_gumbel(x: Tensor, alpha: Union[Number, Tensor], *, impl: str = "fused") -> Tensor:
    r"""Adaptive Gumbel (Farhadi et al., ICPRAM 2020, eq. 1).

    .. math:: \sigma_\alpha(x) = 1 - (1 + \alpha e^{x})^{-1/\alpha}, \quad \alpha > 0

    The sigmoid at alpha = 1, the Gumbel CDF 1 - exp(-exp(x)) as alpha -> 0. Computed as
    ``-expm1(-softplus(x + log alpha) / alpha)``: the printed form returns 0 where the answer is
    about exp(x) and overflows for large x. ``alpha`` broadcasts against x.
    ``impl``: ``"fused"`` (default; :mod:`ashlib.fused_elementwise`, float32-native) or ``"reference"``.
    """
    check_positive("alpha", alpha)
    if _check_impl(impl) == "fused":
        from ashlib import fused_elementwise
        return fused_elementwise.adaptive_gumbel(x, alpha)
    xc = x.to(_compute_dtype(x, wide=True))
    a = _as_tensor(alpha, xc)
    a = a.expand_as(xc) if a.shape != xc.shape else a
    return _AdaptiveGumbel.apply(xc, a).to(x.dtype)


def swish(x: Tensor, beta: Union[Number, Tensor] = 1.0, *, impl: str = "fused") -> Tensor:
    r"""Swish (Ramachandran et al.): :math:`x\,S(\beta x)`; SiLU at beta = 1. ``impl`` as in :func:`adaptive_gumbel`."""
    if _check_impl(impl) == "fused":
        from ashlib import fused_elementwise
        return fused_elementwise.swish(x, beta)
    xc = x.to(_compute_dtype(x, wide=True))
    return (xc * _Sigmoid.apply(_as_tensor(beta, xc) * xc)).to(x.dtype)


_CDFS = ("exponential", "logistic")


def adaptive_relu(x: Tensor, alpha: Union[Number, Tensor], cdf: str = "exponential", *,
                  impl: str = "fused") -> Tensor:
    r"""Adaptive ReLU (Farhadi et al., eqs. 2 and 3): :math:`x F_\alpha(x)` with a CDF :math:`F_\alpha`.

    ``cdf="exponential"``: :math:`x (1 - e^{-\alpha x}) 1[x > 0]`, ReLU as alpha -> inf.
    ``cdf="logistic"``: :math:`x\,S(\alpha x)`, Swish with beta = alpha (SiLU at alpha = 1).
    ``impl`` as in :func:`adaptive_gumbel`.
    """
    if cdf not in _CDFS:
        raise ValueError(f"cdf={cdf!r} is not supported: cdf must be one of {_CDFS}")
    check_positive("alpha", alpha)
    if _check_impl(impl) == "fused":
        from ashlib import fused_elementwise
        return fused_elementwise.adaptive_relu(x, alpha, cdf)
    if cdf == "logistic":
        return swish(x, alpha, impl="reference")
    xc = x.to(_compute_dtype(x, wide=True))
    xp = torch.clamp(xc, min=0)  # clamping first keeps exp(-alpha*x) from overflowing for x < 0
    return (xp * _OneMinusExpNeg.apply(_as_tensor(alpha, xc) * xp)).to(x.dtype)
