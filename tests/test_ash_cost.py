"""ash-cost: the verdict rule on hand-made timings, and the candidates compute what they claim."""

from __future__ import annotations

import pytest
import torch

from ashlib.experiments.ash_cost import CANDIDATES, AshCostConfig, AshCostResult, candidates, ash_formula


def _timings(fused_fwd, fused_fb, formula_fwd, formula_fb, exact=1.0):
    base = {"forward": exact, "forward+backward": exact}
    return {"conv 2x3": {"ASH, fused": {"forward": fused_fwd, "forward+backward": fused_fb},
                         "ASH, one-line formula": {"forward": formula_fwd, "forward+backward": formula_fb},
                         "exact top-k, kthvalue": dict(base),
                         "exact top-k, topk+scatter": {"forward": 2 * exact, "forward+backward": 2 * exact},
                         "SiLU": {"forward": 0.1, "forward+backward": 0.2}}}


@pytest.mark.parametrize("t,word", [((0.5, 0.5, 0.5, 0.5), "reproduced"), ((2, 2, 2, 2), "not reproduced"),
                                    ((0.5, 0.5, 0.5, 1.5), "mixed")])
def test_rule(t, word):
    res = AshCostResult(AshCostConfig(), _timings(*t), {"device": "cpu"})
    v = res.verdicts()[0]
    assert v["claim"] == "ASH-COST" and v["verdict"].split(":")[0] == word
    if word == "mixed":
        assert "3 of 4 cases" in v["verdict"] and "one-line formula ASH forward+backward: none" in v["verdict"]
    # the faster exact selection is the yardstick: kthvalue (1.0) here, so the ratio is ASH's time
    assert {round(c["ratio"], 3) for c in res.cases()} == {float(x) for x in t}


def test_candidates_compute_ash_and_the_same_top_half():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8)
    f = candidates()
    assert tuple(f) == CANDIDATES
    z, a = torch.tensor(0.0), torch.tensor(1.0)
    assert torch.allclose(f["ASH, fused"](x), ash_formula(x, z, a), atol=1e-5)
    kth, topk = f["exact top-k, kthvalue"](x), f["exact top-k, topk+scatter"](x)
    assert torch.equal(kth != 0, topk != 0)  # continuous data: no ties, the same elements kept
    assert ((kth != 0).flatten(1).sum(1) == 96).all()  # half of 192 per sample


def test_bad_workload_is_refused():
    with pytest.raises(ValueError, match="workload 'conv=abc'"):
        AshCostConfig(workloads=("conv=abc",)).shapes()
