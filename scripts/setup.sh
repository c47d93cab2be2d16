#!/usr/bin/env bash
# Set up qnn_plugin in a virtual environment (default .venv) and check that it works.
#   bash scripts/setup.sh            # CPU machine: torch 2.13.0 CPU wheel
#   QNN_VENV=none bash scripts/setup.sh   # install into the current Python (e.g. a GPU image
#                                         # that already has a CUDA torch)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${QNN_VENV:-.venv}
if [ "$VENV" != "none" ]; then
  # --system-site-packages: a torch the machine already has (a GPU image's CUDA build) stays visible
  [ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
  PY="$VENV/bin/python"
else
  PY=python3
fi
PIP="$PY -m pip --disable-pip-version-check -q"

# 1. torch: keep one that is already there (a GPU machine's CUDA build); otherwise the pinned
#    CPU wheel. Never ask for an unpinned torch: that downloads several GB of CUDA packages.
if ! $PY -c "import torch" 2>/dev/null; then
  $PIP install "torch==${QNN_TORCH_VERSION:-2.13.0}"
fi
# 2. auto-lirpa 0.3 pins torch<1.13, torchvision<0.14, pylint, pytest-order, ninja; onnx2torch
#    pins torchvision (a CUDA build pinned to another torch). Both work without those (see
#    qnn_plugin/compat.py), so install them without their dependency metadata.
$PIP install --no-deps "auto-lirpa==0.3" "onnx2torch==1.5.15"
# 3. the package itself with what it really imports, and the test tools
$PIP install -e ".[test]"
$PY -c "import qnn_plugin, torch; print('qnn_plugin', qnn_plugin.__version__, 'torch', torch.__version__, 'fixes:', ', '.join(qnn_plugin.compat.apply()))"
