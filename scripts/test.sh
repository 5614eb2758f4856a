#!/usr/bin/env bash
# Set everything up, then run every test: the library tests and the notebooks under nbval.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/python_env.sh   # ASHLIB_PY: .venv, the active conda env or ASHLIB_PYTHON
export ASHLIB_PROFILE=${ASHLIB_PROFILE:-quick}
export MPLBACKEND=Agg
# two pytest workers on two cores: one thread each, or the OpenMP pools of the two notebook
# kernels oversubscribe the cores and run several times slower
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
args=(tests --doctest-modules ashlib)
if compgen -G "notebooks/*.ipynb" >/dev/null; then
  args+=(--nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg notebooks)
fi
"$ASHLIB_PY" -m pytest -n 2 --dist loadfile -q "${args[@]}" "$@"
