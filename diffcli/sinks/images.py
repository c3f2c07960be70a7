"""The image sink: each final image as a PNG with A1111 and diffcli metadata, published atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffcli import __version__
from diffcli.plan.items import Item
from diffcli.sinks.base import RunInfo
from diffcli.sinks.metadata import A1111_KEY, DIFFCLI_KEY, Composed, a1111_parameters, defuse, diffcli_chunk
from diffcli.sinks.pixels import to_pil
from diffcli.step import Step

# Run-level keys a replay record keeps: what decides the pixels (trust keys stay with the user).
RECORDED_KEYS = ("model", "revision", "variant", "task", "scheduler", "scheduler_options", "safety_checker",
                 "config", "step_cache")


def image_entry(item: Item, path: str, existing: bool = False) -> dict[str, Any]:
    """One image's line in the report."""
    entry: dict[str, Any] = {"path": path, "seed": item.seed, "index": item.index, "steps": item.steps,
                             "width": item.width, "height": item.height}
    if item.task == "txt2img":
        entry.update(prompt=item.prompt, negative_prompt=item.negative_prompt, prompt_index=item.prompt_index,
                     guidance_scale=item.guidance_scale)
    if item.cell:
        entry["cell"] = item.cell_values()
    if item.loras:
        entry["loras"] = [{"name": name, "weight": weight} for name, weight in item.loras]
    if item.strength is not None:
        entry.update(strength=item.strength, init_image=item.init_image, run_steps=item.run_steps)
    if item.inpaint is not None:
        entry["mask_image"] = item.inpaint.mask_image
    if item.upscale is not None:  # the file's size is the source's times the scale
        spec = item.upscale
        entry["upscale"] = {"image": spec.image, "scale": spec.scale, "source_width": spec.source_width,
                            "source_height": spec.source_height, "noise_level": spec.noise_level,
                            "vae_tiling": spec.vae_tiling}
    if item.control is not None:
        entry["controlnet"] = [{"model": model, "control_image": image} for model, image
                               in zip(item.control.models, item.control.images)]
        entry["control_scale"] = item.control_scale
    if item.hires is not None:  # the file's size is the hires pass's
        entry["hires"] = {"scale": item.hires.scale, "width": item.hires.width, "height": item.hires.height,
                          "steps": item.hires.steps, "strength": item.hires.strength,
                          "upscaler": item.hires.upscaler, "run_steps": item.hires.run_steps}
    if existing:
        entry["existing"] = True
    return entry


def replay_record(run: RunInfo, item: Item) -> dict[str, Any]:
    """The `diffcli` chunk: the resolved item and the run-level settings that decide its pixels."""
    from diffcli.plan.schedulers import name_for

    scheduler = run.pipe.scheduler
    from diffcli.plan.resources import builtin_name

    preset = {key: getattr(run.preset, key) for key in RECORDED_KEYS}
    preset["model"] = builtin_name(run.preset.model) or run.preset.model  # built-ins by name: any install
    preset["scheduler"] = item.scheduler or run.preset.scheduler or name_for(scheduler)
    if item.cell:  # a --vary cell records its own scheduler options
        preset["scheduler_options"] = item.options()
    preset.update(seed=item.seed, steps=item.steps, width=item.width, height=item.height, num_images=1)
    if item.task == "txt2img":
        preset.update(prompt=item.prompt, negative_prompt=item.negative_prompt, guidance_scale=item.guidance_scale,
                      prompt_syntax=item.prompt_syntax)
        if item.max_sequence_length is not None:
            preset["max_sequence_length"] = item.max_sequence_length
    if item.loras:  # each LoRA at the weight this image used (lora_weight folded in)
        paths = {entry["name"]: entry["path"] for entry in run.preset.loras}
        preset["loras"] = [{"path": paths[name], "weight": weight, "name": name} for name, weight in item.loras]
    record = {"task": item.task, "preset": preset, "index": item.index, "prompt_index": item.prompt_index,
              "model_name": run.model_name, "scheduler_config": dict(scheduler.config), "versions": versions()}
    if item.cell:  # a --vary cell: replay names its file by the cell, as the run did
        record["cell"] = [[key, value] for key, value in item.cell]
    if item.strength is not None:  # img2img: replay finds the init image by this path only if the hash matches
        preset.update(init_image=item.init_image, strength=item.strength)
        record["init_image"] = {"name": Path(item.init_image).name, "sha256": item.init_sha256}
    if item.inpaint is not None:  # inpaint: the mask is found the same way
        spec = item.inpaint
        preset.update(mask_image=spec.mask_image, mask_blur=spec.mask_blur, invert_mask=spec.invert_mask,
                      padding_mask_crop=spec.padding_mask_crop)
        record["mask_image"] = {"name": Path(spec.mask_image).name, "sha256": spec.mask_sha256}
    if item.upscale is not None:  # upscale: the source is found the same way
        source = item.upscale
        preset.update(upscale_image=source.image, noise_level=source.noise_level, vae_tiling=source.vae_tiling)
        record["upscale_image"] = {"name": Path(source.image).name, "sha256": source.sha256}
    if item.control is not None:  # ControlNet: the control images are found by their hashes too
        spec = item.control
        preset.update(controlnet=list(spec.models), control_image=list(spec.images), control=spec.module,
                      control_scale=item.control_scale, control_start=spec.start, control_end=spec.end)
        record["control_image"] = [{"name": Path(path).name, "sha256": sha}
                                   for path, sha in zip(spec.images, spec.sha256)]
    if item.hires is not None:
        preset.update(hires=item.hires.scale, hires_steps=item.hires.steps, hires_strength=item.hires.strength,
                      hires_upscaler=item.hires.upscaler)
    return record


