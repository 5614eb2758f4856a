"""Every functional op against 50-digit mpmath references from ashlib.symbolic.

Contract (DESIGN.md, "Numerical contract"): relative error <= 1e-12 in float64 and <= 1e-5
in float32 wherever |reference| >= 1e-30, for x across the dtype's finite range and alpha
in [1e-6, 1e3]; the same for the gradients with respect to x and every parameter.
"""

from __future__ import annotations

import pytest
import torch

import ashlib.functional as AF
from ashlib import symbolic as S

from .reference import ALPHAS, TOL, check_close, scalar_reference, x_grid

DTYPES = [torch.float64, torch.float32]

# (functional op, symbolic name, parameter symbol name)
SCALAR_OPS = {
    "adaptive_gumbel": (lambda x, a: AF.adaptive_gumbel(x, a), "adaptive_gumbel", "alpha"),
    "adaptive_relu": (lambda x, a: AF.adaptive_relu(x, a), "adaptive_relu", "alpha"),
    "adaptive_relu_logistic": (lambda x, a: AF.adaptive_relu(x, a, cdf="logistic"),
                               "adaptive_relu_logistic", "alpha"),
    "swish": (lambda x, b: AF.swish(x, b), "swish", "beta"),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", sorted(SCALAR_OPS))
def test_scalar_op_and_gradients_match_mpmath(op, dtype):
    fn, name, pname = SCALAR_OPS[op]
    xs = x_grid(dtype)
    tol = TOL[dtype]
    failures: list = []
    for a in ALPHAS:
        a_d = float(torch.tensor(a, dtype=dtype))  # the parameter as the dtype holds it
        x = torch.tensor(xs, dtype=dtype, requires_grad=True)
        p = torch.tensor(a_d, dtype=dtype, requires_grad=True)
        y = fn(x, p)
        # the gradient w.r.t. the scalar parameter of the whole sum mixes elements; take it per element
        gx, = torch.autograd.grad(y.sum(), x, retain_graph=True)
        gp_each = torch.autograd.functional.jacobian(lambda pp: fn(x.detach(), pp), p)
        assert bool(torch.isfinite(y).all() & torch.isfinite(gx).all() & torch.isfinite(gp_each).all()), \
            f"{op}: non-finite values at {pname}={a}"
        for i, xv in enumerate(xs):
            vals = {"x": xv, pname: a_d}
            check_close(float(y[i]), scalar_reference(name, **vals), tol, f"{op}({xv}, {a})", failures)
            check_close(float(gx[i]), scalar_reference(name, "x", **vals), tol, f"d{op}/dx({xv}, {a})", failures)
            check_close(float(gp_each[i]), scalar_reference(name, pname, **vals), tol,
                        f"d{op}/d{pname}({xv}, {a})", failures)
    assert not failures, f"{len(failures)} mismatches, first ones:\n" + "\n".join(failures[:15])


def _maps(dtype, seed=0):
    """Feature maps at every scale of the dtype, including maps far below sqrt(eps)."""
    g = torch.Generator().manual_seed(seed)
    fi = torch.finfo(dtype)
    scales = [1e-300, 1e-160, 1e-8, 1e-3, 1.0, 30.0, 1e50, 1e300] if dtype == torch.float64 else \
        [1e-37, 1e-8, 1e-3, 1.0, 30.0, 1e20, 1e37]
    out = []
    for s in scales:
        for n in (5, 32):
            x = torch.randn(2, n, generator=g, dtype=torch.float64) * s
            out.append(x.clamp(-fi.max, fi.max).to(dtype))
    out.append(torch.tensor([[fi.max, -fi.max, 0.5 * fi.max, 1.0, -3.0]], dtype=dtype))
    return out


ASH_CASES = [(z, a) for z in (-1.0, 0.0, 1.959963984540054) for a in (1e-6, 1.0, 10.0, 1e3)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["ash", "leaky_ash", "hard_ash"])
def test_ash_family_matches_mpmath_on_maps(kind, dtype):
    tol = TOL[dtype]
    failures: list = []
    for x in _maps(dtype):
        for z, a in ASH_CASES:
            # the parameters as the dtype holds them: the reference is taken at those values
            z, a = float(torch.tensor(z, dtype=dtype)), float(torch.tensor(a, dtype=dtype))
            if kind == "ash":
                y = AF.ash(x, z, a)
            elif kind == "leaky_ash":
                y = AF.leaky_ash(x, z, a, slope=0.05)
            else:
                y = AF.hard_ash(x, z)
            assert torch.isfinite(y).all()
            for row in range(x.shape[0]):
                xs = x[row].double().tolist()
                ref = S.ash_map(xs, z=z, alpha=a, kind=kind, slope=float(torch.tensor(0.05, dtype=dtype)))
                for i, r in enumerate(ref):
                    if kind == "hard_ash":
                        # hard ASH is exact: either x or 0, decided by x >= mu + z*sigma
                        if float(y[row, i]) != float(r):
                            # allowed only when x sits on the threshold within rounding
                            m, s = S.map_statistics(xs)
                            gap = abs(xs[i] - (m + z * s)) / (abs(m) + abs(z) * s + abs(xs[i]))
                            if gap > 64 * torch.finfo(dtype).eps:
                                failures.append(f"hard_ash row {row} elt {i}: {float(y[row, i])} vs {float(r)}")
                    else:
                        check_close(float(y[row, i]), r, tol, f"{kind} scale={float(x.abs().max()):.1e} z={z} "
                                    f"a={a} elt {i}", failures)
    assert not failures, f"{len(failures)} mismatches, first ones:\n" + "\n".join(failures[:15])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kind", ["ash", "leaky_ash"])
def test_ash_gradients_match_sympy_jacobian(kind, dtype):
    """d out_i / d x_j (through mu and sigma), d/dz, d/dalpha and d/dslope against sympy."""
    tol = TOL[dtype]
    g = torch.Generator().manual_seed(1)
    failures: list = []
    for scale in (1e-3, 1.0, 50.0):
        for z, a in [(0.0, 1.0), (1.0, 3.0), (-0.5, 0.2), (1.959963984540054, 1e3), (0.3, 1e-6)]:
            x = (torch.randn(5, generator=g, dtype=torch.float64) * scale).to(dtype)
            zt = torch.tensor(z, dtype=dtype, requires_grad=True)
            at = torch.tensor(a, dtype=dtype, requires_grad=True)
            st = torch.tensor(0.05, dtype=dtype, requires_grad=True)

            def f(xx, zz, aa, ss):
                return AF.ash(xx, zz, aa) if kind == "ash" else AF.leaky_ash(xx, zz, aa, ss)

            jac = torch.autograd.functional.jacobian(f, (x, zt, at, st))
            ref = S.ash_map_jacobian(x.double().tolist(), float(zt), float(at), kind=kind, slope_val=float(st))
            for i in range(5):
                for j in range(5):
                    check_close(float(jac[0][i, j]), ref["dx"][i][j], tol, f"{kind} dx[{i},{j}] s={scale} z={z} a={a}",
                                failures)
                check_close(float(jac[1][i]), ref["dz"][i], tol, f"{kind} dz[{i}] s={scale} z={z} a={a}", failures)
                check_close(float(jac[2][i]), ref["dalpha"][i], tol, f"{kind} dalpha[{i}] s={scale} z={z} a={a}",
                            failures)
                if kind == "leaky_ash":
                    check_close(float(jac[3][i]), ref["da"][i], tol, f"{kind} dslope[{i}]", failures)
    assert not failures, f"{len(failures)} mismatches, first ones:\n" + "\n".join(failures[:15])


def test_gradcheck_float64_every_op():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    p = lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)  # noqa: E731
    checks = {
        "ash": (lambda x, z, a: AF.ash(x, z, a), (x, p(0.4), p(1.7))),
        "leaky_ash": (lambda x, z, a, s: AF.leaky_ash(x, z, a, s), (x, p(-0.3), p(0.8), p(0.1))),
        "ash_dim": (lambda x, z, a: AF.ash(x, z, a, dim=2), (x, p(0.4), p(1.7))),
        "adaptive_gumbel": (AF.adaptive_gumbel, (x, torch.rand(1, 4, 1, generator=g, dtype=torch.float64)
                                                  .add(0.1).requires_grad_())),
        "adaptive_gumbel_small_alpha": (AF.adaptive_gumbel, (x, p(1e-4))),
        "adaptive_relu": (AF.adaptive_relu, (x, p(1.3))),
        "adaptive_relu_logistic": (lambda x, a: AF.adaptive_relu(x, a, cdf="logistic"), (x, p(0.7))),
        "swish": (AF.swish, (x, p(1.1))),
    }
    for name, (fn, args) in checks.items():
        assert torch.autograd.gradcheck(fn, args, eps=1e-7, atol=1e-8, rtol=1e-6), name


def test_z_from_k_against_mpmath():
    for k in [1e-12, 1e-6, 0.001, 0.025, 0.1, 0.5, 0.9, 0.975, 1 - 1e-9]:
        z = AF.z_from_k(k)
        ref = S.z_from_k(k)
        assert abs(z - float(ref)) <= 1e-12 * max(1.0, abs(float(ref))), (k, z, ref)
        # round trip through the symbolic k(z)
        assert abs(float(S.evaluate("k_from_z", z=z)) - k) <= 1e-12 * k + 1e-15
        assert abs(AF.k_from_z(z) - k) <= 1e-12 * k + 1e-15
    # the paper's example: k = 2.5 % gives z = 1.96
    assert round(AF.z_from_k(0.025), 2) == 1.96
    t = torch.tensor([0.025, 0.5], dtype=torch.float64)
    assert torch.allclose(AF.z_from_k(t), torch.tensor([1.959963984540054, 0.0], dtype=torch.float64))
    assert torch.allclose(AF.k_from_z(AF.z_from_k(t)), t)
