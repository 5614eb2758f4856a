"""One verdict per claim ID (ashlib.experiments.verdicts): coverage of the ledger, one source per
claim, the check functions (and that they can fail), and the rendered table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("sympy")

from ashlib.experiments import verdicts as V  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NINE = ("LASH-DEF", "FASH-DEF", "ASH-DET", "ASH-SEG", "F-T3", "F-T4", "F-COST", "F-REFORM", "F-RECO")


def test_claim_ids_match_the_ledger():
    ledger = ROOT.parent / "shared" / "CLAIMS.md"
    if not ledger.is_file():
        pytest.skip("shared/CLAIMS.md is not next to the repository")
    ids = re.findall(r"^\| ([A-Z][A-Z0-9-]+) \|", ledger.read_text(), flags=re.M)
    ids = [i for i in ids if i != "ID"]
    assert tuple(ids) == V.CLAIM_IDS


def test_every_claim_has_exactly_one_source():
    assert len(V.CLAIM_IDS) == len(set(V.CLAIM_IDS)) == 42
    assert set(V.SOURCES) == set(V.CLAIM_IDS)
    for c in NINE:
        assert V.SOURCES[c][0] in ("check", "not rerun", "experiment"), c
    assert V.SOURCES["ASH-SEG"] == ("experiment", "ash-seg")


@pytest.fixture(scope="module")
def verdicts():
    return V.collect_verdicts()


def test_the_nine_missing_ids_have_verdicts(verdicts):
    for c in NINE:
        assert verdicts[c].word != "pending" or c == "ASH-SEG", c
    for c in ("ASH-DET", "F-T3", "F-T4", "F-RECO"):
        assert verdicts[c].verdict == "not rerun here" and len(verdicts[c].evidence) > 30
    # ASH-SEG comes from the ash-seg experiment: pending until its result is passed in
    assert verdicts["ASH-SEG"].word == "pending" and "ash-seg" in verdicts["ASH-SEG"].evidence
    rows = [{"claim": "ASH-SEG", "evidence": "by the rule", "verdict": "mixed: procedural shapes, not ADE20K"}]
    seg = V.collect_verdicts(results={"ash-seg": rows}, claims=["ASH-SEG"], run_checks=False)["ASH-SEG"]
    assert seg.word == "mixed" and seg.source == "experiment ash-seg"
    assert verdicts["LASH-DEF"].verdict == "proved"
    assert verdicts["FASH-DEF"].verdict == "proved"
    assert verdicts["F-REFORM"].word == "holds once corrected"
    assert verdicts["F-COST"].word in ("reproduced", "mixed", "not reproduced")


def test_f_cost_counts_by_hand():
    rows = V.f_cost_parameters((10, 10, 1))
    # one alpha per neuron: 10 parameters; one more neuron: 10 weights in, 1 bias, 1 weight out
    assert rows == [{"layer": 1, "width": 10, "alphas_added": 10, "one_neuron_adds": 12, "ratio": 10 / 12}]
    deep = V.f_cost_parameters((10, 10, 10, 1))
    assert [r["one_neuron_adds"] for r in deep] == [21, 12]
    assert V.f_cost_parameters((800, 1000, 10))[0]["ratio"] == pytest.approx(1000 / 811)
    with pytest.raises(ValueError, match="layer_sizes"):
        V.f_cost_parameters((10, 1))


def test_f_reform_check_fails_for_a_wrong_signswish(monkeypatch):
    from ashlib.symbolic import sigmoid

    def wrong(x, beta):  # the factor 2 dropped
        s = sigmoid(beta * x)
        return s * (1 + beta * x * (1 - s)) - 1

    monkeypatch.setattr(V, "signswish", wrong)
    assert V.check_claim("F-REFORM").verdict == "refuted"


def test_signswish_and_foothill_numerically():
    import sympy as sp

    x, g = sp.symbols("x gamma", real=True)
    # hand values at x = 1, gamma = 2: foothill = tanh(1); SignSwish = 2S(2)(1 + 2(1 - S(2))) - 1
    s2 = 1 / (1 + sp.exp(-2))
    assert float(V.foothill(x, g).subs({x: 1, g: 2})) == pytest.approx(float(sp.tanh(1)))
    assert float(V.signswish(x, g).subs({x: 1, g: 2})) == pytest.approx(float(2 * s2 * (1 + 2 * (1 - s2)) - 1))


def test_results_feed_only_the_claims_they_are_the_source_of():
    rows = [{"claim": "F-T1", "evidence": "e1", "verdict": "mixed"},
            {"claim": "F-T2", "evidence": "not mine", "verdict": "reproduced"}]
    out = V.collect_verdicts({"farhadi-table1": rows}, claims=["F-T1", "F-T2", "F-F2"], run_checks=False)
    assert out["F-T1"].verdict == "mixed" and out["F-T1"].source == "experiment farhadi-table1"
    assert out["F-T2"].verdict == "pending" and "farhadi-table2" in out["F-T2"].evidence
    assert out["F-F2"].verdict == "pending"


def test_extra_cannot_override_another_source_and_bad_words_are_refused():
    with pytest.raises(ValueError, match="F-T1"):
        V.collect_verdicts(extra={"F-T1": V.Verdict("F-T1", "reproduced", "", "page")}, run_checks=False)
    ok = V.collect_verdicts(extra={"ASH-H": V.Verdict("ASH-H", "proved", "sympy", "notebook 01")},
                            claims=["ASH-H"], run_checks=False)
    assert ok["ASH-H"].verdict == "proved"
    with pytest.raises(ValueError, match="verdict='verified'"):
        V.Verdict("ASH-Z", "verified", "", "")
    with pytest.raises(ValueError, match="unknown claim"):
        V.collect_verdicts(claims=["NOPE"], run_checks=False)


def test_table(verdicts):
    pd = pytest.importorskip("pandas")
    df = V.verdict_table(verdicts)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["claim", "verdict", "evidence", "source"]
    assert len(df) == 42 and list(df["claim"]) == list(V.CLAIM_IDS)


def test_shown_table_escapes_pipes(tmp_path, monkeypatch):
    V.write_ledger({"F-T1": V.Verdict("F-T1", "mixed", "a | b", "x")}, root=tmp_path)
    monkeypatch.delenv(V.UPDATE_ENV, raising=False)
    md = V.show_verdicts([V.Verdict("F-T1", "mixed", "a | b", "x")], root=tmp_path)._repr_markdown_()
    assert md.splitlines()[-3:] == ["| claim | verdict | evidence |", "|:---|:---|:---|", "| F-T1 | mixed | a \\| b |"]


def test_results_can_be_read_from_a_run_folder(tmp_path):
    import json

    (tmp_path / "verdicts.json").write_text(json.dumps([{"claim": "F-T2", "evidence": "e", "verdict": "mixed"}]))
    out = V.collect_verdicts({"farhadi-table2": tmp_path}, claims=["F-T2"], run_checks=False)
    assert out["F-T2"].verdict == "mixed"
    with pytest.raises(FileNotFoundError, match="verdicts.json"):
        V.collect_verdicts({"farhadi-table2": tmp_path / "none"}, claims=["F-T2"], run_checks=False)


def test_symbolic_checks_give_the_ledger_words(verdicts):
    for c in ("ASH-Z", "ASH-A3A4", "F-GUMBEL", "F-EQ3"):
        assert verdicts[c].verdict == "proved", (c, verdicts[c])
    for c in ("ASH-SWISH", "F-EQ1", "F-EQ2"):
        assert verdicts[c].word == "proved", (c, verdicts[c])
    assert verdicts["ASH-EQ5"].word == "holds once corrected"
    assert "1.959964" in verdicts["ASH-Z"].evidence


def test_a_symbolic_check_fails_on_a_wrong_formula(monkeypatch):
    import sympy as sp

    from ashlib import symbolic as S

    wrong = S.x / 2 + S.x / 2 * sp.tanh(2 * S.alpha * (S.x - S.t))  # factor 2 too many inside tanh
    monkeypatch.setattr(S, "ASH_TANH", wrong)
    assert V.check_claim("ASH-A3A4").verdict == "refuted"
    monkeypatch.setattr(S, "ASH_AS_PRINTED", S.ASH)  # had eq. 5 been printed right, it would be proved
    assert V.check_claim("ASH-EQ5").verdict == "proved"
    monkeypatch.setattr(S, "ASH_AS_PRINTED", S.x * S.sigmoid(-S.alpha * (S.x - S.t)))  # neither A4 nor x - A4
    assert V.check_claim("ASH-EQ5").verdict == "refuted"


def test_f_cost_timing_shape_and_parameter_counts():
    out = V.f_cost_timing(width=4, depth=2, batch=8, repeats=3)
    # parameters counted by hand: 10-4-4-1 = 44 + 20 + 5 = 69; + one alpha per neuron = 77; 10-5-5-1 = 55 + 30 + 6 = 91
    assert out["parameters"] == {"base": 69, "adaptive": 77, "one_more_neuron": 91}
    assert out["ratio_to_base"]["base"] == 1.0 and set(out["seconds"]) == {"base", "adaptive", "one_more_neuron"}
    with pytest.raises(ValueError, match="repeats=2"):
        V.f_cost_timing(repeats=2)


def test_experiment_sources_are_registered_experiments_that_give_the_claim():
    from ashlib.experiments import experiment_names

    names = set(experiment_names())
    for claim, (kind, where) in V.SOURCES.items():
        if kind == "experiment":
            assert where in names, (claim, where)


# --------------------------------------------------------------------------- the committed ledger


def test_committed_ledger_is_complete_and_current():
    """results/verdicts.json holds every claim once, none pending, and equals what its sources give
    now (checks rerun, stored book runs reread; notebook claims are checked by their notebooks)."""
    ledger = V.read_ledger()
    assert tuple(ledger) == V.CLAIM_IDS
    pending = [c for c, v in ledger.items() if v.word == "pending"]
    assert not pending, f"claims without a verdict: {pending}"
    fresh = V.build_ledger()
    for c in V.CLAIM_IDS:
        assert fresh[c] == ledger[c], (c, fresh[c], ledger[c])


def _tiny_ledger(tmp_path):
    rows = {c: V.Verdict(c, "proved", "e", "s") for c in ("ASH-H", "ASH-Z")}
    V.write_ledger(rows, root=tmp_path)
    return rows


def test_show_verdicts_refuses_a_page_that_disagrees(tmp_path, monkeypatch):
    _tiny_ledger(tmp_path)
    monkeypatch.delenv(V.UPDATE_ENV, raising=False)
    shown = V.show_verdicts([V.Verdict("ASH-H", "proved", "e", "x")], root=tmp_path)
    assert "| ASH-H | proved | e |" in shown._repr_markdown_()
    with pytest.raises(V.LedgerMismatch, match="ASH-H: this page computes 'refuted'"):
        V.show_verdicts([V.Verdict("ASH-H", "refuted", "e", "x")], root=tmp_path)
    # a claim decided elsewhere (a check function) cannot be changed from a page, even when updating
    monkeypatch.setenv(V.UPDATE_ENV, "1")
    with pytest.raises(V.LedgerMismatch, match="ASH-Z"):
        V.show_verdicts([{"claim": "ASH-Z", "verdict": "refuted", "evidence": "e"}], root=tmp_path)


def test_show_verdicts_updates_a_notebook_claim_on_request(tmp_path, monkeypatch):
    _tiny_ledger(tmp_path)
    monkeypatch.setenv(V.UPDATE_ENV, "1")
    V.show_verdicts([V.Verdict("ASH-H", "refuted", "new evidence", "")], root=tmp_path)
    got = V.read_ledger(tmp_path)
    assert got["ASH-H"].verdict == "refuted" and got["ASH-H"].source == "notebook 01_ash_derivation"
    assert got["ASH-Z"].verdict == "proved"  # untouched


def test_ledger_rejects_unknown_claims(tmp_path):
    (tmp_path / "verdicts.json").write_text('{"verdicts": [{"claim": "NOPE", "verdict": "proved", '
                                            '"evidence": "", "source": ""}]}')
    with pytest.raises(ValueError, match="unknown claim ID 'NOPE'"):
        V.read_ledger(tmp_path)


def test_show_verdicts_shows_supplementary_rows_unchecked(tmp_path, monkeypatch):
    _tiny_ledger(tmp_path)
    monkeypatch.delenv(V.UPDATE_ENV, raising=False)
    shown = V.show_verdicts([{"claim": "ASH-H (in a ResNet)", "verdict": "mixed", "evidence": "e"}], root=tmp_path)
    assert "ASH-H (in a ResNet)" in shown._repr_markdown_()
    with pytest.raises(ValueError, match="unknown claim ID 'ASH-HH'"):
        V.show_verdicts([{"claim": "ASH-HH", "verdict": "mixed", "evidence": "e"}], root=tmp_path)
