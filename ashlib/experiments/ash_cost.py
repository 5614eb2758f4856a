"""ASH-COST: is ASH's Gaussian threshold cheaper than exact top-k selection?

The ASH paper argues (README, conclusion) that selecting the top k of a feature map by
sorting or quickselect is computationally heavy, and that estimating the threshold as
``mu_X + z_k sigma_X`` is cheap. ``ash-cost`` times, on the same tensors and interleaved
round-robin in one process (so that the machine's load hits every candidate alike):

- ``ASH, fused``: ``ashlib.functional.ash`` (the registered operator on its fastest CPU kernels);
- ``ASH, one-line formula``: the formula as a user would write it in eager PyTorch
  (``x * sigmoid(2 alpha (x - mu - z sigma))`` with ``mean`` and ``var``): the straightforward ASH;
- ``exact top-k, kthvalue``: a per-sample threshold from ``torch.kthvalue`` (quickselect) and a mask;
- ``exact top-k, topk+scatter``: ``ashlib.functional.topk_ash`` (``torch.topk``, a partial sort);
- ``SiLU``: ``F.silu``, for scale;

each forward only (no autograd) and forward + backward, with the median over ``repeats``.

Verdict rule. Each repeat times every candidate once, in turn, so one repeat gives a *paired*
ratio: ASH's time over the time of the exact selection with the lower median (kthvalue or
topk+scatter), measured seconds apart. For each workload, mode (forward, forward + backward)
and ASH implementation the case's ratio is the median of the paired ratios, with a
distribution-free 95% confidence interval from their order statistics (:func:`median_interval`).
The claim *holds* in a case when the whole interval is below ``1 / EVEN_BAND`` (ASH at least
1.25x cheaper), *fails* when it is above ``EVEN_BAND`` (exact top-k at least 1.25x cheaper), and
the two are *about even* otherwise. ``reproduced`` when it holds in every case, ``not
reproduced`` when it fails in every case, otherwise ``mixed``, naming the cases. Timings depend
on the machine: the verdict the book states comes from the stored ``book`` run (its device and
threads are in its provenance); a rerun elsewhere may differ.

Why the band. The rule first fixed (until 2026-12-02) compared the two medians alone: a case held
when ASH's median was below the exact selection's. The one-line formula's forward + backward is
close to exact top-k on this CPU, and five ``book`` runs of the same kernels (one stored on
2026-11-30, four on 2026-12-02 minutes apart) put it at 0.99x-1.21x on conv 64x64x32x32 and
0.86x-0.99x on the other two workloads: the stated verdict changed between "mixed" and
"reproduced" from one run to the next. The within-run interval alone did not settle it (one run
gave 1.07x (1.02-1.12), another 1.18x (1.04-1.32)): the machine drifts between runs by more than
the repeats within one run vary. A factor under 1.25 either way is within that drift, and far
from the gap the paper argues about (the fused ASH is 0.05x-0.14x of exact top-k), so it is
reported as *about even*, not as a win or a loss. The band only adds that third outcome: a case
decided by more than 1.25x is decided as before.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import functional as AF
from ..ops.ash_family import topk_ash_kthvalue
from ..train import set_threads
from .registry import ExperimentResult, environment, register
from .runstore import RunStore

__all__ = ["AshCostConfig", "AshCostResult", "run_ash_cost", "CANDIDATES", "ash_formula", "candidates", "time_candidates",
           "interleaved_times", "interleaved_medians", "median_interval"]

Z, ALPHA, K = 0.0, 1.0, 0.5  # z_k = 0 keeps half of a normal map; exact top-k keeps the same half


def ash_formula(x: Tensor, z: Tensor, a: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """The one-line ASH a user would write instead of importing ashlib (the paper's formula), with
    the statistics over ``dim`` (default: every dim but the batch). The benchmarks time it too."""
    dims = dim if dim is not None else tuple(range(1, x.dim()))
    mu = x.mean(dim=dims, keepdim=True)
    sigma = torch.sqrt(x.var(dim=dims, keepdim=True, unbiased=False) + 1e-5)
    return x * torch.sigmoid(2 * a * (x - mu - z * sigma))


def candidates() -> dict[str, Callable[[Tensor], Tensor]]:
    z = torch.tensor(Z, requires_grad=True)
    a = torch.tensor(ALPHA, requires_grad=True)
    return {
        "ASH, fused": lambda x: AF.ash(x, z, a),
        "ASH, one-line formula": lambda x: ash_formula(x, z, a),
        "exact top-k, kthvalue": lambda x: topk_ash_kthvalue(x, K),
        "exact top-k, topk+scatter": lambda x: AF.topk_ash(x, K),
        "SiLU": F.silu,
    }


#: the candidates timed (names as in the tables)
CANDIDATES = tuple(candidates())
ASH_IMPLS = ("ASH, fused", "ASH, one-line formula")
EXACT = ("exact top-k, kthvalue", "exact top-k, topk+scatter")


@dataclass(frozen=True)
class AshCostConfig:
    """Settings of ``ash-cost``: workloads as ``name=shape`` strings, repeats, threads.

    ``quick``: conv 16x64x32x32 and MLP 256x1000, 9 repeats. ``book``: conv 64x64x32x32, conv
    128x256x8x8 and MLP 256x1000, 31 repeats. ``paper``: the book's workloads on the best device
    (CPU here; the paper gives no sizes). All on one CPU thread unless ``threads`` says otherwise.
    """

    profile: str = "quick"
    workloads: tuple[str, ...] = ("conv=16x64x32x32", "mlp=256x1000")
    repeats: int = 9
    threads: int = 1
    seeds: tuple[int, ...] = (0,)
    device: str = "cpu"

    @classmethod
    def for_profile(cls, profile: str) -> "AshCostConfig":
        if profile == "quick":
            return cls(profile="quick")
        if profile in ("book", "paper"):
            return cls(profile=profile, workloads=("conv=64x64x32x32", "conv=128x256x8x8", "mlp=256x1000"),
                       repeats=31)
        raise ValueError(f"profile={profile!r}; allowed: quick, book, paper")

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(label, shape) of every workload; ValueError for a malformed entry."""
        out = []
        for w in self.workloads:
            name, sep, dims = w.partition("=")
            try:
                shape = tuple(int(d) for d in dims.split("x"))
            except ValueError:
                shape = ()
            if not sep or len(shape) < 2 or min(shape) < 1:
                raise ValueError(f"workload {w!r}: expected name=NxCx... with positive sizes, e.g. conv=16x64x32x32")
            out.append((f"{name} {dims}", shape))
        return out


def interleaved_times(fns: dict[str, Callable], steps: dict[str, Callable[[Callable], None]], repeats: int,
                      scale: float = 1.0) -> dict[str, dict[str, list[float]]]:
    """For each function and each step (``step(f)`` runs f once or a block of times): the step's
    wall time times ``scale`` in each of ``repeats`` repeats, after one warm-up of every pair. The
    functions and steps are interleaved within each repeat, so that drift in the machine's speed
    reaches all of them alike and entry i of two lists was measured seconds apart."""
    runs: dict[str, dict[str, list[float]]] = {k: {s: [] for s in steps} for k in fns}
    for f in fns.values():  # warm-up (kernel build, caches)
        for step in steps.values():
            step(f)
    for _ in range(repeats):
        for name, f in fns.items():
            for s, step in steps.items():
                t0 = time.perf_counter()
                step(f)
                runs[name][s].append((time.perf_counter() - t0) * scale)
    return runs


def interleaved_medians(fns: dict[str, Callable], steps: dict[str, Callable[[Callable], None]], repeats: int,
                        scale: float = 1.0) -> dict[str, dict[str, float]]:
    """The medians of :func:`interleaved_times`."""
    runs = interleaved_times(fns, steps, repeats, scale)
    return {k: {s: statistics.median(v) for s, v in d.items()} for k, d in runs.items()}


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high): a distribution-free confidence interval for the median of the
    population ``values`` were drawn from, [v_(k), v_(n+1-k)] of the sorted values with the
    largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k), is at least ``level``.

    Raises ValueError when n is too small for any such interval (n < 6 at 95%)."""
    v = sorted(values)
    n = len(v)
    tail, k = 0.0, 0  # tail = P(B < k+1) as k grows
    while True:
        nxt = tail + math.comb(n, k) / 2.0 ** n
        if 1 - 2 * nxt < level:
            break
        tail, k = nxt, k + 1
    if k == 0:
        raise ValueError(f"{n} values are too few for a {level:.0%} interval for the median")
    return statistics.median(v), v[k - 1], v[n - k]


#: ratios within this factor of 1 either way (per the 95% interval) are "about even": see the module docstring
EVEN_BAND = 1.25
#: the fewest repeats that give a 95% interval for a median (see :func:`median_interval`)
MIN_REPEATS = 6


def time_candidates(x: Tensor, repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of each candidate on ``x`` in each repeat, forward (no grad) and forward + backward,
    interleaved (:func:`interleaved_times`)."""
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats={repeats}; must be >= {MIN_REPEATS} (the fewest for a 95% interval for a median)")
    g = torch.randn_like(x)

    def fwd(f: Callable) -> None:
        with torch.no_grad():
            f(x)

    def fwdbwd(f: Callable) -> None:
        xx = x.detach().requires_grad_()
        f(xx).backward(g)

    return interleaved_times(candidates(), {"forward": fwd, "forward+backward": fwdbwd}, repeats)


