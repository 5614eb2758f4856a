"""Triton kernels for the fused ASH / Leaky ASH forward and analytic backward (CUDA tensors).

The formulas are those of :mod:`ashlib.ops.ash` (see its module docstring): for one sample
(a row of the ``(rows, n)`` view) with threshold :math:`t = \\mu + z\\sigma`, :math:`A = 2\\alpha`,
:math:`d_i = x_i - t`, :math:`u_i = A d_i`, slope :math:`\\ell` and :math:`c = 1 - \\ell`
(:math:`\\ell = 0, c = 1` for ASH),

.. math::

    y_i = x_i(\\ell + c\\,S(u_i)), \\qquad q_i = g_i S(u_i) S(-u_i), \\qquad
    W = c A \\sum_i x_i q_i,

    \\frac{\\partial L}{\\partial x_j} = g_j(\\ell + c\\,S(u_j)) + c A x_j q_j
        - \\frac{W}{n}\\Bigl(1 + z^2 + z\\frac{d_j}{\\sigma}\\Bigr).

This module computes the element-wise parts and the row sums ``R1 = sum x q``,
``R2 = sum x q d`` and ``Rl = sum g x S(-u)``; the per-sample statistics and the parameter
gradients stay with the caller (``ashlib.ops.ash``), in float64 torch ops.

Numerics, as in ``ashlib.ops.ash``: the kernels compute in float32 whatever the storage dtype
(float32, bfloat16, float16). The float64 threshold is split into ``t_hi + t_lo`` (two
float32) and ``d = (x - t_hi) - t_lo``, which keeps ``d`` accurate when ``2*alpha*|t|`` is
large. Both sigmoids come from ``e = exp(-|u|)``: ``S(u) = 1/(1+e)`` or ``e/(1+e)`` by the
sign of u, ``S(-u)`` the other one, and ``S(u)S(-u) = e/(1+e)^2``, so neither tail cancels.
Row sums add float32 products in float64, one partial per tile of ``BLOCK`` elements, and the
partials are summed by torch in float64.

Layout: a 1-D grid of ``rows * cdiv(n, BLOCK)`` programs, one tile each (the program id gives
the row and the tile), so long rows and short rows both fill the device. Three launches:
forward; backward reductions (partials); backward element-wise gradient.

GPU operations: ``libdevice.exp`` (expf, a few ulp; ``tl.exp`` would be
``ex2.approx(u*log2(e))``, off by about ``|u| * 6e-8`` relative in the tails) and ``tl.div_rn``
(IEEE division; ``/`` is ``div.full.f32`` on NVIDIA). The interpreter has no libdevice, so there
the kernels take ``tl.exp`` (numpy's exp) through the ``INTERPRET`` constexpr.

Testing: no GPU was available where this was written. ``tests/test_fused_triton.py`` runs the
kernels in Triton's interpreter (``TRITON_INTERPRET=1``) on CPU tensors against float64
references, and compiles them ahead of time for sm_90 (PTX and cubin, no device needed) to
catch what the interpreter does not check (types, constexpr branches, libdevice). Neither
runs them on a GPU. Known interpreter difference: it rounds float32 -> bfloat16 towards zero
where the GPU rounds to nearest even, so bfloat16 outputs can differ by one bfloat16 ulp.

Triton is imported lazily: importing this module (or ``ashlib``) never imports it, and
:func:`available` is False when it is not installed. The kernels are built on first use, once
for compiled mode and once for the interpreter, chosen by ``TRITON_INTERPRET`` at call time,
so tests can switch the interpreter on per test even when triton was imported earlier.
"""

from __future__ import annotations

import contextlib
import os
import types
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["available", "ash_forward", "ash_backward", "SUPPORTED_DTYPES"]

#: Storage dtypes the kernels accept (they compute in float32; float64 stays with torch).
SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: Largest tile; small rows use the next power of two >= n (at least _MIN_BLOCK), so at most
#: four compiled variants per kernel.
_MAX_BLOCK = 1024
_MIN_BLOCK = 128
#: Compile options for every launch. FMA contraction on (Triton's current default, stated so
#: Triton 3.9 does not warn that the default will change); nothing here relies on separately
#: rounded products. The interpreter ignores them.
_LAUNCH = {"enable_fp_fusion": True}

# Bound by _kernels() on first use (triton is an optional dependency); the kernel functions
# below resolve these names only when triton.jit or the interpreter runs them.
tl = libdevice = _add = None
_gate = None  # the kernels call it; each mode binds its own jitted helper (see _kernels)


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:
        return False
    return True


