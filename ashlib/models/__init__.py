"""Models that take their activation as a name or a factory (one fresh module per site)."""

from ._act import ActSpec, adaptive_alphas, make_activation
from .lenet import LeNet5
from .mlp import MLP

__all__ = ["ActSpec", "make_activation", "adaptive_alphas", "MLP", "LeNet5"]
