#!/usr/bin/env bash
# Set everything up, then build the book into _build/html from the stored notebook outputs
# (no notebook is executed: see _config.yml). Warnings are errors.
# Afterwards check that the site is self-contained: no script or stylesheet from another host
# (MathJax is served from _build/html/_static/mathjax, shipped by sphinx-mathjax-offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The offline MathJax comes from PyPI; install it here too in case the environment predates it.
if ! .venv/bin/python -c "import importlib; importlib.import_module('sphinx-mathjax-offline')" >/dev/null 2>&1; then
  echo "[build] installing sphinx-mathjax-offline"
  .venv/bin/python -m pip install -q "sphinx-mathjax-offline>=0.0.2"
fi
export MPLBACKEND=Agg
.venv/bin/jupyter-book build . --all --warningiserror --keep-going
.venv/bin/python scripts/check_book_offline.py _build/html
