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
                   "--ops", "ash", "--no-resnet", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "ash (fused)" in printed and "f+b/silu" in printed
    data = json.loads(out.read_text())
    assert data["meta"]["threads"] == 1 and data["meta"]["device"] == "cpu"
    rows = {r["op"]: r for r in data["activations"]}
    assert {"relu", "silu", "ash (fused)", "ash (fused, aten)", "ash (reference)"} <= set(rows)
    for r in rows.values():
        assert r["fwd_s"] > 0 and r["fwdbwd_s"] > 0 and r["fwdbwd_vs_silu"] > 0
    n_samples = 256
    stats_bytes = 2 * 8 * n_samples  # mu and sigma, float64
    assert rows["ash (fused)"]["saved_bytes"] == pytest.approx(rows["silu"]["saved_bytes"] + stats_bytes, abs=64)
    assert rows["ash (fused)"]["backend"] in ("native", "aten")
    assert rows["ash (reference)"]["saved_vs_silu"] > 5
    assert res["activations"] == data["activations"]
