"""Files written so that an interruption leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator, Union


@contextlib.contextmanager
def atomic_open(path: Union[str, Path], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit flush it, fsync it and
    rename it over ``path`` (atomic on POSIX). On an error, or a kill, ``path`` is untouched and
    the temporary file (a hidden ``.NAME.PID.tmp``) is removed or left for readers to ignore."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
