"""DCGAN shapes and parameter counts; the Frechet distance against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

import ashlib
from ashlib.analysis.metrics import frechet_distance, frechet_distance_features, gaussian_stats, sqrtm_psd
from ashlib.models import DCGANDiscriminator, DCGANGenerator


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
