#!/usr/bin/env bash
# bench/gpu_check.py on a lent GPU machine: diffusers (and importlib_metadata) travel as wheels in .whl/.
#   run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=480)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
fi
out="${OUT:-bench/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 bench/gpu_check.py --out "$out" 2>&1 | tee "$out/gpu-check.log"
