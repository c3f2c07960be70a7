"""digits-flow (flow matching, SD3 family) against digits-text (DDIM, SD 1.x family): accuracy by steps, guidance,
and the step cache's speed and accuracy. Judged by the held-out classifier (diffcli/builtin/judge.py).

    python bench/flow_quality.py                       # 32 samples per digit
    python bench/flow_quality.py --per-digit 8 --quick # smoke run

Each cell is one pipeline call for all digits ("a handwritten digit {n}", image i of a digit seeded seed + i),
the model's preset scheduler, timed with time.perf_counter (CPU, the threads diffcli chooses). Run it on an
otherwise idle machine; it prints a table and writes --json-out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffcli.builtin.quality import digits_text_quality  # noqa: E402
from diffcli.plan.presets import resolve  # noqa: E402


class Scoped:
    """A pipeline whose calls run in diffcli's cache scope (as `sample_txt2img` runs them)."""

    def __init__(self, pipe: object) -> None:
        self.pipe = pipe

    def __call__(self, *args, **kwargs):
        from diffcli.run.transformer_cache import cache_scope

        with cache_scope(getattr(self.pipe, "transformer", None)):
            return self.pipe(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.pipe, name)


def cell(name: str, per_digit: int, steps: int, guidance: float | None = None, step_cache: int = 1) -> dict:
    preset = resolve(name, None).preset
    started = time.perf_counter()
    if step_cache > 1:
        from diffcli.builtin import quality

        original = quality._pipeline

        def cached(model, device, scheduler):
            from diffcli.run.pipelines import load_pipeline

            return Scoped(load_pipeline(preset.replace(device=device, scheduler=scheduler, step_cache=step_cache),
                                        None).pipe)

        quality._pipeline = cached
    try:
        result = digits_text_quality(Path(preset.model), preset.guidance_scale if guidance is None else guidance,
                                     per_digit, steps=steps, scheduler=preset.scheduler,
                                     max_sequence_length=preset.max_sequence_length)
    finally:
        if step_cache > 1:
            quality._pipeline = original
    seconds = time.perf_counter() - started
    result.pop("pixels")
    return {"model": name, "steps": steps, "guidance": result["guidance_scale"], "step_cache": step_cache,
            "mean_accuracy": round(result["mean_accuracy"], 4), "min_accuracy": round(result["min_accuracy"], 4),
            "confident_correct": round(result["mean_confident_correct"], 4), "seconds": round(seconds, 2),
            "memorization": result["memorization"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-digit", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="fewer step counts")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    flow_steps = [2, 4, 8] if args.quick else [2, 4, 8, 12, 20]
    ddim_steps = [4, 8] if args.quick else [4, 8, 12, 20, 50]
    plan = [("digits-flow", n, None, 1) for n in flow_steps] + [("digits-text", n, None, 1) for n in ddim_steps]
    plan += [("digits-flow", 20, 1.0, 1)] + [("digits-flow", 20, None, n) for n in (1, 2, 3)]  # 20: steps to skip
    print(f"{'model':<12} {'steps':>5} {'guid':>5} {'cache':>5} {'mean acc':>9} {'min acc':>8} {'conf+corr':>9} {'s':>7}",
          flush=True)
    rows = []
    for name, steps, guidance, step_cache in plan:  # printed as each finishes
        row = cell(name, args.per_digit, steps, guidance, step_cache)
        rows.append(row)
        print(f"{row['model']:<12} {row['steps']:>5} {row['guidance']:>5g} {row['step_cache']:>5} "
              f"{row['mean_accuracy']:>9.3f} {row['min_accuracy']:>8.3f} {row['confident_correct']:>9.3f} "
              f"{row['seconds']:>7.2f}", flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
