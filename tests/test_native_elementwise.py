"""The native CPU kernels of adaptive Gumbel, adaptive ReLU and Swish (ashlib/native/elementwise_cpu.c,
called by ashlib.ops.elementwise) against the ATen fused path and the float64 reference.

The float64 reference (impl="reference") is itself checked against 50-digit mpmath in
test_accuracy.py. No test here times anything: speed is measured by benchmarks/bench_activations.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

import ashlib.functional as AF
from ashlib.ops import elementwise as FE
from ashlib import reference as R
from ashlib.ops import native

pytestmark = pytest.mark.skipif(not native.available(), reason="native kernels not built (no C compiler?)")

OPS = {  # name: (fused call, reference call, _OPS key, parameter may be <= 0)
    "adaptive_gumbel": (lambda x, a: AF.adaptive_gumbel(x, a), lambda x, a: AF.adaptive_gumbel(x, a, impl="reference"),
                        "gumbel", False),
    "adaptive_relu": (lambda x, a: AF.adaptive_relu(x, a), lambda x, a: AF.adaptive_relu(x, a, impl="reference"),
                      "relu_exp", False),
    "adaptive_relu_logistic": (lambda x, a: AF.adaptive_relu(x, a, "logistic"),
                               lambda x, a: AF.adaptive_relu(x, a, "logistic", impl="reference"), "swish", False),
    "swish": (lambda x, a: AF.swish(x, a), lambda x, a: AF.swish(x, a, impl="reference"), "swish", True),
}
TOL = 1e-5  # the float32 contract


class Spy:
    """Counts the calls that the native kernels took, declined (-> ATen), and the float64 patches."""

    def __init__(self, monkeypatch):
        self.native = self.declined = self.aten = self.patches = 0
        nat, ev = FE._native_evaluate, FE._evaluate

        def native_evaluate(*args, **kw):
            out = nat(*args, **kw)
            if out is None:
                self.declined += 1
            else:
                self.native += 1
            return out

        def evaluate(*args, **kw):
            self.aten += 1
            return ev(*args, **kw)

        monkeypatch.setattr(FE, "_native_evaluate", native_evaluate)
        monkeypatch.setattr(FE, "_evaluate", evaluate)
        for key, terms in list(FE._PATCH_TERMS.items()):
            def counted(*args, _terms=terms, **kw):
                self.patches += 1
                return _terms(*args, **kw)
            monkeypatch.setitem(FE._PATCH_TERMS, key, counted)


def _aten(monkeypatch):
    """Make the fused ops take the ATen path (as without the library)."""
    monkeypatch.setattr(FE, "_native_lib", lambda x: None)


def _run(fn, x, a, up=None):
    """y, dL/dx, dL/da with L = sum(up * y) (up = 1 if None: an expanded, stride-0 gradient)."""
    xx = x.detach().clone().requires_grad_()
    aa = a.detach().clone().requires_grad_()
    y = fn(xx, aa)
    if up is None:
        y.sum().backward()
    else:
        y.backward(up)
    return y.detach(), xx.grad, aa.grad


def _relerr(ours, ref, floor=1e-30):
    ours, ref = ours.double(), ref.double()
    keep = ref.abs() >= floor
    if not bool(keep.any()):
        return 0.0
    return float(((ours - ref).abs() / ref.abs())[keep].max())


def _ref(op, x, a, up):
    """float64 reference: y, dL/dx, and dL/da reduced to a's shape (from per-element terms)."""
    ref = OPS[op][1]
    xd = x.double().requires_grad_()
    ad = a.double().expand(x.shape).clone().requires_grad_()
    y = ref(xd, ad)
    gx, ga = torch.autograd.grad(y, (xd, ad), up.double())
    return y.detach(), gx, ga.sum_to_size(a.shape)


def _bulk_and_extremes(n, seed, scale=3.0):
    """Random bulk plus a tenth as many extremes: log-uniform magnitudes over the float32 range,
    both signs, and the values where the kernels switch formulas."""
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    bulk = torch.randn(n, generator=g, dtype=d) * scale
    m = n // 10
    ext = torch.sign(torch.randn(m, generator=g, dtype=d)) * 10 ** (torch.rand(m, generator=g, dtype=d) * 76 - 38)
    special = torch.tensor([0.0, 3.4e38, -3.4e38, 1e-38, -1e-38, 60.0, 60.5, 87.0, -87.0, -88.0, -104.0, 88.5, 100.0,
                            -1.2784645427610738, 0.35, -0.35, 0.6931, -0.6931], dtype=d)
    rest = torch.cat([bulk, ext])
    return torch.cat([special, rest[torch.randperm(rest.numel(), generator=g)]]).to(torch.float32)


