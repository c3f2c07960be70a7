"""Tensors → uint8 pixels: final images, step frames, fast latent previews."""

from __future__ import annotations

from typing import Any

# Latent → RGB factors (rows: latent channels; cols: R, G, B; then a bias) for a cheap preview without the VAE,
# applied to the pipeline's own (scaled) latents. Source: ComfyUI's comfy/latent_formats.py (classes SD15, SDXL,
# SD3, Flux: `latent_rgb_factors`, `latent_rgb_factors_bias`), the fits its previews use.
SD1_LATENT_RGB = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350),
                  (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177))
SDXL_LATENT_RGB = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068),
                   (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188))
SDXL_LATENT_BIAS = (0.1084, -0.0175, -0.0011)
SD3_LATENT_RGB = ((-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458),
                  (0.0856, 0.0339, 0.0902), (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309),
                  (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358), (-0.0194, 0.0020, 0.0669),
                  (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
                  (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293),
                  (-0.1448, -0.1463, -0.1189))
SD3_LATENT_BIAS = (0.2394, 0.2135, 0.1925)
FLUX_LATENT_RGB = ((-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
                   (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
                   (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
                   (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
                   (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
                   (-0.1262, -0.0982, -0.0778))
FLUX_LATENT_BIAS = (-0.0329, -0.0718, -0.0851)
_PREVIEW_BY_VAE = {(4, 0.18215): (SD1_LATENT_RGB, None), (4, 0.13025): (SDXL_LATENT_RGB, SDXL_LATENT_BIAS),
                   (16, 1.5305): (SD3_LATENT_RGB, SD3_LATENT_BIAS), (16, 0.3611): (FLUX_LATENT_RGB, FLUX_LATENT_BIAS)}
PREVIEW_LATENT_SIDE = 16  # the VAE fallback of a live preview decodes latents at most this big (128 px with SD's VAE)


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
    if vae is None or not hasattr(vae.config, "latent_channels"):
        return None
    return _PREVIEW_BY_VAE.get((vae.config.latent_channels, round(float(vae.config.scaling_factor), 5)))


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


def cheap_pixels(pipe: Any, sample: Any, latent: bool) -> Any:
    """A step's x0 → uint8 BHWC for a live preview: pixel samples as they are; latents through the linear
    factors where the VAE has them, else the VAE on the latents shrunk to at most PREVIEW_LATENT_SIDE a side."""
    if not latent or preview_factors(pipe) is not None:
        return sample_to_pixels(pipe, sample, latent, "preview")
    import torch

    height, width = sample.shape[-2:]
    scale = PREVIEW_LATENT_SIDE / max(height, width)
    if scale < 1:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        with torch.inference_mode():
            sample = torch.nn.functional.interpolate(sample.float(), size=size, mode="area").to(sample.dtype)
    return to_uint8(decode_latents(pipe, sample))
