"""ASH's C++ eager route, ``torch.ops.ashlib_eager.ash`` (ashlib/ops/native/ash_autograd.cpp).

It does what the Python eager Function (``ash_family._EagerASH``) does, around the same C
kernels, for contiguous CPU float32/bfloat16 inputs with statistics over trailing dims; anything
else falls back to the Python route before any output exists. These tests check the bits against
the Python route and the dispatched operator, the values against the float64 reference, that
every case it does not take still gets the right answer or the right error, and that a process
with an empty cache does not wait for the compiler.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import ashlib
import ashlib.functional as AF
from ashlib import reference as R
from ashlib.ops import _common as C
from ashlib.ops import ash_family as FU
from ashlib.ops import native

from .reference import uses_operator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# skipped only where the route cannot exist; where a C++ compiler is found, a build that fails
# is an error (test_the_cpp_route_is_built_where_a_compiler_is_found), not a reason to skip
_CAN_BUILD = (shutil.which(os.environ.get("CXX") or "c++") is not None and native.library() is not None
              and not native._env_off("ASHLIB_EAGER_CPP"))
pytestmark = pytest.mark.skipif(not _CAN_BUILD, reason="no C++ compiler or no native kernels here")


@pytest.fixture(autouse=True, scope="module")
def _built():
    assert native.eager_ops(wait=True), "a C++ compiler is here but the C++ route did not build or load"


def test_the_cpp_route_is_built_where_a_compiler_is_found():
    assert native.eager_ops() and FU._fast_ready()


def _route(y: torch.Tensor) -> str:
    fn = y.grad_fn
    if fn is None:
        return "none"
    if "ashlib_eager::ASHFunction" in fn.name():
        return "cpp"
    if getattr(fn, "_forward_cls", None) is FU._EagerASH:
        return "python"
    return "operator" if uses_operator(y, "ash") else fn.name()


def _run(x, dim, slope, route, g):
    """(y, grads of x, z, alpha[, slope]) on the given route."""
    xx = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    z = torch.tensor(0.4, requires_grad=True)
    a = torch.tensor(1.7, requires_grad=True)
    inputs = [xx, z, a]
    if slope is not None:
        sl = torch.tensor(slope, requires_grad=True)
        inputs.append(sl)
        fn = lambda: AF.leaky_ash(xx, z, a, sl, dim=dim)  # noqa: E731
    else:
        fn = lambda: AF.ash(xx, z, a, dim=dim)  # noqa: E731
    if route == "operator":
        with torch.autograd.profiler.profile():  # a profiler sends every call through the dispatcher
            y = fn()
            grads = torch.autograd.grad(y, inputs, g)
    elif route == "python":
        with FU.python_route():
            y = fn()
            grads = torch.autograd.grad(y, inputs, g)
    else:
        y = fn()
        grads = torch.autograd.grad(y, inputs, g)
    return y.detach(), [t.detach() for t in grads], _route(y)


CASES = [  # shape, dim: every one has its statistics over trailing dims of a contiguous tensor
    ((4, 3, 5, 6), None),
    ((3, 7, 9), -1),
    ((3, 7, 9), (1, 2)),
    ((6, 33), -1),
    ((11,), None),  # one row: the statistics over the whole vector
]


@pytest.mark.parametrize("shape,dim", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("slope", [None, 0.07], ids=["ash", "leaky"])
def test_cpp_route_gives_the_bits_of_the_python_route_and_the_operator(shape, dim, dtype, slope):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    results = {r: _run(x, dim, slope, r, g) for r in ("cpp", "python", "operator")}
    assert [results[r][2] for r in ("cpp", "python", "operator")] == ["cpp", "python", "operator"]
    y0, g0, _ = results["cpp"]
    assert y0.dtype == dtype and y0.shape == x.shape and y0.is_contiguous()
    for r in ("python", "operator"):
        y, grads, _ = results[r]
        assert torch.equal(y0, y), r
        for a_, b_ in zip(g0, grads):
            assert a_.dtype == b_.dtype and torch.equal(a_, b_), r


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("grad_layout", ["channels_last", "contiguous", "expanded"])
def test_channels_last_maps_take_the_cpp_route_with_the_same_bits(dtype, grad_layout):
    """Per-sample statistics of a channels_last map: each sample is one block of memory, so the
    C++ route takes it as it is; output and dL/dx come back channels_last, whatever the layout of
    the incoming gradient."""
    x = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(11)).to(dtype)
    x = x.to(memory_format=torch.channels_last)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(12)).to(dtype)
    if grad_layout == "channels_last":
        g = g.to(memory_format=torch.channels_last)
    elif grad_layout == "expanded":
        g = torch.tensor(0.75, dtype=dtype).expand(x.shape)
    res = {r: _run(x, None, 0.05, r, g) for r in ("cpp", "python", "operator")}
    assert [res[r][2] for r in res] == ["cpp", "python", "operator"]
    y0, g0, _ = res["cpp"]
    assert y0.stride() == x.stride() and g0[0].stride() == x.stride()
    for r in ("python", "operator"):
        assert torch.equal(y0, res[r][0]) and all(torch.equal(a_, b_) for a_, b_ in zip(g0, res[r][1])), r


@pytest.mark.parametrize("shape,dim", CASES[:4])
def test_cpp_route_matches_the_float64_reference(shape, dim):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    y, (gx, gz, ga, gl), route = _run(x.float(), dim, 0.07, "cpp", g.float())
    assert route == "cpp"
    xd = x.clone().requires_grad_()
    zd, ad, ld = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (0.4, 1.7, 0.07))
    # the parameters as float32 holds them (the route reads the float32 tensors)
    zd.data, ad.data, ld.data = (torch.tensor(v, dtype=torch.float32).double() for v in (0.4, 1.7, 0.07))
    yr = R.ash(xd, zd, ad, ld, C.reduce_dims(xd, dim), 1e-5)
    rx, rz, ra, rl = torch.autograd.grad(yr, (xd, zd, ad, ld), g)
    yr = yr.detach()
    assert float((y.double() - yr).abs().max()) <= 1e-6 * float(yr.abs().max())
    assert float((gx.double() - rx).abs().max()) <= 1e-5 * float(rx.abs().max())
    for got, ref in ((gz, rz), (ga, ra), (gl, rl)):
        assert abs(float(got) - float(ref)) <= 1e-5 * abs(float(ref)) + 1e-6


def test_rows_split_over_threads_give_the_same_bits():
    """With two threads and a large enough tensor both routes split the rows in two chunks; the
    outputs, dL/dx and the parameter totals (added in chunk order) agree bit for bit."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        rows = 6
        x = torch.randn(rows, native.PARALLEL_MIN_ELEMENTS // rows + 7, generator=torch.Generator().manual_seed(5))
        assert native.row_chunks(*x.shape) == 2
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
        a = _run(x, None, None, "cpp", g)
        b = _run(x, None, None, "python", g)
    finally:
        torch.set_num_threads(threads)
    assert (a[2], b[2]) == ("cpp", "python")
    assert torch.equal(a[0], b[0]) and all(torch.equal(p, q) for p, q in zip(a[1], b[1]))


def test_cases_it_does_not_take_go_to_the_python_route():
    z, a = torch.tensor(0.3), torch.tensor(1.2, requires_grad=True)
    x = torch.randn(4, 3, 5, 6, requires_grad=True)
    assert _route(AF.ash(x, z, a)) == "cpp"
    cl = x.to(memory_format=torch.channels_last)
    assert _route(AF.ash(cl, z, a)) == "cpp"  # per-sample statistics: each sample is one block
    assert _route(AF.ash(cl, z, a, dim=(2, 3))) == "python"  # per channel: not a block of memory
    assert _route(AF.ash(x[:, :, :, ::2], z, a)) == "python"  # strided
    assert _route(AF.ash(x, z, a, dim=1)) == "python"  # not the trailing dims
    assert _route(AF.ash(x, z, a, dim=(1, 3))) == "python"
    assert _route(AF.ash(x.transpose(2, 3), z, a, dim=-1)) == "python"  # not contiguous
    assert _route(AF.ash(x.double(), z, a)) == "python"  # the ATen kernels
    assert _route(AF.ash(x, z, a, eps=1e-30)) == "python"  # below the native kernels' eps
    assert _route(FU.ash(x, z, a, backend="aten")) == "python"
    assert _route(FU.ash(x, z, a, backend="native")) == "cpp"


def test_the_direct_entry_takes_the_common_call_and_declines_the_rest():
    """ashlib.functional.ash tries ash_family.eager_ash first: tensors in, per-sample or per-token
    statistics, a float eps, plain eager mode. It makes the C++ route's call with the bits of the
    full route; any other call gets None and the full checks and routing."""
    gen = torch.Generator().manual_seed(31)
    x = torch.randn(4, 3, 5, 6, generator=gen)
    g = torch.randn(x.shape, generator=gen)
    z, a, sl = torch.tensor(0.3), torch.tensor(1.2), torch.tensor(0.05)
    for dim, slope in ((None, None), (-1, None), (None, sl), (-1, sl)):
        res = []
        for direct in (True, False):
            xx = x.clone().requires_grad_()
            zz, aa = z.clone().requires_grad_(), a.clone().requires_grad_()
            y = FU.eager_ash(xx, zz, aa, slope, dim, 1e-5) if direct else FU._ash_call(xx, zz, aa, slope, dim, 1e-5,
                                                                                      FU.DEFAULT_CHUNK_ELEMENTS, None)
            assert _route(y) == "cpp"
            res.append([y.detach(), *torch.autograd.grad(y, (xx, zz, aa), g)])
        assert all(torch.equal(p, q) for p, q in zip(*res)), (dim, slope)
    xg = x.clone().requires_grad_()
    assert _route(FU.eager_ash(xg.to(memory_format=torch.channels_last), z, a, None, None, 1e-5)) == "cpp"
    assert _route(FU.eager_ash(xg[0, 0, 0], z, a, None, None, 1e-5)) == "cpp"  # 1-D: one row
    declined = [((x, 0.3, a, None, None, 1e-5), "a number"), ((x, z, 1.2, None, None, 1e-5), "a number"),
                ((x, z, a, 0.05, None, 1e-5), "a number"), ((x, z, a, None, (1, 2), 1e-5), "dims as a tuple"),
                ((x, z, a, None, 1, 1e-5), "another dim"), ((x, z, a, None, None, 1), "an int eps"),
                ((x, z, a, None, None, -1e-5), "a bad eps"), ((x.double(), z, a, None, None, 1e-5), "float64"),
                ((x[..., ::2], z, a, None, None, 1e-5), "strided"), ((x[0, 0, 0, 0], z, a, None, None, 1e-5), "0-d"),
                ((x.to(memory_format=torch.channels_last), z, a, None, -1, 1e-5), "rows not in memory"),
                ((x, torch.zeros(2), a, None, None, 1e-5), "two z values"),
                ((x, z, a, None, None, 1e-30), "eps below the kernels'")]
    for args, why in declined:
        assert FU.eager_ash(*args) is None, why
    with FU.python_route():
        assert FU.eager_ash(x, z, a, None, None, 1e-5) is None
    with torch.autograd.profiler.profile():
        assert FU.eager_ash(x, z, a, None, None, 1e-5) is None
    import torch.autograd.forward_ad as fwAD
    with fwAD.dual_level():
        assert FU.eager_ash(x, z, a, None, None, 1e-5) is None
        dual = fwAD.make_dual(x, torch.ones_like(x))
        tangent = fwAD.unpack_dual(AF.ash(dual, z, a)).tangent  # the reference composite: a real jvp
        assert tangent is not None and bool(tangent.abs().sum() > 0)


def test_bad_parameters_raise_the_python_routes_errors():
    x = torch.randn(3, 8)
    for z, a, msg in ((0.0, torch.tensor(-1.0), "alpha"), (torch.tensor(float("nan")), 1.0, "z"),
                      (0.0, torch.tensor(float("inf")), "alpha")):
        with pytest.raises(ValueError, match=f"{msg}=.* is out of range"):
            FU.ash(x, z, a)
    with pytest.raises(ValueError, match="slope=.* is out of range"):
        FU.leaky_ash(x, 0.0, 1.0, torch.tensor(0.0))
    with pytest.raises(ValueError, match="2 elements"):
        FU.ash(x, torch.zeros(2), 1.0)


def test_samples_outside_the_kernels_range_take_the_exact_path():
    """A sample near float32's limit fails the kernels' range check: the C++ route throws its
    fallback before returning anything and the Python route computes it in float64."""
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(7))
    x[1, 3] = 3e38
    xx = x.clone().requires_grad_()
    y = FU.ash(xx, 0.5, 1.0)
    assert _route(y) == "python"
    yr = R.ash(x.double(), torch.tensor(0.5, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64), None,
               (1,), 1e-5)
    assert torch.equal(y.detach().isfinite(), yr.isfinite())
    fin = yr.isfinite()
    assert torch.allclose(y.detach().double()[fin], yr[fin], rtol=1e-6, atol=0)
    y.sum().backward()
    assert xx.grad is not None and xx.grad[0].isfinite().all()