LAYOUTS = {  # x shape, parameter shape
    "scalar-1d": ((1537,), ()),
    "per-channel-conv": ((3, 5, 17, 31), (1, 5, 1, 1)),
    "per-channel-no-batch-dim": ((3, 5, 17, 31), (5, 1, 1)),
    "per-feature-mlp": ((37, 101), (1, 101)),
    "per-feature-1d-param": ((37, 101), (101,)),
    "short-runs": ((4, 6, 3, 2), (1, 6, 1, 1)),  # inner = 6 < 16: the parameter is repeated per element
    "per-row": ((9, 5, 7), (9, 5, 1)),
    "per-element": ((6, 7, 11), (6, 7, 11)),
    "scalar-0d-x": ((), ()),
}


def _param_values(shape, seed, lo=0.05, hi=20.0):
    g = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    v = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * (math.log(hi) - math.log(lo)) + math.log(lo))
    return v.reshape(shape).to(torch.float32)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("op", sorted(OPS))
def test_native_matches_reference_and_aten(op, layout, monkeypatch):
    """Every parameter layout: the native path is taken, and y, dL/dx and dL/dalpha are within
    the float32 contract of the float64 reference and close to the ATen fused path."""
    xs, ps = LAYOUTS[layout]
    n = math.prod(xs)
    x = _bulk_and_extremes(n, 1, scale=2.0)[:n].reshape(xs) if n > 40 else torch.tensor(0.7).reshape(xs)
    a = _param_values(ps, 2, 0.05, 5.0)
    up = torch.rand(xs, generator=torch.Generator().manual_seed(3), dtype=torch.float64).add(0.5).to(torch.float32)
    fn = OPS[op][0]
    spy = Spy(monkeypatch)
    got = _run(fn, x, a, up)
    assert spy.native == 2 and spy.aten == 0, (spy.native, spy.declined, spy.aten)
    ref = _ref(op, x, a, up)
    for name, o, r in zip(("y", "dx", "dalpha"), got, ref):
        assert o.shape == r.shape and o.dtype == torch.float32, name
        assert bool(torch.isfinite(o).all()), name
        assert _relerr(o, r) <= TOL, (name, _relerr(o, r))
    with monkeypatch.context() as m:
        _aten(m)
        aten = _run(fn, x, a, up)
    for name, o, r in zip(("y", "dx", "dalpha"), got, aten):
        assert _relerr(o, r) <= 2 * TOL, (name, _relerr(o, r))


ALPHAS = [1e-6, 1e-4, 1e-2, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0, 1e3]


@pytest.mark.parametrize("op", sorted(OPS))
def test_alpha_range_and_extreme_x_per_element(op, monkeypatch):
    """alpha over [1e-6, 1e3] and x over the float32 range, with alpha expanded to x's shape
    (its gradient is then per element) and as one 0-d tensor."""
    fn = OPS[op][0]
    x = _bulk_and_extremes(2000, 4)
    up = torch.rand(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).add(0.5).float()
    spy = Spy(monkeypatch)
    bad = {}
    for av in ALPHAS:
        a = torch.full(x.shape, av, dtype=torch.float32)
        got = _run(fn, x, a, up)
        ref = _ref(op, x, a, up)
        for name, o, r in zip(("y", "dx", "dalpha"), got, ref):
            e = _relerr(o, r)
            if not (bool(torch.isfinite(o).all()) and e <= TOL):
                bad[(name, av)] = e
        # one 0-d alpha (a single run over the whole tensor): the same values, the summed gradient
        y0, gx0, ga0 = _run(fn, x, torch.tensor(av), up)
        if not (torch.equal(y0, got[0]) and torch.equal(gx0, got[1])):
            bad[("0-d", av)] = "differs from the per-element alpha"
        if not _relerr(ga0, ref[2].sum()) <= TOL:
            bad[("0-d dalpha", av)] = _relerr(ga0, ref[2].sum())
    assert not bad, bad
    assert spy.native >= 2 * len(ALPHAS), (spy.native, spy.declined)  # most alphas run natively
    if OPS[op][2] != "relu_exp":  # x is finite: no hard element for the adaptive ReLU
        assert spy.patches > 0  # some elements went to float64


