"""How models turn an activation spec into one fresh module per site."""

from __future__ import annotations

import inspect
from typing import Callable, Sequence, Union

import torch
from torch import nn

from ..registry import PER_CHANNEL, get_activation

__all__ = ["ActSpec", "make_activation", "expand_specs", "adaptive_alphas"]

#: An activation name from the registry (``"agumbel"``), or a factory returning a fresh module.
ActSpec = Union[str, Callable[..., nn.Module]]


def _accepts_num_parameters(factory: Callable[..., nn.Module]) -> bool:
    try:
        return "num_parameters" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def make_activation(spec: ActSpec, channels: int | None = None) -> nn.Module:
    """A fresh activation module for one site with ``channels`` channels (neurons).

    Per-channel activations (the registry's ``PER_CHANNEL`` names, or a factory taking
    ``num_parameters``) get one parameter per channel when ``channels`` is given; the others
    are built without arguments.
    """
    if isinstance(spec, str):
        name = spec.strip().lower().replace("_", "-")
        if channels is not None and name in PER_CHANNEL:
            return get_activation(name, num_parameters=int(channels))
        return get_activation(name)
    if not callable(spec):
        raise ValueError(f"act={spec!r} must be an activation name or a factory returning an nn.Module")
    if channels is not None and _accepts_num_parameters(spec):
        module = spec(num_parameters=int(channels))
    else:
        module = spec()
    if not isinstance(module, nn.Module):
        raise ValueError(f"act factory {spec!r} returned {type(module).__name__}, not an nn.Module")
    return module


def expand_specs(act: ActSpec | Sequence[ActSpec], n: int, what: str = "act") -> list[ActSpec]:
    """One spec per site: a single spec is repeated, a sequence must have ``n`` entries."""
    if isinstance(act, str) or callable(act):
        return [act] * n
    specs = list(act)
    if len(specs) != n:
        raise ValueError(f"{what} has {len(specs)} entries; the model has {n} activation sites")
    return specs


def adaptive_alphas(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current alpha of every module exposing ``log_alpha`` (AdaptiveGumbel, AdaptiveReLU, ASH),
    as 1-D tensors keyed by module name, in the order the modules appear."""
    out: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        log_alpha = getattr(module, "log_alpha", None)
        if isinstance(log_alpha, torch.Tensor):
            out[name] = log_alpha.detach().exp().reshape(-1).cpu().clone()
    return out
