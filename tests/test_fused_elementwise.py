"""The fused adaptive Gumbel / adaptive ReLU / Swish (ashlib.ops.elementwise) against the
float64 reference implementation (itself checked against 50-digit mpmath in test_accuracy.py).

No test here times anything: speed is measured by benchmarks/bench_activations.py.
"""

from __future__ import annotations

import pytest
import torch

import ashlib
import ashlib.functional as AF
from ashlib.ops import elementwise as FE

OPS = {
    "adaptive_gumbel": lambda x, a, impl="fused": AF.adaptive_gumbel(x, a, impl=impl),
    "adaptive_relu": lambda x, a, impl="fused": AF.adaptive_relu(x, a, impl=impl),
    "adaptive_relu_logistic": lambda x, a, impl="fused": AF.adaptive_relu(x, a, "logistic", impl=impl),
    "swish": lambda x, a, impl="fused": AF.swish(x, a, impl=impl),
}
ROOT = -1.2784645427610738  # zero of d/du (u S(u))
ALPHAS = [1e-6, 1e-3, 0.1, 0.7, 1.0, 3.0, 40.0, 1e3]


def _inputs(dtype: torch.dtype, n: int = 3000, seed: int = 0) -> torch.Tensor:
    """Bending region, both tails, log-uniform magnitudes over the float32 range, and the
    neighbourhood of the zero of Swish's derivative (beta*x = -1.2785)."""
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    parts = [torch.randn(n, generator=g, dtype=d) * 3,
             torch.rand(n, generator=g, dtype=d) * 240 - 120,
             torch.sign(torch.randn(n, generator=g, dtype=d)) * 10 ** (torch.rand(n, generator=g, dtype=d) * 74 - 37),
             -1.2784645427610738 + torch.randn(n, generator=g, dtype=d) * 1e-3,
             torch.tensor([0.0, 1.0, -1.0, 3e38, -3e38, 1e-38, -1e-38, 60.0, 61.0, 88.0, 100.0], dtype=d)]
    return torch.cat(parts).to(dtype)


def _grads(fn, x: torch.Tensor, a: torch.Tensor, impl: str):
    """Output, dL/dx and the per-element dL/dalpha (alpha expanded to x's shape), L = sum(y)."""
    xx = x.detach().clone().requires_grad_()
    aa = a.detach().expand(x.shape).clone().requires_grad_()
    y = fn(xx, aa, impl)
    gx, ga = torch.autograd.grad(y.sum(), (xx, aa))
    return y.detach(), gx, ga


def _max_relerr(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.double(), ref.double()
    keep = ref.abs() >= 1e-30  # the contract's range
    if not bool(keep.any()):
        return 0.0
    return float(((ours - ref).abs() / ref.abs())[keep].max())


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)], ids=["float64", "float32"])
def test_fused_matches_float64_reference(op, dtype, tol):
    """Outputs and gradients (x and the parameter) of the fused op within the contract of the
    float64 reference evaluated at the same (dtype-rounded) inputs."""
    fn = OPS[op]
    x = _inputs(dtype)
    worst = {}
    for a in ALPHAS:
        a_t = torch.tensor(a, dtype=dtype)
        got = _grads(fn, x, a_t, "fused")
        ref = _grads(fn, x.double(), a_t.double(), "reference")
        for name, o, r in zip(("y", "dx", "dalpha"), got, ref):
            assert bool(torch.isfinite(o).all()), (op, a, name)
            if name == "dx" and dtype == torch.float64 and "gumbel" not in op and op != "adaptive_relu":
                # float64 evaluations of silu'(u) (the reference's included) have an absolute error
                # ~1e-16 near its zero at u = -1.2785; test_swish_near_root checks that region
                far = (x.double() * a_t.double() - ROOT).abs() > 1e-3
                o, r = o[far], r[far]
            worst[(name, a)] = _max_relerr(o, r)
    bad = {k: v for k, v in worst.items() if not v <= tol}
    assert not bad, bad