def available(x: Tensor) -> bool:
    """True when triton imports and the kernels can run on ``x``.

    That is: ``x`` is a CUDA tensor, or a CPU tensor with ``TRITON_INTERPRET=1`` in the
    environment (Triton's interpreter, slow, for tests); and ``x.dtype`` is float32, bfloat16
    or float16 (the kernels compute in float32, so float64 stays with the torch path).
    """
    if not isinstance(x, Tensor) or x.dtype not in SUPPORTED_DTYPES:
        return False
    if not (x.is_cuda or (x.device.type == "cpu" and _interpret())):
        return False
    return _triton_importable()


# --- kernels -----------------------------------------------------------------------------
# Plain functions, jitted by _kernels(). One program per tile: pid -> (row, tile).
# Masked lanes load x = g = 0, which contributes 0 to every row sum.


def _add_combine(a, b):  # combine function of the row sums (see _kernels)
    return a + b


def _gate_parts(x_ptr, thi_ptr, tlo_ptr, p_ptr, n, nb, INTERPRET: tl.constexpr, BLOCK: tl.constexpr):
    """This program's tile (pid -> row, offsets, mask) and its x, d = x - t, u = A d,
    e = exp(-|u|) and r = 1/(1 + e) (S(u) is r or e r). A = 2*alpha is read from the parameter
    vector on the device (no host read of a parameter, so no synchronisation)."""
    A = tl.load(p_ptr)
    pid = tl.program_id(0).to(tl.int64)
    row = pid // nb
    cols = (pid % nb) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n
    offs = row * n + cols
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    d = (x - tl.load(thi_ptr + row)) - tl.load(tlo_ptr + row)
    # x - t beyond float32's range (|x| and |t| both near its limit): clamped, so that
    # u = A*d is at worst infinite (S(u) is then exactly 0 or 1) and no product meets inf * 0
    d = tl.minimum(tl.maximum(d, -3.4028234663852886e38), 3.4028234663852886e38)
    u = A * d
    if INTERPRET:  # the interpreter has no libdevice
        e = tl.exp(-tl.abs(u))
    else:  # libdevice expf (a few ulp); tl.exp is ex2.approx(u*log2(e)), off by ~|u|*6e-8 in the tails
        e = libdevice.exp(-tl.abs(u))
    r = tl.div_rn(1.0, 1.0 + e)  # IEEE division ('/' is div.full.f32 on NVIDIA)
    return pid, row, offs, mask, x, d, u, e, r


def _ash_fwd_kernel(x_ptr, y_ptr, thi_ptr, tlo_ptr, p_ptr, n, nb,
                    LEAKY: tl.constexpr, INTERPRET: tl.constexpr, BLOCK: tl.constexpr):
    pid, row, offs, mask, x, d, u, e, r = _gate(x_ptr, thi_ptr, tlo_ptr, p_ptr, n, nb, INTERPRET, BLOCK)
    y = x * tl.where(u >= 0, r, e * r)  # x*S(u)
    if LEAKY:
        y = tl.load(p_ptr + 1) * x + tl.load(p_ptr + 2) * y
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def _ash_bwd_reduce_kernel(x_ptr, g_ptr, thi_ptr, tlo_ptr, p_ptr, p1_ptr, p2_ptr, pl_ptr, n, nb,
                           NEED_A: tl.constexpr, NEED_L: tl.constexpr, INTERPRET: tl.constexpr,
                           BLOCK: tl.constexpr):
    pid, row, offs, mask, x, d, u, e, r = _gate(x_ptr, thi_ptr, tlo_ptr, p_ptr, n, nb, INTERPRET, BLOCK)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = x * (g * (e * r * r))  # x*q, q = g*S(u)*S(-u)
    tl.store(p1_ptr + pid, tl.reduce(w.to(tl.float64), 0, _add))
    if NEED_A:
        tl.store(p2_ptr + pid, tl.reduce((w * d).to(tl.float64), 0, _add))
    if NEED_L:
        sm = tl.where(u >= 0, e * r, r)  # S(-u)
        tl.store(pl_ptr + pid, tl.reduce(((g * sm) * x).to(tl.float64), 0, _add))


