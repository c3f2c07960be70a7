"""`backend: openvino` on a transformer denoiser, end to end through diffcli: digits-flow (SD3 family), torch
against OpenVINO, float32 and bfloat16.

    python bench/openvino_transformer.py            # s/step at 32 images (64 with CFG), 8 steps; then -n 64 -b 16
    python bench/openvino_transformer.py --quick    # smoke run (4 images, 3 steps, -n 4): checks the script only

Cases, each in its own process (its own thread pool and peak RSS), threads = every core (an idle machine):
  torch          fp32 (`diffcli`'s default on CPU): the baseline every ratio is against
  torch-bf16     `dtype: bfloat16`
  openvino       `backend: openvino`: the transformer and the VAE decoder converted into an empty cache, f32
  openvino-bf16  the same with `dtype: bfloat16` (bf16 inference precision; refused on a CPU without BF16)
s/step: diffcli's own pipeline (`load_pipeline` with the case's backend and dtype), the preset's guidance and
max_sequence_length, output_type latent (no VAE); the median over --repeats calls of (time from the first step's end
to the last step's end) / (steps - 1), after one warm-up call, whose time (under openvino: conversion and compile)
is reported as first_call_s.
End to end: `diffcli txt2img "a handwritten digit 7" --preset digits-flow --backend B --dtype D -n 64 -b 16 --json`,
images/s from the report's generate_s; openvino twice, into an empty cache (converts) and again (reads it); the
largest pixel difference of each case's PNGs from torch fp32's (same seeds) and the judge's digits.
Writes bench/results/openvino_transformer.json (full runs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# this file's folder holds bench/openvino.py: with bench/ on the path, `import openvino` would import it
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
MODEL = REPO / "models" / "digits-flow"
CASES = {"torch": ("torch", "float32"), "torch-bf16": ("torch", "bfloat16"), "openvino": ("openvino", "float32"),
         "openvino-bf16": ("openvino", "bfloat16")}


def child(case: str, args: argparse.Namespace) -> dict:
    """s/step of one case in this process (see the module docstring)."""
    import torch

    from diffcli.plan.presets import Preset, resolve
    from diffcli.run.pipelines import load_pipeline

    torch.set_num_threads(args.threads)
    backend, dtype = CASES[case]
    preset = resolve("digits-flow", None).preset
    started = time.perf_counter()
    pipe = load_pipeline(Preset(model=str(MODEL), device="cpu", backend=backend, dtype=dtype), None).pipe
    record: dict[str, Any] = {"case": case, "threads": torch.get_num_threads(), "images": args.images,
                              "steps": args.steps, "load_s": round(time.perf_counter() - started, 2)}
    prompts = [f"a handwritten digit {i % 10}" for i in range(args.images)]

    def call(marks: list[float] | None = None) -> None:
        callback = None if marks is None else (lambda *_: marks.append(time.perf_counter()) or {})
        with torch.inference_mode():
            pipe(prompt=prompts, num_inference_steps=args.steps, guidance_scale=preset.guidance_scale,
                 max_sequence_length=preset.max_sequence_length, output_type="latent",
                 generator=torch.Generator("cpu").manual_seed(0), callback_on_step_end=callback)

    started = time.perf_counter()
    call()
    record["first_call_s"] = round(time.perf_counter() - started, 2)
    rates = []
    for _ in range(args.repeats):
        marks: list[float] = []
        call(marks)
        rates.append((marks[-1] - marks[0]) / (len(marks) - 1))
    record["s_per_step"] = round(statistics.median(rates), 4)
    record["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return record


def run_child(case: str, cache: Path) -> dict:
    command = [sys.executable, __file__, *sys.argv[1:], "--child", case]
    result = subprocess.run(command, capture_output=True, text=True, env={**ENV, "DIFFCLI_OPENVINO_CACHE": str(cache)})
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return {"case": case, "failed": f"exit {result.returncode}: {last[:300]}"}


def end_to_end(case: str, args: argparse.Namespace, out: Path, cache: Path) -> tuple[dict, Any]:
    """(images/s record, the PNGs as one uint8 array) of one `diffcli txt2img --preset digits-flow` process."""
    import numpy as np
    from PIL import Image

    backend, dtype = CASES[case]
    command = [sys.executable, "-m", "diffcli", "txt2img", "a handwritten digit 7", "--preset", "digits-flow",
               "-n", str(args.e2e_images), "-b", str(args.e2e_batch), "--backend", backend, "--dtype", dtype,
               "-o", str(out), "--overwrite", "--no-grid", "--quiet", "--json", "--threads", str(args.threads)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**ENV, "DIFFCLI_OPENVINO_CACHE": str(cache)})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"failed": result.stderr.strip()[-300:]}, None
    report = json.loads(result.stdout)
    timings = report["timings"]
    pixels = np.stack([np.asarray(Image.open(image["path"])) for image in report["images"]])
    return {"images": args.e2e_images, "batch": args.e2e_batch, "generate_s": timings["generate_s"],
            "load_s": timings["load_s"], "images_per_s": round(args.e2e_images / timings["generate_s"], 2),
            "process_wall_s": round(wall, 2)}, pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--images", type=int, default=32, help="images per timed call (the transformer sees 2x: CFG)")
    parser.add_argument("--steps", type=int, default=8, help="steps per timed call (the preset's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--e2e-images", type=int, default=64)
    parser.add_argument("--e2e-batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.images, args.steps, args.repeats, args.e2e_images, args.e2e_batch = 4, 3, 1, 4, 4
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args)), flush=True)
        return
    import numpy as np

    from diffcli.builtin.judge import classify

    results: dict[str, Any] = {"quick": args.quick, "model": "digits-flow", "s_per_step": {}, "end_to_end": {}}
    reference = None
    with tempfile.TemporaryDirectory(prefix="diffcli-ov-transformer-") as tmp:
        for case in args.cases:
            cache = Path(tmp) / f"cache-{case}"
            record = run_child(case, cache)
            results["s_per_step"][case] = record
            print(f"{case}: {json.dumps(record)}", file=sys.stderr, flush=True)
            fresh = Path(tmp) / f"e2e-cache-{case}"  # openvino: converts in the first run, reads it in the second
            for suffix in [""] + (["-cached"] if CASES[case][0] == "openvino" else []):
                speed, pixels = end_to_end(case, args, Path(tmp) / f"out-{case}{suffix}", fresh)
                if pixels is not None:
                    if case == "torch":
                        reference = pixels
                    if reference is not None and reference.shape == pixels.shape:
                        speed["max_pixel_difference_vs_torch"] = int(np.abs(pixels.astype(int) - reference).max())
                    speed["judge_sevens"] = int((classify(pixels)[0] == 7).sum())
                results["end_to_end"][case + suffix] = speed
                print(f"{case}{suffix} end to end: {json.dumps(speed)}", file=sys.stderr, flush=True)
    base = results["s_per_step"].get("torch", {}).get("s_per_step")
    for record in results["s_per_step"].values():
        if base and record.get("s_per_step"):
            record["speedup_vs_torch"] = round(base / record["s_per_step"], 2)
    print(json.dumps(results, indent=2))
    out = args.json_out or (None if args.quick else REPO / "bench" / "results" / "openvino_transformer.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
