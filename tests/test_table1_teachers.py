"""Table 1 done properly (issue 12, part 3): balanced teachers, majority rates beside accuracies,
per-run accuracies, the paper side by side, and verdicts that refuse static parameters."""

from __future__ import annotations

import math

import pytest
import torch

from ashlib.data import make_teacher_data
from ashlib.experiments import make_config
from ashlib.experiments.farhadi import TABLE1_PAPER, Table1Config, Table1Result
from ashlib.experiments.verdicts import NOT_TESTED_STATIC


@pytest.mark.parametrize("depth, act", [(1, "sigmoid"), (1, "relu"), (8, "sigmoid"), (8, "relu")])
def test_median_labels_are_balanced_and_a_function_of_x(depth, act):
    d = make_teacher_data(n_samples=2000, depth=depth, activation=act, seed=3, label="median")
    assert d.positive_fraction == 0.5 and d.majority_rate == 0.5
    logit = d.teacher(d.x).squeeze(1)
    assert torch.equal(d.y, (logit > d.config["threshold"]).float())
    # the same teacher and inputs as the thresholded labels: only the cut moves
    t = make_teacher_data(n_samples=2000, depth=depth, activation=act, seed=3, label="threshold", min_minority=0)
    assert torch.equal(t.x, d.x) and t.config["threshold"] == 0.0


def test_unknown_label_rule_lists_the_rules():
    with pytest.raises(ValueError, match="'threshold', 'median', 'bernoulli'"):
        make_teacher_data(n_samples=10, label="balanced")


def test_profiles():
    q, p = make_config("farhadi-table1", "quick"), make_config("farhadi-table1", "paper")
    assert q.label == "threshold" and q.act_lr == 0.0 and p.label == "threshold"
    b = make_config("farhadi-table1", "quick", label="median", seeds=(0, 1, 2))
    diffs = " ".join(b.differences_from_paper())
    assert "label = median (paper: threshold)" in diffs and "balanced" in diffs


def _traj(move: float, n: int = 2) -> list[dict]:
    """A two-record trajectory whose alpha moves by ``move`` in log units on every site."""
    site = lambda a: {"alpha": {"mean": a, "min": a, "max": a, "n": 10}}  # noqa: E731
    return [{"epoch": 0, "params": {f"net.{i}": site(1.0) for i in range(n)}},
            {"epoch": 3, "params": {f"net.{i}": site(math.exp(move)) for i in range(n)}}]


def _result(accs: dict[str, list[float]], move: dict[str, float]) -> Table1Result:
    cfg = Table1Config(depths=(1,), teachers=("relu",), seeds=(0, 1), students=tuple(accs))
    rows = []
    for student, values in accs.items():
        for seed, acc in enumerate(values):
            rows.append({"depth": 1, "teacher": "relu", "student": student, "seed": seed, "fold": 0,
                         "test_acc": acc, "majority_rate": 0.6, "alphas": [],
                         "trajectory": _traj(move[student], 1) if student in move else []})
    return Table1Result(config=cfg, rows=rows)


def test_per_run_and_side_by_side():
    r = _result({"sigmoid": [0.90, 0.92], "agumbel": [0.95, 0.97]}, {"agumbel": 0.2})
    per = {row["student"]: row for row in r.per_run()}
    assert per["AGumb"]["accuracy (%)"] == "95.0, 97.0" and per["AGumb"]["majority (%)"] == "60.0, 60.0"
    assert per["Sig"]["runs (seed/fold)"] == "0/0, 1/0"
    side = {row["student"]: row for row in r.side_by_side()}
    assert side["AGumb"]["ours"] == pytest.approx(96.0) and side["AGumb"]["majority"] == pytest.approx(60.0)
    assert side["AGumb"]["ours - majority"] == pytest.approx(36.0)
    assert side["AGumb"]["paper"] == TABLE1_PAPER[(1, "relu")]["agumbel"]
    assert side["AGumb"]["ours - paper"] == pytest.approx(96.0 - 97.4)
    assert side["AGumb"]["n"] == 2 and side["AGumb"]["se"] == pytest.approx(1.0)


def test_claims_need_the_alphas_to_move():
    moved = _result({"sigmoid": [0.90, 0.92], "agumbel": [0.95, 0.97]}, {"agumbel": 0.2})
    static = _result({"sigmoid": [0.90, 0.92], "agumbel": [0.95, 0.97]}, {"agumbel": 0.01})
    v_moved = {v["claim"]: v for v in moved.verdicts()}
    v_static = {v["claim"]: v for v in static.verdicts()}
    assert v_moved["F-T1-CLAIMS"]["verdict"] == "reproduced"  # AGumb > Sig in the one cell
    assert v_static["F-T1-CLAIMS"]["verdict"] == NOT_TESTED_STATIC
    assert "0.010" in v_static["F-T1-CLAIMS"]["evidence"]
    assert moved.max_movement() == pytest.approx(0.2)
    traj = moved.trajectories()
    assert {t["epoch"] for t in traj} == {0, 3} and all(t["student"] == "agumbel" for t in traj)


def test_f2_needs_the_typical_alpha_of_both_families_to_move():
    cfg = Table1Config(depths=(1,), teachers=("relu",), seeds=(0,), students=("agumbel", "arelu"))
    rows = [{"depth": 1, "teacher": "relu", "student": "agumbel", "seed": 0, "fold": 0, "test_acc": 0.9,
             "majority_rate": 0.5, "alphas": [[0.3, 0.5, 0.6, 0.7]], "trajectory": _traj(1.0)},
            # AReLU: one neuron moved a lot (so the largest movement is large), the typical one not at all
            {"depth": 1, "teacher": "relu", "student": "arelu", "seed": 0, "fold": 0, "test_acc": 0.9,
             "majority_rate": 0.5, "alphas": [[1.0, 1.0, 1.0, 5.0]], "trajectory": _traj(1.6)}]
    v = {x["claim"]: x for x in Table1Result(config=cfg, rows=rows).verdicts()}
    assert v["F-F2"]["verdict"].startswith(NOT_TESTED_STATIC)
    assert "median |log alpha| over neurons 0" in v["F-F2"]["verdict"]
    rows[1]["alphas"] = [[2.0, 3.0, 4.0, 5.0]]  # now every AReLU alpha moved, above every AGumb one
    v = {x["claim"]: x for x in Table1Result(config=cfg, rows=rows).verdicts()}
    assert v["F-F2"]["verdict"] == "reproduced"
