"""Native CPU kernels for the fused ASH, compiled from C at first use and called through ctypes.

``ash_cpu.c`` holds the per-sample statistics, forward and backward loops of
:mod:`ashlib.ops.ash` for float32 and bfloat16; every ``*.c`` file of this folder goes into one
shared library. It is compiled once per machine with the system C
compiler (``$CC``, else ``cc``) at ``-O3`` for the host's instruction set, into a cache folder
(``$ASHLIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/ashlib``, else ``~/.cache/ashlib``) under a name
that hashes the source, the flags, the compiler's version and the CPU's feature flags, so a
change to any of them builds afresh. Compiling takes about a second.

Nothing here is required. Without a compiler (or when the build fails), :func:`library` loads
the kernels a wheel was built with, if it has any built from these sources (see
:mod:`.prebuilt`: ``pip wheel .`` on a machine with a compiler makes such a wheel). Failing that,
or with ``ASHLIB_NATIVE=0`` in the environment, it returns ``None`` (with one warning saying
why, when a build failed) and :mod:`ashlib.ops.ash` uses its ATen implementation, which
computes the same thing more slowly.

ctypes releases the GIL during a call, so :func:`parallel_rows` spreads samples over
``torch.get_num_threads()`` Python threads that run the C loops concurrently.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import torch

from . import prebuilt

__all__ = ["library", "library_for", "available", "build", "build_eager", "eager_ops", "parallel_rows",
           "row_chunks", "SOURCES", "SIGNATURES", "DTYPE_SUFFIX"]

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = prebuilt.sources(_HERE)
_FLAGS_COMMON = prebuilt.FLAGS_COMMON  # (why these: see there)
_FLAGS_NATIVE = _FLAGS_COMMON + ["-march=native"]
_FLAGS_PORTABLE = _FLAGS_COMMON  # the compiler's default target


def _fallback_flags() -> list:
    """What :func:`build` tries when ``-march=native`` fails: the portable variants this CPU runs
    (:func:`prebuilt.runnable`), then the compiler's default target, except on x86-64, where that
    has no FMA and the kernels would be slower than the ATen path."""
    out = [_FLAGS_COMMON + extra for _, extra, _ in prebuilt.runnable(_cpu_flags())]
    return out if platform.machine().lower() in prebuilt.X86 else out + [_FLAGS_PORTABLE]

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
#: the file :func:`library` loaded (in the cache, or a wheel's prebuilt one), None before
loaded_path: Optional[str] = None
_tried = False
_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0

_i64, _f32, _f64, _p = ctypes.c_int64, ctypes.c_float, ctypes.c_double, ctypes.c_void_p
#: ctypes signatures: name -> (argument types, result type, dtype suffixes the C code defines)
SIGNATURES = {
    "ash_forward": ([_i64, _i64, _p, _p, _f64, _f64, _f64, _f32, _f32, _p, _p], ctypes.c_int, ("f32", "bf16")),
    "ash_backward": ([_i64, _i64, _p, _p, _p, _p, _p, _f64, _f32, _f32, ctypes.c_int, _p], ctypes.c_int,
                     ("f32", "bf16")),
    "ash_exp": ([_i64, _p, _p], None, ("f32",)),
    # elementwise_cpu.c: (e0, e1, inner, K, x, [g,] out..., parameter[, acc]) -> hard count or -1
    "swish_fwd": ([_i64, _i64, _i64, _i64, _p, _p, _p], _i64, ("f32", "bf16")),
    "swish_bwd": ([_i64, _i64, _i64, _i64, _p, _p, _p, _p, _p], _i64, ("f32", "bf16")),
    "swish_hard": ([_i64, _i64, _i64, _i64, _p, _p, _p], _i64, ("f32", "bf16")),
    "relu_fwd": ([_i64, _i64, _i64, _i64, _p, _p, _p], _i64, ("f32", "bf16")),
    "relu_bwd": ([_i64, _i64, _i64, _i64, _p, _p, _p, _p, _p], _i64, ("f32", "bf16")),
    "relu_hard": ([_i64, _i64, _i64, _i64, _p, _p, _p], _i64, ("f32", "bf16")),
    "gumbel_fwd": ([_i64, _i64, _i64, _i64, _p, _p, _p], _i64, ("f32", "bf16")),
    "gumbel_bwd": ([_i64, _i64, _i64, _i64, _p, _p, _p, _p, _p], _i64, ("f32", "bf16")),
    "gumbel_hard": ([_i64, _i64, _i64, _i64, _p, _p, _p], _i64, ("f32", "bf16")),
    "ew_gumbel_exp": ([_i64, _p, _p], None, ("f32",)),
    "ew_gumbel_exp_horner": ([_i64, _p, _p], None, ("f32",)),
    "ew_expm1": ([_i64, _p, _p], None, ("f32",)),
    "ew_log1p": ([_i64, _p, _p], None, ("f32",)),
    "ew_exp": ([_i64, _p, _p], None, ("f32",)),
}


def address(lib: ctypes.CDLL, name: str) -> int:
    """The address of function ``name`` of ``lib`` (for code that calls it directly: the C++ route)."""
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def _env_off(name: str) -> bool:
    """Whether the environment switches ``name`` off (0, false, no, off)."""
    return os.environ.get(name, "1").strip().lower() in ("0", "false", "no", "off")


def _cache_dir() -> str:
    if os.environ.get("ASHLIB_CACHE_DIR"):
        return os.environ["ASHLIB_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "ashlib")


_cpu_flags = prebuilt.cpu_flags


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def build(cc: Optional[str] = None, flags: Optional[list] = None) -> str:
    """Compile the ``*.c`` files of this folder (if not cached) and return the shared library's path.

    Safe to call from many processes at once (DDP ranks, pytest workers): the build holds an
    exclusive lock on a file in the cache folder, so one process compiles and the others wait and
    then load its result. The compiler writes to a temporary file that is moved into place
    atomically; temporary files left by a build that was killed are removed by the next one.
    Without ``flags`` it tries ``-march=native``, then :func:`_fallback_flags`. Raises
    ``RuntimeError`` with the compiler's message when compilation fails.
    """
    cc = cc or os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler: {cc!r} is not on PATH (set CC to use another)")
    src = b""
    for path in prebuilt.source_files(_HERE):
        with open(path, "rb") as fh:
            src += fh.read()
    errors = []
    for fl in ([flags] if flags else [_FLAGS_NATIVE, *_fallback_flags()]):
        key = src + " ".join(fl).encode() + _compiler_version(cc).encode() + _cpu_flags().encode()
        path = _cached_build("ashlib_native", key, lambda out, fl=fl: [cc, *fl, *SOURCES, "-o", out, "-lm"], errors)
        if path:
            return path
    raise RuntimeError("compiling ashlib/ops/native/*.c failed:\n" + "\n".join(errors))


def _cached_build(prefix: str, key: bytes, command: Callable[[str], list], errors: list,
                  cached_only: bool = False) -> Optional[str]:
    """``cache/prefix-<hash of key>.so``, running ``command(temporary path)`` under the build lock
    when it is not there yet (unless ``cached_only``); None (and the compiler's message appended
    to ``errors``) when the command fails."""
    out_dir = _cache_dir()
    path = os.path.join(out_dir, f"{prefix}-{hashlib.sha256(key).hexdigest()[:20]}.so")
    if os.path.exists(path):
        return path
    if cached_only:
        return None
    os.makedirs(out_dir, exist_ok=True)
    with _build_lock(out_dir):
        if os.path.exists(path):  # another process built it while this one waited
            return path
        _remove_stale_temporaries(out_dir)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".so", dir=out_dir)
        os.close(fd)
        cmd = command(tmp)
        try:
            with _running_lock:
                if _exiting:
                    raise RuntimeError("the process is exiting: no compiler is started")
                # a session of its own, so that stopping it stops the compiler proper (cc1,
                # cc1plus) too; the price: a process killed by a signal (no atexit) leaves its
                # compiler to finish, into a temporary file that the next build removes
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=hasattr(os, "killpg"))
                _running[proc] = os.getpid()
            try:
                _, stderr = proc.communicate()
            except BaseException:  # (KeyboardInterrupt) the compiler does not outlive the build
                _stop(proc)
                raise
            finally:
                with _running_lock:
                    _running.pop(proc, None)
            if proc.returncode == 0:
                os.replace(tmp, path)  # atomic: readers see no file or the whole file
                return path
            if proc.returncode < 0:  # killed (at exit, by the OOM killer): not a verdict on the source
                raise RuntimeError(f"the compiler was killed by signal {-proc.returncode}")
            shown = [c for c in cmd[1:] if c.startswith("-") and not c.startswith(("-I", "-L", "-Wl")) and c != "-o"]
            errors.append(f"{' '.join(cmd[:1] + shown)}: {stderr.strip()[-2000:]}")
            return None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


#: compilers running -> the pid of the process that started them (stopped when that process
#: exits: a background build must not outlive it; a forked child leaves its parent's alone)
_running: dict = {}
_running_lock = threading.Lock()
_exiting = False


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, 9)
        else:
            proc.kill()


@atexit.register
def _stop_compilers() -> None:
    global _exiting
    with _running_lock:  # no compiler starts after this
        _exiting = True
        mine = [proc for proc, pid in _running.items() if pid == os.getpid()]
    for proc in mine:
        _stop(proc)


_TMP_PREFIX = "building-"


@contextlib.contextmanager
def _build_lock(out_dir: str):
    """An exclusive advisory lock (flock) on ``out_dir/build.lock``, released when the process
    holding it exits, however it exits."""
    fh = open(os.path.join(out_dir, "build.lock"), "a+")
    try:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock; the atomic rename still keeps the cache consistent
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()


def _remove_stale_temporaries(out_dir: str) -> None:
    """Temporary outputs of builds that did not finish (killed compilers). Called with the build
    lock held, so no live build owns one."""
    for name in os.listdir(out_dir):
        if name.startswith(_TMP_PREFIX) or (name.startswith("tmp") and name.endswith(".so")):
            try:
                os.unlink(os.path.join(out_dir, name))
            except OSError:
                pass


def _x86_without_fma() -> bool:
    """An x86 CPU without fused multiply-add (before 2013): every fmaf of the kernels would be a
    library call, and they would run about 30x slower than F.silu, several times slower than
    the ATen path. False where the CPU's flags cannot be read."""
    flags = prebuilt.flag_set(_cpu_flags())
    return platform.machine().lower() in prebuilt.X86 and bool(flags) and "fma" not in flags


