"""The native CPU kernels (ashlib.ops.native, used by ashlib.ops.ash_family for CPU float32 and bfloat16).

Their results are checked against float64 references (torch's float64 exp, the float64 reference
ASH) and against the ATen implementation of the same Functions; the accuracy tests of
tests/test_accuracy.py and tests/test_fused.py (against mpmath and sympy) run through them too,
since they are the default. Nothing here times anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import ashlib
import ashlib.functional as AF
from ashlib.ops import ash_family as FU
from ashlib.ops import native

from .reference import rel_to_scale as _rel
from .reference import uses_operator

pytestmark = pytest.mark.skipif(not native.available(), reason="native kernels not built (no C compiler?)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Horner's rule (ASH), Estrin's (element-wise), adaptive Gumbel's degree-5 exp by both schemes
@pytest.mark.parametrize("name,bound", [("ash_exp_f32", 2e-7), ("ew_exp_f32", 2e-7), ("ew_gumbel_exp_f32", 3e-7),
                                        ("ew_gumbel_exp_horner_f32", 3e-7)])
def test_exp_f32_relative_error_over_its_range(name, bound):
    """The kernels' own exp against torch's float64 exp, on every float32 step of a dense grid (the
    bound: about 1.7 float32 ulps for the degree-6 polynomial, 2.5 for adaptive Gumbel's degree 5)."""
    fn = getattr(native.library(), name)
    x = torch.linspace(-87.0, 88.0, 2_000_001, dtype=torch.float32)
    y = torch.empty_like(x)
    fn(x.numel(), x.data_ptr(), y.data_ptr())
    ref = torch.exp(x.double())
    err = ((y.double() - ref) / ref).abs()
    assert float(err.max()) < bound
    # and at hand-picked points: exact powers of two come out exact
    pts = torch.tensor([0.0, 0.6931471805599453, -0.6931471805599453, 10 * 0.6931471805599453], dtype=torch.float32)
    out = torch.empty_like(pts)
    fn(pts.numel(), pts.data_ptr(), out.data_ptr())
    assert abs(float(out[0]) - 1.0) == 0.0
    assert abs(float(out[1]) / 2.0 - 1.0) < bound and abs(float(out[2]) / 0.5 - 1.0) < bound
    assert abs(float(out[3]) / 1024.0 - 1.0) < bound


@pytest.mark.parametrize("kind", ["ash", "leaky_ash"])
@pytest.mark.parametrize("z,a", [(0.0, 1.0), (1.959963984540054, 1e3), (-0.8, 1e-3), (0.4, 30.0)])
def test_native_float32_against_float64_reference(kind, z, a):
    g = torch.Generator().manual_seed(0)
    x64 = torch.randn(5, 3, 17, 13, generator=g, dtype=torch.float64) * 1.7 + 0.3
    x32 = x64.float()
    up = torch.randn(x64.shape, generator=g, dtype=torch.float64)

    def run(x, impl, backend=None):
        xx = x.clone().requires_grad_()
        zt = torch.tensor(z, dtype=x.dtype, requires_grad=True)
        at = torch.tensor(a, dtype=x.dtype, requires_grad=True)
        lt = torch.tensor(0.05, dtype=x.dtype, requires_grad=True)
        if impl == "fused":
            y = FU.ash(xx, zt, at, backend=backend) if kind == "ash" else FU.leaky_ash(xx, zt, at, lt, backend=backend)
        else:
            y = AF.ash(xx, zt, at, impl="reference") if kind == "ash" else \
                AF.leaky_ash(xx, zt, at, lt, impl="reference")
        params = [xx, zt, at] + ([lt] if kind == "leaky_ash" else [])
        return [y] + list(torch.autograd.grad(y, params, up.to(x.dtype)))

    ours = run(x32, "fused", "native")
    # the reference at the parameters float32 holds, in float64
    z, a = float(torch.tensor(z, dtype=torch.float32)), float(torch.tensor(a, dtype=torch.float32))
    ref = run(x32.double(), "reference")
    for o, r in zip(ours, ref):
        assert o.dtype == torch.float32
        assert _rel(o, r) <= 1e-5


def _both_backends(x, z=0.5, a=2.0, kind="ash", threads=None):
    out = {}
    for backend in ("native", "aten"):
        xx = x.clone().requires_grad_()
        zt = torch.tensor(z, requires_grad=True)
        at = torch.tensor(a, requires_grad=True)
        y = FU.ash(xx, zt, at, backend=backend) if kind == "ash" else FU.leaky_ash(xx, zt, at, 0.1, backend=backend)
        up = torch.linspace(-1, 1, y.numel()).reshape(y.shape).to(y.dtype)
        out[backend] = [y] + list(torch.autograd.grad(y, (xx, zt, at), up))
    return out


def test_threads_split_samples_without_changing_results():
    """Samples are split across threads; each is computed exactly as on one thread. The parameter
    gradients add the per-sample sums (float64) in an order that depends on the split, so they
    agree to float64 rounding rather than bit for bit."""
    x = torch.randn(16, 8, 64, 64, generator=torch.Generator().manual_seed(1))
    assert x.numel() >= native.PARALLEL_MIN_ELEMENTS
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _both_backends(x)["native"]
        torch.set_num_threads(2)
        two = _both_backends(x)["native"]
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])  # y and dL/dx
    for a_, b_ in zip(one[2:], two[2:]):  # dL/dz, dL/dalpha
        assert torch.allclose(a_, b_, rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", [(1, 5), (3, 1), (7,), (2, 3, 513), (4, 1030)])
def test_odd_shapes_match_aten(shape):
    """Rows shorter than a vector, a single element per sample, tails after the 512-element blocks."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(2)) * 3
    r = _both_backends(x, kind="leaky_ash")
    for a_, b_ in zip(r["native"], r["aten"]):
        assert torch.isfinite(a_).all()
        assert _rel(a_, b_) <= 2e-6


@pytest.mark.parametrize("shape", [(6, 4, 9, 9), (3, 5000)])  # rows shorter and longer than the widening chunk
def test_bfloat16_matches_aten_within_one_rounding(shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3)).bfloat16()
    r = _both_backends(x)
    eps = torch.finfo(torch.bfloat16).eps
    y_n, y_a = r["native"][0].float(), r["aten"][0].float()
    assert r["native"][0].dtype == torch.bfloat16
    assert float((y_n - y_a).abs().max()) <= eps * float(y_a.abs().max())
    assert float((r["native"][1].float() - r["aten"][1].float()).abs().max()) <= 2 * eps * float(
        r["aten"][1].float().abs().max())
    for a_, b_ in zip(r["native"][2:], r["aten"][2:]):  # z and alpha: float32 parameters, float64 sums
        assert _rel(a_, b_) <= 1e-5


def test_non_contiguous_input_and_expanded_gradient():
    base = torch.randn(8, 6, 10, generator=torch.Generator().manual_seed(4))
    x = base.transpose(1, 2)  # not contiguous
    assert not x.is_contiguous()
    xa = x.clone().requires_grad_()
    xr = x.clone().requires_grad_()
    FU.ash(xa, 0.3, 1.5, backend="native").sum().backward()  # the upstream gradient is an expanded 1
    AF.ash(xr.double(), 0.3, 1.5, impl="reference").sum().backward()
    assert _rel(xa.grad, xr.grad) <= 1e-5
    assert torch.allclose(FU.ash(x, 0.3, 1.5, backend="native"), AF.ash(x, 0.3, 1.5, impl="reference"), rtol=1e-5,
                          atol=1e-7)


def _ash_op(x, z, a, backend):
    return torch.ops.ashlib.ash(x, torch.tensor(z), torch.tensor(a), None, 1e-5, backend)


def test_inputs_outside_the_fast_range_take_the_exact_path():
    """nan, inf and |x| >= 2^26 make the kernel take its exact path (the float64 reference
    formulas), for the output and for the gradients."""
    for v in (float("nan"), float("inf"), 1e8, -3e30):
        x = torch.randn(3, 40, generator=torch.Generator().manual_seed(5))
        x[1, 7] = v
        y, _, _, exact = _ash_op(x, 0.5, 2.0, "native")
        assert bool(exact)
        assert torch.equal(y, AF.ash(x, 0.5, 2.0, impl="reference")) or bool(torch.isnan(y).any())
        if v == -3e30:
            xx, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
            g, = torch.autograd.grad(FU.ash(xx, 0.5, 2.0, backend="native").sum(), xx)
            gr, = torch.autograd.grad(AF.ash(xr, 0.5, 2.0, impl="reference").sum(), xr)
            assert torch.equal(g, gr)
    # just below the bound the fast path runs and still agrees with float64
    x = torch.randn(3, 40, generator=torch.Generator().manual_seed(6)) * 1e7
    y, _, _, exact = _ash_op(x, 0.5, 1e-6, "native")
    assert not bool(exact)
    assert _rel(y, AF.ash(x.double(), 0.5, 1e-6, impl="reference")) <= 1e-5


def test_backend_selection_and_errors():
    assert FU.select_backend(torch.zeros(2, 3)) == "native"
    assert FU.select_backend(torch.zeros(2, 3, dtype=torch.bfloat16)) == "native"
    assert FU.select_backend(torch.zeros(2, 3, dtype=torch.float64)) == "aten"
    assert FU.select_backend(torch.zeros(2, 3, dtype=torch.float16)) == "aten"
    with pytest.raises(ValueError, match="backend='native'"):
        FU.ash(torch.zeros(2, 3, dtype=torch.float64), backend="native")
    with pytest.raises(ValueError, match="not one of"):
        FU.ash(torch.zeros(2, 3), backend="cuda")
    with pytest.raises(ValueError, match="triton"):
        FU.ash(torch.zeros(2, 3), backend="triton")
    # modules take the default, so a float32 ASH layer runs the kernels
    y = ashlib.ASH(k=0.3)(torch.randn(2, 4, requires_grad=True))
    assert uses_operator(y, "ash")


def test_build_is_cached_and_keyed_by_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("ASHLIB_CACHE_DIR", str(tmp_path))
    p1 = native.build()
    p2 = native.build()
    assert p1 == p2 and os.path.dirname(p1) == str(tmp_path)
    p3 = native.build(flags=native._FLAGS_PORTABLE)
    assert p3 != p1 and os.path.exists(p3)


def _run(code: str, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e,
                          timeout=timeout)


def test_disabled_or_missing_compiler_falls_back_to_aten(tmp_path):
    code = """
        import warnings, torch
        from ashlib.ops import ash_family as FU
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            b = FU.select_backend(torch.zeros(2, 3))
            y = FU.ash(torch.linspace(-2, 2, 5))
        print(b, [str(m.message)[:40] for m in w], round(float(y[-1]), 4))
    """
    off = _run(code, ASHLIB_NATIVE="0")
    assert off.returncode == 0, off.stderr
    assert off.stdout.startswith("aten []"), off.stdout
    nocc = _run(code, CC=str(tmp_path / "no-such-cc"), ASHLIB_CACHE_DIR=str(tmp_path / "cache"),
                ASHLIB_PREBUILT_DIR=str(tmp_path / "no-prebuilt"))  # (as a checkout: no wheel's kernels)
    assert nocc.returncode == 0, nocc.stderr
    assert nocc.stdout.startswith("aten ['ashlib: native CPU kernels unavailable"), nocc.stdout
    assert nocc.stdout.strip().endswith("1.964")  # 2 * S(4): the ATen path computes the same ASH


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_thread_pool_survives_fork():
    """A child forked after the parent used the thread pool gets a working pool of its own."""
    code = """
        import os, torch
        from ashlib.ops import ash_family as FU
        torch.set_num_threads(2)
        x = torch.randn(16, 8, 64, 64)
        y = FU.ash(x, 0.3, 1.0, backend="native")  # the parent's pool is used here
        pid = os.fork()
        if pid == 0:
            ok = torch.equal(FU.ash(x, 0.3, 1.0, backend="native"), y)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status))
    """
    res = _run(code, timeout=120)  # a child stuck on the parent's dead pool threads would hang
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "child exit 0"


def _counting_cc(tmp_path, sleep: float = 0.0):
    """A C compiler wrapper that logs each call (and can be slow, to be killed mid-build)."""
    log = tmp_path / "cc.log"
    cc = tmp_path / "cc-wrapper"
    cc.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then exec cc \"$@\"; fi\n"
                  f"echo call >> {log}\nsleep {sleep}\nexec cc \"$@\"\n")
    cc.chmod(0o755)
    return str(cc), log


def test_concurrent_builds_compile_once(tmp_path):
    """Several processes starting at once (DDP ranks, pytest workers) share one compilation."""
    cc, log = _counting_cc(tmp_path, sleep=1.0)
    env = dict(os.environ, PYTHONPATH=ROOT, ASHLIB_CACHE_DIR=str(tmp_path / "cache"), CC=cc)
    code = "from ashlib.ops import native; print(native.build())"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    paths = {p.communicate(timeout=300)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(paths) == 1 and os.path.exists(paths.pop())
    assert log.read_text().count("call") == 1
    assert not [f for f in os.listdir(tmp_path / "cache") if f.startswith("building-")]


def test_killed_build_leaves_nothing_and_releases_the_lock(tmp_path):
    import signal
    import time
    cc, log = _counting_cc(tmp_path, sleep=30.0)
    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=ROOT, ASHLIB_CACHE_DIR=str(cache), CC=cc)
    proc = subprocess.Popen([sys.executable, "-c", "from ashlib.ops import native; native.build()"], env=env,
                            start_new_session=True)
    deadline = time.time() + 60
    while not (log.exists() and cache.exists() and [f for f in os.listdir(cache) if f.startswith("building-")]):
        assert time.time() < deadline, "the build never started"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the Python process and the compiler it started
    proc.wait(timeout=60)
    assert [f for f in os.listdir(cache) if f.startswith("building-")]  # what the killed build left
    # the next build is not blocked by the dead process's lock and removes its leftovers
    r = subprocess.run([sys.executable, "-c", "from ashlib.ops import native; print(native.build())"],
                       env=dict(env, CC="cc"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    left = os.listdir(cache)
    assert not [f for f in left if f.startswith("building-")]
    assert sum(f.endswith(".so") for f in left) == 1


def test_thread_pool_is_kept_across_batch_sizes():
    torch.manual_seed(0)
    with_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        pools = set()
        for rows in (3, 64, 5, 64):
            x = torch.randn(rows, native.PARALLEL_MIN_ELEMENTS // 2)
            FU.ash(x, 0.3, 1.0, backend="native")
            if native._pool is not None:
                pools.add(id(native._pool))
        assert len(pools) <= 1
    finally:
        torch.set_num_threads(with_threads)


def test_package_data_ships_the_kernel_sources():
    """An installed (non-editable) ashlib compiles its kernels from the sources it ships: the
    package-data globs of pyproject.toml must name the package that holds them and match them."""
    import fnmatch
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        data = tomllib.load(fh)["tool"]["setuptools"]["package-data"]
    globs = data.get(native.__name__, [])
    needed = native.SOURCES + [native.EAGER_SOURCE] + [os.path.join(os.path.dirname(native.__file__), f)
                                                       for f in os.listdir(os.path.dirname(native.__file__))
                                                       if f.endswith(".h")]
    for path in needed:
        assert any(fnmatch.fnmatch(os.path.basename(path), g) for g in globs), (path, data)


def test_x86_without_fma_takes_the_aten_path(monkeypatch):
    """On an x86 CPU without FMA every fmaf of the kernels is a library call (about 30x slower
    than F.silu): the kernels are not built or loaded there, one warning says why, and ASH runs
    its ATen path with the same values."""
    import platform
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(native, "_cpu_flags", lambda: "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx popcnt")
    assert native._x86_without_fma()
    monkeypatch.setattr(native, "_cpu_flags", lambda: "flags\t\t: fpu sse sse2 avx avx2 fma")
    assert not native._x86_without_fma()
    monkeypatch.setattr(native, "_cpu_flags", lambda: "")  # flags unknown (no /proc/cpuinfo): no verdict
    assert not native._x86_without_fma()
    monkeypatch.setattr(native, "_cpu_flags", lambda: "flags\t\t: fpu sse sse2 avx")
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "loaded_path", None)
    with pytest.warns(RuntimeWarning, match="no FMA"):
        assert native.library() is None
    assert FU.select_backend(torch.zeros(2, 3)) == "aten"


def test_fallback_builds_are_the_portable_variants_the_cpu_runs(monkeypatch):
    """When -march=native does not compile, build() tries the portable variants this CPU can run
    (the prebuilt ones' flags), then the compiler's default target, but never that on x86-64,
    where it has no FMA and the kernels would be slower than the ATen path."""
    import platform
    from ashlib.ops.native import prebuilt
    v3 = native._FLAGS_COMMON + ["-march=x86-64-v3"]
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(native, "_cpu_flags", lambda: "flags\t: " + " ".join(prebuilt._X86_V3_NEEDS))
    assert native._fallback_flags() == [v3]
    monkeypatch.setattr(native, "_cpu_flags", lambda: "flags\t: fpu sse2 avx fma")  # no AVX2
    assert native._fallback_flags() == []
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(native, "_cpu_flags", lambda: "Features\t: fp asimd")
    assert native._fallback_flags() == [native._FLAGS_COMMON + ["-march=armv8-a"], native._FLAGS_PORTABLE]
    monkeypatch.setattr(platform, "machine", lambda: "ppc64le")
    assert native._fallback_flags() == [native._FLAGS_PORTABLE]
