"""`diffcli upscale`: narrates and delegates to the generating flow (plan → run → sinks), like the other commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from typing_extensions import Annotated

from diffcli.cli.boundary import guarded
from diffcli.cli.emit import Emitter
from diffcli.cli.options import PromptsFileOpt, VaryOpt, with_keys
from diffcli.errors import UsageError
from diffcli.plan.keys import TILE_ABOVE

UPSCALE_KEYS = ("noise_level", "negative_prompt", "guidance_scale", "model", "scheduler", "steps", "seed",
                "num_images", "batch_size", "device", "dtype", "vae_tiling", "output", "grid", "gallery", "offline",
                "allow_pickle", "threads")
UPSCALERS = "stabilityai/stable-diffusion-x4-upscaler (x4) or stabilityai/sd-x2-latent-upscaler (x2)"


def register(app: typer.Typer) -> None:
    """Add the upscale command to the app."""

    @app.command("upscale", help=f"""Upscale IMAGE x4 or x2 with a diffusers upscaler; the model's class decides which.

        --model {UPSCALERS}. The x4 upscaler (StableDiffusionUpscalePipeline) makes each side
        4x; --noise-level is how much noise is added to IMAGE first (0 up to the model's
        max_noise_level, 350; default 20): more noise, more invented detail. The x2 latent
        upscaler (StableDiffusionLatentUpscalePipeline) makes each side 2x. IMAGE is read like
        img2img's init image (bounded, RGB, its path and sha256 in the metadata, so replay works)
        but never resized: its sides must be multiples of what the model takes unchanged (8 for
        the x4 upscaler; exit 2 otherwise) and an output side above 4096 is refused, both before
        the model loads. The prompt is optional. The VAE decodes in tiles (vae.enable_tiling():
        less memory, blended seams) when an output side is above {TILE_ABOVE} pixels;
        --vae-tiling / --no-vae-tiling decide it yourself. Steps and guidance default to the
        pipeline's own (75 and 9); 20 steps are common.

        Examples:

          diffcli upscale photo.png --model stabilityai/stable-diffusion-x4-upscaler --steps 20

          diffcli upscale photo.png "a white cat" --model stabilityai/stable-diffusion-x4-upscaler --noise-level 40 -n 2

          diffcli upscale photo.png --model stabilityai/stable-diffusion-x4-upscaler --steps 20 --vary noise_level=0,20,60

          diffcli upscale render.png --model stabilityai/sd-x2-latent-upscaler --steps 20 -g 0
        """)
    @with_keys(*UPSCALE_KEYS)
    @guarded
    def upscale(
        image: Annotated[Path, typer.Argument(metavar="IMAGE", help="The image to upscale (PNG, JPEG, WebP or BMP).")],
        prompt: Annotated[Optional[str], typer.Argument(
            metavar="PROMPT", help="What the image shows (optional; or use --prompts-file).")] = None,
        prompts_file: PromptsFileOpt = None, vary: VaryOpt = None, *, flags: dict[str, Any], run: dict[str, Any],
        emitter: Emitter,
    ) -> None:
        from diffcli.cli.generating import generate

        if not run["preset"] and "model" not in flags and not _model_set(run):
            raise UsageError("upscale needs an upscaler model (there is no built-in one)",
                             hint=f"--model {UPSCALERS}")
        generate("upscale", None, None, {**flags, "upscale_image": str(image)}, run, emitter, prompt, prompts_file,
                 vary)


def _model_set(run: dict[str, Any]) -> bool:
    return any(item.split("=", 1)[0].strip() == "model" for item in run["sets"] or [])
