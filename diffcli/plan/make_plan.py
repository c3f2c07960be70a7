"""Planning as one step: a resolved preset, the prompt lines, the `--vary` axes and the facts read up front →
a `Plan` (every image decided, the schedules to verify, the warnings). Imports neither torch nor diffusers.

The model's facts (`ModelFacts`, from its configs) and the input files' digests (`Inputs`) are read before;
apart from the mask's coverage (a warning for a mask that repaints nothing), nothing here touches a file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from diffcli.plan.attach import (Inputs, attach_control, attach_hires, attach_init_image, attach_mask,
                                 mask_warnings)
from diffcli.plan.items import Item, ModelFacts, PromptLine, build_items
from diffcli.plan.upscale import attach_upscale
from diffcli.plan.vary import Axis, expand

DIGIT_WORDS = re.compile(r"\b([0-9]|zero|one|two|three|four|five|six|seven|eight|nine)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Schedule:
    """One scheduler (None: the model's own) with its options, and every step count the items ask it for."""

    scheduler: str | None
    options: dict[str, Any]
    steps: frozenset[int]


@dataclass(frozen=True)
class Plan:
    """Everything a run will do, decided before any model loads."""

    facts: ModelFacts
    items: list[Item]
    schedules: list[Schedule] = field(default_factory=list)  # verified (a dry run) before the model loads
    warnings: list[str] = field(default_factory=list)

    @property
    def vary(self) -> bool:
        """A `--vary` run: its images are cells of labelled grids."""
        return bool(self.items and self.items[0].cell)

    def image_names(self) -> list[str]:
        """The file each item's image is written to, inside the output folder."""
        return [f"{item.stem}.png" for item in self.items]


def prompt_lines(preset: Any, facts: ModelFacts, lines: list[PromptLine] | None) -> list[PromptLine] | None:
    """The prompts: a prompts file's lines, else the preset's prompt (text-to-image models only)."""
    if lines is None and facts.task == "txt2img" and preset.prompt is not None and preset.prompt.strip():
        return [PromptLine(prompt=preset.prompt.strip())]
    if lines is None and (facts.upscale is not None or preset.upscale_image):  # an upscale needs no prompt
        return [PromptLine(prompt="")]
    return lines


def make_plan(preset: Any, facts: ModelFacts, lines: list[PromptLine] | None = None, axes: Sequence[Axis] = (),
              inputs: Inputs = Inputs(), first_index: int = 0, first_prompt_index: int = 0) -> Plan:
    """Resolve every item (every `--vary` cell), attach mask, init image and hires pass, list the schedules
    to verify and the warnings. Usage errors (exit 2) are raised here, before anything loads."""
    lines = prompt_lines(preset, facts, lines)
    if axes:
        items = expand(preset, facts, lines, list(axes), first_index)
    else:
        items = build_items(preset, facts, lines, first_index, first_prompt_index)
    items = attach_upscale(preset, facts, inputs.upscale, items)  # an upscaler takes nothing else
    items = attach_mask(preset, facts, inputs, items)  # inpaint's refusals come before the init image's
    items = attach_init_image(preset, facts, inputs, items)
    items = attach_hires(preset, facts, items)
    items = attach_control(preset, facts, inputs, items)
    return Plan(facts=facts, items=items, schedules=schedules(items),
                warnings=_warnings(preset, facts, lines) + mask_warnings(items))


def schedules(items: list[Item]) -> list[Schedule]:
    """Each scheduler and options the items use, with the step counts it must make."""
    wanted: dict[tuple[str, tuple[tuple[str, str], ...]], set[int]] = {}
    for item in items:
        wanted.setdefault((item.scheduler, item.scheduler_options), set()).add(item.steps)
    return [Schedule(name or None, {k: json.loads(v) for k, v in options}, frozenset(steps))
            for (name, options), steps in wanted.items()]


def _warnings(preset: Any, facts: ModelFacts, lines: list[PromptLine] | None) -> list[str]:
    """What the user should know before the run starts (it goes on)."""
    warnings = []
    if preset.name == "digits-text" and lines and not all(DIGIT_WORDS.search(line.prompt) for line in lines):
        warnings.append("digits-text only understands digits (\"a handwritten digit 7\", \"seven\"); "
                        "other prompts give a random digit")
    if preset.every is not None and preset.steps is not None and preset.every >= preset.steps:
        warnings.append(f"--every {preset.every} >= {preset.steps} steps: one frame per image")
    return warnings
