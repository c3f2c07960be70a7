"""What a `--preview` decode costs: one call each, not a benchmark (no repeats, no warm-up).

    python bench/preview_decode.py

An SD 1.5-size VAE (bench/sd15-architecture.json, random weights) and one 64x64 latent (a 512x512 image):
the linear latent→RGB preview (`cheap_pixels`, as `--preview` uses it for SD 1.x/SDXL/SD3/Flux), the full VAE
decode, and the VAE on the latent shrunk as `--preview` shrinks it for VAEs without factors.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from diffusers import AutoencoderKL

from diffcli.sinks.pixels import PREVIEW_LATENT_SIDE, cheap_pixels, decode_latents


def timed(label: str, call) -> None:
    started = time.perf_counter()
    call()
    print(f"{label}: {time.perf_counter() - started:.3f} s")


def main() -> None:
    config = json.loads((Path(__file__).parent / "sd15-architecture.json").read_text())["vae"]
    vae = AutoencoderKL.from_config({k: v for k, v in config.items() if not k.startswith("_")}).eval()
    pipe = SimpleNamespace(vae=vae)
    latents = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    print(f"threads: {torch.get_num_threads()}")
    timed("linear latent->RGB (cheap_pixels), 64x64 latent", lambda: cheap_pixels(pipe, latents, True))
    with torch.inference_mode():
        timed("VAE decode, 64x64 latent (512 px)", lambda: decode_latents(pipe, latents))
        side = PREVIEW_LATENT_SIDE
        small = torch.nn.functional.interpolate(latents, size=(side, side), mode="area")
        timed(f"VAE decode, {side}x{side} latent ({side * 8} px, the preview's fallback)",
              lambda: decode_latents(pipe, small))
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
