"""DCGAN shapes and parameter counts; the Frechet distance against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import ashlib
from ashlib.analysis.metrics import frechet_distance, frechet_distance_features, gaussian_stats, sqrtm_psd
from ashlib.models import DCGANDiscriminator, DCGANGenerator
from ashlib.experiments.verdicts import NOT_TESTED_STATIC


def _names():
    return [n.replace("<k%>", "10") for n in ashlib.activation_names()]


@pytest.mark.parametrize("act", _names())
@pytest.mark.parametrize("size", [32, 64])
def test_shapes_for_every_activation(act, size):
    torch.manual_seed(0)
    g = DCGANGenerator(nz=8, ngf=4, nc=3, image_size=size, act=act)
    d = DCGANDiscriminator(ndf=4, nc=3, image_size=size, act=act)
    img = g(torch.randn(2, 8))
    assert img.shape == (2, 3, size, size)
    assert float(img.detach().abs().max()) <= 1.0
    assert d(img).shape == (2,)
    d(img).sum().backward()
    assert g(torch.randn(2, 8, 1, 1)).shape == (2, 3, size, size)


def _conv(cin, cout, k=4):
    return cin * cout * k * k


def test_parameter_counts_by_hand():
    """DCGAN 64x64 with nz=100, ngf=ndf=64, nc=3 (Radford et al. 2015): transposed convs 100->512->256->128->64->3
    and BN on the hidden ones; discriminator convs 3->64->128->256->512->1, BN from the second. No biases."""
    g = _conv(100, 512) + _conv(512, 256) + _conv(256, 128) + _conv(128, 64) + _conv(64, 3) + 2 * (512 + 256 + 128 + 64)
    d = _conv(3, 64) + _conv(64, 128) + _conv(128, 256) + _conv(256, 512) + _conv(512, 1) + 2 * (128 + 256 + 512)
    assert sum(p.numel() for p in DCGANGenerator().parameters()) == g == 3_576_704
    assert sum(p.numel() for p in DCGANDiscriminator().parameters()) == d == 2_765_568
    g32 = _conv(32, 64) + _conv(64, 32) + _conv(32, 16) + _conv(16, 1) + 2 * (64 + 32 + 16)
    assert sum(p.numel() for p in DCGANGenerator(32, 16, 1, 32).parameters()) == g32


def test_generator_has_one_activation_per_site():
    g = DCGANGenerator(nz=8, ngf=4, nc=1, image_size=32, act="ash")
    ash = [m for m in g.modules() if isinstance(m, ashlib.ASH)]
    assert len(ash) == 3 and len({id(m) for m in ash}) == 3
    g = DCGANGenerator(nz=8, ngf=4, nc=1, image_size=32, act="agumbel")
    assert [m.log_alpha.numel() for m in g.modules() if isinstance(m, ashlib.AdaptiveGumbel)] == [16, 8, 4]


def test_bad_sizes():
    with pytest.raises(ValueError):
        DCGANGenerator(image_size=48)
    with pytest.raises(ValueError):
        DCGANDiscriminator(image_size=128)


def test_frechet_commuting_case():
    """Diagonal covariances: FD = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2."""
    mu1, mu2 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 2.0, 5.0])
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([9.0, 16.0, 1.0])
    expected = 1 + 4 + (1 - 3) ** 2 + (2 - 4) ** 2 + (3 - 1) ** 2
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_non_commuting_case():
    """2 x 2: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M = S1 S2 (eigenvalues real and >= 0)."""
    s1 = [[2.0, 1.0], [1.0, 2.0]]
    s2 = [[1.0, 0.0], [0.0, 4.0]]
    m = [[s1[0][0] * s2[0][0] + s1[0][1] * s2[1][0], s1[0][0] * s2[0][1] + s1[0][1] * s2[1][1]],
         [s1[1][0] * s2[0][0] + s1[1][1] * s2[1][0], s1[1][0] * s2[0][1] + s1[1][1] * s2[1][1]]]
    tr_m = m[0][0] + m[1][1]
    det_m = m[0][0] * m[1][1] - m[0][1] * m[1][0]
    tr_sqrt = math.sqrt(tr_m + 2 * math.sqrt(det_m))
    expected = (0 - 1) ** 2 + (1 + 1) ** 2 + 4 + 5 - 2 * tr_sqrt
    got = frechet_distance(torch.tensor([0.0, 1.0]), torch.tensor(s1), torch.tensor([1.0, -1.0]), torch.tensor(s2))
    assert got == pytest.approx(expected, rel=1e-12)
    assert frechet_distance(torch.zeros(2), torch.tensor(s1), torch.zeros(2), torch.tensor(s1)) == pytest.approx(0, abs=1e-12)


def test_sqrtm_and_sample_estimate():
    s = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    r = sqrtm_psd(s)
    assert torch.allclose(r @ r, s, atol=1e-12)
    gen = torch.Generator().manual_seed(0)
    f1 = torch.randn(20000, 3, generator=gen, dtype=torch.float64)
    f2 = 2 * torch.randn(20000, 3, generator=gen, dtype=torch.float64) + 1
    # N(0, I) vs N(1, 4I) in 3 dims: 3 * 1 + 3 * (1 - 2)^2 = 6
    assert frechet_distance_features(f1, f2) == pytest.approx(6.0, rel=0.03)
    mu, cov = gaussian_stats(f2)
    assert torch.allclose(mu, torch.ones(3, dtype=torch.float64), atol=0.05)
    with pytest.raises(ValueError):
        frechet_distance(torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(3))


def test_manifold_membership_by_hand():
    """1-D, k = 1: the reference points 0, 1, 3, 10 have radii 1, 1, 2, 7 (distance to the nearest other
    point), so their balls are [-1, 1], [0, 2], [1, 5] and [3, 17]."""
    from ashlib.analysis.metrics import manifold_membership, precision_recall

    ref = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    query = torch.tensor([[0.5], [5.0], [-2.0], [20.0], [17.0], [-1.0]])
    assert manifold_membership(ref, query, k=1).tolist() == [True, True, False, False, True, True]
    # k = 2: radii are the second-nearest distances 3, 2, 3, 9: balls [-3, 3], [-1, 3], [0, 6], [1, 19]
    assert manifold_membership(ref, query, k=2).tolist() == [True, True, True, False, True, True]
    assert manifold_membership(ref, torch.tensor([[-3.5], [19.0], [19.5]]), k=2).tolist() == [False, True, False]
    # recall: the fake points 0.5, 5, -2, 20, 17 have k=1 radii 2.5, 4.5, 2.5, 3, 3; of the real points
    # 0, 1, 3 fall in the ball of 0.5 or 5, and 10 falls in none ([0.5, 9.5] ends before it)
    p, r = precision_recall(ref, query[:5], k=1)
    assert (p, r) == (pytest.approx(3 / 5), pytest.approx(3 / 4))
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x, k=3) == (1.0, 1.0)
    with pytest.raises(ValueError, match="k=4"):
        manifold_membership(ref, query, k=4)
    with pytest.raises(ValueError, match="same d"):
        manifold_membership(ref, torch.zeros(2, 2))


# --------------------------------------------------------------------------- ash-dcgan's verdict on made-up runs


def _result(curves: dict[str, list[list[float]]], step_times=None, z_move: float = 0.5, real_rec: float = 0.8):
    """A DCGANResult whose rows have the recognisable shares ``curves[act][seed]`` per epoch (fd = 10 * (1 -
    share), so a higher share is a lower distance) and ASH's z moved by ``z_move``."""
    from ashlib.experiments import make_config
    from ashlib.experiments.ash_dcgan import DCGANResult

    acts = tuple(curves)
    n_seeds = len(next(iter(curves.values())))
    cfg = make_config("ash-dcgan", "quick", acts=acts, seeds=tuple(range(n_seeds)))
    rows = []
    for act, per_seed in curves.items():
        for seed, shares in enumerate(per_seed):
            hist = [{"epoch": e + 1, "fd": 10 * (1 - v), "precision": 0.7, "recall": 0.7, "confident": v,
                     "recognisable": v, "loss_d": 1.0, "loss_g": 1.0, "seconds": 1.0} for e, v in enumerate(shares)]
            traj = []
            if act == "ash":
                traj = [{"epoch": e, "params": {"net.2": {"z": {"mean": z_move * e / len(shares), "min": 0.0,
                                                                 "max": z_move * e / len(shares), "n": 1}}}}
                        for e in range(len(shares) + 1)]
            rows.append({"act": act, "seed": seed, "history": hist, "trajectory": traj, "sec_per_epoch": 1.0})
    return DCGANResult(config=cfg, rows=rows, real_scores={"fd": 0.4, "precision": real_rec, "recall": 0.7,
                                                          "confident": 1.0, "recognisable": real_rec},
                       step_times=step_times or {"relu": 1.0, "swish": 1.1, "ash": 1.2})


