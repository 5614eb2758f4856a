"""Wide residual networks (Zagoruyko and Komodakis, "Wide Residual Networks", BMVC 2016).

WRN-d-k: a 3x3 stem with 16 filters, three groups of ``n = (d - 4) / 6`` pre-activation
basic units of widths ``16k, 32k, 64k`` (strides 1, 2, 2), 1x1 projection shortcuts where
the width or stride changes, then BN -> activation -> average pooling -> linear. WRN-28-10
(36.5M parameters in the paper's CIFAR table) is one of the networks of ASH's Supp. Fig. 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._act import ActSpec, make_activation
from .resnet import PreActBasicBlock

__all__ = ["WideResNet", "wrn28_10"]


class WideResNet(nn.Module):
    """WRN-depth-widen_factor with the activation as a parameter (each site its own module).

    Args:
        depth: ``6n + 4`` (28 for WRN-28-10).
        widen_factor: k, the width multiplier (10 for WRN-28-10).
        act: activation name or factory.
        dropout: dropout between the two convolutions of each unit (the paper: 0.3 on CIFAR, or 0).
        num_classes, in_channels: the data.

    Shape: ``(N, in_channels, H, W)`` -> ``(N, num_classes)``.

    Example::

        >>> WideResNet(10, 2, act="swish")(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, act: ActSpec = "relu", dropout: float = 0.0,
                 num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth={depth}: a wide ResNet needs depth = 6n + 4 with n >= 1")
        if widen_factor < 1:
            raise ValueError(f"widen_factor={widen_factor}; must be >= 1")
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        cin, groups = 16, []
        for i, w in enumerate(widths):
            units = []
            for j in range(n):
                units.append(PreActBasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1, act, "B", dropout))
                cin = w
            groups.append(nn.Sequential(*units))
        self.stage1, self.stage2, self.stage3 = groups
        self.bn = nn.BatchNorm2d(cin)
        self.act = make_activation(act, cin)
        self.fc = nn.Linear(cin, num_classes)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: Tensor) -> Tensor:
        """The last feature map after the final BN and activation."""
        return self.act(self.bn(self.stage3(self.stage2(self.stage1(self.stem(x))))))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def wrn28_10(act: ActSpec = "relu", **kwargs) -> WideResNet:
    """WRN-28-10 (36.5M parameters for 10 classes)."""
    return WideResNet(28, 10, act, **kwargs)
