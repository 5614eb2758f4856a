"""The sympy reference itself, checked against hand-computed values and identities."""

from __future__ import annotations

import math

import mpmath
import sympy as sp

from ashlib import symbolic as S


def test_hand_computed_values():
    mpmath.mp.dps = 50  # compare at the references' precision (reset below)
    try:
        _hand_computed_values()
    finally:
        mpmath.mp.dps = 15


def _hand_computed_values():
    assert S.evaluate("adaptive_gumbel", x=0.0, alpha=1.0) == mpmath.mpf(1) / 2
    # alpha = 2, x = 0: 1 - 3**(-1/2)
    assert abs(S.evaluate("adaptive_gumbel", x=0.0, alpha=2.0) - (1 - 1 / mpmath.sqrt(3))) < mpmath.mpf(10) ** -45
    # ASH at the threshold passes half of x
    assert S.evaluate("ash", x=3.0, t=3.0, alpha=7.0) == mpmath.mpf("1.5")
    # adaptive ReLU: x = 1, alpha = ln 2 -> 1 - 1/2
    assert abs(S.evaluate("adaptive_relu", x=1.0, alpha=math.log(2)) - mpmath.mpf(1) / 2) < 1e-15
    assert S.evaluate("adaptive_relu", x=-1.0, alpha=3.0) == 0
    assert abs(S.evaluate("k_from_z", z=1.959963984540054) - mpmath.mpf("0.025")) < 1e-15


def test_map_statistics_hand_computed():
    with mpmath.workdps(50):
        _map_statistics_hand_computed()


def _map_statistics_hand_computed():
    m, s = S.map_statistics([0.0, 2.0], eps=0.0)
    assert m == 1 and s == 1
    out = S.ash_map([0.0, 2.0], z=0.0, alpha=1.0, eps=0.0)
    # x = 2 is one sigma above mu = 1: 2 * S(2) ; x = 0: 0
    assert out[0] == 0 and abs(out[1] - 2 / (1 + mpmath.exp(-2))) < mpmath.mpf(10) ** -45


def test_jacobian_matches_finite_differences():
    xs, z, a = [0.3, -1.2, 2.0], 0.4, 1.7
    jac = S.ash_map_jacobian(xs, z, a)
    h = mpmath.mpf(10) ** -20
    with mpmath.workdps(60):
        for j in range(3):
            up = list(map(mpmath.mpf, xs))
            dn = list(map(mpmath.mpf, xs))
            up[j] += h
            dn[j] -= h
            fu = S.ash_map(up, z, a, dps=60)
            fd = S.ash_map(dn, z, a, dps=60)
            for i in range(3):
                fd_ij = (fu[i] - fd[i]) / (2 * h)
                assert abs(fd_ij - jac["dx"][i][j]) < mpmath.mpf(10) ** -30


def test_tanh_form_equals_sigmoid_form():
    # App. A3 == A4, the identity the book's derivation notebook builds on
    assert sp.simplify((S.ASH_TANH - S.ASH).rewrite(sp.exp)) == 0
