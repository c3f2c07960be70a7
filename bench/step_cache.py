"""Step caching (`step_cache: N`): UNet FLOPs and time per image on the SD 1.5 architecture, quality on digits-text.

    python bench/step_cache.py            # SD 1.5 architecture, 512x512, CFG, 10 steps; digits-text 32 per digit
    python bench/step_cache.py --quick    # smoke test (< 30 s): a small UNet at 64x64, 3 steps; 2 per digit, 10 steps

FLOPs: torch.utils.flop_counter.FlopCounterMode on one full and one cached UNet call (batch 2: CFG), on
the meta device (nothing is computed, so this part is instant at any size); per step of an N-step run
= (full x ceil(steps/N) + cached x the rest) / steps. Time: whole pipeline calls (random weights from
bench/sd15-architecture.json, PNDM as published, VAE decode included, random prompt embeddings), median
of --repeats after a 1-step warm-up, same seed for every N; each UNet call is timed too, split by full
and cached. Quality: `diffcli.builtin.quality.digits_text_quality` (the held-out judge) on the built-in
digits-text model, DDIM 50 steps, guidance 4, the same seeds for every N: per-digit accuracy, the
share of samples that are both correct and confident, the judge's mean confidence, and how far the
pixels moved from N=1's (mean and max over the first 8 samples of each digit). Writes bench/results/step_cache.json (full runs).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def unet_flops(unet_cfg: dict, size: int, intervals: list[int]) -> dict:
    """GFLOPs of a full and a cached UNet call (batch 2, meta tensors), per interval N."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from diffcli.run.step_cache import disable_step_cache, enable_step_cache

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
    latent = size // 8
    sample = torch.empty(2, unet_cfg["in_channels"], latent, latent, device="meta")
    context = torch.empty(2, 77, unet_cfg["cross_attention_dim"], device="meta")

    def counted(timestep: int) -> float:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            unet(sample, timestep, context)  # a Python timestep: meta tensors have no values
        return counter.get_total_flops() / 1e9

    full = counted(999)
    enable_step_cache(types.SimpleNamespace(unet=unet), max(2, max(intervals)))
    assert counted(999) == full  # the first call of a run is a full one
    cached = counted(979)
    disable_step_cache(unet)
    return {"full_gflops": round(full, 1), "cached_gflops": round(cached, 1),
            "cached_share": round(cached / full, 4)}


def per_step_gflops(flops: dict, interval: int, steps: int) -> float:
    full = math.ceil(steps / interval)
    return (flops["full_gflops"] * full + flops["cached_gflops"] * (steps - full)) / steps


def timings(pipe: Any, intervals: list[int], steps: int, size: int, repeats: int) -> dict:
    """Seconds per image (whole call) and mean seconds per full / cached UNet call, for each N."""
    from diffcli.run.step_cache import ATTRIBUTE, disable_step_cache, enable_step_cache
    from sd15 import _call

    calls: list[tuple[bool, float]] = []
    started: list[float] = []
    pipe.unet.register_forward_pre_hook(lambda *_: started.append(time.perf_counter()))

    def after(module: Any, *_: Any) -> None:
        cache = getattr(module, ATTRIBUTE, None)
        calls.append((cache is None or cache.full, time.perf_counter() - started.pop()))

    pipe.unet.register_forward_hook(after)
    out: dict = {}
    for interval in intervals:
        disable_step_cache(pipe.unet)
        enable_step_cache(pipe, interval)
        _call(pipe, 1, size, 1, output_type="pt")  # warm-up
        runs = []
        calls.clear()
        for _ in range(repeats):
            begin = time.perf_counter()
            _call(pipe, steps, size, 1, output_type="pt")
            runs.append(time.perf_counter() - begin)
        full = [s for is_full, s in calls if is_full]
        cached = [s for is_full, s in calls if not is_full]
        out[str(interval)] = {"s_per_image": round(statistics.median(runs), 3),
                              "unet_calls_per_image": len(calls) // repeats,
                              "full_calls_per_image": len(full) // repeats,
                              "s_per_full_call": round(statistics.mean(full), 4) if full else None,
                              "s_per_cached_call": round(statistics.mean(cached), 4) if cached else None}
        print(f"  N={interval}: {json.dumps(out[str(interval)])}", file=sys.stderr, flush=True)
    disable_step_cache(pipe.unet)
    base = out[str(intervals[0])]["s_per_image"]
    for record in out.values():
        record["speedup"] = round(base / record["s_per_image"], 3)
    return out


