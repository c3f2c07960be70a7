"""Resolved items: one fully decided image each — seed, prompt, steps, guidance, size and file name.

Naming, metadata, the report and replay read an `Item` and nothing else, so a value is
decided once, here. No torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diffcli.errors import PresetError
from diffcli.plan.keys import KEYS, SEED_MAX
from diffcli.plan.naming import cell_stem, slugify

if TYPE_CHECKING:
    from diffcli.plan.control import ControlSpec
    from diffcli.plan.hires import HiresSpec
    from diffcli.plan.mask import InpaintSpec
    from diffcli.plan.upscale import UpscaleFacts, UpscaleSpec

MAX_ITEMS = 1_000_000


@dataclass(frozen=True)
class ModelFacts:
    """What a model's configs say, read before any weights load."""

    task: str
    class_name: str
    width: int
    height: int
    size_multiple: int  # requested sizes must be multiples of this
    fixed_size: bool    # unconditional models make one size only
    name: str           # what the metadata's `Model:` field records
    scheduler_config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)  # the model's own
    family: str = "other"  # the pipeline family (diffcli.families), by name
    defaults: dict[str, Any] = field(default_factory=dict, compare=False)  # the pipeline's own call defaults
    weighted_prompts: bool = True  # A1111 weighted syntax possible (CLIP text encoders only)
    upscale: UpscaleFacts | None = None  # an upscaler: its scale, source sides, noise levels (plan/upscale.py)
    img2img: bool = True           # diffusers has an image-to-image pipeline for it
    inpaint: bool = True           # ... and an inpainting one
    channels: int = 3              # the images' channels (1: greyscale models such as digits-text)
    max_side: int | None = None    # the largest side the denoiser can make (SD3's position embeddings), if any


@dataclass(frozen=True)
class PromptLine:
    """One prompt and its per-line settings (already validated against the key table)."""

    prompt: str
    line: int = 0
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Item:
    """One image to make. Every field is decided; its file name derives from it alone."""

    index: int
    seed: int
    prompt_index: int
    prompt: str
    negative_prompt: str
    steps: int
    guidance_scale: float
    width: int
    height: int
    task: str
    loras: tuple[tuple[str, float], ...] = ()  # (adapter name, weight with lora_weight applied), in load order
    prompt_syntax: str = "plain"               # plain | weighted (A1111 weights, long prompts)
    scheduler: str = ""                                 # short name; "" keeps the model's own scheduler
    scheduler_options: tuple[tuple[str, str], ...] = ()  # (option, JSON value) pairs
    cell: tuple[tuple[str, str], ...] = ()               # --vary runs: (key, JSON value) of this image's cell
    strength: float | None = None                       # img2img: how much of the init image is redrawn
    init_image: str = ""                                # img2img: the init image's path ...
    init_sha256: str = ""                               # ... and the sha256 of its file
    max_sequence_length: int | None = None              # T5 tokens read; None: the pipeline's own
    inpaint: InpaintSpec | None = None                  # inpaint: the mask and its settings (plan/mask.py)
    hires: HiresSpec | None = None                      # hires fix: the img2img pass after it (plan/hires.py)
    upscale: UpscaleSpec | None = None                  # upscale: the source image and how (plan/upscale.py)
    control_scale: float | None = None                  # ControlNet: its weight for this image ...
    control: ControlSpec | None = None                  # ... and the models and control images (plan/control.py)

    @property
    def run_steps(self) -> int:
        """Denoising steps that actually run: int(steps * strength) for img2img (as diffusers does)."""
        return self.steps if self.strength is None else min(int(self.steps * self.strength), self.steps)

    @property
    def stem(self) -> str:
        """`0000-s7` (unconditional) or `0003-s42-a-cat-playing-bass` (prompt index, seed, slug).

        A `--vary` cell is named by its item index, then its values: `0004-euler-10-s0-a-digit-7`.
        """
        if self.cell:
            return cell_stem(self)
        if self.upscale is not None:  # by its source and scale: `0000-s0-photo-x4`
            return f"{self.prompt_index:04d}-s{self.seed}-{slugify(self.upscale.source_name)}-x{self.upscale.scale}"
        if self.task == "txt2img":
            return f"{self.prompt_index:04d}-s{self.seed}-{slugify(self.prompt)}"
        return f"{self.index:04d}-s{self.seed}"

    def batch_key(self) -> tuple:
        """Items with equal keys can share one forward pass."""
        weighted = (self.prompt, self.negative_prompt) if self.prompt_syntax == "weighted" else ()  # same chunks
        return (self.steps, self.guidance_scale, self.width, self.height, self.negative_prompt == "",
                self.scheduler, self.scheduler_options, self.strength, self.init_image, self.loras,
                self.prompt_syntax, weighted, self.max_sequence_length, self.inpaint, self.hires, self.upscale,
                self.control_scale, self.control)

    def options(self) -> dict[str, Any]:
        """The scheduler options as a mapping."""
        return {name: json.loads(value) for name, value in self.scheduler_options}

    def cell_values(self) -> dict[str, Any]:
        """The `--vary` keys and this image's values (empty outside a `--vary` run)."""
        return {key: json.loads(value) for key, value in self.cell}


