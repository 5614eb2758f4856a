"""Smoke runs of ash-resnet, ash-ablation and ash-dcgan (tiny settings), through the CLI and the API,
including the paper profile's real-format data paths (CIFAR-10 pickles, a CelebA image folder)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from ashlib.__main__ import main
from ashlib.experiments import experiment_names, make_config, run_experiment
from ashlib.experiments.ash_resnet import (AshResNetResult, all_of, combine_checks, depth_verdict, gradcam_study,
                                           gradcam_verdict, p2_construction, probe_images, run_ash_resnet, seed_outcome,
                                           spearman)
from ashlib.experiments.verdicts import NOT_TESTED_STATIC


class _Verdicts(frozenset):
    """The verdict words; a gated verdict (issue 12: "not tested: the parameter stayed at its start
    (largest movement ...)") counts by its prefix."""

    def __contains__(self, word: object) -> bool:
        return super().__contains__(word) or (isinstance(word, str) and word.startswith(
            (NOT_TESTED_STATIC, "inconclusive: ", "not reproduced: ", "proved: ")))


VERDICTS = _Verdicts({"reproduced", "not reproduced", "mixed", "not rerun here", "inconclusive", NOT_TESTED_STATIC})
TINY_RESNET = ["n_train=40", "n_test=20", "epochs=2", "widths=(2,2,4)", "n_probe=10", "image_size=16"]


def test_registered():
    assert {"ash-resnet", "ash-ablation", "ash-dcgan"} <= set(experiment_names())


def test_paper_profiles_hold_the_paper_settings():
    r = make_config("ash-resnet", "paper")
    assert (r.dataset, r.depth, r.batch_size, r.lr, r.optimizer, r.stem_stride, r.stem_pool) == \
        ("cifar10", 164, 32, 1e-3, "adam", 1, False)
    a = make_config("ash-ablation", "paper")
    assert a.acts == ("ash", "leaky-ash", "fixed-ash-10", "fixed-ash-50", "fixed-ash-90") and a.depth == 164
    g = make_config("ash-dcgan", "paper")
    assert (g.dataset, g.image_size, g.nz, g.ngf, g.ndf, g.batch_size, g.lr, g.beta1) == \
        ("celeba", 64, 100, 64, 64, 32, 1e-3, 0.9)
    assert make_config("ash-resnet", "quick").acts == ("relu", "swish", "ash")


@pytest.mark.parametrize("name", ["ash-resnet", "ash-ablation"])
def test_resnet_experiments_via_cli(tmp_path, name, capsys):
    rc = main(["run", name, "--profile", "quick", "--out", str(tmp_path), "--seeds", "0", "--no-progress",
               "--set", *TINY_RESNET])
    assert rc == 0
    out = json.loads((tmp_path / "results.json").read_text())
    assert out["experiment"] == name and len(out["rows"]) == len(out["config"]["acts"])
    for f in ("summary.csv", "curves.csv", "verdicts.csv", "curves.png"):
        assert (tmp_path / f).is_file()
    text = (tmp_path / "verdicts.csv").read_text()
    assert any(v in text for v in VERDICTS)  # "not tested: ..." contains NOT_TESTED_STATIC


def test_resnet_result_tables_and_reuse():
    cfg = make_config("ash-resnet", "quick", seeds=(0,), n_train=40, n_test=20, epochs=2, widths=(2, 2, 4),
                      n_probe=10, image_size=16, gradcam_images=12)
    res = run_ash_resnet(cfg, progress=False)
    assert [s["act"] for s in res.summary()] == ["ReLU", "Swish", "ASH"]
    th = res.thresholds()
    assert len(th) == 7 and all(0 <= t["active"] <= 1 for t in th)
    assert len(res.rows[2]["thresholds"]) == 2  # one snapshot per epoch
    verdicts = {v["claim"]: v["verdict"] for v in res.verdicts()}
    assert set(verdicts) == {"ASH-CURVES", "ASH-DEPTH", "ASH-P2", "ASH-GRADCAM"}
    assert all(v in VERDICTS for v in verdicts.values())
    # one seed: no empirical rule may give a verdict (issue 12: at least 3 seeds)
    assert verdicts["ASH-GRADCAM"].startswith("inconclusive")
    assert verdicts["ASH-P2"].startswith("proved: by construction")
    # Grad-CAM statistics of every network and layer, all at one grid: the coarsest layer's (16 px
    # images, stride-2 stem, no pool: stages at 8, 4, 2 px)
    cam = res.gradcam_rows()
    assert len(cam) == 9 and {r["grid"] for r in cam} == {2} and {r["side"] for r in cam} == {8, 4, 2}
    assert all(r["images"] == 12 and r["lift"] == pytest.approx(r["energy"] / r["area"]) for r in cam)
    assert {"gradcam", "gradcam_summary", "comparisons", "movement_summary"} <= set(res.tables())
    # the ablation reuses the ASH run of the same seed and settings instead of retraining it
    abl_cfg = make_config("ash-ablation", "quick", seeds=(0,), n_train=40, n_test=20, epochs=2, widths=(2, 2, 4),
                          n_probe=10, image_size=16, acts=("ash", "fixed-ash-10"))
    abl = run_ash_resnet(abl_cfg, progress=False, reuse=res, name="ash-ablation")
    assert abl.rows[0] is res.rows[2] and abl.gradcam == []
    assert "ASH-ABL" in {v["claim"] for v in abl.verdicts()}
    # Grad-CAM maps for display: blocks of the common grid at the input size
    x, y, m = probe_images(cfg, 4)
    maps, rows = gradcam_study(res, x, y, m)
    assert maps["ASH act"].shape == (4, 16, 16) and len(rows) == 9
    block = maps["ASH stage1"][0]
    assert torch.equal(block[:8, :8], block[0, 0].expand(8, 8))  # one value per cell of the 2x2 grid


def test_seed_outcome_and_check_combination_by_hand():
    a, b = {0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.5, 2: 3.5}
    assert seed_outcome(a, b, "lower") == "yes" and seed_outcome(a, b, "higher") == "no"
    assert seed_outcome(a, {0: 0.5, 1: 2.5, 2: 3.5}, "lower") == "split"
    assert seed_outcome(a, {0: 1.0, 1: 2.5, 2: 3.5}, "lower") == "split"  # a tie on seed 0 is not a win
    assert seed_outcome({0: 1.0, 5: 0.0}, {0: 2.0}, "lower") == "yes"  # only shared seeds count
    with pytest.raises(ValueError, match="share no seed"):
        seed_outcome({0: 1.0}, {1: 1.0})
    with pytest.raises(ValueError, match="better="):
        seed_outcome(a, b, "smaller")
    assert all_of(["yes", "yes"]) == "yes" and all_of(["yes", "split"]) == "split" and all_of(["split", "no"]) == "no"
    assert combine_checks(["yes", "yes"]) == "reproduced"
    assert combine_checks(["split", "split"]).startswith("inconclusive")
    assert combine_checks(["no", "split"]) == "not reproduced" and combine_checks(["no", "no"]) == "not reproduced"
    assert combine_checks(["yes", "no"]) == "mixed" and combine_checks(["yes", "split"]) == "mixed"


def test_depth_verdict_uses_every_seed():
    assert depth_verdict({0: 0.6, 1: 0.9, 2: 0.5}) == "reproduced"
    assert depth_verdict({0: -0.6, 1: -0.9, 2: -0.5}).startswith("not reproduced: z falls with depth")
    assert depth_verdict({0: -0.6, 1: 0.1, 2: 0.4}).startswith("not reproduced: no seed")
    assert depth_verdict({0: 0.7, 1: 0.1, 2: 0.8}) == "inconclusive: the seeds disagree"
    assert depth_verdict({0: 0.9, 1: 0.9}).startswith("inconclusive: 2 seed(s)")


def _hist(val_acc: float, val_loss: list[float], train_loss: float) -> list[dict]:
    return [{"val_acc": val_acc, "val_loss": v, "train_loss": train_loss, "train_acc": 0.5} for v in val_loss]


def _result(curves: dict[str, list[tuple[float, list[float], float]]], acts: tuple[str, ...]) -> AshResNetResult:
    cfg = make_config("ash-resnet", "quick", acts=acts, seeds=tuple(range(len(next(iter(curves.values()))))))
    rows = [{"act": act, "seed": s, "history": _hist(*c), "thresholds": [], "active": [], "seconds_per_epoch": 1.0}
            for act, cs in curves.items() for s, c in enumerate(cs)]
    return AshResNetResult(config=cfg, rows=rows)


def test_curves_and_ablation_verdicts_from_hand_made_runs():
    better = [(0.8, [1.0, 0.6], 0.5), (0.82, [1.1, 0.7], 0.52), (0.79, [0.9, 0.65], 0.51)]
    worse = [(0.7, [1.2, 0.9], 0.7), (0.75, [1.3, 0.8], 0.6), (0.74, [1.1, 0.7], 0.65)]
    v = {r["claim"]: r for r in _result({"relu": worse, "swish": worse, "ash": better},
                                        ("relu", "swish", "ash")).verdicts()}
    assert v["ASH-CURVES"]["verdict"] == "reproduced"
    assert "ASH reaches the highest final validation accuracy: yes" in v["ASH-CURVES"]["evidence"]
    v = {r["claim"]: r for r in _result({"relu": better, "swish": worse, "ash": worse},
                                        ("relu", "swish", "ash")).verdicts()}
    assert v["ASH-CURVES"]["verdict"] == "not reproduced"
    # two seeds only: inconclusive whatever the numbers say
    v = {r["claim"]: r for r in _result({"relu": worse[:2], "ash": better[:2]}, ("relu", "ash")).verdicts()}
    assert v["ASH-CURVES"]["verdict"].startswith("inconclusive: 2 seed(s)")
    # ablation: ASH best everywhere; F-ASH-10 and -90 above F-ASH-50 -> every check yes
    mid = [(0.75, [1.1, 0.75], 0.6), (0.76, [1.2, 0.75], 0.6), (0.76, [1.0, 0.68], 0.6)]
    acts = ("ash", "leaky-ash", "fixed-ash-10", "fixed-ash-50", "fixed-ash-90")
    res = _result({"ash": better, "leaky-ash": worse, "fixed-ash-10": worse, "fixed-ash-50": mid,
                   "fixed-ash-90": worse}, acts)
    v = {r["claim"]: r for r in res.verdicts()}
    assert v["ASH-ABL"]["verdict"] == "reproduced"
    comp = [c for c in res.comparisons() if c["claim"] == "ASH-ABL"]
    assert len(comp) == 1 + 3 + 1 + 3 + 2 and all(c["outcome"] == "yes" for c in comp)
    # F-ASH-50 beats ASH on every seed: "ASH converges earlier than every F-ASH-k" and "F-ASH-k worse" fail
    res = _result({"ash": mid, "leaky-ash": worse, "fixed-ash-10": worse, "fixed-ash-50": better,
                   "fixed-ash-90": worse}, acts)
    v = {r["claim"]: r for r in res.verdicts()}
    assert v["ASH-ABL"]["verdict"] == "mixed"
    assert "ASH converges earlier than every F-ASH-k: no" in v["ASH-ABL"]["evidence"]


def _cam_rows(lifts: dict[str, list[float]], breadth: dict[str, tuple[list[float], list[float]]]) -> list[dict]:
    rows = []
    for act, ls in lifts.items():
        early, late = breadth.get(act, ([0.5] * len(ls), [0.5] * len(ls)))
        for s, lift in enumerate(ls):
            rows.append({"act": act, "seed": s, "layer": "stage1", "lift": 1.0, "breadth": early[s], "grid": 4})
            rows.append({"act": act, "seed": s, "layer": "act", "lift": lift, "breadth": late[s], "grid": 4})
    return rows


def test_gradcam_verdict_needs_power_first():
    # no activation localises: the test has no power, whatever ASH's breadths are
    none = _cam_rows({"ReLU": [1.1, 1.0, 1.15], "ASH": [1.05, 1.1, 1.0]}, {"ASH": ([0.9] * 3, [0.3] * 3)})
    v = gradcam_verdict(none)
    assert v["verdict"].startswith("inconclusive: no activation") and "no power" in v["verdict"]
    # ReLU localises on every seed: now ASH can be judged
    ok = _cam_rows({"ReLU": [1.3, 1.4, 1.25], "ASH": [1.5, 1.3, 1.21]}, {"ASH": ([0.9] * 3, [0.3] * 3)})
    assert gradcam_verdict(ok)["verdict"] == "reproduced"
    bad = _cam_rows({"ReLU": [1.3, 1.4, 1.25], "ASH": [1.0, 1.1, 1.05]}, {"ASH": ([0.3] * 3, [0.9] * 3)})
    assert gradcam_verdict(bad)["verdict"] == "not reproduced"
    half = _cam_rows({"ReLU": [1.3, 1.4, 1.25], "ASH": [1.5, 1.3, 1.21]}, {"ASH": ([0.3] * 3, [0.9] * 3)})
    assert gradcam_verdict(half)["verdict"] == "mixed"
    assert gradcam_verdict(_cam_rows({"ReLU": [1.3, 1.4], "ASH": [1.5, 1.3]}, {}))["verdict"].startswith(
        "inconclusive: 2 seed(s)")
    assert gradcam_verdict([])["verdict"].startswith("inconclusive: no object masks")


def test_p2_is_proved_by_construction_and_needs_a_positive_scale():
    assert all(p2_construction().values())
    wrong = p2_construction(a_positive=False)  # sd(aX + b) = |a| sd(X): fails for a < 0
    assert wrong["mean(aX + b) = a mean(X) + b"] and not wrong["sd(aX + b) = a sd(X)"]


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [5, 6, 5]) == pytest.approx(0.0)


