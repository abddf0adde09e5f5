#!/bin/sh
# Create the venv bench/run.py drives PyTensor from (PyTensor 3.0.7 pins numba<=0.65.1, which
# conflicts with the main environment's numba). Usage: sh bench/pytensor_venv.sh [VENV_DIR]
# bench/run.py finds it through --pytensor-python, $THEANINE_BENCH_PYTENSOR or the default below.
set -eu
VENV="${1:-/work/venvs/pytensor}"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install pytensor
"$VENV/bin/python" -c "import pytensor, numba; print('pytensor', pytensor.__version__, 'numba', numba.__version__)"
echo "venv ready: $VENV/bin/python"