def test_dcgan_quality_bar_and_epochs_to_bar():
    res = _result({"relu": [[0.1, 0.3, 0.5], [0.1, 0.2, 0.3]], "ash": [[0.4, 0.5, 0.6], [0.45, 0.2, 0.5]]})
    assert res.quality_key() == "recognisable" and res.quality_bar() == pytest.approx(0.4)  # 0.5 * 0.8
    assert res.epochs_to_bar("relu") == [3, None] and res.epochs_to_bar("ash") == [1, 1]
    s = {r["act"]: r for r in res.summary()}
    # ReLU: seeds reach at epochs 3 and never (counted as 3 + 1): mean 3.5; final shares 0.5, 0.3: mean 0.4 >= 0.4
    assert s["ReLU"]["epochs_to_bar"] == pytest.approx(3.5) and s["ReLU"]["reached"] == 1
    assert s["ReLU"]["final_recognisable"] == pytest.approx(0.4) and s["ReLU"]["learned"]
    assert s["ASH"]["epochs_to_bar"] == pytest.approx(1.0) and s["ASH"]["epochs_to_bar_sd"] == pytest.approx(0.0)
    d = {r["act"]: r for r in res.curve_digest()}
    # ASH's mean curve 0.425, 0.35, 0.55: peak at epoch 3, largest fall 0.075 (epoch 1 -> 2)
    assert d["ASH"]["peak_epoch"] == 3 and d["ASH"]["largest_fall"] == pytest.approx(0.075)