@pytest.mark.parametrize("op", sorted(OPS))
def test_hard_elements_are_patched_in_float64(op, monkeypatch):
    """A few hard elements (x far out in the tails) in a large tensor: the native path takes the
    call, patches exactly those in float64, and the per-channel gradient includes them."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4, 3, 50, generator=g)
    x[0, 0, :5] = torch.tensor([95.0, -95.0, 1e20, -1e20, 3e38])
    x[2, 1, 7] = 1e30
    a = torch.tensor([0.5, 1.3, 3.0]).reshape(1, 3, 1)
    up = torch.rand(x.shape, generator=g).add(0.5)
    spy = Spy(monkeypatch)
    got = _run(OPS[op][0], x, a, up)
    assert spy.native == 2 and spy.aten == 0
    ref = _ref(op, x, a, up)
    for name, o, r in zip(("y", "dx", "dalpha"), got, ref):
        assert bool(torch.isfinite(o).all()), name
        assert _relerr(o, r) <= TOL, (name, _relerr(o, r))
    if OPS[op][2] != "relu_exp":  # only non-finite x is hard for the adaptive ReLU
        assert spy.patches == 2


@pytest.mark.parametrize("op", sorted(OPS))
def test_mostly_hard_input_goes_to_aten(op, monkeypatch):
    """More than a quarter of hard elements: the kernels decline and the ATen path (one float64
    pass) computes the result."""
    x = torch.cat([torch.full((300,), 1e25), torch.randn(100)])
    if OPS[op][2] == "relu_exp":
        x[:300] = float("inf")
    a = torch.tensor(0.8)
    spy = Spy(monkeypatch)
    got = _run(OPS[op][0], x, a, torch.ones_like(x))
    assert spy.declined == 2 and spy.aten == 2
    with monkeypatch.context() as m:
        _aten(m)
        aten = _run(OPS[op][0], x, a, torch.ones_like(x))
    for o, r in zip(got, aten):
        assert torch.equal(o, r) or torch.allclose(o, r, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("op", sorted(OPS))
def test_non_finite_x_like_aten(op, monkeypatch):
    """inf and nan inputs are hard elements: their values come from the float64 formulas, as on
    the ATen path; the finite elements are unaffected."""
    x = torch.randn(200, generator=torch.Generator().manual_seed(7))
    x[3], x[50], x[77] = float("inf"), float("-inf"), float("nan")
    a = torch.tensor(1.5)
    got = _run(OPS[op][0], x, a, torch.ones_like(x))
    with monkeypatch.context() as m:
        _aten(m)
        aten = _run(OPS[op][0], x, a, torch.ones_like(x))
    fin = torch.ones_like(x, dtype=torch.bool)
    fin[[3, 50, 77]] = False
    for o, r in zip(got[:2], aten[:2]):
        assert torch.allclose(o[~fin], r[~fin], rtol=1e-6, atol=0, equal_nan=True)
        assert _relerr(o[fin], r[fin]) <= 2 * TOL


@pytest.mark.parametrize("op", sorted(OPS))
def test_non_contiguous_input_and_expanded_grad(op, monkeypatch):
    """A transposed / strided x gives the values of its contiguous copy; an expanded (stride-0)
    upstream gradient the values of the materialised one."""
    g = torch.Generator().manual_seed(8)
    base = torch.randn(6, 40, 5, generator=g) * 4
    x = base.transpose(1, 2)[:, :, ::2]  # (6, 5, 20), not contiguous
    assert not x.is_contiguous()
    a = _param_values((1, 5, 1), 9)
    spy = Spy(monkeypatch)
    fn = OPS[op][0]
    y1, gx1, ga1 = _run(fn, x, a)  # y.sum().backward(): grad is expanded
    y2, gx2, ga2 = _run(fn, x.contiguous(), a, torch.ones(x.shape))
    assert spy.native == 4 and spy.aten == 0
    assert torch.equal(y1, y2) and torch.equal(gx1, gx2)
    assert torch.allclose(ga1, ga2, rtol=1e-6, atol=0)
    ref = _ref(op, x, a, torch.ones(x.shape))
    up = torch.ones(x.shape)
    for name, o, r in zip(("y", "dx"), (y1, gx1), ref[:2]):
        assert _relerr(o, r) <= TOL, name
    # the parameter gradient sums terms of both signs here: compare relative to their magnitudes
    absterm = _ref(op, x, a, up)[2].abs()
    assert bool(((ga1.double() - ref[2]).abs() <= TOL * absterm + 1e-30).all())


@pytest.mark.parametrize("shapes", [((3, 7, 5003), (1, 7, 1)), ((301, 701), (1, 701))], ids=["runs", "rows"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_threads_split_the_elements(op, shapes, monkeypatch):
    """Above the parallel threshold the work is split over threads (split points fall inside
    channels, or inside rows of per-feature parameters): the same y and dL/dx, and dL/dalpha to
    rounding."""
    g = torch.Generator().manual_seed(10)
    x = torch.randn(shapes[0], generator=g) * 3
    a = _param_values(shapes[1], 11)
    up = torch.rand(x.shape, generator=g).add(0.5)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(OPS[op][0], x, a, up)
        torch.set_num_threads(3)
        three = _run(OPS[op][0], x, a, up)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one[0], three[0]) and torch.equal(one[1], three[1])
    assert torch.allclose(one[2], three[2], rtol=1e-6, atol=0)


@pytest.mark.parametrize("op", sorted(OPS))
def test_bfloat16_native_equals_aten_to_rounding(op, monkeypatch):
    """bfloat16 in and out, float32 inside: the native and ATen paths agree to a bfloat16 rounding
    (both round the same float32 value up to a few float32 ulps apart)."""
    g = torch.Generator().manual_seed(12)
    x = (torch.randn(4, 6, 9, 9, generator=g) * 4).to(torch.bfloat16)
    a = _param_values((1, 6, 1, 1), 13).to(torch.bfloat16)
    up = torch.rand(x.shape, generator=g).add(0.5).to(torch.bfloat16)
    spy = Spy(monkeypatch)
    got = _run(OPS[op][0], x, a, up)
    assert spy.native == 2 and spy.aten == 0
    with monkeypatch.context() as m:
        _aten(m)
        aten = _run(OPS[op][0], x, a, up)
    for name, o, r in zip(("y", "dx", "dalpha"), got, aten):
        assert o.dtype == torch.bfloat16 and o.shape == r.shape
        assert torch.allclose(o.float(), r.float(), rtol=2 ** -7, atol=1e-30), name


def test_parameter_outside_the_kernel_range_goes_to_aten(monkeypatch):
    """alpha below 2^-30 or above 2^30 (finite, positive: valid) and |beta| above 2^30 are
    outside the kernels' range: those calls take the ATen path. A negative beta is native."""
    x = torch.randn(50, generator=torch.Generator().manual_seed(14))
    cases = [("adaptive_gumbel", torch.tensor(1e-12)), ("adaptive_relu", torch.tensor([[2e9]])),
             ("swish", torch.tensor(-3e9))]
    for op, a in cases:
        spy = Spy(monkeypatch)
        got = _run(OPS[op][0], x.reshape(-1, 50) if a.dim() == 2 else x, a, None)
        assert spy.declined == 2 and spy.aten == 2, op
        for t in got:
            assert bool(torch.isfinite(t).all()), op
    spy = Spy(monkeypatch)
    _run(OPS["swish"][0], x, torch.tensor(-0.7), None)
    assert spy.native == 2


