"""Single-text-encoder DiT families: PixArt-Sigma (T5, epsilon), Sana (Gemma 2, flow), Lumina 2 (Gemma 2, flow)."""

from __future__ import annotations

from diffcli.families.base import Family

PIXART_SIGMA = Family("pixart-sigma", ("PixArtSigmaPipeline",), denoiser="transformer",
                      text_encoders="T5 (max_sequence_length)", binning=True,
                      long_tokenizer="tokenizer", cache_hooks="one-context")
SANA = Family("sana", ("SanaPipeline",), denoiser="transformer", flow=True,
              text_encoders="Gemma 2 (max_sequence_length, with the pipeline's instruction prefix)", binning=True,
              cache_hooks="one-context")
LUMINA2 = Family("lumina2", ("Lumina2Pipeline",), denoiser="transformer", flow=True,
                 text_encoders="Gemma 2 (max_sequence_length, with the pipeline's system prompt)", vae_factor=8,
                 custom_sigmas=True)
