"""Property-based tests (hypothesis) of the limits and special cases the papers state."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ashlib
import ashlib.functional as AF

SETTINGS = settings(max_examples=40, deadline=None)
finite = st.floats(min_value=-50, max_value=50, allow_nan=False)


@SETTINGS
@given(xs=st.lists(st.floats(-20, 20, allow_nan=False), min_size=3, max_size=30),
       z=st.floats(-2, 2), seed=st.integers(0, 2**16))
def test_ash_tends_to_hard_ash_as_alpha_grows(xs, z, seed):
    x = torch.tensor([xs], dtype=torch.float64)
    mu, sigma = AF.map_statistics(x)
    t = mu + z * sigma
    hard = AF.hard_ash(x, z)
    # the convergence is pointwise away from the threshold: |ASH - hard| <= |x| exp(-2 alpha |x - t|)
    for alpha in (10.0, 1e3, 1e6):
        soft = AF.ash(x, z, alpha)
        bound = x.abs() * torch.exp(-2 * alpha * (x - t).abs())
        assert torch.all((soft - hard).abs() <= bound * (1 + 1e-9) + 1e-300)
    far = (x - t).abs() > 1e-3
    assert torch.allclose(AF.ash(x, z, 1e6)[far], hard[far], rtol=0, atol=1e-12)


@SETTINGS
@given(x=finite)
def test_adaptive_gumbel_alpha_one_is_sigmoid(x):
    t = torch.tensor([x], dtype=torch.float64)
    # independent reference: the logistic function written out
    ref = 1.0 / (1.0 + math.exp(-x))
    assert math.isclose(float(AF.adaptive_gumbel(t, 1.0)), ref, rel_tol=1e-14, abs_tol=0)


@SETTINGS
@given(x=finite, alpha=st.floats(1e-3, 100))
def test_adaptive_relu_logistic_is_swish_beta_alpha(x, alpha):
    t = torch.tensor([x], dtype=torch.float64)
    ref = x / (1.0 + math.exp(-alpha * x)) if alpha * x > -700 else 0.0
    got = float(AF.adaptive_relu(t, alpha, cdf="logistic"))
    assert got == float(AF.swish(t, alpha))
    assert math.isclose(got, ref, rel_tol=1e-13, abs_tol=1e-300)


@settings(max_examples=15, deadline=None)
@given(k=st.floats(0.02, 0.98), seed=st.integers(0, 2**16))
def test_fixed_ash_large_alpha_keeps_about_k(k, seed):
    g = torch.Generator().manual_seed(seed)
    n = 200_000
    x = torch.randn(1, n, generator=g, dtype=torch.float64)
    act = ashlib.FixedASH(k, alpha=1e4, learn_alpha=False)
    with torch.no_grad():
        kept = float((act(x.float()).abs() > 1e-6 * x.float().abs()).double().mean())
    # binomial standard error sqrt(k(1-k)/n) <= 0.0012, plus the estimation error of mu and sigma
    assert abs(kept - k) < 0.006, (k, kept)


@SETTINGS
@given(k=st.floats(0.01, 0.99), n=st.integers(1, 300), batch=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_topk_ash_keeps_exactly_round_kn(k, n, batch, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, generator=g) + 1.0  # shifted so that kept values are rarely exactly 0
    y = ashlib.TopKASH(k)(x)
    expected = round(k * n)
    kept_mask = y != 0
    assert (kept_mask.sum(dim=1) == expected).all()
    # the kept ones are the largest: every kept value >= every dropped value of that sample
    for row in range(batch):
        kept, dropped = x[row][kept_mask[row]], x[row][~kept_mask[row]]
        if len(kept) and len(dropped):
            assert kept.min() >= dropped.max()


def test_topk_ash_ties_and_layouts():
    x = torch.ones(2, 3, 4)  # all tied: still exactly round(k*n)
    assert ((AF.topk_ash(x, 0.25) != 0).sum(dim=(1, 2)) == 3).all()
    # dim=1 ranks within each channel column: hand-checked small case
    x = torch.tensor([[[1.0, 4.0], [3.0, 2.0]]])
    assert AF.topk_ash(x, 0.5, dim=1).tolist() == [[[0.0, 4.0], [3.0, 0.0]]]
