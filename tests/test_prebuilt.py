"""Kernels a wheel brings along (ashlib/ops/native/prebuilt.py, setup.py): a machine without a C
compiler loads them, only when they were built from the sources next to them and for an
instruction set the CPU has, and they meet the numerical contract like the kernels compiled on
the machine itself. The tests compile the prebuilt variants with this machine's compiler (they
skip where there is none, or where the architecture has no variant) and then run ashlib in a
fresh process whose PATH has no compiler it can find."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from ashlib.ops.native import prebuilt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HAS_VARIANT = platform.machine().lower() in prebuilt.VARIANTS
pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None or not _HAS_VARIANT,
                                reason="no C compiler, or no prebuilt variant for this architecture")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    dest = tmp_path_factory.mktemp("prebuilt")
    paths = prebuilt.prebuild(str(dest))
    assert paths and all(os.path.exists(p) for p in paths)
    return dest


def _run(code: str, tmp_path, prebuilt_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT, CC=str(tmp_path / "no-such-cc"), CXX=str(tmp_path / "no-such-c++"),
               ASHLIB_CACHE_DIR=str(tmp_path / "empty-cache"), ASHLIB_PREBUILT_DIR=str(prebuilt_dir))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=600)


_CHECK = """
    import warnings, torch
    import ashlib.functional as AF
    from ashlib.ops import native, ash_family as FU
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        x = torch.randn(3, 4, 9, 9, generator=torch.Generator().manual_seed(0)) * 2
        worst = 0.0
        for fn in (lambda t: AF.ash(t, 0.4, 3.0), lambda t: AF.adaptive_gumbel(t, torch.full((4, 1, 1), 0.7)),
                   lambda t: AF.leaky_ash(t, -0.2, 40.0, 0.05)):
            xs = x.clone().requires_grad_()
            y = fn(xs)
            up = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
            (gx,) = torch.autograd.grad(y, xs, up)
            xd = x.double().requires_grad_()
            yd = fn(xd)  # float64 (ATen path, 1e-12 by the contract) as the reference
            (gd,) = torch.autograd.grad(yd, xd, up.double())
            for a, r in ((y.detach(), yd.detach()), (gx, gd)):
                worst = max(worst, float(((a.double() - r).abs() / r.abs().max()).max()))
        backend = FU.select_backend(x)
    print(backend, native.loaded_path is not None and native.loaded_path.startswith(PREFIX), len(w), worst)
