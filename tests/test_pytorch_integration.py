"""Every public activation module as a PyTorch user's model uses it.

A small Conv -> activation -> Conv model per module is run through the workflows people apply to
their models: torch.jit.trace, torch.export, torch.compile(fullgraph=True), the ONNX exporters
with onnxruntime, gradient penalties (second-order autograd) in float32 and float64, torch.func
(per-sample gradients with vmap(grad), jvp), in-place ops on the output, channels_last inputs,
empty batches and meta tensors. Each result is compared with an independent reference: the
eager model itself at other inputs, a loop over samples, float64 central differences. Every
registered operator also passes torch.library.opcheck.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import ashlib

MODULES = {
    "ASH": lambda: ashlib.ASH(k=0.3, alpha=1.5),
    "LeakyASH": lambda: ashlib.LeakyASH(k=0.3, slope=0.05),
    "FixedASH": lambda: ashlib.FixedASH(k=0.2),
    "HardASH": lambda: ashlib.HardASH(k=0.3),
    "TopKASH": lambda: ashlib.TopKASH(k=0.3),
    "AdaptiveGumbel": lambda: ashlib.AdaptiveGumbel(4, alpha=0.7),
    "AdaptiveReLU": lambda: ashlib.AdaptiveReLU(4, alpha=0.7),
    "Swish": lambda: ashlib.Swish(beta=1.3, learn_beta=True),
}
NAMES = sorted(MODULES)


def _model(name: str, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), MODULES[name](), nn.Conv2d(4, 2, 3, padding=1))
    # parameters away from their initial values, so that a path that ignores them shows
    with torch.no_grad():
        for p in m[1].parameters():
            p.add_(0.1)
    return m.to(dtype).eval()


def _x(seed: int = 1, n: int = 2, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(n, 3, 6, 6, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


@pytest.mark.parametrize("name", NAMES)
def test_jit_trace_matches_eager_on_new_inputs(name):
    m = _model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(m, _x(1))
    for seed in (1, 2):
        assert _close(traced(_x(seed)), m(_x(seed))), seed


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_matches_eager(name):
    m = _model(name)
    ep = torch.export.export(m, (_x(1),))
    assert _close(ep.module()(_x(2)), m(_x(2)))
    # the exported graph holds standard operations: it runs without ashlib's operators
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert not any("ashlib" in t for t in targets), targets


@pytest.mark.parametrize("name", NAMES)
def test_compile_fullgraph_forward_and_backward(name):
    torch._dynamo.reset()
    m = _model(name)
    cm = torch.compile(m, fullgraph=True)
    x1, x2 = _x(2).requires_grad_(), _x(2).requires_grad_()
    y1, y2 = cm(x1), m(x2)
    assert _close(y1, y2)
    (y1 ** 2).sum().backward()
    (y2 ** 2).sum().backward()
    assert _close(x1.grad, x2.grad, rtol=1e-4, atol=1e-5)


def _ort_run(path: str, x: torch.Tensor) -> torch.Tensor:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.parametrize("name", NAMES)
def test_onnx_dynamo_export_runs_in_onnxruntime(name, tmp_path):
    pytest.importorskip("onnxscript")
    m = _model(name)
    prog = torch.onnx.export(m, (_x(1),), dynamo=True, verbose=False)
    path = str(tmp_path / "m.onnx")
    prog.save(path)
    x = _x(2)
    assert _close(_ort_run(path, x), m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_onnx_legacy_export_runs_in_onnxruntime(name, tmp_path):
    """The TorchScript-based exporter traces the reference composite, built from operations it
    can export (tanh rather than expm1)."""
    m = _model(name)
    path = str(tmp_path / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (_x(1),), path, dynamo=False)
    x = _x(2)
    assert _close(_ort_run(path, x), m(x), rtol=1e-4, atol=1e-5)


def _gradient_penalty(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """||d <w, model(x)> / dx||^2, as in WGAN-GP and R1 (a gradient of a gradient)."""
    x = x.clone().requires_grad_()
    out = m(x)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    g, = torch.autograd.grad((out * w).sum(), x, create_graph=True)
    return g.pow(2).sum()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-6), (torch.float32, 1e-4)], ids=["float64", "float32"])
def test_gradient_penalty_matches_central_differences(name, dtype, rtol):
    m = _model(name, dtype)
    x = _x(3, dtype=dtype)
    params = list(m.parameters())
    grads = torch.autograd.grad(_gradient_penalty(m, x), params, allow_unused=True)
    # d/dh GP(W + h*D) at h = 0 by float64 central differences along a random direction D
    m64 = _model(name, torch.float64)
    gen = torch.Generator().manual_seed(5)
    dirs = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in m64.parameters()]

    def gp_at(h: float) -> float:
        with torch.no_grad():
            for p, p0, d in zip(m64.parameters(), params, dirs):
                p.copy_(p0.detach().double() + h * d)
        return float(_gradient_penalty(m64, x.double()))

    h = 1e-5
    fd = (gp_at(h) - gp_at(-h)) / (2 * h)
    an = sum(float((g.double() * d).sum()) for g, d in zip(grads, dirs) if g is not None)
    assert abs(an - fd) <= rtol * max(1.0, abs(fd)), (an, fd)


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_gradients_with_vmap_grad_match_a_loop(name):
    from torch.func import functional_call, grad, vmap
    m = _model(name)
    x = _x(4, n=3)
    params = {k: v.detach() for k, v in m.named_parameters()}

    def loss(p, xi):
        return functional_call(m, p, (xi.unsqueeze(0),)).pow(2).sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x)
    for i in range(3):
        loop = torch.autograd.grad(m(x[i:i + 1]).pow(2).sum(), list(m.parameters()))
        for (key, _), g in zip(m.named_parameters(), loop):
            assert _close(per_sample[key][i], g, rtol=1e-4, atol=1e-5), (key, i)


@pytest.mark.parametrize("name", NAMES)
def test_jvp_matches_central_differences(name):
    from torch.func import jvp
    m = _model(name)
    x = _x(5)
    t = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))
    _, tangent = jvp(m, (x,), (t,))
    m64, h = _model(name, torch.float64), 1e-6
    fd = (m64(x.double() + h * t.double()) - m64(x.double() - h * t.double())) / (2 * h)
    assert bool(tangent.abs().max() > 0)
    assert _close(tangent.double(), fd, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_in_place_ops_on_the_output(name):
    act = MODULES[name]()
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    y = act(x)
    y += 1  # as nn.Dropout(inplace=True) or a residual `out += identity` does
    y.mul_(2).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    (2 * (act(x2) + 1)).sum().backward()
    assert _close(x.grad, x2.grad)


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_in_channels_last_out(name):
    act = MODULES[name]()
    x = torch.randn(2, 4, 5, 5)
    xc = x.to(memory_format=torch.channels_last)
    y = act(xc)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert _close(y, act(x))


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_and_meta_tensors(name):
    act = MODULES[name]()
    x = torch.randn(0, 4, 5, 5, requires_grad=True)
    y = act(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad.shape == x.shape
    ym = act(torch.empty(2, 4, 5, 5, device="meta"))
    assert ym.device.type == "meta" and ym.shape == (2, 4, 5, 5)


def test_outputs_are_fresh_tensors():
    x = torch.randn(2, 4, 5, 5)
    for name in NAMES:
        y = MODULES[name]()(x)
        assert y.data_ptr() != x.data_ptr(), name


def _op_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, generator=g, requires_grad=True)
    x64 = x.detach().double().requires_grad_()

    def p(v, dtype=torch.float32, shape=()):
        return torch.full(shape, v, dtype=dtype, requires_grad=True)

    stats = (torch.zeros(3, 1, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64))
    ops = torch.ops.ashlib
    return {
        "ash": (ops.ash.default, (x, p(0.3), p(1.5), None, 1e-5)),
        "leaky_ash": (ops.ash.default, (x, p(0.3), p(1.5), p(0.05), 1e-5)),
        "ash_float64": (ops.ash.default, (x64, p(0.3, torch.float64), p(1.5, torch.float64), None, 1e-5)),
        "ash_backward": (ops.ash_backward.default, (torch.randn(3, 20, generator=g), x.detach(), p(0.3).detach(),
                                                    p(1.5).detach(), None, *stats, torch.tensor(False), 1e-5,
                                                    [True, True, True, False])),
        "hard_ash": (ops.hard_ash.default, (x, torch.tensor(0.3), 1e-5)),
        "topk_ash": (ops.topk_ash.default, (x, 5)),
        "adaptive_gumbel": (ops.adaptive_gumbel.default, (x, p(0.7, shape=(1, 20)))),
        "adaptive_relu": (ops.adaptive_relu.default, (x, p(0.7))),
        "swish": (ops.swish.default, (x, p(1.3))),
        "adaptive_gumbel_backward": (ops.adaptive_gumbel_backward.default,
                                     (torch.randn(3, 20, generator=g), x.detach(), torch.tensor(0.7), [True, True])),
        "adaptive_relu_backward": (ops.adaptive_relu_backward.default,
                                   (torch.randn(3, 20, generator=g), x.detach(), torch.tensor(0.7), [True, True])),
        "swish_backward": (ops.swish_backward.default,
                           (torch.randn(3, 20, generator=g), x.detach(), torch.tensor(1.3), [True, True])),
    }


@pytest.mark.parametrize("case", sorted(_op_cases()))
def test_opcheck_every_operator(case):
    op, args = _op_cases()[case]
    torch.library.opcheck(op, args)


def test_every_ashlib_operator_is_opchecked():
    names = {c.rsplit("_float64", 1)[0] for c in _op_cases()} | {"ash"}
    registered = {n for n in dir(torch.ops.ashlib) if not n.startswith("_") and
                  isinstance(getattr(torch.ops.ashlib, n), torch._ops.OpOverloadPacket)}
    assert registered <= names | {"ash"}, registered - names
