"""Experiments that survive interruption: units stored atomically in --out, resumed, never mixed.

The central test kills ``python -m ashlib run`` with SIGKILL half-way (a subprocess), runs the
same command again, and compares the results with an uninterrupted run in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ashlib.__main__ import main
from ashlib.experiments import make_config, run_experiment
from ashlib.experiments import ash_dcgan, ash_resnet
from ashlib.experiments.registry import run_config
from ashlib.experiments.runstore import RunConfigMismatch, RunStore

ROOT = Path(__file__).resolve().parents[1]

# farhadi-table1 shrunk to 6 units (2 seeds x 3 students) of a few tenths of a second each
SETS = ["n_samples=200", "epochs=8", "depths=1", "teachers=relu", "students=('agumbel','relu','arelu')",
        "batch_size=20"]
N_UNITS = 6


def _cli(out: Path) -> list[str]:
    return [sys.executable, "-m", "ashlib", "run", "farhadi-table1", "--profile", "quick", "--out", str(out),
            "--no-progress", "--no-figures", "--seeds", "0", "1", "--set", *SETS]


def _env() -> dict[str, str]:
    # import ashlib from this checkout, whatever the environment's editable install points to
    # ASHLIB_CHECKPOINT_SECONDS=0: an epoch checkpoint after every epoch, so the kill lands in one
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "ASHLIB_PROFILE": "quick",
            "ASHLIB_CHECKPOINT_SECONDS": "0"}


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _units(out: Path) -> list[Path]:
    return sorted(p for p in (out / "units").glob("*.pt") if not p.name.endswith(".ckpt.pt"))


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(out), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    ckpt_seen = False
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "units").is_dir() and _units(out):
            ckpt_seen = any((out / "units").glob("*.ckpt.pt"))
            if ckpt_seen:  # one unit finished, the next one part-way through its epochs
                break
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stdout.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    done_before = len(_units(out))
    # the checkpoint seen before the kill may belong to a unit that finished (and removed it) in
    # the moment before the signal landed: only a checkpoint still there is resumed from
    ckpt_left = any((out / "units").glob("*.ckpt.pt"))
    print(f"killed with {done_before} of {N_UNITS} units stored, an epoch checkpoint present: {ckpt_left}")
    assert 1 <= done_before < N_UNITS and ckpt_seen
    assert not (out / "results.json").exists()

    resumed = subprocess.run(_cli(out), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming farhadi-table1" in resumed.stdout
    assert f"{done_before} unit(s) resumed" in resumed.stdout
    if ckpt_left:  # the unit killed half-way went on from its epoch checkpoint
        assert "continuing " in resumed.stdout
    assert len(_units(out)) == N_UNITS and not list((out / "units").glob("*.ckpt.pt"))
    got = json.loads((out / "results.json").read_text())

    sets = dict(s.split("=", 1) for s in SETS)
    cfg = make_config("farhadi-table1", "quick", seeds=(0, 1), **sets)
    straight = run_experiment("farhadi-table1", "quick", seeds=(0, 1), progress=False, **sets)
    assert got["config"] == json.loads(json.dumps(cfg.__dict__))
    assert len(got["rows"]) == N_UNITS
    assert _strip(got["rows"]) == _strip(json.loads(json.dumps(straight.rows)))
    assert got["summary"] == json.loads(json.dumps(straight.summary()))


def test_other_configuration_refused(tmp_path, capsys):
    base = ["run", "farhadi-table1", "--profile", "quick", "--out", str(tmp_path), "--no-progress", "--no-figures",
            "--set", "n_samples=100", "epochs=1", "depths=1", "teachers=relu", "students=relu", "seeds=0"]
    assert main(base) == 0
    first = (tmp_path / "results.json").read_text()
    assert main(base[:-1] + ["seeds=1"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "seeds" in err and "another --out" in err
    assert (tmp_path / "results.json").read_text() == first  # nothing mixed in
    assert main(base) == 0  # the same configuration runs again (everything resumed)
    assert "1 unit(s) resumed" in capsys.readouterr().out


def test_half_written_and_foreign_unit_files_are_ignored(tmp_path):
    cfg = make_config("farhadi-table1", "quick", n_samples=100, epochs=1, depths=(1,), teachers=("relu",),
                      students=("relu", "arelu"), seeds=(0,))
    messages: list[str] = []
    store = RunStore(tmp_path, "farhadi-table1", cfg, log=messages.append)
    store.put("a", {"x": [1.0, 2.5], "t": torch.arange(3)})
    store.put("b", 7)
    store.put("c", "fine")
    # a truncated unit file, a unit file holding an object that runs a command, a leftover temp file
    path_a = store.unit_path("a")
    path_a.write_bytes(path_a.read_bytes()[:50])
    marker = tmp_path / "MARKER"

    class RunsCommand:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"format": "ashlib.run.unit", "unit": "b", "fingerprint": store.fingerprint,
                "value": RunsCommand()}, store.unit_path("b"))
    leftover = store.units_dir / ".c.pt.999.tmp"
    leftover.write_bytes(b"half")
    again = RunStore(tmp_path, "farhadi-table1", cfg, log=messages.append)
    assert not leftover.exists()
    assert again.get("a") is None and again.get("b") is None and again.get("c") == "fine"
    assert not marker.exists()
    assert any("ignoring" in m and "a.pt" in m for m in messages)
    assert again.compute("a", lambda: {"x": [3.0]}) == {"x": [3.0]}
    assert RunStore(tmp_path, "farhadi-table1", cfg, log=messages.append).get("a") == {"x": [3.0]}


def test_half_written_unit_recomputed_in_a_run(tmp_path):
    kw = dict(n_samples=100, epochs=2, depths=(1,), teachers=("relu",), students=("relu", "arelu"), seeds=(0,))
    first = run_experiment("farhadi-table1", "quick", out_dir=tmp_path, progress=False, **kw)
    unit = sorted((tmp_path / "units").glob("*.pt"))[0]
    unit.write_bytes(unit.read_bytes()[: unit.stat().st_size // 2])
    (tmp_path / "results.json").write_text('{"rows": [')  # a torn results file is simply rewritten
    second = run_experiment("farhadi-table1", "quick", out_dir=tmp_path, progress=False, **kw)
    assert _strip(second.rows) == _strip(first.rows)
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["student"] == "relu"


def test_runstore_refuses_another_experiment(tmp_path):
    cfg = make_config("farhadi-table1", "quick")
    RunStore(tmp_path, "farhadi-table1", cfg, log=lambda m: None)
    with pytest.raises(RunConfigMismatch, match="experiment 'farhadi-table1', not 'other'"):
        RunStore(tmp_path, "other", cfg, log=lambda m: None)
    assert RunStore.disabled().get("x") is None and RunStore.disabled().checkpoint("x") is None


class Stop(Exception):
    pass


def _drop_timing(obj):
    if isinstance(obj, dict):
        return {k: _drop_timing(v) for k, v in obj.items() if "second" not in k and k != "sec_per_epoch"}
    if isinstance(obj, (list, tuple)):
        return [_drop_timing(v) for v in obj]
    return obj


def _no_timing(obj) -> str:
    """``obj`` as JSON (NaN == NaN there) without the wall-clock fields, which differ between any two runs."""
    return json.dumps(_drop_timing(obj), sort_keys=True, default=str)


def _fail_on_call(monkeypatch, module, name, n):
    """Make ``module.name`` raise Stop on its n-th call: an interruption at a known point of a run."""
    real = getattr(module, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return real


def test_dcgan_interrupted_mid_unit_resumes_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("ASHLIB_CHECKPOINT_SECONDS", "0")
    cfg = make_config("ash-dcgan", "quick", seeds=(0,), epochs=3, ngf=4, ndf=4, n_fd=40, classifier_epochs=1,
                      n_images=64, n_grid=4, acts=("relu", "ash"))
    straight = run_config("ash-dcgan", cfg, progress=False)
    # fd calls: 1 for the real images, then one per epoch: the 6th is the ASH network's second epoch
    real = _fail_on_call(monkeypatch, ash_dcgan, "frechet_distance_features", 6)
    with pytest.raises(Stop):
        run_config("ash-dcgan", cfg, progress=False, out_dir=tmp_path, log=lambda m: None)
    assert (tmp_path / "units" / "relu-seed0.pt").is_file() and (tmp_path / "units" / "ash-seed0.ckpt.pt").is_file()
    monkeypatch.setattr(ash_dcgan, "frechet_distance_features", real)
    messages: list[str] = []
    resumed = run_config("ash-dcgan", cfg, progress=False, out_dir=tmp_path, log=messages.append)
    assert any("continuing ash-seed0 from its checkpoint after epoch 1" in m for m in messages)
    assert _no_timing(resumed.rows) == _no_timing(straight.rows)
    assert resumed.samples.keys() == straight.samples.keys()
    for act in straight.samples:
        assert all(torch.equal(resumed.samples[act][e], straight.samples[act][e]) for e in straight.samples[act])


def test_resnet_interrupted_mid_unit_resumes_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("ASHLIB_CHECKPOINT_SECONDS", "0")
    cfg = make_config("ash-resnet", "quick", seeds=(0,), n_train=40, n_test=20, epochs=3, widths=(2, 2, 4),
                      n_probe=10, image_size=16, acts=("relu", "ash"))
    straight = run_config("ash-resnet", cfg, progress=False)
    # ash_thresholds runs once per network before training (z0) and after every epoch: call 7 is
    # after the ASH network's second epoch (1 + 3 for ReLU, 1 + 2 for ASH)
    real = _fail_on_call(monkeypatch, ash_resnet, "ash_thresholds", 7)
    with pytest.raises(Stop):
        run_config("ash-resnet", cfg, progress=False, out_dir=tmp_path, log=lambda m: None)
    assert (tmp_path / "units" / "ash-seed0.ckpt.pt").is_file()
    monkeypatch.setattr(ash_resnet, "ash_thresholds", real)
    resumed = run_config("ash-resnet", cfg, progress=False, out_dir=tmp_path, log=lambda m: None)
    assert _no_timing(resumed.rows) == _no_timing(straight.rows)
    for key, model in straight.models.items():
        for p, q in zip(model.parameters(), resumed.models[key].parameters()):
            assert torch.equal(p, q)


def test_seed_act_units_order_and_resume(tmp_path):
    """Seeds outer, activations inner; a stored unit is read back, not recomputed."""
    from ashlib.experiments.runstore import RunStore

    calls = []

    def fn(act, seed, unit):
        calls.append(unit)
        return {"v": f"{act}/{seed}"}

    cfg = {"seeds": [0, 1]}
    store = RunStore(tmp_path, "x", cfg, log=lambda m: None)
    got = [(a, s, d["v"]) for a, s, d in store.seed_act_units((0, 1), ("relu", "ash"), fn)]
    assert got == [("relu", 0, "relu/0"), ("ash", 0, "ash/0"), ("relu", 1, "relu/1"), ("ash", 1, "ash/1")]
    assert calls == ["relu-seed0", "ash-seed0", "relu-seed1", "ash-seed1"]
    calls.clear()
    again = RunStore(tmp_path, "x", cfg, log=lambda m: None)
    assert [d["v"] for _, _, d in again.seed_act_units((0, 1), ("relu", "ash"), fn)] == [g[2] for g in got]
    assert calls == []
