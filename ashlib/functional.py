"""The public tensor functions of the activations: they validate the arguments and call the
registered operators of :mod:`ashlib.ops` (``torch.ops.ashlib.*``).

Every function meets the numerical contract of DESIGN.md: float64 results agree with 50-digit
references to about 1e-12 relative, float32 to about 1e-5, outputs and gradients are finite for
every finite input, and half-precision inputs are computed in float32 and cast back.

Where an operator cannot go, the same call runs the plain ATen formulas of
:mod:`ashlib.reference` instead, so that no workflow gets a wrong number:

* under ``torch.jit.trace``, ``torch.export`` and the ONNX exporters (the exported graph then
  holds standard operations and runs without ashlib);
* under ``torch.func`` transforms (vmap, grad, jvp, jacrev, hessian) and forward-mode AD, which
  custom operators do not support (a jvp through one would silently return a zero tangent);
* for parameters with more than one element (a per-element z or alpha).

Gradients of gradients (``create_graph=True``) go through the operators, whose backward is then
the differentiable reference composite. ``impl="reference"`` asks for the composite directly.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Tuple, Union

import torch
from torch import Tensor

from . import reference as R
from .ops import ash_family as _ash_ops
from .ops import elementwise as _ew_ops
from .ops._common import Dim, as_param, check_float_input, is_number as _is_number, reduce_dims

__all__ = [
    "ash", "hard_ash", "topk_ash", "leaky_ash", "adaptive_gumbel", "adaptive_relu", "swish",
    "z_from_k", "k_from_z", "reduce_dims", "map_statistics",
]

Number = Union[int, float]
_STD_NORMAL = NormalDist()


# --- argument checks ---------------------------------------------------------------------


def check_open_unit(name: str, value) -> None:
    """Raise ValueError unless ``value`` (a number) lies in the open interval (0, 1)."""
    if _is_number(value) and not (0.0 < value < 1.0):
        raise ValueError(f"{name}={value!r} is out of range: {name} must lie in the open interval (0, 1)")


def check_positive(name: str, value) -> None:
    """Raise ValueError unless ``value`` is finite and > 0.

    Numbers are checked here. Tensors are checked here only on the reference path in plain eager
    mode on the CPU; the operators check one-element parameters inside their kernels, so that
    no forward reads a tensor's value on the host (no graph break, no device synchronisation).
    """
    if _is_number(value):
        ok = value > 0 and math.isfinite(value)
    elif isinstance(value, Tensor) and value.device.type == "cpu" and _plain_eager() and value.numel() > 0:
        ok = bool(torch.all((value > 0) & torch.isfinite(value)))
    else:
        return
    if not ok:
        shown = value if _is_number(value) else value.detach().flatten()[:8].tolist()
        raise ValueError(f"{name}={shown!r} is out of range: {name} must be finite and > 0")


def check_nonnegative(name: str, value) -> None:
    """Raise ValueError unless ``value`` (a number) is >= 0."""
    if _is_number(value) and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name}={value!r} is out of range: {name} must be finite and >= 0")


def _check_eps(eps) -> None:
    if not (_is_number(eps) and eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps={eps!r} is out of range: eps must be finite and > 0 (it keeps sigma and "
                         "its gradient finite on a constant feature map)")


# --- where the operators can go -------------------------------------------------------------------


def _functorch_active() -> bool:
    return torch._C._functorch.get_dynamic_layer_stack_depth() > 0


def _forward_ad_active() -> bool:
    from torch.autograd import forward_ad
    return forward_ad._current_level >= 0


def _use_reference() -> bool:
    """True where a registered operator would be wrong or unsupported: tracing, export, functorch
    transforms and forward-mode AD (a decision on modes, never on tensor values)."""
    if torch.compiler.is_compiling():
        return torch.compiler.is_exporting()
    return torch.jit.is_tracing() or _functorch_active() or _forward_ad_active()


def _plain_eager() -> bool:
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing() or _functorch_active())


def _one_element(*vals) -> bool:
    return all(v is None or _is_number(v) or (isinstance(v, Tensor) and v.numel() == 1) for v in vals)


_IMPLS = ("fused", "reference")


def _check_impl(impl: str) -> str:
    if impl not in _IMPLS:
        raise ValueError(f"impl={impl!r} is not supported: impl must be one of {_IMPLS}")
    return impl


def _by_operator(impl: str, *params) -> bool:
    return _check_impl(impl) == "fused" and _one_element(*params) and not _use_reference()


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


def map_statistics(x: Tensor, dim: Dim = None, eps: float = 1e-5) -> Tuple[Tensor, Tensor]:
    """Per-sample mean and ``sqrt(population variance + eps)`` over ``dim`` (keepdim), as ASH uses.

    Differentiable (gradients flow back to x); finite for every finite x.
    """
    check_nonnegative("eps", eps)
    check_float_input(x)
    mu, sigma = R.statistics(R.wide(x), reduce_dims(x, dim), float(eps))
    return mu.to(x.dtype), sigma.to(x.dtype)


def _ash_args(x: Tensor, z, alpha, slope, dim: Dim, eps) -> Tuple[int, ...]:
    check_float_input(x)
    # one-element tensors are checked inside the operator's kernel; here numbers, and tensors
    # bound for the reference composite (in plain eager mode on the CPU)
    by_op = _one_element(z, alpha, slope)
    for name, v in (("alpha", alpha), ("slope", slope)):
        if v is not None and (_is_number(v) or not by_op):
            check_positive(name, v)
    if _is_number(z) and not math.isfinite(z):
        raise ValueError(f"z={z!r} is out of range: z must be finite")
    _check_eps(eps)
    return reduce_dims(x, dim)


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
            ``dim=-1`` takes statistics per token of an (N, T, C) input.
        eps: added to the variance, > 0.
        impl: ``"fused"`` (default: the operator ``torch.ops.ashlib.ash``, which saves only x and
            per-row statistics) or ``"reference"`` (the plain ATen composite of :mod:`ashlib.reference`).

    >>> import torch
    >>> ash(torch.tensor([[-1.0, 0.0, 1.0, 2.0]]), z=0.0, alpha=1.0).round(decimals=4)
    tensor([[-0.0474,  0.0000,  0.7311,  1.9051]])
    """
    if impl == "fused":  # the common plain eager call, straight to the C++ route
        y = _ash_ops.eager_ash(x, z, alpha, None, dim, eps)
        if y is not None:
            return y
    dims = _ash_args(x, z, alpha, None, dim, eps)
    if _by_operator(impl, z, alpha):
        return _ash_ops.ash(x, z, alpha, dims, eps)
    return R.ash(x, z, alpha, None, dims, float(eps))


