"""The validated preset: one typed field per key of the key table (plan/keys.py), in the same order.

`validate_layer` checks one layer's keys and values; `build_preset` makes a complete, frozen `Preset`.
tests/test_presets.py checks that the fields and the key table agree (names, order, defaults).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from diffcli.errors import PresetError
from diffcli.plan.keys import FILE_ONLY_KEYS, KEYS, check_value, flag_label
from diffcli.plan.suggest import suggest
from diffcli.plan.text import escape_control


@dataclass(frozen=True)
class Preset:
    """A validated preset (`None`: decided later, by the model's own defaults or the task's)."""

    model: str = ""
    config: str | None = None
    name: str | None = None
    description: str | None = None
    task: str | None = None
    revision: str | None = None
    variant: str | None = None
    scheduler: str | None = None
    scheduler_options: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    prompt_syntax: str = "plain"
    max_sequence_length: int | None = None
    loras: tuple[dict[str, Any], ...] = ()
    lora_weight: float = 1.0
    init_image: str | None = None
    strength: float = 0.8
    mask_image: str | None = None
    mask_blur: int = 0
    padding_mask_crop: int | None = None
    invert_mask: bool = False
    hires: float | None = None
    hires_strength: float = 0.7
    hires_steps: int | None = None
    hires_upscaler: str = "lanczos"
    upscale_image: str | None = None
    noise_level: int | None = None
    controlnet: tuple[dict[str, Any], ...] = ()
    control_image: tuple[dict[str, Any], ...] = ()
    control: str = "none"
    control_scale: float = 1.0
    control_start: float = 0.0
    control_end: float = 1.0
    seed: int = 0
    num_images: int = 1
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "auto"
    every: int | None = None
    show: str = "x_t"
    frame_decode: str = "preview"
    animation: str = "gif"
    frame_duration: int = 120
    output: str = ""
    grid: bool = True
    gallery: bool = False
    allow_pickle: bool = False
    offline: bool = False
    threads: int | None = None
    safety_checker: bool | None = None
    channels_last: bool = False
    compile: str = "none"
    attention_backend: str | None = None
    cpu_offload: str = "none"
    vae_tiling: bool | None = None
    vae_slicing: bool = False
    step_cache: int = 1
    backend: str = "torch"

    def to_dict(self) -> dict[str, Any]:
        """Every key and its value (as the JSON report shows the preset)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Preset:
        """A new preset with `changes`, validated like any layer."""
        return build_preset({**dataclasses.asdict(self), **changes}, "(override)")


def validate_layer(data: Mapping[str, Any], source: str, label_flags: bool = False) -> dict[str, Any]:
    """Validate one layer's keys and values; errors read `source: key: message`.

    With `label_flags`, errors name the flag the user typed (`--num-images: ...`).
    """
    checked: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise PresetError(f"{source}: {escape_control(repr(key))}: keys must be strings")
        if key not in KEYS:
            raise PresetError(
                f"{source}: {escape_control(key)}: unknown key{suggest(key, list(KEYS) + list(FILE_ONLY_KEYS))}",
                hint="`diffcli presets keys` lists every key",
            )
        try:
            checked[key] = check_value(key, value)
        except ValueError as err:
            where = flag_label(key) if label_flags else f"{source}: {key}"
            raise PresetError(f"{where}: {err}") from None
    return checked


def build_preset(data: Mapping[str, Any], source: str) -> Preset:
    """Validate a complete mapping into a frozen Preset."""
    checked = validate_layer(data, source)
    if not checked.get("model"):
        raise PresetError(f"{source}: model: required (a hub id such as google/ddpm-cifar10-32 or a local folder)")
    return Preset(**checked)