def _write_cifar(root, n=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)


def test_paper_profile_data_path_cifar10(tmp_path):
    """The paper profile's code path (CIFAR-10 pickles, a bottleneck ResNet) on a tiny fake CIFAR-10."""
    _write_cifar(tmp_path)
    res = run_experiment("ash-resnet", "paper", seeds=(0,), data_root=str(tmp_path), depth=11,
                         block="bottleneck", widths=(2, 2, 2), epochs=1, acts=("relu", "ash"), n_probe=8, device="cpu", progress=False)
    assert len(res.rows) == 2 and res.rows[0]["history"][0]["val_acc"] >= 0
    assert res.models[("ash", 0)].block == "bottleneck"


def test_dcgan_experiment_digits_via_cli(tmp_path):
    rc = main(["run", "ash-dcgan", "--profile", "quick", "--out", str(tmp_path), "--seeds", "0", "--no-progress",
               "--set", "epochs=2", "ngf=4", "ndf=4", "n_fd=40", "classifier_epochs=1", "n_images=64", "n_grid=4"])
    assert rc == 0
    out = json.loads((tmp_path / "results.json").read_text())
    assert len(out["rows"]) == 3 and out["fd_real"] >= 0
    for f in ("samples.png", "quality.png", "summary.csv", "verdicts.csv"):
        assert (tmp_path / f).is_file()


def test_dcgan_paper_data_path_celeba(tmp_path):
    from PIL import Image

    folder = tmp_path / "img_align_celeba"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / f"{i + 1:06d}.jpg")
    res = run_experiment("ash-dcgan", "paper", seeds=(0,), data_root=str(tmp_path), image_size=32, ngf=4, ndf=4,
                         nz=8, epochs=1, n_fd=8, n_grid=4, batch_size=8, acts=("relu", "ash"), device="cpu",
                         progress=False)
    assert len(res.rows) == 2 and res.samples["ash"][1].shape == (4, 3, 32, 32)
    from ashlib.experiments.verdicts import VERDICT_WORDS

    assert res.verdicts()[0]["verdict"].split(":")[0] in VERDICT_WORDS  # one epoch of noise: "inconclusive: ..."
