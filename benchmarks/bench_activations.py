"""ASH, adaptive Gumbel, adaptive ReLU and Swish against PyTorch's own activations, measured in one run.

"ash (fused)" is what ashlib.functional.ash runs by default: the operator torch.ops.ashlib.ash with
the C kernels of ashlib.ops.native on a CPU (float32, bfloat16), Triton on CUDA when it is
installed; in plain eager mode on a CPU its C++ route (torch.ops.ashlib_eager.ash) runs those
kernels, and "ash (fused, python route)" is the same call with that route turned off (the Python
autograd Function around the same kernels); "ash (fused, aten)" is the same operator on chunked ATen ops (what runs for float64 and
float16, and where no C compiler is found).
The JSON records which backend the default took for each shape and dtype.

Adaptive Gumbel / adaptive ReLU (one trainable alpha per channel) and Swish (trainable beta) run
both as the fused float32-native Functions (ashlib.ops.elementwise) and the float64 reference.

For each shape and dtype, every op runs forward and forward+backward on the same tensor, the ops
interleaved within each repeat, and the median over repeats is reported as a ratio to F.silu and
F.relu from the same run. Memory: bytes saved for backward (via saved_tensors_hooks) and peak
bytes allocated during forward+backward (from the profiler's allocation events), as ratios to
F.silu. A ResNet-20 training step (batch of 32x32 images) with ASH against ReLU closes the table.

    python benchmarks/bench_activations.py --out results.json          # full run
    python benchmarks/bench_activations.py --quick --out results.json  # a few minutes
    python benchmarks/bench_activations.py --quick --ops agumbel --no-resnet  # one family

Workloads: an MLP activation (256x1000), conv maps (statistics per sample) and transformer
activations 32x128x512 with statistics per token (dim=-1). Rows under torch.compile(fullgraph=True)
show ashlib's ASH compiled and the one-line ASH formula compiled by Inductor (the alternative a
user would write). glibc's default allocator settings are kept unless --tuned-allocator is given.
The first ASH call in a new process is timed too, with and without the native-kernel cache.

Numbers vary from run to run and machine to machine; only ratios taken in the same run mean much.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import ashlib  # noqa: E402
import ashlib.functional as AF  # noqa: E402
from ashlib.experiments.ash_cost import ash_formula, interleaved_medians  # noqa: E402  (the formula is timed there too)
from ashlib.ops import ash_family as FU  # noqa: E402

SHAPES = {"small 32x256": (32, 256), "mlp 256x1000": (256, 1000), "conv 64x64x32x32": (64, 64, 32, 32), "conv 128x256x8x8": (128, 256, 8, 8),
          "tokens 32x128x512": (32, 128, 512)}
#: the dims ASH takes its statistics over, per workload (None: every dim but the batch)
STAT_DIMS = {"tokens 32x128x512": -1}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
Z, ALPHA, K = 0.0, 1.0, 0.5  # k = 0.5 <-> z = 0


def _on_python_route(fn, *args, **kwargs):
    with FU.python_route():
        return fn(*args, **kwargs)


def ops(device: str, channels: int = 1, dim=None, compiled: bool = True) -> Dict[str, Callable]:
    """The activations compared; ASH ops take a 0-d z and alpha that require grad, like ashlib.ASH,
    and statistics over ``dim``.

    Adaptive Gumbel and adaptive ReLU take one alpha per channel (dim 1) that requires grad, as
    ashlib.AdaptiveGumbel(num_parameters=C) passes it; Swish a 0-d trainable beta. With
    ``compiled``, two rows run under torch.compile(fullgraph=True): ashlib's ASH (its operator
    inside the compiled graph) and the one-line formula compiled by Inductor.
    """
    z = torch.tensor(Z, device=device, requires_grad=True)
    a = torch.tensor(ALPHA, device=device, requires_grad=True)
    ac = torch.full((channels,), ALPHA, device=device, requires_grad=True)
    b = torch.tensor(1.0, device=device, requires_grad=True)

    def per_channel(x):
        return ac.reshape((1, -1) + (1,) * (x.dim() - 2)) if x.dim() >= 2 else ac.reshape(())

    table = {
        "relu": F.relu,
        "silu": F.silu,
        "ash (fused)": lambda x: AF.ash(x, z, a, dim=dim),
        "ash (fused, python route)": lambda x: _on_python_route(AF.ash, x, z, a, dim=dim),
        "ash (fused, aten)": lambda x: FU.ash(x, z, a, dim=dim, backend="aten"),
        "ash (reference)": lambda x: AF.ash(x, z, a, dim=dim, impl="reference"),
        "leaky_ash (fused)": lambda x: AF.leaky_ash(x, z, a, 0.01, dim=dim),
        "topk_ash (topk+scatter)": lambda x: AF.topk_ash(x, K),
        "topk_ash (kthvalue)": lambda x: FU.topk_ash_kthvalue(x, K),
        "agumbel (fused)": lambda x: AF.adaptive_gumbel(x, per_channel(x)),
        "agumbel (reference)": lambda x: AF.adaptive_gumbel(x, per_channel(x), impl="reference"),
        "arelu (fused)": lambda x: AF.adaptive_relu(x, per_channel(x)),
        "arelu (reference)": lambda x: AF.adaptive_relu(x, per_channel(x), impl="reference"),
        "swish (fused)": lambda x: AF.swish(x, b),
        "swish (reference)": lambda x: AF.swish(x, b, impl="reference"),
    }
    if compiled:
        table["ash (torch.compile)"] = torch.compile(lambda x: AF.ash(x, z, a, dim=dim), fullgraph=True, dynamic=False)
        table["ash formula (torch.compile)"] = torch.compile(lambda x: ash_formula(x, z, a, dim), fullgraph=True,
                                                             dynamic=False)
        table["ash formula (eager)"] = lambda x: ash_formula(x, z, a, dim)
    return table


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def minor_faults() -> int:
    """Minor page faults of this process so far (memory the kernel had to map in again: what
    glibc's trimming of freed memory costs the next allocation); 0 where getrusage is missing."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _fwdbwd(f: Callable, x: torch.Tensor, g: torch.Tensor) -> None:
    """One forward+backward of ``f`` on a fresh leaf copy of ``x``, with upstream gradient ``g``."""
    xx = x.detach().requires_grad_()
    f(xx).backward(g)


def time_ops(fns: Dict[str, Callable], x: torch.Tensor, reps: int, device: str, slow: set,
             forward: bool = True) -> Dict[str, dict]:
    """Median seconds of forward (no grad; unless not ``forward``) and forward+backward, ops
    interleaved in each repeat, and the mean minor page faults per forward+backward call ("faults")."""
    g = torch.randn_like(x)
    res = {k: {"fwd": [], "fwdbwd": [], "faults": []} for k in fns}

    def fwd(f):
        with torch.no_grad():
            f(x)

    def fwdbwd(f):
        _fwdbwd(f, x, g)

    kinds = (("fwd", fwd), ("fwdbwd", fwdbwd)) if forward else (("fwdbwd", fwdbwd),)
    for f in fns.values():  # warm-up
        for _, fn in kinds:
            fn(f)
    for r in range(reps):
        for k, f in fns.items():
            if k in slow and r >= max(1, reps // 5):
                continue  # the reference is 10-100x slower: fewer repeats keep the run short
            for kind, fn in kinds:
                _sync(device)
                f0 = minor_faults()
                t0 = time.perf_counter()
                fn(f)
                _sync(device)
                res[k][kind].append(time.perf_counter() - t0)
                if kind == "fwdbwd":
                    res[k]["faults"].append(minor_faults() - f0)
    return {k: {kind: (statistics.mean(v) if kind == "faults" else statistics.median(v)) for kind, v in d.items() if v}
            for k, d in res.items()}


def call_costs(fns: Dict[str, Callable], shape=(8, 64), calls: int = 200, rounds: int = 11) -> Dict[str, dict]:
    """Microseconds per call of each op on a small tensor (where the kernels take a microsecond
    or two, so that this is the fixed cost of a call): forward without grad and forward+backward,
    each timed as a block of ``calls`` back-to-back calls (no timer or fault counter inside the
    block), the blocks interleaved over the ops, the median over ``rounds`` blocks."""
    torch.manual_seed(0)
    x = torch.randn(shape)
    g = torch.randn(shape)
    xg = x.detach().requires_grad_()

    def fwd_block(f):
        with torch.no_grad():
            for _ in range(calls):
                f(x)

    def fwdbwd_block(f):
        for _ in range(calls):
            f(xg).backward(g)

    return interleaved_medians(fns, {"fwd": fwd_block, "fwdbwd": fwdbwd_block}, rounds, scale=1e6 / calls)


def kernel_times(shape=(64, 64, 32, 32), reps: int = 15) -> List[dict]:
    """Nanoseconds per element of the native CPU kernels alone (float32, outputs preallocated,
    called through ctypes with no Python layer, no autograd and no allocation), next to ATen's
    SiLU kernels called the same way (``silu.out``, ``silu_backward.grad_input``): what the
    arithmetic costs, apart from the fixed cost of a call and the allocator. ASH takes statistics
    per sample; adaptive Gumbel and adaptive ReLU one parameter per channel (dim 1).

    Two more rows bound the ATen path (no C compiler) from below, with the same preallocation:
    the logistic evaluations it makes (``softplus_backward`` gives grad*S(beta*d) in one kernel;
    one in the forward, S(u) and S(u)S(-u) in the backward, the second needed for relative
    accuracy where S(u) rounds to 1) and its float64 statistics (forward only). Their total
    is the last row: every other pass of that path comes on top. The native rows are missing
    when the native kernels are not available."""
    from ashlib.ops import native
    lib = native.library()
    torch.manual_seed(0)
    x = torch.randn(shape)
    g = torch.randn(shape)
    y, gx = torch.empty_like(x), torch.empty_like(x)
    rows, n = shape[0], x.numel() // shape[0]
    stats = torch.empty(2, rows, dtype=torch.float64)
    tot = (ctypes.c_double * 3)()
    K, inner = shape[1], x.numel() // (shape[0] * shape[1])
    p = torch.full((K,), 1.3)
    acc = torch.zeros(K, dtype=torch.float64)
    mp, sp = stats.data_ptr(), stats.data_ptr() + 8 * rows
    xp, yp, gp, gxp = x.data_ptr(), y.data_ptr(), g.data_ptr(), gx.data_ptr()
    sp_bwd, thr = torch.ops.aten.softplus_backward.grad_input, FU._SP_THRESHOLD
    calls = {
        ("silu (ATen)", "forward"): lambda: torch.ops.aten.silu.out(x, out=y),
        ("silu (ATen)", "backward"): lambda: torch.ops.aten.silu_backward.grad_input(g, x, grad_input=gx),
    }
    if lib is not None:
        calls[("ash", "forward")] = lambda: lib.ash_forward_f32(rows, n, xp, yp, 1e-5, 0.0, 8.0, 2.0, 0.0, mp, sp)
        calls[("ash", "backward")] = lambda: lib.ash_backward_f32(rows, n, xp, gp, gxp, mp, sp, 0.0, 2.0, 0.0, 0,
                                                                  tot)
        for op, name in (("agumbel", "gumbel"), ("arelu", "relu")):
            calls[(op, "forward")] = (lambda fn: lambda: fn(0, x.numel(), inner, K, xp, yp, p.data_ptr()))(
                getattr(lib, f"{name}_fwd_f32"))
            calls[(op, "backward")] = (lambda fn: lambda: fn(0, x.numel(), inner, K, xp, gp, gxp, p.data_ptr(),
                                                             acc.data_ptr()))(getattr(lib, f"{name}_bwd_f32"))

    def two_logistics():
        sp_bwd(g, x, 2.0, thr, grad_input=gx)
        sp_bwd(gx, x, -2.0, thr, grad_input=y)

    x2 = x.reshape(rows, n)
    calls[("ATen path: logistic evaluations", "forward")] = lambda: sp_bwd(x, x, 2.0, thr, grad_input=y)
    calls[("ATen path: logistic evaluations", "backward")] = two_logistics
    calls[("ATen path: float64 statistics", "forward")] = lambda: FU._statistics(x2, 1e-5,
                                                                                 FU.DEFAULT_CHUNK_ELEMENTS)
    calls[("ATen path: float64 statistics", "backward")] = lambda: None
    ns = {k: v["call"] for k, v in interleaved_medians(calls, {"call": lambda f: f()}, reps,
                                                         scale=1e9 / x.numel()).items()}
    ns[("ATen path: float64 statistics", "backward")] = 0.0
    silu = ns[("silu (ATen)", "forward")] + ns[("silu (ATen)", "backward")]
    out = []
    for op in dict.fromkeys(k[0] for k in calls):
        fw, bw = ns[(op, "forward")], ns[(op, "backward")]
        out.append({"op": op, "shape": list(shape), "fwd_ns_per_element": fw, "bwd_ns_per_element": bw,
                    "fwdbwd_vs_silu": (fw + bw) / silu})
    floor = [r for r in out if r["op"].startswith("ATen path")]
    out.append({"op": "ATen path: these two together (a lower bound)", "shape": list(shape),
                "fwd_ns_per_element": sum(r["fwd_ns_per_element"] for r in floor),
                "bwd_ns_per_element": sum(r["bwd_ns_per_element"] for r in floor),
                "fwdbwd_vs_silu": sum(r["fwdbwd_vs_silu"] for r in floor)})
    return out


def saved_bytes(f: Callable, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd saves for backward."""
    seen = {}

    def pack(t):
        seen[(t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))] = t.numel() * t.element_size()
        return t

    xx = x.detach().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = f(xx)
    del y
    return sum(seen.values())


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler's C++ side logs every start and stop there)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_bytes(f: Callable, x: torch.Tensor) -> int:
    """Peak of bytes allocated (net of frees) during forward+backward, from the profiler's events.

    Each op's own allocations minus its frees, accumulated in time order; a temporary allocated
    and freed inside one ATen op is not seen (ops written as several ATen calls are resolved).
    """
    g = torch.randn_like(x)
    xx = x.detach().requires_grad_()
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    with _quiet_stderr(), profile(activities=acts, profile_memory=True) as prof:
        f(xx).backward(g)
    evs = sorted(prof.events(), key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in evs:
        cur += e.self_device_memory_usage if x.is_cuda else e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


# --- ResNet-20 (He et al. 2016, CIFAR variant); the activation is a factory --------------------


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, act: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.a1 = act()
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.a2 = act()
        self.short = (nn.Sequential() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return self.a2(self.b2(self.c2(self.a1(self.b1(self.c1(x))))) + self.short(x))


def resnet20(act: Callable[[], nn.Module], num_classes: int = 10) -> nn.Module:
    """ResNet-20 for 32x32 inputs: 3 stages of 3 basic blocks, 16/32/64 channels."""
    layers: List[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), act()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(_Block(cin, cout, stride if i == 0 else 1, act))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


class _ReferenceASH(ashlib.ASH):
    def forward(self, x):
        return AF.ash(x, self.z_param, self.log_alpha.exp(), dim=self.dim, eps=self.eps, impl="reference")


def resnet_step_times(batch: int, reps: int, device: str) -> Dict[str, float]:
    """Median seconds of one SGD training step of ResNet-20 per activation, steps interleaved."""
    acts = {"relu": nn.ReLU, "silu": nn.SiLU, "ash (fused)": lambda: ashlib.ASH(k=0.5),
            "ash (reference)": lambda: _ReferenceASH(k=0.5)}
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    models = {k: resnet20(a).to(device) for k, a in acts.items()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}
    times: Dict[str, list] = {k: [] for k in acts}

    def step(k):
        opts[k].zero_grad(set_to_none=True)
        F.cross_entropy(models[k](x), y).backward()
        opts[k].step()

    for k in acts:
        step(k)
    for _ in range(reps):
        for k in acts:
            _sync(device)
            t0 = time.perf_counter()
            step(k)
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def keep_heap() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the OS after every op.

    Otherwise each fresh 16 MB output may be page-faulted in again, which on small machines costs
    more than the arithmetic. Both sides of every ratio run under the same setting. Off by
    default (a user's process runs with glibc's settings); ``--tuned-allocator`` turns it on.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-1, 1 << 30)) and bool(libc.mallopt(-3, 1 << 30))  # TRIM, MMAP thresholds
    except OSError:
        return False


_FIRST_CALL = """
import time, torch, torch.nn.functional as F
torch.set_num_threads(1)
x = torch.randn(8, 16, 32, 32, requires_grad=True)
t0 = time.perf_counter(); F.silu(x).sum().backward(); t_silu = time.perf_counter() - t0
import ashlib.functional as AF
t0 = time.perf_counter(); y = AF.ash(x, 0.0, 1.0); y.sum().backward(); t_ash = time.perf_counter() - t0
print("cpp" if "ashlib_eager" in y.grad_fn.name() else "python", t_ash - t_silu)
"""


def first_call_latency() -> Dict[str, object]:
    """Seconds the first ASH forward+backward in a new process takes beyond the first F.silu's,
    and the route it took (``cpp`` or ``python``): with an empty kernel cache (the process
    compiles the C kernels and starts compiling the C++ route in the background, so the first
    calls take the Python route) and with this machine's cache as an install leaves it
    (``python -m ashlib build-native`` builds both)."""
    import subprocess
    import tempfile
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    out: Dict[str, object] = {}
    with tempfile.TemporaryDirectory() as cache:
        for key, env in (("cold", dict(os.environ, ASHLIB_CACHE_DIR=cache, PYTHONPATH=root)),
                         ("warm", dict(os.environ, PYTHONPATH=root))):
            r = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, capture_output=True, text=True,
                               timeout=600)
            route, seconds = r.stdout.strip().splitlines()[-1].split() if r.returncode == 0 else ("", "nan")
            out[f"{key}_cache_s"], out[f"{key}_route"] = float(seconds), route
    return out


def no_compiler_env(prebuilt_dir: str, cache_dir: str) -> Dict[str, str]:
    """The environment of a machine with no C or C++ compiler whose ashlib came from a wheel:
    compilers that are not on PATH, an empty kernel cache, and ``prebuilt_dir`` (filled by
    ``ashlib.ops.native.prebuilt.prebuild``) where the wheel keeps its kernels."""
    missing = os.path.join(cache_dir, "no-such-compiler")
    return {"CC": missing, "CXX": missing, "ASHLIB_CACHE_DIR": cache_dir, "ASHLIB_PREBUILT_DIR": prebuilt_dir}


def _kernels_loaded() -> Optional[str]:
    """The file name of the native kernels this process loaded (a prebuilt one or a build of
    the cache), None without them."""
    from ashlib.ops import native
    return os.path.basename(native.loaded_path) if native.library() is not None else None


def alone_ratios(op_names: List[str], shapes: List[str], rounds: int = 3, reps: int = 7,
                 threads: int = 1, env: Optional[Dict[str, str]] = None) -> List[dict]:
    """Forward+backward of each op, and of F.silu, each timed ALONE in a fresh process with glibc's
    default allocator, as a model that uses one activation runs. Each process times its op once
    glibc has settled (:func:`settle`: up to SETTLE_CALLS calls first), as a training loop runs
    after its first steps.

    The processes run in ``rounds`` rounds, each bracketed by two F.silu processes (silu, op 1,
    op 2, ..., silu, op 1, ..., silu: one F.silu process more than rounds). An op's ratio in a
    round is its time over the faster of the two F.silu processes around that round, so that the
    ratio compares processes run within seconds of each other: the machine's speed drifts by tens
    of percent over a minute on a shared host, and a ratio across rounds measures that drift. The
    op's ratio is the median of its rounds' ratios.

    The faster F.silu process, not their mean: ashlib's operators take their large outputs from
    their own block cache (ashlib.ops.native.blocks) and do not page-fault once settled, while
    F.silu's outputs come from glibc, which in some processes faults them in again on every call
    (8,160 faults per call on the 16 MiB map in one run). An F.silu process that faulted more
    than once per call is passed over while either one around the round, or else any in the run,
    did not, so that glibc's bad luck in F.silu's process is not credited to ashlib.

    Returns per op and shape: the median of the op's process times (``fwdbwd_s``), the median of
    the F.silu times it was divided by (``silu_fwdbwd_s``) and of every F.silu process
    (``silu_median_fwdbwd_s``), the median ratio (``fwdbwd_vs_silu``), the op's mean minor page
    faults per timed call, those of F.silu's processes used (mean) and of each, and the most
    warm-up calls any of their processes needed (SETTLE_CALLS: it did not settle). ``env`` is
    passed to every process (:func:`run_isolated`); the rows say which routes and native kernels
    the op's processes used.

    In one process with many ops, memory one op frees and glibc returns to the system is
    faulted in again by whichever op allocates next, so an op's time depends on its neighbours;
    alone, an op pays only for its own allocation pattern."""
    times = {op: {sh: [] for sh in shapes} for op in ["silu"] + list(op_names)}
    faults = {op: {sh: [] for sh in shapes} for op in times}
    warm = {op: {sh: [] for sh in shapes} for op in times}
    routes, kernels = set(), set()

    def run(op):
        argv = ["--alone", op, "--shapes", *shapes, "--dtypes", "float32", "--reps", str(reps),
                "--threads", str(threads)]
        for r in run_isolated(argv, env=env)["activations"]:
            times[op][r["shape"]].append(r["fwdbwd_s"])
            faults[op][r["shape"]].append(r["fwdbwd_faults"])
            warm[op][r["shape"]].append(r["settle_calls"])
            if op != "silu":
                routes.add(r["ash_route"])
                kernels.add(r["kernels"])

    run("silu")
    for _ in range(rounds):
        for op in op_names:
            run(op)
        run("silu")
    denominators = {}  # per shape and round: the index of the F.silu process divided by
    for sh in shapes:
        st, sf = times["silu"][sh], faults["silu"][sh]
        calm = [k for k in range(len(st)) if sf[k] <= 1]
        denominators[sh] = [min([j for j in (k, k + 1) if j in calm] or calm or [k, k + 1], key=lambda j: st[j])
                            for k in range(rounds)]
    out = []
    for op in op_names:
        for sh in shapes:
            st, sf, den = times["silu"][sh], faults["silu"][sh], denominators[sh]
            ratios = [times[op][sh][k] / st[j] for k, j in enumerate(den)]
            out.append({"op": op, "shape": sh, "fwdbwd_s": statistics.median(times[op][sh]),
                        "silu_fwdbwd_s": statistics.median(st[j] for j in den),
                        "fwdbwd_vs_silu": statistics.median(ratios), "round_ratios": ratios,
                        "silu_median_fwdbwd_s": statistics.median(st),
                        "faults": statistics.mean(faults[op][sh]),
                        "silu_faults": statistics.mean(sf[j] for j in den),
                        "silu_faults_per_process": list(sf),
                        "settle_calls": max(warm[op][sh]), "silu_settle_calls": max(warm["silu"][sh]),
                        "rounds": rounds, "reps": reps, "ash_eager_route": "/".join(sorted(routes)),
                        "kernels": "/".join(sorted(k for k in kernels if k)) or None})
    return out


def _ash_route() -> str:
    """Wait for ASH's C++ eager route if it is being built (a compiler running in the background
    would slow every op timed meanwhile), and say which route plain eager ASH calls take."""
    from ashlib.ops import native
    return "cpp" if native.eager_ops(wait=True) and FU._fast_ready() else "python"


#: forward+backward calls an --alone process makes at most before timing, waiting for glibc to settle
SETTLE_CALLS = 40


def settle(f: Callable, x: torch.Tensor, max_calls: int = SETTLE_CALLS, quiet: int = 3) -> int:
    """Run forward+backward of ``f`` on ``x`` until ``quiet`` calls in a row take no page fault,
    or ``max_calls`` calls; returns the number of calls made.

    With glibc's default settings the first calls of a process fault in their large blocks again
    and again, until glibc has raised its mmap and trim thresholds past them (after a few calls
    on the 16 MiB map). A training run spends all but its first steps after that point; timing
    the first handful of calls measures that transient instead, and which op happens to be in it."""
    g = torch.randn_like(x)
    calm = 0
    for n in range(1, max_calls + 1):
        f0 = minor_faults()
        _fwdbwd(f, x, g)
        calm = calm + 1 if minor_faults() == f0 else 0
        if calm >= quiet:
            return n
    return max_calls


def _run_alone(op: str, shapes: List[str], reps: int, out: str) -> dict:
    """--alone: one op, float32, forward+backward only, nothing else in the process; timed once
    glibc has settled (:func:`settle`)."""
    route = _ash_route()
    rows = []
    for sname in shapes:
        torch.manual_seed(0)
        x = torch.randn(SHAPES[sname])
        fns = ops("cpu", x.shape[1] if x.dim() >= 2 else 1, STAT_DIMS.get(sname), "compile" in op)
        warm = settle(fns[op], x)
        t = time_ops({op: fns[op]}, x, reps, "cpu", set(), forward=False)
        rows.append({"shape": sname, "op": op, "fwdbwd_s": t[op]["fwdbwd"], "fwdbwd_faults": t[op]["faults"],
                     "ash_route": route, "kernels": _kernels_loaded(), "settle_calls": warm})
    result = {"activations": rows}
    with open(out, "w") as fh:
        json.dump(result, fh)
    return result


def _selected(name: str, wanted: List[str], names) -> bool:
    """--ops: an op whose whole name is given, or whose name contains a given string that is not
    itself one of ``names`` ("ash (fused)" selects that op alone, "agumbel" the family)."""
    return name in wanted or any(o in name for o in wanted if o not in names)


def run_isolated(argv: List[str], timeout: float = 1800, env: Optional[Dict[str, str]] = None) -> dict:
    """:func:`main` with ``argv`` in a fresh Python process, its result read back from its JSON.

    glibc's allocator settings (``--tuned-allocator``) and its heap state belong to a process and
    cannot be undone; a notebook that compares allocator settings runs each in its own process.
    ``env`` adds to (or overrides) the environment of that process (see :func:`no_compiler_env`).
    The child's progress lines are discarded; a failure raises with the child's last output.
    """
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, "--out", out],
                              capture_output=True, text=True, timeout=timeout,
                              env=None if env is None else {**os.environ, **env})
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
        with open(out) as fh:
            return json.load(fh)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_results.json", help="JSON file to write")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, smaller ResNet batch")
    ap.add_argument("--reps", type=int, default=None, help="repeats per op (median taken)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES), metavar="SHAPE",
                    help="subset of: " + ", ".join(SHAPES))
    ap.add_argument("--dtypes", nargs="*", default=list(DTYPES))
    ap.add_argument("--tuned-allocator", action="store_true",
                    help="raise glibc's trim and mmap thresholds first (see keep_heap); default: glibc's own "
                         "settings, as a user's process runs")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--no-latency", action="store_true", help="skip the first-call latency measurement")
    ap.add_argument("--no-resnet", action="store_true")
    ap.add_argument("--kernels", action="store_true",
                    help="also time the native kernels alone (ns per element, no Python layer; see kernel_times)")
    ap.add_argument("--ops", nargs="*", default=None,
                    help="only these ops (a whole name selects that op; any other string, the ops whose name "
                         "contains it); relu and silu always run")
    ap.add_argument("--alone", default=None, metavar="OP",
                    help="time only this op's forward+backward (float32, CPU), nothing else in the process "
                         "(see alone_ratios)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.alone:
        return _run_alone(args.alone, args.shapes, args.reps or 7, args.out)
    if not args.no_compile:
        # every shape (and grad mode) compiles the same two lambdas afresh: allow that many graphs
        from torch._dynamo import config as dynamo_config
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 4 * len(args.shapes) + 8)
    if args.threads:
        torch.set_num_threads(args.threads)
    heap_kept = keep_heap() if args.tuned_allocator and args.device == "cpu" else False
    ash_route = _ash_route() if args.device == "cpu" else None
    reps = args.reps or (7 if args.quick else 25)
    device = args.device
    meta = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "device": device,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "reps": reps,
            "quick": args.quick, "heap_kept": heap_kept, "ash_eager_route": ash_route,
            "kernels": _kernels_loaded() if device == "cpu" else None, "z": Z, "alpha": ALPHA, "k": K,
            "timing": "wall clock, median over repeats, ops interleaved within each repeat"}
    rows = []
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, reps {reps}, "
          f"heap kept: {heap_kept}")
    header = f"{'shape':18s} {'dtype':9s} {'op':24s} {'fwd ms':>8s} {'f+b ms':>8s} {'fwd/silu':>8s} " \
             f"{'f+b/silu':>8s} {'f+b/relu':>8s} {'saved/silu':>10s} {'peak/silu':>9s} {'faults':>7s}"
    print(header)
    print("-" * len(header))
    for sname in args.shapes:
        for dname in args.dtypes:
            torch.manual_seed(0)
            x = torch.randn(SHAPES[sname], device=device).to(DTYPES[dname])
            fns = ops(device, x.shape[1] if x.dim() >= 2 else 1, STAT_DIMS.get(sname), not args.no_compile)
            if args.ops:
                fns = {k: f for k, f in fns.items() if k in ("relu", "silu") or _selected(k, args.ops, fns)}
            slow = {k for k in fns if k.endswith("(reference)")}
            t = time_ops(fns, x, reps, device, slow)
            mem = {k: (saved_bytes(f, x), peak_bytes(f, x)) for k, f in fns.items()}
            backend = FU.select_backend(x)
            for k in fns:
                row = {"shape": sname, "dims": list(SHAPES[sname]), "stat_dim": STAT_DIMS.get(sname),
                       "dtype": dname, "op": k,
                       "backend": backend if k in ("ash (fused)", "leaky_ash (fused)") else None,
                       "fwd_s": t[k]["fwd"], "fwdbwd_s": t[k]["fwdbwd"], "fwdbwd_faults": t[k]["faults"],
                       "fwd_vs_silu": t[k]["fwd"] / t["silu"]["fwd"],
                       "fwdbwd_vs_silu": t[k]["fwdbwd"] / t["silu"]["fwdbwd"],
                       "fwd_vs_relu": t[k]["fwd"] / t["relu"]["fwd"],
                       "fwdbwd_vs_relu": t[k]["fwdbwd"] / t["relu"]["fwdbwd"],
                       "saved_bytes": mem[k][0], "peak_bytes": mem[k][1],
                       "input_bytes": x.numel() * x.element_size(),
                       "saved_vs_silu": mem[k][0] / max(1, mem["silu"][0]),
                       "peak_vs_silu": mem[k][1] / max(1, mem["silu"][1])}
                rows.append(row)
                print(f"{sname:18s} {dname:9s} {k:24s} {row['fwd_s'] * 1e3:8.2f} {row['fwdbwd_s'] * 1e3:8.2f} "
                      f"{row['fwd_vs_silu']:8.2f} {row['fwdbwd_vs_silu']:8.2f} {row['fwdbwd_vs_relu']:8.2f} "
                      f"{row['saved_vs_silu']:10.2f} {row['peak_vs_silu']:9.2f} {row['fwdbwd_faults']:7.0f}", flush=True)
    result = {"meta": meta, "activations": rows}
    if not args.no_resnet:
        batch = 32 if args.quick else 128
        steps = resnet_step_times(batch, max(3, reps // 2), device)
        result["resnet20_step"] = {"batch": batch, "input": [batch, 3, 32, 32], "seconds": steps,
                                   "vs_relu": {k: v / steps["relu"] for k, v in steps.items()}}
        print(f"\nResNet-20 training step, batch {batch} of 3x32x32 (SGD, cross-entropy):")
        for k, v in steps.items():
            print(f"  {k:18s} {v * 1e3:9.1f} ms   x{v / steps['relu']:.2f} of ReLU")
    if args.kernels and device == "cpu":
        result["kernels"] = kernel_times()
        print("\nkernels alone, float32, ns per element (forward, backward, f+b / ATen silu):")
        for r in result["kernels"]:
            print(f"  {r['op']:46s} {r['fwd_ns_per_element']:6.2f} {r['bwd_ns_per_element']:6.2f} "
                  f"{r['fwdbwd_vs_silu']:6.2f}")
    if not args.no_latency and device == "cpu":
        result["first_call"] = first_call_latency()
        fc = result["first_call"]
        print(f"\nfirst ASH forward+backward in a fresh process, beyond F.silu's: "
              f"{fc['cold_cache_s']:.2f} s with an empty kernel cache (it compiles; {fc['cold_route']} route), "
              f"{fc['warm_cache_s']:.2f} s with this machine's cache ({fc['warm_route']} route)")
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
