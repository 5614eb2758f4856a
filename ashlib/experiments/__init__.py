"""The papers' experiments as code, each with a ``quick`` and a ``paper`` profile.

    >>> from ashlib.experiments import run_experiment
    >>> result = run_experiment("farhadi-table1", profile="quick")   # doctest: +SKIP

or from a shell: ``python -m ashlib run farhadi-table1 --profile quick --out runs/t1``.
"""

from __future__ import annotations

import importlib
import os

from .profiles import DEFAULT_PROFILE, PROFILES, current_profile
from .registry import (Experiment, ExperimentResult, environment, experiment_names, get_experiment, make_config,
                       register, run_experiment)

#: Modules that register experiments when imported; add new experiment modules here.
BUILTIN_MODULES = ("ashlib.experiments.farhadi", "ashlib.experiments.ash_resnet", "ashlib.experiments.ash_dcgan",
                   "ashlib.experiments.ash_cost", "ashlib.experiments.ash_seg")

__all__ = ["PROFILES", "DEFAULT_PROFILE", "current_profile", "Experiment", "ExperimentResult", "register",
           "get_experiment", "experiment_names", "make_config", "run_experiment", "environment",
           "load_experiment_modules", "BUILTIN_MODULES"]


def load_experiment_modules() -> None:
    """Import the built-in experiment modules and those listed in ``$ASHLIB_EXPERIMENTS``."""
    extra = [m.strip() for m in os.environ.get("ASHLIB_EXPERIMENTS", "").split(",") if m.strip()]
    for mod in (*BUILTIN_MODULES, *extra):
        importlib.import_module(mod)


load_experiment_modules()