def _ash_bwd_grad_kernel(x_ptr, g_ptr, gx_ptr, thi_ptr, tlo_ptr, p_ptr, k0_ptr, k1_ptr, n, nb,
                         LEAKY: tl.constexpr, INTERPRET: tl.constexpr, BLOCK: tl.constexpr):
    pid, row, offs, mask, x, d, u, e, r = _gate(x_ptr, thi_ptr, tlo_ptr, p_ptr, n, nb, INTERPRET, BLOCK)
    cA = tl.load(p_ptr + 3)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    gs = g * tl.where(u >= 0, r, e * r)  # g*S(u)
    q = g * (e * r * r)
    if LEAKY:
        gs = tl.load(p_ptr + 1) * g + tl.load(p_ptr + 2) * gs
    # path through mu and sigma: -(W/n)(1 + z^2 + z*d/sigma) = k0 + k1*d, per row from the caller
    gx = gs + cA * (x * q) + (d * tl.load(k1_ptr + row) + tl.load(k0_ptr + row))
    tl.store(gx_ptr + offs, gx.to(gx_ptr.dtype.element_ty), mask=mask)


_KERNELS: Dict[bool, Tuple] = {}


def _jit(fn, interpret: bool):
    """triton.jit(fn) as a compiled (JITFunction) or interpreted kernel, whatever the environment.

    triton.jit reads TRITON_INTERPRET when it wraps the function; pin it for the call.
    """
    import triton

    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"
    try:
        return triton.jit(fn)
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


def _kernels(mode: bool) -> Tuple:
    """(forward, backward reduce, backward grad) for the current mode (compiled or interpreted).

    The row sums use tl.reduce with our own combine function rather than tl.sum: tl.sum is a
    jit function of triton's standard library, built compiled or interpreted once, when triton
    is first imported, so it fails in the interpreter if triton was imported without
    TRITON_INTERPRET=1 (as under pytest, where other modules import triton first). The
    interpreter runs any combine function's Python body, so one compiled-mode ``_add`` serves
    both modes.
    """
    global tl, libdevice, _add
    ks = _KERNELS.get(mode)
    if ks is None:
        import triton.language as _tl
        from triton.language.extra import libdevice as _libdevice

        tl, libdevice = _tl, _libdevice
        if _add is None:
            _add = _jit(_add_combine, False)
        # each mode's kernels call that mode's _gate: copies of the kernel functions whose globals
        # bind it (the interpreter cannot call a helper jitted in compiled mode, nor the reverse)
        env = dict(globals(), _gate=_jit(_gate_parts, mode))
        ks = tuple(_jit(types.FunctionType(f.__code__, env, f.__name__, f.__defaults__, f.__closure__), mode)
                   for f in (_ash_fwd_kernel, _ash_bwd_reduce_kernel, _ash_bwd_grad_kernel))
        _KERNELS[mode] = ks
    return ks


# --- host side ---------------------------------------------------------------------------


def _block(n: int) -> int:
    b = _MIN_BLOCK
    while b < n and b < _MAX_BLOCK:
        b *= 2
    return b


def _split(t: Tensor) -> Tuple[Tensor, Tensor]:
    """float64 t as float32 t_hi + t_lo, contiguous (rows,) (:func:`ashlib.ops._common.split_threshold`)."""
    from ._common import split_threshold
    t_hi, t_lo = split_threshold(t.reshape(-1).to(torch.float64), torch.float32)
    return t_hi.contiguous(), t_lo.contiguous()


def _check(x2: Tensor, name: str = "x2") -> None:
    if x2.dim() != 2:
        raise ValueError(f"{name} must be 2-D (rows, n), got shape {tuple(x2.shape)}")
    if x2.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"{name}.dtype={x2.dtype} is not supported: expected one of {SUPPORTED_DTYPES}")


def _device_ctx(x: Tensor):
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def param_vector(alpha: Tensor, slope: Optional[Tensor], device) -> Tensor:
    """[A, ell, c, c*A] as a float32 device vector (A = 2*alpha, c = 1 - ell; ell = 0 for ASH),
    formed by tensor operations: the kernels load it, so no parameter is read on the host."""
    A = 2.0 * alpha.reshape(()).to(device=device, dtype=torch.float64)
    ell = torch.zeros_like(A) if slope is None else slope.reshape(()).to(device=device, dtype=torch.float64)
    c = 1.0 - ell
    return torch.stack([A, ell, c, c * A]).to(torch.float32)


