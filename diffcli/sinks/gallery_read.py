"""Reading one output image for the gallery: size, animation flag and the metadata its PNG carries.

Everything in a file is untrusted: Pillow's limits bound the text chunks and the pixel count
(a decompression bomb becomes an `error`), every value kept is a bounded string, and anything
missing or of the wrong type is left out rather than failing.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from diffcli.sinks.metadata import A1111_KEY, DIFFCLI_KEY

GRID_KEY = "diffcli-grid"
NEGATIVE = "Negative prompt:"
SETTINGS_LINE = re.compile(r"^\s*[A-Za-z][\w .()+-]*: ")
MAX_SETTINGS = 100
MAX_TEXT = 4000  # characters kept of one metadata value: the page stays bounded whatever a file carries
MAX_AXES, MAX_AXIS_VALUES = 8, 64
A1111_FIELDS = {"Seed": "seed", "Steps": "steps", "Sampler": "scheduler", "CFG scale": "guidance", "Size": "size",
                "Model": "model", "Version": "version"}
EXACT = ("prompt", "negative_prompt")  # `parameters` folds their line breaks; the diffcli chunk keeps them
PRESET_FIELDS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "seed": "seed", "steps": "steps",
                 "scheduler": "scheduler", "guidance_scale": "guidance", "model": "model"}


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """Untrusted text → a bounded, UTF-8-encodable string without NULs."""
    text = str(value).replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"


def _scalar(value: Any) -> str | None:
    """A metadata value worth showing: a string or a number (bools, lists, objects are ignored)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return clean(value)


def _json(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else None
    except (ValueError, RecursionError):  # malformed or absurdly nested
        return None


def _settings(line: str) -> dict[str, Any]:
    """`Steps: 20, Sampler: "DPM++ 2M, Karras", ...` → {key: value}; JSON-quoted values decoded."""
    fields: dict[str, Any] = {}
    decoder, i = json.JSONDecoder(), 0
    while i < len(line) and len(fields) < MAX_SETTINGS:
        colon = line.find(": ", i)
        if colon < 0:
            break
        key, i = line[i:colon].strip(), colon + 2
        try:
            value, i = decoder.raw_decode(line, i) if line.startswith('"', i) else (None, i)
        except ValueError:  # an unterminated quote: read it as plain text
            value = None
        if value is None:
            comma = line.find(", ", i)
            comma = len(line) if comma < 0 else comma
            value, i = line[i:comma], comma
        fields[key] = value
        if line.startswith(", ", i):
            i += 2
    return fields


def _from_a1111(text: str) -> dict[str, str]:
    """The A1111 `parameters` text: prompt lines, `Negative prompt:` lines, last a `key: value, ...` line."""
    lines = text.split("\n")
    fields = _settings(lines.pop()) if len(lines) > 1 and SETTINGS_LINE.match(lines[-1]) else {}
    negative = next((i for i, line in enumerate(lines) if line.startswith(NEGATIVE)), len(lines))
    out = {"prompt": clean("\n".join(lines[:negative])),
           "negative_prompt": clean("\n".join(lines[negative:])[len(NEGATIVE):].strip())}
    for key, name in A1111_FIELDS.items():
        value = _scalar(fields.get(key))
        if value is not None:
            out[name] = value
    return {key: value for key, value in out.items() if value}


def _axes(grid: Any) -> list[dict[str, Any]]:
    axes = grid.get("axes") if isinstance(grid, dict) else None
    if not isinstance(axes, list):
        return []
    out = []
    for axis in axes[:MAX_AXES]:
        if isinstance(axis, dict) and _scalar(axis.get("key")) is not None:
            values = axis.get("values") if isinstance(axis.get("values"), list) else []
            shown = [clean(v, 200) for v in values[:MAX_AXIS_VALUES] if _scalar(v) is not None]
            out.append({"key": clean(axis["key"], 200), "values": shown})
    return out


def metadata(info: dict[str, Any]) -> dict[str, Any]:
    """Prompt, negative prompt, seed, steps, scheduler, guidance, size, model (all strings) and grid axes.

    A1111 `parameters` first; the `diffcli` JSON chunk fills what it lacks and gives the exact
    prompts. Both are untrusted: anything missing or of the wrong type is left out.
    """
    out: dict[str, Any] = {}
    if isinstance(info.get(A1111_KEY), str):
        out.update(_from_a1111(info[A1111_KEY]))
    record = _json(info.get(DIFFCLI_KEY))
    if isinstance(record, dict):
        preset = record.get("preset") if isinstance(record.get("preset"), dict) else {}
        out["replayable"] = bool(preset)
        for key, name in PRESET_FIELDS.items():
            value = _scalar(preset.get(key))
            if value and (name not in out or name in EXACT):
                out[name] = value
        width, height = _scalar(preset.get("width")), _scalar(preset.get("height"))
        if width and height and "size" not in out:
            out["size"] = f"{width}x{height}"
        if _scalar(record.get("task")):
            out["task"] = clean(record["task"], 100)
    axes = _axes(_json(info.get(GRID_KEY)))
    if axes:
        out["axes"] = axes
    return out


def read_image(path: Path) -> dict[str, Any]:
    """Size, animation flag and metadata of one file; `error` instead when it cannot be read safely."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                record: dict[str, Any] = {"width": image.size[0], "height": image.size[1],
                                          "animated": bool(getattr(image, "is_animated", False))}
                info = dict(image.info)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return {"error": "too many pixels to preview safely"}
    except Exception as err:  # noqa: BLE001 - any decoder failure on an untrusted file becomes a card saying so
        return {"error": f"unreadable image ({type(err).__name__})"}
    record.update(metadata(info))
    return record
