"""`diffcli replay`: regenerate an image from the `diffcli` chunk in its PNG metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffcli.errors import UsageError
from diffcli.run.generate import Item, Options, Report
from diffcli.sinks.metadata import DIFFCLI_KEY
from diffcli.plan.presets import build_preset, parse_set, validate_layer


def read_record(image: Path) -> dict[str, Any]:
    """The replay record embedded in a diffcli PNG; a clear error for any other file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as handle:
            text = handle.info.get(DIFFCLI_KEY)
    except FileNotFoundError:
        raise UsageError(f"image not found: {image}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UsageError(f"{image}: not a readable image ({err})") from None
    if not text:
        raise UsageError(f"{image}: no diffcli metadata in this image, so it cannot be replayed",
                         hint="only PNGs written by diffcli carry it")
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        raise UsageError(f"{image}: corrupt diffcli metadata") from None
    if not isinstance(record, dict) or not isinstance(record.get("preset"), dict):
        raise UsageError(f"{image}: corrupt diffcli metadata")
    return record


def run_replay(image: Path, sets: list[str], flags: dict[str, Any], overwrite: bool, quiet: bool) -> Report:
    """Rebuild the preset and the single item, then run the recorded command."""
    from diffcli.run.commands import run_txt2img, run_unconditional

    record = read_record(image)
    values = {**record["preset"], **parse_set(sets), **validate_layer(flags, "flag")}
    preset = build_preset(values, f"{image} (diffcli metadata)")
    item = Item(index=int(record.get("index", 0)), seed=preset.seed, stem=str(record.get("stem") or image.stem),
                prompt=preset.prompt, negative_prompt=preset.negative_prompt or None,
                prompt_index=0 if preset.prompt is not None else None, steps=preset.steps,
                guidance_scale=preset.guidance_scale, width=preset.width, height=preset.height)
    options = Options("replay", overwrite=overwrite, quiet=quiet)
    if record.get("task") == "txt2img":
        return run_txt2img(preset, options, [], items=[item])
    return run_unconditional(preset, options, items=[item])
