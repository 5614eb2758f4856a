"""The Triton kernels (ashlib.ops.triton_ash) against float64 references, in Triton's interpreter.

No GPU is needed or used (none was available where this was written): every test sets
``TRITON_INTERPRET=1`` (per test, with monkeypatch; ashlib.ops.triton_ash reads it at call time
and keeps compiled and interpreted kernels apart, so this works under pytest-xdist after other
modules imported triton), and the kernels run on CPU tensors in Triton's interpreter. That
checks the kernels' math and indexing. The compiled path is only checked to build for sm_90
(``test_kernels_compile_for_cuda_sm90``); it is never run here. Skipped when triton is not
installed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import ashlib
import ashlib.functional as AF
from ashlib.ops import ash_family as FU
from ashlib.ops import triton_ash as FT

from .reference import rel_to_scale as _rel
from .reference import uses_operator

pytest.importorskip("triton")

Z196 = 1.959963984540054
EPS = 1e-5


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _rel_elementwise(a: torch.Tensor, b: torch.Tensor, floor: float = 1e-3) -> float:
    """max relative error over the elements not tiny (|b| > floor * max|b| and |b| >= 1e-30)."""
    a, b = a.detach().double(), b.detach().double()
    big = (b.abs() > floor * b.abs().max()) & (b.abs() >= 1e-30)
    return float(((a - b).abs() / b.abs())[big].max()) if bool(big.any()) else 0.0


def _input(shape, seed, dtype=torch.float32):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 + 0.5
    if shape[1] < 16:  # one clear outlier, so that a short row has an element above z = 1.96 too
        x[:, 0] += 12.0
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return x.to(dtype), g.to(dtype)


def _stats(x2):
    mu, sigma, _ = FU._statistics(x2, EPS, FU.DEFAULT_CHUNK_ELEMENTS)
    return mu, sigma


def _reference(x2, g2, z, alpha, ell):
    """float64 autograd through AF.*(impl="reference") on the upcast input: y, gx, dz, dalpha, dell."""
    x = x2.double().requires_grad_()
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    at = torch.tensor(alpha, dtype=torch.float64, requires_grad=True)
    if ell is None:
        params = (zt, at)
        y = AF.ash(x, zt, at, eps=EPS, impl="reference")
    else:
        lt = torch.tensor(ell, dtype=torch.float64, requires_grad=True)
        params = (zt, at, lt)
        y = AF.leaky_ash(x, zt, at, lt, eps=EPS, impl="reference")
    grads = torch.autograd.grad(y, (x,) + params, g2.double())
    return (y.detach(),) + tuple(grads)


def _t(v):
    return None if v is None else torch.tensor(float(v), dtype=torch.float64)


def _fwd(x2, t, A, ell):
    """The kernels take the parameters as tensors (read on the device): alpha = A/2, slope = ell."""
    return FT.ash_forward(x2, t, _t(A / 2), _t(ell))


def _bwd(x2, g2, mu, sigma, z, A, ell, need_x, need_a, need_l):
    return FT.ash_backward(x2, g2, mu, sigma, _t(z), _t(A / 2), _t(ell), need_x, need_a, need_l)


def _row_sums64(x2, g2, mu, sigma, z, A):
    """R1, R2, Rl from their definitions, in float64."""
    x, g = x2.double(), g2.double()
    d = x - (mu + z * sigma)
    u = A * d
    q = g * torch.sigmoid(u) * torch.sigmoid(-u)
    return ((x * q).sum(1, keepdim=True), (x * q * d).sum(1, keepdim=True),
            (g * x * torch.sigmoid(-u)).sum(1, keepdim=True))


CASES = [(0.0, 1.0), (0.7, 1.3), (Z196, 1e3), (-0.7, 1e-3)]
SHAPES = [(3, 1000), (2, 7), (1, 5000)]
ELLS = [None, 0.05]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("z,alpha", CASES)
@pytest.mark.parametrize("ell", ELLS, ids=["ash", "leaky_ash"])
def test_float32_matches_float64_reference(shape, z, alpha, ell):
    x2, g2 = _input(shape, seed=shape[1] + int(alpha * 10))
    mu, sigma = _stats(x2)
    A = 2.0 * alpha
    c = 1.0 if ell is None else 1.0 - ell

    y = _fwd(x2, mu + z * sigma, A, ell)
    gx, R1, R2, Rl = _bwd(x2, g2, mu, sigma, z, A, ell, True, True, True)
    y_ref, gx_ref, dz_ref, da_ref, *dl_ref = _reference(x2, g2, z, alpha, ell)

    assert y.dtype == gx.dtype == torch.float32 and y.shape == gx.shape == shape
    assert R1.dtype == R2.dtype == torch.float64 and R1.shape == R2.shape == (shape[0], 1)
    assert _rel(y, y_ref) <= 1e-5
    assert _rel_elementwise(y, y_ref) <= 1e-5
    assert _rel(gx, gx_ref) <= 1e-5
    # the parameter gradients the caller forms from the row sums (as the ashlib::ash_backward operator does)
    assert _rel(-(sigma * R1).sum() * (c * A), dz_ref) <= 1e-5
    assert _rel(R2.sum() * (2.0 * c), da_ref) <= 1e-5
    R1_64, R2_64, Rl_64 = _row_sums64(x2, g2, mu, sigma, z, A)
    assert _rel(R1, R1_64) <= 1e-5 and _rel(R2, R2_64) <= 1e-5
    if ell is None:
        assert Rl is None
    else:
        assert _rel(Rl, Rl_64) <= 1e-5
        assert _rel(Rl.sum(), dl_ref[0]) <= 1e-5


@pytest.mark.parametrize("ell", ELLS, ids=["ash", "leaky_ash"])
@pytest.mark.parametrize("z,alpha", [(0.7, 1.3), (Z196, 1e3)])
def test_matches_aten_fused_path(ell, z, alpha):
    """Same float32 results as ashlib.ops.ash_family (the ATen implementation) through autograd."""
    x2, g2 = _input((2, 1500), seed=11)
    mu, sigma = _stats(x2)
    zt, at = (torch.tensor(v, requires_grad=True) for v in (z, alpha))
    z, alpha = float(zt.detach()), float(at.detach())  # exactly the float32 parameters
    A, c = 2.0 * alpha, (1.0 if ell is None else 1.0 - ell)
    xr = x2.clone().requires_grad_()
    if ell is None:
        params = (zt, at)
        y_aten = FU.ash(xr, zt, at, eps=EPS)
    else:
        params = (zt, at, torch.tensor(ell, requires_grad=True))
        y_aten = FU.leaky_ash(xr, zt, at, params[2], eps=EPS)
    gx_aten, dz, da, *dl = torch.autograd.grad(y_aten, (xr,) + params, g2)

    y = _fwd(x2, mu + z * sigma, A, ell)
    gx, R1, R2, Rl = _bwd(x2, g2, mu, sigma, z, A, ell, True, True, True)
    assert _rel(y, y_aten) <= 1e-6 and _rel(gx, gx_aten) <= 1e-6
    assert _rel(-(sigma * R1).sum() * (c * A), dz) <= 1e-6
    assert _rel(R2.sum() * (2.0 * c), da) <= 1e-6
    if ell is not None:
        assert _rel(Rl.sum(), dl[0]) <= 1e-6


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("ell", ELLS, ids=["ash", "leaky_ash"])
def test_half_precision_storage(dtype, ell):
    """Half inputs computed in float32, stored once rounded: within a couple of ulps of float64."""
    x2, g2 = _input((2, 300), seed=5, dtype=dtype)
    mu, sigma = _stats(x2)
    z, alpha = 0.5, 2.0
    y = _fwd(x2, mu + z * sigma, 2 * alpha, ell)
    gx, R1, _, _ = _bwd(x2, g2, mu, sigma, z, 2 * alpha, ell, True, False, False)
    y_ref, gx_ref, *_ = _reference(x2, g2, z, alpha, ell)
    eps = torch.finfo(dtype).eps
    assert y.dtype == gx.dtype == dtype and R1.dtype == torch.float64
    # one rounding to the half dtype (the interpreter truncates bfloat16: up to one ulp)
    assert _rel(y, y_ref) <= 2 * eps
    assert _rel(gx, gx_ref) <= 4 * eps


def test_flags_select_outputs():
    x2, g2 = _input((2, 7), seed=3)
    mu, sigma = _stats(x2)
    full = _bwd(x2, g2, mu, sigma, 0.3, 2.0, 0.1, True, True, True)
    gx, R1, R2, Rl = _bwd(x2, g2, mu, sigma, 0.3, 2.0, 0.1, False, False, False)
    assert gx is None and R2 is None and Rl is None
    assert torch.equal(R1, full[1])
    # need_l without a slope (ASH) has nothing to return
    assert _bwd(x2, g2, mu, sigma, 0.3, 2.0, None, False, False, True)[3] is None
    # a non-contiguous upstream gradient gives the same result
    g_nc = g2.t().contiguous().t()
    assert not g_nc.is_contiguous()
    gx_nc = _bwd(x2, g_nc, mu, sigma, 0.3, 2.0, 0.1, True, False, False)[0]
    assert torch.equal(gx_nc, full[0])


def test_available(monkeypatch):
    x = torch.zeros(2, 3)
    assert FT.available(x)
    assert not FT.available(x.double())  # the kernels compute in float32: float64 stays with torch
    monkeypatch.delenv("TRITON_INTERPRET")
    assert not FT.available(x)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not FT.available(x)


def test_ashlib_does_not_import_triton():
    code = ("import sys, torch, ashlib, ashlib.ops.ash_family, ashlib.ops.triton_ash as FT\n"
            "assert 'triton' not in sys.modules, 'triton imported'\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def _signature(kernel, dtype: str):
    """Triton signature of one of our kernels for storage dtype `dtype` (names follow a convention)."""
    sig = {}
    for name in kernel.arg_names:
        if name.isupper():
            sig[name] = "constexpr"
        elif name in ("x_ptr", "y_ptr", "g_ptr", "gx_ptr"):
            sig[name] = "*" + dtype
        elif name in ("p1_ptr", "p2_ptr", "pl_ptr"):
            sig[name] = "*fp64"
        elif name.endswith("_ptr"):
            sig[name] = "*fp32"
        else:
            sig[name] = "i32" if name in ("n", "nb") else "fp32"
    return sig


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_kernels_compile_for_cuda_sm90(dtype, monkeypatch, tmp_path):
    """The compiled path (which the interpreter never runs: libdevice, constexpr branches) builds
    PTX and a cubin for an H100 (sm_90) with triton's bundled ptxas; no GPU is needed or used."""
    import triton
    from triton.backends.compiler import GPUTarget

    if "nvidia" not in getattr(triton.backends, "backends", {}):
        pytest.skip("triton has no NVIDIA backend")
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    for kernel in FT._kernels(False):
        flags = [a for a in kernel.arg_names if a.isupper() and a not in ("INTERPRET", "BLOCK")]
        for on in (False, True):
            const = {"INTERPRET": False, "BLOCK": 1024, **{f: on for f in flags}}
            src = triton.compiler.ASTSource(fn=kernel, signature=_signature(kernel, dtype), constexprs=const)
            compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32))
            assert "cubin" in compiled.asm and ".entry" in compiled.asm["ptx"]


