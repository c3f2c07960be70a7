"""Single-text-encoder DiT families: PixArt-Sigma (T5, epsilon), Sana (Gemma 2, flow), Lumina 2 (Gemma 2, flow)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffcli.families.base import Family


@dataclass(frozen=True)
class CaptionDiT(Family):
    """PixArt-Sigma and Sana: latents, caption embeddings with their attention mask, a timestep per image."""

    def openvino_refusal(self, denoiser_class: str, denoiser_config: dict[str, Any]) -> str | None:
        return self.openvino_refused or None

    def openvino_inputs(self, config: dict[str, Any], batch: int, height: int, width: int,
                        text_length: int) -> dict[str, tuple[int, ...]]:
        return {"hidden_states": (batch, config["in_channels"], height, width),
                "encoder_hidden_states": (batch, text_length, config["caption_channels"]), "timestep": (batch,),
                "encoder_attention_mask": (batch, text_length)}


PIXART_SIGMA = CaptionDiT("pixart-sigma", ("PixArtSigmaPipeline",), denoiser="transformer",
                          text_encoders="T5 (max_sequence_length)", binning=True,
                          long_tokenizer="tokenizer", cache_hooks="one-context")
SANA = CaptionDiT("sana", ("SanaPipeline",), denoiser="transformer", flow=True,
                  text_encoders="Gemma 2 (max_sequence_length, with the pipeline's instruction prefix)", binning=True,
                  cache_hooks="one-context")
LUMINA2 = Family("lumina2", ("Lumina2Pipeline",), denoiser="transformer", flow=True,
                 text_encoders="Gemma 2 (max_sequence_length, with the pipeline's system prompt)", vae_factor=8,
                 custom_sigmas=True,
                 openvino_refused="OpenVINO's converter cannot trace it: its forward turns the attention mask's "
                                  "values into Python lengths (attention_mask.sum(dim=1).tolist())")
