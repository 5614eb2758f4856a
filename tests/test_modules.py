"""Modules: parameters, persistence, copies, torch.compile, CUDA, the registry and replacement."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

import ashlib
import ashlib.functional as AF

PARAMETRIC = {
    "ash": lambda: ashlib.ASH(k=0.2, alpha=1.5),
    "leaky-ash": lambda: ashlib.LeakyASH(k=0.3, alpha=0.7, slope=0.05),
    "fixed-ash": lambda: ashlib.FixedASH(0.1, alpha=2.0),
    "agumbel": lambda: ashlib.AdaptiveGumbel(num_parameters=4, alpha=0.5),
    "arelu": lambda: ashlib.AdaptiveReLU(num_parameters=4, alpha=3.0),
    "arelu-logistic": lambda: ashlib.AdaptiveReLU(num_parameters=1, alpha=2.0, cdf="logistic"),
    "swish": lambda: ashlib.Swish(beta=1.3, learn_beta=True),
}


def _perturb(m: nn.Module) -> None:
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.linspace(0.1, 0.3, p.numel()).reshape(p.shape))


def test_constructor_values_are_the_papers_quantities():
    a = ashlib.ASH(k=0.025, alpha=2.0)
    assert math.isclose(a.z, 1.959963984540054, rel_tol=1e-6)
    assert math.isclose(a.k, 0.025, rel_tol=1e-5)
    assert math.isclose(a.alpha, 2.0, rel_tol=1e-6)
    assert math.isclose(ashlib.LeakyASH(slope=0.2).slope, 0.2, rel_tol=1e-6)
    g = ashlib.AdaptiveGumbel(num_parameters=3, alpha=0.5)
    assert torch.allclose(g.alpha, torch.full((3,), 0.5))
    assert ashlib.AdaptiveGumbel(alpha=0.25).alpha == pytest.approx(0.25)
    # positive parameters live on a log scale; z is stored as is
    assert {n for n, _ in ashlib.ASH().named_parameters()} == {"z_param", "log_alpha"}
    assert {n for n, _ in ashlib.ASH(learn_alpha=False).named_parameters()} == {"z_param"}
    assert {n for n, _ in ashlib.FixedASH(0.3).named_parameters()} == {"log_alpha"}
    assert "k=0.025" in repr(a) and "alpha=2" in repr(a)
    assert "num_parameters=3" in repr(g)


def test_modules_match_functional():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    assert torch.allclose(ashlib.ASH(k=0.2, alpha=1.5).double()(x), AF.ash(x, AF.z_from_k(0.2), 1.5))
    assert torch.allclose(ashlib.FixedASH(0.1).double()(x), AF.ash(x, AF.z_from_k(0.1), 1.0))
    assert torch.allclose(ashlib.LeakyASH(k=0.3, slope=0.05).double()(x),
                          AF.leaky_ash(x, AF.z_from_k(0.3), 1.0, 0.05))
    alphas = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    g = ashlib.AdaptiveGumbel(num_parameters=4).double()
    with torch.no_grad():
        g.log_alpha.copy_(alphas.log())
    for c in range(4):  # channel c uses alpha[c]
        assert torch.allclose(g(x)[:, c], AF.adaptive_gumbel(x[:, c], float(alphas[c])))


@pytest.mark.parametrize("name", sorted(PARAMETRIC))
def test_state_dict_roundtrip_and_deepcopy(name):
    m = PARAMETRIC[name]()
    _perturb(m)
    x = torch.randn(2, 4, 5)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = PARAMETRIC[name]()
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh(x), m(x))
    clone = copy.deepcopy(m)
    assert torch.equal(clone(x), m(x))
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(1.0)
    if list(m.parameters()):
        assert not torch.equal(clone(x), m(x))  # the copy owns its own parameters


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ash", "leaky-ash", "agumbel", "arelu"])
def test_torch_compile_forward_and_backward_equal_eager(name):
    torch._dynamo.reset()
    m = PARAMETRIC[name]()
    _perturb(m)
    x = torch.randn(3, 4, 6, 6)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    ye = m(xe)
    ye.square().sum().backward()
    grads_e = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    compiled = torch.compile(m, backend="inductor")
    yc = compiled(xc)
    yc.square().sum().backward()
    grads_c = [p.grad.clone() for p in m.parameters()]
    assert torch.allclose(yc, ye, rtol=1e-5, atol=1e-6)
    assert torch.allclose(xc.grad, xe.grad, rtol=1e-4, atol=1e-6)
    for ge, gc in zip(grads_e, grads_c):
        assert torch.allclose(gc, ge, rtol=1e-4, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", sorted(PARAMETRIC))
def test_cuda_matches_cpu(name):
    m = PARAMETRIC[name]()
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    ref = m.double()(x)
    got = m.cuda()(x.cuda()).cpu()
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                                      nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.parametrize("new", ["ash", "leaky-ash", "agumbel", "arelu", "fixed-ash-20"])
def test_replace_activations_swaps_every_relu_and_trains_each_site(new):
    torch.manual_seed(0)
    net = SmallCNN()
    n = ashlib.replace_activations(net, new)
    assert n == 3
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    acts = [m for m in net.modules() if type(m).__module__ == "ashlib.modules"]
    assert len(acts) == 3 and len({id(a) for a in acts}) == 3
    before = [[p.detach().clone() for p in a.parameters()] for a in acts]
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    after = [[p.detach().clone() for p in a.parameters()] for a in acts]
    deltas = []
    for b, a in zip(before, after):
        for pb, pa in zip(b, a):
            assert not torch.equal(pb, pa), f"{new}: a site's parameter did not move"
            deltas.append((pa - pb).flatten())
    # each site moved by its own gradient: no two sites share an update
    for i in range(len(deltas)):
        for j in range(i + 1, len(deltas)):
            if deltas[i].shape == deltas[j].shape:
                assert not torch.allclose(deltas[i], deltas[j])


def test_registry_names_and_percent_forms():
    for name in ashlib.activation_names():
        if "<" in name:
            continue
        kwargs = {"num_parameters": 1} if name in ashlib.registry.PER_CHANNEL else {}
        m = ashlib.get_activation(name, **kwargs)
        assert isinstance(m, nn.Module)
        assert m(torch.randn(2, 3, 4)).shape == (2, 3, 4)
    f = ashlib.get_activation("fixed-ash-10")
    assert isinstance(f, ashlib.FixedASH) and f.k == pytest.approx(0.1)
    t = ashlib.get_activation("topk-ash-2.5")
    assert isinstance(t, ashlib.TopKASH) and t.k == pytest.approx(0.025)
    assert ashlib.get_activation("ash", k=0.3).k == pytest.approx(0.3, rel=1e-6)
    assert ashlib.get_activation("arelu-logistic").cdf == "logistic"
    assert ashlib.get_activation("agumbel") is not ashlib.get_activation("agumbel")


def test_act_layer_is_timm_compatible():
    act_layer = ashlib.get_act_layer("ash", k=0.2)
    a, b = act_layer(inplace=True), act_layer()
    assert isinstance(a, ashlib.ASH) and a is not b and a.k == pytest.approx(0.2, rel=1e-6)
    # a model written for act_layer=nn.ReLU works unchanged
    block = nn.Sequential(nn.Linear(4, 4), act_layer(inplace=True))
    assert block(torch.randn(2, 4)).shape == (2, 4)
    assert isinstance(ashlib.get_act_layer("relu")(inplace=True), nn.ReLU)
