"""Models that take their activation as a name or a factory (one fresh module per site)."""

from ._act import ActSpec, adaptive_alphas, make_activation
from .lenet import LeNet5
from .mlp import MLP

__all__ = ["ActSpec", "make_activation", "adaptive_alphas", "MLP", "LeNet5"]
# ASH in deep networks (issue 5)
from .dcgan import DCGANDiscriminator, DCGANGenerator  # noqa: E402
from .resnet import PreActResNet, activation_sites, resnet20, resnet56, resnet110, resnet164  # noqa: E402
from .wrn import WideResNet, wrn28_10  # noqa: E402

__all__ += ["PreActResNet", "resnet20", "resnet56", "resnet110", "resnet164", "activation_sites",
            "WideResNet", "wrn28_10", "DCGANGenerator", "DCGANDiscriminator"]
# segmentation (issue 12, part 4)
from .unet import UNet  # noqa: E402

__all__ += ["UNet"]
