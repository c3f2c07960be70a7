"""Flux.1 (dev: guidance-distilled; schnell: not) and Chroma: packed 2x2 latents, flow matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffcli.families.base import ControlNets, Family


@dataclass(frozen=True)
class Packed(Family):
    """Latents travel as a sequence of 2x2 patches; frames unpack them with the pipeline's own method.
    Flux's transformer is what backend: openvino converts with the inputs below."""

    def unpack(self, pipe: Any, latents: Any, height: int, width: int) -> Any:
        if latents.ndim != 3:
            return latents
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)

    def openvino_refusal(self, denoiser_class: str, denoiser_config: dict[str, Any]) -> str | None:
        return self.openvino_refused or None

    def openvino_inputs(self, config: dict[str, Any], batch: int, height: int, width: int,
                        text_length: int) -> dict[str, tuple[int, ...]]:
        """Flux: packed latents (B, h/2 * w/2, C), T5 embeddings, pooled CLIP, a timestep per image, the
        position ids of the image and text tokens, and the guidance of a guidance-distilled model."""
        tokens = (height // 2) * (width // 2)
        inputs = {"hidden_states": (batch, tokens, config["in_channels"]),
                  "encoder_hidden_states": (batch, text_length, config["joint_attention_dim"]),
                  "pooled_projections": (batch, config["pooled_projection_dim"]), "timestep": (batch,),
                  "img_ids": (tokens, 3), "txt_ids": (text_length, 3)}
        return {**inputs, "guidance": (batch,)} if config.get("guidance_embeds") else inputs


@dataclass(frozen=True)
class Chroma(Packed):
    """Chroma: Flux's layout without pooled CLIP or guidance; an attention mask over text and image tokens."""

    def openvino_inputs(self, config: dict[str, Any], batch: int, height: int, width: int,
                        text_length: int) -> dict[str, tuple[int, ...]]:
        tokens = (height // 2) * (width // 2)
        return {"hidden_states": (batch, tokens, config["in_channels"]),
                "encoder_hidden_states": (batch, text_length, config["joint_attention_dim"]), "timestep": (batch,),
                "img_ids": (tokens, 3), "txt_ids": (text_length, 3), "attention_mask": (batch, text_length + tokens)}


FLUX = Packed("flux", ("FluxPipeline",), denoiser="transformer", flow=True, packed=True,
              text_encoders="CLIP-L (pooled, 77 tokens) + T5 (max_sequence_length)",
              img2img="FluxImg2ImgPipeline", inpaint="FluxInpaintPipeline",
              custom_sigmas=True, cache_hooks="mixin", long_tokenizer="tokenizer_2", sample_size=128,
              controlnet=ControlNets("FluxControlNetModel", "FluxControlNetPipeline", "FluxControlNetImg2ImgPipeline",
                                     "FluxControlNetInpaintPipeline",
                                     ("in_channels", "joint_attention_dim", "pooled_projection_dim",
                                      "attention_head_dim", "num_attention_heads")))
CHROMA = Chroma("chroma", ("ChromaPipeline",), denoiser="transformer", flow=True, packed=True,
                text_encoders="T5 (max_sequence_length)", img2img="ChromaImg2ImgPipeline",
                custom_sigmas=True, cache_hooks="mixin",  # no inpaint: diffusers' ChromaInpaintPipeline reads
                # transformer.config.guidance_embeds, which Chroma's transformer lacks (diffusers 0.42)
                long_tokenizer="tokenizer",
                sample_size=128)
