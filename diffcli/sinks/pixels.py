"""Tensors → uint8 pixels: final images, step frames, fast latent previews."""

from __future__ import annotations

from typing import Any

# Latent → RGB factors (rows: latent channels; cols: R, G, B) for a cheap preview without the VAE.
SD1_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350),
                  (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))
SDXL_LATENT_RGB = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068),
                   (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188))
SDXL_LATENT_BIAS = (0.1084, -0.0175, -0.0011)
_PREVIEW_BY_SCALING = {0.18215: (SD1_LATENT_RGB, None), 0.13025: (SDXL_LATENT_RGB, SDXL_LATENT_BIAS)}


def to_uint8(images: Any) -> Any:
    """Float images in [0, 1] (torch BCHW or numpy BHWC) → uint8 numpy BHWC, rounded like diffusers."""
    import numpy as np

    if hasattr(images, "detach"):
        images = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8)


def to_pil(pixels: Any) -> Any:
    """One uint8 HWC array → PIL image (grayscale stays grayscale)."""
    from PIL import Image

    if pixels.shape[-1] == 1:
        return Image.fromarray(pixels[..., 0], mode="L")
    return Image.fromarray(pixels)


def preview_factors(pipe: Any) -> tuple[Any, Any] | None:
    """Known latent→RGB factors for this pipeline's VAE, or None (then frames use the VAE)."""
    vae = getattr(pipe, "vae", None)
    if vae is None or vae.config.latent_channels != 4:
        return None
    return _PREVIEW_BY_SCALING.get(round(float(vae.config.scaling_factor), 5))


def latents_to_pixels(pipe: Any, latents: Any, decode: str) -> Any:
    """Latents → uint8 BHWC: the fast linear preview, or an exact VAE decode."""
    import torch

    factors = preview_factors(pipe) if decode == "preview" else None
    with torch.inference_mode():
        if factors is not None:
            weights, bias = factors
            matrix = torch.tensor(weights, dtype=torch.float32, device=latents.device)
            rgb = torch.einsum("bchw,cr->brhw", latents.float(), matrix)
            if bias is not None:
                rgb = rgb + torch.tensor(bias, device=latents.device).view(1, 3, 1, 1)
            return to_uint8((rgb / 2 + 0.5).clamp(0, 1))
        if latents.ndim != 4:
            from diffcli.errors import UsageError

            raise UsageError("frames are not supported for this pipeline's packed latents; drop --every")
        return to_uint8(decode_latents(pipe, latents))


def decode_latents(pipe: Any, latents: Any) -> Any:
    """Latents → images in [0, 1] with the pipeline's VAE (or VQ-VAE), as its own pipeline decodes them."""
    import torch

    vae = getattr(pipe, "vae", None) or pipe.vqvae
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    with torch.inference_mode():
        decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor + shift, return_dict=False)[0]
    return (decoded / 2 + 0.5).clamp(0, 1)


def sample_to_pixels(pipe: Any, sample: Any, latent: bool, decode: str) -> Any:
    """A step's sample (pixel-space x_t/x0, or latents) → uint8 BHWC."""
    if latent:
        return latents_to_pixels(pipe, sample, decode)
    return to_uint8((sample / 2 + 0.5).clamp(0, 1))