def test_swish_near_root_against_mpmath():
    """float32 dy/dx of Swish near its zero (beta*x = -1.2785), where float32 arithmetic alone
    leaves an absolute error of a few 1e-8: the fused op evaluates those elements in float64."""
    import mpmath as mp

    mp.mp.dps = 40
    xs = [ROOT + k * 2e-7 for k in range(-40, 41, 3)]
    for beta in (1.0, 0.37, 3.0):
        x = torch.tensor([v / beta for v in xs], dtype=torch.float32, requires_grad=True)
        b = torch.tensor(beta, dtype=torch.float32)
        AF.swish(x, b).sum().backward()
        for xv, gv in zip(x.detach().double().tolist(), x.grad.double().tolist()):
            u = mp.mpf(float(b)) * mp.mpf(xv)
            s = 1 / (1 + mp.exp(-u))
            ref = s * (1 + u * (1 - s))
            if abs(ref) >= 1e-30:
                assert abs(gv - ref) / abs(ref) <= 1e-5, (beta, xv, gv, ref)


@pytest.mark.parametrize("op", sorted(OPS))
def test_gradcheck_float64(op):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(2, 3, 4, generator=g, dtype=torch.float64) * 2).requires_grad_()
    for a in (torch.tensor(0.8, dtype=torch.float64, requires_grad=True),
              torch.rand(1, 3, 1, generator=g, dtype=torch.float64).add(0.2).requires_grad_()):
        assert torch.autograd.gradcheck(lambda xx, aa: OPS[op](xx, aa), (x, a), eps=1e-7, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_per_channel_alpha_gradient_shape_and_values(op, dtype):
    """alpha of shape (1, C, 1, 1) (as the modules pass it): gradient of shape (1, C, 1, 1) equal
    to the per-channel sum of the float64 reference's per-element gradients."""
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64) * 4).to(dtype)
    a = torch.tensor([0.05, 0.5, 2.0, 30.0], dtype=dtype).reshape(1, 4, 1, 1)
    up = torch.rand(x.shape, generator=g, dtype=torch.float64).add(0.5).to(dtype)  # one sign: no cancellation
    aa = a.clone().requires_grad_()
    y = OPS[op](x, aa)
    (ga,) = torch.autograd.grad(y, aa, up)
    assert ga.shape == a.shape and ga.dtype == dtype
    ad = a.double().requires_grad_()
    (ref,) = torch.autograd.grad(OPS[op](x.double(), ad, "reference"), ad, up.double())
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert _max_relerr(ga, ref) <= tol
    # alpha given per channel without the batch dim, (C, 1, 1), and as a full-shape tensor
    for shape in ((4, 1, 1), tuple(x.shape)):
        ab = a.reshape(4, 1, 1).expand(*shape[-3:]) if len(shape) == 3 else a.expand(x.shape)
        ab = ab.clone().requires_grad_()
        (gb,) = torch.autograd.grad(OPS[op](x, ab), ab, up)
        assert gb.shape == ab.shape
        assert _max_relerr(gb.sum_to_size(a.shape[1:]), ref.reshape(a.shape[1:])) <= tol


@pytest.mark.parametrize("op", ["agumbel", "arelu", "arelu-logistic"])
def test_modules_use_the_fused_path_and_train(op):
    m = ashlib.get_activation(op) if op != "agumbel" else ashlib.AdaptiveGumbel(num_parameters=4, alpha=0.5)
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    m(x).square().mean().backward()
    p = next(m.parameters())
    assert p.grad is not None and bool(torch.isfinite(p.grad).all())


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_finite_and_close(op, dtype):
    fi = torch.finfo(dtype)
    g = torch.Generator().manual_seed(4)
    x = torch.cat([torch.randn(200, generator=g, dtype=torch.float64) * 3,
                   torch.tensor([fi.max, -fi.max, fi.tiny, 0.0, 30.0, -30.0], dtype=torch.float64)]).to(dtype)
    a = torch.tensor(0.6, dtype=dtype)
    y, gx, ga = _grads(OPS[op], x, a, "fused")
    assert y.dtype == dtype and gx.dtype == dtype
    for t in (y, gx, ga):
        assert bool(torch.isfinite(t).all())
    ry, rgx, _ = _grads(OPS[op], x.double(), a.double(), "reference")
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    sl = slice(0, 200)  # the bulk; the extremes are checked for finiteness above
    assert torch.allclose(y[sl].double(), ry[sl], rtol=tol, atol=tol)
    assert torch.allclose(gx[sl].double(), rgx[sl], rtol=tol, atol=tol)