def test_gradient_penalty_on_the_cpp_route():
    """create_graph=True: the C++ backward calls the differentiable reference backward, so the
    second-order gradients are those of the Python route, and match float64 central differences."""
    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    res = []
    for route in ("cpp", "python", "operator"):  # the operator: its C++ autograd kernel (CPU)
        xx = x.float().requires_grad_()
        z, a = torch.tensor(0.4, requires_grad=True), torch.tensor(1.7, requires_grad=True)
        context = {"python": FU.python_route, "operator": torch.autograd.profiler.profile}.get(route,
                                                                                             contextlib.nullcontext)
        with context():
            y = AF.ash(xx, z, a)
            assert _route(y) == route
            gx, = torch.autograd.grad(y.pow(2).sum(), xx, create_graph=True)
            res.append(torch.autograd.grad(gx.pow(2).sum(), (xx, z, a)))
    for other in res[1:]:
        for p, q in zip(res[0], other):
            assert torch.equal(p, q)
    h = 1e-6

    def penalty(av):
        xv = x.clone().requires_grad_()
        g1, = torch.autograd.grad(R.ash(xv, torch.tensor(0.4, dtype=torch.float64).float().double(),
                                        torch.tensor(av, dtype=torch.float64), None, (1, 2), 1e-5).pow(2).sum(), xv)
        return float(g1.pow(2).sum())
    a0 = float(torch.tensor(1.7))
    fd = (penalty(a0 + h) - penalty(a0 - h)) / (2 * h)
    assert abs(float(res[0][2]) - fd) <= 1e-3 * abs(fd)


