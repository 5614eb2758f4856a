"""Stored (committed) results: written with provenance by the CLI, rebuilt without training, refused
when the configuration changed or a unit is missing; and every folder committed under results/
still loads, with the verdicts and tables it was committed with."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ashlib.__main__ import main
from ashlib.experiments import experiment_names
from ashlib.experiments.stored import (PROVENANCE_KEYS, StoredResultIncomplete, StoredResultMismatch, load_stored,
                                       results_root)

TINY = {"epochs": 1, "n_samples": 300, "depths": (1,), "seeds": (0,), "teachers": ("relu",),
        "students": ("relu", "arelu")}
TINY_ARGS = ["--set", "epochs=1", "n_samples=300", "depths=(1,)", "seeds=(0,)", "teachers=('relu',)",
             "students=('relu','arelu')"]


def _run(out: Path) -> None:
    rc = main(["run", "farhadi-table1", "--profile", "quick", "--out", str(out), "--no-progress", "--no-figures",
               *TINY_ARGS])
    assert rc == 0


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    _run(root / "quick" / "farhadi-table1")
    return root


def test_provenance_says_what_produced_the_numbers(stored):
    prov = json.loads((stored / "quick" / "farhadi-table1" / "provenance.json").read_text())
    assert set(PROVENANCE_KEYS) <= set(prov)
    assert prov["experiment"] == "farhadi-table1" and prov["profile"] == "quick" and prov["seeds"] == [0]
    assert prov["command"].startswith("python -m ashlib run farhadi-table1 --profile quick")
    assert prov["threads"] == 1  # the config's thread count, not the process default
    assert len(prov["sessions"]) == 1 and prov["sessions"][0]["units_computed"] > 0
    assert prov["wall_seconds"] == prov["sessions"][0]["wall_seconds"] > 0


def test_rebuilt_without_training_equals_what_was_written(stored, monkeypatch):
    import ashlib.experiments.farhadi as farhadi

    def no_training(*a, **k):
        raise AssertionError("load_stored trained a network")

    monkeypatch.setattr(farhadi, "fit", no_training, raising=False)
    res = load_stored("farhadi-table1", "quick", root=stored, **TINY)
    folder = stored / "quick" / "farhadi-table1"
    assert list(res.result.verdicts()) == json.loads((folder / "verdicts.json").read_text())
    rows = res.result.tables()["table1"]
    with open(folder / "table1.csv", newline="") as fh:
        on_disk = list(csv.DictReader(fh))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    assert list(csv.DictReader(io.StringIO(buf.getvalue()))) == on_disk
    assert "profile quick" in res.caption and "seeds 0" in res.caption


def test_a_resumed_run_adds_a_session(tmp_path):
    out = tmp_path / "quick" / "farhadi-table1"
    _run(out)
    _run(out)  # everything stored: reads it back
    prov = json.loads((out / "provenance.json").read_text())
    assert len(prov["sessions"]) == 2
    assert prov["sessions"][1]["units_computed"] == 0 and prov["sessions"][1]["units_resumed"] > 0


def test_another_configuration_is_refused(stored):
    with pytest.raises(StoredResultMismatch, match="epochs: 1 there, 2 now"):
        load_stored("farhadi-table1", "quick", root=stored, **{**TINY, "epochs": 2})


def test_a_missing_unit_is_refused_not_recomputed(tmp_path):
    out = tmp_path / "quick" / "farhadi-table1"
    _run(out)
    victim = sorted((out / "units").glob("*.pt"))[0]
    victim.unlink()
    with pytest.raises(StoredResultIncomplete, match="is not stored"):
        load_stored("farhadi-table1", "quick", root=tmp_path, **TINY)
    assert not victim.exists()


def test_no_stored_run_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m ashlib run farhadi-table1 --profile book"):
        load_stored("farhadi-table1", "book", root=tmp_path)


def _committed() -> list[tuple[str, str]]:
    root = results_root()
    if not root.is_dir():
        return []
    return sorted((p.parent.name, p.name) for p in root.glob("*/*") if (p / "run.json").is_file())


@pytest.mark.parametrize("profile,name", _committed() or [pytest.param("-", "-", marks=pytest.mark.skip(
    reason="no results committed under results/"))])
def test_committed_results_still_load(profile, name):
    """Each committed run still matches its profile's configuration, is complete, and rebuilds the
    verdicts it was committed with (so a page rendering it shows what the run produced)."""
    assert name in experiment_names()
    res = load_stored(name, profile)
    folder = results_root() / profile / name
    if (folder / "verdicts.json").is_file():
        assert list(res.result.verdicts()) == json.loads((folder / "verdicts.json").read_text())
    assert res.provenance["profile"] == profile == res.config.profile
    assert res.provenance["fingerprint"] == json.loads((folder / "run.json").read_text())["fingerprint"]
