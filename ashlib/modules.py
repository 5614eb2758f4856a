"""nn.Module wrappers that own the trainable parameters and delegate to :mod:`ashlib.functional`.

Constructor arguments are the papers' quantities at initialisation (``alpha=1.0`` means
alpha is 1.0, even though it is stored as ``log_alpha``); read-only properties give them
back. Positive parameters are stored through log/exp, as Farhadi et al. (section 3)
recommend, so that gradient steps can never make them non-positive.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import functional as AF

__all__ = ["ASH", "LeakyASH", "FixedASH", "HardASH", "TopKASH", "AdaptiveGumbel", "AdaptiveReLU", "Swish"]


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} is out of range: {name} must be finite and > 0")
    return float(value)


def _log_param(module: nn.Module, name: str, value: float, shape=(), trainable: bool = True) -> None:
    data = torch.full(shape, math.log(value))
    if trainable:
        module.register_parameter(name, nn.Parameter(data))
    else:
        module.register_buffer(name, data)


class ASH(nn.Module):
    r"""Adaptive SwisH with a trainable threshold (Lee et al., NeurIPS 2022, App. eq. A4).

    .. math:: \mathrm{ASH}(x_i) = x_i\, S\!\left(2\alpha\,(x_i - \mu_X - z_k \sigma_X)\right)

    :math:`\mu_X, \sigma_X` are the mean and standard deviation of each sample's feature map
    (all dims but the batch). ``z`` starts at :math:`z_k = \Phi^{-1}(1 - k)` so that about the
    top fraction ``k`` of a normal map passes, and is trained; so is ``alpha`` unless
    ``learn_alpha=False``.

    Args:
        k: initial kept fraction, in (0, 1).
        alpha: initial sharpness, > 0 (stored as ``log_alpha``).
        learn_alpha: train alpha too.
        dim: dims of the statistics (see :func:`ashlib.functional.ash`).
        eps: added to the variance, > 0.

    Shape: input ``(N, *)``, output the same shape.

    Example::

        >>> act = ASH(k=0.1)
        >>> act(torch.randn(4, 8, 16, 16)).shape
        torch.Size([4, 8, 16, 16])
    """

    def __init__(self, k: float = 0.5, alpha: float = 1.0, learn_alpha: bool = True,
                 dim: AF.Dim = None, eps: float = 1e-5, *, learn_z: bool = True) -> None:
        super().__init__()
        AF.check_open_unit("k", k)
        if not isinstance(k, (int, float)):
            raise ValueError(f"k={k!r} is out of range: k must be a number in the open interval (0, 1)")
        _positive("alpha", alpha)
        _positive("eps", eps)
        self.dim = dim
        self.eps = float(eps)
        z0 = torch.tensor(AF.z_from_k(float(k)))
        if learn_z:
            self.z_param = nn.Parameter(z0)
        else:
            self.register_buffer("z_param", z0)
        _log_param(self, "log_alpha", alpha, trainable=learn_alpha)

    @property
    def z(self) -> float:
        """Current threshold in standard deviations."""
        return float(self.z_param.detach())

    @property
    def k(self) -> float:
        """Kept fraction implied by the current z for a normal map: 1 - Phi(z)."""
        return AF.k_from_z(self.z)

    @property
    def alpha(self) -> float:
        """Current sharpness alpha."""
        return float(self.log_alpha.detach().exp())

    def forward(self, x: Tensor) -> Tensor:
        return AF.ash(x, self.z_param, self.log_alpha.exp(), dim=self.dim, eps=self.eps)

    def extra_repr(self) -> str:
        s = f"k={self.k:.4g}, z={self.z:.4g}, alpha={self.alpha:.4g}"
        if self.dim is not None:
            s += f", dim={self.dim}"
        return s


class FixedASH(ASH):
    r"""F-ASH-k (App. H): ASH with z frozen at :math:`z_k = \Phi^{-1}(1 - k)`.

    Same formula and arguments as :class:`ASH`; only alpha can train (if ``learn_alpha``).

    Example::

        >>> FixedASH(0.1)(torch.randn(2, 100)).shape
        torch.Size([2, 100])
    """

    def __init__(self, k: float, alpha: float = 1.0, learn_alpha: bool = True,
                 dim: AF.Dim = None, eps: float = 1e-5) -> None:
        super().__init__(k, alpha, learn_alpha, dim, eps, learn_z=False)


class LeakyASH(ASH):
    r"""Leaky ASH, L-ASH (App. eq. A8, smoothed like A4).

    .. math:: x_i \left(a + (1 - a)\, S(2\alpha(x_i - \mu_X - z_k\sigma_X))\right)

    Elements above the threshold pass with slope 1, the others with the trainable slope
    ``a > 0`` (stored as ``log_slope``).

    Example::

        >>> round(LeakyASH(k=0.2, slope=0.05).slope, 6)
        0.05
    """

    def __init__(self, k: float = 0.5, alpha: float = 1.0, slope: float = 0.01, learn_alpha: bool = True,
                 learn_slope: bool = True, dim: AF.Dim = None, eps: float = 1e-5) -> None:
        super().__init__(k, alpha, learn_alpha, dim, eps)
        _positive("slope", slope)
        _log_param(self, "log_slope", slope, trainable=learn_slope)

    @property
    def slope(self) -> float:
        """Current slope below the threshold."""
        return float(self.log_slope.detach().exp())

    def forward(self, x: Tensor) -> Tensor:
        return AF.leaky_ash(x, self.z_param, self.log_alpha.exp(), self.log_slope.exp(),
                            dim=self.dim, eps=self.eps)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", slope={self.slope:.4g}"


class HardASH(nn.Module):
    r"""Hard ASH (App. eq. A2): :math:`x_i H(x_i - \mu_X - z_k\sigma_X)` with fixed k; no parameters.

    Example::

        >>> HardASH(0.5)(torch.randn(2, 10)).shape
        torch.Size([2, 10])
    """

    def __init__(self, k: float = 0.5, dim: AF.Dim = None, eps: float = 1e-5) -> None:
        super().__init__()
        AF.check_open_unit("k", k)
        self.k = float(k)
        self.z = AF.z_from_k(self.k)
        self.dim = dim
        self.eps = float(eps)

    def forward(self, x: Tensor) -> Tensor:
        return AF.hard_ash(x, self.z, dim=self.dim, eps=self.eps)

    def extra_repr(self) -> str:
        return f"k={self.k:.4g}, z={self.z:.4g}"


class TopKASH(nn.Module):
    r"""Exact ASH by rank: keeps the ``round(k*n)`` largest of each sample's ``n`` elements.

    What ASH approximates with the Gaussian threshold; no parameters, zero gradient for the
    dropped elements.

    Example::

        >>> (TopKASH(0.25)(torch.randn(3, 8)) != 0).sum(dim=1)
        tensor([2, 2, 2])
    """

    def __init__(self, k: float, dim: AF.Dim = None) -> None:
        super().__init__()
        AF.check_open_unit("k", k)
        self.k = float(k)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return AF.topk_ash(x, self.k, dim=self.dim)

    def extra_repr(self) -> str:
        return f"k={self.k:.4g}"


class _PerChannel(nn.Module):
    """Shared logic of the Farhadi activations: one positive alpha per channel (dim 1)."""

    def __init__(self, num_parameters: int, alpha: float) -> None:
        super().__init__()
        if not (isinstance(num_parameters, int) and num_parameters >= 1):
            raise ValueError(f"num_parameters={num_parameters!r} is out of range: it must be an integer >= 1")
        _positive("alpha", alpha)
        self.num_parameters = num_parameters
        _log_param(self, "log_alpha", alpha, shape=(num_parameters,))

    @property
    def alpha(self):
        """Current alpha: a float when there is one, else a tensor with one value per channel."""
        a = self.log_alpha.detach().exp()
        return float(a) if self.num_parameters == 1 else a.clone()

    def _alpha_for(self, x: Tensor) -> Tensor:
        a = self.log_alpha.exp()
        if self.num_parameters == 1:
            return a.reshape(())
        if x.dim() < 2 or x.shape[1] != self.num_parameters:
            got = x.shape[1] if x.dim() >= 2 else "none (input has fewer than 2 dims)"
            raise ValueError(f"num_parameters={self.num_parameters} does not match the input's channel "
                             f"dimension (dim 1) of size {got}; it must equal the number of channels "
                             f"(or be 1), input shape {tuple(x.shape)}")
        return a.reshape((1, -1) + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        if self.num_parameters == 1:
            return f"num_parameters=1, alpha={self.alpha:.4g}"
        a = self.alpha
        return f"num_parameters={self.num_parameters}, alpha in [{a.min():.4g}, {a.max():.4g}]"


class AdaptiveGumbel(_PerChannel):
    r"""Adaptive Gumbel (Farhadi et al., ICPRAM 2020, eq. 1), one alpha per channel.

    .. math:: \sigma_\alpha(x) = 1 - (1 + \alpha e^{x})^{-1/\alpha}, \quad \alpha > 0

    The sigmoid at alpha = 1; the Gumbel CDF as alpha -> 0. Like ``nn.PReLU``,
    ``num_parameters`` is 1 or the size of dim 1 of the input. alpha is stored as
    ``log_alpha`` (the paper's recommendation, eq. 6).

    Shape: input ``(N, C, *)`` (or any shape when num_parameters = 1), output the same.

    Example::

        >>> act = AdaptiveGumbel(num_parameters=16, alpha=0.5)
        >>> act(torch.randn(4, 16, 8, 8)).shape
        torch.Size([4, 16, 8, 8])
    """

    def __init__(self, num_parameters: int = 1, alpha: float = 1.0) -> None:
        super().__init__(num_parameters, alpha)

    def forward(self, x: Tensor) -> Tensor:
        return AF.adaptive_gumbel(x, self._alpha_for(x))


class AdaptiveReLU(_PerChannel):
    r"""Adaptive ReLU (Farhadi et al., eqs. 2 and 3), one alpha per channel.

    .. math:: \sigma_\alpha(x) = x\,F_\alpha(x)

    with ``cdf="exponential"``, :math:`F_\alpha(x) = (1 - e^{-\alpha x}) 1[x>0]` (ReLU as
    alpha -> inf), or ``cdf="logistic"``, :math:`F_\alpha(x) = S(\alpha x)` (Swish, beta = alpha).

    Example::

        >>> AdaptiveReLU(alpha=2.0)(torch.tensor([-1.0, 0.0, 1.0])).detach()
        tensor([0.0000, 0.0000, 0.8647])
    """

    def __init__(self, num_parameters: int = 1, alpha: float = 1.0, cdf: str = "exponential") -> None:
        if cdf not in AF._CDFS:
            raise ValueError(f"cdf={cdf!r} is not supported: cdf must be one of {AF._CDFS}")
        super().__init__(num_parameters, alpha)
        self.cdf = cdf

    def forward(self, x: Tensor) -> Tensor:
        return AF.adaptive_relu(x, self._alpha_for(x), cdf=self.cdf)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", cdf={self.cdf!r}"


class Swish(nn.Module):
    r"""Swish :math:`x\,S(\beta x)` (Ramachandran et al.); SiLU at beta = 1.

    ``beta`` may be trained (``learn_beta=True``); it is stored as is (Swish allows any real beta).

    Example::

        >>> Swish()(torch.zeros(2))
        tensor([0., 0.])
    """

    def __init__(self, beta: float = 1.0, learn_beta: bool = False) -> None:
        super().__init__()
        if not (isinstance(beta, (int, float)) and math.isfinite(beta)):
            raise ValueError(f"beta={beta!r} is out of range: beta must be a finite number")
        b = torch.tensor(float(beta))
        if learn_beta:
            self.beta_param = nn.Parameter(b)
        else:
            self.register_buffer("beta_param", b)

    @property
    def beta(self) -> float:
        return float(self.beta_param.detach())

    def forward(self, x: Tensor) -> Tensor:
        return AF.swish(x, self.beta_param)

    def extra_repr(self) -> str:
        return f"beta={self.beta:.4g}"
