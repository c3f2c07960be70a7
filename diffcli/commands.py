"""Service functions behind the generating commands: resolve, plan, run, report."""

from __future__ import annotations

from typing import Any

from diffcli.generate import Item, Options, Report, image_metadata, run, unconditional_items
from diffcli.presets import Preset
from diffcli.sampling import sample_unconditional

UNCONDITIONAL_DEFAULT_STEPS = 1000


def run_unconditional(preset: Preset, options: Options, items: list[Item] | None = None) -> Report:
    """`diffcli unconditional`: the own loop over scheduler.timesteps, one generator per image."""
    steps = preset.steps or UNCONDITIONAL_DEFAULT_STEPS

    def sampler(pipe: Any, batch: list[Item], generators: list[Any], on_step: Any, want_x0: bool) -> Any:
        return sample_unconditional(pipe, steps, generators, on_step, want_x0)

    def metadata(pipe: Any, resolved: Preset, item: Item) -> dict[str, str]:
        from diffcli.schedulers import label_for

        size = pipe.unet.config.sample_size
        size_text = f"{size}x{size}" if isinstance(size, int) else f"{size[1]}x{size[0]}"
        fields = {"Steps": steps, "Sampler": label_for(pipe.scheduler), "Seed": item.seed, "Size": size_text,
                  "Model": resolved.name or resolved.model}
        return image_metadata(pipe, resolved, item, "unconditional", fields)

    preset = preset.replace(steps=steps)
    return run(preset, "unconditional", items if items is not None else unconditional_items(preset), options,
               sampler, metadata)
