"""Flux.1 (dev: guidance-distilled; schnell: not) and Chroma: packed 2x2 latents, flow matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffcli.families.base import ControlNets, Family


@dataclass(frozen=True)
class Packed(Family):
    """Latents travel as a sequence of 2x2 patches; frames unpack them with the pipeline's own method."""

    def unpack(self, pipe: Any, latents: Any, height: int, width: int) -> Any:
        if latents.ndim != 3:
            return latents
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)


FLUX = Packed("flux", ("FluxPipeline",), denoiser="transformer", flow=True, packed=True,
              text_encoders="CLIP-L (pooled, 77 tokens) + T5 (max_sequence_length)",
              img2img="FluxImg2ImgPipeline", inpaint="FluxInpaintPipeline",
              custom_sigmas=True, cache_hooks="mixin", long_tokenizer="tokenizer_2", sample_size=128,
              controlnet=ControlNets("FluxControlNetModel", "FluxControlNetPipeline", "FluxControlNetImg2ImgPipeline",
                                     "FluxControlNetInpaintPipeline",
                                     ("in_channels", "joint_attention_dim", "pooled_projection_dim",
                                      "attention_head_dim", "num_attention_heads")))
CHROMA = Packed("chroma", ("ChromaPipeline",), denoiser="transformer", flow=True, packed=True,
                text_encoders="T5 (max_sequence_length)", img2img="ChromaImg2ImgPipeline",
                custom_sigmas=True, cache_hooks="mixin",  # no inpaint: diffusers' ChromaInpaintPipeline reads
                # transformer.config.guidance_embeds, which Chroma's transformer lacks (diffusers 0.42)
                long_tokenizer="tokenizer",
                sample_size=128)
