#!/usr/bin/env bash
# How the shipped digits models were trained on a lent GPU: two recipes side by side
# (a: batch 64 / 4000 steps, the CPU-friendly default; b: batch 128 / 6000 steps), each judged
# by bench/quality.py. Results (folders, logs, figures) land in $OUT.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
out="${OUT:-bench/results}"; mkdir -p "$out" work
python3 -c "import torch, diffusers; print(torch.__version__, diffusers.__version__, torch.cuda.get_device_name())"
start=$(date +%s)
for recipe in "a 64 4000" "b 128 6000"; do
  set -- $recipe
  for target in digits digits-text; do
    timeout 330 python3 -m diffcli train $target -o work/$1/$target --batch-size $2 --steps $3 --device cuda \
      --quiet --json > "$out/train-$target-$1.json" 2> "work/train-$target-$1.err" &
  done
done
wait
echo "training took $(( $(date +%s) - start )) s"; cat "$out"/train-*.json; tail -3 work/*.err
for r in a b; do
  [ -d work/$r/digits ] && [ -d work/$r/digits-text ] || { echo "recipe $r incomplete"; continue; }
  timeout 120 python3 bench/quality.py --digits work/$r/digits --digits-text work/$r/digits-text --device cuda \
    --guidance 4 1 2 7 --json-out "$out/quality-$r.json" --sheet-dir work/$r/sheets 2>/dev/null | \
    python3 -c "import json,sys; d=json.load(sys.stdin); print('$r', d['digits']['confident_share'], d['digits']['min_class_share'], d['digits']['max_class_share'], [(x['guidance_scale'], x['min_accuracy'], x['mean_accuracy']) for x in d['digits-text']])"
done
tar czf "$out/models.tgz" --exclude='*checkpoints*' work/a work/b 2>/dev/null
ls -la "$out"
