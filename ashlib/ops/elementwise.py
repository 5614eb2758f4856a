"""Fused adaptive Gumbel, adaptive ReLU and Swish: custom autograd Functions in the input's dtype.

The reference forms in :mod:`ashlib.functional` evaluate float32 (and half) inputs in float64
through a chain of autograd operations. The Functions here compute in the input's own dtype
(float32 for float32, float32 for half and bfloat16, float64 for float64), save only ``x`` and
the parameter, recompute the intermediates in backward from analytic derivatives, and still meet
the numerical contract of DESIGN.md (1e-5 relative in float32, 1e-12 in float64, wherever the
reference is >= 1e-30; finite everywhere).

They do so by choosing forms whose float32 rounding is not amplified, and by sending the few
elements where float32 genuinely cannot reach 1e-5 to the same formulas evaluated in float64
(a masked subset, found after a cheap global range check that usually says "none"):

* **Swish** ``x S(u)``, ``u = beta x``: ``dy/dx = silu'(u)`` and ``dy/dbeta = x^2 S(u) S(-u)``, the
  product of sigmoids taken from ``softplus_backward`` with ``beta = +-1`` (each factor to full
  relative accuracy, no ``1 - S``). The rounding of ``u`` costs ``|u| * 2**-24`` relative in
  ``exp(-|u|)``; for ``|u| > 80`` (or ``|x| > 1e18``, where ``x^2`` overflows) the element is
  evaluated in float64.
* **Adaptive ReLU** (exponential CDF) ``x (1 - e^{-u})``, ``u = alpha x`` for ``x > 0``:
  ``dy/dalpha = x^2 e^{-u}`` is formed as ``(x e^{-u/2})^2``, which neither overflows (x^2) nor
  underflows (e^{-u}) where the product is a normal number, so no element needs float64:
  ``u``'s rounding is at most 2**-18 relative in ``e^{-u}`` wherever the result is >= 1e-30.
* **Adaptive Gumbel** ``1 - e^{-L}``, ``L = log1p(q)/alpha``, ``q = alpha e^x`` (formed directly,
  not as ``exp(x + log alpha)``, whose exponent carries an absolute error ``ulp * |log alpha|``).
  The gradients carry ``e^{-L}``, whose relative error is ``L`` times that of ``L``: elements with
  ``L > 10`` are evaluated in float64 (with alpha ~ 1 that is x > 10: rare in a trained net).
  ``dL/dalpha = -(log1p(q) - q/(1+q)) / alpha^2`` cancels for small ``q``; there it is
  ``-e^{2x} g(q)`` with ``g`` from a short series in ``s = q/(2+q)`` (``log1p(q) = 2 atanh(s)``).

Parameters may be Python numbers, 0-d tensors or tensors broadcastable to ``x`` (per channel,
shape ``(1, C, 1, ...)``); their gradient is reduced to their own shape.

**Native CPU kernels.** For CPU float32 and bfloat16 inputs, outside ``torch.compile``, the same
formulas run as the C loops of ``ashlib/native/elementwise_cpu.c`` (one pass forward, one pass
backward for dy/dx and the parameter's gradient together) whenever :func:`ashlib.native.library`
loads them and the parameter is a scalar or varies along one contiguous block of x's dims (per
channel, per row, per element) within the range where no float32 intermediate overflows
(Gumbel and ReLU: alpha in [2^-30, 2^30]; Swish: |beta| <= 2^30). The kernels count the hard
elements (the policy above, plus any non-finite x; for Gumbel they compare x with the x at which
``L`` reaches 10, computed once per parameter value and lowered by 2**-18 of itself, instead of
testing ``L``); when there are some, those elements, and
only those, are recomputed here by the float64 formulas. Swish's dy/dx near its zero is done in
the kernel (a Taylor polynomial in the exactly formed ``beta*x - root``). Everything else takes the
ATen path below, unchanged.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

from . import _common as C
from .. import reference as R

__all__ = ["adaptive_gumbel", "adaptive_relu", "swish", "SWISH_FLOAT64_ABOVE", "GUMBEL_FLOAT64_ABOVE", "OPS"]

Number = Union[int, float]

#: Swish: float32 elements with |beta*x| above this are evaluated in float64 (exp(-|u|) nears
#: the subnormals at 87 and the rounding of u costs up to |u| * 2**-24 relative).
SWISH_FLOAT64_ABOVE = 80.0
#: Swish: float32 elements with |x| above this are evaluated in float64 (x**2 overflows at 1.8e19).
_SWISH_X_BIG = 1e18
#: Adaptive Gumbel: float32 elements with L above this are evaluated in float64 (exp(-L) carries
#: L times the relative error of L, a few float32 ulps).
GUMBEL_FLOAT64_ABOVE = 10.0
#: Adaptive Gumbel: exp(x) is taken at min(x, 60); above, log1p(alpha e^x) = log1p(alpha e^60) + (x - 60)
#: to a relative error below 1/(alpha e^60) (1e-20 for alpha >= 1e-6).
_GUMBEL_X_CLAMP = 60.0
#: softplus_backward returns grad unchanged above this argument; S(40) rounds to 1 in float32 and float64.
_SP_THRESHOLD = 40.0
#: Swish: silu'(u) = S(u)(1 + u S(-u)) has a simple zero at u = _SILU_ROOT with slope 0.2178.
#: Near it any float32 evaluation (and the rounding of u = beta*x alone, up to 6e-8) leaves an
#: absolute error of a few 1e-8, i.e. a large relative one: elements with |u - root| below
#: _SILU_ROOT_BAND (where |dy/dx| < 0.011) get dy/dx in float64.
_SILU_ROOT = -1.2784645427610738
_SILU_ROOT_BAND = 0.05
#: Above this fraction of elements needing float64, the whole tensor is computed in float64.
_FLOAT64_ALL_FRACTION = 0.25


# --- the formulas, dtype-generic ------------------------------------------------------------
# Each returns a dict with "y" (if need_y), "gx" = g * dy/dx (if need_x) and "ga" = g * dy/dalpha
# (per element, if need_a), all in x's dtype. x and a are tensors of one dtype; a broadcasts to x.


def _swish_terms(x: Tensor, b: Tensor, g: Optional[Tensor], need_y: bool, need_x: bool, need_a: bool):
    u = b * x
    if x.dtype == torch.float64:
        # u = beta*x can overflow float64 (beta = 1e3, x near the max): inf would meet 0 as inf*0
        u = torch.clamp(u, -1e300, 1e300)
    out = {"u": u}
    if need_y:
        out["y"] = torch.sigmoid(u).mul_(x)
    if need_x:
        out["gx"] = torch.ops.aten.silu_backward(g, u)  # g * d silu(u)/du = g * dy/dx
    if need_a:
        p = torch.ops.aten.softplus_backward(g, u, 1.0, _SP_THRESHOLD)  # g*S(u)
        p = torch.ops.aten.softplus_backward(p, u, -1.0, _SP_THRESHOLD)  # g*S(u)*S(-u)
        out["ga"] = p.mul_(x).mul_(x)
    return out


def _relu_exp_terms(x: Tensor, a: Tensor, g: Optional[Tensor], need_y: bool, need_x: bool, need_a: bool):
    xp = torch.clamp(x, min=0)  # clamping first keeps exp(-alpha*x) from overflowing for x < 0
    u = a * xp
    out = {}
    if need_y:
        out["y"] = torch.expm1(-u).mul_(xp).neg_()
    if need_x or need_a:
        e2 = torch.exp(u * -0.5)  # e^{-u/2}: e^{-u} = e2^2 and x^2 e^{-u} = (x e2)^2 without over/underflow
        if need_x:
            # dy/dx = (1 - e^{-u}) + u e^{-u}; u is clamped so that an infinite u cannot give inf * 0
            t = torch.clamp(u, max=1e4).mul_(e2).mul_(e2)
            out["gx"] = torch.expm1(-u).sub_(t).mul_(g).neg_()
        if need_a:
            t = e2.mul_(xp)
            out["ga"] = t.mul_(t).mul_(g)
    return out


def _gser_coefficients(dtype: torch.dtype):
    # g(q) = (log1p(q) - q/(1+q)) / q^2 = (1-s)^2/2 * (1/(1+s) + s P(s^2)), P(t) = sum_k t^k/(2k+3),
    # s = q/(2+q). Below q0 the truncation error is < 1e-8 (float32: q0 = 0.5, s <= 0.2, 4 terms)
    # or < 1e-16 (float64: q0 = e^-2.5, s <= 0.042, 6 terms); above q0 the direct difference loses
    # at most a factor ~2/q0 to cancellation.
    if dtype == torch.float64:
        return 0.0820849986238988, [1.0 / (2 * k + 3) for k in range(6)]
    return 0.5, [1.0 / (2 * k + 3) for k in range(4)]


def _gumbel_terms(x: Tensor, a: Tensor, g: Optional[Tensor], need_y: bool, need_x: bool, need_a: bool,
                  x_max: Optional[float] = None):
    big = x_max is None or x_max > _GUMBEL_X_CLAMP
    xc = torch.clamp(x, max=_GUMBEL_X_CLAMP) if big else x
    ex = torch.exp(xc)
    q = a * ex  # alpha e^x formed directly: exp(x + log alpha) adds ulp * |log alpha| to the exponent
    lq = torch.log1p(q)
    if big:
        lq.add_(torch.clamp(x - _GUMBEL_X_CLAMP, min=0))
    L = lq / a
    out = {"L": L}
    if need_y:
        out["y"] = torch.expm1(-L).neg_()
    if need_x or need_a:
        E = torch.exp(-L)
        opq = q + 1.0
        if need_x:
            # dy/dx = e^{-L} * q/(alpha(1+q)) = e^{-L} e^x/(1+q)  (for x > 60 this is 1/(e^-60 + alpha))
            out["gx"] = (ex / opq).mul_(E).mul_(g)
        if need_a:
            # dy/dalpha = -e^{-L} h / alpha^2, h = log1p(q) - q/(1+q) >= 0
            q0, coef = _gser_coefficients(x.dtype)
            h = lq - q / opq
            large = h.mul_(E).div_(a).div_(a)  # (E h)/a/a: E = 0 where h/a^2 might overflow
            if float(q.min()) < q0:  # the series branch, for small q where h cancels
                s = q / (q + 2.0)
                t = s * s
                P = torch.full_like(t, coef[-1])
                for c in reversed(coef[:-1]):
                    P.mul_(t).add_(c)
                inner = P.mul_(s).add_(torch.reciprocal(s + 1.0))
                one_minus = torch.sub(1.0, s)
                gser = inner.mul_(one_minus).mul_(one_minus).mul_(0.5)
                # h/a^2 = e^{2x} g(q), as ((E e^x) g) e^x: no inf*0 (E = 0 first where e^x is huge);
                # clamped to the float max so that the blend below never meets inf * 0
                small = (E * ex).mul_(gser).mul_(ex).clamp_(max=torch.finfo(x.dtype).max)
                # blend with a 0/1 weight (q < q0) made by clamping: torch.where branches per element
                # and is several times slower on a mask that alternates at random
                w = torch.sub(q0, q).mul_(1e30).clamp_(0.0, 1.0)
                large = torch.lerp(large, small, w)
            out["ga"] = large.mul_(g).neg_()
    return out


# --- float64 for the elements float32 cannot do --------------------------------------------


def _swish_hard(x: Tensor, b: Tensor, u_or_none=None) -> Optional[Tensor]:
    """Mask of float32 elements that need float64, or None (the usual answer) when there are none."""
    lo, hi = torch.aminmax(x)
    xm = max(-float(lo), float(hi))
    bm = float(b.abs().max())
    if xm * bm <= SWISH_FLOAT64_ABOVE and xm <= _SWISH_X_BIG:
        return None
    ax = x.abs()
    return (ax * b.abs() > SWISH_FLOAT64_ABOVE) | (ax > _SWISH_X_BIG)


def _swish_root(u: Tensor) -> Tensor:
    """Mask of the elements near the zero of dy/dx (see _SILU_ROOT_BAND)."""
    return torch.add(u, -_SILU_ROOT).abs_() < _SILU_ROOT_BAND


def _gumbel_hard(L: Tensor) -> Optional[Tensor]:
    if float(L.max()) <= GUMBEL_FLOAT64_ABOVE:
        return None
    return ~(L <= GUMBEL_FLOAT64_ABOVE)  # NaN and inf included


def _patch(out: Dict[str, Tensor], mask: Tensor, terms: Callable, x: Tensor, a: Tensor, g: Optional[Tensor],
           flags) -> Dict[str, Tensor]:
    """Overwrite the masked elements of ``out`` with ``terms`` evaluated in float64."""
    idx = torch.nonzero(mask.reshape(-1)).squeeze(1)  # one scan of the mask; the rest is per hard element
    n_hard = idx.numel()
    if n_hard == 0:
        return out
    if n_hard > _FLOAT64_ALL_FRACTION * mask.numel():  # mostly hard: one float64 pass is cheaper
        full = terms(x.double(), a.double(), None if g is None else g.double(), *flags)
        return {k: (full[k].to(v.dtype) if k in full and k not in _AUX else v) for k, v in out.items()}
    # flat indices into x, g and the outputs (contiguous); the parameter is indexed only if it varies
    a_sub = a.reshape(()) if a.numel() == 1 else a.expand(x.shape)[torch.unravel_index(idx, x.shape)]
    sub = terms(x.reshape(-1)[idx].double(), a_sub.double(), None if g is None else g.reshape(-1)[idx].double(),
                *flags)
    for k, v in out.items():
        if k in sub and k not in _AUX:
            v.view(-1)[idx] = sub[k].to(v.dtype)
    return out


#: Intermediates that terms() hand back for the fix-up, not results
_AUX = ("L", "u")


# --- chunked evaluation and the autograd Functions --------------------------------------------

#: Elements per chunk of rows (dim 0): one chunk's dozen temporaries stay in a 1-2 MB cache
#: (measured on a 2-core EPYC, one thread: 2^18 gave 1.4-1.6x over whole-tensor passes).
DEFAULT_CHUNK_ELEMENTS = 1 << 18


def _fix_swish(x: Tensor, b: Tensor, g: Optional[Tensor], flags, out: Dict[str, Tensor]) -> Dict[str, Tensor]:
    mask = _swish_hard(x, b)
    if mask is not None:
        out = _patch(out, mask, _swish_terms, x, b, g, flags)
    if flags[1]:
        out = _patch(out, _swish_root(out["u"]), _swish_terms, x, b, g, (False, True, False))
    return out


def _fix_gumbel(x: Tensor, a: Tensor, g: Optional[Tensor], flags, out: Dict[str, Tensor]) -> Dict[str, Tensor]:
    mask = _gumbel_hard(out["L"])
    return out if mask is None else _patch(out, mask, _gumbel_terms, x, a, g, flags)


def _gumbel_chunk_terms(x, a, g, need_y, need_x, need_a):
    return _gumbel_terms(x, a, g, need_y, need_x, need_a, x_max=float(x.max()))


_OPS = {  # name: (terms, float32 fix-up or None)
    "swish": (_swish_terms, _fix_swish),
    "relu_exp": (_relu_exp_terms, None),
    "gumbel": (_gumbel_chunk_terms, _fix_gumbel),
}


def _evaluate(op: str, x: Tensor, a: Tensor, g: Optional[Tensor], need_y: bool, need_x: bool, need_a: bool,
              chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
    """y and/or dL/dx (x's dtype, x's shape) and dL/dalpha (a's shape), chunk by chunk along dim 0."""
    terms, fix = _OPS[op]
    cd = C.half_to_float(x.dtype)
    flags = (need_y, need_x, need_a)
    n0 = x.shape[0] if x.dim() > 0 else 1
    rows = max(1, chunk_elements // max(1, x.numel() // max(1, n0)))
    if x.dim() == 0 or rows >= n0:
        spans = [None]
    else:
        spans = [(r0, min(n0, r0 + rows)) for r0 in range(0, n0, rows)]
    a_rows = a.dim() == x.dim() and x.dim() > 0 and a.shape[0] != 1  # a varies along dim 0
    y = torch.empty_like(x) if need_y else None
    gx = torch.empty_like(x) if need_x else None
    ga = torch.zeros(a.shape, dtype=torch.float64, device=a.device) if need_a else None
    for span in spans:
        sl = slice(None) if span is None else slice(*span)
        xc = (x if span is None else x[sl]).to(cd)
        ac = a[sl] if a_rows and span is not None else a
        gc = None if g is None else (g if span is None else g[sl]).to(cd)
        out = terms(xc, ac, gc, *flags)
        if fix is not None and cd != torch.float64:
            out = fix(xc, ac, gc, flags, out)
        if need_y:
            (y if span is None else y[sl]).copy_(out["y"])
        if need_x:
            (gx if span is None else gx[sl]).copy_(out["gx"])
        if need_a:
            part = _reduce(out["ga"], ac.shape)
            if a_rows and span is not None:
                ga[sl] = part
            else:
                ga += part
    return y, gx, None if ga is None else ga.to(a.dtype)


def _reduce(ga: Tensor, shape: torch.Size) -> Tensor:
    """Per-element parameter gradient summed to the parameter's shape."""
    return ga if ga.shape == shape else ga.sum_to_size(shape)


# --- native CPU kernels (ashlib/native/elementwise_cpu.c) ------------------------------------

_NATIVE_NAMES = {"swish": "swish", "relu_exp": "relu", "gumbel": "gumbel"}
#: A parameter that is constant along runs shorter than this many contiguous elements is repeated
#: to one value per element of the run (the kernels then walk it as a vector): on short runs the
#: vector loops spend much of their time in set-up and remainders (measured on a 2-core EPYC:
#: runs of 16, 32, 64 cost 2x, 1.5x, 1.15x the repeated form; 256 the same).
_NATIVE_MIN_RUN = 128


#: The float64 formulas for the hard elements (as _patch uses them; _gumbel_terms without x_max
#: always takes exp(x) at min(x, 60), whatever the subset holds, nan included)
_PATCH_TERMS = {"swish": _swish_terms, "relu_exp": _relu_exp_terms, "gumbel": _gumbel_terms}


def _native_lib(x: Tensor):
    """The native CPU kernels when they can take x (see :func:`ashlib.native.library_for`), else None."""
    from . import native
    return native.library_for(x)


def _native_layout(x: Tensor, a: Tensor) -> Optional[Tuple[int, int]]:
    """(K, inner) such that element i of contiguous x uses parameter (i // inner) % K, or None
    when the parameter's non-1 dims are not one block of x's dims."""
    if a.numel() == 1:
        return 1, x.numel()
    shape = (1,) * (x.dim() - a.dim()) + tuple(a.shape)
    dims = [i for i, s in enumerate(shape) if s != 1]
    d0, d1 = dims[0], dims[-1] + 1
    if any(shape[i] != x.shape[i] for i in range(d0, d1)):
        return None
    return math.prod(x.shape[d0:d1]), math.prod(x.shape[d1:])


def _native_evaluate(lib, op: str, x: Tensor, a: Tensor, g: Optional[Tensor], need_y: bool, need_x: bool,
                     need_a: bool):
    """What :func:`_evaluate` returns, from the C kernels (float64 for the hard elements), or
    None when the kernels decline this call (parameter layout or range, mostly hard elements)."""
    from . import native
    from .native import blocks, parallel_rows
    layout = _native_layout(x, a)
    if layout is None or a.dtype != torch.float32 or not (need_y or need_x or need_a):
        return None
    K0, inner0 = layout
    K, inner = layout
    p = a.detach().reshape(-1)
    if K > 1 and 1 < inner < _NATIVE_MIN_RUN:
        p = p.reshape(K, 1).expand(K, inner).reshape(-1)
        K, inner = K * inner, 1
    p = C.plain_values(p).contiguous()
    xc = C.plain_values(x.detach()).contiguous()
    n = xc.numel()
    name, suf = _NATIVE_NAMES[op], native.DTYPE_SUFFIX[x.dtype]
    # the small per-call buffers first, the large outputs after them: a small block placed
    # after a large one keeps glibc from reusing the large one's space, which is then trimmed
    # and page-faulted in again on every call
    chunks = native.row_chunks(n, 1)
    accs = torch.zeros(chunks, K, dtype=torch.float64) if need_a else None
    ga_out = torch.empty(a.shape, dtype=a.dtype) if need_a else None  # filled from accs at the end
    gc = C.plain_values(g).to(x.dtype).contiguous() if (need_x or need_a) else None
    y = blocks.empty_like(xc) if need_y else None  # (the block cache: see native/blocks.py)
    gx = blocks.empty_like(xc) if need_x else None
    if need_x or need_a:
        fn = getattr(lib, f"{name}_bwd_{suf}")
        starts = [n * i // chunks for i in range(chunks)]

        def call(e0, e1):
            acc = accs[starts.index(e0)] if need_a else None
            res = fn(e0, e1, inner, K, xc.data_ptr(), gc.data_ptr(), gx.data_ptr() if need_x else None,
                     p.data_ptr(), acc.data_ptr() if need_a else None)
            return res, acc
    else:
        fn = getattr(lib, f"{name}_fwd_{suf}")

        def call(e0, e1):
            return fn(e0, e1, inner, K, xc.data_ptr(), y.data_ptr(), p.data_ptr()), None
    parts = parallel_rows(n, 1, call)
    counts = [c for c, _ in parts]
    if min(counts) < 0:  # the parameter is outside the kernels' range (or an allocation failed)
        if op != "swish":
            _check_positive_tensor(a)  # raises for alpha <= 0 or nan; else the ATen path takes it
        return None
    ga = accs.sum(0) if need_a and chunks > 1 else (accs[0] if need_a else None)
    n_hard = sum(counts)
    if n_hard:
        if n_hard > _FLOAT64_ALL_FRACTION * n:
            return None  # mostly hard: the ATen path does one float64 pass
        mask = torch.empty(n, dtype=torch.uint8)
        hard_fn = getattr(lib, f"{name}_hard_{suf}")
        parallel_rows(n, 1, lambda e0, e1: hard_fn(e0, e1, inner, K, xc.data_ptr(), p.data_ptr(), mask.data_ptr()))
        idx = torch.nonzero(mask).squeeze(1)
        k_idx = torch.div(idx, inner, rounding_mode="floor").remainder_(K)
        sub = _PATCH_TERMS[op](xc.reshape(-1)[idx].double(), p[k_idx].double(),
                          None if gc is None else gc.reshape(-1)[idx].double(), need_y, need_x, need_a)
        if need_y:
            y.view(-1)[idx] = sub["y"].to(y.dtype)
        if need_x:
            gx.view(-1)[idx] = sub["gx"].to(gx.dtype)
        if need_a:
            ga.index_add_(0, k_idx, sub["ga"])
    if ga is not None:
        if K != K0:
            ga = ga.reshape(K0, inner0).sum(1)
        ga = ga_out.copy_(ga.reshape(a.shape))
    return (None if y is None else _shaped(y, x), None if gx is None else _shaped(gx, x), ga)


def _shaped(t: Tensor, x: Tensor) -> Tensor:
    """t in x's shape, itself (not a view) when it already has it: an operator's output must not
    be a view, or in-place ops on it fail."""
    return t if t.shape == x.shape else t.reshape(x.shape)


def _native_checks(x: Tensor, a: Tensor) -> bool:
    """Whether the native kernels will take (x, a) and so check a's range themselves (they decline
    any alpha outside [2^-30, 2^30], nan included, and :func:`_native_evaluate` then raises)."""
    return a.dtype == torch.float32 and _native_lib(x) is not None and _native_layout(x, a) is not None


def _dispatch(op: str, x: Tensor, a: Tensor, g: Optional[Tensor], need_y: bool, need_x: bool, need_a: bool):
    """The native kernels where they take the call, else the chunked ATen path."""
    lib = _native_lib(x)
    if lib is not None:
        out = _native_evaluate(lib, op, x, a, g, need_y, need_x, need_a)
        if out is not None:
            return out
    return _evaluate(op, x, a, g, need_y, need_x, need_a)


def _check_positive_tensor(a: Tensor) -> None:
    """alpha > 0 and finite everywhere (read inside the kernel: CPU tensors only, where reading
    costs no device synchronisation; on CUDA a bad alpha shows as nan in the output)."""
    if a.device.type != "cpu":
        return
    if not bool(torch.all((a > 0) & torch.isfinite(a))):
        shown = C.plain_values(a.detach()).flatten()[:8].tolist()
        raise C.range_error("alpha", shown if a.numel() > 1 else shown[0], "finite and > 0")


# --- the registered operators ----------------------------------------------------------------------
#
# torch.ops.ashlib.{swish, adaptive_relu, adaptive_gumbel}(x, param) with param broadcastable to
# x, and their *_backward operators. The kernels choose between the native C loops and the
# chunked ATen path, and patch the elements float32 cannot represent in float64, inside the
# operator; torch.compile and torch.export see only the operator and its fake implementation.

#: operator name -> (internal kernel name, parameter name, the reference formula)
OPS = {
    "swish": ("swish", "beta", R.swish),
    "adaptive_relu": ("relu_exp", "alpha", R.adaptive_relu_exponential),
    "adaptive_gumbel": ("gumbel", "alpha", R.adaptive_gumbel),
}


def _register(name: str) -> None:
    kind, pname, ref = OPS[name]
    positive = pname == "alpha"

    def forward(x: Tensor, param: Tensor) -> Tensor:
        if x.numel() == 0:
            return torch.empty_like(x)
        a = param.to(C.half_to_float(x.dtype))
        if positive and not _native_checks(x, a):
            _check_positive_tensor(param)
        y = _dispatch(kind, x.contiguous(), a, None, True, False, False)[0]
        return y if y._base is None else y.clone()

    def backward(grad: Tensor, x: Tensor, param: Tensor, need: List[bool]) -> Tuple[Tensor, Tensor]:
        need_x, need_a = need
        if x.numel() == 0:
            return torch.zeros_like(x), torch.zeros_like(param)
        a = param.to(C.half_to_float(x.dtype))
        _, gx, ga = _dispatch(kind, x.contiguous(), a, grad.contiguous(), False, need_x, need_a)
        gx = _shaped(gx, x) if need_x else torch.empty_like(x)
        ga = ga.to(param.dtype) if need_a else torch.empty_like(param)
        return gx, ga

    forward.__doc__ = f"{name}(x, {pname}) with {pname} broadcastable to x (see ashlib.functional.{name})."
    backward.__doc__ = f"(dL/dx, dL/d{pname}) of {name}; entries not in ``need`` are left empty."

    def setup(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    def autograd_backward_with(grads_of):
        """The autograd backward of both routes; ``grads_of(grad, x, param, needs)`` is the
        backward operator (dispatched) or its kernel (the eager route)."""
        def autograd_backward(ctx, grad):
            x, param = ctx.saved_tensors
            needs = list(ctx.needs_input_grad[:2])
            if torch.is_grad_enabled():  # a gradient of this gradient will be taken
                from .ash_family import differentiable_grads
                gx, ga = differentiable_grads(ref, grad, (x, param), needs)
                return gx, ga
            gx, ga = grads_of(grad, x, param, needs)
            return (gx if needs[0] else None), (ga if needs[1] else None)
        return autograd_backward

    autograd_backward = autograd_backward_with(
        lambda grad, x, param, needs: getattr(torch.ops.ashlib, f"{name}_backward")(grad, x, param, needs))

    C.define_op(f"{name}(Tensor x, Tensor param) -> Tensor", forward, lambda x, param: torch.empty_like(x),
                autograd_backward, setup)
    C.define_op(f"{name}_backward(Tensor grad, Tensor x, Tensor param, bool[] need) -> (Tensor, Tensor)", backward,
                lambda grad, x, param, need: (torch.empty_like(x), torch.empty_like(param)))

    def eager_forward(ctx, x, param):
        ctx.save_for_backward(x, param)
        return forward(x, param)

    eager_backward = autograd_backward_with(backward)

    # the operator's kernels without the dispatcher, for plain eager calls (see
    # ashlib.ops._common.plain_eager): the same values, a fraction of the fixed cost per call
    _EAGER[name] = type(f"_Eager_{name}", (torch.autograd.Function,),
                        {"forward": staticmethod(eager_forward), "backward": staticmethod(eager_backward),
                         "operator": f"ashlib::{name}"})


#: operator name -> its eager torch.autograd.Function
_EAGER: Dict[str, type] = {}


for _name in OPS:
    _register(_name)


def dense_view(x: Tensor, p: Tensor):
    """(x', p', inverse permutation or None): x permuted into its memory order (a contiguous view
    for channels_last and other dense layouts) and p permuted alike, so that the element-wise
    kernels run without a copy and the result comes back in x's memory format."""
    if x.dim() < 2 or x.is_contiguous() or not C.is_dense(x):
        return x, p, None
    perm = C.memory_order(x)
    xp = x.permute(perm)
    if p.dim() > 0:
        p = p.reshape((1,) * (x.dim() - p.dim()) + tuple(p.shape)).permute(perm)
    inv = [0] * len(perm)
    for i, d in enumerate(perm):
        inv[d] = i
    return xp, p, inv


def call(name: str, x: Tensor, param: Tensor) -> Tensor:
    """Run ``torch.ops.ashlib.<name>`` on x in its memory format."""
    xp, pp, inv = dense_view(x, param)
    if x.device.type in C.EAGER_DEVICES and C.plain_eager(x, param):
        y = _EAGER[name].apply(xp, pp)
    else:
        y = getattr(torch.ops.ashlib, name)(xp, pp)
    return y if inv is None else y.permute(inv)


def swish(x: Tensor, beta: Union[Number, Tensor] = 1.0) -> Tensor:
    r"""Swish :math:`x\,S(\beta x)` through ``torch.ops.ashlib.swish``."""
    return call("swish", x, C.as_param(beta, x))


def adaptive_relu(x: Tensor, alpha: Union[Number, Tensor]) -> Tensor:
    r"""Adaptive ReLU (exponential CDF) through ``torch.ops.ashlib.adaptive_relu``."""
    return call("adaptive_relu", x, C.as_param(alpha, x))


def adaptive_gumbel(x: Tensor, alpha: Union[Number, Tensor]) -> Tensor:
    r"""Adaptive Gumbel :math:`1 - (1 + \alpha e^x)^{-1/\alpha}` through ``torch.ops.ashlib.adaptive_gumbel``.

    >>> import torch
    >>> round(float(adaptive_gumbel(torch.tensor(0.0), 1.0)), 6)
    0.5
    """
    return call("adaptive_gumbel", x, C.as_param(alpha, x))
