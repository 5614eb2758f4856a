"""The fused ASH / Leaky ASH (ashlib.ops.ash_family) against the straightforward reference and sympy.

No test here times anything: speed is measured by benchmarks/bench_activations.py.
"""

from __future__ import annotations

import pytest
import torch

import ashlib
import ashlib.functional as AF
from ashlib.ops import ash_family as FU
from ashlib import symbolic as S

from .reference import uses_operator
from .reference import rel_to_scale as _rel


def _p(v, dtype=torch.float64):
    return torch.tensor(v, dtype=dtype, requires_grad=True)


def _fused(kind, chunk=FU.DEFAULT_CHUNK_ELEMENTS, backend=None):
    if kind == "ash":
        return lambda x, z, a, *rest: FU.ash(x, z, a, chunk_elements=chunk, backend=backend)
    return lambda x, z, a, l: FU.leaky_ash(x, z, a, l, chunk_elements=chunk, backend=backend)


def _native_ok() -> bool:
    return FU.select_backend(torch.zeros(1)) == "native"


#: the CPU float32 implementations: the C kernels (the default) and chunked ATen ops (used for
#: float64, float16, under torch.compile and where no C compiler is found)
NEEDS_NATIVE = pytest.mark.skipif("not _native_ok()", reason="no native kernels (no C compiler?)")
F32_BACKENDS = [pytest.param("native", marks=NEEDS_NATIVE), "aten"]


def _reference(kind):
    if kind == "ash":
        return lambda x, z, a, *rest: AF.ash(x, z, a, impl="reference")
    return lambda x, z, a, l: AF.leaky_ash(x, z, a, l, impl="reference")


def _args(kind, x, z=0.7, a=1.3, slope=0.05, dtype=torch.float64):
    args = (x, _p(z, dtype), _p(a, dtype))
    return args + ((_p(slope, dtype),) if kind == "leaky_ash" else ())


def _all_grads(fn, args, seed=0, scale=1.0):
    y = fn(*args)
    g = (scale * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).to(y.dtype)
    return y, torch.autograd.grad(y, args, g)


KINDS = ["ash", "leaky_ash"]


# --- exact derivatives: sympy, 50 digits -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("z,a", [(0.0, 1.0), (1.2, 2.5), (-0.7, 0.3), (0.5, 30.0), (1.959963984540054, 1e3)])
def test_jacobian_matches_sympy(kind, z, a):
    """d out_i/d x_j (including the paths through mu and sigma), d/dz, d/dalpha, d/dslope."""
    xs = [0.3, -1.1, 2.0, 0.45, -0.2]
    x = torch.tensor(xs, dtype=torch.float64)
    args = _args(kind, x, z, a)
    jac = torch.autograd.functional.jacobian(_fused(kind), args)
    ref = S.ash_map_jacobian(xs, z, a, kind=kind, slope_val=0.05)
    keys = ["dx", "dz", "dalpha"] + (["da"] if kind == "leaky_ash" else [])
    for k, key in enumerate(keys):
        r = torch.tensor([[float(v) for v in row] for row in ref[key]] if key == "dx"
                         else [float(v) for v in ref[key]], dtype=torch.float64)
        ours = jac[0] if key == "dx" else jac[k]
        assert bool(torch.isfinite(ours).all())
        big = r.abs() >= 1e-30  # the contract's range; at alpha = 1e3 some derivatives are smaller
        err = ((ours - r).abs() / r.abs().clamp_min(1e-300))[big]
        assert (float(err.max()) if err.numel() else 0.0) <= 1e-12, (key, ours, r)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4, 4), (7,)])
def test_gradcheck_float64(kind, shape):
    x = (torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 + 0.3)
    args = _args(kind, x.requires_grad_(), z=0.4, a=1.7)
    # a small chunk makes the sample loop run more than once
    assert torch.autograd.gradcheck(_fused(kind, chunk=8), args, eps=1e-7, atol=1e-8, rtol=1e-6)