"""


def test_without_a_compiler_the_prebuilt_kernels_run_and_meet_the_contract(built, tmp_path):
    if prebuilt.find(prebuilt_dir=str(built)) is None:
        pytest.skip("this CPU lacks the instruction set of every prebuilt variant")
    out = _run(_CHECK.replace("PREFIX", repr(str(built))), tmp_path, built)
    assert out.returncode == 0, out.stderr
    backend, from_prebuilt, warned, worst = out.stdout.split()
    assert backend == "native" and from_prebuilt == "True"
    assert warned == "0"  # no compiler at all is the set-up these kernels are for: nothing to warn about
    assert float(worst) <= 1e-5  # against float64, relative to each output's scale


def test_prebuilt_kernels_from_other_sources_are_not_loaded(built, tmp_path):
    """A library whose name carries another source hash (a wheel's kernels next to edited
    sources) is ignored: the ATen path runs, with the usual warning."""
    other = tmp_path / "other"
    other.mkdir()
    for f in os.listdir(built):  # ashlib_native-<hash>-<variant>.so, with another hash
        head, tag, variant = f.split("-", 2)
        (other / "-".join([head, "0" * len(tag), variant])).write_bytes((built / f).read_bytes())
    out = _run(_CHECK.replace("PREFIX", repr(str(other))), tmp_path, other)
    assert out.returncode == 0, out.stderr
    backend, from_prebuilt, warned, worst = out.stdout.split()
    assert backend == "aten" and from_prebuilt == "False" and int(warned) >= 1
    assert float(worst) <= 1e-5


def test_find_takes_only_a_variant_the_cpu_can_run(built, monkeypatch):
    for _, _, needs in prebuilt.variants():
        flags = "flags\t: " + " ".join(needs)
        assert prebuilt.find(flags, prebuilt_dir=str(built)) is not None
        for i in range(len(needs)):  # any one missing feature is enough to refuse it
            assert prebuilt.find("flags\t: " + " ".join(needs[:i] + needs[i + 1:]), prebuilt_dir=str(built)) is None
        if needs:  # flags that cannot be read (no /proc/cpuinfo): refused, not guessed
            assert prebuilt.find("", prebuilt_dir=str(built)) is None
    assert prebuilt.find("flags\t: avx2 fma", prebuilt_dir=str(built / "nowhere")) is None
    monkeypatch.delenv("ASHLIB_PREBUILT_DIR", raising=False)
    assert prebuilt.is_prebuilt(os.path.join(prebuilt.PREBUILT_DIR, "x.so"))
    assert not prebuilt.is_prebuilt(None) and not prebuilt.is_prebuilt("/elsewhere/x.so")
    monkeypatch.setenv("ASHLIB_PREBUILT_DIR", str(built))
    assert prebuilt.is_prebuilt(str(built / "x.so"))


def test_the_prebuilt_backward_matches_this_machines_build_bit_for_bit(built):
    """The backward kernel gives the same dL/dx and the same parameter sums, bit for bit, whether
    compiled for this CPU (-march=native) or for the portable variant: its sums do not depend on
    the vector width (given the same statistics; the forward's float64 statistics may differ in
    their last bits between builds). Rows of lengths around the 128-element blocks and the
    bfloat16 widening chunks, ASH and Leaky ASH, with and without dL/dx."""
    import ctypes
    import torch
    from ashlib.ops import native
    path = prebuilt.find(prebuilt_dir=str(built))
    if path is None or native.library() is None:
        pytest.skip("this CPU cannot run the portable variant, or no native build here")
    mine, portable = native.library(), ctypes.CDLL(path)
    gen = torch.Generator().manual_seed(5)
    for n in (1, 7, 16, 127, 128, 129, 1000, 2049, 4113):
        for suffix, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            x = (torch.randn(3, n, generator=gen) * 2).to(dtype)
            g = torch.randn(3, n, generator=gen).to(dtype)
            mu = x.double().mean(1)
            sigma = (x.double().var(1, unbiased=False) + 1e-5).sqrt()
            for ell, need_l, want_gx in ((0.0, 0, True), (0.1, 1, True), (0.0, 0, False)):
                outs = []
                for lib in (mine, portable):
                    fn = getattr(lib, f"ash_backward_{suffix}")
                    fn.argtypes, fn.restype = native.SIGNATURES["ash_backward"][:2]
                    gx = torch.full_like(x, float("nan"))
                    tot = (ctypes.c_double * 3)()
                    assert fn(3, n, x.data_ptr(), g.data_ptr(), gx.data_ptr() if want_gx else None, mu.data_ptr(),
                              sigma.data_ptr(), 0.3, 2.5, ell, need_l, tot) == 0
                    outs.append((gx, list(tot)))
                (gx1, t1), (gx2, t2) = outs
                assert t1 == t2, (n, suffix, ell)
                assert torch.equal(gx1, gx2) if want_gx else (gx1.isnan().all() and gx2.isnan().all())


def test_a_wheel_carries_the_prebuilt_kernels(tmp_path):
    """``pip wheel`` on a copy of the project (no build files left in the checkout): the wheel
    is tagged for this platform and any Python 3, and holds the kernels built from its sources."""
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(ROOT, f), src / f)
    shutil.copytree(os.path.join(ROOT, "ashlib"), src / "ashlib",
                    ignore=shutil.ignore_patterns("__pycache__", "_prebuilt", "*.so"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path / "dist"), "-q"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    (wheel,) = os.listdir(tmp_path / "dist")
    assert "-py3-none-" in wheel and not wheel.endswith("-any.whl")
    names = zipfile.ZipFile(tmp_path / "dist" / wheel).namelist()
    kernels = [n for n in names if n.startswith("ashlib/ops/native/_prebuilt/")]
    assert sorted(kernels) == sorted(f"ashlib/ops/native/_prebuilt/{prebuilt.file_name(name, extra)}"
                                     for name, extra, _ in prebuilt.variants())
    assert "ashlib/ops/native/ash_cpu.c" in names  # the sources the hash was taken of
