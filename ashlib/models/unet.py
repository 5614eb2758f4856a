"""U-Net (Ronneberger, Fischer, Brox 2015) with the activation as a parameter, for semantic segmentation.

Layout: an encoder of ``len(widths)`` levels, each two 3x3 convolutions (padding 1, so the
map keeps its size) with batch norm and the activation after each, and a 2x2 max-pool between
levels; a decoder that, per level, upsamples by a 2x2 transposed convolution with stride 2
(the paper's "up-conv 2x2"), concatenates the encoder's map of the same size (the skip
connection) and applies two more 3x3 conv + BN + activation; a 1x1 convolution gives one
logit per class and pixel.

With ``widths=(64, 128, 256, 512, 1024)`` this is the U-Net of the paper except for two
choices that every common reimplementation makes: padded convolutions (the output has the
input's size; the paper crops) and batch norm after each convolution (the paper predates it).
The ASH appendix (App. E, Supp. Fig. 3) trains a U-Net on ADE20K without giving its sizes.
Smaller ``widths`` give the book's CPU-scale networks. The input's height and width must be
divisible by ``2 ** (len(widths) - 1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._act import ActSpec, make_activation

__all__ = ["UNet"]


def _double_conv(cin: int, cout: int, act: ActSpec) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         make_activation(act, cout),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         make_activation(act, cout))


class UNet(nn.Module):
    """U-Net for semantic segmentation with one fresh activation module per site.

    Args:
        num_classes: output channels (one logit per class and pixel).
        in_channels: image channels.
        widths: channels of the encoder levels, from the input down (the last is the bottleneck);
            at least two levels.
        act: an activation name from :func:`ashlib.get_activation` (``"relu"``, ``"swish"``,
            ``"ash"``, ...) or a factory returning a module; every one of the
            ``4 * len(widths) - 2`` sites gets its own.

    Shape: ``(N, in_channels, H, W)`` -> ``(N, num_classes, H, W)``; H and W divisible by
    ``2 ** (len(widths) - 1)``.

    Example::

        >>> import torch
        >>> UNet(num_classes=3, widths=(4, 8), act="ash")(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256, 512, 1024),
                 act: ActSpec = "relu") -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"widths={widths}: need at least two levels, each with >= 1 channel")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes={num_classes}, in_channels={in_channels}: both must be >= 1")
        self.widths = widths
        self.num_classes = num_classes
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(_double_conv(cin, w, act))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w_skip, w_in in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.up.append(nn.ConvTranspose2d(w_in, w_skip, 2, stride=2))
            self.dec.append(_double_conv(2 * w_skip, w_skip, act))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        factor = 2 ** (len(self.widths) - 1)
        if x.dim() != 4 or x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"input of shape {tuple(x.shape)}: need (N, C, H, W) with H and W divisible by {factor}")
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck's own map
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, widths={self.widths}"