def _build_or_prebuilt() -> str:
    """:func:`build`'s library; where it cannot build (no C compiler, a failed build), one that a
    wheel brought along, compiled from these very sources (see :mod:`.prebuilt`). Raises
    ``RuntimeError`` on an x86 CPU without FMA, where the ATen path is faster."""
    if _x86_without_fma():
        raise RuntimeError("this x86 CPU has no FMA instructions: the kernels would be slower than the ATen path")
    try:
        return build()
    except (RuntimeError, OSError):  # (OSError: a cache folder that cannot be written)
        path = prebuilt.find(_cpu_flags())
        if path is None:
            raise
        return path  # (no warning: this is what a wheel's kernels are for)


def library() -> Optional[ctypes.CDLL]:
    """The loaded kernels, building them on first use; None when disabled or not buildable."""
    global _lib, _tried, loaded_path
    if _lib is not None or _tried:
        return _lib
    with _lock:  # (_tried is set last: a thread arriving during the build waits here for its result)
        if _tried:
            return _lib
        try:
            if not _env_off("ASHLIB_NATIVE"):
                path = _build_or_prebuilt()
                lib = ctypes.CDLL(path)
                for name, (args, res, suffixes) in SIGNATURES.items():
                    for suf in suffixes:
                        fn = getattr(lib, f"{name}_{suf}")
                        fn.argtypes, fn.restype = args, res
                _lib, loaded_path = lib, path
        except (RuntimeError, OSError) as err:
            warnings.warn(f"ashlib: native CPU kernels unavailable, using the ATen implementation of the "
                          f"fused ASH ({err})", RuntimeWarning, stacklevel=3)
        finally:
            _tried = True
    return _lib


