"""upscale: the loaded upscaler pipeline called on the source image, its VAE tiled as planned.

What a person would write with plain diffusers: `StableDiffusionUpscalePipeline` (or the latent x2 one)
`.from_pretrained(model)(prompt, image=source, num_inference_steps=..., guidance_scale=..., noise_level=...,
generator=torch.Generator("cpu").manual_seed(seed))`, after `pipe.vae.enable_tiling()` when the plan says so;
a batch passes one generator per image, so image i is the same in any batch.
"""

from __future__ import annotations

from typing import Any

from diffcli.errors import ModelError
from diffcli.plan.upscale import load_source


def upscale_kwargs(pipe: Any, batch: list[Any]) -> dict[str, Any]:
    """The batch's source images (and noise level) as the upscaler pipeline takes them; the VAE set to tile or
    not, as the plan decided for this size."""
    spec = batch[0].upscale
    assert spec is not None
    vae = getattr(pipe, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        raise ModelError(f"{type(pipe).__name__}: no VAE that tiles, which upscale needs")
    if spec.vae_tiling:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    source = load_source(spec)
    kwargs: dict[str, Any] = {"image": [source] * len(batch)}
    if spec.noise_level is not None:
        kwargs["noise_level"] = spec.noise_level
    return kwargs
