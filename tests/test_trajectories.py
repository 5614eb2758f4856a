"""Adaptive parameters over training: what is recorded, how movement is measured, the separate
learning rate, the verdict gate and the trajectory figure. Expected values are computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import ashlib
from ashlib.analysis.trajectories import (MOVE_THRESHOLD, activation_parameter_groups, activation_parameter_names,
                                          activation_parameters, parameter_movement, record_activation_parameters,
                                          thin_records, trajectory_rows)
from ashlib.experiments.verdicts import NOT_TESTED_STATIC, gate_adaptive_verdict
from ashlib.train import fit


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(4, 3), ashlib.AdaptiveGumbel(num_parameters=3, alpha=2.0),
        nn.Linear(3, 3), ashlib.ASH(k=0.5), nn.Linear(3, 3), ashlib.FixedASH(0.1, alpha=0.5),
        nn.Linear(3, 3), ashlib.LeakyASH(k=0.5, slope=0.05), nn.Linear(3, 3), nn.PReLU(), nn.Linear(3, 2),
    )


def test_every_trainable_activation_parameter_in_paper_units():
    vals = activation_parameters(_net())
    assert list(vals) == ["1", "3", "5", "7", "9"]
    torch.testing.assert_close(vals["1"]["alpha"], torch.full((3,), 2.0, dtype=torch.float64))
    assert set(vals["3"]) == {"z", "alpha"} and abs(float(vals["3"]["z"])) < 1e-7  # z_0.5 = 0
    assert set(vals["5"]) == {"alpha"}  # F-ASH-k: z is frozen (a buffer), only alpha adapts
    assert float(vals["5"]["alpha"]) == pytest.approx(0.5)
    assert set(vals["7"]) == {"z", "alpha", "slope"} and float(vals["7"]["slope"]) == pytest.approx(0.05)
    assert float(vals["9"]["slope"]) == pytest.approx(0.25)  # PReLU's default
    names = activation_parameter_names(_net())
    assert names == ["1.log_alpha", "3.log_alpha", "3.z_param", "5.log_alpha", "7.log_alpha", "7.z_param",
                     "7.log_slope", "9.weight"]
    assert set(names) <= set(dict(_net().named_parameters()))
    assert activation_parameters(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) == {}


def test_record_summarises_channels_geometric_mean_for_alpha():
    act = ashlib.AdaptiveGumbel(num_parameters=3)
    with torch.no_grad():
        act.log_alpha.copy_(torch.log(torch.tensor([1.0, 2.0, 4.0])))
    rec = record_activation_parameters(7, nn.Sequential(act))
    s = rec["params"]["0"]["alpha"]
    assert rec["epoch"] == 7
    assert s["mean"] == pytest.approx(2.0) and s["min"] == pytest.approx(1.0) and s["max"] == pytest.approx(4.0)
    assert s["n"] == 3
    rows = trajectory_rows([rec], run="a")
    assert rows == [{"run": "a", "epoch": 7, "site": "0", "quantity": "alpha", **s}]


def _row(epoch, quantity, mean, lo, hi, site="s"):
    return {"epoch": epoch, "site": site, "quantity": quantity, "mean": mean, "min": lo, "max": hi, "n": 2}


def test_movement_on_the_trained_scale_and_the_threshold():
    rows = [_row(0, "alpha", 1.0, 1.0, 1.0), _row(5, "alpha", 1.0, 0.9, 1.2),          # mean still, channels moved
            _row(0, "z", 0.5, 0.5, 0.5, site="t"), _row(5, "z", 0.52, 0.52, 0.52, site="t")]
    mv = {m["quantity"]: m for m in parameter_movement(rows)}
    assert mv["alpha"]["movement"] == pytest.approx(math.log(1.2))   # max(|log 1.2|, |log 0.9|, 0)
    assert mv["alpha"]["moved"] and mv["alpha"]["scale"] == "log" and mv["alpha"]["epochs"] == 5
    assert mv["z"]["movement"] == pytest.approx(0.02) and not mv["z"]["moved"]
    assert MOVE_THRESHOLD == 0.05


def test_thin_records_keeps_ends_and_spacing():
    recs = [{"epoch": e, "params": {}} for e in range(2001)]
    kept = thin_records(recs, 101)
    assert len(kept) == 101 and kept[0]["epoch"] == 0 and kept[-1]["epoch"] == 2000
    assert {b["epoch"] - a["epoch"] for a, b in zip(kept, kept[1:])} == {20}
    assert thin_records(recs[:5], 101) == recs[:5]
    with pytest.raises(ValueError, match="max_points=1"):
        thin_records(recs, 1)


def test_act_lr_moves_only_the_activation_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), ashlib.AdaptiveGumbel(num_parameters=8), nn.Linear(8, 1))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    data = TensorDataset(torch.randn(64, 4), (torch.rand(64) > 0.5).float())
    res = fit(model, data, epochs=2, batch_size=16, lr=0.0, act_lr=0.5, optimizer="sgd", loss="bce",
              device="cpu", progress=False, record_epoch=record_activation_parameters)
    after = res.model.state_dict()
    for k in before:
        if k.endswith("log_alpha"):
            assert not torch.equal(before[k], after[k]), k
        else:
            assert torch.equal(before[k], after[k]), k  # lr = 0 for the weights
    assert [r["epoch"] for r in res.records] == [1, 2]
    groups = activation_parameter_groups(model, 0.01, 0.1)
    assert [len(g["params"]) for g in groups] == [4, 1] and [g["lr"] for g in groups] == [0.01, 0.1]
    assert len(activation_parameter_groups(model, 0.01, None)) == 1


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), True, "0.1"])
def test_act_lr_range(bad):
    with pytest.raises(ValueError, match="act_lr="):
        activation_parameter_groups(nn.Sequential(ashlib.ASH()), 0.01, bad)


def test_gate_refuses_comparisons_of_parameters_that_did_not_move():
    for word in ("reproduced", "not reproduced", "mixed", "not reproduced (tie within the spread over seeds)"):
        gated = gate_adaptive_verdict(word, 0.004)
        assert gated.startswith(NOT_TESTED_STATIC) and "0.004" in gated
        assert gate_adaptive_verdict(word, 0.05) == word
    assert gate_adaptive_verdict("reproduced", None) == "reproduced"
    assert gate_adaptive_verdict("not rerun here", 0.0) == "not rerun here"
    assert gate_adaptive_verdict("reproduced", 0.04, threshold=0.01) == "reproduced"
    with pytest.raises(ValueError, match="threshold"):
        gate_adaptive_verdict("reproduced", 0.1, threshold=0)


def test_trajectory_figure_panels_and_errors():
    pytest.importorskip("matplotlib")
    from ashlib.experiments.plotting_params import trajectory_figure

    rows = [{**_row(e, q, m, m * 0.9, m * 1.1, site=s), "student": st}
            for e, m in enumerate([1.0, 1.1, 1.3]) for q in ("alpha",) for s in ("a", "b") for st in ("x", "y")]
    fig = trajectory_figure(rows, panel=("student",), line=("site",), title="t")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 and axes[0].get_yscale() == "log" and len(axes[0].lines) == 2
    with pytest.raises(ValueError, match="empty"):
        trajectory_figure([])
    with pytest.raises(ValueError, match="'seed'"):
        trajectory_figure(rows, panel=("seed",))
    with pytest.raises(ValueError, match="max_panels=1"):
        trajectory_figure(rows, panel=("student",), max_panels=1)