#: the C++ operator ``ashlib_eager::ash`` (see ash_autograd.cpp and :func:`eager_ops`)
EAGER_SOURCE = os.path.join(_HERE, "ash_autograd.cpp")


def _torch_dirs() -> tuple:
    base = os.path.dirname(os.path.abspath(torch.__file__))
    return os.path.join(base, "include"), os.path.join(base, "lib")


class _NoCompiler(RuntimeError):
    """No C++ compiler on PATH. Where the C kernels are a wheel's prebuilt ones that is the
    expected set-up (a machine with no compilers at all), and ASH takes its Python route without
    a warning."""


def build_eager(cxx: Optional[str] = None, cached_only: bool = False) -> Optional[str]:
    """Compile ``ash_autograd.cpp`` against the installed torch (if not cached) and return the
    library's path. Keyed like :func:`build`, with torch's version in place of the CPU (the
    file holds no arithmetic: the kernels of :func:`build` are passed to it by address).
    Raises ``RuntimeError`` with the compiler's message when compilation fails, and leaves a
    ``.failed`` file in the cache so that later processes do not try again in the background;
    an explicit call (``python -m ashlib build-native``, which scripts/setup.sh runs at install
    time) tries again. With ``cached_only`` it compiles nothing: the path if cached, None if
    not, ``RuntimeError`` if an earlier build failed. Compiling takes tens of seconds at most
    (it includes PyTorch's headers).
    """
    cxx = cxx or os.environ.get("CXX") or "c++"
    if shutil.which(cxx) is None:
        raise _NoCompiler(f"no C++ compiler: {cxx!r} is not on PATH (set CXX to use another)")
    with open(EAGER_SOURCE, "rb") as fh:
        src = fh.read()
    inc, lib = _torch_dirs()
    abi = int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", 1))
    common = ["-O2", "-fPIC", "-shared", "-w", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-I", inc,
              "-I", os.path.join(inc, "torch", "csrc", "api", "include")]
    link = ["-L", lib, "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{lib}"]
    version = f"{torch.__version__} {torch.version.git_version}".encode() + _compiler_version(cxx).encode()
    failed = os.path.join(_cache_dir(), "ashlib_eager-" + hashlib.sha256(
        src + " ".join(common + link).encode() + version).hexdigest()[:20] + ".failed")
    attempts = [(common + [std]) for std in ("-std=c++20", "-std=c++17")]

    def build_one(flags, only_cached):
        return _cached_build("ashlib_eager", src + " ".join(flags + link).encode() + version,
                             lambda out: [cxx, *flags, EAGER_SOURCE, "-o", out, *link], errors, only_cached)

    errors: list = []
    for flags in attempts:  # a library in the cache wins over a remembered failure
        path = build_one(flags, True)
        if path:
            return path
    if os.path.exists(failed):
        if cached_only:
            raise RuntimeError(f"an earlier build failed (its messages: {failed}; `python -m ashlib build-native` "
                               "tries again)")
        with contextlib.suppress(OSError):
            os.unlink(failed)
    if cached_only:
        return None
    for flags in attempts:
        path = build_one(flags, False)
        if path:
            with contextlib.suppress(OSError):
                os.unlink(failed)  # (another process may have recorded a failure meanwhile)
            return path
    with contextlib.suppress(OSError):
        with open(failed, "w") as fh:
            fh.write("\n".join(errors) + "\n")
    raise RuntimeError("compiling ashlib/ops/native/ash_autograd.cpp failed:\n" + "\n".join(errors))


