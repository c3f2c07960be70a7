"""The Stable Diffusion upscalers: the model_index.json class decides which one runs, and this table says how.

- `StableDiffusionUpscalePipeline` (stabilityai/stable-diffusion-x4-upscaler): x4; the source's pixels, noised to
  `noise_level`, condition a 7-channel UNet that denoises latents of the source's size; its VAE decodes them x4.
- `StableDiffusionLatentUpscalePipeline` (stabilityai/sd-x2-latent-upscaler): x2; the source is VAE-encoded and a
  K-diffusion UNet denoises latents twice its latents' size, preconditioned with Euler sigmas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from diffcli.families.base import Family
from diffcli.plan.upscale import UpscaleFacts

# StableDiffusionUpscalePipeline's own defaults, for a model_index.json / signature record without them
MAX_NOISE_LEVEL = 350
NOISE_LEVEL = 20


@dataclass(frozen=True)
class Upscaler(Family):
    """An upscaler pipeline: its scale, how the source enters it, and what it takes."""

    scale: int = 2
    latent_input: bool = False          # the source is VAE-encoded and the UNet upscales its latents (x2)
    noise_level: bool = False           # takes noise_level: noise added to the source (x4)
    schedulers: tuple[str, ...] = ()    # the scheduler names its loop can run (empty: any)

    def upscale_facts(self, index: dict[str, Any], unet_config: dict[str, Any], vae_factor: int,
                      call_defaults: dict[str, Any]) -> UpscaleFacts:
        """Scale, the source side multiple and the noise levels, from the configs and the `__call__` defaults."""
        levels = unet_config.get("block_out_channels") or [0]
        unet_multiple = 2 ** (len(levels) - 1) if isinstance(levels, list) and 0 < len(levels) <= 8 else 8
        if self.latent_input:  # the UNet runs on the source's latents made `scale` times larger
            multiple = vae_factor * max(1, unet_multiple // self.scale)
        else:  # the UNet runs on latents of the source's own size; the VAE factor is the image processor's
            multiple = math.lcm(vae_factor, unet_multiple)
        noise = int(call_defaults.get("noise_level", NOISE_LEVEL)) if self.noise_level else None
        highest = index.get("max_noise_level", MAX_NOISE_LEVEL)
        highest = highest if isinstance(highest, int) and not isinstance(highest, bool) and highest >= 0 else 0
        embeds = unet_config.get("num_class_embeds")  # the UNet embeds the noise level as a class label
        if isinstance(embeds, int) and not isinstance(embeds, bool) and embeds > 0:
            highest = min(highest, embeds - 1)
        return UpscaleFacts(scale=self.scale, input_multiple=multiple, noise_level=noise,
                            max_noise_level=highest if self.noise_level else 0, schedulers=self.schedulers)


SD_X4 = Upscaler("sd-x4-upscaler", ("StableDiffusionUpscalePipeline",), text_encoders="CLIP (77 tokens)", scale=4,
                 noise_level=True)
SD_X2 = Upscaler("sd-x2-latent-upscaler", ("StableDiffusionLatentUpscalePipeline",),
                 text_encoders="CLIP (77 tokens, pooled)", scale=2, latent_input=True,
                 schedulers=("euler", "lms"))


def upscale_facts(family: Family, index: dict[str, Any], unet_config: dict[str, Any], vae_factor: int,
                  call_defaults: dict[str, Any]) -> UpscaleFacts | None:
    """An upscaler family's facts; None for every other family."""
    if not isinstance(family, Upscaler):
        return None
    return family.upscale_facts(index, unet_config, vae_factor, call_defaults)