def test_module_in_place_no_grad_and_inference_mode():
    torch.manual_seed(9)
    m = ashlib.ASH(k=0.3)
    x = torch.randn(5, 4, 7, requires_grad=True)
    y = m(x)
    assert _route(y) == "cpp"
    y.mul_(2.0)  # the output is a fresh tensor: in-place ops on it are fine
    y.sum().backward()
    assert x.grad is not None and m.z_param.grad is not None and m.log_alpha.grad is not None
    with torch.no_grad():
        y1 = m(x)
    with torch.inference_mode():
        y2 = m(x.detach())
    assert torch.equal(y1, y2) and torch.equal(2 * y1, y.detach())


def _python(code: str, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=e,
                          timeout=600)


def test_empty_cache_builds_in_the_background_and_a_missing_compiler_is_not_an_error(tmp_path):
    """A process whose cache lacks the C++ library does not wait for it: the first calls run the
    Python route while it compiles; then the C++ route takes over with the same bits. Without a
    C++ compiler ASH keeps its Python route (one warning says so)."""
    code = """
        import warnings, torch
        import ashlib.functional as AF
        from ashlib.ops import native
        x = torch.randn(4, 50, generator=torch.Generator().manual_seed(0), requires_grad=True)
        a = torch.tensor(1.3, requires_grad=True)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            y1 = AF.ash(x, 0.2, a)
            first = y1.grad_fn.name()
            ready = native.eager_ops(wait=True)
            y2 = AF.ash(x, 0.2, a)
        g1 = torch.autograd.grad(y1.sum(), (x, a))
        g2 = torch.autograd.grad(y2.sum(), (x, a))
        same = torch.equal(y1, y2) and all(torch.equal(p, q) for p, q in zip(g1, g2))
        print(first.split("<")[-1], ready, y2.grad_fn.name().split("<")[-1], same,
              [str(m.message)[:45] for m in w])
    """
    cache = tmp_path / "cache"
    cache.mkdir()
    # the C kernels are copied in, so that only the C++ library is missing
    kernels = native.build()
    (cache / os.path.basename(kernels)).write_bytes(open(kernels, "rb").read())
    built = _python(code, ASHLIB_CACHE_DIR=str(cache))
    assert built.returncode == 0, built.stderr
    out = built.stdout.strip()
    assert out.startswith("_EagerASHBackward True ashlib_eager::ASHFunction> True []"), out
    assert len([f for f in os.listdir(cache) if f.startswith("ashlib_eager-")]) == 1
    nocxx = _python(code, ASHLIB_CACHE_DIR=str(tmp_path / "other"), CXX=str(tmp_path / "no-such-c++"))
    assert nocxx.returncode == 0, nocxx.stderr
    assert nocxx.stdout.startswith("_EagerASHBackward False _EagerASHBackward True ['ashlib: the C++ fast path of ASH is una"), \
        nocxx.stdout


