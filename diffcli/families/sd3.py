"""Stable Diffusion 3 / 3.5: MMDiT transformer, CLIP-L + CLIP-G + T5, flow matching."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffcli.families.base import ControlNets, Family


@dataclass(frozen=True)
class MMDiT(Family):
    """SD3's transformer: converted by backend: openvino with its four tensor inputs."""

    def max_side(self, denoiser_config: dict[str, Any], factor: int) -> int | None:
        """Position embeddings cover pos_embed_max_size patches a side (diffusers raises beyond them)."""
        limit = denoiser_config.get("pos_embed_max_size")
        return limit * self.patch(denoiser_config) * factor if isinstance(limit, int) and limit > 0 else None

    def openvino_refusal(self, denoiser_class: str, denoiser_config: dict[str, Any]) -> str | None:
        return self.openvino_refused or None

    def openvino_inputs(self, config: dict[str, Any], batch: int, height: int, width: int,
                        text_length: int) -> dict[str, tuple[int, ...]]:
        """Latents (B, C, h, w); CLIP + T5 embeddings (B, 77 + T5 length, joint dim); pooled CLIP (B, dim);
        one timestep per image."""
        return {"hidden_states": (batch, config["in_channels"], height, width),
                "encoder_hidden_states": (batch, text_length, config["joint_attention_dim"]),
                "pooled_projections": (batch, config["pooled_projection_dim"]), "timestep": (batch,)}


SD3 = MMDiT("sd3", ("StableDiffusion3Pipeline",), denoiser="transformer", flow=True,
            text_encoders="CLIP-L + CLIP-G (77 tokens) + T5 (max_sequence_length)",
            img2img="StableDiffusion3Img2ImgPipeline", inpaint="StableDiffusion3InpaintPipeline",
            dynamic_mu=True, cache_hooks="one-context", long_tokenizer="tokenizer_3",
            optional=("text_encoder_3", "tokenizer_3"),  # SD3 runs without T5 (less memory)
            # txt2img only: diffusers' SD3 ControlNet inpainting pipeline is for inpainting ControlNets (the
            # control image is the masked image), and it has no image-to-image one
            controlnet=ControlNets("SD3ControlNetModel", "StableDiffusion3ControlNetPipeline", None, None,
                                   ("patch_size", "in_channels", "joint_attention_dim", "pooled_projection_dim",
                                    "attention_head_dim", "num_attention_heads")))
