#!/usr/bin/env bash
# The test command (README): installs the light CPU route for torch + sam2 when missing,
# then runs the whole suite. Run it inside the virtual environment that has treemem[dev].
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import torch, sam2" >/dev/null 2>&1; then
  # CPU torch (local wheel where the machine has one), then sam2 without its CUDA/torchvision
  # extras: its video-predictor path needs neither (README, "Install").
  python -m pip install -q "torch==2.13.0" setuptools
  python -m pip install -q numpy tqdm hydra-core iopath pillow av
  SAM2_BUILD_CUDA=0 python -m pip install -q --no-deps --no-build-isolation "sam2==1.1.0"
fi
python -m pytest "$@"
