"""OpenAI's edit mask as diffcli's: fully transparent pixels (alpha 0) edit → white (repaint), the rest black.

OpenAI's rule: the mask is an image with an alpha channel, of the image's size, whose fully transparent
pixels mark where to edit; without a mask, the image's own fully transparent pixels do (DALL·E 2).
diffcli's rule (plan/mask.py): white repaints, black keeps. The result is a greyscale PNG that the
CLI's own mask reading then takes as it is. No torch.
"""

from __future__ import annotations

import io
from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.init_image import decode
from diffcli.serve.errors import RequestError

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def decoded(data: bytes, name: str) -> Any:
    """An uploaded image decoded with the CLI's bounds (formats, 8192 x 8192 pixels, truncation); a 400 naming `name`."""
    try:
        return decode(data, "the upload", what=name)
    except UsageError as err:
        raise RequestError(err.message, param=name) from None


def alpha_of(image: Any) -> Any | None:
    """The image's alpha channel (L), or None when it has none (no alpha band, no transparent colour)."""
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return image.convert("RGBA").getchannel("A")
    return None


def edit_mask(image: bytes, masks: list[bytes] | None) -> bytes | None:
    """diffcli's mask (a greyscale PNG, white = repaint) for an edit; None when nothing is transparent and
    no mask came (the whole image is redrawn: image-to-image)."""
    picture = decoded(image, "image")
    if masks:
        if len(masks) > 1:
            raise RequestError(f"mask: {len(masks)} masks; an edit takes one", param="mask")
        mask = decoded(masks[0], "mask")
        if mask.size != picture.size:
            raise RequestError(f"mask: {mask.size[0]}x{mask.size[1]} pixels, the image {picture.size[0]}x"
                               f"{picture.size[1]}: the mask must have the image's size", param="mask")
        alpha = alpha_of(mask)
        if alpha is None:
            raise RequestError("mask: it has no alpha channel; OpenAI's edit masks mark the area to edit with fully "
                               "transparent pixels (alpha 0), e.g. an RGBA PNG", param="mask")
    else:
        alpha = alpha_of(picture)
        if alpha is None or alpha.getextrema()[0] > 0:
            return None
    white = alpha.point(lambda value: 255 if value == 0 else 0)
    buffer = io.BytesIO()
    white.save(buffer, format="PNG")
    return buffer.getvalue()
