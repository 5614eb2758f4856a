"""Helpers shared by the operators and the public functions: argument checks that never touch
tensor values, the statistics dims, and the threshold split used by every ASH backend."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

Dim = Optional[Union[int, Sequence[int]]]


def is_number(v) -> bool:
    """A Python int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_float_input(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x has dtype {x.dtype}; a floating-point tensor is required")


def plain_values(t: Tensor) -> Tensor:
    """t with its values in memory, for kernels that read it through a pointer: a negative view
    (``torch._neg_view``, which autograd may pass as a gradient) resolved, and an efficient zero
    tensor (which has no memory) made real; t itself when it is neither."""
    if t._is_zerotensor():
        return torch.zeros(t.shape, dtype=t.dtype, device=t.device)
    return t.resolve_neg() if t.is_neg() else t


def half_to_float(dtype: torch.dtype) -> torch.dtype:
    """The dtype the fast kernels compute in: float32 for half precision, else the dtype itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def as_param(v, like: Tensor) -> Tensor:
    """A parameter as a tensor: a number becomes a 0-d float64 tensor on ``like``'s device (the
    kernels cast it to their compute dtype)."""
    if isinstance(v, Tensor):
        return v
    return torch.tensor(float(v), dtype=torch.float64, device=like.device)


def reduce_dims(x: Tensor, dim: Dim = None) -> Tuple[int, ...]:
    """The dims ASH takes its statistics over: ``dim`` normalised to a sorted tuple.

    ``None`` means every dim but the batch (dim 0) when ``x.dim() >= 2``, and dim 0 for 1-D x.
    """
    if x.dim() == 0:
        raise ValueError("x is a 0-d tensor; ASH needs at least one dimension to take statistics over")
    if dim is None:
        return tuple(range(1, x.dim())) if x.dim() >= 2 else (0,)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    if not dims:
        raise ValueError("dim=() is empty: give at least one dimension")
    out = []
    for d in dims:
        if not isinstance(d, int) or not -x.dim() <= d < x.dim():
            raise ValueError(f"dim={dim!r} is out of range for a {x.dim()}-d input: each dim must be an int in "
                             f"[{-x.dim()}, {x.dim() - 1}]")
        out.append(d % x.dim())
    return tuple(sorted(set(out)))


def range_error(name: str, value, allowed: str) -> ValueError:
    return ValueError(f"{name}={value!r} is out of range: {name} must be {allowed}")


def check_positive_scalar(name: str, value: float) -> None:
    """For values read inside a kernel (one-element parameters): finite and > 0."""
    if not (value > 0 and math.isfinite(value)):
        raise range_error(name, value, "finite and > 0")


def split_threshold(t: Tensor, cd: torch.dtype) -> Tuple[Tensor, Tensor]:
    """A float64 threshold t as t_hi + t_lo in the compute dtype ``cd``.

    x - t_hi is exact where it matters (Sterbenz: x within a factor 2 of t_hi), and then
    subtracting t_lo leaves x - t correct to the compute dtype's relative precision, which a
    single rounded t cannot give once 2*alpha*|t| is large. (The C kernels do the same per sample.)
    """
    big = torch.finfo(cd).max
    # t_hi is kept finite (a threshold just beyond cd's range goes into t_lo), so that x - t_hi
    # is finite for every finite x and the kernels need no range check for it
    t_hi = torch.clamp(t, -big, big).to(cd)
    t_lo = (t - t_hi.to(torch.float64)).to(cd)
    return t_hi, t_lo


def mean_sigma_path(R1: Tensor, sigma: Tensor, z, c, A, n: int) -> Tuple[Tensor, Tensor]:
    """Per-sample (k0, k1), float64, such that the path of dL/dx through mu and sigma is
    k0 + k1*d with d = x - t: -(W/n)(1 + z(x - mu)/sigma) = -(W/n)(1 + z^2 + z d/sigma),
    W = c*A*R1 (see :mod:`ashlib.ops.ash_family`); z, c, A are floats or 0-d tensors."""
    Wn = R1 * (c * A / n)
    return Wn * (-(1.0 + z * z)), Wn * (-z) / sigma


def memory_order(x: Tensor) -> list:
    """x's dims from the outermost to the innermost in memory (ties by position)."""
    return sorted(range(x.dim()), key=lambda d: (-x.stride(d), d))


def is_dense(x: Tensor) -> bool:
    """Whether x covers its storage without gaps or overlaps in some order of its dims (contiguous,
    channels_last, or any permutation of a contiguous tensor)."""
    return x.permute(memory_order(x)).is_contiguous()


# --- operator registration ------------------------------------------------------------------------

#: devices whose tensors the eager routes take (meta tensors go to the operators' fake kernels)
EAGER_DEVICES = ("cpu", "cuda")

#: Tensor types a plain eager call may hold (a Parameter is a Tensor to the dispatcher).
PLAIN_TYPES = (Tensor, torch.nn.Parameter)


def plain_eager(*tensors: Optional[Tensor]) -> bool:
    """Whether a call may run an operator's Python kernel directly, under a
    ``torch.autograd.Function``, instead of through the dispatcher.

    The dispatcher costs a few hundred microseconds per forward+backward of these Python-kernel
    operators (the generated autograd wrapper, argument re-binding, a second dispatch for the
    backward operator), which is most of the time on small tensors. The direct route computes the
    same values with the same kernels; it is taken only where nothing else would see the call:
    not under ``torch.compile``, ``torch.jit.trace`` or ``torch.export``, no ``torch.func``
    transform, no torch-function or dispatch mode (fake tensors, FlopCounterMode, a device
    context), no profiler (so profiles keep listing the operators), no saved-tensor hooks, and
    plain tensors only (no subclasses). A decision on modes and types, never on values.

    Saved-tensor hooks are what non-reentrant activation checkpointing installs: the eager route
    saves other tensors than the operator does, and a recomputation that took the other route
    (a profiler or dispatch mode turned on for the backward only) would fail the checkpoint's
    check that it saved the same tensors. Under any such hook both passes take the operator.
    """
    if torch.compiler.is_compiling():  # first: Dynamo folds it to a constant and traces no further
        return False
    if (torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack() > 0
            or torch._C._autograd._profiler_enabled() or torch._C._get_tracing_state() is not None
            or torch._C._functorch.get_dynamic_layer_stack_depth() > 0
            or torch._C._autograd._top_saved_tensors_default_hooks(False) is not None):
        return False
    for t in tensors:
        if t is not None and type(t) not in PLAIN_TYPES:
            return False
    return True


#: The ``ashlib`` operator namespace. Operators are defined through torch.library.Library rather
#: than the torch.library.custom_op decorator: the same schema, fake and autograd registrations,
#: without custom_op's per-call Python wrapper, whose first call also imports torch._dynamo
#: (about 2 s in a fresh process that never compiles anything).
LIB = torch.library.Library("ashlib", "DEF")


def define_op(schema: str, impl, fake, backward=None, setup_context=None) -> None:
    """Define ``ashlib::<name>`` from ``schema``, with ``impl`` as its kernel for every device
    (CompositeExplicitAutograd: it runs below autograd and picks its backend itself), ``fake``
    for tracing and meta tensors, and an autograd formula when ``backward`` is given."""
    name = schema.split("(", 1)[0]
    LIB.define(schema)
    LIB.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"ashlib::{name}", fake, lib=LIB)
    if backward is not None:
        torch.library.register_autograd(f"ashlib::{name}", backward, setup_context=setup_context, lib=LIB)