def test_cpp_route_keeps_only_the_input_and_statistics_alive():
    """What the graph keeps beyond the output, measured on the heap (glibc's mallinfo2): the
    saved-tensor hooks the benchmark uses would send the call through the operator instead."""
    import ctypes
    import gc

    class _Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("needs glibc's mallinfo2")
    mallinfo2.restype = _Info

    def in_use():
        gc.collect()
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    x = torch.randn(16, 64, 32, 32, requires_grad=True)
    z, a = torch.tensor(0.2, requires_grad=True), torch.tensor(1.1, requires_grad=True)
    AF.ash(x, z, a).sum().backward()  # warm up (the route's first call loads things)
    x.grad = None
    before = in_use()
    y = AF.ash(x, z, a)
    assert _route(y) == "cpp"
    held = in_use() - before - y.numel() * y.element_size()
    assert held < 0.05 * x.numel() * x.element_size(), held  # the statistics and the graph's nodes only
    del y
    gc.collect()
    assert in_use() - before < 0.05 * x.numel() * x.element_size()


def test_a_process_that_exits_while_compiling_leaves_no_compiler_running(tmp_path):
    """The background build of a process that ends first is stopped with it (the compiler
    proper included), not left to compete with whatever runs next."""
    import time
    cache = tmp_path / "cache"
    cache.mkdir()
    kernels = native.build()
    (cache / os.path.basename(kernels)).write_bytes(open(kernels, "rb").read())
    marker = f"ashlib-exit-test-{os.getpid()}"
    wrapper = tmp_path / "cxx"  # a compiler that runs long, under a name we can look for
    # like a compiler driver, it runs the long part in a child process
    wrapper.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then exec c++ \"$@\"; fi\n"
                       f"{sys.executable} -c 'import time; time.sleep(60)' {marker} &\nwait\nexit 1\n")
    wrapper.chmod(0o755)
    code = """
        import time, torch, ashlib.functional as AF
        AF.ash(torch.randn(3, 8), 0.0, 1.0)  # starts the background build
        time.sleep(1.0)
    """
    r = _python(code, ASHLIB_CACHE_DIR=str(cache), CXX=str(wrapper))
    assert r.returncode == 0, r.stderr
    time.sleep(0.5)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert marker not in ps, ps


