"""Committed results: the ``book`` profile's runs, stored in the repository with their provenance.

The book shows runs that take up to about an hour each on 2 CPU cores (profile ``book``), too
long for CI. They are run once with the command line, which stores every finished unit::

    python -m ashlib run farhadi-table1 --profile book --out results/book/farhadi-table1

and the folder (``run.json``, ``units/*.pt``, ``results.json``, ``verdicts.json``, tables,
figures and ``provenance.json``) is committed. A notebook renders it with :func:`load_stored`,
which rebuilds the result object by running the experiment's own code with every unit read
back from the folder (nothing is trained; a unit that is missing raises
:class:`StoredResultIncomplete`). Because the folder's ``run.json`` holds the fingerprint of
the configuration it was made with, a change to the ``book`` profile's settings, or to the
store format, makes :func:`load_stored` refuse the folder (:class:`StoredResultMismatch`) until
the run is repeated: stored numbers can never be shown under a configuration that did not
produce them.

``provenance.json`` says what produced the numbers: the command, the git commit (and whether
the tree had uncommitted changes), the profile, seeds, device, torch version, threads,
platform and the wall time of every session that worked on the run (a resumed run has several).
Every file is read with safe loaders (JSON, ``torch.load(weights_only=True)``): a results folder
from someone else cannot run code when it is read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..utils.io import atomic_open
from .registry import ExperimentResult, environment, get_experiment, make_config
from .runstore import RunConfigMismatch, RunStore, config_fingerprint

__all__ = ["RESULTS_ENV", "results_root", "stored_dir", "StoredResult", "StoredResultMismatch",
           "StoredResultIncomplete", "load_stored", "write_provenance", "read_provenance", "PROVENANCE_KEYS",
           "provenance_line"]

#: environment variable naming the folder that holds ``<profile>/<experiment>/`` (default: ``results/``
#: of the repository ashlib is imported from)
RESULTS_ENV = "ASHLIB_RESULTS"

#: the keys every ``provenance.json`` has
PROVENANCE_KEYS = ("experiment", "profile", "seeds", "fingerprint", "command", "commit", "dirty", "device",
                   "torch", "threads", "platform", "python", "sessions", "wall_seconds")


class StoredResultMismatch(RunConfigMismatch):
    """The stored folder was made with another configuration than the profile's current one."""


class StoredResultIncomplete(RuntimeError):
    """The stored folder lacks a unit the experiment needs: the run did not finish."""


def results_root(root: str | Path | None = None) -> Path:
    """The folder of committed results: ``root``, else ``$ASHLIB_RESULTS``, else ``results/`` next to
    the ``ashlib`` package (the repository's)."""
    if root is not None:
        return Path(root)
    env = os.environ.get(RESULTS_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "results"


def stored_dir(name: str, profile: str = "book", root: str | Path | None = None) -> Path:
    """``<results root>/<profile>/<name>``: where the stored run of experiment ``name`` lives."""
    return results_root(root) / profile / name


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def read_provenance(out_dir: str | Path) -> dict[str, Any] | None:
    """The ``provenance.json`` of a results folder, or None when there is none."""
    path = Path(out_dir) / "provenance.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a provenance record (a JSON object expected)")
    return data


def write_provenance(out_dir: str | Path, name: str, config: Any, argv: Sequence[str], wall_seconds: float,
                     units_computed: int, units_resumed: int, device: str | None = None) -> Path:
    """Write (or extend, for a resumed run of the same configuration) ``provenance.json`` in ``out_dir``.

    Each call adds one *session*: its start time, wall time, commit and how many units it
    computed and read back. ``wall_seconds`` is the sum over sessions. A record of another
    configuration is replaced, never extended."""
    out = Path(out_dir)
    fingerprint = config_fingerprint(name, config)
    repo = Path(__file__).resolve().parents[2]
    commit = _git("rev-parse", "HEAD", cwd=repo)
    status = _git("status", "--porcelain", "--untracked-files=no", "--", "ashlib", cwd=repo)
    old = read_provenance(out)
    sessions = list(old["sessions"]) if old and old.get("fingerprint") == fingerprint else []
    sessions.append({"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "wall_seconds": round(float(wall_seconds), 3), "commit": commit,
                     "units_computed": int(units_computed), "units_resumed": int(units_resumed)})
    cfg = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    if device in (None, "auto"):  # what "auto" chose in this process, not the setting's name
        from ..train import select_device  # noqa: PLC0415

        device = str(select_device("auto"))
    env = environment(device)
    record = {
        "experiment": name, "profile": cfg.get("profile"), "seeds": list(cfg.get("seeds", ())),
        "fingerprint": fingerprint, "command": " ".join(argv), "commit": commit,
        "dirty": bool(status) if status is not None else None,
        **{k: env[k] for k in ("device", "torch", "threads", "platform", "python")},
        **({"threads": int(cfg["threads"])} if isinstance(cfg.get("threads"), int) and cfg["threads"] > 0 else {}),
        "sessions": sessions, "wall_seconds": round(sum(s["wall_seconds"] for s in sessions), 3),
    }
    path = out / "provenance.json"
    with atomic_open(path, "w") as fh:
        fh.write(json.dumps(record, indent=1))
    return path


