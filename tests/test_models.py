"""Output shapes of MLP and LeNet5 for every registry activation; one module per site."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ashlib
from ashlib.models import LeNet5, MLP, adaptive_alphas, make_activation
from ashlib.registry import PER_CHANNEL


def all_names() -> list[str]:
    # the percentage templates are listed as "<prefix>-<k%>": instantiate one k each
    return [n.replace("<k%>", "10") for n in ashlib.activation_names()]


@pytest.mark.parametrize("name", all_names())
def test_mlp_every_activation(name):
    torch.manual_seed(0)
    m = MLP(7, 3, width=6, depth=2, act=name)
    y = m(torch.randn(4, 7))
    assert y.shape == (4, 3) and torch.isfinite(y).all()
    acts = m.activations
    assert len(acts) == 2 and acts[0] is not acts[1]
    if name in PER_CHANNEL:
        assert all(a.num_parameters == 6 for a in acts)


@pytest.mark.parametrize("name", all_names())
@pytest.mark.parametrize("size", [28, 32])
def test_lenet_every_activation(name, size):
    torch.manual_seed(0)
    m = LeNet5(name, name, batch_norm=(size == 28), fc_width=12, channels=(4, 6), input_size=size)
    y = m(torch.randn(3, 1, size, size))
    assert y.shape == (3, 10) and torch.isfinite(y).all()
    act_modules = [mod for mod in m.modules() if type(mod).__module__ in ("ashlib.modules", "torch.nn.modules.activation")]
    assert len({id(a) for a in act_modules}) == len(act_modules)
    if name in PER_CHANNEL:
        sizes = sorted(a.num_parameters for a in act_modules)
        assert sizes == [4, 6, 12]


def test_lenet_flatten_sizes_and_rgb():
    # 28: (28-4)/2 = 12, (12-4)/2 = 4 -> 50*4*4 = 800; 32: (32-4)/2 = 14, (14-4)/2 = 5 -> 1250
    assert LeNet5(input_size=28).classifier[1].in_features == 800
    assert LeNet5(input_size=32).classifier[1].in_features == 1250
    m = LeNet5("relu", "agumbel", in_channels=3, input_size=32, num_classes=100, fc_width=1000)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ValueError, match="input_size"):
        LeNet5(input_size=30)


def test_lenet_separate_conv_and_fc_activations():
    m = LeNet5("agumbel", "arelu", batch_norm=True, fc_width=10)
    kinds = [type(x).__name__ for x in m.modules() if type(x).__name__ in ("AdaptiveGumbel", "AdaptiveReLU")]
    assert kinds == ["AdaptiveGumbel", "AdaptiveGumbel", "AdaptiveReLU"]
    assert any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert list(adaptive_alphas(m)) == ["features.2", "features.6", "classifier.3"]


def test_mlp_per_layer_activations_and_factories():
    m = MLP(3, 1, width=[5, 4], act=["sigmoid", ashlib.AdaptiveGumbel])
    assert isinstance(m.activations[0], nn.Sigmoid)
    assert m.activations[1].num_parameters == 4  # the factory accepts num_parameters: one per neuron
    m2 = MLP(3, 1, width=5, depth=1, act=nn.ReLU)
    assert isinstance(m2.activations[0], nn.ReLU)
    m3 = MLP(3, 1, width=5, depth=1, act="agumbel", per_neuron=False)
    assert m3.activations[0].num_parameters == 1
    with pytest.raises(ValueError, match="activation sites"):
        MLP(3, 1, width=5, depth=3, act=["relu", "relu"])
    with pytest.raises(ValueError):
        MLP(3, 1, act="no-such-activation")


def test_lecun_init_scale():
    torch.manual_seed(0)
    m = MLP(400, 1, width=400, depth=1, act="relu")
    w = m.net[0].weight
    assert float(w.detach().std()) == pytest.approx(1 / 400 ** 0.5, rel=0.02)
    assert float(m.net[0].bias.detach().abs().max()) == 0.0


def test_make_activation_rejects_non_module():
    with pytest.raises(ValueError, match="nn.Module"):
        make_activation(lambda: 3)