@pytest.mark.parametrize("name", ["ash", "leaky_ash", "adaptive_gumbel"])
def test_negative_views_and_zero_tensors_are_read_as_values(name):
    """Kernels read tensors through pointers: a negative view (x or the incoming gradient) must
    count as its values, and a zero-tensor gradient (which has no memory) as zeros, on every
    route."""
    fn = {"ash": lambda t: AF.ash(t, 0.3, torch.tensor(1.2, requires_grad=True)),
          "leaky_ash": lambda t: AF.leaky_ash(t, 0.3, 1.2, 0.05),
          "adaptive_gumbel": lambda t: AF.adaptive_gumbel(t, 1.3)}[name]
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(13))
    g = torch.randn(3, 8, generator=torch.Generator().manual_seed(14))
    for route in ("default", "python", "operator"):
        ctx = (FU.python_route() if route == "python" else
               torch.autograd.profiler.profile() if route == "operator" else contextlib.nullcontext())
        with ctx:
            want = fn(-x)
            got = fn(torch._neg_view(x))
            assert torch.equal(got, want), route
            xx = x.clone().requires_grad_()
            gx, = torch.autograd.grad(fn(xx), xx, torch._neg_view(g))
            gr, = torch.autograd.grad(fn(xx), xx, -g)
            assert torch.equal(gx, gr), route
            gz, = torch.autograd.grad(fn(xx), xx, torch._efficientzerotensor(x.shape))
            assert torch.equal(gz, torch.zeros_like(x)), route


