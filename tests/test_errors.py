"""Bad arguments raise ValueError naming the argument, its value and the allowed range."""

from __future__ import annotations

import re

import pytest
import torch

import ashlib
import ashlib.functional as AF

CASES = [
    # (callable, argument name, shown value, words of the allowed range)
    (lambda: ashlib.ASH(k=0.0), "k", "0.0", "(0, 1)"),
    (lambda: ashlib.ASH(k=1.0), "k", "1.0", "(0, 1)"),
    (lambda: ashlib.ASH(k=1.5), "k", "1.5", "(0, 1)"),
    (lambda: ashlib.FixedASH(k=-0.1), "k", "-0.1", "(0, 1)"),
    (lambda: ashlib.TopKASH(k=2), "k", "2", "(0, 1)"),
    (lambda: AF.z_from_k(0.0), "k", "0.0", "(0, 1)"),
    (lambda: AF.topk_ash(torch.randn(2, 3), 1.0), "k", "1.0", "(0, 1)"),
    (lambda: ashlib.ASH(alpha=0.0), "alpha", "0.0", "> 0"),
    (lambda: ashlib.ASH(alpha=-1.0), "alpha", "-1.0", "> 0"),
    (lambda: ashlib.AdaptiveGumbel(alpha=0.0), "alpha", "0.0", "> 0"),
    (lambda: ashlib.AdaptiveReLU(alpha=-2.0), "alpha", "-2.0", "> 0"),
    (lambda: AF.adaptive_gumbel(torch.randn(3), -0.5), "alpha", "-0.5", "> 0"),
    (lambda: AF.adaptive_gumbel(torch.randn(3), torch.tensor([1.0, -1.0, 2.0])), "alpha", "-1.0", "> 0"),
    (lambda: AF.ash(torch.randn(2, 3), 0.0, 0.0), "alpha", "0.0", "> 0"),
    (lambda: ashlib.LeakyASH(slope=-0.01), "slope", "-0.01", "> 0"),
    (lambda: AF.leaky_ash(torch.randn(2, 3), slope=-1.0), "slope", "-1.0", "> 0"),
    (lambda: ashlib.get_activation("relu6x"), "name", "'relu6x'", "ash"),
    (lambda: ashlib.get_activation("fixed-ash-150"), "name", "'fixed-ash-150'", "(0, 100)"),
    (lambda: ashlib.AdaptiveGumbel(num_parameters=4)(torch.randn(2, 3, 5)), "num_parameters", "4", "channels"),
    (lambda: ashlib.AdaptiveReLU(num_parameters=0), "num_parameters", "0", ">= 1"),
    (lambda: AF.adaptive_relu(torch.randn(3), 1.0, cdf="gaussian"), "cdf", "'gaussian'", "exponential"),
    (lambda: AF.ash(torch.randn(2, 3), eps=0.0), "eps", "0.0", "> 0"),
    (lambda: AF.ash(torch.randn(2, 3), dim=5), "dim", "5", "[-2, 1]"),
]


@pytest.mark.parametrize("fn,arg,value,allowed", CASES, ids=[f"{c[1]}={c[2]}" for c in CASES])
def test_value_error_names_argument_value_and_range(fn, arg, value, allowed):
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    assert re.search(rf"\b{re.escape(arg)}\b", msg), msg
    assert value in msg, msg
    assert allowed in msg, msg


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError) as info:
        ashlib.get_activation("ashh")
    for known in ("ash", "agumbel", "arelu", "relu", "fixed-ash-<k%>", "topk-ash-<k%>"):
        assert known in str(info.value)


def test_integer_tensor_rejected():
    with pytest.raises(ValueError, match="floating-point"):
        AF.adaptive_gumbel(torch.arange(3), 1.0)
