"""Activation registry: one table from names to module factories, one function to look up.

Models take ``act="ash"`` or a factory and call :func:`get_activation` once per site, so
each site owns its parameters. The names with a percentage (``fixed-ash-10``,
``topk-ash-2.5``) take any k in (0, 100).

    >>> get_activation("fixed-ash-10")
    FixedASH(k=0.1, z=1.282, alpha=1)
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Dict, Iterable, Tuple, Type, Union

from torch import nn

from . import modules as M

__all__ = ["get_activation", "get_act_layer", "activation_names", "replace_activations", "register",
           "PER_CHANNEL"]

Factory = Callable[..., nn.Module]

_REGISTRY: Dict[str, Factory] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": M.Swish,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "prelu": nn.PReLU,
    "leaky-relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
    "ash": M.ASH,
    "leaky-ash": M.LeakyASH,
    "hard-ash": M.HardASH,
    "agumbel": M.AdaptiveGumbel,
    "arelu": M.AdaptiveReLU,
    "arelu-logistic": functools.partial(M.AdaptiveReLU, cdf="logistic"),
}

#: Names whose factories take ``k`` as a percentage suffix: ``<prefix>-<percent>``.
_PERCENT: Dict[str, Factory] = {
    "fixed-ash": M.FixedASH,
    "topk-ash": M.TopKASH,
}

#: Names whose modules take ``num_parameters`` (one parameter per channel, dim 1).
PER_CHANNEL = frozenset({"prelu", "agumbel", "arelu", "arelu-logistic"})

_PERCENT_RE = re.compile(r"^(?P<prefix>[a-z-]+?)-(?P<pct>\d+(?:\.\d+)?)$")


def register(name: str, factory: Factory) -> None:
    """Add a name to the registry (lower-case, dash-separated)."""
    key = name.lower().replace("_", "-")
    if key in _REGISTRY:
        raise ValueError(f"name={name!r} is already registered")
    _REGISTRY[key] = factory


def activation_names() -> Tuple[str, ...]:
    """Every registered name; the percentage forms appear as ``fixed-ash-<k%>`` and ``topk-ash-<k%>``."""
    return tuple(sorted(_REGISTRY)) + tuple(f"{p}-<k%>" for p in sorted(_PERCENT))


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _resolve(name: str) -> Factory:
    key = _normalise(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    m = _PERCENT_RE.match(key)
    if m and m.group("prefix") in _PERCENT:
        pct = float(m.group("pct"))
        if not 0 < pct < 100:
            raise ValueError(f"name={name!r}: the percentage {pct:g} is out of range; it must lie in (0, 100)")
        return functools.partial(_PERCENT[m.group("prefix")], pct / 100.0)
    raise ValueError(f"name={name!r} is not a known activation; known names: {', '.join(activation_names())}")


def get_activation(name: Union[str, Factory], **kwargs) -> nn.Module:
    """A fresh activation module for ``name`` (or the result of calling a factory).

    ``kwargs`` go to the module's constructor, e.g. ``get_activation("ash", k=0.1)`` or
    ``get_activation("agumbel", num_parameters=64)``.
    """
    if callable(name) and not isinstance(name, str):
        return name(**kwargs)
    if not isinstance(name, str):
        raise ValueError(f"name={name!r} must be an activation name or a factory")
    return _resolve(name)(**kwargs)


def get_act_layer(name: Union[str, Factory], **defaults) -> Factory:
    """A timm-style ``act_layer``: a callable that builds a fresh module each time it is called.

    It accepts and ignores ``inplace`` (which timm passes to ReLU-like layers), so it can be
    given to any model that expects ``act_layer=nn.ReLU``.
    """
    factory = name if callable(name) and not isinstance(name, str) else _resolve(name)

    def act_layer(*args, inplace: bool = False, **kwargs) -> nn.Module:
        return factory(*args, **{**defaults, **kwargs})

    act_layer.__name__ = f"act_layer[{name if isinstance(name, str) else getattr(name, '__name__', name)}]"
    return act_layer


def replace_activations(model: nn.Module, new: Union[str, Factory],
                        old: Union[Type[nn.Module], Iterable[Type[nn.Module]]] = (nn.ReLU,),
                        **kwargs) -> int:
    """Replace every submodule of a type in ``old`` by a fresh ``new`` activation, in place.

    Each replaced site gets its own module (its own parameters). Returns how many were
    replaced. ``kwargs`` go to each new module's constructor.

        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU())
        >>> replace_activations(net, "ash")
        2
    """
    old_types = (old,) if isinstance(old, type) else tuple(old)
    if not old_types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in old_types):
        raise ValueError(f"old={old!r} must be an nn.Module subclass or a tuple of them")
    if isinstance(new, str):
        _resolve(new)  # fail before touching the model
    count = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, old_types):
                setattr(parent, child_name, get_activation(new, **kwargs))
                count += 1
    return count
