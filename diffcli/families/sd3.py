"""Stable Diffusion 3 / 3.5: MMDiT transformer, CLIP-L + CLIP-G + T5, flow matching."""

from __future__ import annotations

from diffcli.families.base import Family

SD3 = Family("sd3", ("StableDiffusion3Pipeline",), denoiser="transformer", flow=True,
             text_encoders="CLIP-L + CLIP-G (77 tokens) + T5 (max_sequence_length)",
             img2img="StableDiffusion3Img2ImgPipeline", inpaint="StableDiffusion3InpaintPipeline",
             dynamic_mu=True, cache_hooks="one-context", long_tokenizer="tokenizer_3",
             optional=("text_encoder_3", "tokenizer_3"))  # SD3 runs without T5 (less memory)