def leaky_ash(x: Tensor, z: Union[Number, Tensor] = 0.0, alpha: Union[Number, Tensor] = 1.0,
              slope: Union[Number, Tensor] = 0.01, dim: Dim = None, eps: float = 1e-5, *,
              impl: str = "fused") -> Tensor:
    r"""Leaky ASH (App. eq. A8, smoothed like A4).

    .. math:: x_i \left(a + (1 - a)\, S(2\alpha(x_i - \mu_X - z\sigma_X))\right)

    so that values above the threshold pass with slope 1 and values below with slope ``a``.
    ``impl`` as in :func:`ash`.
    """
    if impl == "fused":
        y = _ash_ops.eager_ash(x, z, alpha, slope, dim, eps)
        if y is not None:
            return y
    dims = _ash_args(x, z, alpha, slope, dim, eps)
    if _by_operator(impl, z, alpha, slope):
        return _ash_ops.leaky_ash(x, z, alpha, slope, dims, eps)
    return R.ash(x, z, alpha, slope, dims, float(eps))


def hard_ash(x: Tensor, z: Union[Number, Tensor] = 0.0, dim: Dim = None, eps: float = 1e-5) -> Tensor:
    r"""Hard ASH (App. eq. A2): :math:`x_i \, H(x_i - \mu_X - z\sigma_X)`, keeping ``x >= mu + z*sigma``.

    The limit of :func:`ash` as alpha -> inf (off the threshold). Its derivative with respect
    to z is zero almost everywhere, which is why the paper smooths it.
    """
    check_float_input(x)
    check_nonnegative("eps", eps)
    if _is_number(z) and not math.isfinite(z):
        raise ValueError(f"z={z!r} is out of range: z must be finite")
    dims = reduce_dims(x, dim)
    if _by_operator("fused", z):
        return _ash_ops.hard_ash(x, z, dims, float(eps))
    return R.hard_ash(x, z, dims, float(eps))


