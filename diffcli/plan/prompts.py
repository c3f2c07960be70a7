"""Prompts files: plain text (one prompt per line) or JSONL (one object per line with overrides)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcli.errors import PresetError

OVERRIDES = ("negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "num_images")


@dataclass(frozen=True)
class PromptLine:
    """One prompt and its per-line overrides (None: use the preset's value)."""

    prompt: str
    line: int = 0
    negative_prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    num_images: int | None = None


def read_prompts_file(path: Path) -> list[PromptLine]:
    """Parse and validate the whole file before any generation; errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError(f"prompts file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PresetError(f"{path}: cannot read prompts file: {getattr(err, 'strerror', None) or err}") from None
    lines = [(number, raw.strip()) for number, raw in enumerate(text.splitlines(), start=1)]
    content = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not content:
        raise PresetError(f"{path}: no prompts (empty file, or only blank lines and # comments)")
    is_jsonl = path.suffix.lower() == ".jsonl" or content[0][1].startswith("{")
    parse = _parse_json_line if is_jsonl else _parse_text_line
    return [parse(path, number, line) for number, line in content]


def _parse_text_line(path: Path, number: int, line: str) -> PromptLine:
    if "\x00" in line:
        raise PresetError(f"{path}:{number}: prompt contains a NUL character")
    return PromptLine(prompt=line, line=number)


def _parse_json_line(path: Path, number: int, line: str) -> PromptLine:
    from diffcli.plan.presets import _check_value, suggest

    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        raise PresetError(f"{path}:{number}: invalid JSON: {err.msg} (column {err.colno})") from None
    if not isinstance(data, dict):
        raise PresetError(f"{path}:{number}: expected a JSON object with a \"prompt\"")
    prompt = data.pop("prompt", None)
    if not isinstance(prompt, str) or not prompt.strip() or "\x00" in prompt:
        raise PresetError(f"{path}:{number}: prompt: expected a non-empty string")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in OVERRIDES:
            raise PresetError(f"{path}:{number}: {key}: unknown key{suggest(key, ('prompt',) + OVERRIDES)}")
        try:
            values[key] = _check_value(key, value)
        except ValueError as err:
            raise PresetError(f"{path}:{number}: {key}: {err}") from None
    return PromptLine(prompt=prompt.strip(), line=number, **values)
