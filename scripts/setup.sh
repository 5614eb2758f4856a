#!/usr/bin/env bash
# Create .venv (if missing) and install ashlib with the test and book extras.
# TORCH_SPEC chooses the torch build; the default is the CPU wheel we test against.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
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
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "[setup] done: $(.venv/bin/python -c 'import torch, ashlib; print("torch", torch.__version__, "ashlib", ashlib.__version__)')"