def test_invalid_alpha_still_raises():
    """Through ashlib.functional and through the operators directly (where the check of a
    float32 alpha is left to the kernels)."""
    x = torch.randn(10)
    bads = (torch.tensor(-1.0), torch.tensor(float("nan")), torch.tensor(float("inf")),
            torch.tensor([0.5, 0.0]).reshape(1, 2), torch.tensor([0.5, -2.0]).reshape(1, 2).requires_grad_())
    for bad in bads:
        xb = x.reshape(5, 2) if bad.dim() else x
        for fn in (AF.adaptive_gumbel, AF.adaptive_relu, FE.adaptive_gumbel, FE.adaptive_relu,
                   lambda xx, aa: AF.adaptive_relu(xx, aa, "logistic")):
            with pytest.raises(ValueError, match="alpha"):
                fn(xb, bad)


def test_saved_tensors_are_x_and_the_parameter():
    x = torch.randn(8, 16, 4, 4, requires_grad=True)
    a = torch.full((1, 16, 1, 1), 0.7, requires_grad=True)
    for op in OPS:
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            y = OPS[op][0](x, a)
        assert any(t.data_ptr() == x.data_ptr() for t in saved)
        assert sum(t.numel() for t in saved) <= x.numel() + 4 * a.numel()  # + the parameter's own casts
        y.sum().backward()


