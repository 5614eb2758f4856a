"""LeNet5 as used by Farhadi et al. (section 4.2): two conv + max-pool stages and one hidden FC layer."""

from __future__ import annotations

from torch import Tensor, nn

from ._act import ActSpec, make_activation

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """LeNet5 with separate activations for the convolutional and the fully connected part.

    Layout (the Theano tutorial's LeNet that Farhadi et al. follow, with the FC width of the
    paper): ``conv5x5(c1) [BN] act maxpool2 -> conv5x5(c2) [BN] act maxpool2 -> flatten ->
    linear(fc_width) [BN] act -> linear(num_classes)``.

    Args:
        conv_act: activation name or factory of both convolutional stages (a fresh module each;
            per-channel activations get one parameter per channel).
        fc_act: activation of the hidden fully connected layer (one parameter per neuron).
        batch_norm: insert BatchNorm after each conv and the hidden linear layer (the paper: yes).
        fc_width: hidden FC neurons (paper: 1000; Theano tutorial: 500).
        channels: filters of the two conv layers (Theano tutorial: 20 and 50; LeCun 1998: 6, 16).
        in_channels, input_size (28 or 32), num_classes: the data.

    Shape: ``(N, in_channels, input_size, input_size)`` -> ``(N, num_classes)`` logits.

    Example::

        >>> import torch
        >>> LeNet5("agumbel", "relu", batch_norm=True)(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, conv_act: ActSpec = "relu", fc_act: ActSpec = "relu", batch_norm: bool = False,
                 fc_width: int = 1000, channels: tuple[int, int] = (20, 50), in_channels: int = 1,
                 input_size: int = 28, num_classes: int = 10) -> None:
        super().__init__()
        if input_size not in (28, 32):
            raise ValueError(f"input_size={input_size}; LeNet5 takes 28 or 32")
        if fc_width < 1 or min(channels) < 1 or num_classes < 2:
            raise ValueError(f"fc_width={fc_width}, channels={channels}, num_classes={num_classes} out of range")
        c1, c2 = channels
        side = ((input_size - 4) // 2 - 4) // 2  # 4 for 28, 5 for 32

        def stage(cin: int, cout: int) -> list[nn.Module]:
            mods: list[nn.Module] = [nn.Conv2d(cin, cout, 5, bias=not batch_norm)]
            if batch_norm:
                mods.append(nn.BatchNorm2d(cout))
            return mods + [make_activation(conv_act, cout), nn.MaxPool2d(2)]

        self.features = nn.Sequential(*stage(in_channels, c1), *stage(c1, c2))
        fc: list[nn.Module] = [nn.Flatten(), nn.Linear(c2 * side * side, fc_width, bias=not batch_norm)]
        if batch_norm:
            fc.append(nn.BatchNorm1d(fc_width))
        fc += [make_activation(fc_act, fc_width), nn.Linear(fc_width, num_classes)]
        self.classifier = nn.Sequential(*fc)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
