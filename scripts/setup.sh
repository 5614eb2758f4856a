#!/usr/bin/env bash
# Set up the Python environment of the two commands (chosen by scripts/python_env.sh).
# Default: create .venv (if missing) and install ashlib with the test and book extras;
# TORCH_SPEC chooses the torch build, the default is the CPU wheel we test against.
# With an active conda env made from environment.yml, or ASHLIB_PYTHON=/path/to/python, that
# interpreter is used instead and no .venv is made; it is installed into (same TORCH_SPEC and
# extras) only when scripts/check_environment.py finds something missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ "$ASHLIB_ENV" = venv ]; then
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "[setup] installing $TORCH_SPEC"
    .venv/bin/python -m pip install -q "$TORCH_SPEC"
  fi
  echo "[setup] installing ashlib[test,book]"
  .venv/bin/python -m pip install -q -e ".[test,book]"
else
  echo "[setup] using $ASHLIB_PY ($ASHLIB_ENV environment; no .venv)"
  if ! "$ASHLIB_PY" scripts/check_environment.py installed; then
    if ! "$ASHLIB_PY" -c "import torch" >/dev/null 2>&1; then
      echo "[setup] installing $TORCH_SPEC"
      "$ASHLIB_PY" -m pip install -q "$TORCH_SPEC"
    fi
    echo "[setup] installing ashlib[test,book]"
    "$ASHLIB_PY" -m pip install -q -e ".[test,book]"
  fi
fi
"$ASHLIB_PY" -m ipykernel install --sys-prefix --name python3 >/dev/null
# compile the native kernels into the per-machine cache now, not at the first call of every new
# cache (a machine without a C compiler gets the ATen path; that is not an error here)
"$ASHLIB_PY" -m ashlib build-native || echo "[setup] no native kernels (no C compiler?): the ATen path will run"
echo "[setup] done: $("$ASHLIB_PY" -c 'import torch, ashlib; print("torch", torch.__version__, "ashlib", ashlib.__version__)')"