def test_dcgan_verdict_inconclusive_when_nothing_learned():
    res = _result({"relu": [[0.0, 0.1, 0.2]] * 3, "swish": [[0.0, 0.1, 0.2]] * 3, "ash": [[0.0, 0.2, 0.39]] * 3})
    v = res.verdicts()[0]
    assert v["verdict"] == "inconclusive: no generator reached the quality bar"
    assert "bar 0.40" in v["evidence"]


def test_dcgan_verdict_words():
    fast = {"relu": 1.0, "swish": 1.1, "ash": 0.9}
    # ASH at the bar from epoch 1 in every seed, the others from epoch 3; similar finals; ASH's step faster
    curves = {"relu": [[0.1, 0.2, 0.5], [0.1, 0.3, 0.5], [0.2, 0.3, 0.5]],
              "swish": [[0.1, 0.2, 0.5], [0.1, 0.3, 0.5], [0.2, 0.3, 0.5]],
              "ash": [[0.5, 0.5, 0.5], [0.45, 0.5, 0.5], [0.4, 0.5, 0.5]]}
    assert _result(curves, fast).verdicts()[0]["verdict"] == "reproduced"
    assert _result(curves).verdicts()[0]["verdict"] == "mixed"  # step slower than ReLU's
    # the same, but ASH's z stayed at its start: the comparison is not judged
    assert _result(curves, fast, z_move=0.01).verdicts()[0]["verdict"].startswith(NOT_TESTED_STATIC)
    # ASH later than the others by more than the spread, never similar (ASH below the bar), slower: none holds
    late = {"relu": [[0.5, 0.6, 0.7]] * 3, "swish": [[0.5, 0.6, 0.7]] * 3, "ash": [[0.0, 0.0, 0.1]] * 3}
    assert _result(late).verdicts()[0]["verdict"] == "not reproduced"
    # earlier by less than the combined standard error of the means: a tie, not "earlier". ReLU reaches
    # the bar at epochs 2, 1, 3 (mean 2, se 0.577), ASH at 1, 1, 3 (mean 1.667, se 0.667): 1.667 > 2 - 0.882
    tie = {"relu": [[0.1, 0.5, 0.5], [0.5, 0.5, 0.5], [0.1, 0.1, 0.5]],
           "ash": [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.1, 0.1, 0.5]]}
    ev = _result(tie, {"relu": 1.0, "ash": 0.9}).verdicts()[0]
    assert "ASH not earlier" in ev["evidence"] and ev["verdict"] == "mixed"


def test_samples_stored_as_grey_levels():
    from ashlib.experiments.ash_dcgan import from_uint8, to_uint8

    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 1.5])
    q = to_uint8(x)
    assert q.dtype == torch.uint8 and q.tolist() == [0, 64, 128, 255, 255, 255]
    assert torch.allclose(from_uint8(q), x.clamp(-1, 1), atol=1 / 255 + 1e-6)  # half a grey level (2 / 255)
    assert from_uint8(x) is x


def test_dcgan_verdict_similarity_needs_every_generator_at_the_bar():
    """Final distances within 1.5x, but ReLU below the bar at the end: not 'similar final quality'."""
    curves = {"relu": [[0.1, 0.2, 0.3]] * 3, "ash": [[0.1, 0.5, 0.5]] * 3}
    ev = _result(curves, {"relu": 1.0, "ash": 0.9}).verdicts()[0]
    assert "ratio 1.40: not similar: ReLU below the bar" in ev["evidence"]  # fd 7 vs 5
    assert "ASH earlier" in ev["evidence"] and ev["verdict"] == "mixed"