def test_polynomial_tables_in_the_c_file_meet_their_stated_error():
    """EXPM1_POLY, ATANH_POLY and EXP5_POLY as the C file holds them (rounded to float32) against mpmath on a
    dense grid, with the weights of scripts/fit_polynomials.py: a table edited by hand, or one
    that no longer matches its comment, fails here."""
    import importlib.util
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("fit_polynomials", os.path.join(root, "scripts", "fit_polynomials.py"))
    fp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fp)
    with open(os.path.join(root, "ashlib", "ops", "native", "elementwise_cpu.c")) as fh:
        src = fh.read()
    # the comments say 6.2e-8, 8.1e-10 and 9.2e-8 before rounding
    bounds = {"EXPM1_POLY": 8e-8, "ATANH_POLY": 1e-9, "EXP5_POLY": 1e-7}
    for name, bound in bounds.items():
        body = re.search(name + r"\[(\d+)\] = \{([^}]*)\}", src)
        coefficients = [float(torch.tensor(float(v.strip().rstrip("f")), dtype=torch.float32))
                        for v in body.group(2).split(",")]
        assert len(coefficients) == int(body.group(1)) == fp.POLYNOMIALS[name][2] + 1
        assert fp.max_error(name, coefficients, points=4001) <= bound, name
        # and the script still produces them (to float32)
        refit, _ = fp.fit(name)
        assert torch.equal(torch.tensor(refit, dtype=torch.float32), torch.tensor(coefficients, dtype=torch.float32))


