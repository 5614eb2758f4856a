"""ashlib: adaptive activation functions (ASH, adaptive Gumbel, adaptive ReLU) for PyTorch."""

__version__ = "0.1.0"