_eager_loaded = False
_eager_failed = False
_eager_thread: Optional[threading.Thread] = None


def _load_eager(path: str) -> None:
    global _eager_loaded
    torch.ops.load_library(path)
    _eager_loaded = True


def _eager_unavailable(err) -> None:
    global _eager_failed
    _eager_failed = True
    if isinstance(err, _NoCompiler) and prebuilt.is_prebuilt(loaded_path):
        return
    warnings.warn(f"ashlib: the C++ fast path of ASH is unavailable ({err}); ASH runs its Python route (the "
                  f"same kernels and results, more time per call)", RuntimeWarning, stacklevel=1)


def _build_and_load_eager() -> None:
    try:
        _load_eager(build_eager())
    except (RuntimeError, OSError) as err:
        _eager_unavailable(err)


def eager_ops(wait: bool = False) -> bool:
    """Whether the C++ operator ``torch.ops.ashlib_eager.ash`` is loaded.

    It needs the C kernels (:func:`library`) and a C++ compiler. When its library is not in the
    cache yet, the first call starts compiling it on a background thread and returns False, so
    the first forward pass does not wait for the compiler: ASH runs its Python route (the same
    kernels, the same results) until the library is loaded. ``wait=True`` waits for that build.
    ``ASHLIB_NATIVE=0`` or ``ASHLIB_EAGER_CPP=0`` in the environment turns the operator off."""
    global _eager_thread
    if _eager_loaded:
        return True
    if _eager_failed or library() is None or _env_off("ASHLIB_EAGER_CPP"):
        return False
    with _lock:
        if not _eager_loaded and _eager_thread is None:
            try:  # already in the cache (or known not to build): load it now, or give up now
                path = build_eager(cached_only=True)
            except (RuntimeError, OSError) as err:  # no C++ compiler, no source, an earlier failure
                _eager_unavailable(err)
                return False
            if path is not None:
                try:
                    _load_eager(path)
                    return True
                except (RuntimeError, OSError):
                    pass
            _eager_thread = threading.Thread(target=_build_and_load_eager, name="ashlib-build", daemon=True)
            _eager_thread.start()
        thread = _eager_thread
    if wait and thread is not None:
        thread.join()
    return _eager_loaded


