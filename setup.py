"""Build hook: a wheel built on a machine with a C compiler carries the native CPU kernels,
compiled for portable instruction sets (ashlib/ops/native/prebuilt.py), so that machines
without a compiler get them too. Without a compiler here the wheel is built without them and
those machines use the ATen path. Everything else is in pyproject.toml."""

import importlib.util
import os
import shutil
import sys

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

_HERE = os.path.dirname(os.path.abspath(__file__))


def _prebuilt_module():
    # by its path: neither torch nor ashlib is importable while a wheel is built
    path = os.path.join(_HERE, "ashlib", "ops", "native", "prebuilt.py")
    spec = importlib.util.spec_from_file_location("_ashlib_prebuilt", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildPyWithKernels(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install compiles into the cache at first use, as a checkout does
        if not _can_prebuild():
            print(f"[ashlib] no C compiler ({_cc()!r}) or no portable variant for this architecture: the wheel "
                  "carries no prebuilt kernels", file=sys.stderr)
            return
        native = os.path.join(self.build_lib, "ashlib", "ops", "native")
        dest = os.path.join(native, "_prebuilt")
        shutil.rmtree(dest, ignore_errors=True)  # (no kernels of earlier sources left in build/)
        try:  # from the copies that go into the wheel: the hash is of the sources it ships
            for path in _prebuilt_module().prebuild(dest, _cc(), folder=native):
                print(f"[ashlib] prebuilt {os.path.basename(path)}", file=sys.stderr)
        except RuntimeError as err:
            shutil.rmtree(dest, ignore_errors=True)
            print(f"[ashlib] the kernels did not compile; the wheel carries none: {err}", file=sys.stderr)


def _cc():
    return os.environ.get("CC") or "cc"


def _can_prebuild():
    return shutil.which(_cc()) is not None and bool(_prebuilt_module().variants())


class KernelsDistribution(Distribution):
    """A wheel that will hold prebuilt kernels is for this platform; without a compiler it is
    pure Python, as before."""

    def has_ext_modules(self):
        return _can_prebuild()


class PlatformWheel(bdist_wheel):
    """Tagged for this platform and any Python 3: the kernels are plain C, loaded by ctypes."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(distclass=KernelsDistribution, cmdclass={"build_py": BuildPyWithKernels, "bdist_wheel": PlatformWheel})
