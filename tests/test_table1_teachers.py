"""Table 1 done properly (issue 12, part 3): balanced teachers, majority rates beside accuracies,
per-run accuracies, the paper side by side, and verdicts that refuse static parameters."""

from __future__ import annotations

import math

import pytest
import torch

from ashlib.data import make_teacher_data
from ashlib.experiments import make_config
from ashlib.experiments.farhadi import TABLE1_PAPER, Table1Config, Table1Result, paired_reading
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
    q, b, p = (make_config("farhadi-table1", x) for x in ("quick", "book", "paper"))
    assert q.label == "median" and b.label == "median" and p.label == "threshold"
    assert len(q.seeds) >= 3 and len(b.seeds) >= 3 and set(q.seeds) <= set(b.seeds)
    # the book profile lies between quick and paper: more data and optimiser steps than quick, fewer than paper
    steps = {c.profile: c.epochs * c.n_samples * (c.k_folds - 1) / c.k_folds / c.batch_size for c in (q, b, p)}
    assert steps["quick"] < steps["book"] < steps["paper"]
    assert q.n_samples <= b.n_samples == p.n_samples == 10_000
    diffs = " ".join(q.differences_from_paper())
    assert "label = median (paper: threshold)" in diffs and "balanced" in diffs
    assert p.setting_note() == "" and "balanced labels" in q.setting_note() and "Adam" in b.setting_note()


def test_paired_reading_at_two_standard_errors():
    assert paired_reading(1.0, 0.4) == "better" and paired_reading(-1.0, 0.4) == "worse"
    assert paired_reading(0.7, 0.4) == "tie" and paired_reading(-0.7, 0.4) == "tie"
    assert paired_reading(3.0, None) == "one run" and paired_reading(None, None) == "one run"
    assert paired_reading(0.5, 0.0) == "better"  # identical differences in every run


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


def _rows(cells: dict[tuple[int, str, str], list[float]], majority: float = 0.5,
          moves: dict[str, float] | None = None) -> list[dict]:
    moves = {"agumbel": 0.3, "arelu": 0.3} if moves is None else moves
    out = []
    for (depth, teacher, student), accs in cells.items():
        for seed, acc in enumerate(accs):
            out.append({"depth": depth, "teacher": teacher, "student": student, "seed": seed, "fold": 0,
                        "test_acc": acc, "majority_rate": majority, "alphas": [],
                        "trajectory": _traj(moves[student], depth) if student in moves else []})
    return out


def test_paired_differences_by_hand():
    cfg = Table1Config(depths=(1,), teachers=("relu",), seeds=(0, 1, 2), students=("sigmoid", "agumbel"))
    r = Table1Result(config=cfg, rows=_rows({(1, "relu", "agumbel"): [0.95, 0.97, 0.99],
                                             (1, "relu", "sigmoid"): [0.90, 0.93, 0.95]}))
    (row,) = r.paired("agumbel", "sigmoid")
    # differences 5, 4, 4: mean 13/3, sd sqrt(1/3), se 1/3
    assert row["per run"] == "+5.0 +4.0 +4.0" and row["n"] == 3
    assert row["mean"] == pytest.approx(13 / 3) and row["se"] == pytest.approx(1 / 3)
    assert row["reading"] == "better" and row["paper"] == pytest.approx(97.4 - 96.1)


