"""Helpers shared by the accuracy tests: 50-digit references from ashlib.symbolic."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import torch

from ashlib import symbolic as S

TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
TINY = 1e-30  # the contract applies where |reference| >= 1e-30


def x_grid(dtype: torch.dtype) -> list:
    """Inputs across the dtype's whole finite range: powers of ten of both signs, the region
    where the functions bend (|x| <= 60 densely), and the exact extremes."""
    fi = torch.finfo(dtype)
    top = int(math.floor(math.log10(fi.max)))
    bottom = int(math.ceil(math.log10(fi.tiny)))
    vals = {0.0, fi.max, -fi.max, fi.tiny, -fi.tiny}
    for e in range(bottom, top + 1, 7 if dtype == torch.float64 else 3):
        vals.update({10.0 ** e, -(10.0 ** e)})
    vals.update(np.linspace(-60, 60, 61).tolist())
    vals.update([-745.0, -700.0, -300.0, -100.0, 100.0, 300.0, 700.0, 745.0, 1e4, -1e4, 0.3, -0.3])
    # values representable in the dtype (the reference is computed at the rounded input)
    return sorted({float(torch.tensor(v, dtype=torch.float64).to(dtype)) for v in vals
                   if abs(v) <= fi.max})


ALPHAS = [1e-6, 1e-4, 1e-2, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0, 1e3]


def rel_to_scale(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the error of a against the reference b, relative to b's scale."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def relerr(ours: float, ref) -> float:
    ref = mpmath.mpf(ref)
    if ours == float("inf") or ours == float("-inf") or ours != ours:
        return float("inf")
    return float(abs(mpmath.mpf(ours) - ref) / abs(ref))


def check_close(ours: float, ref, tol: float, what: str, failures: list) -> None:
    """Record a failure if |ref| >= 1e-30 and the relative error exceeds tol."""
    if abs(ref) < TINY:
        if not math.isfinite(ours):
            failures.append(f"{what}: non-finite {ours} where the reference is {mpmath.nstr(ref, 5)}")
        return
    e = relerr(ours, ref)
    if not e <= tol:
        failures.append(f"{what}: ours={ours!r} ref={mpmath.nstr(ref, 17)} relerr={e:.3g}")


def scalar_reference(name: str, wrt=None, **values):
    expr = S.formula(name) if wrt is None else S.derivative(name, wrt)
    return S.evaluate(expr, **values)


def uses_operator(y: torch.Tensor, name: str) -> bool:
    """Whether y's autograd graph (a few nodes deep) holds the backward of torch.ops.ashlib.<name>,
    through the dispatcher or through the operator's direct eager Function (whose class names the
    operator in its ``operator`` attribute), or, for ASH, its C++ eager route or the C++
    autograd kernel the operator has on the CPU."""
    todo, seen = [y.grad_fn], 0
    while todo and seen < 20:
        fn = todo.pop()
        seen += 1
        if fn is None:
            continue
        if f"ashlib_{name}_default" in type(fn).__name__:
            return True
        if getattr(getattr(fn, "_forward_cls", None), "operator", None) == f"ashlib::{name}":
            return True
        if name == "ash" and "ashlib_eager::ASHFunction" in fn.name():  # its C++ eager route
            return True
        if name == "ash" and "ashlib_eager::GraphASH" in fn.name():  # the operator's C++ autograd (CPU)
            return True
        todo.extend(f for f, _ in fn.next_functions)
    return False
