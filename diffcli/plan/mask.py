"""inpaint's mask: an untrusted file read like the init image, then made one greyscale mask. No torch.

The rule (help and README say the same): white repaints, black keeps. Any mode is read: the
image is turned upright by its EXIF orientation; one with transparency (RGBA, LA, a palette with
a transparent colour) is composited on black, so transparent pixels keep; the result is greyscale
(L), fitted to the run's width x height exactly as the init image is (cover + centre crop,
Lanczos), inverted with `invert_mask`, then blurred by `mask_blur` pixels (Gaussian, as diffusers'
`mask_processor.blur`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.init_image import decode, fit, read_bytes, sha256_hex
from diffcli.plan.text import escape_control

WHAT = "mask"


@dataclass(frozen=True)
class InpaintSpec:
    """How an item's mask is used: the file (by its sha256) and the mask settings."""

    mask_image: str
    mask_sha256: str
    mask_blur: int = 0
    padding_mask_crop: int | None = None
    invert_mask: bool = False


def check_mask(path: str) -> str:
    """Read and decode the mask once (before any model loads): bounded like the init image; its sha256."""
    data = read_bytes(path, WHAT)
    decode(data, escape_control(path), WHAT)
    return sha256_hex(data)


def greyscale(image: Any) -> Any:
    """Any mode as L: transparency composited on black (transparent = keep), 1-bit and palettes expanded."""
    from PIL import Image

    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    return image.convert("L")


@functools.lru_cache(maxsize=8)
def load_mask(spec: InpaintSpec, width: int, height: int) -> Any:
    """The mask as the pipeline gets it (L, width x height); refused if the file changed since planning."""
    from PIL import ImageFilter, ImageOps

    data = read_bytes(spec.mask_image, WHAT)
    if spec.mask_sha256 and sha256_hex(data) != spec.mask_sha256:
        raise UsageError(f"mask: {escape_control(spec.mask_image)} changed while the run was starting")
    mask = fit(greyscale(decode(data, escape_control(spec.mask_image), WHAT)), width, height, "L")
    if spec.invert_mask:
        mask = ImageOps.invert(mask)
    if spec.mask_blur:
        mask = mask.filter(ImageFilter.GaussianBlur(spec.mask_blur))
    return mask


def coverage(spec: InpaintSpec, width: int, height: int) -> tuple[int, int]:
    """The fitted mask's lowest and highest value: (0, 0) repaints nothing, (255, 255) everything."""
    low, high = load_mask(spec, width, height).getextrema()
    return int(low), int(high)


def mask_notes(spec: InpaintSpec, width: int, height: int) -> str | None:
    """A warning for a mask that repaints nothing or everything (not an error: the run goes on)."""
    low, high = coverage(spec, width, height)
    if high == 0:
        return "the mask is all black: nothing is repainted (white = repaint; --invert-mask swaps them)"
    if low == 255:
        return "the mask is all white: the whole image is repainted"
    return None
