#!/usr/bin/env bash
# GPU levers on an SD 1.5-architecture UNet with random weights: fp16, 512x512, batch 1 with CFG (UNet batch 2),
# 30 steps; it/s of the denoising loop for each lever and its gain vs plain SDPA in the same process, then
# images/s at batch 1/4/8 (25 steps) for the fastest lever. Most important first; stops by itself after
# BUDGET seconds (default 300), so a 420 s call has room for start-up and the copy back. CUDA graphs without
# autotuning (reduce-overhead) come before the max-autotune cases, whose compile did not finish in 224 s on a
# lent H200 (see bench/sd15.py).
# Lent machine (diffusers travels as a wheel, see /work/.library/device/README.md):
#   run(command="bash bench/gpu.sh", carry=[".whl"], timeout_s=420)
# Published anchors: 21.7 it/s SDPA, 44 it/s compiled (A100, diffusers docs); 104.6 it/s stable-fast (H100).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
out="${OUT:-bench/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/gpu.txt"
python3 bench/sd15.py --device cuda --dtype float16 --steps 30 --budget "${BUDGET:-300}" \
  --cases sdpa fuse_qkv channels_last fuse_qkv+channels_last reduce-overhead autotune-cudagraphs autotune \
  --batches 1 4 8 --batch-steps 25 --json-out "$out/gpu-sd15.json" 2> >(tee "$out/gpu-sd15.log" >&2) >/dev/null