def topk_ash(x: Tensor, k: float, dim: Dim = None) -> Tensor:
    """Exact ASH by rank: keep the ``round(k*n)`` largest elements of each sample, zero the rest.

    ``n`` is the number of elements over ``dim`` (default: all but the batch dim). Ties are
    broken by position, so exactly ``round(k*n)`` elements are kept.
    """
    check_float_input(x)
    check_open_unit("k", k)
    dims = reduce_dims(x, dim)
    n = 1
    for d in dims:
        n = n * x.shape[d]
    # (under torch.jit.trace sizes are tensors: int() then warns that the trace fixes this count)
    n_keep = int(round(k * int(n)))
    if _by_operator("fused"):
        return _ash_ops.topk_ash(x, n_keep, dims)
    return R.topk_ash(x, n_keep, dims)


# --- Farhadi et al. -------------------------------------------------------------------------


def adaptive_gumbel(x: Tensor, alpha: Union[Number, Tensor], *, impl: str = "fused") -> Tensor:
    r"""Adaptive Gumbel (Farhadi et al., ICPRAM 2020, eq. 1).

    .. math:: \sigma_\alpha(x) = 1 - (1 + \alpha e^{x})^{-1/\alpha}, \quad \alpha > 0

    The sigmoid at alpha = 1, the Gumbel CDF 1 - exp(-exp(x)) as alpha -> 0. Computed as
    ``-expm1(-softplus(x + log alpha) / alpha)``: the printed form returns 0 where the answer is
    about exp(x) and overflows for large x. ``alpha`` broadcasts against x (one per channel:
    shape ``(1, C, 1, 1)``). ``impl``: ``"fused"`` (default: ``torch.ops.ashlib.adaptive_gumbel``,
    float32 kernels with float64 for the elements that need it) or ``"reference"``.

    >>> import torch
    >>> adaptive_gumbel(torch.tensor([-30.0, 0.0, 30.0]), 0.5)
    tensor([9.3576e-14, 5.5556e-01, 1.0000e+00])
    """
    return _elementwise("adaptive_gumbel", x, alpha, "alpha", impl)


def swish(x: Tensor, beta: Union[Number, Tensor] = 1.0, *, impl: str = "fused") -> Tensor:
    r"""Swish (Ramachandran et al.): :math:`x\,S(\beta x)`; SiLU at beta = 1. ``impl`` as in :func:`adaptive_gumbel`."""
    return _elementwise("swish", x, beta, "beta", impl)


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
    if cdf == "logistic":
        check_positive("alpha", alpha)
        return _elementwise("swish", x, alpha, "alpha", impl)
    return _elementwise("adaptive_relu", x, alpha, "alpha", impl)


def _broadcasts(p: Tensor, x: Tensor) -> bool:
    return p.dim() <= x.dim() and all(s == 1 or s == n for s, n in zip(reversed(p.shape), reversed(x.shape)))


def _elementwise(name: str, x: Tensor, param, pname: str, impl: str) -> Tensor:
    check_float_input(x)
    by_op = _by_operator(impl)
    if pname == "alpha" and (_is_number(param) or not by_op):  # the operator checks tensors in its kernel
        check_positive("alpha", param)
    elif _is_number(param) and not math.isfinite(param):
        raise ValueError(f"{pname}={param!r} is out of range: {pname} must be finite")
    if isinstance(param, Tensor) and not _broadcasts(param, x):
        raise ValueError(f"{pname} of shape {tuple(param.shape)} does not broadcast to the input's shape "
                         f"{tuple(x.shape)}")
    if by_op:
        return _ew_ops.call(name, x, as_param(param, x))
    return _ew_ops.OPS[name][2](x, param)
