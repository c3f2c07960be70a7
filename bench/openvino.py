"""`backend: openvino` against torch: s/step on the SD 1.5 architecture, digits-text end to end and its accuracy.

    python bench/openvino.py            # SD 1.5 architecture 512x512 CFG, 5 timed steps; digits-text 64 images
    python bench/openvino.py --quick    # smoke test (about 50 s on 2 busy cores): small UNet 128x128; 4 images

SD 1.5 architecture (random weights from bench/sd15-architecture.json, PNDM, CFG so UNet batch
2): each case runs in its own process, so its peak RSS is its own:
  torch        fp32, diffusers' default attention (SDPA): the baseline every ratio is against
  torch-bf16   the pipeline loaded as bfloat16 (`dtype: bfloat16`): oneDNN's BF16/AMX kernels where the CPU has them
  openvino     the UNet converted by diffcli's backend (backends/openvino/backend.py) into an empty cache:
               conversion + save, then compile (f32 inference precision, torch's thread count); then the
               same from the disk cache in a fresh OpenVINODenoiser (read + compile: a later run's start)
  openvino-bf16  the same with `dtype: bfloat16` (bf16 inference precision)
  openvino-int8  the converted model through nncf.compress_weights (INT8_ASYM weights; needs `pip install
               nncf`), compiled the same way, f32 precision (fails when nncf cannot be imported)
Each case but int8 then times the VAE decoder on one 512x512 image (median of 3 after a first decode, which
under openvino converts it), and projects a 20-step image: 20 x s/step + decode.
s/step: the median over --repeats pipeline calls of (time from the first step's end to the last step's
end) / (steps - 1), after a 1-step warm-up; the first call's preparation is reported apart.
digits-text (the built-in model), for torch and openvino, each in float32 and bfloat16: end-to-end
images/s from `diffcli txt2img --preset digits-text -n 64 -b 16 --json` (generate_s; openvino with an
empty cache, which converts, and again, which reads it); then `digits_text_quality` (held-out judge,
DDIM 50 steps, guidance 4, 32 per digit, same seeds) and the pixel difference against torch float32. Writes bench/results/openvino.json (full runs).
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
# this file is bench/openvino.py: with bench/ on the path, `import openvino` would import it, not OpenVINO
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
CASES = ("torch", "torch-bf16", "openvino", "openvino-bf16", "openvino-int8")


def sd15() -> Any:
    """bench/sd15.py as a module (bench/ is kept off sys.path, see above)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sd15", REPO / "bench" / "sd15.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def step_seconds(pipe: Any, steps: int, size: int, repeats: int) -> float:
    """Median seconds per denoising step (see the module docstring)."""
    _call = sd15()._call

    rates = []
    for _ in range(repeats):
        marks: list[float] = []
        _call(pipe, steps, size, 1, lambda *_: marks.append(time.perf_counter()) or {})
        rates.append((marks[-1] - marks[0]) / (len(marks) - 1))
    return statistics.median(rates)


