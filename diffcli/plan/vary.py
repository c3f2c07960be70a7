"""`--vary KEY=V1,V2,...`: comparison axes parsed with the key table, expanded into one item per cell.

Cells are the product of the axes in the order given (the first --vary outermost); each cell is
an ordinary run of items with that cell's values, so naming, skipping and metadata stay per item.
No torch here.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from diffcli.errors import PresetError
from diffcli.plan import safe_yaml
from diffcli.plan.items import MAX_ITEMS, Item, ModelFacts, PromptLine, build_items
from diffcli.plan.naming import label
from diffcli.plan.keys import KEYS, check_value
from diffcli.plan.suggest import suggest
from diffcli.plan.text import one_line

VARY_KEYS = ("scheduler", "steps", "guidance_scale", "seed", "prompt", "negative_prompt", "width", "height",
             "strength", "lora_weight", "prompt_syntax", "noise_level", "control_scale")
OPTION_PREFIX = "scheduler_options."
TEXT_KEYS = ("scheduler", "prompt", "negative_prompt", "prompt_syntax")  # values are taken as typed, not read as YAML
PROMPT_ONLY = ("prompt", "negative_prompt", "guidance_scale", "prompt_syntax")
MODEL_KEYS = ("model", "revision", "variant", "task", "allow_pickle", "safety_checker")
MAX_AXES = 3
MAX_VALUES = 100
MAX_CELLS = 1000


@dataclass(frozen=True)
class Axis:
    """One --vary: a key and its checked values, in the order given."""

    key: str
    values: tuple[Any, ...]


def _why_refused(key: str) -> str:
    if key in MODEL_KEYS:
        return "needs another model (a --vary run loads its model once)"
    if key == "num_images":
        return "is a count, not a per-image setting (use -n)"
    if key == "scheduler_options":
        return "takes one option at a time: --vary scheduler_options.NAME=A,B"
    return "is a run-level setting (it applies to the whole run)"


def _check_key(key: str) -> None:
    if key.startswith(OPTION_PREFIX):
        option = key[len(OPTION_PREFIX):]
        if not option.isidentifier():
            raise PresetError(f"--vary {one_line(key, 60)}: expected scheduler_options.NAME with NAME an option name")
        return
    if key in VARY_KEYS:
        return
    allowed = ", ".join(VARY_KEYS) + ", scheduler_options.NAME"
    if key in KEYS:
        raise PresetError(f"--vary {key}: {key} {_why_refused(key)}", hint=f"--vary takes {allowed}")
    raise PresetError(f"--vary {one_line(key, 60)}: unknown key{suggest(key, list(VARY_KEYS))}",
                      hint=f"--vary takes {allowed}")


def _value(key: str, raw: str) -> Any:
    """One raw value → the key's type, checked with the key table."""
    text = raw.strip()
    if not text:
        raise PresetError(f"--vary {key}: empty value")
    if key in TEXT_KEYS:
        value: Any = text
    else:
        try:
            value = safe_yaml.load(text)
        except yaml.YAMLError:
            value = text
    try:
        if key.startswith(OPTION_PREFIX):
            option = key[len(OPTION_PREFIX):]
            return check_value("scheduler_options", {option: value})[option]
        return check_value(key, value)
    except ValueError as err:
        raise PresetError(f"--vary {key}: {err}") from None


def parse_vary(specs: list[str]) -> list[Axis]:
    """`KEY=V1,V2,...` strings → axes. Values are comma-separated; quote one that has a comma
    (`--vary 'prompt="a cat, sitting",a dog'`)."""
    axes: list[Axis] = []
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PresetError(f"--vary {one_line(spec, 80)}: expected KEY=V1,V2,...")
        _check_key(key)
        if any(axis.key == key for axis in axes):
            raise PresetError(f"--vary {key}: given twice", hint="list every value in one --vary")
        try:
            fields = next(csv.reader([raw], skipinitialspace=True, strict=True), [])
        except csv.Error as err:
            raise PresetError(f"--vary {key}: {err}") from None
        values = [_value(key, field) for field in fields]
        if not values:
            raise PresetError(f"--vary {key}: no values", hint=f"e.g. --vary {key}=A,B")
        if len(values) > MAX_VALUES:
            raise PresetError(f"--vary {key}: {len(values)} values; at most {MAX_VALUES}")
        seen = [json.dumps(v, sort_keys=True) for v in values]
        for i, text in enumerate(seen):
            if text in seen[:i]:
                raise PresetError(f"--vary {key}: {one_line(label(values[i]), 60)} is listed twice")
        axes.append(Axis(key, tuple(values)))
    if len(axes) > MAX_AXES:
        raise PresetError(f"--vary: {len(axes)} axes; at most {MAX_AXES} (rows, columns, one grid per value)")
    cells = math.prod(len(axis.values) for axis in axes)
    if cells > MAX_CELLS:
        raise PresetError(f"--vary: {cells} combinations; at most {MAX_CELLS}")
    return axes


def expand(preset: Any, facts: ModelFacts, lines: list[PromptLine] | None, axes: list[Axis],
           first_index: int = 0) -> list[Item]:
    """Every item of every cell, cells in row-major order of the axes; a cell's values beat the
    preset and the prompt lines."""
    varied = {axis.key for axis in axes}
    if facts.task != "txt2img":
        for key in PROMPT_ONLY:
            if key in varied:
                raise PresetError(f"--vary {key}: this unconditional model takes no prompt or guidance")
    if "strength" in varied and not preset.init_image:
        raise PresetError("--vary strength: needs an init image (diffcli img2img INIT_IMAGE ...)")
    if "lora_weight" in varied and not preset.loras:
        raise PresetError("--vary lora_weight: needs a LoRA (--lora PATH)")
    if "control_scale" in varied and not preset.controlnet:
        raise PresetError("--vary control_scale: needs a ControlNet (--controlnet MODEL --control-image PATH)")
    if "prompt" in varied and lines and any(line.line for line in lines):
        raise PresetError("--vary prompt gives the prompts: drop --prompts-file")
    if facts.task == "txt2img" and not lines and "prompt" not in varied:
        build_items(preset, facts, lines)  # the plain run's "no prompt" error, unprefixed
    items: list[Item] = []
    for values in itertools.product(*(axis.values for axis in axes)):
        cell = tuple((axis.key, json.dumps(value, sort_keys=True)) for axis, value in zip(axes, values))
        where = ", ".join(f"{axis.key}={one_line(label(value), 40)}" for axis, value in zip(axes, values))
        changes: dict[str, Any] = {}
        options = dict(preset.scheduler_options)
        cell_lines = lines
        for axis, value in zip(axes, values):
            if axis.key.startswith(OPTION_PREFIX):
                options[axis.key[len(OPTION_PREFIX):]] = value
            elif axis.key == "prompt":
                cell_lines = [PromptLine(prompt=value)]
            else:
                changes[axis.key] = value
        if cell_lines is not None:
            cell_lines = [PromptLine(line.prompt, line.line, {k: v for k, v in line.values.items() if k not in varied})
                          for line in cell_lines]
        try:
            built = build_items(preset.replace(**changes, scheduler_options=options), facts, cell_lines,
                                first_index + len(items))
        except PresetError as err:
            raise PresetError(f"--vary {where}: {err.message}", hint=err.hint) from None
        if len(items) + len(built) > MAX_ITEMS:
            raise PresetError(f"the run asks for more than {MAX_ITEMS} images")
        items.extend(dataclasses.replace(item, cell=cell) for item in built)
    return items
