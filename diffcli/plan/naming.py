"""File names: prompt slugs, how a value is shown, and the names of --vary cells. No torch."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

MAX_SLUG = 48
MAX_CELL_SLUG = 32


def slugify(text: str, max_length: int = MAX_SLUG, keep: str = "") -> str:
    """A filename-safe, bounded, lowercase ASCII slug ("a cat playing bass" → "a-cat-playing-bass").

    `keep="."` keeps decimal points between digits ("0.3"); every other dot becomes a dash.
    """
    normalized = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    allowed = "a-z0-9." if "." in keep else "a-z0-9"
    slug = re.sub(f"[^{allowed}]+", "-", normalized)
    if "." in keep:  # only a dot between two digits stays
        slug = re.sub(r"-{2,}", "-", re.sub(r"(?<![0-9])\.|\.(?![0-9])", "-", slug))
    slug = slug.strip("-")[:max_length].rstrip("-.")
    return slug or "prompt"


def label(value: Any) -> str:
    """How a value is shown in a grid and in names: text as is, numbers as written, the rest as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (str, int)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def cell_stem(item: Any) -> str:
    """`<index>-<cell values>-s<seed>[-<prompt slug>]`: the item index keeps every cell's name apart."""
    shown = [label(json.loads(value)) for key, value in item.cell if key not in ("prompt", "seed")]
    parts = [f"{item.index:04d}"]
    if shown:  # a decimal point stays one: strength 0.3 is `0.3`, not `0-3` (which reads like a range)
        parts.append(slugify("-".join(shown), MAX_CELL_SLUG, keep="."))
    parts.append(f"s{item.seed}")
    if item.task == "txt2img":
        parts.append(slugify(item.prompt))
    return "-".join(parts)
