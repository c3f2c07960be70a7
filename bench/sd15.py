"""An SD 1.5-architecture pipeline with random weights (no download), for speed measurements.

    python bench/sd15.py --device cuda --dtype float16 --steps 20 --levers sdpa channels_last compile
    python bench/sd15.py --device cpu --steps 2 --levers sdpa channels_last

Builds the published component configs (bench/sd15-architecture.json), feeds random prompt
embeddings (no tokenizer needed) and times the denoising loop: seconds per step and it/s,
classifier-free guidance on (UNet batch 2), 512x512. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ARCH = Path(__file__).with_name("sd15-architecture.json")


def build(dtype, device):
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    arch = json.loads(ARCH.read_text())
    strip = lambda d: {k: v for k, v in d.items() if not k.startswith("_")}  # noqa: E731
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**strip(arch["unet"]))
    vae = AutoencoderKL(**strip(arch["vae"]))
    scheduler = PNDMScheduler(**strip(arch["scheduler"]))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)


def time_loop(pipe, steps, device, size=512, repeats=1):
    import torch

    gen = torch.Generator("cpu").manual_seed(0)
    embeds = torch.randn(1, 77, 768, generator=gen).to(device=device, dtype=pipe.unet.dtype)
    marks = []

    def callback(_pipe, i, t, kwargs):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        marks.append(time.perf_counter())
        return {}

    results = []
    for _ in range(repeats):
        marks.clear()
        with torch.inference_mode():
            pipe(prompt_embeds=embeds, negative_prompt_embeds=torch.zeros_like(embeds), num_inference_steps=steps,
                 height=size, width=size, guidance_scale=7.5, output_type="latent", callback_on_step_end=callback,
                 generator=torch.Generator("cpu").manual_seed(0))
        # step times between callbacks (the first step includes set-up; skip it when possible)
        gaps = [b - a for a, b in zip(marks, marks[1:])] or [marks[0]]
        results.append(sorted(gaps)[len(gaps) // 2])
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--levers", nargs="+", default=["sdpa"], help="sdpa | math | channels_last | compile")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    import torch

    from diffcli.run.levers import apply_levers
    from diffcli.plan.presets import Preset

    dtype = getattr(torch, args.dtype)
    pipe = build(dtype, args.device)
    params = sum(p.numel() for p in pipe.unet.parameters())
    out = {"device": args.device, "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
           "dtype": args.dtype, "size": args.size, "steps": args.steps, "unet_parameters": params,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "cases": {}}
    base_unet = pipe.unet
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    for lever in args.levers:
        pipe.unet = base_unet
        pipe.unet.to(memory_format=torch.contiguous_format)
        preset = Preset(model="-", channels_last=lever in ("channels_last", "compile"),
                        compile="default" if lever == "compile" else "none")
        started = time.perf_counter()
        apply_levers(pipe, preset, torch.device(args.device))
        # "math": force SDPA's reference kernel, to show what the fused default kernel buys
        backend = sdpa_kernel(SDPBackend.MATH) if lever == "math" else contextlib.nullcontext()
        with backend:
            if lever == "compile":
                time_loop(pipe, 3, args.device, args.size)  # compile + warm-up
            seconds = time_loop(pipe, args.steps, args.device, args.size)
        out["cases"][lever] = {"s_per_step": round(seconds, 4), "it_per_s": round(1 / seconds, 2),
                               "wall_s": round(time.perf_counter() - started, 1)}
        print(json.dumps({lever: out["cases"][lever]}), file=sys.stderr, flush=True)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")


if __name__ == "__main__":
    main()
