"""Profiles: ``quick`` (minutes on 2 CPU cores; what CI re-executes), ``book`` (what the book shows:
up to about an hour per experiment on 2 CPU cores, its results committed under ``results/book/``
with provenance; see :mod:`ashlib.experiments.stored`) and ``paper`` (the paper's hyperparameters
and data sets, meant for a GPU).

The profile comes from an explicit argument, else the ``ASHLIB_PROFILE`` environment variable,
else ``quick``.
"""

from __future__ import annotations

import os

__all__ = ["PROFILES", "DEFAULT_PROFILE", "current_profile"]

PROFILES = ("quick", "book", "paper")
DEFAULT_PROFILE = "quick"


def current_profile(profile: str | None = None) -> str:
    """The profile to use: ``profile`` if given, else ``$ASHLIB_PROFILE``, else ``"quick"``.

    Raises:
        ValueError: the name is not one of :data:`PROFILES`.
    """
    name = profile if profile is not None else os.environ.get("ASHLIB_PROFILE", DEFAULT_PROFILE)
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(f"profile={name!r}; allowed: {', '.join(PROFILES)} (set by argument or ASHLIB_PROFILE)")
    return name