def test_gumbel_dalpha_across_the_series_switch_and_for_tiny_q(monkeypatch):
    """dy/dalpha of the adaptive Gumbel where the native backward switches formulas (q = alpha e^x
    = 13/32) and where q is so small that q^2 underflows in float32 while h/alpha^2 is still above
    1e-30 (alpha = 2^-30, 1e-6): per element, against the float64 reference, all in the kernels
    (q up to where L = log1p(q)/alpha reaches 10 and the element would go to float64)."""
    fn = OPS["adaptive_gumbel"][0]
    spy = Spy(monkeypatch)
    bad = {}
    for av in (2.0 ** -30, 1e-6, 1e-3, 1.0, 37.0, 1e3):
        a32 = float(torch.tensor(av, dtype=torch.float32))
        q_max = 100.0 if a32 > 1 else min(100.0, math.expm1(9.0 * a32))
        q = torch.logspace(-24, math.log10(q_max), 4001, dtype=torch.float64)
        if q_max > 0.5:
            q = torch.cat([q, 13 / 32 * (1 + torch.linspace(-1e-5, 1e-5, 201, dtype=torch.float64))])
        x = torch.log(q / a32).float()
        a = torch.full(x.shape, av, dtype=torch.float32)
        up = torch.ones_like(x)
        got, ref = _run(fn, x, a, up), _ref("adaptive_gumbel", x, a, up)
        for name, o, r in zip(("y", "dx", "dalpha"), got, ref):
            e = _relerr(o, r)
            if not e <= TOL:
                bad[(name, av)] = e
    assert not bad, bad
    assert spy.native == 12 and spy.aten == 0 and spy.patches == 0, (spy.native, spy.aten, spy.patches)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gumbel_plain_blocks_give_the_bits_of_the_capped_path(dtype):
    """Adaptive Gumbel's kernels run a block of a per-channel run without its caps (no hard-element
    test, no clamps, no x - 60 term) when every x of it is finite and in [-87, min(t(a), 60)].
    Channel 1 repeats channel 0 (same alpha) except for one element in each block that forces the
    capped path (x = -90, below the exponential's range; x = 100, hard; x = 70, above 60 but below
    t(a) for alpha = 9): every other element must come out with the same bits in both channels, and
    channel 0 within the float32 contract of the float64 reference."""
    lib = native.library()
    suf = native.DTYPE_SUFFIX[dtype]
    hw = 1100  # blocks [0, 512), [512, 1024), [1024, 1100) of each run
    g = torch.Generator().manual_seed(21)
    alphas = torch.tensor([0.7, 0.7, 9.0, 9.0], dtype=torch.float32)
    base = (torch.randn(2, hw, generator=g, dtype=torch.float64) * 2.5).clamp(-7, 7)  # t(0.7) = 7.36
    x = torch.stack([base[0], base[0], base[1] + 20, base[1] + 20]).unsqueeze(0).clone()  # (1, 4, hw)
    forced = {1: {100: -90.0, 700: 100.0, 1050: -1e30}, 3: {30: 70.0, 600: float("nan"), 1090: 59.0 + 40}}
    for c, cols in forced.items():
        for j, v in cols.items():
            x[0, c, j] = v
    x = x.to(dtype).contiguous()
    up = (torch.rand(1, 2, hw, generator=g, dtype=torch.float64) + 0.5).repeat_interleave(2, dim=1).to(dtype)
    y, gx = torch.empty_like(x), torch.empty_like(x)
    acc = torch.zeros(4, dtype=torch.float64)
    n = x.numel()
    hard_f = getattr(lib, "gumbel_fwd_" + suf)(0, n, hw, 4, x.data_ptr(), y.data_ptr(), alphas.data_ptr())
    hard_b = getattr(lib, "gumbel_bwd_" + suf)(0, n, hw, 4, x.data_ptr(), up.data_ptr(), gx.data_ptr(),
                                               alphas.data_ptr(), acc.data_ptr())
    assert hard_f == hard_b == 3  # x = 100 (alpha 0.7), nan, and 99 (> t(9) = 87.8)
    keep = torch.ones(hw, dtype=torch.bool)
    for c, cols in forced.items():
        keep[list(cols)] = False
    for c0, c1 in ((0, 1), (2, 3)):
        for out in (y, gx):
            a0, a1 = out[0, c0][keep], out[0, c1][keep]
            assert torch.equal(a0.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                               a1.view(torch.int16 if dtype == torch.bfloat16 else torch.int32))
    if dtype == torch.float32:
        a = alphas.reshape(1, 4, 1)
        ry, rgx, rga = _ref("adaptive_gumbel", x[:, ::2], a[:, ::2], up[:, ::2])
        assert _relerr(y[:, ::2], ry) <= TOL and _relerr(gx[:, ::2], rgx) <= TOL
        assert _relerr(acc[::2].float(), rga.reshape(-1)) <= TOL  # channels 0 and 2: no hard element


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gumbel_plain_blocks_per_column_give_the_bits_of_the_capped_path(dtype):
    """The same for a parameter per column (an MLP's (N, C) activation with one alpha per feature:
    a block holds up to 512 columns of one row, each with its own limit). Row 1 repeats row 0
    except for one element per block that forces the capped path; every other element must come
    out with the same bits in both rows, and row 0 within the contract of the float64 reference."""
    lib = native.library()
    suf = native.DTYPE_SUFFIX[dtype]
    k = 700  # blocks [0, 512) and [512, 700) of each row
    g = torch.Generator().manual_seed(22)
    alphas = torch.exp(torch.linspace(math.log(0.5), math.log(20.0), k)).float()  # t(a) >= 5.2
    base = (torch.randn(k, generator=g, dtype=torch.float64) * 1.5).clamp(-5, 5)
    x = torch.stack([base, base]).clone()
    forced = {100: -95.0, 600: 1e4}  # below the exponential's range; hard
    for j, v in forced.items():
        x[1, j] = v
    x = x.to(dtype).contiguous()
    up = (torch.rand(1, k, generator=g, dtype=torch.float64) + 0.5).expand(2, k).to(dtype).contiguous()
    y, gx = torch.empty_like(x), torch.empty_like(x)
    acc = torch.zeros(k, dtype=torch.float64)
    n = x.numel()
    hard_f = getattr(lib, "gumbel_fwd_" + suf)(0, n, 1, k, x.data_ptr(), y.data_ptr(), alphas.data_ptr())
    hard_b = getattr(lib, "gumbel_bwd_" + suf)(0, n, 1, k, x.data_ptr(), up.data_ptr(), gx.data_ptr(),
                                               alphas.data_ptr(), acc.data_ptr())
    assert hard_f == hard_b == 1
    keep = torch.ones(k, dtype=torch.bool)
    keep[list(forced)] = False
    view = torch.int16 if dtype == torch.bfloat16 else torch.int32
    for out in (y, gx):
        assert torch.equal(out[0][keep].view(view), out[1][keep].view(view))
    if dtype == torch.float32:
        ry, rgx, _ = _ref("adaptive_gumbel", x[:1], alphas.reshape(1, k), up[:1])
        assert _relerr(y[:1], ry) <= TOL and _relerr(gx[:1], rgx) <= TOL


