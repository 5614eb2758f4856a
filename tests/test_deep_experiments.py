"""Smoke runs of ash-resnet, ash-ablation and ash-dcgan (tiny settings), through the CLI and the API,
including the paper profile's real-format data paths (CIFAR-10 pickles, a CelebA image folder)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from ashlib.__main__ import main
from ashlib.experiments import experiment_names, make_config, run_experiment
from ashlib.experiments.ash_resnet import gradcam_study, gradcam_verdict, probe_images, run_ash_resnet, spearman
from ashlib.experiments.verdicts import NOT_TESTED_STATIC


class _Verdicts(frozenset):
    """The verdict words; a gated verdict (issue 12: "not tested: the parameter stayed at its start
    (largest movement ...)") counts by its prefix."""

    def __contains__(self, word: object) -> bool:
        return super().__contains__(word) or (isinstance(word, str) and word.startswith(NOT_TESTED_STATIC))


VERDICTS = _Verdicts({"reproduced", "not reproduced", "mixed", "not rerun here", NOT_TESTED_STATIC})
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
                      n_probe=10, image_size=16)
    res = run_ash_resnet(cfg, progress=False)
    assert [s["act"] for s in res.summary()] == ["ReLU", "Swish", "ASH"]
    th = res.thresholds()
    assert len(th) == 7 and all(0 <= t["active"] <= 1 for t in th)
    assert len(res.rows[2]["thresholds"]) == 2  # one snapshot per epoch
    assert {v["claim"] for v in res.verdicts()} == {"ASH-CURVES", "ASH-DEPTH", "ASH-P2"}
    assert all(v["verdict"] in VERDICTS for v in res.verdicts())
    # the ablation reuses the ASH run of the same seed and settings instead of retraining it
    abl_cfg = make_config("ash-ablation", "quick", seeds=(0,), n_train=40, n_test=20, epochs=2, widths=(2, 2, 4),
                          n_probe=10, image_size=16, acts=("ash", "fixed-ash-10"))
    abl = run_ash_resnet(abl_cfg, progress=False, reuse=res, name="ash-ablation")
    assert abl.rows[0] is res.rows[2]
    assert "ASH-ABL" in {v["claim"] for v in abl.verdicts()}
    # Grad-CAM study on the trained nets, with the shapes masks
    x, y, m = probe_images(cfg, 4)
    maps, rows = gradcam_study(res, x, y, m)
    assert maps["ASH act"].shape == (4, 16, 16) and len(rows) == 9
    assert gradcam_verdict(rows)["verdict"] in VERDICTS


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
