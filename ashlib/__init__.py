"""ashlib: adaptive activation functions (ASH, adaptive Gumbel, adaptive ReLU) for PyTorch.

``ashlib.functional`` holds the math, ``ashlib.symbolic`` the sympy reference formulas, the
modules below own the trainable parameters, and the registry maps names to modules.
"""

from . import functional
from .modules import (ASH, AdaptiveGumbel, AdaptiveReLU, FixedASH, HardASH, LeakyASH, Swish,
                      TopKASH)
from .registry import activation_names, get_act_layer, get_activation, register, replace_activations

__version__ = "0.1.0"


def __getattr__(name: str):
    # sympy is heavy and optional for the activations: ``ashlib.symbolic`` loads on first use
    if name == "symbolic":
        import importlib
        return importlib.import_module(".symbolic", __name__)
    raise AttributeError(f"module 'ashlib' has no attribute {name!r}")

__all__ = [
    "ASH", "LeakyASH", "FixedASH", "HardASH", "TopKASH", "AdaptiveGumbel", "AdaptiveReLU", "Swish",
    "get_activation", "get_act_layer", "activation_names", "replace_activations", "register",
    "functional", "symbolic", "__version__",
]
