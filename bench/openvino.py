"""`backend: openvino` against torch: s/step on the SD 1.5 architecture, digits-text end to end and its accuracy.

    python bench/openvino.py            # SD 1.5 architecture 512x512 CFG, 5 timed steps; digits-text 64 images
    python bench/openvino.py --quick    # smoke test (about 50 s on 2 busy cores): small UNet 128x128; 4 images

SD 1.5 architecture (random weights from bench/sd15-architecture.json, fp32, PNDM, CFG so UNet batch
2): each case runs in its own process, so its peak RSS is its own:
  torch        diffusers' default attention (SDPA)
  openvino     the UNet converted by diffcli's backend (run/openvino_backend.py) into an empty cache:
               conversion + save, then compile (f32 inference precision, torch's thread count); then the
               same from the disk cache in a fresh OpenVINOUNet (read + compile: a later run's start)
  openvino-int8  the converted model through nncf.compress_weights (INT8_ASYM weights; needs `pip install
               nncf`), compiled the same way (skipped when nncf cannot be imported)
s/step: the median over --repeats pipeline calls of (time from the first step's end to the last step's
end) / (steps - 1), after a 1-step warm-up; the first call's preparation is reported apart.
digits-text (the built-in model): end-to-end images/s from `diffcli txt2img --preset digits-text -n 64 -b 16
--json` (generate_s), torch, then openvino with an empty cache (converts) and again (reads the cache);
then `digits_text_quality` (held-out judge, DDIM 50 steps, guidance 4, 32 per digit, same seeds) under
each backend. Writes bench/results/openvino.json (full runs).
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
CASES = ("torch", "openvino", "openvino-int8")


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
    pipe = build(torch.float32, "cpu", tiny=args.quick)
    record: dict = {"case": case, "rss_after_build_mib": rss_mib(), "threads": torch.get_num_threads()}
    if case != "torch":
        import openvino as ov

        from diffcli.run import openvino_backend as backend
        from diffcli.plan.presets import Preset

        preset = Preset(model="bench:sd15-architecture", backend="openvino")
        original = pipe.unet
        shim = backend.use_openvino(pipe, preset, torch.device("cpu"))
        inputs = shim.example_inputs(batch=2, height=size // 8, width=size // 8, text_length=77)
        started = time.perf_counter()
        if case == "openvino":
            shim.prepare(inputs)
            record["convert_s"] = round(time.perf_counter() - started - backend.STATS["compile_s"], 2)
            record["compile_s"] = round(backend.STATS["compile_s"], 2)
            record["conversions"] = backend.STATS["conversions"]
            record["rss_after_prepare_mib"] = rss_mib()
            shim._compiled.clear()  # a later run's start: a fresh module that reads the disk cache
            again = backend.OpenVINOUNet(original, shim.source)
            started = time.perf_counter()
            again.prepare(inputs)
            record["cached_prepare_s"] = round(time.perf_counter() - started, 2)
            record["disk_hits"] = backend.STATS["disk_hits"]
            pipe.unet = again
        else:
            import nncf

            model = shim.convert(inputs)
            record["convert_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            model = nncf.compress_weights(model)
            record["compress_s"] = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            shim.prepare(inputs, model=model)
            record["compile_s"] = round(time.perf_counter() - started, 2)
            record["nncf"] = nncf.__version__
        record["openvino"] = ov.__version__
    started = time.perf_counter()
    _call(pipe, 1, size, 1)  # warm-up
    record["warmup_s"] = round(time.perf_counter() - started, 2)
    record["s_per_step"] = round(step_seconds(pipe, args.steps, size, args.repeats), 3)
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


def end_to_end(backend: str, images: int, batch: int, out: Path, cache: Path) -> dict:
    """images/s of `diffcli txt2img --preset digits-text` from its --json timings."""
    command = [sys.executable, "-m", "diffcli", "txt2img", "a handwritten digit 7", "--preset", "digits-text",
               "-n", str(images), "-b", str(batch), "--backend", backend, "-o", str(out), "--overwrite",
               "--no-grid", "--quiet", "--json"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**ENV, "DIFFCLI_OPENVINO_CACHE": str(cache)})
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"failed": result.stderr.strip()[-300:]}
    timings = json.loads(result.stdout)["timings"]
    return {"images": images, "batch": batch, "generate_s": timings["generate_s"], "load_s": timings["load_s"],
            "images_per_s": round(images / timings["generate_s"], 2), "process_wall_s": round(wall, 2)}


def accuracy(backend: str, per_digit: int, steps: int) -> dict:
    from diffcli.builtin import quality as q
    from diffcli.plan.presets import Preset
    from diffcli.run.pipelines import load_pipeline

    original = q._pipeline
    q._pipeline = lambda model, device, scheduler: load_pipeline(  # noqa: E731
        Preset(model=str(model), device=device, scheduler=scheduler, backend=backend), None).pipe
    try:
        started = time.perf_counter()
        result = q.digits_text_quality(REPO / "models" / "digits-text", 4.0, per_digit=per_digit, steps=steps,
                                       scheduler="ddim")
    finally:
        q._pipeline = original
    keep = ("mean_accuracy", "min_accuracy", "accuracy", "mean_confident_correct", "confident_correct")
    return {**{k: result[k] for k in keep}, "seconds": round(time.perf_counter() - started, 2),
            "pixels": result["pixels"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", nargs="+", choices=CASES, help="default: all (--quick: torch openvino)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per call (SD 1.5 architecture)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-digits", action="store_true", help="only the SD 1.5-architecture cases")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", nargs="+", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats = min(args.steps, 3), 1
    args.cases = args.cases or (["torch", "openvino"] if args.quick else list(CASES))
    if args.child:
        for case in args.child:
            print("RESULT " + json.dumps(child(case, args)), flush=True)
        return
    results: dict = {"quick": args.quick, "sd15": {}}
    with tempfile.TemporaryDirectory(prefix="diffcli-ov-bench-") as tmp:
        # one process per case (its own peak RSS); --quick: one process for all (peak RSS is then cumulative)
        for group in [args.cases] if args.quick else [[case] for case in args.cases]:
            for case, record in run_child(group, Path(tmp) / f"cache-{group[0]}").items():
                results["sd15"][case] = record
                print(f"{case}: {json.dumps(record)}", file=sys.stderr, flush=True)
        if not args.skip_digits:
            images, batch = (4, 4) if args.quick else (64, 16)
            cache = Path(tmp) / "cache-digits"
            results["digits_text"] = {
                "torch": end_to_end("torch", images, batch, Path(tmp) / "torch", cache),
                "openvino_first_run": end_to_end("openvino", images, batch, Path(tmp) / "ov1", cache),
                "openvino_cached": end_to_end("openvino", images, batch, Path(tmp) / "ov2", cache),
            }
            print(f"digits-text: {json.dumps(results['digits_text'])}", file=sys.stderr, flush=True)
            os.environ["DIFFCLI_OPENVINO_CACHE"] = str(cache)
            per_digit, steps = (2, 10) if args.quick else (32, 50)
            torch_q, ov_q = accuracy("torch", per_digit, steps), accuracy("openvino", per_digit, steps)
            import numpy as np

            differ = np.abs(torch_q.pop("pixels").astype(int) - ov_q.pop("pixels").astype(int))
            results["digits_text_quality"] = {"torch": torch_q, "openvino": ov_q, "per_digit": per_digit,
                                              "max_pixel_difference": int(differ.max()),
                                              "pixels_differing": float((differ > 0).mean())}
            print(f"quality: torch {torch_q['mean_accuracy']:.3f} / {torch_q['mean_confident_correct']:.3f}, "
                  f"openvino {ov_q['mean_accuracy']:.3f} / {ov_q['mean_confident_correct']:.3f}", file=sys.stderr)
    print(json.dumps(results, indent=2))
    out = args.json_out or (None if args.quick else REPO / "bench" / "results" / "openvino.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
