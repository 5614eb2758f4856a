"""Finite outputs and gradients at the edges: constant maps, zeros, huge inputs, half precision."""

from __future__ import annotations

import pytest
import torch

import ashlib
import ashlib.functional as AF

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def _ops():
    return {
        "ash": lambda x: AF.ash(x, 0.5, 2.0),
        "leaky_ash": lambda x: AF.leaky_ash(x, -0.3, 1.0, 0.1),
        "hard_ash": lambda x: AF.hard_ash(x, 1.0),
        "topk_ash": lambda x: AF.topk_ash(x, 0.3),
        "adaptive_gumbel": lambda x: AF.adaptive_gumbel(x, 0.3),
        "adaptive_relu": lambda x: AF.adaptive_relu(x, 2.0),
        "adaptive_relu_logistic": lambda x: AF.adaptive_relu(x, 2.0, cdf="logistic"),
        "swish": lambda x: AF.swish(x, 1.0),
        "ASH": ashlib.ASH(k=0.1),
        "LeakyASH": ashlib.LeakyASH(k=0.1),
        "AdaptiveGumbel": ashlib.AdaptiveGumbel(alpha=1e-3),
        "AdaptiveReLU": ashlib.AdaptiveReLU(alpha=1e3),
    }


def _inputs(dtype):
    fi = torch.finfo(dtype)
    g = torch.Generator().manual_seed(0)
    return {
        "constant": torch.full((2, 3, 4), 1.7, dtype=dtype),
        "zeros": torch.zeros(2, 3, 4, dtype=dtype),
        "huge": torch.tensor([[fi.max, -fi.max, fi.max / 2, 0.0, 1.0, -1.0]], dtype=dtype),
        "huge_same_sign": torch.full((1, 5), fi.max, dtype=dtype),
        "tiny": torch.tensor([[fi.tiny, -fi.tiny, 0.0, 2 * fi.tiny]], dtype=dtype),
        "mixed_scales": torch.tensor([[fi.max / 4, fi.tiny, -1e-3, 3.0]], dtype=dtype),
        "random": torch.randn(3, 4, 5, generator=g).to(dtype),
        "one_element": torch.tensor([[2.5]], dtype=dtype),
    }


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_finite_outputs_and_gradients(dtype):
    bad = []
    for op_name, op in _ops().items():
        if isinstance(op, torch.nn.Module) and dtype == torch.float64:
            op.double()  # float32 parameters cannot hold gradients of float64-sized maps
        for in_name, x0 in _inputs(dtype).items():
            x = x0.clone().requires_grad_(True)
            y = op(x)
            assert y.dtype == dtype and y.shape == x.shape, (op_name, in_name)
            if not torch.isfinite(y).all():
                bad.append(f"{op_name}/{in_name}: output {y}")
                continue
            # (y / n).sum(), not y.sum(): a sum of max-sized values overflows for real
            (y.double() / y.numel()).sum().backward()
            if x.grad is None or not torch.isfinite(x.grad).all():
                bad.append(f"{op_name}/{in_name}: grad {x.grad}")
            if isinstance(op, torch.nn.Module):
                for pn, p in op.named_parameters():
                    if p.grad is not None and not torch.isfinite(p.grad).all():
                        bad.append(f"{op_name}/{in_name}: grad of {pn} {p.grad}")
                op.zero_grad()
    assert not bad, "\n".join(bad[:20])


def test_constant_map_hand_computed():
    # sigma = sqrt(0 + eps): a constant map c sits at mu, so ASH(z=0) gives c * S(0) = c/2
    x = torch.full((1, 10), 3.0, dtype=torch.float64)
    assert torch.allclose(AF.ash(x, 0.0, 1.0), torch.full_like(x, 1.5))
    # with z = 1 the threshold is c + sqrt(eps): output c * S(-2*sqrt(1e-5))
    expected = 3.0 / (1 + torch.exp(torch.tensor(2 * 1e-5 ** 0.5, dtype=torch.float64)))
    assert torch.allclose(AF.ash(x, 1.0, 1.0), expected.expand_as(x), rtol=1e-14)
    # hard ASH on a constant map: x >= mu (z=0) keeps everything, z=1 drops everything
    assert torch.equal(AF.hard_ash(x, 0.0), x)
    assert torch.equal(AF.hard_ash(x, 1.0), torch.zeros_like(x))


def test_statistics_are_per_sample_over_non_batch_dims():
    # hand-computed: sample 0 = [0, 2] (mu 1, var 1), sample 1 = [10, 10] (mu 10, var 0)
    x = torch.tensor([[[0.0], [2.0]], [[10.0], [10.0]]], dtype=torch.float64)
    mu, sigma = AF.map_statistics(x, eps=0.0)
    assert mu.flatten().tolist() == [1.0, 10.0]
    assert sigma.flatten().tolist() == [1.0, 0.0]
    # 1-D input: statistics over everything
    mu1, s1 = AF.map_statistics(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64), eps=0.0)
    assert float(mu1) == 2.5 and abs(float(s1) - 1.25 ** 0.5) < 1e-15
    # dim argument: statistics along the last dim only
    m2, _ = AF.map_statistics(torch.tensor([[1.0, 3.0], [5.0, 9.0]], dtype=torch.float64), dim=-1)
    assert m2.flatten().tolist() == [2.0, 7.0]


def test_huge_map_statistics_do_not_overflow():
    big = torch.finfo(torch.float64).max
    x = torch.tensor([[big, -big]], dtype=torch.float64)
    mu, sigma = AF.map_statistics(x)
    assert float(mu) == 0.0 and float(sigma) == big
    # ASH keeps +max (far above mu + 0*sigma) and drops -max exactly
    y = AF.ash(x, 0.0, 1.0)
    assert y.tolist() == [[big, -0.0]] or y.tolist() == [[big, 0.0]]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_close_to_float64(dtype):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 64, generator=g, dtype=torch.float64)
    xh = x.to(dtype)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    for fn in (lambda v: AF.ash(v, 0.7, 3.0), lambda v: AF.adaptive_gumbel(v, 0.4),
               lambda v: AF.adaptive_relu(v, 2.0), lambda v: AF.leaky_ash(v, 0.1, 1.0, 0.2)):
        ref = fn(xh.double())
        got = fn(xh).double()
        assert torch.allclose(got, ref, rtol=tol, atol=tol), (dtype, (got - ref).abs().max())