def test_claims_rule_a_b_c():
    cells = {  # (a) AGumb better than Sig in both cells
        (1, "relu", "agumbel"): [0.95, 0.97, 0.99], (1, "relu", "sigmoid"): [0.90, 0.93, 0.95],
        (8, "relu", "agumbel"): [0.80, 0.82, 0.84], (8, "relu", "sigmoid"): [0.70, 0.71, 0.73],
        # (b) 1 layer: AReLU - ReLU = +0.5, +0.5, +0.6 points: within 1 point
        (1, "relu", "arelu"): [0.965, 0.975, 0.986], (1, "relu", "relu"): [0.960, 0.970, 0.980],
        # (c) 8 layers: AReLU stuck at the majority rate in two runs: worse than ReLU
        (8, "relu", "arelu"): [0.50, 0.51, 0.88], (8, "relu", "relu"): [0.86, 0.87, 0.87],
    }
    cfg = Table1Config(depths=(1, 8), teachers=("relu",), seeds=(0, 1, 2))
    r = Table1Result(config=cfg, rows=_rows(cells))
    v = {x["claim"]: x for x in r.verdicts()}["F-T1-CLAIMS"]
    assert v["verdict"] == "mixed: (a) and (b) hold, (c) does not"
    assert "(a) AGumb - Sig better in 2/2" in v["evidence"]
    assert "(b) |AReLU - ReLU| <= 1 in 1/1 1-layer" in v["evidence"]
    assert "(c) AReLU - ReLU better in 0/1 8-layer" in v["evidence"]
    # the two stuck runs are within 2 points of the majority rate (50 %); 88 % is not
    plateau = r.plateau_runs()
    assert [(p["student"], p["seed"]) for p in plateau] == [("arelu", 0), ("arelu", 1)]
    side = {(s["layers"], s["student"]): s for s in r.side_by_side()}
    assert side[(8, "AReLU")]["runs at majority"] == 2 and side[(8, "ReLU")]["runs at majority"] == 0
    t1 = {x["claim"]: x for x in r.verdicts()}["F-T1"]
    # within 2 points of the paper's Table 1: 1-layer AGumb 97.0 (97.4), ReLU 97.0 (98.2), AReLU 97.5 (98.0)
    assert t1["evidence"].startswith("3 of 8 cells within 2 points of the paper")
    assert "AReLU 63.0 vs 89.9" in t1["evidence"]  # the largest gap
    assert "2 of 24 runs within 2 points of the majority rate" in t1["evidence"]
    assert t1["verdict"] == ("mixed: balanced labels, 15 epochs of Adam (paper: labels at p > 0.5, as read here, "
                             "and 2000 epochs of SGD)")


def test_claims_need_a_spread():
    cfg = Table1Config(depths=(1,), teachers=("relu",), seeds=(0,), students=("sigmoid", "agumbel"))
    r = Table1Result(config=cfg, rows=_rows({(1, "relu", "agumbel"): [0.95], (1, "relu", "sigmoid"): [0.90]}))
    v = {x["claim"]: x for x in r.verdicts()}["F-T1-CLAIMS"]
    assert v["verdict"].startswith("inconclusive") and "one run" in v["evidence"]


def test_f2_reads_the_one_layer_nets_only():
    cfg = Table1Config(depths=(1, 8), teachers=("relu",), seeds=(0,), students=("agumbel", "arelu"))

    def row(depth, student, alphas):
        return {"depth": depth, "teacher": "relu", "student": student, "seed": 0, "fold": 0, "test_acc": 0.9,
                "majority_rate": 0.5, "alphas": alphas, "trajectory": _traj(1.0, len(alphas))}

    rows = [row(1, "agumbel", [[0.2, 0.3, 0.4, 0.5]]), row(1, "arelu", [[2.0, 3.0, 4.0, 5.0]]),
            # deep nets whose alphas overlap: they would make the pooled ranges overlap
            row(8, "agumbel", [[1.0, 2.0, 3.0, 4.0]] * 8), row(8, "arelu", [[0.3, 0.4, 0.5, 0.6]] * 8)]
    v = {x["claim"]: x for x in Table1Result(config=cfg, rows=rows).verdicts()}["F-F2"]
    assert v["verdict"] == "reproduced" and "1-layer nets" in v["evidence"] and "(n = 4)" in v["evidence"]


