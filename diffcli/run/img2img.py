"""img2img: what the samplers start from (the init image was checked and attached by plan/attach.py).

Text-to-image models run diffusers' own image-to-image pipeline, made once from the loaded one
with `AutoPipelineForImage2Image.from_pipe` (the same modules: nothing is loaded twice).
Unconditional pixel models run diffcli's own loop from the init image noised to the strength's
first timestep with `scheduler.add_noise` (SDEdit).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.init_image import load_init_image
from diffcli.plan.items import Item


def image_mode(pipe: Any) -> str:
    """`L` for models whose images have one channel, else `RGB` (what the VAE or the UNet takes)."""
    encoder = getattr(pipe, "vae", None)
    config = encoder.config if encoder is not None else pipe.unet.config
    return "L" if config.get("in_channels", 3) == 1 else "RGB"


def init_images(pipe: Any, batch: list[Item]) -> list[Any]:
    """Each item's init image as a PIL image of the item's size and the model's mode."""
    mode = image_mode(pipe)
    cache: dict[tuple, Any] = {}
    images = []
    for item in batch:
        key = (item.init_image, item.init_sha256, item.width, item.height)
        if key not in cache:
            cache[key] = load_init_image(item.init_image, item.init_sha256, item.width, item.height, mode)
        images.append(cache[key])
    return images


def image_pipeline(pipe: Any) -> Any:
    """The image-to-image pipeline sharing `pipe`'s modules; its scheduler follows `pipe`'s current one."""
    from diffcli.run.siblings import sibling_pipeline

    return sibling_pipeline(pipe, "img2img")


def pixel_init(pipe: Any, batch: list[Item]) -> Any:
    """The init images as a (B, C, H, W) tensor in [-1, 1] for an unconditional pixel model."""
    import numpy as np
    import torch

    if getattr(pipe, "vqvae", None) is not None:
        raise UsageError("img2img on a latent unconditional model (vqvae) is not supported")
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    sized = [dataclasses.replace(item, width=width, height=height) for item in batch]
    arrays = [np.asarray(image, dtype=np.float32) / 255.0 for image in init_images(pipe, sized)]
    pixels = torch.from_numpy(np.stack(arrays))
    pixels = pixels[:, None] if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2)
    return (pixels * 2 - 1).to(device=pipe._execution_device, dtype=pipe.unet.dtype)