def child(case: str, args: argparse.Namespace) -> dict:
    """One SD 1.5-architecture case in this process."""
    import torch

    bench = sd15()
    _call, build = bench._call, bench.build
    size = 128 if args.quick else 512
    dtype = torch.bfloat16 if case.endswith("-bf16") else torch.float32
    pipe = build(dtype, "cpu", tiny=args.quick)
    record: dict = {"case": case, "dtype": str(dtype), "rss_after_build_mib": rss_mib(),
                    "threads": torch.get_num_threads()}
    if case.startswith("openvino"):
        import openvino as ov

        from diffcli.backends.openvino import backend
        from diffcli.backends.openvino import convert
        from diffcli.plan.presets import Preset

        preset = Preset(model="bench:sd15-architecture", backend="openvino", dtype=str(dtype).split(".")[1])
        original = pipe.unet
        shim = backend.use_openvino(pipe, preset, torch.device("cpu"))
        inputs = shim.example_inputs(batch=2, height=size // 8, width=size // 8, text_length=77)
        started = time.perf_counter()
        if case in ("openvino", "openvino-bf16"):
            shim.runner.prepare(inputs)
            record["convert_s"] = round(time.perf_counter() - started - convert.STATS["compile_s"], 2)
            record["compile_s"] = round(convert.STATS["compile_s"], 2)
            record["conversions"] = convert.STATS["conversions"]
            record["rss_after_prepare_mib"] = rss_mib()
            shim.runner.compiled.clear()  # a later run's start: a fresh module that reads the disk cache
            again = backend.OpenVINODenoiser(original, shim.family, "unet", shim.source)
            started = time.perf_counter()
            again.runner.prepare(inputs)
            record["cached_prepare_s"] = round(time.perf_counter() - started, 2)
            record["disk_hits"] = convert.STATS["disk_hits"]
            pipe.unet = again
        else:
            import nncf

            model = shim.runner.convert(inputs)
            record["convert_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            model = nncf.compress_weights(model)
            record["compress_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            shim.runner.prepare(inputs, model=model)
            record["compile_s"] = round(time.perf_counter() - started, 2)
            record["nncf"] = nncf.__version__
        record["openvino"] = ov.__version__
    started = time.perf_counter()
    _call(pipe, 1, size, 1)  # warm-up
    record["warmup_s"] = round(time.perf_counter() - started, 2)
    record["s_per_step"] = round(step_seconds(pipe, args.steps, size, args.repeats), 3)
    if case != "openvino-int8":  # the VAE decoder (under openvino: converted at the first decode, then timed)
        latents = torch.randn(1, 4, size // 8, size // 8).to(dtype)
        with torch.inference_mode():
            started = time.perf_counter()
            pipe.vae.decode(latents)
            record["vae_first_decode_s"] = round(time.perf_counter() - started, 2)
            times = []
            for _ in range(3):
                started = time.perf_counter()
                pipe.vae.decode(latents)
                times.append(time.perf_counter() - started)
        record["vae_decode_s"] = round(statistics.median(times), 3)
        record["s_per_image_20_steps"] = round(20 * record["s_per_step"] + record["vae_decode_s"], 2)
    record["peak_rss_mib"] = rss_mib()
    return record


def run_child(cases: list[str], cache: Path) -> dict[str, dict]:
    """The cases in one child process (a fresh OpenVINO cache folder); {case: record}."""
    command = [sys.executable, __file__, *sys.argv[1:], "--child", *cases]
    result = subprocess.run(command, capture_output=True, text=True, env={**ENV, "DIFFCLI_OPENVINO_CACHE": str(cache)})
    records = {}
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            record = json.loads(line[7:])
            records[record["case"]] = record
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return {case: records.get(case, {"case": case, "failed": f"exit {result.returncode}: {last[:300]}"})
            for case in cases}


def end_to_end(backend: str, dtype: str, images: int, batch: int, out: Path, cache: Path) -> dict:
    """images/s of `diffcli txt2img --preset digits-text` from its --json timings (every core: an idle machine)."""
    command = [sys.executable, "-m", "diffcli", "txt2img", "a handwritten digit 7", "--preset", "digits-text",
               "-n", str(images), "-b", str(batch), "--backend", backend, "--dtype", dtype, "-o", str(out),
               "--overwrite", "--no-grid", "--quiet", "--json", "--threads", str(os.cpu_count())]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**ENV, "DIFFCLI_OPENVINO_CACHE": str(cache)})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"failed": result.stderr.strip()[-300:]}
    report = json.loads(result.stdout)
    timings = report["timings"]
    return {"images": images, "batch": batch, "threads": report["threads"], "generate_s": timings["generate_s"], "load_s": timings["load_s"],
            "images_per_s": round(images / timings["generate_s"], 2), "process_wall_s": round(wall, 2)}


def accuracy(backend: str, dtype: str, per_digit: int, steps: int) -> dict:
    from diffcli.builtin import quality as q
    from diffcli.plan.presets import Preset
    from diffcli.run.pipelines import load_pipeline

    original = q._pipeline
    q._pipeline = lambda model, device, scheduler: load_pipeline(  # noqa: E731
        Preset(model=str(model), device=device, scheduler=scheduler, backend=backend, dtype=dtype), None).pipe
    try:
        started = time.perf_counter()
        result = q.digits_text_quality(REPO / "models" / "digits-text", 4.0, per_digit=per_digit, steps=steps,
                                       scheduler="ddim")
    finally:
        q._pipeline = original
    keep = ("mean_accuracy", "min_accuracy", "accuracy", "mean_confident_correct", "confident_correct")
    return {**{k: result[k] for k in keep}, "seconds": round(time.perf_counter() - started, 2),
            "pixels": result["pixels"]}


def digits_text(args: argparse.Namespace, tmp: Path) -> tuple[dict, dict]:
    """End-to-end images/s and held-out quality for torch and openvino, float32 and bfloat16."""
    import numpy as np

    images, batch = (4, 4) if args.quick else (64, 16)
    per_digit, steps = (2, 10) if args.quick else (32, 50)
    speed, quality, reference = {}, {"per_digit": per_digit, "steps": steps}, None
    for backend, dtype in [("torch", "float32"), ("torch", "bfloat16"), ("openvino", "float32"),
                           ("openvino", "bfloat16")]:
        name, cache = f"{backend}-{dtype}", tmp / f"cache-digits-{dtype}"
        if backend == "torch":
            speed[name] = end_to_end(backend, dtype, images, batch, tmp / name, cache)
        else:
            speed[name + "-first-run"] = end_to_end(backend, dtype, images, batch, tmp / name, cache)
            speed[name + "-cached"] = end_to_end(backend, dtype, images, batch, tmp / (name + "-2"), cache)
        os.environ["DIFFCLI_OPENVINO_CACHE"] = str(cache)
        result = accuracy(backend, dtype, per_digit, steps)
        pixels = result.pop("pixels").astype(int)
        reference = pixels if reference is None else reference
        differ = np.abs(pixels - reference)
        quality[name] = {**result, "max_pixel_difference_vs_torch_float32": int(differ.max()),
                         "pixels_differing": round(float((differ > 0).mean()), 4)}
        print(f"digits-text {name}: {json.dumps(speed)} quality {result['mean_accuracy']:.3f} / "
              f"{result['mean_confident_correct']:.3f}", file=sys.stderr, flush=True)
    return speed, quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", nargs="+", choices=CASES, help="default: all (--quick: torch openvino openvino-bf16)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per call (SD 1.5 architecture)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-digits", action="store_true", help="only the SD 1.5-architecture cases")
    parser.add_argument("--skip-sd15", action="store_true", help="only the digits-text cases")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", nargs="+", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = min(args.steps, 3), 1
    args.cases = args.cases or (["torch", "openvino", "openvino-bf16"] if args.quick else list(CASES))
    if args.child:
        for case in args.child:
            print("RESULT " + json.dumps(child(case, args)), flush=True)
        return
    results: dict = {"quick": args.quick, "sd15": {}}
    with tempfile.TemporaryDirectory(prefix="diffcli-ov-bench-") as tmp:
        # one process per case (its own peak RSS); --quick: one process for all (peak RSS is then cumulative)
        for group in [] if args.skip_sd15 else [args.cases] if args.quick else [[case] for case in args.cases]:
            for case, record in run_child(group, Path(tmp) / f"cache-{group[0]}").items():
                results["sd15"][case] = record
                print(f"{case}: {json.dumps(record)}", file=sys.stderr, flush=True)
        if not args.skip_digits:
            results["digits_text"], results["digits_text_quality"] = digits_text(args, Path(tmp))
    print(json.dumps(results, indent=2))
    out = args.json_out or (None if args.quick else REPO / "bench" / "results" / "openvino.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
