#!/usr/bin/env bash
# Set everything up, then build the book into _build/html from the stored notebook outputs
# (no notebook is executed: see _config.yml). Warnings are errors.
# Afterwards check that the site is self-contained: no script or stylesheet from another host
# (MathJax is served from _build/html/_static/mathjax, shipped by sphinx-mathjax-offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/python_env.sh   # ASHLIB_PY: .venv, the active conda env or ASHLIB_PYTHON
export MPLBACKEND=Agg
"$("$ASHLIB_PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/jupyter-book" build . --all --warningiserror --keep-going
"$ASHLIB_PY" scripts/check_book_offline.py _build/html
