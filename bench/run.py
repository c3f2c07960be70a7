"""diffcli against plain diffusers on the same work, in the same run: ratios, not absolute claims.

    python bench/run.py            # full: about 10 minutes on 2 CPU cores
    python bench/run.py --quick    # fewer repetitions and steps

Cases (medians over alternating repetitions; ratio = diffcli / baseline, lower is better):
  startup        `diffcli --help`, `diffcli presets`, `diffcli txt2img --help` wall time (no torch import)
  uncond-process whole processes: `diffcli unconditional` vs a plain DDPMPipeline script, DDPM 1000 steps, 4 images
  uncond-inproc  the same generation in one process (model loaded once for each side)
  txt2img        digits-text, 25 steps, 4 images: diffcli's txt2img vs StableDiffusionPipeline in-process
  trace          denoise-trace --every 50 over 1000 steps vs the same generation without frames
  batch          images/s and peak RSS for --batch-size 1, 4, 16, 64 on the digits model (DDIM 50 steps)
  threads        1 vs 2 (vs all available) torch threads, same generation, separate processes
diffcli writes no grid.png in any case (`grid: false` / --no-grid), so both sides write the same PNGs.
Prints a table and writes bench/results/run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
DIGITS = REPO / "models" / "digits"
DIGITS_TEXT = REPO / "models" / "digits-text"

PLAIN_DDPM = """
import sys, torch
from diffusers import DDPMPipeline
pipe = DDPMPipeline.from_pretrained(sys.argv[1]); pipe.set_progress_bar_config(disable=True)
n, steps, out = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
images = pipe(batch_size=n, num_inference_steps=steps,
              generator=[torch.Generator("cpu").manual_seed(i) for i in range(n)]).images
for i, image in enumerate(images):
    image.save(f"{out}/{i:04d}.png")
"""


def timed(command: list[str]) -> float:
    """Wall seconds of one subprocess, which must succeed."""
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    return seconds


def compare(reps: int, ours, baseline, labels=("diffcli_s", "diffusers_s"), digits: int = 2) -> dict:
    """Time `ours()` and `baseline()` alternately `reps` times; medians and their ratio."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(reps):
        for work, record in ((ours, times[0]), (baseline, times[1])):
            started = time.perf_counter()
            work()
            record.append(time.perf_counter() - started)
    a, b = statistics.median(times[0]), statistics.median(times[1])
    return {labels[0]: round(a, digits), labels[1]: round(b, digits), "ratio": round(a / b, 3)}


def case_startup(reps: int) -> dict:
    out = {}
    for args in (["--help"], ["presets"], ["txt2img", "--help"]):
        runs = [timed([sys.executable, "-m", "diffcli", *args]) for _ in range(reps)]
        out[" ".join(args)] = round(statistics.median(runs), 3)
    return out


def case_uncond_process(reps: int, steps: int) -> dict:
    tmp = Path(tempfile.mkdtemp())

    (tmp / "plain").mkdir()

    def ours() -> None:
        timed([sys.executable, "-m", "diffcli", "unconditional", "--model", str(DIGITS), "--scheduler", "ddpm",
               "--steps", str(steps), "-n", "4", "-b", "4", "-o", str(tmp / "ours"), "--overwrite", "--no-grid", "--quiet"])

    def plain() -> None:
        timed([sys.executable, "-c", PLAIN_DDPM, str(DIGITS), "4", str(steps), str(tmp / "plain")])

    return compare(reps, ours, plain)


def case_uncond_inproc(reps: int, steps: int) -> dict:
    import torch
    from diffusers import DDPMPipeline

    from diffcli.plan.presets import Preset
    from diffcli.run.commands import run_generation
    from diffcli.run.pipelines import load_pipeline

    tmp = Path(tempfile.mkdtemp())
    # grid off: both sides write the same four PNGs
    preset = Preset(model=str(DIGITS), scheduler="ddpm", steps=steps, num_images=4, batch_size=4, device="cpu",
                    output=str(tmp), grid=False)
    loaded = load_pipeline(preset, "unconditional")
    plain = DDPMPipeline.from_pretrained(DIGITS)
    plain.set_progress_bar_config(disable=True)

    def ours() -> None:
        run_generation("unconditional", preset, "unconditional", policy="overwrite", loaded=loaded)

    def baseline() -> None:
        images = plain(batch_size=4, num_inference_steps=steps,
                       generator=[torch.Generator("cpu").manual_seed(i) for i in range(4)]).images
        for i, image in enumerate(images):
            image.save(tmp / f"plain-{i}.png")

    return compare(reps, ours, baseline)


