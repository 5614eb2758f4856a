"""Fit the short polynomials of the native element-wise kernels (ashlib/ops/native/elementwise_cpu.c).

    python scripts/fit_polynomials.py

prints each polynomial's coefficients (highest degree first, as the C tables hold them) and its
largest weighted error on its interval, in exact arithmetic. The procedure: the target function
taken from mpmath at 30 digits on 2000 Chebyshev nodes of the interval, then a weighted least-squares
fit refined by Lawson's iteration (the weights of the worst nodes grow until the error equioscillates,
which approaches the minimax polynomial). tests/test_native_elementwise.py checks the constants in
the C file against mpmath with the bounds given here, so a table edited by hand fails there.

- EXPM1_POLY: (e^r - 1 - r)/r^2 on |r| <= ln2/2, degree 4, weighted so that the error is relative
  to expm1(r) itself (what expm1_f32 adds to r).
- ATANH_POLY: (atanh(s)/s - 1)/s^2 as a polynomial in u = s^2, s = z/(2 + z) for the log1p
  reduction z in [sqrt(1/2) - 1, sqrt(2) - 1], degree 2, weighted by u (the error relative to
  atanh(s)/s, what log1p_f32 multiplies 2s by).
- EXP5_POLY: e^r on |r| <= ln2/2 as 1 + r Q(r), degree 5 with the constant term fixed at 1 (exact
  in float32; a free one rounds to 1 + 2^-23 and doubles the error), relative error (adaptive
  Gumbel's exponentials).
"""
from __future__ import annotations

import mpmath as mp
import numpy as np

mp.mp.dps = 30

#: name -> (target f(t), interval, degree, weight w(t): the error reported is max |w (p - f)|[,
#: a fixed constant term c: then (f - c)/t is fitted with degree - 1 and weight w |t|])
LN2_HALF = float(mp.log(2)) / 2
S_MAX = 3 - 2 * float(mp.sqrt(2))  # s at z = sqrt(2) - 1 (and -s at z = sqrt(1/2) - 1)


def _expm1_tail(r):
    return (mp.expm1(r) - r) / r ** 2 if r != 0 else mp.mpf(1) / 2


def _atanh_tail(u):
    s = mp.sqrt(u)
    return (mp.atanh(s) / s - 1) / u if u != 0 else mp.mpf(1) / 3


POLYNOMIALS = {
    "EXPM1_POLY": (_expm1_tail, (-LN2_HALF, LN2_HALF), 4,
                   lambda r: abs(r) / abs(float(mp.expm1(r))) if r != 0 else 1.0),
    "ATANH_POLY": (_atanh_tail, (0.0, S_MAX ** 2), 2, lambda u: u),
    "EXP5_POLY": (mp.exp, (-LN2_HALF, LN2_HALF), 5, lambda r: float(mp.exp(-r)), 1.0),
}


def fit(name: str, nodes: int = 2000, iterations: int = 60):
    """(coefficients, highest degree first; the largest weighted error on the nodes)."""
    f, (lo, hi), degree, weight, *fixed = POLYNOMIALS[name]
    t = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes)
    w = np.array([weight(float(v)) for v in t])
    if fixed:  # p = c + t q(t): fit q to (f - c)/t, the error weighted by w |t|
        (c0,) = fixed
        target = np.array([float((f(mp.mpf(float(v))) - c0) / mp.mpf(float(v))) for v in t])
        w = w * np.abs(t)
        degree -= 1
    else:
        target = np.array([float(f(mp.mpf(float(v)))) for v in t])
    V = np.vander(t, degree + 1)
    lawson = np.full(nodes, 1.0 / nodes)
    for _ in range(iterations):
        sw = np.sqrt(lawson) * w
        c, *_ = np.linalg.lstsq(V * sw[:, None], target * sw, rcond=None)
        err = np.abs(V @ c - target) * w
        lawson = lawson * err
        lawson /= lawson.sum()
    if fixed:
        c = np.append(c, fixed[0])
    return c, float(err.max())


def max_error(name: str, coefficients, points: int = 20001) -> float:
    """The largest weighted error of ``coefficients`` (highest first) against mpmath on a dense grid."""
    f, (lo, hi), _, weight, *_ = POLYNOMIALS[name]
    worst = 0.0
    for v in np.linspace(lo, hi, points):
        p = mp.mpf(0)
        for c in coefficients:
            p = p * mp.mpf(float(v)) + mp.mpf(float(c))
        worst = max(worst, abs(float(p - f(mp.mpf(float(v))))) * weight(float(v)))
    return worst


if __name__ == "__main__":
    for name in POLYNOMIALS:
        c, e = fit(name)
        print(f"{name} (error {e:.2e}): {{{', '.join(f'{float(v)!r}f' for v in c)}}}")