def test_a_failed_build_is_remembered_until_build_native_tries_again(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    kernels = native.build()
    (cache / os.path.basename(kernels)).write_bytes(open(kernels, "rb").read())
    log = tmp_path / "calls"
    wrapper = tmp_path / "cxx"  # a C++ compiler that always fails (and counts its builds)
    wrapper.write_text(f"#!/bin/sh\nif [ \"$1\" = --version ]; then exec c++ \"$@\"; fi\n"
                       f"echo build >> {log}\necho 'no such header' >&2\nexit 1\n")
    wrapper.chmod(0o755)
    code = """
        import warnings, torch, ashlib.functional as AF
        from ashlib.ops import native
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            y = AF.ash(torch.randn(3, 8), 0.0, 1.0)
            native.eager_ops(wait=True)
        print([str(m.message)[:600] for m in w])
    """
    first = _python(code, ASHLIB_CACHE_DIR=str(cache), CXX=str(wrapper))
    assert first.returncode == 0, first.stderr
    assert "no such header" in first.stdout and log.read_text().count("build") == 2  # c++20, then c++17
    failed = [f for f in os.listdir(cache) if f.endswith(".failed")]
    assert len(failed) == 1 and "no such header" in (cache / failed[0]).read_text()
    second = _python(code, ASHLIB_CACHE_DIR=str(cache), CXX=str(wrapper))
    assert second.returncode == 0, second.stderr
    assert "an earlier build failed" in second.stdout and log.read_text().count("build") == 2  # not retried
    cli = subprocess.run([sys.executable, "-m", "ashlib", "build-native"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=ROOT, ASHLIB_CACHE_DIR=str(cache), CXX=str(wrapper)),
                         timeout=600)
    assert cli.returncode == 0 and "no C++ fast path" in cli.stdout  # optional: not an error
    assert log.read_text().count("build") == 4  # the explicit build tried again


def test_a_library_in_the_cache_wins_over_a_remembered_failure(tmp_path, monkeypatch):
    """Another process (a DDP rank) may build the library after this one recorded a failure; and
    a compiler killed by a signal is not recorded as a failure of the source."""
    real = native.build_eager()
    monkeypatch.setenv("ASHLIB_CACHE_DIR", str(tmp_path))
    failing = tmp_path / "cxx"  # reports the real compiler's version, so the cache key is the same
    failing.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then exec c++ \"$@\"; fi\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(RuntimeError, match="failed"):
        native.build_eager(cxx=str(failing))
    assert [f for f in os.listdir(tmp_path) if f.endswith(".failed")]
    with pytest.raises(RuntimeError, match="earlier build failed"):
        native.build_eager(cxx=str(failing), cached_only=True)
    (tmp_path / os.path.basename(real)).write_bytes(open(real, "rb").read())
    assert native.build_eager(cxx=str(failing), cached_only=True) == str(tmp_path / os.path.basename(real))
    os.unlink(tmp_path / os.path.basename(real))
    for f in os.listdir(tmp_path):
        if f.endswith(".failed"):
            os.unlink(tmp_path / f)
    killed = tmp_path / "cxx-killed"  # a compiler that dies by a signal
    killed.write_text("#!/bin/sh\nif [ \"$1\" = --version ]; then exec c++ \"$@\"; fi\nkill -9 $$\n")
    killed.chmod(0o755)
    with pytest.raises(RuntimeError, match="killed by signal"):
        native.build_eager(cxx=str(killed))
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".failed")]


# --- the CPU kernels of the graph operators ashlib::ash and ashlib::ash_backward -------------------
# What a torch.compile graph (and any dispatched call on CPU tensors) runs: the native fast path in
# C++, every other case handed to the operators' Python kernels (ashlib_eager::ash_python and
# ash_backward_python). Which of the two ran is seen by counting the calls of the Python kernels'
# bodies (_ash_forward and _ash_grads, which both Python kernels look up at call time).


@pytest.fixture
def python_kernel_calls(monkeypatch):
    assert FU._fast_ready()  # (the kernels' addresses handed to C++; any first call does this)
    calls = {"forward": 0, "backward": 0}
    fwd, grads = FU._ash_forward, FU._ash_grads

    def counted_forward(*args):
        calls["forward"] += 1
        return fwd(*args)

    def counted_grads(*args):
        calls["backward"] += 1
        return grads(*args)

    monkeypatch.setattr(FU, "_ash_forward", counted_forward)
    monkeypatch.setattr(FU, "_ash_grads", counted_grads)
    return calls


def _graph_call(x, z, a, sl, g, need, eps=1e-5, backend=None, python=False):
    """(forward outputs, backward outputs) of the graph operators, or of their Python kernels."""
    ns = torch.ops.ashlib_eager if python else torch.ops.ashlib
    fwd = ns.ash_python if python else ns.ash
    bwd = ns.ash_backward_python if python else ns.ash_backward
    out = fwd(x, z, a, sl, eps, backend)
    return out, bwd(g, x, z, a, sl, out[1], out[2], out[3], eps, list(need), backend)


def _same(p, q, need=(True,) * 4):
    """Bits equal where needed; where a gradient was not asked for, only its shape and dtype count
    (both kernels return an uninitialised tensor there)."""
    (f1, b1), (f2, b2) = p, q
    assert all(u.dtype == v.dtype and torch.equal(u, v) for u, v in zip(f1, f2))
    for u, v, nd in zip(b1, b2, need):
        assert u.dtype == v.dtype and u.shape == v.shape and (not nd or torch.equal(u, v))


