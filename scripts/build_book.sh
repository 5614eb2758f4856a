#!/usr/bin/env bash
# Set everything up, then build the book into _build/html from the stored notebook outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MPLBACKEND=Agg
.venv/bin/jupyter-book build . --warningiserror --keep-going
