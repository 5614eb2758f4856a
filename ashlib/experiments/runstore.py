"""Resumable experiment runs: every finished unit of work is written to the output folder as it ends.

An experiment splits its work into *units* (a seed, a grid cell, one network's training) with
stable names, and asks a :class:`RunStore` for each before computing it::

    row = store.compute("relu-seed0", lambda: train_one(...))       # skipped when already stored
    fit(..., checkpoint=store.checkpoint("relu-seed0"))            # per-epoch resume inside a unit

Layout of the output folder (``--out``)::

    run.json                 the experiment's name, its full config and their fingerprint
    units/<unit>.pt          one finished unit: tensors and plain data (torch.save), read with
                             weights_only=True
    units/<unit>.ckpt.pt     the epoch checkpoint of a unit in progress (removed when it ends),
                             saved after an epoch once ``checkpoint_seconds`` have passed since
                             the last save ($ASHLIB_CHECKPOINT_SECONDS, default 30; 0: every epoch)

Every file is written atomically (a temporary file in the same folder, fsync, rename), so a
run killed at any moment leaves only whole files; a damaged unit file (truncated, or holding
foreign objects) and leftover temporary files are ignored and the unit is recomputed. Opening
a folder that holds a run of another configuration raises :class:`RunConfigMismatch`: results
of two configurations are never mixed. Because each unit seeds itself (never relying on the
RNG state left by the units before it), a resumed run ends with the same results as one that
was never interrupted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ..utils.io import atomic_open
from ..train import CheckpointError, atomic_torch_save, load_fit_checkpoint, safe_torch_load

__all__ = ["RunStore", "RunConfigMismatch", "config_fingerprint", "STORE_FORMAT", "STORE_VERSION"]

STORE_FORMAT = "ashlib.run"
STORE_VERSION = 1
T = TypeVar("T")


class RunConfigMismatch(ValueError):
    """The output folder holds a run of another experiment or configuration."""


def _config_dict(config: Any) -> dict[str, Any]:
    raw = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.loads(json.dumps(raw, sort_keys=True, default=str))  # tuples -> lists, as stored


def config_fingerprint(experiment: str, config: Any) -> str:
    """SHA-256 of the experiment name, the store version and the full config (canonical JSON)."""
    text = json.dumps({"experiment": experiment, "version": STORE_VERSION, "config": _config_dict(config)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


class RunStore:
    """Finished units of one experiment run, kept in ``root`` (see the module docstring).

    Args:
        root: the output folder; ``None`` gives a store that keeps nothing (every unit is computed).
        experiment: the experiment's name.
        config: its config (a dataclass); the run is identified by the fingerprint of both.
        write: False on the processes that must not write (DDP ranks other than 0): they read only.
        log: called with each progress message (default: print to stdout with an ``[ashlib]`` prefix).

    Raises:
        RunConfigMismatch: ``root`` holds a run of another experiment or config.
    """

    def __init__(self, root: str | Path | None, experiment: str = "", config: Any = None, write: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.experiment = experiment
        self.write = write
        self.log = log if log is not None else (lambda msg: print(f"[ashlib] {msg}", flush=True))
        self.resumed: list[str] = []  # units read back from the folder in this session
        self.computed: list[str] = []  # units computed and stored in this session
        self.checkpoint_seconds = float(os.environ.get("ASHLIB_CHECKPOINT_SECONDS", "30"))
        self.fingerprint = config_fingerprint(experiment, config) if config is not None else ""
        self._opened = time.monotonic()
        self._last_progress: dict[str, float] = {}
        if self.root is None:
            return
        self.units_dir = self.root / "units"
        manifest = self.root / "run.json"
        if manifest.is_file():
            self._check_manifest(manifest, config)
        elif write:
            self.units_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(manifest, json.dumps({
                "format": STORE_FORMAT, "version": STORE_VERSION, "experiment": experiment,
                "fingerprint": self.fingerprint, "config": _config_dict(config)}, indent=1, sort_keys=True))
        if write and self.units_dir.is_dir():
            for tmp in self.units_dir.glob(".*.tmp"):  # left by a process killed while writing
                tmp.unlink(missing_ok=True)
        done = sorted(p.name[:-3] for p in self.units_dir.glob("*.pt") if not p.name.endswith(".ckpt.pt")) \
            if self.units_dir.is_dir() else []
        started = sorted(p.name[:-8] for p in self.units_dir.glob("*.ckpt.pt")) if self.units_dir.is_dir() else []
        if done or started:
            self.log(f"resuming {experiment} in {self.root}: {len(done)} finished unit file(s)"
                     + (f", {len(started)} unit(s) with an epoch checkpoint" if started else ""))

    @classmethod
    def disabled(cls) -> "RunStore":
        """A store that keeps nothing: what experiments use when no output folder is given."""
        return cls(None, log=lambda msg: None)

    @property
    def enabled(self) -> bool:
        """True when units are stored in a folder."""
        return self.root is not None

    def _check_manifest(self, manifest: Path, config: Any) -> None:
        try:
            old = json.loads(manifest.read_text())
            fp = old["fingerprint"]
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise RunConfigMismatch(f"{manifest}: not readable as an ashlib run manifest ({type(exc).__name__}); "
                                    f"use another --out folder, or delete {self.root} to start over") from None
        if fp == self.fingerprint:
            return
        if old.get("experiment") != self.experiment:
            what = f"experiment {old.get('experiment')!r}, not {self.experiment!r}"
        else:
            new = _config_dict(config)
            prev = old.get("config", {})
            diffs = [f"{k}: {prev.get(k)!r} there, {new.get(k)!r} now" for k in sorted(set(prev) | set(new))
                     if prev.get(k) != new.get(k)]
            what = "another configuration (" + ("; ".join(diffs) or "another store version") + ")"
        raise RunConfigMismatch(f"{self.root} holds a run of {what}; results of different configurations are never "
                                f"mixed: use another --out folder, or delete {self.root} to start over")

    # ------------------------------------------------------------------ units

    def unit_path(self, name: str) -> Path:
        """The file of finished unit ``name``."""
        if self.root is None:
            raise ValueError("this RunStore keeps nothing (root=None)")
        return self.units_dir / (re.sub(r"[^A-Za-z0-9._=+-]", "_", name) + ".pt")

    def get(self, name: str) -> Any | None:
        """The stored value of unit ``name``, or None when it is not finished (or its file is damaged)."""
        if self.root is None:
            return None
        path = self.unit_path(name)
        if not path.is_file():
            return None
        try:
            env = safe_torch_load(path, what="stored unit")
            if not (isinstance(env, dict) and env.get("format") == STORE_FORMAT + ".unit"
                    and env.get("unit") == name and env.get("fingerprint") == self.fingerprint):
                raise CheckpointError(f"{path}: not a unit of this run")
        except CheckpointError as exc:
            self.log(f"ignoring {path} ({str(exc).splitlines()[0][:160]}); unit {name} is computed again")
            return None
        self.resumed.append(name)
        self.log(f"resumed {name} (stored in {path.name})")
        return env["value"]

    def put(self, name: str, value: Any) -> None:
        """Store the finished unit ``name`` (tensors and plain data) and drop its epoch checkpoint."""
        if self.root is None or not self.write:
            return
        atomic_torch_save({"format": STORE_FORMAT + ".unit", "unit": name, "fingerprint": self.fingerprint,
                           "value": value}, self.unit_path(name))
        self.computed.append(name)
        self._ckpt_path(name).unlink(missing_ok=True)

    def compute(self, name: str, fn: Callable[[], T]) -> T:
        """The stored value of unit ``name``; else ``fn()``, stored as it returns."""
        value = self.get(name)
        if value is None:
            value = fn()
            self.put(name, value)
        return value

    def seed_act_units(self, seeds: Iterable[int], acts: Iterable[str],
                       fn: Callable[[str, int, str], T]) -> Iterator[tuple[str, int, T]]:
        """For every seed (outer loop) and activation (inner): ``(act, seed, value)``, where value is
        unit ``"{act}-seed{seed}"`` read from the store, or ``fn(act, seed, unit)`` stored as it returns."""
        acts = tuple(acts)
        for seed in seeds:
            for act in acts:
                unit = f"{act}-seed{seed}"
                yield act, seed, self.compute(unit, lambda: fn(act, seed, unit))

    # ------------------------------------------------------------------ epoch checkpoints inside a unit

    def _ckpt_path(self, name: str) -> Path:
        p = self.unit_path(name)
        return p.with_name(p.name[:-3] + ".ckpt.pt")

    def _drop_damaged(self, path: Path, exc: Exception) -> None:
        self.log(f"ignoring {path} ({str(exc).splitlines()[0][:160]}); the unit starts over")
        if self.write:
            path.replace(path.with_name(path.name + ".damaged"))

    def checkpoint(self, name: str) -> Path | None:
        """The path :func:`ashlib.train.fit` should checkpoint unit ``name`` to (None without a folder).

        An existing checkpoint that cannot be read as a fit checkpoint is moved aside (``.damaged``)."""
        if self.root is None:
            return None
        path = self._ckpt_path(name)
        if path.is_file():
            try:
                epoch = load_fit_checkpoint(path)["epoch"]
            except CheckpointError as exc:
                self._drop_damaged(path, exc)
            else:
                self.log(f"continuing {name} from its checkpoint after epoch {epoch}")
        return path

    def load_progress(self, name: str) -> Any | None:
        """The state saved by :meth:`save_progress` for the unfinished unit ``name``, or None."""
        if self.root is None:
            return None
        path = self._ckpt_path(name)
        if not path.is_file():
            return None
        try:
            env = safe_torch_load(path)
            if not (isinstance(env, dict) and env.get("fingerprint") == self.fingerprint and env.get("unit") == name):
                raise CheckpointError(f"{path}: not a checkpoint of this run")
        except CheckpointError as exc:
            self._drop_damaged(path, exc)
            return None
        self.log(f"continuing {name} from its checkpoint after epoch {env.get('epoch')}")
        return env["state"]

    def save_progress(self, name: str, state: Callable[[], Any], epoch: int, force: bool = False) -> None:
        """Save the state of an unfinished unit after ``epoch`` (a custom training loop's checkpoint).

        ``state`` is called (to build the state) only when a save is due: ``checkpoint_seconds``
        since the last save, or ``force``."""
        if self.root is None or not self.write:
            return
        now = time.monotonic()
        if not force and now - self._last_progress.get(name, self._opened) < self.checkpoint_seconds:
            return
        self._last_progress[name] = now
        state = state()
        atomic_torch_save({"format": STORE_FORMAT + ".progress", "unit": name, "fingerprint": self.fingerprint,
                           "epoch": epoch, "state": state}, self._ckpt_path(name))