def provenance_line(prov: dict[str, Any]) -> str:
    """One sentence for a caption: profile, seeds, device, torch, wall time, commit."""
    wall = prov.get("wall_seconds", 0.0)
    when = prov["sessions"][-1]["finished"][:10] if prov.get("sessions") else "?"
    commit = (prov.get("commit") or "unknown")[:10] + (" with uncommitted changes" if prov.get("dirty") else "")
    return (f"stored run: profile {prov.get('profile')}, seeds {', '.join(map(str, prov.get('seeds', [])))}, "
            f"device {prov.get('device')} ({prov.get('threads')} thread(s)), torch {prov.get('torch')}, "
            f"wall time {wall / 60:.1f} min over {len(prov.get('sessions', []))} session(s), commit {commit}, "
            f"finished {when}; command `{prov.get('command')}`")


class _ReadOnlyStore(RunStore):
    """A RunStore that reads every unit from the folder and refuses to compute one."""

    def compute(self, name: str, fn: Callable[[], Any]) -> Any:
        value = self.get(name)
        if value is None:
            raise StoredResultIncomplete(
                f"{self.root}: unit {name!r} is not stored (the run did not finish, or its file is damaged); "
                f"finish it with the command in {self.root / 'provenance.json'} (it resumes)")
        return value

    def checkpoint(self, name: str) -> Path | None:
        raise StoredResultIncomplete(f"{self.root}: unit {name!r} would need training; the stored run is incomplete")

    def load_progress(self, name: str) -> Any | None:
        raise StoredResultIncomplete(f"{self.root}: unit {name!r} would need training; the stored run is incomplete")


@dataclass
class StoredResult:
    """A stored run rebuilt: the result object, its config, its provenance and its folder."""

    name: str
    result: ExperimentResult
    config: Any
    provenance: dict[str, Any]
    path: Path

    @property
    def caption(self) -> str:
        """:func:`provenance_line` of this run."""
        return provenance_line(self.provenance)


def load_stored(name: str, profile: str = "book", root: str | Path | None = None, **overrides: Any) -> StoredResult:
    """Rebuild the stored result of experiment ``name`` for ``profile`` from its committed folder.

    The experiment's code runs with every unit read from the folder; nothing is trained.

    Raises:
        FileNotFoundError: no stored run (the message gives the command that makes it).
        StoredResultMismatch: the folder was made with another configuration (its settings differ
            from ``make_config(name, profile, **overrides)``; the message lists the differences).
        StoredResultIncomplete: a unit is missing.
    """
    path = stored_dir(name, profile, root)
    cfg = make_config(name, profile, **overrides)
    command = f"python -m ashlib run {name} --profile {profile} --out results/{profile}/{name}"
    if not (path / "run.json").is_file():
        raise FileNotFoundError(f"no stored run of {name} for profile {profile} in {path}; make it with: {command}")
    try:
        store = _ReadOnlyStore(path, name, cfg, write=False, log=lambda msg: None)
    except RunConfigMismatch as exc:
        raise StoredResultMismatch(f"{exc}. The {profile} profile's settings changed since the run was stored: "
                                   f"repeat it with: {command}") from None
    prov = read_provenance(path)
    if prov is None:
        raise StoredResultIncomplete(f"{path}: no provenance.json; a stored run must say what produced it "
                                     f"(rerun: {command})")
    missing = [k for k in PROVENANCE_KEYS if k not in prov]
    if missing:
        raise StoredResultIncomplete(f"{path}/provenance.json lacks {', '.join(missing)}")
    result = get_experiment(name).run(cfg, progress=False, store=store)
    return StoredResult(name, result, cfg, prov, path)