def png_text(run: RunInfo, item: Item) -> dict[str, str]:
    """A1111 `parameters` plus the `diffcli` replay chunk for one image."""
    from diffcli.plan.schedulers import label_for

    fields: dict[str, Any] = {"Steps": item.steps, "Sampler": label_for(run.pipe.scheduler)}
    if item.task == "txt2img":
        fields["CFG scale"] = item.guidance_scale
    fields.update({"Seed": item.seed, "Size": f"{item.width}x{item.height}", "Model": run.model_name})
    if item.strength is not None:
        fields["Denoising strength"] = item.strength
    if item.inpaint is not None:
        fields["Mask blur"] = item.inpaint.mask_blur
        if item.inpaint.padding_mask_crop is not None:
            fields["Inpaint area"], fields["Masked area padding"] = "Only masked", item.inpaint.padding_mask_crop
    if item.upscale is not None:  # A1111's Extras fields, the source's size and the x4's noise level
        fields.update({"Postprocess upscale by": item.upscale.scale, "Postprocess upscaler": type(run.pipe).__name__,
                       "Source size": f"{item.upscale.source_width}x{item.upscale.source_height}",
                       "Noise level": item.upscale.noise_level})
    if item.hires is not None:  # A1111's hires fields
        from diffcli.plan.hires import UPSCALER_LABELS

        fields.update({"Denoising strength": item.hires.strength, "Hires upscale": item.hires.scale,
                       "Hires steps": item.hires.steps, "Hires upscaler": UPSCALER_LABELS[item.hires.upscaler]})
    if item.control is not None:  # sd-webui-controlnet's fields
        from diffcli.plan.control import a1111_units

        fields.update(a1111_units(item.control, item.control_scale if item.control_scale is not None else 1.0))
    tags = ""
    if item.loras:  # A1111 and Civitai read LoRAs from `<lora:name:weight>` in the prompt (names defused, not tags)
        from diffcli.plan.loras import prompt_tags

        tags = prompt_tags(tuple((defuse(name), weight) for name, weight in item.loras))
        used = [f"{defuse(name)}: {run.lora_hashes[name]}" for name, _ in item.loras if run.lora_hashes.get(name)]
        fields["Lora hashes"] = Composed(", ".join(used)) if used else None
    fields["Version"] = f"diffcli {__version__}"
    text = a1111_parameters(item.prompt or None, item.negative_prompt or None, fields, tags)
    return {A1111_KEY: text, DIFFCLI_KEY: diffcli_chunk(replay_record(run, item))}


def versions() -> dict[str, str]:
    """Package versions recorded for replay."""
    import diffusers
    import torch

    return {"diffcli": __version__, "diffusers": diffusers.__version__, "torch": torch.__version__}


class ImageSink:
    """Writes each final image; its report entries are the `images` list."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.run: RunInfo | None = None

    def start(self, run: RunInfo) -> None:
        self.run = run

    def on_step(self, batch: list[Item], step: Step) -> None:
        pass

    def on_images(self, batch: list[Item], pixels: Any) -> None:
        from diffcli.sinks.folder import png_writer

        assert self.run is not None
        for item, image in zip(batch, pixels):
            writer = png_writer(to_pil(image), png_text(self.run, item))
            path, existed = self.run.folder.publish(f"{item.stem}.png", writer, final=True)
            self.entries.append(image_entry(item, str(path), existing=existed))

    def close(self, completed: bool) -> dict[str, list[dict[str, Any]]]:
        return {"images": self.entries}
