"""benchmarks/bench_activations.py runs and writes its JSON (one repeat, one small shape).

No timing is asserted (timings are the script's output, not a property of the code); the memory
columns are deterministic and are checked: the fused ASH saves for backward what F.silu saves
(the input) plus a few numbers per sample, the reference a dozen input-sized tensors.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import bench_activations as BA  # noqa: E402


def test_benchmark_writes_table_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    res = BA.main(["--reps", "1", "--threads", "1", "--shapes", "mlp 256x1000", "--dtypes", "float32",
                   "--ops", "ash", "--no-resnet", "--no-latency", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "ash (fused)" in printed and "f+b/silu" in printed
    data = json.loads(out.read_text())
    assert data["meta"]["threads"] == 1 and data["meta"]["device"] == "cpu"
    rows = {r["op"]: r for r in data["activations"]}
    assert {"relu", "silu", "ash (fused)", "ash (fused, aten)", "ash (reference)", "ash (torch.compile)",
            "ash formula (torch.compile)", "ash formula (eager)"} <= set(rows)
    assert data["meta"]["heap_kept"] is False  # glibc's own allocator settings unless asked
    for r in rows.values():
        assert r["fwd_s"] > 0 and r["fwdbwd_s"] > 0 and r["fwdbwd_vs_silu"] > 0
    n_samples = 256
    stats_bytes = 2 * 8 * n_samples  # mu and sigma, float64
    assert rows["ash (fused)"]["saved_bytes"] == pytest.approx(rows["silu"]["saved_bytes"] + stats_bytes, abs=64)
    assert rows["ash (fused)"]["backend"] in ("native", "aten")
    assert rows["ash (reference)"]["saved_vs_silu"] > 5
    assert res["activations"] == data["activations"]


def test_per_token_workload_and_first_call(tmp_path):
    out = tmp_path / "bench.json"
    BA.main(["--reps", "1", "--threads", "1", "--shapes", "tokens 32x128x512", "--dtypes", "float32",
             "--ops", "ash (fused)", "--no-resnet", "--no-compile", "--no-latency", "--out", str(out)])
    rows = {r["op"]: r for r in json.loads(out.read_text())["activations"]}
    assert rows["ash (fused)"]["stat_dim"] == -1
    # statistics per token: mu and sigma for each of the 32*128 rows
    assert rows["ash (fused)"]["saved_bytes"] == pytest.approx(rows["silu"]["saved_bytes"] + 2 * 8 * 32 * 128, abs=64)
    lat = BA.first_call_latency()
    assert set(lat) == {"cold_cache_s", "warm_cache_s", "cold_route", "warm_route"}
    assert lat["cold_cache_s"] == lat["cold_cache_s"] and lat["warm_cache_s"] == lat["warm_cache_s"]  # not nan
    # an empty cache: the C++ route is still compiling in the background, so the first call runs
    # the Python route
    assert lat["cold_route"] == "python" and lat["warm_route"] in ("cpp", "python")


def test_formula_baseline_is_ash():
    """The compiled one-line formula the benchmark compares with computes ASH."""
    import torch
    import ashlib.functional as AF
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    z, a = torch.tensor(0.4, dtype=torch.float64), torch.tensor(1.3, dtype=torch.float64)
    assert torch.allclose(BA.ash_formula(x, z, a), AF.ash(x, z, a), rtol=1e-12, atol=1e-14)
    xt = torch.randn(2, 6, 8, dtype=torch.float64)
    assert torch.allclose(BA.ash_formula(xt, z, a, -1), AF.ash(xt, z, a, dim=-1), rtol=1e-12, atol=1e-14)


def test_run_isolated_keeps_allocator_settings_to_its_process():
    """The tuned allocator is set in a child process: the result says so, and this process's
    glibc settings are untouched (mallopt has no getter; the child's JSON records what it set)."""
    res = BA.run_isolated(["--reps", "1", "--threads", "1", "--shapes", "small 32x256", "--dtypes", "float32",
                           "--ops", "ash (fused)", "--no-resnet", "--no-compile", "--no-latency", "--tuned-allocator"])
    assert res["meta"]["heap_kept"] is True
    rows = {r["op"]: r for r in res["activations"]}
    assert {"relu", "silu", "ash (fused)"} <= set(rows)
    # faults are counts per call (a mean over repeats): never negative
    assert all(r["fwdbwd_faults"] >= 0 for r in rows.values())
    with pytest.raises(RuntimeError, match="benchmark failed"):
        BA.run_isolated(["--shapes", "no such shape"])


def test_alone_ratios_time_each_op_in_its_own_process():
    rows = BA.alone_ratios(["ash (fused)"], ["small 32x256"], rounds=1, reps=1)
    assert len(rows) == 1
    r = rows[0]
    assert (r["op"], r["shape"]) == ("ash (fused)", "small 32x256")
    assert r["fwdbwd_s"] > 0 and r["silu_fwdbwd_s"] > 0
    assert r["fwdbwd_vs_silu"] == pytest.approx(r["fwdbwd_s"] / r["silu_fwdbwd_s"])
    assert r["faults"] >= 0 and r["silu_faults"] >= 0
    assert len(r["silu_faults_per_process"]) == 2  # one round: an F.silu process before it and one after
    assert r["silu_faults"] in r["silu_faults_per_process"]
    assert r["ash_eager_route"] in ("cpp", "python")  # one route in every process, and which one
    from ashlib.ops import native
    if native.library() is not None:  # the children load the build of this machine's cache, as this process
        assert r["kernels"] == os.path.basename(native.loaded_path)
        assert os.path.dirname(native.loaded_path) == native._cache_dir()


def _fake_runs(monkeypatch, runs, faults):
    """run_isolated replaced by a stub that hands out the given times and faults per op, in the
    order of the calls; returns the list of ops in the order their processes ran."""
    order = []
    runs = {k: iter(v) for k, v in runs.items()}
    faults = {k: iter(v) for k, v in faults.items()}

    def fake(argv, env=None):
        op = argv[argv.index("--alone") + 1]
        order.append(op)
        return {"activations": [{"shape": "small 32x256", "fwdbwd_s": next(runs[op]), "fwdbwd_faults": next(faults[op]),
                                 "settle_calls": 3, "ash_route": "cpp", "kernels": None}]}

    monkeypatch.setattr(BA, "run_isolated", fake)
    return order


def test_alone_ratios_bracket_each_round_with_silu_processes(monkeypatch):
    """Each round runs between two F.silu processes; the op's ratio in a round is its time over
    the faster of those two, passing over a process that page-faulted (more than once per call)
    while the other did not; the result is the median of the rounds' ratios."""
    order = _fake_runs(monkeypatch, {"silu": [3.0, 1.0, 2.0, 4.0], "ash (fused)": [4.0, 2.0, 6.0]},
                       {"silu": [0, 7, 0, 0], "ash (fused)": [0, 0, 0]})
    (r,) = BA.alone_ratios(["ash (fused)"], ["small 32x256"], rounds=3)
    assert order == ["silu", "ash (fused)", "silu", "ash (fused)", "silu", "ash (fused)", "silu"]
    # round 1: 1.0 faulted, so 3.0; round 2: 1.0 faulted, so 2.0; round 3: min(2.0, 4.0)
    assert r["round_ratios"] == [4.0 / 3.0, 1.0, 3.0]
    assert r["fwdbwd_vs_silu"] == 4.0 / 3.0
    assert (r["fwdbwd_s"], r["silu_fwdbwd_s"], r["silu_median_fwdbwd_s"]) == (4.0, 2.0, 2.5)
    assert r["silu_faults"] == 0 and r["silu_faults_per_process"] == [0, 7, 0, 0]


def test_alone_ratios_when_silus_processes_fault(monkeypatch):
    """Both F.silu processes around a round faulted: a calm one from elsewhere in the run serves;
    when every one faulted, the faster one around the round."""
    _fake_runs(monkeypatch, {"silu": [1.0, 5.0, 4.0], "ash (fused)": [2.0, 2.0]},
               {"silu": [9, 9, 0], "ash (fused)": [0, 0]})
    (r,) = BA.alone_ratios(["ash (fused)"], ["small 32x256"], rounds=2)
    assert r["round_ratios"] == [2.0 / 4.0, 2.0 / 4.0]
    _fake_runs(monkeypatch, {"silu": [3.0, 2.0], "ash (fused)": [4.0]}, {"silu": [9, 8], "ash (fused)": [0]})
    (r,) = BA.alone_ratios(["ash (fused)"], ["small 32x256"], rounds=1)
    assert r["round_ratios"] == [2.0] and r["silu_faults"] == 8


def test_ops_selection_by_whole_name_or_part():
    names = {"ash (fused)": 1, "leaky_ash (fused)": 1, "agumbel (fused)": 1, "agumbel (reference)": 1}
    assert [n for n in names if BA._selected(n, ["ash (fused)"], names)] == ["ash (fused)"]
    assert [n for n in names if BA._selected(n, ["agumbel"], names)] == ["agumbel (fused)", "agumbel (reference)"]


def test_call_costs_per_call_and_kind():
    import torch
    calls = []
    costs = BA.call_costs({"count": lambda t: (calls.append(1), t * 2)[1], "relu": torch.relu}, calls=5, rounds=3)
    assert set(costs) == {"count", "relu"} and set(costs["relu"]) == {"fwd", "fwdbwd"}
    assert all(v > 0 for d in costs.values() for v in d.values())
    assert len(calls) == 5 * 2 * (1 + 3)  # a warm-up block and three rounds, forward and forward+backward


def test_kernel_times_rows_and_the_aten_lower_bound():
    """kernel_times reports SiLU's kernels (the 1.0 of the ratios), the native kernels where they
    are built, and the ATen path's logistic evaluations and float64 statistics with their sum as
    a lower bound; the statistics have no backward part."""
    from ashlib.ops import native
    rows = {r["op"]: r for r in BA.kernel_times(shape=(2, 4, 8, 8), reps=3)}
    assert rows["silu (ATen)"]["fwdbwd_vs_silu"] == pytest.approx(1.0)
    native_ops = {"ash", "agumbel", "arelu"}
    assert (native_ops <= set(rows)) == (native.library() is not None)
    parts = [rows["ATen path: logistic evaluations"], rows["ATen path: float64 statistics"]]
    floor = rows["ATen path: these two together (a lower bound)"]
    assert parts[1]["bwd_ns_per_element"] == 0.0
    for key in ("fwd_ns_per_element", "bwd_ns_per_element", "fwdbwd_vs_silu"):
        assert floor[key] == pytest.approx(sum(p[key] for p in parts))
    for r in rows.values():
        assert r["shape"] == [2, 4, 8, 8] and r["fwd_ns_per_element"] > 0 and r["fwdbwd_vs_silu"] > 0


def test_alone_ratios_on_a_machine_without_compilers(tmp_path):
    """no_compiler_env: the processes find no C or C++ compiler and an empty cache, so ASH runs
    the prebuilt kernels (when a variant exists for this machine) on its Python route; the rows
    say so."""
    import platform
    import shutil
    from ashlib.ops.native import prebuilt
    if shutil.which(os.environ.get("CC") or "cc") is None or not prebuilt.variants():
        pytest.skip("no C compiler to prebuild with, or no variant for this architecture")
    pb = tmp_path / "prebuilt"
    prebuilt.prebuild(str(pb))
    env = BA.no_compiler_env(str(pb), str(tmp_path / "cache"))
    (r,) = BA.alone_ratios(["ash (fused)"], ["small 32x256"], rounds=1, reps=1, env=env)
    expected = prebuilt.find(prebuilt_dir=str(pb))  # None on a CPU that cannot run the variant
    assert r["kernels"] == (os.path.basename(expected) if expected else None), (r, platform.machine())
    assert r["ash_eager_route"] == "python" and r["fwdbwd_s"] > 0


def test_settle_waits_for_calls_without_page_faults(monkeypatch):
    """settle() runs forward+backward until `quiet` calls in a row fault nothing, or gives up at
    max_calls; a fake fault counter drives it."""
    import torch
    pairs = [(0, 5), (5, 5), (5, 5), (5, 9), (9, 9), (9, 9), (9, 9)]  # (before, after) each call
    it = iter([v for p in pairs for v in p] + [9] * 100)
    monkeypatch.setattr(BA, "minor_faults", lambda: next(it))
    calls = []
    n = BA.settle(lambda t: (calls.append(1), t * 2)[1], torch.ones(3), max_calls=10, quiet=3)
    # calls: (0->5) fault, (5->5) calm, (5->5) calm, (5->9) fault, then three calm calls
    assert n == 7 and len(calls) == 7
    it2 = iter(range(0, 1000, 7))  # every call faults: it gives up at max_calls
    monkeypatch.setattr(BA, "minor_faults", lambda: next(it2))
    assert BA.settle(lambda t: t * 2, torch.ones(3), max_calls=4, quiet=3) == 4
