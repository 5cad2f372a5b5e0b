#!/usr/bin/env bash
# The SAM 3 backend's tests in their own virtual environment (.venv-sam3).
#
# sam3 imports torchvision (through timm), and PyPI's torchvision does not import beside the
# light CPU torch 2.13 the main test environment uses (scripts/test.sh), so the SAM 3 tests
# run on the ordinary route: torch 2.14.1 + torchvision 0.29.1 (a CUDA build that also runs on
# the CPU), then treemem with its [sam3] extra, the install a user makes. Measured on a shared
# 2-core machine: about 5 minutes and 5.6 GB from local copies of torch and torchvision.
# Every other test keeps running in the main environment, where these tests skip (no sam3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-sam3/bin/python ] || ! .venv-sam3/bin/python -c "import sam3, treemem" \
    >/dev/null 2>&1; then
  python3 -m venv .venv-sam3
  .venv-sam3/bin/python -m pip install -q --upgrade pip
  .venv-sam3/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv-sam3/bin/python -m pip install -q -e ".[dev,sam3]"
fi
# A broken sam3 install fails here, loudly, instead of skipping the tests below.
.venv-sam3/bin/python -c "import torchvision, sam3.model.sam3_tracker_base"
.venv-sam3/bin/python -m pytest tests/backends/test_conformance.py -k sam3 "$@"
.venv-sam3/bin/python -m pytest tests/backends/test_sam3_loading.py \
  tests/backends/test_sam3_exactness.py tests/backends/test_sam3_strategies.py "$@"
