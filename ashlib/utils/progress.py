"""One switch for every progress bar of ``ashlib`` (training loops and experiments).

Progress bars are for a person watching a terminal. In a notebook every tqdm update would be
stored as one more output (and ``tqdm.auto`` warns when ipywidgets is missing), in a log file
they are noise. So a bar is shown only when the caller asks for one *and*:

- ``ASHLIB_PROGRESS`` is ``1``/``on``/``true`` (forces bars on, even without a terminal), or
- ``ASHLIB_PROGRESS`` is unset and standard error is a terminal (``isatty()``) and the code
  does not run inside a Jupyter kernel.

``ASHLIB_PROGRESS=0`` (or ``off``/``false``) turns every bar off. The bar is plain
``tqdm.std.tqdm`` (text), never the notebook widget.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

__all__ = ["progress_enabled", "progress_bar"]

_ON = {"1", "on", "true", "yes"}
_OFF = {"0", "off", "false", "no"}


def _in_jupyter_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def progress_enabled(requested: bool = True) -> bool:
    """Whether a progress bar the caller ``requested`` is actually shown (see the module docstring).

    >>> import os; os.environ["ASHLIB_PROGRESS"] = "0"
    >>> progress_enabled(True)
    False
    >>> del os.environ["ASHLIB_PROGRESS"]
    """
    if not requested:
        return False
    env = os.environ.get("ASHLIB_PROGRESS", "").strip().lower()
    if env in _OFF:
        return False
    if env in _ON:
        return True
    stream = sys.stderr
    is_tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    return is_tty and not _in_jupyter_kernel()


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, leave: bool = False,
                 **kwargs: Any):
    """A text ``tqdm`` bar over ``iterable`` (``total``, ``desc`` ... as for tqdm), disabled unless
    :func:`progress_enabled` says a person can see it. A disabled bar still iterates and accepts
    ``update``/``set_postfix``/``close`` calls."""
    from tqdm.std import tqdm  # noqa: PLC0415 (import only when a loop runs)

    return tqdm(iterable, leave=leave, disable=not progress_enabled(enabled), **kwargs)
