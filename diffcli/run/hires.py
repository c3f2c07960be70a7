"""Hires fix: generate, upscale (the image with Lanczos, or the latents bilinearly), then an img2img pass at
the new size with diffusers' image-to-image pipeline on the same modules, as A1111 does.

The pass is what a person would do by hand with plain diffusers: the txt2img image (8-bit, as the
pipeline's PIL output) resized with Lanczos, then `Img2ImgPipeline.from_pipe(pipe)(image=...,
strength=..., num_inference_steps=...)` with a new `torch.Generator("cpu").manual_seed(seed)` per image.
"""

from __future__ import annotations

from typing import Any

from diffcli.plan.items import Item


def first_pass_kwargs(batch: list[Item]) -> dict[str, Any]:
    """What the txt2img pass returns: latents for the latent upscaler, else images."""
    spec = batch[0].hires
    return {"output_type": "latent"} if spec is not None and spec.upscaler == "latent" else {}


def upscale(pipe: Any, first: Any, batch: list[Item]) -> Any:
    """The first pass's output at the final size: PIL images (Lanczos) or a latent tensor (bilinear)."""
    spec = batch[0].hires
    assert spec is not None
    if spec.upscaler == "latent":
        import torch

        factor = pipe.vae_scale_factor
        size = (spec.height // factor, spec.width // factor)
        return torch.nn.functional.interpolate(first, size=size, mode="bilinear", antialias=False)
    from PIL import Image

    images = pipe.image_processor.numpy_to_pil(first)
    return [image.resize((spec.width, spec.height), Image.Resampling.LANCZOS) for image in images]


def second_pass_kwargs(kwargs: dict[str, Any], image: Any, batch: list[Item]) -> dict[str, Any]:
    """The img2img pass's arguments: the txt2img ones with the upscaled image, new generators and the size."""
    import torch

    spec = batch[0].hires
    assert spec is not None
    generators = [torch.Generator("cpu").manual_seed(item.seed) for item in batch]
    changed = {k: v for k, v in kwargs.items() if k != "output_type"}
    changed.update(image=image, strength=spec.strength, generator=generators, width=spec.width, height=spec.height)
    return changed