MODES = ("forward", "forward+backward")


class AshCostResult(ExperimentResult):
    """Per-repeat times per (workload, candidate, mode), the config and the environment.

    ``times[workload][candidate][mode]`` is the list of seconds, one per repeat (entry i of every
    list comes from the same interleaved repeat); ``timings`` holds their medians."""

    def __init__(self, config: AshCostConfig, times: dict[str, dict[str, dict[str, list[float]]]], env: dict[str, Any]):
        self.config = config
        self.times = times
        self.timings = {wl: {c: {m: statistics.median(v) for m, v in d.items()} for c, d in cands.items()}
                        for wl, cands in times.items()}
        self.env = env

    def rows(self) -> list[dict[str, Any]]:
        """One row per (workload, mode, candidate): median ms, ratio of the medians to SiLU's and to
        the faster exact selection's."""
        out = []
        for wl, cands in self.timings.items():
            for mode in MODES:
                exact = min(cands[e][mode] for e in EXACT)
                for name, t in cands.items():
                    out.append({"workload": wl, "mode": mode, "candidate": name, "ms": 1e3 * t[mode],
                                "x SiLU": t[mode] / cands["SiLU"][mode], "x exact top-k": t[mode] / exact})
        return out

    def cases(self) -> list[dict[str, Any]]:
        """Per (workload, mode, ASH implementation): the median paired ratio of ASH's time to the
        faster exact selection's (the one with the lower median), its 95% interval, and whether
        the claim holds: ``"yes"`` (interval below 1/EVEN_BAND), ``"no"`` (above EVEN_BAND) or
        ``"about even"``."""
        out = []
        for wl, cands in self.times.items():
            for mode in MODES:
                ref = min(EXACT, key=lambda e: self.timings[wl][e][mode])
                for impl in ASH_IMPLS:
                    paired = [a / b for a, b in zip(cands[impl][mode], cands[ref][mode])]
                    mid, lo, hi = median_interval(paired)
                    holds = "yes" if hi < 1 / EVEN_BAND else "no" if lo > EVEN_BAND else "about even"
                    out.append({"workload": wl, "mode": mode, "ash": impl, "vs": ref.split(", ")[1], "ratio": mid,
                                "95% interval": f"{lo:.2f}-{hi:.2f}", "holds": holds})
        return out

    def verdicts(self) -> list[dict[str, str]]:
        """ASH-COST by the rule of the module docstring."""
        cases = self.cases()
        count = {w: sum(c["holds"] == w for c in cases) for w in ("yes", "no", "about even")}
        if count["yes"] == len(cases):
            word = "reproduced"
        elif count["no"] == len(cases):
            word = "not reproduced"
        else:
            parts = []
            for impl in ASH_IMPLS:
                for mode in MODES:
                    mine = [c for c in cases if c["ash"] == impl and c["mode"] == mode]
                    ok = [c["workload"] for c in mine if c["holds"] == "yes"]
                    parts.append(f"{impl.split(', ')[1]} ASH {mode}: " + ("every workload" if len(ok) == len(mine)
                                                                           else "none" if not ok else ", ".join(ok)))
            even = [f"{c['workload']} {c['mode']}, {c['ash'].split(', ')[1]}" for c in cases
                    if c["holds"] == "about even"]
            word = (f"mixed: ASH is cheaper than exact top-k in {count['yes']} of {len(cases)} cases ("
                    + "; ".join(parts) + ")"
                    + (f"; about even (within {EVEN_BAND}x either way) in {len(even)} ({'; '.join(even)})"
                       if even else ""))
        ev = "; ".join(f"{c['workload']} {c['mode']}, {c['ash'].split(', ')[1]}: {c['ratio']:.2f}x "
                       f"({c['95% interval']})" for c in cases)
        evidence = (f"median of the paired ratios ASH time / time of the faster exact top-k (kthvalue or topk), "
                    f"with its 95% interval, {self.config.repeats} interleaved repeats, "
                    f"{self.env.get('device', 'cpu')}, {self.config.threads} thread(s), profile "
                    f"{self.config.profile}: {ev}")
        return [{"claim": "ASH-COST", "evidence": evidence, "verdict": word}]

    def case_table(self, caption: str):
        """:meth:`cases` as a table for a page: ASH's ratio and its interval in one column, and the
        exact selection it was paired with named once in the caption; "forward + backward" spaced so
        that a narrow column breaks it between words."""
        from .report import table  # noqa: PLC0415

        cases = self.cases()
        vs = ", ".join(dict.fromkeys(c["vs"] for c in cases))
        rows = [{"workload": c["workload"], "mode": c["mode"].replace("+", " + "), "ASH": c["ash"].split(", ")[1],
                 "ASH / exact (95% interval)": f"{c['ratio']:.2f} ({c['95% interval']})", "holds": c["holds"]}
                for c in cases]
        return table(rows, caption=f"{caption}; exact top-k by {vs}, the faster")

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        return {"timings": self.rows(), "cases": self.cases()}

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "ash-cost", "config": self.config, "timings": self.timings, "times": self.times,
                "env": self.env}

    def figures(self) -> dict[str, Any]:
        import matplotlib.pyplot as plt  # noqa: PLC0415 (optional)

        from ..plotstyle import WIDTH  # noqa: PLC0415

        wls = list(self.timings)
        fig, axes = plt.subplots(1, 2, figsize=(WIDTH, 4.0), sharey=True)
        names = [c for c in CANDIDATES if c != "SiLU"]
        for ax, mode in zip(axes, MODES):
            width = 0.8 / len(names)
            for i, name in enumerate(names):
                vals = [self.timings[w][name][mode] / self.timings[w]["SiLU"][mode] for w in wls]
                ax.bar([j + i * width for j in range(len(wls))], vals, width, label=name)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(wls))], [w.split(" ")[0] + "\n" + w.split(" ")[1]
                                                                           for w in wls], fontsize=8)
            ax.set_yscale("log")
            ax.set_title(mode)
        axes[0].set_ylabel("time / SiLU (log scale)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.12, 1, 1))
        return {"ash_cost": fig}


@register("ash-cost", "ASH README conclusion: the Gaussian threshold against exact top-k selection (timings)",
          AshCostConfig)
def run_ash_cost(config: AshCostConfig, progress: bool = True, store: RunStore | None = None) -> AshCostResult:
    """Time every candidate on every workload; each workload is one stored unit (its per-repeat times)."""
    store = store if store is not None else RunStore.disabled()
    if config.device != "cpu":
        raise ValueError(f"device={config.device!r}: ash-cost times the CPU kernels only (no GPU timing here)")
    times = {}  # (too few repeats: time_candidates refuses them before timing anything)
    for label, shape in config.shapes():
        def measure(shape=shape) -> dict[str, dict[str, list[float]]]:
            old = set_threads(config.threads)
            try:
                gen = torch.Generator().manual_seed(config.seeds[0])
                x = torch.randn(shape, generator=gen)
                return time_candidates(x, config.repeats)
            finally:
                torch.set_num_threads(old)
        # "times-": units of the earlier "cost-" form held medians only, and are not read
        times[label] = store.compute(f"times-{label.replace(' ', '-')}", measure)
    env = environment("cpu")
    env["threads"] = config.threads
    return AshCostResult(config, times, env)