def test_the_graph_operators_have_cpu_kernels_once_the_library_is_loaded():
    assert torch._C._dispatch_has_kernel_for_dispatch_key("ashlib::ash", "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("ashlib::ash_backward", "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("ashlib::ash", "AutogradCPU")


@pytest.mark.parametrize("slope", [None, 0.07], ids=["ash", "leaky"])
def test_autograd_through_the_operator_on_the_cpu_gives_the_python_formulas_gradients(slope, python_kernel_calls):
    """A dispatched call that records a graph: the operator's C++ autograd kernel saves what the
    Python formula saves and its backward is ashlib::ash_backward, so the gradients are those of
    the Python kernels; the statistics and the exact flag are not differentiable."""
    gen = torch.Generator().manual_seed(28)
    x = torch.randn(6, 45, generator=gen)
    g = torch.randn(6, 45, generator=gen)
    xx, z, a = x.clone().requires_grad_(), torch.tensor(-0.3, requires_grad=True), torch.tensor(0.8, requires_grad=True)
    sl = None if slope is None else torch.tensor(slope, requires_grad=True)
    out = torch.ops.ashlib.ash(xx, z, a, sl, 1e-5)
    assert "ashlib_eager::GraphASH" in out[0].grad_fn.name()
    assert [t.requires_grad for t in out] == [True, False, False, False]
    inputs = [t for t in (xx, z, a, sl) if t is not None]
    got = torch.autograd.grad(out[0], inputs, g)
    assert python_kernel_calls == {"forward": 0, "backward": 0}
    ref = torch.ops.ashlib_eager.ash_backward_python(g, x, z.detach(), a.detach(), None if sl is None else sl.detach(),
                                                     out[1], out[2], out[3], 1e-5, [True, True, True, sl is not None])
    for p, q in zip(got, ref):
        assert p.dtype == q.dtype and torch.equal(p, q)
    # only dL/dz asked for: the kernels skip dL/dx, and dL/dz keeps its bits
    gz, = torch.autograd.grad(torch.ops.ashlib.ash(xx, z, a, sl, 1e-5)[0], z, g)
    assert torch.equal(gz, got[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("slope", [None, 0.07], ids=["ash", "leaky"])
def test_graph_kernels_give_the_bits_of_the_python_kernels(dtype, slope, python_kernel_calls):
    gen = torch.Generator().manual_seed(21)
    x = torch.randn(5, 37, generator=gen).to(dtype)
    g = torch.randn(5, 37, generator=gen).to(dtype)
    z, a = torch.tensor(0.4), torch.tensor(1.7)
    sl = None if slope is None else torch.tensor(slope)
    for need in [(True, True, True, True), (True, False, False, False), (False, True, True, False),
                 (False, False, False, True), (False, False, False, False)]:
        got = _graph_call(x, z, a, sl, g, need)
        assert python_kernel_calls == {"forward": 0, "backward": 0}, need  # the C++ kernels took it
        assert not bool(got[0][3])  # not the exact path
        _same(got, _graph_call(x, z, a, sl, g, need, python=True), need)
        python_kernel_calls.update(forward=0, backward=0)
    # and the values against the float64 reference (statistics over each row)
    xd = x.double().requires_grad_()
    zd, ad = (torch.tensor(float(v), dtype=torch.float64, requires_grad=True) for v in (z, a))
    ld = None if sl is None else torch.tensor(float(sl), dtype=torch.float64, requires_grad=True)
    yr = R.ash(xd, zd, ad, ld, (1,), 1e-5)
    inputs = [t for t in (xd, zd, ad, ld) if t is not None]
    refs = torch.autograd.grad(yr, inputs, g.double())
    yr = yr.detach()
    (y, *_), grads = _graph_call(x, z, a, sl, g, (True, True, True, sl is not None))
    tol = 1e-6 if dtype == torch.float32 else 8e-3  # bfloat16: the output's own rounding
    assert float((y.double() - yr).abs().max()) <= tol * float(yr.abs().max())
    assert float((grads[0].double() - refs[0]).abs().max()) <= 10 * tol * float(refs[0].abs().max())
    for got, ref in zip(grads[1:], refs[1:]):
        assert abs(float(got) - float(ref)) <= 1e-4 * abs(float(ref)) + 1e-5


def test_graph_kernels_split_rows_over_threads_as_the_python_kernels(python_kernel_calls):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        x = torch.randn(6, native.PARALLEL_MIN_ELEMENTS // 6 + 7, generator=torch.Generator().manual_seed(22))
        assert native.row_chunks(*x.shape) == 2
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(23))
        args = (x, torch.tensor(-0.2), torch.tensor(0.9), None, g, (True, True, True, False))
        got = _graph_call(*args)
        assert python_kernel_calls == {"forward": 0, "backward": 0}
        _same(got, _graph_call(*args, python=True))
    finally:
        torch.set_num_threads(threads)


def test_graph_kernels_take_views_and_odd_gradients_as_the_python_kernels(python_kernel_calls):
    """A transposed x is made contiguous, a gradient of another dtype or layout converted, a
    negative view and a zero tensor read as values: the same bits as the Python kernels."""
    gen = torch.Generator().manual_seed(24)
    base = torch.randn(9, 6, generator=gen)
    x = base.t()  # (6, 9), not contiguous
    z, a = torch.tensor(0.1), torch.tensor(2.5)
    grads = [torch.randn(9, 6, generator=gen).t(), torch.randn(6, 9, generator=gen, dtype=torch.float64),
             torch._efficientzerotensor(6, 9), torch._neg_view(torch.randn(6, 9, generator=gen)),
             torch.tensor(0.5).expand(6, 9)]
    for g in grads:
        got = _graph_call(x, z, a, None, g, (True, True, True, False))
        assert python_kernel_calls == {"forward": 0, "backward": 0}
        _same(got, _graph_call(x, z, a, None, g, (True, True, True, False), python=True))
        python_kernel_calls.update(forward=0, backward=0)


def test_graph_kernels_hand_every_other_case_to_the_python_kernels(python_kernel_calls):
    gen = torch.Generator().manual_seed(25)
    x = torch.randn(4, 16, generator=gen)
    g = torch.randn(4, 16, generator=gen)
    z, a = torch.tensor(0.5), torch.tensor(1.0)
    need = (True, True, True, False)

    def handed_over(expect_exact=False, **kw):
        before = dict(python_kernel_calls)
        xx = kw.pop("x", x)
        got = _graph_call(xx, kw.pop("z", z), kw.pop("a", a), None, g.to(xx.dtype), need, **kw)
        assert python_kernel_calls["forward"] == before["forward"] + 1
        assert python_kernel_calls["backward"] == before["backward"] + 1
        assert bool(got[0][3]) == expect_exact
        return got

    big = x.clone()
    big[1, 3] = 3e38  # outside the kernels' range: the exact float64 path, forward and backward
    got = handed_over(expect_exact=True, x=big)
    yr = R.ash(big.double(), z.double(), a.double(), None, (1,), 1e-5)
    fin = yr.isfinite()
    assert torch.equal(got[0][0].isfinite(), fin)
    assert torch.allclose(got[0][0].double()[fin], yr[fin], rtol=1e-6, atol=0)
    handed_over(expect_exact=True, eps=1e-30)  # below the kernels' eps: the exact path too
    handed_over(backend="aten")  # the ATen path, asked for
    handed_over(x=x.double())  # float64: the ATen path
    with torch.profiler.profile():  # under the profiler: outputs from torch's allocator
        handed_over()
    with pytest.raises(ValueError, match="alpha=.* is out of range"):  # the Python kernel's errors
        torch.ops.ashlib.ash(x, z, torch.tensor(-1.0), None, 1e-5)
    with pytest.raises((ValueError, RuntimeError), match="one element"):
        torch.ops.ashlib.ash(x, torch.zeros(2), a, None, 1e-5)


def test_a_compiled_graph_runs_the_cpp_kernels(python_kernel_calls):
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(26))
    g = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(27))
    res = []
    for compiled in (False, True):
        xx = x.clone().requires_grad_()
        z, a = torch.tensor(0.4, requires_grad=True), torch.tensor(1.7, requires_grad=True)
        fn = lambda t: AF.ash(t, z, a)  # noqa: E731
        if compiled:
            fn = torch.compile(fn, backend="aot_eager", fullgraph=True)
            fn(xx).backward(g)  # compiles (tracing runs the fake kernels only)
            xx.grad = z.grad = a.grad = None
        y = fn(xx)
        y.backward(g)
        res.append([y.detach(), xx.grad, z.grad, a.grad])
    assert python_kernel_calls == {"forward": 0, "backward": 0}
    for p, q in zip(*res):  # and the bits of the C++ eager route
        assert torch.equal(p, q)


def test_a_process_that_only_runs_compiled_graphs_loads_the_cpp_kernels():
    proc = _python(textwrap.dedent("""
        import torch, ashlib.functional as AF
        from ashlib.ops import ash_family as FU
        z, a = torch.tensor(0.0), torch.tensor(1.0)
        fn = torch.compile(lambda t: AF.ash(t, z, a), backend="aot_eager", fullgraph=True)
        x = torch.randn(4, 8)
        fn(x)  # the first run at run time calls the Python kernel, which loads the library
        print(torch._C._dispatch_has_kernel_for_dispatch_key("ashlib::ash", "CPU"), FU._fast_ready())
        """))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["True", "True"]
