"""Service functions behind the generating commands: resolve, plan, run, report."""

from __future__ import annotations

from typing import Any

from diffcli.run.generate import Item, Options, Report, image_metadata, run, unconditional_items
from diffcli.plan.presets import Preset
from diffcli.run.sampling import sample_unconditional

UNCONDITIONAL_DEFAULT_STEPS = 1000


def run_unconditional(preset: Preset, options: Options, items: list[Item] | None = None, loaded: Any = None) -> Report:
    """`diffcli unconditional`: the own loop over scheduler.timesteps, one generator per image."""
    steps = preset.steps or UNCONDITIONAL_DEFAULT_STEPS

    def sampler(pipe: Any, batch: list[Item], generators: list[Any], on_step: Any, want_x0: bool) -> Any:
        return sample_unconditional(pipe, steps, generators, on_step, want_x0)

    def metadata(pipe: Any, resolved: Preset, item: Item) -> dict[str, str]:
        from diffcli.plan.schedulers import label_for

        size = pipe.unet.config.sample_size
        size_text = f"{size}x{size}" if isinstance(size, int) else f"{size[1]}x{size[0]}"
        fields = {"Steps": steps, "Sampler": label_for(pipe.scheduler), "Seed": item.seed, "Size": size_text,
                  "Model": resolved.name or resolved.model}
        return image_metadata(pipe, resolved, item, "unconditional", fields)

    preset = preset.replace(steps=steps)
    return run(preset, "unconditional", items if items is not None else unconditional_items(preset), options,
               sampler, metadata, loaded=loaded)


TXT2IMG_DEFAULT_STEPS = 50
TXT2IMG_DEFAULT_GUIDANCE = 7.5


def txt2img_items(preset: Preset, prompts: list[Any]) -> list[Item]:
    """Image i of each prompt uses `seed + i` (or the line's own seed); names `<prompt>-s<seed>-<slug>`."""
    from diffcli.sinks.folder import slugify

    items: list[Item] = []
    for prompt_index, line in enumerate(prompts):
        base_seed = line.seed if line.seed is not None else preset.seed
        negative = line.negative_prompt if line.negative_prompt is not None else preset.negative_prompt
        for offset in range(line.num_images or preset.num_images):
            seed = base_seed + offset
            items.append(Item(
                index=len(items), seed=seed, stem=f"{prompt_index:04d}-s{seed}-{slugify(line.prompt)}",
                prompt=line.prompt, negative_prompt=negative or None, prompt_index=prompt_index,
                steps=line.steps or preset.steps or TXT2IMG_DEFAULT_STEPS,
                guidance_scale=line.guidance_scale if line.guidance_scale is not None else (
                    preset.guidance_scale if preset.guidance_scale is not None else TXT2IMG_DEFAULT_GUIDANCE),
                width=line.width or preset.width, height=line.height or preset.height,
            ))
    return items


def _sized(loaded: Any, preset: Preset, items: list[Item]) -> tuple[Preset, list[Item]]:
    """Fill unset sizes with the model's default and check every size against what the model needs."""
    import dataclasses

    from diffcli.errors import PresetError

    pipe = loaded.pipe
    import math

    vae_factor = int(getattr(pipe, "vae_scale_factor", 8))
    factor = math.lcm(8, vae_factor)  # the SD-family pipelines check multiples of 8 themselves
    from diffcli.run.levers import denoiser_of

    denoiser = denoiser_of(pipe)
    sample = denoiser.config.get("sample_size", 64) if denoiser is not None else 64
    sample = sample if isinstance(sample, int) else sample[0]
    default = sample * vae_factor
    sized = [dataclasses.replace(item, width=item.width or default, height=item.height or default) for item in items]
    for item in sized:
        for key in ("width", "height"):
            value = getattr(item, key)
            if value % factor:
                raise PresetError(f"{key}: {value} is not divisible by {factor}, which this model needs",
                                  hint=f"try {value // factor * factor or factor}")
    width = preset.width or default
    height = preset.height or default
    steps = preset.steps or TXT2IMG_DEFAULT_STEPS
    guidance = preset.guidance_scale if preset.guidance_scale is not None else TXT2IMG_DEFAULT_GUIDANCE
    return preset.replace(width=width, height=height, steps=steps, guidance_scale=guidance), sized


def run_txt2img(preset: Preset, options: Options, prompts: list[Any], items: list[Item] | None = None,
                loaded: Any = None) -> Report:
    """`diffcli txt2img`: the pipeline's own loop, one generator per image, prompts batched."""
    from diffcli.run.sampling import sample_txt2img

    def sampler(pipe: Any, batch: list[Item], generators: list[Any], on_step: Any, want_x0: bool) -> Any:
        first = batch[0]
        kwargs = {"prompt": [item.prompt for item in batch], "guidance_scale": first.guidance_scale,
                  "width": first.width, "height": first.height, "generator": generators}
        if first.negative_prompt is not None:
            kwargs["negative_prompt"] = [item.negative_prompt for item in batch]
        return sample_txt2img(pipe, kwargs, first.steps, on_step, want_x0)

    def metadata(pipe: Any, resolved: Preset, item: Item) -> dict[str, str]:
        from diffcli.plan.schedulers import label_for

        fields = {"Steps": item.steps, "Sampler": label_for(pipe.scheduler), "CFG scale": item.guidance_scale,
                  "Seed": item.seed, "Size": f"{item.width}x{item.height}", "Model": resolved.name or resolved.model}
        return image_metadata(pipe, resolved, item, "txt2img", fields)

    return run(preset, "txt2img", items if items is not None else txt2img_items(preset, prompts), options,
               sampler, metadata, loaded=loaded, finalize=_sized)


def run_trace(preset: Preset, options: Options, loaded: Any = None) -> Report:
    """`diffcli denoise-trace`: the same Sampler with the frame sink on, then a sheet and an animation per image."""
    from pathlib import Path

    from diffcli.errors import UsageError
    from diffcli.sinks.frames import default_every
    from diffcli.run.pipelines import is_offline, read_model_index, task_of
    from diffcli.plan.prompts import PromptLine
    from diffcli.sinks.trace import build_trace_outputs

    task = preset.task or task_of(read_model_index(preset.model, preset, is_offline(preset)))
    default_steps = TXT2IMG_DEFAULT_STEPS if task == "txt2img" else UNCONDITIONAL_DEFAULT_STEPS
    steps = preset.steps or default_steps
    preset = preset.replace(steps=steps, every=preset.every or default_every(steps))
    if task == "txt2img":
        if not preset.prompt:
            raise UsageError("this is a text-to-image preset: give --prompt \"...\"")
        report = run_txt2img(preset, options, [PromptLine(preset.prompt)], loaded=loaded)
    else:
        report = run_unconditional(preset, options, loaded=loaded)
    build_trace_outputs(report, Path(preset.output), preset.animation, preset.frame_duration, options.overwrite)
    return report
