#!/usr/bin/env bash
# GPU levers on an SD 1.5-architecture UNet with random weights, fp16, 512x512, CFG on.
# Runs in under 8 minutes on one H100/H200: it/s with SDPA, + channels_last, + torch.compile.
# Published anchors (A100, diffusers docs): 21.7 it/s SDPA, 44 it/s compiled.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
mkdir -p "$out"
python3 bench/sd15.py --device cuda --dtype float16 --steps 30 --levers sdpa channels_last compile \
  --json-out "$out/gpu-sd15.json"