def test_f34_early_layers_vary_more_and_static_runs_are_left_out():
    depth = 4
    cfg = Table1Config(depths=(depth,), teachers=("relu",), seeds=(0, 1, 2, 3), students=("agumbel", "arelu"))
    early = [[0.25, 0.5, 2.0, 4.0]] * 2  # log alpha spread wide and far from 0
    late = [[0.9, 1.0, 1.0, 1.1]] * 2  # near alpha = 1
    rows = []
    for student, layers in (("agumbel", early + late), ("arelu", late + early)):
        for seed in (0, 1):  # two runs that adapted
            rows.append({"depth": depth, "teacher": "relu", "student": student, "seed": seed, "fold": 0,
                         "test_acc": 0.9, "majority_rate": 0.5, "alphas": layers, "trajectory": _traj(1.0, depth)})
        # a static run (alphas at 1, trajectory flat) that would dilute the averages if counted
        rows.append({"depth": depth, "teacher": "relu", "student": student, "seed": 2, "fold": 0,
                     "test_acc": 0.9, "majority_rate": 0.5, "alphas": [[1.0] * 4] * depth,
                     "trajectory": _traj(0.0, depth)})
        # a run whose alphas moved but which stayed on the majority plateau (51 % against 50 %)
        rows.append({"depth": depth, "teacher": "relu", "student": student, "seed": 3, "fold": 0,
                     "test_acc": 0.51, "majority_rate": 0.5, "alphas": [[3.0, 0.1, 1.0, 1.0]] * depth,
                     "trajectory": _traj(1.0, depth)})
    r = Table1Result(config=cfg, rows=rows)
    assert [(x["student"], x["seed"]) for x in rows if r.adapted(x)] == [("agumbel", 0), ("agumbel", 1),
                                                                         ("arelu", 0), ("arelu", 1)]
    spread = {(s["student"], s["layer"]): s for s in r.alpha_spread()}
    assert spread[("agumbel", 1)]["runs"] == 2  # the static run and the stuck run are left out
    assert {s["runs"] for s in r.alpha_spread(adapted_only=False)} == {4}
    logs = [math.log(a) for a in early[0]]
    m = sum(logs) / 4
    sd_early = math.sqrt(sum((x - m) ** 2 for x in logs) / 3)
    assert spread[("agumbel", 1)]["sd_log_alpha"] == pytest.approx(sd_early)
    assert spread[("agumbel", 1)]["mean_abs_log_alpha"] == pytest.approx(sum(map(abs, logs)) / 4)
    # first half minus second half, by hand: spread sd_early - sd_late, distance mean|log| early - late
    logs_late = [math.log(a) for a in late[0]]
    sd_late = math.sqrt(sum((x - sum(logs_late) / 4) ** 2 for x in logs_late) / 3)
    halves = {h["student"]: h for h in r.layer_halves()}
    assert halves["AGumb"]["spread mean"] == pytest.approx(sd_early - sd_late)
    assert halves["AGumb"]["distance mean"] == pytest.approx(sum(map(abs, logs)) / 4 - sum(map(abs, logs_late)) / 4)
    assert halves["AGumb"]["spread reading"] == halves["AGumb"]["distance reading"] == "better"
    assert halves["AReLU"]["spread reading"] == halves["AReLU"]["distance reading"] == "worse"
    v = {x["claim"]: x for x in r.verdicts()}["F-F34"]
    # both checks hold for AGumb (early layers vary), neither for AReLU
    assert v["verdict"] == "mixed: early layers vary more among neurons in 1 of 2 pairs, move further from the start in 1 of 2"
    assert "AGumb/ReLU teacher (2 run(s))" in v["evidence"] and "(both hold)" in v["evidence"]
    assert "(neither holds)" in v["evidence"]
    summary = {s["student"]: s for s in r.movement_summary()}
    assert summary["AGumb"]["runs"] == 4 and summary["AGumb"]["runs moved"] == 3
    assert summary["AGumb"]["largest |change of log alpha|"] == pytest.approx(1.0)
    # one adapted run per pair: no spread to read the difference against
    one = Table1Result(config=cfg, rows=[x for x in rows if x["seed"] != 1])
    assert {x["claim"]: x for x in one.verdicts()}["F-F34"]["verdict"].startswith("inconclusive")


def test_f34_without_a_learning_deep_student_is_not_tested():
    cfg = Table1Config(depths=(2,), teachers=("relu",), seeds=(0,), students=("agumbel", "arelu"))
    rows = [{"depth": 2, "teacher": "relu", "student": s, "seed": 0, "fold": 0, "test_acc": 0.5,
             "majority_rate": 0.5, "alphas": [[2.0, 0.5]] * 2, "trajectory": _traj(0.7, 2)} for s in ("agumbel", "arelu")]
    v = {x["claim"]: x for x in Table1Result(config=cfg, rows=rows).verdicts()}["F-F34"]
    assert v["verdict"].startswith("not tested") and "no run learned" in v["evidence"]


def test_teachers_table_reports_the_papers_rule():
    from ashlib.experiments import run_experiment

    res = run_experiment("farhadi-table1", "quick", seeds=(0,), progress=False, n_samples=300, epochs=1,
                         depths=(8,), teachers=("sigmoid",), students=("relu",))
    (row,) = res.teachers()
    ref = make_teacher_data(n_samples=300, depth=8, activation="sigmoid", seed=0, label="threshold", min_minority=0)
    assert row["labels"] == "median" and row["label 1 (%)"] == 50.0 and row["majority (%)"] == 50.0
    assert row["label 1 at p > 0.5 (%)"] == pytest.approx(100 * ref.positive_fraction)
    (run,) = res.rows
    # the majority rate of a run is that of its test fold (fold 1 of 5: 60 of the 300 examples)
    from ashlib.train import kfold_indices

    _, test_idx = kfold_indices(300, 5, seed=0)[0]
    y = make_teacher_data(n_samples=300, depth=8, activation="sigmoid", seed=0, label="median").y[test_idx]
    assert len(test_idx) == 60 and run["majority_rate"] == pytest.approx(max(y.mean().item(), 1 - y.mean().item()))