def test_gumbel_hard_elements_are_those_where_L_exceeds_10():
    """The kernels' hard elements of the adaptive Gumbel (the ones recomputed in float64) are the
    non-finite x and the x beyond the per-parameter limit where L = log1p(a e^x)/a reaches 10:
    every element with L > 10 (float64) is hard, and none with L below 10 (1 - 2e-5), over alpha
    from 2^-30 to 2^30 (both sides of the limit's two formulas, which switch at alpha = 1.75)."""
    lib = native.library()
    d = torch.float64
    alphas = torch.cat([2.0 ** torch.arange(-30, 30.5, 0.5, dtype=d),
                        torch.tensor([1e-6, 0.1, 1.7, 1.749, 1.75, 1.751, 1.8, 37.0, 1e3], dtype=d)]).float()
    rel = torch.tensor([-0.1, -1e-3, -1e-4, -2e-5, 1e-6, 1e-5, 1e-4, 1e-2, 1.0], dtype=d)
    a64 = alphas.double()
    # x_h = log(expm1(10 a) / a), where L = 10; 10 a - log a for large a (e^{-10 a} below 2^-60)
    xh = torch.where(a64 < 4, torch.log(torch.expm1(10 * a64.clamp(max=4)) / a64), 10 * a64 - torch.log(a64))
    x = (xh[:, None] * (1 + rel[None, :])).float()
    a = alphas[:, None].expand(x.shape)
    specials = torch.tensor([float("nan"), float("inf"), float("-inf"), -float("nan"), -1e30, 0.0])
    x = torch.cat([x.reshape(-1), specials])
    a = torch.cat([a.reshape(-1), torch.full((specials.numel(),), 1.3)]).contiguous()
    mask = torch.empty(x.numel(), dtype=torch.uint8)
    n = x.numel()
    count = lib.gumbel_hard_f32(0, n, 1, n, x.data_ptr(), a.data_ptr(), mask.data_ptr())
    hard = mask.bool()
    assert count == int(hard.sum())
    fin = torch.isfinite(x)
    L = R.softplus(x[fin].double() + torch.log(a[fin].double())) / a[fin].double()  # log1p(a e^x)/a
    assert bool(hard[fin][L > 10].all()), "an element with L > 10 was not hard"
    assert not bool(hard[fin][L < 10 * (1 - 2e-5)].any()), "an element with L < 10 was hard"
    assert bool(hard[~fin].all()) and int((~fin).sum()) == 4 and not bool(hard[-2:].any())  # nan, +-inf; not -1e30, 0
    # both sides of the limit are probed for every alpha
    assert int((L > 10).sum()) >= 4 * alphas.numel() and int((L < 10 * (1 - 2e-5)).sum()) >= 3 * alphas.numel()


