"""Experiment registry, profiles and tiny runs of the Farhadi tables."""

from __future__ import annotations

import json

import pytest

from ashlib.experiments import current_profile, experiment_names, make_config, run_experiment
from ashlib.experiments.farhadi import TABLE1_PAPER, TABLE2_PAPER, Table2Config, load_table2_data
from ashlib.experiments.report import format_table, mean_sd_se


def test_profiles(monkeypatch):
    monkeypatch.delenv("ASHLIB_PROFILE", raising=False)
    assert current_profile() == "quick"
    monkeypatch.setenv("ASHLIB_PROFILE", "paper")
    assert current_profile() == "paper"
    assert current_profile("quick") == "quick"
    monkeypatch.setenv("ASHLIB_PROFILE", "huge")
    with pytest.raises(ValueError, match="huge"):
        current_profile()


def test_registry_names():
    assert {"farhadi-table1", "farhadi-table2"} <= set(experiment_names())
    with pytest.raises(ValueError, match="unknown experiment"):
        make_config("no-such-experiment")


def test_paper_profiles_hold_the_papers_settings():
    # Farhadi et al. section 4.1 and 4.2
    t1 = make_config("farhadi-table1", "paper")
    assert (t1.lr, t1.l1, t1.l2, t1.batch_size, t1.epochs, t1.k_folds, len(t1.folds)) == (0.01, 1e-3, 1e-3, 20, 2000, 5, 5)
    assert (t1.n_samples, t1.n_features, t1.width, t1.depths, t1.optimizer) == (10_000, 10, 10, (1, 8), "sgd")
    t2 = make_config("farhadi-table2", "paper")
    assert (t2.dataset, t2.batch_norm, t2.lr, t2.batch_size, t2.epochs, t2.fc_width) == ("mnist", True, 0.01, 100, 150, 1000)
    q = make_config("farhadi-table1", "quick")
    assert any("epochs" in d for d in q.differences_from_paper())


def test_overrides_are_parsed():
    cfg = make_config("farhadi-table1", "quick", seeds=(3,), epochs="2", depths="[1]", lr="0.5", label="bernoulli")
    assert (cfg.seeds, cfg.epochs, cfg.depths, cfg.lr, cfg.label) == ((3,), 2, (1,), 0.5, "bernoulli")
    assert make_config("farhadi-table1", "quick", depths="8").depths == (8,)
    with pytest.raises(ValueError, match="no setting 'nonsense'"):
        make_config("farhadi-table1", "quick", nonsense=1)


def test_paper_numbers_quoted():
    # CLAIMS.md F-T1 and F-T2 (the paper's Tables 1 and 2)
    assert TABLE1_PAPER[(8, "relu")] == {"sigmoid": 57.3, "agumbel": 88.2, "relu": 89.3, "arelu": 89.9}
    assert TABLE1_PAPER[(1, "sigmoid")]["agumbel"] == 97.5
    assert len(TABLE2_PAPER) == 9 and TABLE2_PAPER[("agumbel", "relu")] == 98.7
    assert max(TABLE2_PAPER.values()) == 99.1


def test_table1_tiny_run(tmp_path):
    res = run_experiment("farhadi-table1", "quick", seeds=(0,), out_dir=tmp_path, progress=False,
                         n_samples=200, epochs=1, depths=(1, 2), students=("sigmoid", "agumbel", "relu", "arelu"))
    assert len(res.rows) == 2 * 2 * 4  # depths x teachers x students, one fold, one seed
    summ = res.summary()
    assert len(summ) == 16 and all(0 <= s["acc_mean"] <= 100 for s in summ)
    assert all(s["paper"] is None for s in summ if s["depth"] == 2)
    # adaptive students record one alpha per neuron per layer
    ag = next(r for r in res.rows if r["student"] == "agumbel" and r["depth"] == 2)
    assert [len(a) for a in ag["alphas"]] == [10, 10]
    assert {v["claim"] for v in res.verdicts()} == {"F-T1", "F-T1-CLAIMS", "F-F2", "F-F34"}
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["config"]["epochs"] == 1 and len(data["rows"]) == 16
    assert (tmp_path / "fig2_alpha_hist.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "AGumb ours" in format_table(res.wide())


def test_table2_tiny_run(tmp_path):
    res = run_experiment("farhadi-table2", "quick", seeds=(0,), out_dir=tmp_path, progress=False,
                         epochs=1, n_train=64, fc_width=16, channels=(4, 6), conv_acts=("relu",),
                         fc_acts=("relu", "agumbel"))
    assert [(r["conv"], r["fc"]) for r in res.rows] == [("relu", "relu"), ("relu", "agumbel"), ("sigmoid", "sigmoid")]
    assert all(len(r["test_acc_curve"]) == 1 for r in res.rows)
    claims = {v["claim"]: v["verdict"] for v in res.verdicts()}
    assert claims["F-T2"].startswith("not rerun here: trained on MNIST-5k")  # the quick default, not MNIST
    assert (tmp_path / "table2.csv").exists() and (tmp_path / "table2_curves.png").exists()


def test_table2_paper_profile_without_mnist(tmp_path):
    cfg = Table2Config.for_profile("paper")
    import dataclasses

    with pytest.raises(FileNotFoundError, match="yann.lecun.com"):
        load_table2_data(dataclasses.replace(cfg, data_root=str(tmp_path)))


def test_mean_sd_se_by_hand():
    s = mean_sd_se([1.0, 2.0, 3.0, 6.0])
    assert s["mean"] == 3.0 and s["sd"] == pytest.approx((14 / 3) ** 0.5) and s["se"] == pytest.approx((14 / 3) ** 0.5 / 2)
    assert mean_sd_se([5.0])["sd"] is None
