"""CIFAR-style pre-activation ResNets (He et al. 2016) with the activation as a parameter.

Layout (He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016, the
CIFAR networks of its section 5 / Table 3): a 3x3 stem convolution with ``widths[0]``
filters, three stages of ``n`` residual units at ``widths[0..2]`` (stride 1, 2, 2), then
BN -> activation -> global average pooling -> linear classifier. Each unit is
pre-activation: BN -> act -> conv, twice (basic unit, ``depth = 6n + 2``: ResNet-20/56/110)
or three times as a 1x1-3x3-1x1 bottleneck with 4x expansion (``depth = 9n + 2``:
ResNet-164, the network ASH's appendix trains).

Every activation site is its own module built by :func:`ashlib.models.make_activation`
(adaptive ones get per-site, and for the per-channel kinds per-channel, parameters). ASH
keeps its default statistics: per sample over all of (C, H, W), the paper's "feature map X".

Shortcuts where the shape changes:

- ``"A"``: parameter-free identity, subsampled by the stride and zero-padded in channels
  (He et al. 2015, "Deep Residual Learning", section 4.2, option A: the CIFAR ResNet-20/56/110
  whose published parameter counts are 0.27M/0.85M/1.7M);
- ``"B"``: 1x1 convolution (projection) with the stride, applied to the pre-activated input
  (He et al. 2016's pre-activation code; the ResNet-164 count of 1.7M includes them).

Defaults: ``"A"`` for basic units, ``"B"`` for bottlenecks.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._act import ActSpec, make_activation

__all__ = ["PreActBasicBlock", "PreActBottleneck", "PreActResNet", "preact_resnet", "resnet20", "resnet56",
           "resnet110", "resnet164", "activation_sites"]


def _check_shortcut(shortcut: str) -> str:
    if shortcut not in ("A", "B"):
        raise ValueError(f"shortcut={shortcut!r}; allowed: 'A' (zero-padded identity) or 'B' (1x1 projection)")
    return shortcut


class _PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and append zero channels up to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A cannot reduce channels ({in_channels} -> {out_channels})")
        self.extra, self.stride = out_channels - in_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x

    def extra_repr(self) -> str:
        return f"pad_channels={self.extra}, stride={self.stride}"


class PreActBasicBlock(nn.Module):
    """Pre-activation basic unit: ``BN-act-conv3x3-BN-act-[dropout]-conv3x3`` plus the shortcut.

    Args:
        in_channels, channels: input and output channels (expansion 1).
        stride: stride of the first convolution (and of the shortcut).
        act: activation name or factory; each of the two sites gets a fresh module.
        shortcut: ``"A"`` or ``"B"`` (see the module docstring); used only where the shape changes.
        dropout: dropout probability between the convolutions (Wide ResNets use 0.3 on CIFAR).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, act: ActSpec = "relu",
                 shortcut: str = "A", dropout: float = 0.0) -> None:
        super().__init__()
        out = channels * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.act1 = make_activation(act, in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = make_activation(act, channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(channels, out, 3, 1, 1, bias=False)
        self.shortcut, self.projection = _make_shortcut(in_channels, out, stride, _check_shortcut(shortcut))

    def forward(self, x: Tensor) -> Tensor:
        pre = self.act1(self.bn1(x))
        # a projection sees the pre-activated input (He et al. 2016); identity/option A sees x
        sc = self.shortcut(pre) if self.projection else self.shortcut(x)
        out = self.conv1(pre)
        out = self.conv2(self.dropout(self.act2(self.bn2(out))))
        return out + sc


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck unit: ``BN-act-conv1x1-BN-act-conv3x3-BN-act-conv1x1`` (4x expansion)."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, act: ActSpec = "relu",
                 shortcut: str = "B", dropout: float = 0.0) -> None:
        super().__init__()
        out = channels * self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.act1 = make_activation(act, in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = make_activation(act, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.act3 = make_activation(act, channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv3 = nn.Conv2d(channels, out, 1, bias=False)
        self.shortcut, self.projection = _make_shortcut(in_channels, out, stride, _check_shortcut(shortcut))

    def forward(self, x: Tensor) -> Tensor:
        pre = self.act1(self.bn1(x))
        sc = self.shortcut(pre) if self.projection else self.shortcut(x)
        out = self.conv1(pre)
        out = self.conv2(self.act2(self.bn2(out)))
        out = self.conv3(self.dropout(self.act3(self.bn3(out))))
        return out + sc


def _make_shortcut(cin: int, cout: int, stride: int, kind: str) -> tuple[nn.Module, bool]:
    if stride == 1 and cin == cout:
        return nn.Identity(), False
    if kind == "A":
        return _PadShortcut(cin, cout, stride), False
    return nn.Conv2d(cin, cout, 1, stride, bias=False), True


class PreActResNet(nn.Module):
    """A CIFAR-style pre-activation ResNet of any depth (see the module docstring).

    Args:
        depth: total weighted layers: ``6n + 2`` (basic: 20, 56, 110, ...) or ``9n + 2``
            (bottleneck: 164, ...); ``8`` and ``14`` give the small basic nets of the quick profile.
        act: activation name (``"relu"``, ``"swish"``, ``"ash"``, ``"fixed-ash-10"``, ...) or factory.
        block: ``"basic"``, ``"bottleneck"`` or ``"auto"`` (bottleneck when ``depth >= 164``,
            the He et al. 2016 convention; else basic).
        widths: channels of the three stages before expansion (He et al.: 16, 32, 64).
        num_classes, in_channels: the data.
        shortcut: ``"A"``/``"B"``; default A for basic, B for bottleneck units.
        dropout: dropout inside each unit (0 for the He et al. nets).
        stem_stride: 1 (He et al.) or 2: the stem halves the resolution, which makes 32x32 inputs
            as cheap as 16x16 ones downstream (used by the quick profile on CPUs).
        stem_pool: a 2x2 max-pool after the stem (halves the resolution once more).

    Shape: ``(N, in_channels, H, W)`` -> ``(N, num_classes)`` logits, for any H, W >= 4.

    Example::

        >>> PreActResNet(20, act="ash")(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, depth: int = 20, act: ActSpec = "relu", block: str = "auto",
                 widths: Sequence[int] = (16, 32, 64), num_classes: int = 10, in_channels: int = 3,
                 shortcut: str | None = None, dropout: float = 0.0, stem_stride: int = 1,
                 stem_pool: bool = False) -> None:
        super().__init__()
        if block == "auto":
            block = "bottleneck" if depth >= 164 else "basic"
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block={block!r}; allowed: 'basic', 'bottleneck', 'auto'")
        per = 6 if block == "basic" else 9
        if depth < per + 2 or (depth - 2) % per:
            raise ValueError(f"depth={depth} does not fit a {block} pre-activation ResNet: need depth = {per}n + 2, n >= 1")
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths={tuple(widths)}: need three positive stage widths")
        if num_classes < 2 or in_channels < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"num_classes={num_classes}, in_channels={in_channels}, dropout={dropout} out of range")
        unit = PreActBasicBlock if block == "basic" else PreActBottleneck
        shortcut = shortcut or ("A" if block == "basic" else "B")
        n = (depth - 2) // per
        self.depth, self.block, self.n_units = depth, block, n
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride={stem_stride}; allowed: 1 (He et al.) or 2 (halves every feature map)")
        stem = nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False)
        # an optional 2x2 max-pool after the stem (as ImageNet ResNets have) quarters every later map
        self.stem = nn.Sequential(stem, nn.MaxPool2d(2)) if stem_pool else stem
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            units = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                units.append(unit(cin, w, stride, act, shortcut, dropout))
                cin = w * unit.expansion
            stages.append(nn.Sequential(*units))
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = nn.BatchNorm2d(cin)
        self.act = make_activation(act, cin)
        self.fc = nn.Linear(cin, num_classes)
        self.out_channels = cin
        for m in self.modules():  # He initialisation as in the reference implementations
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """The last feature map, after the final BN and activation: (N, out_channels, H/4, W/4)."""
        x = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.act(self.bn(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


def preact_resnet(depth: int, act: ActSpec = "relu", **kwargs) -> PreActResNet:
    """``PreActResNet(depth, act, **kwargs)``."""
    return PreActResNet(depth, act, **kwargs)


def resnet20(act: ActSpec = "relu", **kwargs) -> PreActResNet:
    """Pre-activation ResNet-20 (basic, n = 3, option A shortcuts): about 0.27M parameters."""
    return PreActResNet(20, act, **kwargs)


def resnet56(act: ActSpec = "relu", **kwargs) -> PreActResNet:
    """Pre-activation ResNet-56 (basic, n = 9): about 0.85M parameters."""
    return PreActResNet(56, act, **kwargs)


def resnet110(act: ActSpec = "relu", **kwargs) -> PreActResNet:
    """Pre-activation ResNet-110 (basic, n = 18): about 1.7M parameters."""
    return PreActResNet(110, act, **kwargs)


def resnet164(act: ActSpec = "relu", **kwargs) -> PreActResNet:
    """Pre-activation bottleneck ResNet-164 (n = 18, projection shortcuts): about 1.7M parameters,
    the network of ASH's appendix (Supp. Figs. 1, 2)."""
    return PreActResNet(164, act, block="bottleneck", **kwargs)


def activation_sites(model: nn.Module, kinds: tuple[type, ...] | None = None) -> list[tuple[str, nn.Module]]:
    """The activation modules of ``model`` in forward order (construction order in these models),
    as (qualified name, module) pairs.

    ``kinds``: the module types to list; default every module from :mod:`ashlib.modules` and
    ``torch.nn.modules.activation`` (ReLU, SiLU, ...), excluding containers.
    """
    from .. import modules as M  # noqa: PLC0415

    if kinds is None:
        out = []
        for name, m in model.named_modules():
            mod = type(m).__module__
            if mod in (M.__name__, "torch.nn.modules.activation") and not isinstance(m, nn.MultiheadAttention):
                out.append((name, m))
        return out
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]
