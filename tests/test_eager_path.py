"""The operators' direct eager route (a torch.autograd.Function around the same kernels).

In plain eager mode ``ashlib.functional`` runs the kernels of ``torch.ops.ashlib.*`` without the
dispatcher (``ashlib.ops._common.plain_eager``). These tests check that the route is taken only
there, that it computes what the operator computes (bit for bit: the same kernels) and what the
float64 reference computes, and that everything a user does with an activation's output still
works: in-place ops, gradients of gradients, saved-tensor hooks, checkpointing, inference mode.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ashlib.functional as AF
from ashlib import reference as R
from ashlib.ops import _common as C
from ashlib.ops import ash_family as FU
from ashlib.ops import elementwise as EW

from .reference import uses_operator


#: what :func:`_eager_class` returns for the C++ operator's node (ashlib_eager::ash)
CPP_ASH = "ashlib_eager::ASHFunction"
#: the two eager routes of ASH: the C++ operator where it takes the call, else the Python Function
ASH_EAGER = (CPP_ASH, FU._EagerASH)


def _eager_class(y: torch.Tensor):
    """The eager Function class behind y (through at most a view node or two; :data:`CPP_ASH`
    for the C++ operator's node), or None when y came through the dispatcher."""
    todo = [y.grad_fn]
    for _ in range(3):
        if not todo or todo[0] is None:
            return None
        fn = todo.pop(0)
        if CPP_ASH in fn.name():
            return CPP_ASH
        cls = getattr(fn, "_forward_cls", None)
        if cls is FU._EagerASH or cls in EW._EAGER.values():
            return cls
        if cls is not None:  # another Function (the operator's autograd wrapper)
            return None
        todo = [f for f, _ in fn.next_functions[:1]]
    return None


def _params(dtype=torch.float32):
    return (torch.tensor(0.4, dtype=dtype, requires_grad=True), torch.tensor(1.7, dtype=dtype, requires_grad=True))


CASES = [  # shape, dim, channels_last
    ((4, 3, 5, 6), None, False),
    ((4, 3, 5, 6), None, True),
    ((3, 7, 9), 1, False),
    ((3, 7, 9), -1, False),
    ((3, 7, 9), (0, 2), False),
    ((11,), None, False),
]


@pytest.mark.parametrize("shape,dim,cl", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
def test_eager_route_equals_the_operator_bit_for_bit(shape, dim, cl, dtype):
    """Same kernels: the eager Function and the dispatched operator give identical bits for the
    output and every gradient, in x's memory format."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    outs = []
    for route in ("eager", "operator"):
        xx = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        z, a = _params()
        if route == "operator":
            with torch.autograd.profiler.profile():  # a profiler makes every call go through the dispatcher
                y = AF.ash(xx, z, a, dim=dim)
                grads = torch.autograd.grad(y, (xx, z, a), g)
            assert _eager_class(y) is None and uses_operator(y, "ash")
        else:
            y = AF.ash(xx, z, a, dim=dim)
            assert _eager_class(y) in ASH_EAGER
            grads = torch.autograd.grad(y, (xx, z, a), g)
            assert grads[0].stride() == xx.stride()  # dL/dx in x's memory format too
        assert y.stride() == xx.stride()
        outs.append((y.detach(), [t.detach() for t in grads]))
    (y1, g1), (y2, g2) = outs
    assert torch.equal(y1, y2)
    for a_, b_ in zip(g1, g2):
        assert torch.equal(a_, b_)


@pytest.mark.parametrize("shape,dim,cl", CASES)
def test_eager_route_matches_the_float64_reference(shape, dim, cl):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    if cl:
        x = x.to(memory_format=torch.channels_last)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    xf = x.float().requires_grad_()
    z, a = _params()
    y = AF.ash(xf, z, a, dim=dim)
    assert _eager_class(y) in ASH_EAGER
    gx, gz, ga = torch.autograd.grad(y, (xf, z, a), g.float())
    xd = x.clone().requires_grad_()
    zd, ad = (p.detach().double().requires_grad_() for p in (z, a))
    yr = R.ash(xd, zd, ad, None, C.reduce_dims(xd, dim), 1e-5)
    rx, rz, ra = torch.autograd.grad(yr, (xd, zd, ad), g)
    scale = float(yr.abs().max())
    assert float((y.double() - yr).abs().max()) <= 1e-6 * scale
    assert float((gx.double() - rx).abs().max()) <= 1e-5 * float(rx.abs().max())
    assert abs(float(gz) - float(rz)) <= 1e-5 * abs(float(rz)) + 1e-6
    assert abs(float(ga) - float(ra)) <= 1e-5 * abs(float(ra)) + 1e-6


def test_leaky_ash_slope_gradient_on_the_eager_route():
    x = torch.randn(5, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z, a = _params()
    slope = torch.tensor(0.07, requires_grad=True)
    xf = x.float().requires_grad_()
    y = AF.leaky_ash(xf, z, a, slope)
    assert _eager_class(y) in ASH_EAGER
    gl, = torch.autograd.grad(y.sum(), slope)
    ld = slope.detach().double().requires_grad_()
    rl, = torch.autograd.grad(R.ash(x, z.detach().double(), a.detach().double(), ld, (1,), 1e-5).sum(), ld)
    assert abs(float(gl) - float(rl)) <= 1e-5 * abs(float(rl))


class _Seen(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_dispatch_modes_and_meta_tensors_get_the_operator():
    x = torch.randn(3, 8)
    with _Seen() as seen:
        AF.ash(x, 0.2, 1.0)
        AF.adaptive_gumbel(x, 1.5)
    assert any("ashlib.ash" in op for op in seen.ops), seen.ops
    assert any("ashlib.adaptive_gumbel" in op for op in seen.ops), seen.ops
    assert AF.ash(torch.empty(3, 8, device="meta"), 0.2, 1.0).device.type == "meta"
    assert not C.plain_eager(torch.empty(2), torch.nn.Parameter(torch.ones(1)).data.as_subclass(_Sub))


class _Sub(torch.Tensor):
    pass


def test_plain_eager_only_in_plain_eager_mode():
    x = torch.randn(2, 3)
    assert C.plain_eager(x, torch.nn.Parameter(torch.ones(())), None)
    with torch.autograd.profiler.profile():
        assert not C.plain_eager(x)
    with _Seen():
        assert not C.plain_eager(x)
    assert not C.plain_eager(x.as_subclass(_Sub))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_outputs_work_in_place_and_twice_differentiable(dtype):
    """float32 runs the native kernels on the eager route, float64 the ATen ones."""
    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    z, a = (p.detach().to(dtype).requires_grad_() for p in _params())
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    # in-place op on the output (the output is not a view of anything made in the forward)
    xx = x.to(dtype).requires_grad_()
    y = AF.ash(xx, z, a)
    assert _eager_class(y) in ASH_EAGER
    y.mul_(2.0)
    gx, = torch.autograd.grad(y.sum(), xx)
    xr = x.clone().requires_grad_()
    gr, = torch.autograd.grad((2 * R.ash(xr, z.detach().double(), a.detach().double(), None, (1, 2), 1e-5)).sum(), xr)
    assert float((gx.double() - gr).abs().max()) <= tol * float(gr.abs().max())
    # a gradient penalty: d/dalpha of |dL/dx|^2 against float64 central differences of dL/dx
    xx = x.to(dtype).requires_grad_()
    y = AF.ash(xx, z, a)
    assert _eager_class(y) in ASH_EAGER
    gx, = torch.autograd.grad(y.pow(2).sum(), xx, create_graph=True)
    pen, = torch.autograd.grad(gx.pow(2).sum(), a)
    h = 1e-6

    def penalty(av):
        xv = x.clone().requires_grad_()
        g1, = torch.autograd.grad(AF.ash(xv, z.detach().double(), torch.tensor(av, dtype=torch.float64)).pow(2).sum(),
                                  xv)
        return float(g1.pow(2).sum())
    fd = (penalty(float(a) + h) - penalty(float(a) - h)) / (2 * h)
    assert abs(float(pen) - fd) <= (1e-3 if dtype == torch.float32 else 1e-5) * abs(fd)


def test_saved_tensor_hooks_take_the_operator_and_see_the_input_and_statistics_only():
    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(6))
    xf = x.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        y = AF.ash(xf, *_params())
        assert _eager_class(y) is None  # (a checkpoint's recomputation must take the same route)
        y.sum().backward()
    # the input once; z, alpha, mu and sigma per sample and the exact-path flag
    assert max(saved) == x.numel() and sum(saved) <= x.numel() + 2 * 4 + 3


def test_checkpoint_inference_mode_and_no_grad():
    from torch.utils.checkpoint import checkpoint
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(7))
    z, a = _params()
    xx2 = x.clone().requires_grad_()
    g2, = torch.autograd.grad(AF.ash(xx2, z, a).sum(), xx2)
    for reentrant in (False, True):
        # a recomputation under a mode the forward did not have (a profiler or a dispatch mode
        # around the backward only) must take the forward's route
        for around_backward in (None, FlopCounterMode(display=False), torch.autograd.profiler.profile()):
            xx = x.clone().requires_grad_()
            y1 = checkpoint(lambda t: AF.ash(t, z, a), xx, use_reentrant=reentrant)
            if around_backward is None:
                y1.sum().backward()
            else:
                with around_backward:
                    y1.sum().backward()
            assert torch.equal(xx.grad, g2)
    with torch.inference_mode():
        yi = AF.ash(x, z, a)
    with torch.no_grad():
        yn = AF.ash(x, z, a)
    assert torch.equal(yi, yn) and torch.equal(yn, y1.detach())


@pytest.mark.parametrize("cl", [False, True], ids=["contiguous", "channels_last"])
@pytest.mark.parametrize("name", ["swish", "adaptive_relu", "adaptive_gumbel"])
def test_elementwise_eager_route_equals_the_operator(name, cl):
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(8))
    if cl:
        x = x.to(memory_format=torch.channels_last)
    p = torch.full((1, 3, 1, 1), 1.3, requires_grad=True)
    g = torch.randn_like(x)
    fn = getattr(AF, name)
    res = []
    for route in ("eager", "operator"):
        xx = x.clone(memory_format=torch.preserve_format).requires_grad_()
        if route == "operator":
            with torch.autograd.profiler.profile():
                y = fn(xx, p)
                grads = torch.autograd.grad(y, (xx, p), g)
            assert uses_operator(y, name) and _eager_class(y) is None
        else:
            y = fn(xx, p)
            assert _eager_class(y) is EW._EAGER[name]
            grads = torch.autograd.grad(y, (xx, p), g)
        assert y.stride() == xx.stride()
        if route == "eager":
            y.mul_(2.0).div_(2.0)  # in place on the output (a view of the Function's output when channels_last)
        res.append((y.detach(), grads))
    assert torch.equal(res[0][0], res[1][0])
    assert all(torch.equal(a_, b_) for a_, b_ in zip(res[0][1], res[1][1]))
