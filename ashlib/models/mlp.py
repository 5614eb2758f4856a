"""Fully connected network with a chosen activation per hidden layer."""

from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor, nn

from ._act import ActSpec, expand_specs, make_activation

__all__ = ["MLP"]


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` neurons, each followed by its own activation module.

    Args:
        in_features: input size.
        out_features: output size (1 for a binary classifier giving a logit).
        width: neurons per hidden layer (an int, or one int per layer).
        depth: number of hidden layers (ignored when ``width`` is a sequence).
        act: activation name or factory for every hidden layer, or one per layer. Per-channel
            activations (``agumbel``, ``arelu``, ``prelu``) get one parameter per neuron, as in
            Farhadi et al., unless ``per_neuron=False``.
        per_neuron: one adaptive parameter per neuron (True) or one per layer (False).
        init: ``"lecun"`` (weights N(0, 1/fan_in), biases 0; LeCun et al. 1998, "Efficient
            BackProp", as Farhadi et al. use for fitted models) or ``"torch"`` (PyTorch's default).

    Shape: ``(N, in_features)`` -> ``(N, out_features)``.

    Example::

        >>> import torch
        >>> MLP(10, 1, width=10, depth=8, act="agumbel")(torch.randn(5, 10)).shape
        torch.Size([5, 1])
    """

    def __init__(self, in_features: int, out_features: int, width: int | Sequence[int] = 10, depth: int = 1,
                 act: ActSpec | Sequence[ActSpec] = "relu", per_neuron: bool = True, init: str = "lecun") -> None:
        super().__init__()
        widths = [int(width)] * depth if isinstance(width, int) else [int(w) for w in width]
        if any(w < 1 for w in widths) or in_features < 1 or out_features < 1:
            raise ValueError(f"widths={widths}, in_features={in_features}, out_features={out_features}: must be >= 1")
        if init not in ("lecun", "torch"):
            raise ValueError(f"init={init!r}; allowed: 'lecun', 'torch'")
        specs = expand_specs(act, len(widths))
        layers: list[nn.Module] = []
        fan_in = in_features
        for w, spec in zip(widths, specs):
            layers += [nn.Linear(fan_in, w), make_activation(spec, w if per_neuron else None)]
            fan_in = w
        layers.append(nn.Linear(fan_in, out_features))
        self.net = nn.Sequential(*layers)
        self.widths = widths
        if init == "lecun":
            for m in self.net:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(m.in_features))
                    nn.init.zeros_(m.bias)

    @property
    def activations(self) -> list[nn.Module]:
        """The activation module of each hidden layer, input side first."""
        return [m for i, m in enumerate(self.net) if i % 2 == 1]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1))
