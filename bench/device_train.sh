#!/usr/bin/env bash
# Retrain both built-in models with their default recipes on the fixed 80% split (digits.split_indices),
# side by side on one lent GPU; store the weights as fp16 safetensors (as shipped) and pack the two pipeline
# folders into $OUT/models.tar (no checkpoints), with the training summaries and logs beside it.
# The code comes from a clean `git archive` of the committed tree in SRC (the working tree that travels may hold
# others' unfinished edits):
#   rm -rf .devtmp/src && mkdir -p .devtmp/src && git archive HEAD diffcli presets | tar -x -C .devtmp/src
#   run(command="bash bench/device_train.sh", carry=[".whl", ".devtmp/src"], timeout_s=420)
# Smoke test on a CPU: DEVICE=cpu EXTRA="--steps 4 --vae-steps 2 --subset 64" OUT=/tmp/o bash bench/device_train.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
site=""
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  site=/tmp/site:
fi
out="${OUT:-bench/results}"; mkdir -p "$out"; out=$(cd "$out" && pwd)
cd "${SRC:-.devtmp/src}" || exit 1
export PYTHONPATH="$site$PWD"
rm -rf models/digits models/digits-text models/.digits-checkpoints models/.digits-text-checkpoints
python3 -c "import torch, diffusers, transformers, sklearn; print('torch', torch.__version__, 'diffusers', diffusers.__version__,
'transformers', transformers.__version__, 'sklearn', sklearn.__version__,
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')" | tee "$out/env.txt"
start=$(date +%s)
for target in digits digits-text; do
  # default recipe: no --steps/--batch-size/--lr/--seed; the default split is the 80% "train" split
  ( s=$(date +%s); timeout "${LIMIT:-330}" python3 -m diffcli train $target -o models/$target --device "${DEVICE:-cuda}" \
      ${EXTRA:-} --quiet --json > "$out/train-$target.json" 2> "$out/train-$target.log"
    echo "$target: exit $? after $(( $(date +%s) - s )) s" | tee -a "$out/train-$target.log" ) &
done
wait
echo "both trained in $(( $(date +%s) - start )) s (side by side)" | tee -a "$out/env.txt"
cat "$out"/train-*.json
[ -d models/digits ] && [ -d models/digits-text ] || { echo "a model is missing"; exit 1; }
python3 - models/digits models/digits-text <<'PY'
"""Store every floating-point tensor as fp16, as the shipped weights are (they load as fp32)."""
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

for folder in sys.argv[1:]:
    for path in sorted(Path(folder).rglob("*.safetensors")):
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
        print("fp16:", path, len(tensors), "tensors")
PY
tar -cf "$out/models.tar" models/digits models/digits-text && ls -la "$out"