@pytest.mark.parametrize("op", sorted(OPS))
def test_torch_compile_matches_eager(op):
    fn = OPS[op]
    compiled = torch.compile(lambda xx, aa: fn(xx, aa), backend="aot_eager", fullgraph=False)
    x = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(5))
    a = torch.tensor([[0.3], [1.0], [5.0]]).requires_grad_()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    a1, a2 = a.detach().clone().requires_grad_(), a.detach().clone().requires_grad_()
    y1 = fn(x1, a1)
    y2 = compiled(x2, a2)
    assert torch.allclose(y1, y2, rtol=1e-6, atol=0)
    y1.sum().backward()
    y2.sum().backward()
    assert torch.allclose(x1.grad, x2.grad, rtol=1e-6, atol=1e-30)
    assert torch.allclose(a1.grad, a2.grad, rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_saves_only_x_and_the_parameter(op, dtype):
    x = torch.randn(8, 16, 4, 4, generator=torch.Generator().manual_seed(6)).to(dtype).requires_grad_()
    a = torch.full((1, 16, 1, 1), 0.7, dtype=dtype, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = OPS[op](x, a)
    nbytes = sum(t.numel() * t.element_size() for t in saved)
    assert nbytes <= x.numel() * x.element_size() + 4 * a.numel() * 8, [tuple(t.shape) for t in saved]
    assert any(t.data_ptr() == x.data_ptr() for t in saved)  # x itself, not a converted copy
    y.sum().backward()


def test_reference_impl_still_reachable_and_errors():
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    for op in OPS.values():
        assert torch.allclose(op(x, 0.5), op(x, 0.5, "reference"), rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="impl"):
        AF.swish(x, 1.0, impl="fast")
    with pytest.raises(ValueError, match="alpha"):
        AF.adaptive_gumbel(x, -1.0)
    with pytest.raises(ValueError, match="floating-point"):
        AF.adaptive_relu(torch.arange(3), 1.0)
    assert AF.swish(torch.empty(0), 1.0).shape == (0,)
    # hand-computed values: Gumbel at alpha = 1 is the sigmoid; adaptive ReLU at x = 1, alpha = ln 2 is 1/2
    assert abs(float(FE.adaptive_gumbel(torch.tensor(0.0, dtype=torch.float64), 1.0)) - 0.5) < 1e-15
    v = FE.adaptive_relu(torch.tensor(1.0, dtype=torch.float64), torch.log(torch.tensor(2.0, dtype=torch.float64)))
    assert abs(float(v) - 0.5) < 1e-15


def test_chunked_equals_single_pass():
    """Chunks along dim 0 (with a per-row alpha too) give the same values as one pass."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(9, 5, 7, generator=g) * 5
    up = torch.randn(x.shape, generator=g)
    for op in ("swish", "relu_exp", "gumbel"):
        for a in (torch.tensor(0.4), torch.rand(9, 5, 1, generator=g) + 0.1):
            full = FE._evaluate(op, x, a, up, True, True, True)
            small = FE._evaluate(op, x, a, up, True, True, True, chunk_elements=70)
            for u, v in zip(full, small):
                assert torch.allclose(u, v, rtol=1e-6, atol=0), op
