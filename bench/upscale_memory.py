"""Peak RSS of `diffcli upscale` on the real x4-upscaler architecture: a 128x128 image made 512x512, with and
without VAE tiling.

    python bench/upscale_memory.py --size 128 --steps 2

Builds stabilityai/stable-diffusion-x4-upscaler's components from bench/sd-x4-upscaler-architecture.json with
random weights (no download; shapes are real, the pictures are noise), saves the pipeline once under
~/.cache/diffcli-bench/, then runs `python -m diffcli upscale` once per mode, each in a fresh process, and reads
that process's peak RSS from the kernel (os.wait4). Peak RSS does not depend on the step count past the first step.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARCH = REPO / "bench" / "sd-x4-upscaler-architecture.json"
CACHE = Path(os.environ.get("DIFFCLI_BENCH_CACHE") or Path.home() / ".cache" / "diffcli-bench")


def build(folder: Path) -> Path:
    """The x4 upscaler with random weights in the standard folder layout (built once per architecture file)."""
    import torch
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel

    sys.path.insert(0, str(REPO))
    from diffcli.builtin.tokenizer import build_tokenizer

    arch = json.loads(ARCH.read_text())
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    torch.manual_seed(0)
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".build-"))
    tokenizer = build_tokenizer(scratch / "words", ["a", "photo", "of", "cat"], max_length=77)
    text_config = {**strip(arch["text_encoder"]), "bos_token_id": tokenizer.bos_token_id,
                   "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}  # this vocabulary's
    pipe = StableDiffusionUpscalePipeline(
        vae=AutoencoderKL(**strip(arch["vae"])), text_encoder=CLIPTextModel(CLIPTextConfig(**text_config)),
        tokenizer=tokenizer, unet=UNet2DConditionModel(**strip(arch["unet"])),
        low_res_scheduler=DDPMScheduler(**strip(arch["low_res_scheduler"])),
        scheduler=DDIMScheduler(**strip(arch["scheduler"])), max_noise_level=arch["model_index"]["max_noise_level"])
    pipe.save_pretrained(scratch / "pipe")
    os.replace(scratch / "pipe", folder)
    shutil.rmtree(scratch, ignore_errors=True)
    return folder


def pipeline_folder() -> Path:
    digest = hashlib.sha256(ARCH.read_bytes()).hexdigest()[:16]
    folder = CACHE / f"sd-x4-upscaler-random-{digest}"
    if not (folder / "model_index.json").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"building {folder} (random weights, 3.3 GB)", file=sys.stderr, flush=True)
        build(folder)
    return folder


def measure(folder: Path, source: Path, tiling: bool, steps: int, out: Path) -> dict:
    """One `diffcli upscale` run in a fresh process: its peak RSS (kernel accounting) and its report."""
    command = [sys.executable, "-m", "diffcli", "upscale", str(source), "--model", str(folder), "--steps", str(steps),
               "--device", "cpu", "--vae-tiling" if tiling else "--no-vae-tiling", "-o", str(out), "--overwrite",
               "--json", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS (ru_maxrss, KiB on Linux)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode:
            raise SystemExit(f"diffcli failed ({process.returncode}): {stderr.read()[-2000:]}")
        report = json.loads(stdout.read())
    image = report["images"][0]
    return {"vae_tiling": image["upscale"]["vae_tiling"], "output": f"{image['width']}x{image['height']}",
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "seconds": round(time.perf_counter() - started, 1),
            "generate_s": report["timings"].get("generate_s"), "command": " ".join(command[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128, help="source side in pixels (the output is 4x)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["untiled", "tiled"], choices=["untiled", "tiled"])
    args = parser.parse_args()
    folder = pipeline_folder()
    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "source.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(source)
        results = []
        for mode in args.modes:  # each in its own process, one after the other
            results.append(measure(folder, source, mode == "tiled", args.steps, Path(scratch) / mode))
            print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"source": f"{args.size}x{args.size}", "steps": args.steps, "results": results}, indent=2))


if __name__ == "__main__":
    main()
