"""Experiments by name: each pairs a config class (with one constructor per profile) and a run function.

To add an experiment, write a module that calls :func:`register` (usually as a decorator on
its run function) and add the module's name to ``BUILTIN_MODULES`` in
``ashlib/experiments/__init__.py``; modules named in the ``ASHLIB_EXPERIMENTS`` environment
variable (comma-separated) are imported too. ``python -m ashlib list`` shows them all.

Contract:

- ``config_cls`` is a dataclass with a classmethod ``for_profile(profile)`` and a field
  ``seeds`` (a tuple of ints);
- ``run(config, progress=True, store=None)`` returns an :class:`ExperimentResult`. ``store``
  is a :class:`ashlib.experiments.runstore.RunStore` (None: keep nothing): the run names each
  unit of its work (a seed, a grid cell) and gets it through ``store.compute(name, fn)``, and
  passes ``store.checkpoint(name)`` to :func:`ashlib.train.fit`, so that a run killed half-way
  resumes where it stopped. Each unit must seed itself. A run function without a ``store``
  parameter still works, without resuming.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import inspect
import io
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..utils.io import atomic_open
from .profiles import current_profile
from .runstore import RunStore

__all__ = ["Experiment", "ExperimentResult", "register", "get_experiment", "experiment_names",
           "make_config", "run_experiment", "run_config", "environment", "OPTIONAL_PACKAGES", "missing_extra"]

#: optional packages (import name -> the ashlib extra that installs them)
OPTIONAL_PACKAGES = {"matplotlib": "experiments", "tqdm": "experiments", "sklearn": "experiments",
                     "mlxtend": "experiments", "sympy": "symbolic", "mpmath": "symbolic"}


def missing_extra(exc: BaseException) -> str | None:
    """For an ImportError of an optional package (raised directly or as the cause of another error):
    a one-line message naming the package and the extra to install; None for any other error."""
    seen: set[int] = set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        name = getattr(err, "name", None) if isinstance(err, ImportError) else None
        top = (name or "").split(".")[0]
        if top in OPTIONAL_PACKAGES:
            extra = OPTIONAL_PACKAGES[top]
            pip_name = {"sklearn": "scikit-learn"}.get(top, top)
            return (f"this needs the optional package {pip_name!r}, which is not installed: "
                    f"pip install 'ashlib[{extra}]' (or pip install {pip_name})")
        err = err.__cause__ or err.__context__
    return None



def _replace_atomically(path: Path, data: bytes) -> None:
    with atomic_open(path) as fh:
        fh.write(data)


def environment(device: str | torch.device | None = None) -> dict[str, Any]:
    """What a reported number ran on: device, torch version, threads, platform."""
    return {
        "device": str(device) if device is not None else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


class ExperimentResult:
    """Base of the results objects: JSON-able dict, tables (rows of dicts) and figures.

    Subclasses implement :meth:`to_dict`, :meth:`tables` and :meth:`figures`; :meth:`write` saves
    ``results.json``, one CSV per table and one PNG per figure.
    """

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def tables(self) -> dict[str, list[dict[str, Any]]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def figures(self) -> dict[str, Any]:
        """name -> matplotlib Figure (default: none)."""
        return {}

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``results.json``, ``verdicts.json`` (when the result has verdicts), ``<table>.csv`` and
        ``<figure>.png`` into ``out_dir``; return the paths.

        Each file is replaced atomically (temporary file, fsync, rename): an interrupted write
        leaves the previous version or none, never half a file."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "results.json"]
        _replace_atomically(paths[0], json.dumps(self.to_dict(), indent=1, default=_jsonable).encode())
        if hasattr(self, "verdicts"):  # read by ashlib.experiments.verdicts.collect_verdicts(results={name: out})
            paths.append(out / "verdicts.json")
            _replace_atomically(paths[-1], json.dumps(list(self.verdicts()), indent=1, default=_jsonable).encode())
        for name, rows in self.tables().items():
            p = out / f"{name}.csv"
            fields: list[str] = []
            for r in rows:
                fields += [k for k in r if k not in fields]
            buf = io.StringIO(newline="")
            w = csv.DictWriter(buf, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
            _replace_atomically(p, buf.getvalue().encode())
            paths.append(p)
        for name, fig in self.figures().items():
            p = out / f"{name}.png"
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
            _replace_atomically(p, png.getvalue())
            paths.append(p)
        return paths


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


@dataclass(frozen=True)
class Experiment:
    """A registered experiment."""

    name: str
    description: str
    config_cls: type
    run: Callable[..., ExperimentResult]


_EXPERIMENTS: dict[str, Experiment] = {}


def register(name: str, description: str, config_cls: type) -> Callable:
    """Decorator registering ``run(config, progress=True) -> ExperimentResult`` under ``name``."""

    def deco(fn: Callable[..., ExperimentResult]) -> Callable[..., ExperimentResult]:
        if name in _EXPERIMENTS and _EXPERIMENTS[name].run is not fn:
            raise ValueError(f"experiment {name!r} is already registered")
        _EXPERIMENTS[name] = Experiment(name, description, config_cls, fn)
        return fn

    return deco


def experiment_names() -> tuple[str, ...]:
    """Names of every registered experiment, sorted."""
    return tuple(sorted(_EXPERIMENTS))


def get_experiment(name: str) -> Experiment:
    """The experiment registered as ``name`` (ValueError listing the known names otherwise)."""
    if name not in _EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(experiment_names()) or '(none)'}")
    return _EXPERIMENTS[name]


def _kind(value: Any) -> str:
    return {bool: "True or False", int: "an integer", float: "a number", str: "text"}.get(type(value), type(value).__name__)


def _coerce_scalar(parsed: Any, current: Any) -> Any:
    """``parsed`` converted to the type of ``current``; raises TypeError when it cannot be."""
    if isinstance(current, bool):
        if isinstance(parsed, bool):
            return parsed
        if isinstance(parsed, str) and parsed.lower() in ("true", "false"):
            return parsed.lower() == "true"
        raise TypeError
    if isinstance(current, int):
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            return parsed
        raise TypeError
    if isinstance(current, float):
        if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            return float(parsed)
        raise TypeError
    if isinstance(current, str):
        return parsed if isinstance(parsed, str) else str(parsed)
    return parsed


def _coerce(value: Any, current: Any, field_name: str, experiment: str = "") -> Any:
    """Turn a command-line string into the type of the field's current value.

    Raises:
        ValueError: the value cannot have that type (``epochs=abc``); the message names the
            setting, the value and the type expected.
    """
    if not isinstance(value, str) or isinstance(current, str):
        parsed = value
    else:
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value  # a bare word, e.g. dataset=digits
    try:
        if isinstance(current, tuple):
            items = tuple(parsed) if isinstance(parsed, (list, tuple)) else (parsed,)
            return tuple(_coerce_scalar(v, current[0]) for v in items) if current else items
        return _coerce_scalar(parsed, current)
    except TypeError:
        what = (f"a tuple of {_kind(current[0]).replace('an integer', 'integers').replace('a number', 'numbers')}"
                if isinstance(current, tuple) else _kind(current))
        prefix = f"{experiment}: " if experiment else ""
        raise ValueError(f"{prefix}setting {field_name}={value!r} is not valid: expected {what} "
                         f"(the profile's value is {current!r})") from None


def make_config(name: str, profile: str | None = None, seeds: tuple[int, ...] | None = None, **overrides: Any):
    """The config of experiment ``name`` for ``profile`` (default: ``$ASHLIB_PROFILE`` or quick),
    with ``seeds`` and any field overridden (strings are parsed like Python literals)."""
    exp = get_experiment(name)
    cfg = exp.config_cls.for_profile(current_profile(profile))
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in fields:
            raise ValueError(f"{name} has no setting {key!r}; settings: {', '.join(sorted(fields))}")
        changes[key] = _coerce(value, getattr(cfg, key), key, name)
    if seeds is not None:
        if isinstance(seeds, str):  # "(0, 1)" from a command line
            seeds = _coerce(seeds, (0,), "seeds", name)
        try:
            changes["seeds"] = tuple(int(s) for s in seeds)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: seeds={seeds!r} is not valid: expected a tuple of integers") from None
    return dataclasses.replace(cfg, **changes)


def run_config(name: str, config: Any, progress: bool = True, out_dir: str | Path | None = None,
               write: bool = True, log: Any = None, store: RunStore | None = None) -> ExperimentResult:
    """Run experiment ``name`` with ``config``, storing each finished unit in ``out_dir`` (when given)
    and resuming the units a previous, interrupted run of the same config stored there.

    Raises:
        RunConfigMismatch: ``out_dir`` holds a run of another experiment or configuration.
    """
    exp = get_experiment(name)
    if store is None:  # ``store``: one the caller opened on out_dir (to read its counts afterwards)
        store = RunStore(out_dir, name, config, write=write, log=log) if out_dir is not None else RunStore.disabled()
    if "store" in inspect.signature(exp.run).parameters:
        result = exp.run(config, progress=progress, store=store)
        if store.resumed:
            store.log(f"{len(store.resumed)} unit(s) resumed from {out_dir}; the others were computed in this run")
        return result
    if store.enabled:
        store.log(f"{name} does not store its units: an interrupted run starts over")
    return exp.run(config, progress=progress)


def run_experiment(name: str, profile: str | None = None, seeds: tuple[int, ...] | None = None,
                   out_dir: str | Path | None = None, progress: bool = True, **overrides: Any) -> ExperimentResult:
    """Build the config, run the experiment and (when ``out_dir`` is given) write its files.

    With ``out_dir`` every finished unit is stored there as it ends, and calling again with the
    same arguments resumes (see :func:`run_config`)."""
    cfg = make_config(name, profile, seeds, **overrides)
    result = run_config(name, cfg, progress=progress, out_dir=out_dir, log=None if progress else (lambda m: None))
    if out_dir is not None:
        result.write(out_dir)
    return result
