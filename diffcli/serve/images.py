"""Finished images as bytes: PNG with the same A1111 and diffcli text chunks as CLI outputs; WebP and JPEG
with the A1111 text in EXIF UserComment (where A1111 puts it). No torch."""

from __future__ import annotations

import base64
import io
import os
import secrets
from pathlib import Path
from typing import Any

from diffcli.serve.engine import Output
from diffcli.sinks.metadata import A1111_KEY

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}
URL_PREFIX = "/v1/files/"


def encode(output: Output, fmt: str = "png", quality: int | None = None) -> bytes:
    """One image in `fmt`, metadata included."""
    from PIL import Image

    from diffcli.sinks.folder import png_writer
    from diffcli.sinks.pixels import to_pil

    image = to_pil(output.pixels)
    buffer = io.BytesIO()
    if fmt == "png":
        png_writer(image, output.text)(buffer)
        return buffer.getvalue()
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\0" + output.text[A1111_KEY].encode("utf-16-be")
    options: dict[str, Any] = {"exif": exif.tobytes(), "quality": 95 if quality is None else quality}
    image.convert("RGB").save(buffer, format=FORMATS[fmt], **options)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_b64(pixels: Any) -> str:
    """Bare pixels (a progress preview) as base64 PNG."""
    from diffcli.sinks.pixels import to_pil

    buffer = io.BytesIO()
    to_pil(pixels).save(buffer, format="PNG")
    return b64(buffer.getvalue())


def save(folder: Path, data: bytes, fmt: str) -> str:
    """Write an image under the server's own folder with an unguessable name; the name."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{fmt}"
    scratch = folder / f".{name}.tmp"
    scratch.write_bytes(data)
    os.replace(scratch, folder / name)
    return name


def is_served_name(name: str) -> bool:
    """Only names `save` makes can be fetched: 32 hex digits and a known format (no paths, no dot files)."""
    stem, _, suffix = name.partition(".")
    return len(stem) == 32 and all(c in "0123456789abcdef" for c in stem) and suffix in FORMATS
