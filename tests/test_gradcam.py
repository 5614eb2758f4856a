"""Grad-CAM on toy models whose answer is known by construction, and on a ResNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ashlib.analysis.gradcam import GradCAM, localisation, map_area, mass_inside, normalise_maps, pool_to_grid
from ashlib.models import PreActResNet


class QuadrantNet(nn.Module):
    """features: a fixed 1x1 conv (2 channels) of a 1-channel 4x4 image; class c's score is
    sum over the top-left 2x2 quadrant of W[c] * A[c] (nothing else reaches the logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
            self.features.bias.copy_(torch.tensor([0.5, 0.25]))
        self.register_buffer("W", torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.5], [2.0, 1.0]]]))

    def forward(self, x):
        a = self.features(x)
        return (a[:, :, :2, :2] * self.W).flatten(2).sum(2)


def _hand_gradcam(x: np.ndarray, target: int) -> np.ndarray:
    """Grad-CAM by hand for QuadrantNet: A_k = w_k x + b_k; dy_c/dA_k = W_c on the quadrant if k == c,
    0 elsewhere; alpha_k = mean over the 16 positions; map = ReLU(sum_k alpha_k A_k)."""
    w, b = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    W = np.array([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.5], [2.0, 1.0]]])
    A = w[:, None, None] * x[None] + b[:, None, None]
    alphas = np.zeros(2)
    alphas[target] = W[target].sum() / 16.0
    return np.maximum((alphas[:, None, None] * A).sum(0), 0.0)


@pytest.mark.parametrize("target", [0, 1])
def test_gradcam_matches_hand_computation(target):
    torch.manual_seed(0)
    net = QuadrantNet()
    x = torch.randn(3, 1, 4, 4)
    with GradCAM(net, net.features) as cam:
        maps = cam(x, target=target, upsample=False)
    for i in range(3):
        expected = _hand_gradcam(x[i, 0].numpy().astype(np.float64), target)
        np.testing.assert_allclose(cam.raw[i].numpy(), expected, rtol=1e-5, atol=1e-6)
        span = expected.max() - expected.min()
        norm = (expected - expected.min()) / span if span > 0 else np.zeros_like(expected)
        np.testing.assert_allclose(maps[i].numpy(), norm, rtol=1e-5, atol=1e-6)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1


def test_gradcam_localises_the_evidence():
    """A net that scores class 1 by the mean of a ReLU feature over the top-left quadrant only: with a
    bright blob in that quadrant, the map's mass lies there."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.ReLU())
            with torch.no_grad():
                self.features[0].weight.fill_(1.0 / 9)

        def forward(self, x):
            a = self.features(x)
            s = a[:, 0, :4, :4].mean((1, 2))
            return torch.stack([-s, s], 1)

    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 1:3, 1:3] = 1.0
    net = Net()
    with GradCAM(net, net.features) as cam:
        m = cam(x, target=1)
    mask = torch.zeros(1, 8, 8)
    mask[0, :4, :4] = 1
    assert float(mass_inside(m, mask)[0]) == pytest.approx(1.0)
    assert float(m[0, 1:3, 1:3].min()) > 0.5


def test_predicted_class_default_mode_restored_hooks_removed():
    torch.manual_seed(0)
    net = PreActResNet(8, "ash", widths=(4, 4, 8)).train()
    x = torch.randn(2, 3, 16, 16)
    cam = GradCAM(net, net.stage2)
    maps = cam(x)
    assert maps.shape == (2, 16, 16)
    assert net.training
    assert torch.equal(cam.target, net.eval()(x).argmax(1))
    assert cam.raw.shape == (2, 8, 8)
    cam.remove()
    assert not net.stage2._forward_hooks


def test_gradcam_errors():
    net = PreActResNet(8, "relu", widths=(4, 4, 8))
    with pytest.raises(ValueError):
        GradCAM(net, nn.Conv2d(1, 1, 1))
    with GradCAM(net, net.stage1) as cam, pytest.raises(ValueError):
        cam(torch.randn(2, 3, 16, 16), target=[0, 10])


def test_map_helpers():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.0]]])
    n = normalise_maps(maps)
    assert torch.allclose(n[0], torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]]))
    assert torch.equal(n[1], torch.zeros(2, 2))
    assert map_area(n).tolist() == [0.5, 0.0]
    mask = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]).expand(2, 2, 2)
    out = mass_inside(maps, mask)
    assert out[0] == pytest.approx(5 / 6) and out[1] == pytest.approx(0.5)


def test_pool_to_grid_and_localisation_by_hand():
    # an 8x8 map with all its mass in the top-left 4x4 block, a mask on the top-left quadrant's
    # left half (8 of the 16 pixels of that block)
    m = torch.zeros(1, 8, 8)
    m[0, :4, :4] = 2.0
    mask = torch.zeros(1, 8, 8)
    mask[0, :4, :2] = 1.0
    pooled = pool_to_grid(m, 2)
    assert torch.equal(pooled, torch.tensor([[[2.0, 0.0], [0.0, 0.0]]]))
    loc = localisation(m, mask, 2)
    # cell (0, 0) holds the whole map and is half covered by the object: energy 1/2; the object
    # covers 8/64 of the image; one cell of four: breadth 1/4
    assert float(loc["energy"][0]) == pytest.approx(0.5)
    assert float(loc["area"][0]) == pytest.approx(8 / 64)
    assert float(loc["breadth"][0]) == pytest.approx(0.25)
    # an even map: energy = the object's area share, breadth 1; an empty map: NaN
    even = localisation(torch.ones(1, 8, 8), mask, 2)
    assert float(even["energy"][0]) == pytest.approx(8 / 64) and float(even["breadth"][0]) == pytest.approx(1.0)
    assert torch.isnan(localisation(torch.zeros(1, 8, 8), mask, 2)["energy"]).all()
    with pytest.raises(ValueError, match="grid=3"):
        pool_to_grid(m, 3)


def test_localisation_does_not_depend_on_the_layer_resolution():
    """The same spatial pattern seen by a 16x16 and by a 4x4 layer gives the same statistics on a 4x4
    grid: maps of different layers are compared at one resolution, none is upsampled."""
    torch.manual_seed(0)
    coarse = torch.rand(3, 4, 4)
    fine = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)
    masks = (torch.rand(3, 32, 32) > 0.7).float()
    a, b = localisation(coarse, masks, 4), localisation(fine, masks, 4)
    for key in ("energy", "area", "breadth"):
        torch.testing.assert_close(a[key], b[key])