def quality(intervals: list[int], per_digit: int, steps: int) -> dict:
    """digits_text_quality at each N, same seeds (the pipeline loaded with `step_cache: N`)."""
    from diffcli.builtin import quality as q
    from diffcli.plan.presets import Preset
    from diffcli.run.pipelines import load_pipeline

    import numpy as np

    out, reference = {}, None
    original = q._pipeline
    try:
        for interval in intervals:
            q._pipeline = lambda model, device, scheduler, n=interval: load_pipeline(  # noqa: E731
                Preset(model=str(model), device=device, scheduler=scheduler, step_cache=n), None).pipe
            begin = time.perf_counter()
            result = q.digits_text_quality(REPO / "models" / "digits-text", 4.0, per_digit=per_digit, steps=steps,
                                           scheduler="ddim")
            out[str(interval)] = {key: result[key] for key in ("mean_accuracy", "min_accuracy", "accuracy",
                                                               "mean_confident_correct", "confident_correct",
                                                               "mean_confidence")}
            pixels = result["pixels"].astype(np.int16)
            reference = pixels if reference is None else reference
            out[str(interval)]["pixels_vs_first"] = {"mean": round(float(np.abs(pixels - reference).mean()), 3),
                                                     "max": int(np.abs(pixels - reference).max())}
            out[str(interval)]["seconds"] = round(time.perf_counter() - begin, 2)
            print(f"  N={interval}: accuracy {result['mean_accuracy']:.3f}, confident-correct "
                  f"{result['mean_confident_correct']:.3f}", file=sys.stderr, flush=True)
    finally:
        q._pipeline = original
    return out


def table(results: dict) -> str:
    rows = [f"{'N':>3}{'GFLOPs/step':>13}{'s/image':>10}{'speedup':>9}{'full s':>9}{'cached s':>10}"
            f"{'accuracy':>10}{'conf-correct':>14}{'confidence':>12}{'px vs N=1':>11}"]
    for key, flops in results["flops_per_step"].items():
        t = results["time"].get(key, {})
        qual = results["quality"].get(key, {})
        fmt = lambda v, spec: format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))  # noqa: E731
        rows.append(f"{key:>3}{flops:>13.1f}{fmt(t.get('s_per_image'), '10.2f')}{fmt(t.get('speedup'), '9.2f')}"
                    f"{fmt(t.get('s_per_full_call'), '9.3f')}{fmt(t.get('s_per_cached_call'), '10.3f')}"
                    f"{fmt(qual.get('mean_accuracy'), '10.3f')}{fmt(qual.get('mean_confident_correct'), '14.3f')}"
                    f"{fmt(qual.get('mean_confidence'), '12.4f')}"
                    f"{fmt(qual.get('pixels_vs_first', {}).get('mean'), '11.2f')}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small UNet, 64x64, 3 steps; 2 per digit, 10 steps")
    parser.add_argument("--intervals", type=int, nargs="+", default=[1, 2, 3, 5])
    parser.add_argument("--steps", type=int, help="SD 1.5 steps per image (default 10; quick 3)")
    parser.add_argument("--repeats", type=int, help="timed calls per N (default 2; quick 1)")
    parser.add_argument("--per-digit", type=int, help="digits-text samples per digit (default 32; quick 2)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--skip-time", action="store_true", help="FLOPs and quality only (no SD 1.5 timing)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    import diffusers
    import torch

    from sd15 import ARCH, build

    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (3 if args.quick else 10)
    size = 64 if args.quick else 512
    arch = json.loads(ARCH.read_text())
    unet_cfg = {k: v for k, v in arch["unet"].items() if not k.startswith("_")}
    print("FLOPs (SD 1.5 UNet, 512x512, batch 2, meta device)", file=sys.stderr, flush=True)
    flops = unet_flops(unet_cfg, 512, args.intervals)
    results: dict = {"torch": torch.__version__, "diffusers": diffusers.__version__, "threads": torch.get_num_threads(),
                     "quick": args.quick, "size": size, "steps": steps, "unet_call_gflops_512": flops,
                     "flops_per_step": {str(n): round(per_step_gflops(flops, n, steps), 1) for n in args.intervals}}
    print(f"time per image ({'small UNet' if args.quick else 'SD 1.5 architecture'}, {size}x{size}, CFG, "
          f"{steps} steps)", file=sys.stderr, flush=True)
    results["time"] = {}
    if not args.skip_time:
        pipe = build(torch.float32, "cpu", tiny=args.quick)
        results["time"] = timings(pipe, args.intervals, steps, size, args.repeats or (1 if args.quick else 2))
        del pipe
    print("quality (digits-text, DDIM, guidance 4)", file=sys.stderr, flush=True)
    results["quality"] = quality(args.intervals, args.per_digit or (2 if args.quick else 32), 10 if args.quick else 50)
    print(json.dumps(results, indent=2))
    print(table(results), file=sys.stderr)
    out = args.json_out or (None if args.quick else REPO / "bench" / "results" / "step_cache.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