def grid_stem(items: list[Item]) -> str:
    """`grid-<first index>-s<first seed>[-<prompt slug>]`: a run's grid is named by its first image, so runs
    that share an output folder keep their own grids (and the output policy applies to them as to images)."""
    first = min(items, key=lambda item: item.index)
    stem = f"grid-{first.index:04d}-s{first.seed}"  # a --vary grid shows every cell: no cell values here
    return f"{stem}-{slugify(first.prompt)}" if first.task == "txt2img" else stem


def frozen_options(options: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Scheduler options as hashable (option, JSON value) pairs, sorted by option."""
    return tuple((name, json.dumps(value, sort_keys=True)) for name, value in sorted(options.items()))


def _size(value: int | None, default: int, key: str, facts: ModelFacts) -> int:
    size = default if value is None else value
    if facts.fixed_size and size != default:
        raise PresetError(f"{key}: this unconditional model makes {facts.width}x{facts.height} images only")
    if size % facts.size_multiple:
        raise PresetError(f"{key}: {size} is not divisible by {facts.size_multiple}, which this model needs",
                          hint=f"try {size // facts.size_multiple * facts.size_multiple or facts.size_multiple}")
    if facts.max_side is not None and size > facts.max_side:
        raise PresetError(f"{key}: {size} is more than the {facts.max_side} pixels this model's denoiser can make",
                          hint=f"try {facts.max_side} or less")
    return size


def build_items(preset: Any, facts: ModelFacts, lines: list[PromptLine] | None = None,
                first_index: int = 0, first_prompt_index: int = 0) -> list[Item]:
    """Every image of the run, fully resolved: prompt-file lines > preset > the task's defaults.

    Image i of a prompt uses `seed + i`; every seed stays in 0..2**63-1.
    """
    task = facts.task
    if task == "txt2img" and not lines:
        raise PresetError("no prompt: give one, use --prompts-file, or set prompt: in the preset")
    lines = lines if task == "txt2img" else [PromptLine(prompt="")]
    items: list[Item] = []
    for prompt_index, line in enumerate(lines):
        values = {**_preset_values(preset, task, facts.defaults), **line.values}
        where = f"line {line.line}: " if line.line else ""
        count, seed = values["num_images"], values["seed"]
        if seed + count - 1 > SEED_MAX:
            raise PresetError(f"{where}seed: {seed} + {count - 1} images leaves 0..2**63-1",
                              hint="use a smaller seed")
        if len(items) + count > MAX_ITEMS:
            raise PresetError(f"the run asks for more than {MAX_ITEMS} images")
        width = _size(values["width"], facts.width, "width", facts)
        height = _size(values["height"], facts.height, "height", facts)
        lora_scale = line.values.get("lora_weight", preset.lora_weight)
        loras = tuple((entry["name"], entry["weight"] * lora_scale) for entry in preset.loras)
        strength = _strength(values, where) if preset.init_image else None
        for offset in range(count):
            items.append(Item(
                index=first_index + len(items), seed=seed + offset, prompt_index=first_prompt_index + prompt_index,
                prompt=line.prompt, negative_prompt=values["negative_prompt"] or "", steps=values["steps"],
                guidance_scale=values["guidance_scale"], width=width, height=height, task=task,
                loras=loras, prompt_syntax=preset.prompt_syntax,
                scheduler=preset.scheduler or "", scheduler_options=frozen_options(dict(preset.scheduler_options)),
                strength=strength, init_image=preset.init_image or "",
                max_sequence_length=preset.max_sequence_length,
                control_scale=values["control_scale"] if preset.controlnet else None,
            ))
    return items


def _preset_values(preset: Any, task: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The per-image keys of a preset, `None`s replaced by the pipeline's own defaults, else the task's."""
    values = {}
    for name in ("negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "num_images", "strength",
                 "control_scale"):
        value = getattr(preset, name)
        values[name] = defaults.get(name, KEYS[name].default_for(task)) if value is None else value
    return values


def _strength(values: dict[str, Any], where: str) -> float:
    """img2img's strength, refused when int(steps * strength) leaves no step to run."""
    strength, steps = values["strength"], values["steps"]
    if int(steps * strength) < 1:
        raise PresetError(f"{where}--strength {strength:g} with {steps} steps runs int({steps} x {strength:g}) = 0 "
                          "denoising steps", hint=f"use --strength >= {1 / steps:.3g} or more --steps")
    return strength
