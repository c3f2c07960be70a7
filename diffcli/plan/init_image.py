"""img2img's init image: an untrusted file, read bounded, hashed, and fitted to the run's size. No torch.

The rule (help and README say the same): the image is turned upright by its EXIF orientation,
converted to RGB (L for models whose images have one channel; alpha is dropped) and, unless it
already has the run's width x height, scaled to cover that size and centre-cropped to it (Lanczos),
so its aspect ratio is kept. The file is read once into memory, so the pixels used are the bytes
whose sha256 the metadata records.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.text import escape_control

MAX_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 8192 * 8192
FORMATS = ("PNG", "JPEG", "WEBP", "BMP")


def read_bytes(path: str, what: str = "init image") -> bytes:
    """The file's bytes: a regular file of at most 64 MiB; UsageError (exit 2) otherwise."""
    shown = escape_control(path)
    file = Path(path)
    try:
        if not file.is_file():
            raise UsageError(f"{what}: image not found (or not a file): {shown}")
        if file.stat().st_size > MAX_BYTES:
            raise UsageError(f"{what}: {shown}: larger than {MAX_BYTES // 2**20} MB, not read")
        with file.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(f"{what}: {shown}: cannot read ({escape_control(type(err).__name__)})") from None
    if len(data) > MAX_BYTES:
        raise UsageError(f"{what}: {shown}: larger than {MAX_BYTES // 2**20} MB, not read")
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, shown: str, what: str = "init image") -> Any:
    """A fully decoded PIL image from untrusted bytes; size and format checked before any pixel is decoded."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own pixel limit is lower
            with Image.open(io.BytesIO(data)) as handle:
                if handle.format not in FORMATS:
                    raise UsageError(f"{what}: {shown}: {escape_control(str(handle.format))} images are not read "
                                     f"(use {', '.join(FORMATS)})")
                width, height = handle.size
                if width < 1 or height < 1 or width * height > MAX_PIXELS:
                    raise UsageError(f"{what}: {shown}: {width}x{height} pixels, more than diffcli reads "
                                     f"({MAX_PIXELS:,})")
                handle.load()
                return narrow(ImageOps.exif_transpose(handle))
    except UsageError:
        raise
    except Image.DecompressionBombError:
        raise UsageError(f"{what}: {shown}: more pixels than diffcli reads ({MAX_PIXELS:,})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise UsageError(f"{what}: {shown}: not a readable image ({escape_control(type(err).__name__)})") from None


def narrow(image: Any) -> Any:
    """16-bit, 32-bit and float greyscale (`I;16`, `I`, `F`) scaled to 8-bit `L`, not clipped as Pillow's
    convert does (a mid-grey 16-bit image would turn white); other modes are returned as they are."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    import numpy as np
    from PIL import Image

    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and values.size and np.nanmax(np.abs(values)) <= 1.0:
        values = values * 255.0  # floats in 0..1
    elif image.mode != "F":
        values = values / 257.0  # PNG and the other formats read give 16-bit values (0..65535)
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def check_init_image(path: str) -> str:
    """Read and decode the init image once (before any model loads); its sha256."""
    data = read_bytes(path)
    decode(data, escape_control(path))
    return sha256_hex(data)


def fit(image: Any, width: int, height: int, mode: str) -> Any:
    """`mode` (RGB or L), then width x height: unchanged when the size matches, else cover + centre crop."""
    from PIL import Image, ImageOps

    image = image.convert(mode)
    if image.size == (width, height):
        return image
    return ImageOps.fit(image, (width, height), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def load_init_image(path: str, sha256: str, width: int, height: int, mode: str) -> Any:
    """The init image as the run uses it; refused (exit 2) if the file changed since it was planned."""
    data = read_bytes(path)
    if sha256 and sha256_hex(data) != sha256:
        raise UsageError(f"init image: {escape_control(path)} changed while the run was starting")
    return fit(decode(data, escape_control(path)), width, height, mode)
