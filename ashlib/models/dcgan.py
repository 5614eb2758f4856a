"""DCGAN generator and discriminator (Radford, Metz, Chintala 2015) for 32x32 and 64x64 images.

Generator: a latent vector ``(N, nz, 1, 1)`` -> transposed 4x4 convolution to a 4x4 map of
``ngf * 2**m`` channels -> ``m`` upsampling stages (transposed 4x4 conv, stride 2, BN, act),
halving the channels -> a last transposed conv to ``nc`` channels and tanh. ``m = 3`` for
64x64 (the DCGAN paper's layout, 512-256-128-64 filters with ngf = 64) and ``m = 2`` for 32x32.

Discriminator: the mirror image with strided 4x4 convolutions, BN from the second layer on,
and LeakyReLU(0.2) by default; a last 4x4 convolution gives one logit per image.

The generator's activation is the parameter ASH's appendix varies (Supp. Fig. 6: ReLU,
Swish, ASH); the discriminator's can be changed too. Weights are initialised as in the
DCGAN paper: N(0, 0.02) for convolutions, N(1, 0.02) for BN scales.
"""

from __future__ import annotations

import functools
import math

from torch import Tensor, nn

from ._act import ActSpec, make_activation

__all__ = ["DCGANGenerator", "DCGANDiscriminator", "dcgan_init_"]

_LEAKY = functools.partial(nn.LeakyReLU, 0.2)


def _stages(image_size: int) -> int:
    if image_size not in (32, 64):
        raise ValueError(f"image_size={image_size}; the DCGAN models here take 32 or 64")
    return int(math.log2(image_size)) - 3


def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN initialisation in place: conv weights N(0, 0.02), BN weights N(1, 0.02) and biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


class DCGANGenerator(nn.Module):
    """DCGAN generator with the activation as a parameter (a fresh module per site).

    Args:
        nz: latent size (100 in DCGAN).
        ngf: filters of the last hidden stage (64 in DCGAN).
        nc: image channels (3 for CelebA, 1 for digits).
        image_size: 32 or 64.
        act: activation of the hidden stages (DCGAN: ReLU).

    Shape: ``(N, nz)`` or ``(N, nz, 1, 1)`` -> ``(N, nc, image_size, image_size)`` in (-1, 1).

    Example::

        >>> import torch
        >>> DCGANGenerator(nz=16, ngf=8, nc=1, image_size=32, act="ash")(torch.randn(2, 16)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64, act: ActSpec = "relu") -> None:
        super().__init__()
        m = _stages(image_size)
        if nz < 1 or ngf < 1 or nc < 1:
            raise ValueError(f"nz={nz}, ngf={ngf}, nc={nc}: all must be >= 1")
        self.nz, self.image_size = nz, image_size
        c = ngf * 2 ** m
        layers: list[nn.Module] = [nn.ConvTranspose2d(nz, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c),
                                   make_activation(act, c)]
        for _ in range(m):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2),
                       make_activation(act, c // 2)]
            c //= 2
        layers += [nn.ConvTranspose2d(c, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: ``(N, nc, S, S)`` images -> ``(N,)`` logits (real vs generated).

    Args:
        ndf: filters of the first stage (64 in DCGAN).
        nc, image_size: the data (32 or 64 pixels).
        act: activation (default LeakyReLU with slope 0.2, as in DCGAN).
    """

    def __init__(self, ndf: int = 64, nc: int = 3, image_size: int = 64, act: ActSpec = _LEAKY) -> None:
        super().__init__()
        m = _stages(image_size)
        if ndf < 1 or nc < 1:
            raise ValueError(f"ndf={ndf}, nc={nc}: both must be >= 1")
        c = ndf
        layers: list[nn.Module] = [nn.Conv2d(nc, c, 4, 2, 1, bias=False), make_activation(act, c)]
        for _ in range(m):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), make_activation(act, 2 * c)]
            c *= 2
        layers += [nn.Conv2d(c, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()
