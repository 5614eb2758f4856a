"""Pre-activation ResNets and WRN: shapes for every activation, published parameter counts,
per-site activation modules, shortcuts; the procedural shapes data; the activity metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ashlib
from ashlib import modules as M
from ashlib.data import load_shapes, make_shapes
from ashlib.analysis.metrics import active_fractions, ash_thresholds
from ashlib.models import PreActResNet, WideResNet, activation_sites, resnet20, resnet56, resnet110, resnet164, wrn28_10


def _names() -> list[str]:
    out = []
    for name in ashlib.activation_names():
        out.append(name.replace("<k%>", "10") if "<k%>" in name else name)
    return out


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("act", _names())
def test_resnet_and_wrn_shapes_for_every_activation(act):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    basic = PreActResNet(8, act, widths=(4, 8, 8))
    bottleneck = PreActResNet(11, act, block="bottleneck", widths=(2, 2, 4), num_classes=5)
    wide = WideResNet(10, 1, act, num_classes=3)
    assert basic(x).shape == (2, 10)
    assert bottleneck(x).shape == (2, 5)
    assert wide(x).shape == (2, 3)
    for net in (basic, bottleneck, wide):
        out = net(x)
        assert torch.isfinite(out).all()
        out.sum().backward()


def test_each_site_gets_its_own_module_and_per_channel_parameters():
    net = PreActResNet(8, "agumbel", widths=(4, 8, 16))
    sites = activation_sites(net)
    # basic units: 2 sites each, 3 units, plus the final one
    assert len(sites) == 7
    assert len({id(m) for _, m in sites}) == 7
    # the first site of unit 1 sees the 4 stem channels; the final one the 16 channels of stage 3
    assert sites[0][1].log_alpha.numel() == 4
    assert sites[-1][1].log_alpha.numel() == 16
    ash = PreActResNet(8, "ash", widths=(4, 8, 16))
    params = [m.z_param for _, m in activation_sites(ash)]
    assert len({p.data_ptr() for p in params}) == 7


# Published counts. He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (CVPR 2016,
# arXiv:1512.03385), Table 6 (CIFAR-10): ResNet-20 0.27M, ResNet-56 0.85M, ResNet-110 1.7M (option A
# shortcuts). He et al., "Identity Mappings in Deep Residual Networks" (ECCV 2016, arXiv:1603.05027),
# Table 3 (CIFAR): pre-activation ResNet-164 (bottleneck) 1.7M. Zagoruyko and Komodakis, "Wide Residual
# Networks" (BMVC 2016, arXiv:1605.07146), Table 1 / Table 4: WRN-28-10 36.5M. Each comparison is at the
# precision the table prints. (The pre-activation nets put BN before each conv instead of after, which
# changes the count by a few thousand BN parameters: below that precision.)
@pytest.mark.parametrize("build, published, unit", [
    (resnet20, 0.27, 1e4), (resnet56, 0.85, 1e4), (resnet110, 1.7, 1e5), (resnet164, 1.7, 1e5),
    (wrn28_10, 36.5, 1e5),
])
def test_published_parameter_counts(build, published, unit):
    n = _count(build())
    digits = 2 if unit == 1e4 else 1
    assert round(round(n / unit) * unit / 1e6, digits) == published, n


def _bn(c):  # weight and bias
    return 2 * c


def test_resnet20_count_by_hand():
    """Count ResNet-20 (pre-activation, option A) from its layer list, independently of the model code."""
    n, total, cin = 3, 3 * 16 * 9, 16  # stem
    for w in (16, 32, 64):
        for j in range(n):
            total += _bn(cin) + cin * w * 9 + _bn(w) + w * w * 9
            cin = w
    total += _bn(64) + 64 * 10 + 10
    assert _count(resnet20()) == total == 269_722


def test_resnet164_count_by_hand():
    n, total, cin = 18, 3 * 16 * 9, 16
    for w in (16, 32, 64):
        for j in range(n):
            total += _bn(cin) + cin * w + _bn(w) + w * w * 9 + _bn(w) + w * 4 * w
            if j == 0:
                total += cin * 4 * w  # 1x1 projection
            cin = 4 * w
    total += _bn(256) + 256 * 10 + 10
    assert _count(resnet164()) == total


def test_option_a_shortcut_pads_with_zeros():
    net = PreActResNet(8, "identity", widths=(2, 4, 4))
    unit = net.stage2[0]
    x = torch.randn(1, 2, 8, 8)
    sc = unit.shortcut(x)
    assert sc.shape == (1, 4, 4, 4)
    assert torch.equal(sc[:, :2], x[:, :, ::2, ::2])
    assert torch.count_nonzero(sc[:, 2:]) == 0


@pytest.mark.parametrize("kwargs", [dict(depth=21), dict(depth=12, block="bottleneck"), dict(widths=(4, 4)),
                                    dict(block="dense"), dict(shortcut="C"), dict(stem_stride=3)])
def test_bad_resnet_arguments(kwargs):
    args = dict(depth=8)
    args.update(kwargs)
    with pytest.raises(ValueError):
        PreActResNet(**args)


def test_bad_wrn_arguments():
    with pytest.raises(ValueError):
        WideResNet(27, 10)
    with pytest.raises(ValueError):
        WideResNet(28, 0)


def test_shapes_data_is_deterministic_balanced_and_masked():
    a = make_shapes(50, 16, seed=3, return_masks=True)
    b = make_shapes(50, 16, seed=3, return_masks=True)
    c = make_shapes(50, 16, seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    images, labels, masks = a
    assert images.dtype == torch.uint8 and images.shape == (50, 3, 16, 16)
    assert torch.bincount(labels, minlength=10).tolist() == [5] * 10
    assert masks.shape == (50, 16, 16) and 0 <= float(masks.min()) and float(masks.max()) <= 1
    # every object covers a visible part of the image, and never the whole image
    cover = masks.flatten(1).mean(1)
    assert float(cover.min()) > 0.02 and float(cover.max()) < 0.9
    tr, te = load_shapes(20, 10, 16)
    x, y = tr[torch.arange(4)]
    assert x.dtype == torch.float32 and x.shape == (4, 3, 16, 16) and len(te) == 10


def test_shapes_mask_area_matches_geometry():
    """A disk of radius r (in half-image units) covers pi r^2 / 4 of the image; the square of half-side
    0.62 r / 0.8 covers (2 * 0.62 r / 0.8)^2 / 4."""
    from ashlib.data.shapes import _shape_masks

    r = torch.full((2,), 0.5)
    m = _shape_masks(torch.tensor([0, 2]), torch.zeros(2, 2), r, torch.zeros(2), 128)
    area = m.flatten(1).mean(1)
    assert abs(float(area[0]) - math.pi * 0.25 / 4) < 2e-3
    assert abs(float(area[1]) - (2 * 0.62 * 0.5 / 0.8) ** 2 / 4) < 2e-3


@pytest.mark.parametrize("bad", [dict(n=0), dict(image_size=4), dict(noise=-1.0), dict(contrast=(0.5, 0.2)),
                                 dict(object_radius=(0.0, 0.5))])
def test_shapes_bad_arguments(bad):
    args = dict(n=4, image_size=16)
    args.update(bad)
    with pytest.raises(ValueError):
        make_shapes(**args)


def test_active_fractions_match_the_gate_on_normal_inputs():
    """On standard normal maps a fixed-z ASH passes about 1 - Phi(z) of the inputs and ReLU about half;
    the hook measures the gate (x above the threshold), not the output."""
    torch.manual_seed(0)
    for k in (0.1, 0.5, 0.9):
        net = nn.Sequential(nn.Identity(), M.FixedASH(k), nn.Flatten(), nn.Linear(4096, 2))
        rows = active_fractions(net, torch.randn(64, 4, 32, 32), per_sample=True)
        assert len(rows) == 1 and rows[0]["kind"] == "FixedASH"
        assert abs(rows[0]["active"] - k) < 0.01
        assert rows[0]["sd_over_samples"] < 0.02
    relu = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    assert abs(active_fractions(relu, torch.randn(4096, 16))[0]["active"] - 0.5) < 0.02


def test_ash_thresholds_report_z_k_alpha_in_forward_order():
    net = PreActResNet(8, "ash", widths=(2, 4, 4))
    with torch.no_grad():
        for i, (_, m) in enumerate(activation_sites(net)):
            m.z_param.fill_(0.1 * i)
    rows = ash_thresholds(net)
    assert [r["site"] for r in rows] == list(range(7))
    assert rows[0]["depth"] == 0.0 and rows[-1]["depth"] == 1.0
    for i, r in enumerate(rows):
        assert abs(r["z"] - 0.1 * i) < 1e-6
        assert abs(r["k"] - 0.5 * math.erfc(0.1 * i / math.sqrt(2))) < 1e-6
        assert abs(r["alpha"] - 1.0) < 1e-6