@pytest.mark.parametrize("kind", ["ash", "leaky_ash"])
def test_fused_function_with_triton_backend_matches_reference(kind):
    """ashlib.ops.ash_family's autograd Function end to end on the Triton kernels (interpreter): the
    statistics, the parameter gradients assembled from the row sums, the reshaping."""
    x = torch.randn(3, 2, 5, 7, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.2
    up = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = {}
    for impl in ("triton", "reference"):
        dt = torch.float32 if impl == "triton" else torch.float64
        xx = x.to(dt).requires_grad_()
        zt = torch.tensor(0.6, dtype=dt, requires_grad=True)
        at = torch.tensor(1.7, dtype=dt, requires_grad=True)
        lt = torch.tensor(0.05, dtype=dt, requires_grad=True)
        params = (xx, zt, at) + ((lt,) if kind == "leaky_ash" else ())
        if impl == "triton":
            y = FU.ash(xx, zt, at, backend="triton") if kind == "ash" else FU.leaky_ash(xx, zt, at, lt, backend="triton")
            assert uses_operator(y, "ash")
        else:
            y = AF.ash(xx, zt, at, impl="reference") if kind == "ash" else \
                AF.leaky_ash(xx, zt, at, lt, impl="reference")
        out[impl] = (y,) + torch.autograd.grad(y, params, up.to(dt))
    for a, b in zip(out["triton"], out["reference"]):
        assert a.dtype == torch.float32 and a.shape == b.shape
        assert _rel(a, b) <= 1e-5


def test_triton_path_reads_no_parameter_on_the_host(monkeypatch):
    """On the Triton backend the operator never reads z, alpha or the slope on the host (float()
    or .item() would synchronise a CUDA device on every call): the kernels load them."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(3, 2, 5, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    zt, at, lt = (torch.tensor(v, requires_grad=True) for v in (0.6, 1.7, 0.05))
    reads = []

    def no_float(self, *a, **k):
        reads.append(tuple(self.shape))
        raise AssertionError("a tensor was read on the host in the Triton path")

    monkeypatch.setattr(torch.Tensor, "__float__", no_float)
    monkeypatch.setattr(torch.Tensor, "item", no_float)
    y = FU.leaky_ash(x, zt, at, lt, backend="triton")
    grads = torch.autograd.grad(y, (x, zt, at, lt), torch.ones_like(y))
    monkeypatch.undo()
    assert not reads
    ref = AF.leaky_ash(x.double(), zt.double(), at.double(), lt.double(), impl="reference")
    assert _rel(y, ref) <= 1e-5
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_synchronisations_per_call():
    """No host-device synchronisation in the forward or the backward of the ASH module."""
    x = torch.randn(8, 16, 32, 32, device="cuda", requires_grad=True)
    act = ashlib.ASH(k=0.2).cuda()
    act(x).sum().backward()  # warm-up: kernels compiled, caches filled
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        import warnings
        with warnings.catch_warnings(record=True) as fwd:
            warnings.simplefilter("always")
            y = act(x)
        with warnings.catch_warnings(record=True) as bwd:
            warnings.simplefilter("always")
            y.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert not [w for w in fwd if "synchroniz" in str(w.message)]
    assert not [w for w in bwd if "synchroniz" in str(w.message)]


@pytest.mark.parametrize("kind", ["ash", "leaky_ash"])
def test_triton_path_near_the_float32_limit(kind, monkeypatch):
    """Without a range check on the host, the Triton path itself must be right near float32's
    limit: maps with |x| up to 3.4e38 and thresholds beyond float32's range, against float64."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    fmax = torch.finfo(torch.float32).max
    x = torch.tensor([[fmax, -fmax, 0.5 * fmax, 1.0, -3.0, 0.0],
                      [fmax, fmax, fmax, 0.9 * fmax, fmax, fmax],
                      [1e37, -2e37, 3e36, 5.0, -1e30, 2e37]], dtype=torch.float32)
    for z, a in ((0.5, 1.0), (-1.2, 1e-3), (1.96, 1e3)):
        xx = x.clone().requires_grad_()
        y = FU.ash(xx, z, a, backend="triton") if kind == "ash" else FU.leaky_ash(xx, z, a, 0.05, backend="triton")
        up = torch.full_like(y, 1e-30)  # keeps the true gradients within float32's range
        gx, = torch.autograd.grad(y, xx, up)
        xr = x.double().requires_grad_()
        yr = AF.ash(xr, z, a, impl="reference") if kind == "ash" else AF.leaky_ash(xr, z, a, 0.05, impl="reference")
        gr, = torch.autograd.grad(yr, xr, up.double())
        assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(gx).all()), (z, a)
        assert _rel(y, yr) <= 1e-5, (z, a)
        finite = torch.isfinite(gr)
        assert _rel(gx[finite], gr[finite]) <= 1e-5, (z, a)


def test_triton_path_reads_negative_views_as_values():
    """The Triton kernels read x, alpha, the slope and the gradient by pointer: negative views
    (which autograd may pass as a gradient) must count as their values."""
    x = torch.randn(4, 40, generator=torch.Generator().manual_seed(21))
    g = torch.randn(4, 40, generator=torch.Generator().manual_seed(22))
    a = torch.tensor(-1.3)  # its negative view is the valid alpha 1.3
    res = []
    for neg in (False, True):
        xx = (-x).requires_grad_() if not neg else x.clone().requires_grad_()
        zt = torch.tensor(0.2, requires_grad=True)
        xin = xx if not neg else torch._neg_view(xx)
        alpha = -a if not neg else torch._neg_view(a)
        slope = torch.tensor(0.05) if not neg else torch._neg_view(torch.tensor(-0.05))
        y = FU.leaky_ash(xin, zt, alpha, slope, backend="triton")
        gx, gz = torch.autograd.grad(y, (xx, zt), -g if not neg else torch._neg_view(g))
        res.append((y.detach(), gx if not neg else -gx, gz))
    for p, q in zip(*res):
        assert torch.equal(p, q)