#: torch dtype -> suffix of the C functions for it
DTYPE_SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}


def library_for(x: torch.Tensor) -> Optional[ctypes.CDLL]:
    """The kernels when they can take ``x``: a CPU float32 or bfloat16 tensor, outside
    ``torch.compile`` (which traces the ATen paths instead); else None."""
    if x.device.type != "cpu" or x.dtype not in DTYPE_SUFFIX or torch.compiler.is_compiling():
        return None
    return library()


def available() -> bool:
    """Whether the native kernels are built and loaded (builds them if needed)."""
    return library() is not None


def _forget_pool() -> None:
    """In a forked child the pool's threads (and a background build's thread) do not exist:
    start new ones when needed."""
    global _pool, _pool_size, _eager_thread, _running_lock
    _pool, _pool_size = None, 0
    _running_lock = threading.Lock()  # (the parent's may have been held by another thread at the fork)
    if not _eager_loaded:
        _eager_thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _executor() -> ThreadPoolExecutor:
    """One pool for the process, sized to torch's thread count (grown if that count grows, never
    rebuilt for a smaller batch: calls with fewer rows simply use fewer of its threads)."""
    global _pool, _pool_size
    n = max(1, torch.get_num_threads())
    if _pool is None or _pool_size < n:
        with _lock:
            if _pool is None or _pool_size < n:
                old = _pool
                _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="ashlib-native")
                _pool_size = n
                if old is not None:
                    old.shutdown(wait=False)
    return _pool


#: Below this many elements a call runs on the calling thread only: handing work to the pool
#: costs tens of microseconds, more than the kernels take on smaller tensors.
PARALLEL_MIN_ELEMENTS = 1 << 19


def row_chunks(rows: int, n: int) -> int:
    """How many calls :func:`parallel_rows` makes for ``rows`` rows of ``n`` elements (callers
    size per-call buffers with it before allocating their large outputs)."""
    threads = min(torch.get_num_threads(), rows)
    return 1 if threads <= 1 or rows * n < PARALLEL_MIN_ELEMENTS else threads


def parallel_rows(rows: int, n: int, call: Callable[[int, int], object]) -> list:
    """Run ``call(r0, r1)`` over row ranges covering ``range(rows)``, on up to
    ``torch.get_num_threads()`` threads (:func:`row_chunks` calls); returns the calls' results
    in row order."""
    threads = row_chunks(rows, n)
    if threads == 1:
        return [call(0, rows)]
    bounds = [rows * i // threads for i in range(threads + 1)]
    pool = _executor()
    futs = [pool.submit(call, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    first = call(bounds[0], bounds[1])
    return [first] + [f.result() for f in futs]