def case_txt2img(reps: int, steps: int) -> dict:
    import torch
    from diffusers import StableDiffusionPipeline

    from diffcli.plan.items import PromptLine
    from diffcli.plan.presets import Preset
    from diffcli.run.commands import run_generation
    from diffcli.run.pipelines import load_pipeline

    tmp = Path(tempfile.mkdtemp())
    preset = Preset(model=str(DIGITS_TEXT), steps=steps, num_images=4, batch_size=4, guidance_scale=4.0, device="cpu",
                    output=str(tmp), grid=False)
    loaded = load_pipeline(preset, "txt2img")
    plain = StableDiffusionPipeline.from_pretrained(DIGITS_TEXT)
    plain.set_progress_bar_config(disable=True)
    prompt = "a handwritten digit 7"

    def ours() -> None:
        run_generation("txt2img", preset, "txt2img", [PromptLine(prompt)], policy="overwrite", loaded=loaded)

    def baseline() -> None:
        images = plain([prompt] * 4, num_inference_steps=steps, guidance_scale=4.0,
                       generator=[torch.Generator("cpu").manual_seed(i) for i in range(4)]).images
        for i, image in enumerate(images):
            image.save(tmp / f"plain-{i}.png")

    return compare(reps, ours, baseline, digits=3)


def case_trace(reps: int, steps: int) -> dict:
    from diffcli.plan.presets import Preset
    from diffcli.run.commands import run_generation
    from diffcli.run.pipelines import load_pipeline

    tmp = Path(tempfile.mkdtemp())
    base = Preset(model=str(DIGITS), scheduler="ddpm", steps=steps, num_images=4, batch_size=4, device="cpu",
                  output=str(tmp / "plain"), grid=False)
    loaded = load_pipeline(base, "unconditional")

    traced = base.replace(every=50, output=str(tmp / "trace"))

    def trace() -> None:
        run_generation("denoise-trace", traced, "unconditional", policy="overwrite", loaded=loaded)

    def no_frames() -> None:
        run_generation("unconditional", base, "unconditional", policy="overwrite", loaded=loaded)

    return compare(reps, trace, no_frames, labels=("trace_s", "no_frames_s"))


def case_batch(sizes: list[int], images: int) -> dict:
    """Images/s of the generation itself (from the --json timings) and the process's peak RSS."""
    out = {}
    tmp = Path(tempfile.mkdtemp())
    for size in sizes:
        count = max(images, size)
        command = [sys.executable, "-c", RSS_WRAPPER, "-m", "diffcli", "unconditional", "--preset", "digits",
                   "-n", str(count), "-b", str(size), "-o", str(tmp / f"b{size}"), "--no-grid", "--quiet", "--json"]
        result = subprocess.run(command, capture_output=True, text=True, env=ENV)
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        lines = result.stdout.strip().splitlines()
        peak_kib = int(lines[-1])
        report = json.loads("\n".join(lines[:-1]))
        seconds = report["timings"]["generate_s"]
        out[str(size)] = {"images": count, "generate_s": seconds, "images_per_s": round(count / seconds, 1),
                          "peak_rss_mib": round(peak_kib / 1024, 1)}
    return out


RSS_WRAPPER = """
import resource, runpy, sys
sys.argv = sys.argv[2:]
try:
    runpy.run_module("diffcli", run_name="__main__")
except SystemExit:
    pass
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def case_threads(reps: int) -> dict:
    tmp = Path(tempfile.mkdtemp())
    counts = sorted({1, 2, os.cpu_count() or 1})
    out = {}
    for count in counts:
        runs = []
        for _ in range(reps):
            result = subprocess.run([sys.executable, "-m", "diffcli", "unconditional", "--preset", "digits", "-n", "16",
                                     "-b", "16", "--threads", str(count), "-o", str(tmp / f"t{count}"), "--overwrite",
                                     "--no-grid", "--quiet", "--json"], capture_output=True, text=True, env=ENV)
            runs.append(json.loads(result.stdout)["timings"]["generate_s"])
        out[str(count)] = round(statistics.median(runs), 3)
    from diffcli.run.threads import default_threads

    out["default"] = default_threads()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", nargs="*")
    parser.add_argument("--json-out", type=Path, default=REPO / "bench" / "results" / "run.json")
    args = parser.parse_args()
    reps = 2 if args.quick else 3
    steps = 200 if args.quick else 1000
    import torch

    results: dict = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "quick": args.quick,
                                 "python": sys.version.split()[0]}}
    cases = {
        "startup": lambda: case_startup(reps),
        "uncond-process": lambda: case_uncond_process(reps, steps),
        "uncond-inproc": lambda: case_uncond_inproc(reps, steps),
        "txt2img": lambda: case_txt2img(reps, 25),
        "trace": lambda: case_trace(reps, steps),
        "batch": lambda: case_batch([1, 4, 16, 64], 64 if not args.quick else 16),
        "threads": lambda: case_threads(reps),
    }
    for name, case in cases.items():
        if args.cases and name not in args.cases:
            continue
        started = time.perf_counter()
        results[name] = case()
        print(f"{name:<15} {json.dumps(results[name])}  ({time.perf_counter() - started:.0f}s)", flush=True)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
