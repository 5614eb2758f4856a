"""ASH-SEG (ashlib.experiments.ash_seg): the segmentation metrics against hand-computed cases and
scikit-learn, the shapes' class maps against the generator's geometry, the U-Net, the ADE20K
loader on files written here, the verdict rule, a tiny run end to end, and resuming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ashlib.analysis.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy
from ashlib.data.shapes import SEGMENTATION_CLASSES, SHAPES_PRESETS, _shape_masks, load_shapes_segmentation, make_shapes
from ashlib.experiments import make_config, run_experiment
from ashlib.experiments import ash_seg as S
from ashlib.experiments.verdicts import NOT_TESTED_STATIC, VERDICT_WORDS
from ashlib.models import UNet

TINY = dict(n_train=48, n_test=24, epochs=2, widths=(4, 8), n_show=3)


# --------------------------------------------------------------------------- metrics


def test_confusion_iou_and_accuracy_by_hand():
    pred = torch.tensor([[0, 0, 1], [1, 2, 2]])
    target = torch.tensor([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, target, 3)
    # rows: truth, columns: prediction
    assert cm.tolist() == [[1, 0, 1], [1, 2, 0], [0, 0, 1]]
    # IoU = TP / (TP + FP + FN): class 0: 1 / (1 + 1 + 1); class 1: 2 / (2 + 0 + 1); class 2: 1 / (1 + 1 + 0)
    assert iou_per_class(cm) == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert pixel_accuracy(cm) == pytest.approx(4 / 6)


def test_absent_class_is_left_out_and_ignored_pixels_are_not_scored():
    pred = torch.tensor([0, 1, 1, 3, 0])
    target = torch.tensor([0, 1, 255, 255, 1])
    cm = confusion_matrix(pred, target, 4, ignore_index=255)
    assert int(cm.sum()) == 3  # the two pixels with target 255 are dropped, with their predictions (1 and 3)
    iou = iou_per_class(cm)
    # class 0: TP 1, FN 0, FP 1 (the last pixel) -> 1/2; class 1: TP 1, FN 1 -> 1/2; classes 2, 3 absent
    assert iou[:2] == pytest.approx([0.5, 0.5]) and math.isnan(iou[2]) and math.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="0..3"):
        confusion_matrix(torch.tensor([4]), torch.tensor([0]), 4)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(4), 4)


def test_iou_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (4, 9, 9), generator=g)
    pred = torch.where(torch.rand(4, 9, 9, generator=g) < 0.6, target, torch.randint(0, 5, (4, 9, 9), generator=g))
    cm = confusion_matrix(pred, target, 5)
    ref = metrics.jaccard_score(target.flatten().numpy(), pred.flatten().numpy(), average=None, labels=range(5))
    assert iou_per_class(cm) == pytest.approx(list(ref))
    assert pixel_accuracy(cm) == pytest.approx(metrics.accuracy_score(target.flatten(), pred.flatten()))
    assert cm.numpy().tolist() == metrics.confusion_matrix(target.flatten(), pred.flatten(), labels=range(5)).tolist()


def test_object_iou_merges_the_shape_classes():
    # truth: background, disk, disk, ring; prediction: background, ring, background, ring
    cm = confusion_matrix(torch.tensor([0, 2, 0, 2]), torch.tensor([0, 1, 1, 2]), 3)
    # object pixels: truth {1, 2, 3}, prediction {1, 3}: intersection 2, union 3
    assert S.object_iou(cm) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- the shapes' class maps


def _pixel_centres(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    return torch.meshgrid(g, g, indexing="ij")


@pytest.mark.parametrize("size", [32, 64])
def test_disk_and_square_masks_follow_their_geometry(size):
    yy, xx = _pixel_centres(size)
    px = 2 / size
    # a disk (class 0) of radius 0.5 at (0.1, -0.2); the shape's own frame has radius 0.8 for radius 1
    m = _shape_masks(torch.tensor([0]), torch.tensor([[0.1, -0.2]]), torch.tensor([0.5]), torch.tensor([0.0]), size)[0]
    r = torch.sqrt((xx - 0.1) ** 2 + (yy + 0.2) ** 2)
    assert bool((m[r < 0.5 - px] >= 0.5).all()) and bool((m[r > 0.5 + px] < 0.5).all())
    # every pixel whose centre is clearly inside/outside is classified so, and the area is pi r^2
    assert float((m >= 0.5).sum()) * px * px == pytest.approx(math.pi * 0.25, rel=0.06)
    # a square (class 2), unrotated: half side 0.62 in the unit frame, scaled by radius / 0.8
    half = 0.62 * 0.6 / 0.8
    m = _shape_masks(torch.tensor([2]), torch.tensor([[0.0, 0.0]]), torch.tensor([0.6]), torch.tensor([0.0]), size)[0]
    d = torch.maximum(xx.abs(), yy.abs())
    assert bool((m[d < half - px] >= 0.5).all()) and bool((m[d > half + px] < 0.5).all())


def test_class_maps_are_the_object_masks_and_leave_the_images_unchanged():
    imgs, labels, masks, seg = make_shapes(12, 32, seed=3, return_masks=True, return_segmentation=True,
                                           **SHAPES_PRESETS["quick"])
    plain = make_shapes(12, 32, seed=3, **SHAPES_PRESETS["quick"])
    assert torch.equal(imgs, plain[0]) and torch.equal(labels, plain[1])
    # no distractors in the quick preset: background 0, the object 1 + its class where its mask >= 0.5
    expect = torch.where(masks >= 0.5, 1 + labels[:, None, None], torch.zeros_like(seg))
    assert torch.equal(seg, expect)
    for s, y in zip(seg, labels):
        assert set(torch.unique(s).tolist()) == {0, 1 + int(y)}
    # the images of the generator before class maps existed (recorded from it: per-image means, the
    # labels, the mask areas of make_shapes(6, 32, seed=3, ...))
    imgs, labels, masks, _ = make_shapes(6, 32, seed=3, return_masks=True, return_segmentation=True,
                                         **SHAPES_PRESETS["quick"])
    assert [float(v) for v in imgs.float().mean((1, 2, 3))] == pytest.approx(
        [148.049, 125.105, 106.327, 88.208, 181.153, 131.476], abs=0.15)
    assert labels.tolist() == [4, 0, 3, 2, 1, 5]
    assert [float(v) for v in masks.mean((1, 2))] == pytest.approx([0.133, 0.275, 0.261, 0.168, 0.388, 0.217],
                                                                    abs=2e-3)
    hard = make_shapes(6, 32, seed=3, return_masks=True)
    assert [float(v) for v in hard[0].float().mean((1, 2, 3))] == pytest.approx(
        [123.788, 147.103, 136.504, 88.106, 173.963, 137.826], abs=0.15)


def test_distractors_are_labelled_under_the_object():
    imgs, labels, masks, seg = make_shapes(40, 32, seed=5, return_masks=True, return_segmentation=True)
    inside = masks >= 0.5
    # the object is painted last: its pixels carry its class
    assert torch.equal(seg[inside], (1 + labels[:, None, None]).expand_as(seg)[inside])
    # the distractors (other classes somewhere) are in the maps of the hard preset
    assert any(len(set(torch.unique(s).tolist()) - {0, 1 + int(y)}) for s, y in zip(seg, labels))


def test_segmentation_splits():
    tr, te = load_shapes_segmentation(20, 10, 32, seed=0, preset="quick")
    x, y = tr[torch.arange(4)]
    assert x.shape == (4, 3, 32, 32) and y.shape == (4, 32, 32) and y.dtype == torch.int64
    assert 0 <= int(y.min()) and int(y.max()) < len(SEGMENTATION_CLASSES)
    # the same images as the classification splits
    from ashlib.data.shapes import load_shapes

    ctr, cte = load_shapes(20, 10, 32, seed=0, preset="quick")
    assert torch.equal(tr.images, ctr.images) and torch.equal(te.images, cte.images)


# --------------------------------------------------------------------------- the U-Net


def test_unet_shapes_and_activation_sites():
    from ashlib.modules import ASH

    net = UNet(5, widths=(4, 8, 16), act="ash")
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 5, 16, 16)
    assert sum(isinstance(m, ASH) for m in net.modules()) == 4 * 3 - 2
    made = []

    def factory():
        made.append(torch.nn.GELU())
        return made[-1]

    UNet(2, widths=(4, 8), act=factory)
    assert len(made) == 6
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.rand(1, 3, 18, 18))
    with pytest.raises(ValueError, match="unknown|not-an-act"):
        UNet(2, widths=(4, 8), act="not-an-act")


# --------------------------------------------------------------------------- ADE20K (paper profile)


def test_ade20k_missing_files_are_named(tmp_path):
    cfg = make_config("ash-seg", "paper", data_root=str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        S.load_data(cfg)
    msg = str(err.value)
    assert "ADEChallengeData2016" in msg and "ADE_train_00000001.jpg" in msg and "annotations" in msg
    assert "sceneparsing.csail.mit.edu" in msg


def test_ade20k_reader_on_files_written_here(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    base = tmp_path / "ADEChallengeData2016"
    for split, prefix in (("training", "ADE_train_"), ("validation", "ADE_val_")):
        (base / "images" / split).mkdir(parents=True)
        (base / "annotations" / split).mkdir(parents=True)
        for i in range(2):
            rgb = np.full((12, 16, 3), 40 * (i + 1), dtype=np.uint8)
            Image.fromarray(rgb).save(base / "images" / split / f"{prefix}{i + 1:08d}.jpg")
            ann = np.zeros((12, 16), dtype=np.uint8)
            ann[:, 8:] = 7  # class 7 on the right half, "other" (0) on the left
            ann[:2, :] = 150
            Image.fromarray(ann).save(base / "annotations" / split / f"{prefix}{i + 1:08d}.png")
    from ashlib.data.ade20k import ADE20K_IGNORE, load_ade20k

    tr, va = load_ade20k(tmp_path, image_size=6)
    assert len(tr) == len(va) == 2
    x, y = tr[0]
    assert x.shape == (3, 6, 6) and y.shape == (6, 6)
    # 12 x 16 -> 6 x 8 (shorter side 6), centre crop of 6 columns: 1..6 of 8; left half "other" -> ignored
    assert set(torch.unique(y).tolist()) == {ADE20K_IGNORE, 6, 149}
    assert int(y[3, 0]) == ADE20K_IGNORE and int(y[3, 5]) == 6 and int(y[0, 3]) == 149
    (base / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="no annotation"):
        load_ade20k(tmp_path, image_size=6)


# --------------------------------------------------------------------------- the verdict rule


def test_compare_to_and_the_verdict_words():
    assert S.compare_to([50, 52, 54], [40, 41, 42])["outcome"] == "better"  # +11.5 > margin 2
    assert S.compare_to([40, 41, 42], [50, 52, 54])["outcome"] == "worse"
    c = S.compare_to([50, 52, 54], [49, 51, 53])
    assert c["outcome"] == "tie" and c["diff"] == pytest.approx(1.0) and c["margin"] == pytest.approx(2.0)
    assert S.compare_to([50], [40])["outcome"] == "one seed"
    assert S.seg_verdict(["better", "better"]) == "reproduced"
    assert S.seg_verdict(["worse", "tie"]) == "not reproduced"
    assert S.seg_verdict(["worse", "worse"]) == "not reproduced"
    assert S.seg_verdict(["better", "worse"]) == "mixed"
    assert S.seg_verdict(["better", "tie"]) == "mixed"
    assert S.seg_verdict(["tie", "tie"]).startswith("inconclusive")
    assert S.seg_verdict(["one seed", "better"]).startswith("inconclusive")
    assert "larger of the two standard deviations" in S.verdict_rule()


def _fake_result(miou: dict[str, list[float]], moved: float) -> S.AshSegResult:
    cfg = make_config("ash-seg", "quick", seeds=tuple(range(len(miou["ash"]))))
    res = S.AshSegResult(config=cfg)
    for act, vals in miou.items():
        for seed, v in enumerate(vals):
            z = 0.0 if act != "ash" else moved
            traj = [] if act != "ash" else [
                {"epoch": e, "params": {"down.0.2": {"z": {"mean": e * z, "min": e * z, "max": e * z, "n": 1}}}}
                for e in (0, 1)]
            res.rows.append({"act": act, "seed": seed, "miou": v, "pixel_acc": 0.9, "object_iou": 0.8,
                             "iou": [v], "history": [], "trajectory": traj, "seconds_per_epoch": 1.0,
                             "parameters": 10})
    return res


def test_verdict_from_results_and_the_static_gate():
    good = {"relu": [0.40, 0.41, 0.42], "swish": [0.43, 0.44, 0.45], "ash": [0.50, 0.51, 0.52]}
    v = _fake_result(good, moved=0.3).verdicts()[0]
    assert v["claim"] == "ASH-SEG" and v["verdict"] == "reproduced: procedural shapes, not ADE20K"
    assert "ASH 51.0 ± 1.0" in v["evidence"]
    static = _fake_result(good, moved=0.01).verdicts()[0]
    assert static["verdict"].startswith(NOT_TESTED_STATIC)
    bad = {"relu": [0.50, 0.51, 0.52], "swish": [0.43, 0.44, 0.45], "ash": [0.40, 0.41, 0.42]}
    assert _fake_result(bad, moved=0.3).verdicts()[0]["verdict"].startswith("not reproduced")
    for word in ("reproduced", "not reproduced", "inconclusive", "mixed"):
        assert word in VERDICT_WORDS


# --------------------------------------------------------------------------- a tiny run, end to end, and resume


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    torch.set_num_threads(1)
    return out, run_experiment("ash-seg", profile="quick", seeds=(0, 1), out_dir=out, progress=False, **TINY)


def test_tiny_run_end_to_end(tiny):
    out, res = tiny
    assert [(r["act"], r["seed"]) for r in res.rows] == [(a, s) for s in (0, 1) for a in ("relu", "swish", "ash")]
    for r in res.rows:
        cm = torch.tensor(r["confusion"])
        assert int(cm.sum()) == TINY["n_test"] * 32 * 32  # every held-out pixel scored once
        # the reported scores are those of the stored confusion matrix (numpy, independently)
        a = cm.numpy().astype(float)
        tp = np.diag(a)
        union = a.sum(0) + a.sum(1) - tp
        assert r["miou"] == pytest.approx(float(np.mean(tp[union > 0] / union[union > 0])))
        assert r["pixel_acc"] == pytest.approx(tp.sum() / a.sum())
        assert len(r["history"]) == TINY["epochs"] and r["miou"] == r["history"][-1]["test_miou"]
        assert res.preds[(r["act"], r["seed"])].shape == (TINY["n_show"], 32, 32)
    # ASH's parameters are recorded from the start (epoch 0) to the end
    ash = [t for t in res.trajectories() if t["act"] == "ash"]
    assert {t["quantity"] for t in ash} == {"z", "alpha"} and {t["epoch"] for t in ash} == {0, 1, 2}
    assert len({t["site"] for t in ash}) == 4 * 2 - 2
    v = res.verdicts()[0]
    assert v["claim"] == "ASH-SEG" and any(v["verdict"].startswith(w) for w in VERDICT_WORDS)
    from statistics import NormalDist

    params = res.ash_parameters()
    assert len(params) == 2 * (4 * 2 - 2)
    for p in params:
        ends = [t["mean"] for t in ash if t["site"] == p["site"] and t["quantity"] == p["quantity"] and t["epoch"] == 2]
        assert p["end"] == pytest.approx(sum(ends) / len(ends)) and p["end_min"] == pytest.approx(min(ends))
        if p["quantity"] == "z":
            assert p["start"] == pytest.approx(0.0, abs=1e-6)  # ASH starts at k = 50 %
            assert p["k_end"] == pytest.approx(100 * (1 - NormalDist().cdf(p["end"])), abs=1e-6)
    for name in ("results.json", "verdicts.json", "summary.csv", "predictions.png", "miou.png", "curves.png"):
        assert (out / name).is_file(), name
    assert res.show_truth.shape == (TINY["n_show"], 32, 32)
    for row in res.per_seed():
        scores = {a: 100 * r["miou"] for r in res.rows for a in [r["act"]] if r["seed"] == row["seed"]}
        assert row["ReLU"] == pytest.approx(scores["relu"]) and row["ASH"] == pytest.approx(scores["ash"])
        assert row["highest"] == {"relu": "ReLU", "swish": "Swish", "ash": "ASH"}[max(scores, key=scores.get)]


def test_resume_recomputes_only_what_is_missing(tiny):
    out, res = tiny
    (out / "units" / "swish-seed1.pt").unlink()
    again = run_experiment("ash-seg", profile="quick", seeds=(0, 1), out_dir=out, progress=False, **TINY)
    assert [r["miou"] for r in again.rows] == pytest.approx([r["miou"] for r in res.rows], abs=1e-6)
    assert (out / "units" / "swish-seed1.pt").is_file()


def test_resume_inside_a_unit_after_an_interruption(tmp_path, monkeypatch):
    monkeypatch.setenv("ASHLIB_CHECKPOINT_SECONDS", "0")
    kw = dict(TINY, epochs=3, acts=("ash",))
    torch.set_num_threads(1)
    whole = run_experiment("ash-seg", profile="quick", seeds=(0,), progress=False, **kw)
    real = S.evaluate_segmentation
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # during epoch 3: epochs 1 and 2 are checkpointed
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "evaluate_segmentation", failing)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("ash-seg", profile="quick", seeds=(0,), out_dir=tmp_path, progress=False, **kw)
    assert (tmp_path / "units" / "ash-seed0.ckpt.pt").is_file()
    monkeypatch.setattr(S, "evaluate_segmentation", real)
    resumed = run_experiment("ash-seg", profile="quick", seeds=(0,), out_dir=tmp_path, progress=False, **kw)
    h0, h1 = whole.rows[0]["history"], resumed.rows[0]["history"]
    assert [h["epoch"] for h in h1] == [1, 2, 3]
    for a, b in zip(h0, h1):
        assert b["test_miou"] == pytest.approx(a["test_miou"], abs=1e-9)
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
    assert not (tmp_path / "units" / "ash-seed0.ckpt.pt").exists()


def test_profiles():
    q, b, p = (make_config("ash-seg", prof) for prof in ("quick", "book", "paper"))
    assert len(b.seeds) >= 3 and b.dataset == "shapes"
    assert p.dataset == "ade20k" and p.widths == (64, 128, 256, 512, 1024) and p.acts == S.PAPER_ACTS
    assert p.batch_size == 32 and p.lr == 1e-3
    assert q.epochs <= b.epochs