# --- against the reference implementation --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chunk", [1, 64, FU.DEFAULT_CHUNK_ELEMENTS])
def test_float64_equals_reference(kind, chunk):
    x = torch.randn(6, 4, 5, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 3 - 1
    args = _args(kind, x.requires_grad_(), z=0.8, a=2.0)
    y1, g1 = _all_grads(_fused(kind, chunk), args)
    y2, g2 = _all_grads(_reference(kind), args)
    assert _rel(y1, y2) <= 1e-12
    for a_, b_ in zip(g1, g2):
        assert _rel(a_, b_) <= 1e-12


@pytest.mark.parametrize("backend", F32_BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("z,a", [(0.0, 1.0), (1.5, 10.0), (-1.0, 0.1), (1.959963984540054, 1e3)])
def test_float32_within_1e5_of_float64(kind, z, a, backend):
    """float32 fused output and gradients within 1e-5 (relative to the scale) of float64."""
    x64 = torch.randn(4, 8, 9, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2 + 0.5
    a32 = _args(kind, x64.float().requires_grad_(), z, a, dtype=torch.float32)
    a64 = _args(kind, x64.float().double().requires_grad_(), float(a32[1]), float(a32[2]))
    if kind == "leaky_ash":
        a64 = a64[:3] + (_p(float(a32[3])),)
    y1, g1 = _all_grads(_fused(kind, backend=backend), a32)
    y2, g2 = _all_grads(_reference(kind), a64)
    assert y1.dtype == torch.float32 and _rel(y1, y2) <= 1e-5
    for a_, b_ in zip(g1, g2):
        assert a_.dtype == torch.float32 and _rel(a_, b_) <= 1e-5
    # element-wise too, where the value is not tiny against the scale
    big = y2.abs() > 1e-3 * y2.abs().max()
    assert float(((y1.double() - y2).abs() / y2.abs())[big].max()) <= 1e-5


def test_statistics_flow_through_mu_and_sigma():
    """Changing one element changes every other output of its sample, and only its sample."""
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: FU.ash(v, 0.5, 1.0), x)  # (3,10,3,10)
    for i in range(3):
        for j in range(3):
            block = jac[i, :, j, :]
            assert (block.abs().sum() > 0) == (i == j)
    off_diag = jac[0, :, 0, :] - torch.diag(torch.diagonal(jac[0, :, 0, :]))
    assert float(off_diag.abs().max()) > 1e-4  # the mu/sigma terms are really there


@pytest.mark.parametrize("dtype,backend", [pytest.param(torch.bfloat16, "native", marks=NEEDS_NATIVE),
                                           (torch.bfloat16, "aten"), (torch.float16, "aten")])
def test_half_precision_computed_in_float32(dtype, backend):
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(5)).to(dtype)
    xr = x.clone().requires_grad_()
    xf = x.clone().requires_grad_()
    y1 = FU.ash(xf, 0.5, 2.0, backend=backend)
    y2 = AF.ash(xr, 0.5, 2.0, impl="reference")
    assert y1.dtype == dtype
    # both are float computations rounded to the half dtype: at most one rounding apart
    assert float((y1.float() - y2.float()).abs().max()) <= 2 * torch.finfo(dtype).eps * float(y2.float().abs().max())
    g = torch.ones_like(y1)
    (gx1,), (gx2,) = torch.autograd.grad(y1, xf, g), torch.autograd.grad(y2, xr, g)
    assert gx1.dtype == dtype
    assert float((gx1.float() - gx2.float()).abs().max()) <= 4 * torch.finfo(dtype).eps * float(gx2.float().abs().max())


# --- edge cases of the numerical contract ---------------------------------------------------


def _edge_maps(dtype):
    fi = torch.finfo(dtype)
    return {
        "constant": torch.full((2, 16), 3.0, dtype=dtype),
        "zeros": torch.zeros(2, 16, dtype=dtype),
        "huge": torch.tensor([[fi.max, -fi.max, 0.5 * fi.max, 1.0]], dtype=dtype),
        "huge_constant": torch.full((1, 8), fi.max / 2, dtype=dtype),
        "tiny": torch.randn(2, 16, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
        .mul(1e-37).to(dtype),
        "large_mean": (torch.randn(2, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
                       + 1e4).to(dtype),
    }


def _constant_map_grads(kind, x, z, a, ell, up):
    """Output and gradients of (Leaky) ASH on a constant map x_j = c, by hand: mu = c,
    sigma = sqrt(eps), d = x - mu - z*sigma = -z*sqrt(eps), u = 2*a*d for every element, and
    d u_j / d x_k = 2a (delta_jk - 1/n) (the sigma path vanishes with x - mu), so with
    s = S(u), s' = S(u)S(-u), gate G = s + ell*S(-u), c_s = 1 - ell:
    dL/dx_k = g_k G + 2a c_s c s' (g_k - mean g), dL/dz = -2a c_s c s' sigma sum g,
    dL/dalpha = 2 c_s c s' d sum g, dL/dell = c S(-u) sum g (g the upstream gradient)."""
    import math
    xd = x.double()
    c, n = float(xd.flatten()[0]), xd.numel()
    sig = math.sqrt(1e-5)
    d = -z * sig
    u = 2 * a * d
    s, sm = 1 / (1 + math.exp(-u)), 1 / (1 + math.exp(u))
    leaky = kind == "leaky_ash"
    cs = (1 - ell) if leaky else 1.0
    gate = s + ell * sm if leaky else s
    g = up * torch.randn(xd.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = 2 * a * cs * (c * up) * (s * sm)  # c * up keeps the product in range
    gx = g * gate + k * (g / up - (g / up).mean())
    gsum = float(g.sum()) / up
    f64 = torch.float64
    grads = (gx, torch.tensor(-k * sig * gsum, dtype=f64), torch.tensor(2 * cs * (c * up) * s * sm * d * gsum, dtype=f64))
    if leaky:
        grads += (torch.tensor((c * up) * sm * gsum, dtype=f64),)
    return xd * gate, grads


@pytest.mark.parametrize("dtype,backend", [(torch.float64, "aten"),
                                           pytest.param(torch.float32, "native", marks=NEEDS_NATIVE),
                                           (torch.float32, "aten")], ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["constant", "zeros", "huge", "huge_constant", "tiny", "large_mean"])
def test_edge_cases_finite_and_equal_to_reference(kind, case, dtype, backend):
    x = _edge_maps(dtype)[case]
    args = _args(kind, x.clone().requires_grad_(), z=0.5, a=1.0, dtype=dtype)
    # on maps near the float max an O(1) upstream gradient gives parameter gradients beyond the
    # float range (they overflow for real); a small upstream keeps the true gradients finite
    up = 1e-300 if case.startswith("huge") and dtype == torch.float64 else 1.0
    y1, g1 = _all_grads(_fused(kind, backend=backend), args, scale=up)
    if case == "huge_constant" and dtype == torch.float64:
        # autograd of the reference composite overflows here (d sigma / d var ~ scale^2); the
        # derivatives of a constant map are short enough to write out by hand instead
        y2, g2 = _constant_map_grads(kind, x, 0.5, 1.0, 0.05, up)
    else:
        y2, g2 = _all_grads(_reference(kind), tuple(a.detach().clone().requires_grad_() for a in args), scale=up)
    # a map with mean 1e4 and spread 1 is ill-conditioned: fused and reference both sit ~1e-12 from
    # the 50-digit value there, so they may differ by a few times that
    tol = (1e-12 if dtype == torch.float64 else 1e-5) * (20 if case == "large_mean" else 1)
    for a_, b_ in zip((y1,) + g1, (y2,) + g2):
        assert bool(torch.isfinite(b_).all()) and bool(torch.isfinite(a_).all()), case
        if float(b_.abs().max()) >= 1e-30:  # the contract's range
            assert _rel(a_, b_) <= tol, case


def test_non_default_dims_and_tensor_parameters():
    """Statistics over any dims go through the operator (on a rows view); a per-sample z tensor
    goes to the reference composite; both agree with the reference."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    for dim in (2, -1, 1, (0, 2)):
        y = AF.ash(x, 0.3, 1.0, dim=dim)
        assert uses_operator(y, "ash"), dim
        assert torch.allclose(y, AF.ash(x, 0.3, 1.0, dim=dim, impl="reference"), rtol=1e-12, atol=1e-14)
    zt = torch.randn(3, 1, 1, generator=g, dtype=torch.float64)
    with pytest.raises(ValueError, match="one value"):
        FU.ash(x, zt, 1.0)
    y = AF.ash(x, zt, 1.0)
    assert not uses_operator(y, "ash")
    assert torch.equal(y, AF.ash(x, zt, 1.0, impl="reference"))
    assert uses_operator(AF.ash(x, torch.tensor([0.3], dtype=torch.float64), torch.tensor(2.0)), "ash")


def test_errors_and_impl_switch():
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match="alpha"):
        FU.ash(x, 0.0, -1.0)
    with pytest.raises(ValueError, match="eps"):
        FU.ash(x, 0.0, 1.0, eps=0.0)
    with pytest.raises(ValueError, match="slope"):
        FU.leaky_ash(x, slope=-0.1)
    with pytest.raises(ValueError, match="impl"):
        AF.ash(x, impl="fast")
    # the default goes through the operator, the reference through autograd ops
    assert uses_operator(AF.ash(x.requires_grad_(), 0.1), "ash")
    assert not uses_operator(AF.ash(x, 0.1, impl="reference"), "ash")


def test_modules_use_the_fused_path_and_match_the_reference():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    for mod in (ashlib.ASH(k=0.3, alpha=2.0), ashlib.LeakyASH(k=0.2, alpha=0.5, slope=0.05),
                ashlib.FixedASH(k=0.1)):
        mod = mod.double()
        xa = x.clone().requires_grad_()
        y = mod(xa)
        assert uses_operator(y, "ash")
        params = [p for p in mod.parameters() if p.requires_grad]
        grads = torch.autograd.grad(y.sum(), [xa] + params)
        # the same module evaluated by the reference path
        z = mod.z_param
        a = mod.log_alpha.exp()
        xb = x.clone().requires_grad_()
        if isinstance(mod, ashlib.LeakyASH):
            yr = AF.leaky_ash(xb, z, a, mod.log_slope.exp(), impl="reference")
        else:
            yr = AF.ash(xb, z, a, impl="reference")
        grads_r = torch.autograd.grad(yr.sum(), [xb] + params)
        assert _rel(y, yr) <= 1e-12
        for g1, g2 in zip(grads, grads_r):
            assert _rel(g1, g2) <= 1e-12


# --- memory: what is saved for backward -------------------------------------------------------


def _saved_numel(fn, x, *params):
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x, *params)
    return sizes


@pytest.mark.parametrize("backend", F32_BACKENDS)
@pytest.mark.parametrize("kind", KINDS)
def test_saves_one_input_sized_tensor_plus_per_sample_statistics(kind, backend):
    n_samples = 8
    x = torch.randn(n_samples, 4, 16, 16, requires_grad=True)
    params = (torch.tensor(0.5, requires_grad=True), torch.tensor(1.0, requires_grad=True))
    if kind == "leaky_ash":
        params += (torch.tensor(0.05, requires_grad=True),)
    sizes = _saved_numel(_fused(kind, backend=backend), x, *params)
    large = [s for s in sizes if s > 4 * n_samples]  # (the statistics may be saved as one (2, N, 1) tensor)
    assert large == [x.numel()], sizes  # the input, once
    assert sum(sizes) <= x.numel() + 4 * n_samples, sizes  # plus a few numbers per sample
    # the reference keeps several input-sized tensors alive
    ref_sizes = _saved_numel(_reference(kind), x, *params)
    assert sum(ref_sizes) >= 3 * x.numel()


# --- torch.compile -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_torch_compile_matches_eager(kind, dtype):
    """Under torch.compile the operator is one node of the graph (its fake kernel is traced); the
    graph runs the kernels eager runs (float32: the native kernels, float64: the ATen path)."""
    torch._dynamo.reset()
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64).to(dtype)
    args = _args(kind, x.requires_grad_(), z=0.3, a=1.5, dtype=dtype)
    fn = _fused(kind)
    compiled = torch.compile(fn, backend="aot_eager")
    y1, g1 = _all_grads(compiled, args)
    y2, g2 = _all_grads(fn, args)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert _rel(y1, y2) <= tol
    for a_, b_ in zip(g1, g2):
        assert _rel(a_, b_) <= tol


# --- CUDA -------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_equals_reference(kind):
    x = torch.randn(8, 16, 12, 12, generator=torch.Generator().manual_seed(10)).cuda()
    args = _args(kind, x.requires_grad_(), z=0.5, a=2.0, dtype=torch.float32)
    args = (args[0],) + tuple(a.detach().cuda().requires_grad_() for a in args[1:])
    y1, g1 = _all_grads(_fused(kind), args)
    y2, g2 = _all_grads(_reference(kind), args)
    assert _rel(y1, y2) <= 1e-5
    for a_, b_ in zip(g1, g2):
        assert _rel(a_, b_) <= 1e-5


def test_topk_kthvalue_keeps_the_top_fraction():
    x = torch.randn(5, 3, 10, 10, generator=torch.Generator().manual_seed(11))
    for k in (0.1, 0.5, 0.9):
        y = FU.topk_ash_kthvalue(x, k)
        ref = AF.topk_ash(x, k)
        assert torch.equal(y, ref)  # continuous random values: no ties, the same elements kept
        kept = (y != 0).flatten(1).float().mean(1)
        assert torch.allclose(kept, torch.full_like(kept, round(k * 300) / 300))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
def test_aten_statistics_match_exact_sums_and_leave_the_input_alone(dtype):
    """The ATen path's statistics widen each chunk into one reused float64 buffer; with a mean far
    above the spread (the centred second pass runs) and one row per chunk, mu and sigma still
    match sums done exactly (math.fsum over the values as stored), and x is not modified (a
    float64 x is read in place on the first pass, so the second pass must copy it first)."""
    import math
    torch.manual_seed(3)
    x = (torch.randn(4, 1003, dtype=torch.float64) * 0.25 + 3000.0).to(dtype)
    before = x.clone()
    mu, sigma, norm = FU._statistics(x, 1e-5, chunk_elements=1000)
    assert torch.equal(x, before)
    for r in range(x.shape[0]):
        vals = [float(v) for v in x[r].double()]
        m = math.fsum(vals) / len(vals)
        var = math.fsum((v - m) ** 2 for v in vals) / len(vals)
        assert abs(mu[r, 0].item() - m) <= 1e-12 * abs(m)
        assert abs(sigma[r, 0].item() - math.sqrt(var + 1e-5)) <= 1e-9 * math.sqrt(var)
        assert norm[r, 0].item() >= max(abs(v) for v in vals)


def test_aten_row_sums_are_float64_accurate():
    """_row_sums64 adds strided groups of 16 in float32 and the group sums in float64 (a tail
    that is not a multiple of 16 included): within a few float32 roundings of each group, far
    better than a float32 sum of the whole row, against math.fsum."""
    import math
    torch.manual_seed(4)
    w = torch.randn(3, 4099) * 10.0 + 1.0
    got = FU._row_sums64(w)
    assert got.dtype == torch.float64 and got.shape == (3, 1)
    for r in range(3):
        vals = [float(v) for v in w[r]]
        exact = math.fsum(vals)
        scale = math.fsum(abs(v) for v in vals)
        # each group: at most 15 float32 additions, each off by at most 2^-24 of a partial sum
        assert abs(got[r, 0].item() - exact) <= 16 * 2.0 ** -24 * scale
    assert torch.equal(FU._row_sums64(w.double()), w.double().sum(1, keepdim=True))