def ash_forward(x2: Tensor, t: Tensor, alpha: Tensor, slope: Optional[Tensor]) -> Tensor:
    """ASH (``slope`` None) or Leaky ASH forward over the rows of ``x2``.

    x2: (rows, n), dtype float32/bfloat16/float16 (made contiguous if it is not); t: (rows, 1)
    float64 threshold ``mu + z*sigma``; alpha, slope: one-element tensors (read by the kernels on
    the device). Returns y (rows, n) in x2's dtype: ``y = x*S(2*alpha*(x - t))`` for ASH,
    ``y = x*(ell + (1 - ell)*S(...))`` for Leaky ASH.
    """
    _check(x2)
    x2 = x2.contiguous()
    rows, n = x2.shape
    y = torch.empty_like(x2)
    if rows == 0 or n == 0:
        return y
    p = param_vector(alpha, slope, x2.device)
    t_hi, t_lo = _split(t.to(x2.device))
    block = _block(n)
    nb = -(-n // block)
    interp = _interpret()
    fwd, _, _ = _kernels(interp)
    with _device_ctx(x2):
        fwd[(rows * nb,)](x2, y, t_hi, t_lo, p, n, nb,
                          LEAKY=slope is not None, INTERPRET=interp, BLOCK=block, **_LAUNCH)
    return y


def ash_backward(x2: Tensor, g2: Tensor, mu: Tensor, sigma: Tensor, z: Tensor, alpha: Tensor,
                 slope: Optional[Tensor], need_x: bool, need_a: bool, need_l: bool
                 ) -> Tuple[Optional[Tensor], Tensor, Optional[Tensor], Optional[Tensor]]:
    """Analytic backward of :func:`ash_forward`: ``(gx or None, R1, R2 or None, Rl or None)``.

    x2, g2: (rows, n) (g2 any supported dtype); mu, sigma: (rows, 1) float64 statistics; z,
    alpha, slope one-element tensors as in the forward. With A = 2*alpha, d = x - t,
    t = mu + z*sigma, u = A*d, q = g*S(u)*S(-u), c = 1 - ell (c = 1, ell = 0 for ASH), the row
    sums are (rows, 1) float64: ``R1 = sum x q`` (always), ``R2 = sum x q d`` (need_a),
    ``Rl = sum g x S(-u)`` (need_l and Leaky ASH); and gx (need_x), in x2's dtype, is
    ``g*(ell + c*S(u)) + c*A*x*q - (W/n)*(1 + z^2 + z*d/sigma)`` with ``W = c*A*R1``. Nothing
    here reads a tensor's value on the host.
    """
    _check(x2)
    _check(g2, "g2")
    if g2.shape != x2.shape:
        raise ValueError(f"g2 has shape {tuple(g2.shape)}, expected {tuple(x2.shape)} like x2")
    x2, g2 = x2.contiguous(), g2.contiguous()
    rows, n = x2.shape
    dev = x2.device
    leaky = slope is not None
    need_l = bool(need_l and leaky)
    f64 = torch.float64
    zt = z.reshape(()).to(device=dev, dtype=f64)
    At = 2.0 * alpha.reshape(()).to(device=dev, dtype=f64)
    ct = 1.0 - (slope.reshape(()).to(device=dev, dtype=f64) if leaky else torch.zeros_like(At))
    mu = mu.to(device=dev, dtype=f64).reshape(rows, 1)
    sigma = sigma.to(device=dev, dtype=f64).reshape(rows, 1)
    if rows == 0 or n == 0:
        zeros = torch.zeros(rows, 1, dtype=f64, device=dev)
        return (torch.empty_like(x2) if need_x else None, zeros, zeros.clone() if need_a else None,
                zeros.clone() if need_l else None)
    p = param_vector(alpha, slope, dev)
    t_hi, t_lo = _split(mu + zt * sigma)
    block = _block(n)
    nb = -(-n // block)
    interp = _interpret()
    _, red, grad = _kernels(interp)
    p1 = torch.empty(rows * nb, dtype=f64, device=dev)
    p2 = torch.empty_like(p1) if need_a else p1  # unused pointers alias p1 (never written)
    pl = torch.empty_like(p1) if need_l else p1
    with _device_ctx(x2):
        red[(rows * nb,)](x2, g2, t_hi, t_lo, p, p1, p2, pl, n, nb,
                          NEED_A=bool(need_a), NEED_L=need_l, INTERPRET=interp, BLOCK=block, **_LAUNCH)
    R1 = p1.view(rows, nb).sum(dim=1, keepdim=True)
    R2 = p2.view(rows, nb).sum(dim=1, keepdim=True) if need_a else None
    Rl = pl.view(rows, nb).sum(dim=1, keepdim=True) if need_l else None
    gx = None
    if need_x:
        from ._common import mean_sigma_path
        k0, k1 = (k.to(torch.float32).reshape(-1).contiguous() for k in mean_sigma_path(R1, sigma, zt, ct, At, n))
        gx = torch.empty_like(x2)
        with _device_ctx(x2):
            grad[(rows * nb,)](x2, g2, gx, t_hi, t_lo, p, k0, k1, n, nb,
                               LEAKY=leaky, INTERPRET=interp, BLOCK=block, **_LAUNCH)
    return gx, R1, R2, Rl
