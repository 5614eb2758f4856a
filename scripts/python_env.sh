# Sourced (from the repository root) by setup.sh, test.sh and build_book.sh: chooses the Python
# environment the two commands use and sets
#   ASHLIB_PY   the interpreter
#   ASHLIB_ENV  venv | conda | python  (which rule chose it)
# Rules, first match wins:
#   1. ASHLIB_PYTHON=/path/to/python (or a command name): that interpreter, no .venv;
#   2. an active conda environment ($CONDA_PREFIX) in which this checkout is installed, as
#      `conda env create -f environment.yml` does: its python, no .venv;
#   3. .venv/ in the repository, created by setup.sh (the default, and CI's).
if [ -n "${ASHLIB_PYTHON:-}" ]; then
  ASHLIB_PY=$(command -v "$ASHLIB_PYTHON") \
    || { echo "[setup] ASHLIB_PYTHON=$ASHLIB_PYTHON is not an interpreter" >&2; exit 1; }
  ASHLIB_ENV=python
elif [ -n "${CONDA_PREFIX:-}" ] && [ -x "$CONDA_PREFIX/bin/python" ] \
    && "$CONDA_PREFIX/bin/python" -I -c '
import importlib.util, os, sys
s = importlib.util.find_spec("ashlib")
sys.exit(not (s and s.origin and os.path.dirname(os.path.realpath(s.origin)) == os.path.realpath("ashlib")))
' 2>/dev/null; then
  ASHLIB_PY=$CONDA_PREFIX/bin/python
  ASHLIB_ENV=conda
else
  ASHLIB_PY=.venv/bin/python
  ASHLIB_ENV=venv
fi
