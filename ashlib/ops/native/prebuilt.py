"""Kernels compiled when a wheel is built, for machines that have no C compiler.

This module imports nothing but the standard library: ``setup.py`` loads it by its path while
building a wheel, where neither torch nor ashlib is importable.

A wheel built on a machine with a C compiler (``pip wheel .``) carries the C kernels of this
folder compiled for portable instruction sets, under ``_prebuilt/``, each file named after a
hash of the sources it was built from. :func:`ashlib.ops.native.library` loads one of them
only when it cannot compile the kernels itself (no compiler, or a failed build), and only one
built from the very sources next to it; otherwise the ATen path runs, as before.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from typing import List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
#: where a wheel keeps the kernels it was built with
PREBUILT_DIR = os.path.join(HERE, "_prebuilt")

# No -ffast-math: it would let the compiler reassociate (x - t_hi) - t_lo. Finite math (the
# caller checks the range; the kernels test for inf and nan by their bits) lets min/max vectorise.
FLAGS_COMMON = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-ffinite-math-only", "-fno-signed-zeros",
                "-ffp-contract=off", "-fPIC", "-shared"]

#: portable builds per architecture, best first: (name, extra flags, CPU flags the variant needs,
#: as Linux's /proc/cpuinfo names them). x86-64-v3 is AVX2 with FMA, BMI1/2, F16C, LZCNT ("abm")
#: and MOVBE (most x86 CPUs since 2015). No x86-64 baseline build: without hardware FMA every
#: fmaf is a library call, and the kernels run about 30x slower than F.silu, far slower than
#: the ATen path. ARMv8-A (all 64-bit ARM) has FMA. Other architectures get no prebuilt kernels.
#: Where the CPU's flags cannot be read (no /proc/cpuinfo: macOS, Windows) a variant that needs
#: any is not loaded: better the ATen path than an illegal instruction.
_X86_V3_NEEDS = ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave")
VARIANTS = {
    "x86_64": [("x86-64-v3", ["-march=x86-64-v3"], _X86_V3_NEEDS)],
    "amd64": [("x86-64-v3", ["-march=x86-64-v3"], _X86_V3_NEEDS)],  # (Windows' name for it)
    "aarch64": [("armv8-a", ["-march=armv8-a"], ())],
    "arm64": [("armv8-a", ["-march=armv8-a"], ())],
}


def cpu_flags() -> str:
    """The flags line of /proc/cpuinfo ("" where there is none)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return ""


def sources(folder: str = HERE) -> List[str]:
    """The C sources of the kernels (``*.c``), sorted."""
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".c"))


def source_files(folder: str = HERE) -> List[str]:
    """The C sources and the headers they include: what a build's identity hashes."""
    return sources(folder) + sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".h"))


def source_hash(folder: str = HERE, extra_flags: Sequence[str] = ()) -> str:
    """A hash of the C sources and headers and of the flags they are compiled with: a prebuilt
    library is loaded only by sources (and flags) that hash the same as the ones it was built
    from (a wheel's own files, not an edited checkout)."""
    h = hashlib.sha256(" ".join([*FLAGS_COMMON, *extra_flags]).encode() + b"\0")
    for path in source_files(folder):
        with open(path, "rb") as fh:
            h.update(os.path.basename(path).encode() + b"\0" + fh.read())
    return h.hexdigest()[:20]


def file_name(name: str, extra_flags: Sequence[str], folder: str = HERE) -> str:
    """The file name of variant ``name`` built from ``folder``'s sources."""
    return f"ashlib_native-{source_hash(folder, extra_flags)}-{name}.so"


#: what platform.machine() says on x86-64 (lower case)
X86 = ("x86_64", "amd64")


def variants() -> list:
    """The portable variants of this machine's architecture (see VARIANTS), best first."""
    return VARIANTS.get(platform.machine().lower(), [])


def flag_set(flags: Optional[str] = None) -> set:
    """The CPU flags named in ``flags`` (a flags line of /proc/cpuinfo; default: this machine's,
    see :func:`cpu_flags`); empty where there is none."""
    return set((cpu_flags() if flags is None else flags).replace(":", " ").split())


def runnable(flags: Optional[str] = None) -> list:
    """The variants this CPU can run, best first: those whose needs are all in ``flags`` (as
    :func:`flag_set` takes it)."""
    have = flag_set(flags)
    return [v for v in variants() if all(n in have for n in v[2])]


def prebuild(dest: str, cc: str = "cc", folder: str = HERE) -> List[str]:
    """Compile the kernels of ``folder`` once per portable variant of this machine's
    architecture into ``dest``; returns the paths written (none for an architecture without
    variants). Raises ``RuntimeError`` with the compiler's message when a variant fails to
    build (nothing is then left half-written)."""
    if shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler: {cc!r} is not on PATH")
    os.makedirs(dest, exist_ok=True)
    written = []
    for name, extra, _ in variants():
        out = os.path.join(dest, file_name(name, extra, folder))
        tmp = out + ".tmp"
        proc = subprocess.run([cc, *FLAGS_COMMON, *extra, *sources(folder), "-o", tmp, "-lm"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise RuntimeError(f"{cc} {' '.join(extra)}: {proc.stderr.strip()[-2000:]}")
        os.replace(tmp, out)
        written.append(out)
    return written


def find(flags: Optional[str] = None, folder: str = HERE, prebuilt_dir: Optional[str] = None) -> Optional[str]:
    """The best prebuilt library this CPU can run that was built from ``folder``'s sources, or
    None. ``flags`` is the flags line of /proc/cpuinfo (default: this machine's, see
    :func:`cpu_flags`); ``prebuilt_dir`` defaults to ``$ASHLIB_PREBUILT_DIR``, else the
    package's own ``_prebuilt`` folder."""
    where = prebuilt_dir or prebuilt_folder()
    if not os.path.isdir(where):
        return None
    for name, extra, _ in runnable(flags):
        path = os.path.join(where, file_name(name, extra, folder))
        if os.path.exists(path):
            return path
    return None


def prebuilt_folder() -> str:
    """Where prebuilt kernels are looked for: ``$ASHLIB_PREBUILT_DIR``, else the package's own."""
    return os.environ.get("ASHLIB_PREBUILT_DIR") or PREBUILT_DIR


def is_prebuilt(path: Optional[str]) -> bool:
    """Whether ``path`` (a loaded library) is one of the prebuilt ones."""
    if not path:
        return False
    return os.path.dirname(os.path.abspath(path)) == os.path.abspath(prebuilt_folder())