def test_vectorised_expm1_and_log1p():
    """The polynomial expm1 and log1p of elementwise_cpu.c within 4 float32 ulps of float64."""
    lib = native.library()
    g = torch.Generator().manual_seed(15)
    d = torch.float64
    v = torch.cat([torch.rand(200000, generator=g, dtype=d) * 176 - 88,
                   torch.sign(torch.randn(200000, generator=g, dtype=d)) * 10 ** (torch.rand(200000, generator=g, dtype=d)
                                                                                   * 40 - 39),
                   torch.tensor([0.0, -1e30, -88.0, -87.0, 0.3465, -0.3466], dtype=d)]).float()
    q = torch.cat([10 ** (torch.rand(200000, generator=g, dtype=d) * 83 - 45), torch.rand(200000, generator=g, dtype=d) * 3,
                   torch.tensor([0.0, 2.0 ** 100, 0.41421356, 2.0 ** 24, 2.0 ** 24 + 2], dtype=d)]).float()
    for fn, inp, ref in ((lib.ew_expm1_f32, v, torch.expm1(v.double())), (lib.ew_log1p_f32, q, torch.log1p(q.double()))):
        out = torch.empty_like(inp)
        fn(inp.numel(), inp.data_ptr(), out.data_ptr())
        assert bool(torch.isfinite(out).all())
        assert _relerr(out, ref) <= 4 * 2 ** -24


def test_native_disabled_by_environment_uses_aten():
    """ASHLIB_NATIVE=0: no library, and the fused ops run on the ATen path with the same results."""
    code = r"""
import torch
import ashlib.functional as AF
from ashlib.ops import elementwise as FE, native
calls = {"native": 0, "aten": 0}
ev, nat = FE._evaluate, FE._native_evaluate
def evaluate(*a, **k):
    calls["aten"] += 1
    return ev(*a, **k)
def native_evaluate(*a, **k):
    calls["native"] += 1
    return nat(*a, **k)
FE._evaluate, FE._native_evaluate = evaluate, native_evaluate
x = torch.linspace(-5, 5, 101).reshape(1, 1, 101).requires_grad_()
a = torch.tensor([0.7]).reshape(1, 1, 1).requires_grad_()
y = AF.adaptive_gumbel(x, a) + AF.adaptive_relu(x, a) + AF.swish(x, a)
y.sum().backward()
print(native.library() is None, calls["native"], calls["aten"], repr(float(y.sum())), repr(float(a.grad.sum())))
"""
    env = dict(os.environ, ASHLIB_NATIVE="0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    disabled, n_native, n_aten, ysum, gsum = out.stdout.split()
    assert disabled == "True" and n_native == "0" and n_aten == "6"
    x = torch.linspace(-5, 5, 101).reshape(1, 1, 101).requires_grad_()
    a = torch.tensor([0.7]).reshape(1, 1, 1).requires_grad_()
    y = AF.adaptive_gumbel(x, a) + AF.adaptive_relu(x, a) + AF.swish(x, a)
    y.sum().backward()
    assert abs(float(y.detach().sum()) - float(ysum)) <= 1e-5 * abs(float(ysum))
    assert abs(float(a.grad.sum()) - float(gsum)) <= 1e-5 * abs(float(gsum))


@pytest.mark.parametrize("op", sorted(OPS))
def test_zero_signs_like_aten(op, monkeypatch):
    """Zeros come out with the ATen path's signs (adaptive ReLU and Gumbel: +0 for x <= 0 and far
    in the left tail, as the module docstrings show)."""
    x = torch.tensor([-3.0, -0.0, 0.0, -1e-30, -200.0, -1e30, 1e-30, 2.0])
    a = torch.tensor(2.0)
    y = OPS[op][0](x, a)
    with monkeypatch.context() as m:
        _aten(m)
        ya = OPS[op][0](x, a)
    assert torch.equal(torch.signbit(y), torch.signbit(ya)), (y, ya)


@pytest.mark.parametrize("op", sorted(OPS))
def test_gradient_of_one_input_only(op, monkeypatch):
    """Only x or only the parameter requiring grad: the backward computes just that one, with
    the values of the full backward."""
    g = torch.Generator().manual_seed(16)
    x = torch.randn(5, 4, 300, generator=g) * 3
    a = _param_values((1, 4, 1), 17)
    up = torch.rand(x.shape, generator=g).add(0.5)
    spy = Spy(monkeypatch)
    _, gx, ga = _run(OPS[op][0], x, a, up)
    xx = x.clone().requires_grad_()
    (gx1,) = torch.autograd.grad(OPS[op][0](xx, a), xx, up)
    aa = a.clone().requires_grad_()
    (ga1,) = torch.autograd.grad(OPS[op][0](x, aa), aa, up)
    assert spy.native == 6 and spy.aten == 0
    assert torch.equal(gx1, gx)
    assert torch.allclose(ga1, ga, rtol=1e-6, atol=0)
