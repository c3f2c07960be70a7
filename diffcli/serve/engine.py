"""The loaded model: one pipeline and what a batch needs. Only the worker thread calls it after startup."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from diffcli.plan.items import Item, ModelFacts
from diffcli.step import Step


@dataclass
class Output:
    """One finished image: its item, uint8 pixels (H, W, C) and the PNG text chunks (A1111 + diffcli)."""

    item: Item
    pixels: Any
    text: dict[str, str]


class Engine:
    """Loads the preset's pipeline once and samples batches of items exactly as `diffcli txt2img` does."""

    def __init__(self, preset: Any, facts: ModelFacts) -> None:
        self.preset = preset
        self.facts = facts
        self.loaded: Any = None
        self.switch: Any = None
        self.run_info: Any = None
        self.threads: Any = None

    def load(self) -> None:
        """Load, place and configure the pipeline (the CLI's loader: same device, dtype, scheduler, LoRAs)."""
        from diffcli.run.loras import lora_hashes
        from diffcli.run.pipelines import load_pipeline
        from diffcli.run.switch import SchedulerSwitch
        from diffcli.run.threads import configure_threads
        from diffcli.sinks.base import RunInfo

        self.threads = configure_threads(self.preset.threads)
        self.loaded = load_pipeline(self.preset, self.facts.task)
        self.switch = SchedulerSwitch(self.loaded.pipe, self.preset, self.facts.scheduler_config)
        self.run_info = RunInfo(command="serve", task=self.facts.task, preset=self.preset, folder=None,  # type: ignore[arg-type]
                                total=0, pipe=self.loaded.pipe, model_name=self.facts.name, latent=True,
                                lora_hashes=lora_hashes(self.preset.loras))

    def compatible(self) -> list[str]:
        """Scheduler short names this model can use (what A1111 clients may ask for)."""
        from diffcli.families.registry import family_named
        from diffcli.run.schedulers import compatible_for

        return compatible_for(self.loaded.pipe.scheduler, family_named(self.facts.family))

    def warm_up(self, item: Item) -> None:
        """One image at two steps (or the item's own count if fewer), so the first request pays no first-call costs."""
        self.sample([dataclasses.replace(item, steps=min(item.steps, 2))], None)

    def sample(self, batch: list[Item], on_step: Callable[[Step], None] | None) -> list[Output]:
        """One batch (items with one batch key) → finished images, each with its own CPU generator."""
        import torch

        from diffcli.run.sampling import sample_batch
        from diffcli.sinks.images import png_text
        from diffcli.sinks.pixels import to_uint8

        self.switch.use(batch[0])
        generators = [torch.Generator("cpu").manual_seed(item.seed) for item in batch]
        pixels = to_uint8(sample_batch(self.loaded.pipe, self.facts.task, batch, generators, on_step, False))
        return [Output(item, image, png_text(self.run_info, item)) for item, image in zip(batch, pixels)]

    def preview(self, sample: Any) -> Any:
        """The first image of a step's latents as uint8 pixels (the fast linear preview where one is known)."""
        from diffcli.sinks.pixels import sample_to_pixels

        return sample_to_pixels(self.loaded.pipe, sample[:1], True, "preview")[0]
