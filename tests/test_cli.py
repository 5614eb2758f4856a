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
