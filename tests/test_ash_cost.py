"""ash-cost: the verdict rule on hand-made timings, the median's interval against the binomial, and the
candidates compute what they claim."""

from __future__ import annotations

import pytest
import torch

from ashlib.experiments.ash_cost import (CANDIDATES, AshCostConfig, AshCostResult, ash_formula, candidates, median_interval,
                                         run_ash_cost)


def _times(fused_fwd, fused_fb, formula_fwd, formula_fb, exact=1.0, n=9, jitter=0.0):
    """Per-repeat times: each ASH case a constant ratio to kthvalue (1.0 per repeat), times
    (1 + jitter * e_i) with e_i running evenly from -1 to 1 across the repeats."""
    e = [-1 + 2 * i / (n - 1) for i in range(n)]

    def rep(v):
        return [v * exact * (1 + jitter * ei) for ei in e]

    base = {"forward": [exact] * n, "forward+backward": [exact] * n}
    return {"conv 2x3": {"ASH, fused": {"forward": rep(fused_fwd), "forward+backward": rep(fused_fb)},
                         "ASH, one-line formula": {"forward": rep(formula_fwd), "forward+backward": rep(formula_fb)},
                         "exact top-k, kthvalue": base,
                         "exact top-k, topk+scatter": {"forward": [2 * exact] * n, "forward+backward": [2 * exact] * n},
                         "SiLU": {"forward": [0.1] * n, "forward+backward": [0.2] * n}}}


@pytest.mark.parametrize("t,word", [((0.5, 0.5, 0.5, 0.5), "reproduced"), ((2, 2, 2, 2), "not reproduced"),
                                    ((0.5, 0.5, 0.5, 1.5), "mixed")])
def test_rule(t, word):
    res = AshCostResult(AshCostConfig(), _times(*t), {"device": "cpu"})
    v = res.verdicts()[0]
    assert v["claim"] == "ASH-COST" and v["verdict"].split(":")[0] == word
    if word == "mixed":
        assert "3 of 4 cases" in v["verdict"] and "one-line formula ASH forward+backward: none" in v["verdict"]
        assert "about even" not in v["verdict"]
    # the faster exact selection is the yardstick: kthvalue (1.0) here, so the ratio is ASH's time
    assert {round(c["ratio"], 3) for c in res.cases()} == {float(x) for x in t}
    assert {c["vs"] for c in res.cases()} == {"kthvalue"}


def test_a_ratio_near_one_is_about_even_not_a_verdict():
    # one-line formula, forward+backward: paired ratios 0.9 .. 1.1 (median 1.0); with 9 repeats the
    # 95% interval is [2nd, 8th] of the sorted ratios = [0.925, 1.075], inside (0.8, 1.25)
    res = AshCostResult(AshCostConfig(), _times(0.5, 0.5, 0.5, 1.0, jitter=0.1), {"device": "cpu"})
    case = [c for c in res.cases() if c["ash"] == "ASH, one-line formula" and c["mode"] == "forward+backward"][0]
    assert case["holds"] == "about even" and case["95% interval"] == "0.93-1.07"
    v = res.verdicts()[0]["verdict"]
    assert v.startswith("mixed: ASH is cheaper than exact top-k in 3 of 4 cases")
    assert v.endswith("about even (within 1.25x either way) in 1 (conv 2x3 forward+backward, one-line formula)")
    # the same spread around 0.5 is decided: its interval [0.4625, 0.5375] lies below 0.8
    assert AshCostResult(AshCostConfig(), _times(0.5, 0.5, 0.5, 0.5, jitter=0.1), {"device": "cpu"}
                         ).verdicts()[0]["verdict"] == "reproduced"


@pytest.mark.parametrize("ratio,holds", [(0.79, "yes"), (0.81, "about even"), (0.9, "about even"), (1.2, "about even"),
                                         (1.26, "no")])
def test_the_band_edges(ratio, holds):
    # a constant ratio has a zero-width interval: the band's edges 1/1.25 = 0.8 and 1.25 decide alone
    cases = AshCostResult(AshCostConfig(), _times(0.5, 0.5, 0.5, ratio), {"device": "cpu"}).cases()
    assert cases[-1]["ash"] == "ASH, one-line formula" and cases[-1]["mode"] == "forward+backward"
    assert cases[-1]["holds"] == holds


def test_the_faster_exact_selection_is_chosen_by_median_and_paired_per_repeat():
    t = _times(0.5, 0.5, 0.5, 0.5)
    t["conv 2x3"]["exact top-k, topk+scatter"]["forward"] = [0.25] * 9  # now topk is faster in forward
    cases = AshCostResult(AshCostConfig(), t, {"device": "cpu"}).cases()
    fwd = [c for c in cases if c["mode"] == "forward"]
    assert {c["vs"] for c in fwd} == {"topk+scatter"} and {c["ratio"] for c in fwd} == {2.0}
    assert all(c["holds"] == "no" for c in fwd)


def test_median_interval_order_statistics():
    # hand-computed from the binomial(n, 1/2) tails: n = 31, P(B <= 9) = 0.0147 and P(B <= 10) = 0.0354,
    # so the 95% interval is [v_(10), v_(22)]; n = 9: P(B <= 1) = 0.0195, P(B <= 2) = 0.0898 -> [v_(2), v_(8)]
    v31 = [float(i) for i in range(1, 32)][::-1]
    assert median_interval(v31) == (16.0, 10.0, 22.0)
    assert median_interval([float(i) for i in range(1, 10)]) == (5.0, 2.0, 8.0)
    # n = 6 is the fewest: P(B = 0) = 1/64, coverage 1 - 2/64 = 0.969 -> [min, max]; n = 5: 1 - 2/32 < 0.95
    assert median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0]) == (3.5, 1.0, 6.0)
    with pytest.raises(ValueError, match="5 values are too few"):
        median_interval([1.0, 2.0, 3.0, 4.0, 5.0])


def test_median_interval_coverage_against_an_exact_binomial():
    from fractions import Fraction
    from math import comb

    for n in (6, 9, 15, 31, 60):
        v = list(range(n))
        _, lo, hi = median_interval(v)
        k = lo + 1  # 1-based rank of the lower end
        assert hi == n - k  # symmetric
        cover = 1 - 2 * sum(Fraction(comb(n, j), 2 ** n) for j in range(k))
        wider = 1 - 2 * sum(Fraction(comb(n, j), 2 ** n) for j in range(k + 1))
        assert cover >= Fraction(95, 100) > wider  # the narrowest interval with 95% coverage


def test_too_few_repeats_are_refused_before_any_timing():
    with pytest.raises(ValueError, match="repeats=5; must be >= 6"):
        run_ash_cost(AshCostConfig(repeats=5))


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


def test_case_table_merges_ratio_and_interval_and_names_the_yardstick():
    res = AshCostResult(AshCostConfig(), _times(0.5, 0.5, 0.5, 1.0, jitter=0.1), {"device": "cpu"})
    t = res.case_table("cap")
    md = t._repr_markdown_()
    assert "exact top-k by kthvalue, the faster" in md
    assert "| conv 2x3 | forward + backward | one-line formula | 1.00 (0.93-1.07) | about even |" in md
    assert "| conv 2x3 | forward | fused | 0.50 (0.46-0.54) | yes |" in md  # 0.5 x [0.925, 1.075]
