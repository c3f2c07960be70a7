"""What an item starts from and what follows it: the init image, the mask, the hires pass, the ControlNets.
No torch.

Each `attach_*` refuses (exit 2, before any model loads) what the model cannot do, from the model's facts
alone, and records the inputs' sha256 (read once, up front, in `Inputs`) on every item.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.control import ControlSpec
from diffcli.plan.hires import hires_spec
from diffcli.plan.items import Item, ModelFacts
from diffcli.plan.mask import InpaintSpec, mask_notes
from diffcli.plan.upscale import Source


@dataclass(frozen=True)
class Inputs:
    """The user's input files, each read once (bounded, decoded) before planning: their sha256."""

    init_sha256: str = ""
    mask_sha256: str = ""
    control_sha256: tuple[str, ...] = ()  # one per ControlNet control image
    upscale: Source | None = None         # upscale: the source image's sha256 and size


def read_inputs(preset: Any) -> Inputs:
    """Read the init image and the mask the preset names (exit 2 for a bad file, nothing written)."""
    from diffcli.plan.control import read_control_images
    from diffcli.plan.init_image import check_init_image
    from diffcli.plan.mask import check_mask
    from diffcli.plan.upscale import check_source

    return Inputs(init_sha256=check_init_image(preset.init_image) if preset.init_image else "",
                  mask_sha256=check_mask(preset.mask_image) if preset.mask_image and preset.init_image else "",
                  control_sha256=read_control_images(preset),
                  upscale=check_source(preset.upscale_image) if preset.upscale_image else None)


def is_inpainting_model(class_name: str) -> bool:
    """True for pipelines whose model is made for inpainting (9-channel UNets and the like)."""
    return "Inpaint" in class_name


def attach_mask(preset: Any, facts: ModelFacts, inputs: Inputs, items: list[Item]) -> list[Item]:
    """inpaint's refusals, then the mask's sha256 and settings on each item."""
    if not preset.mask_image:
        if is_inpainting_model(facts.class_name):
            raise UsageError(f"this is an inpainting model ({facts.class_name}): it needs an image and a mask",
                             hint="use diffcli inpaint INIT_IMAGE MASK \"prompt\"")
        return items
    if not preset.init_image:
        raise UsageError("mask_image: needs an init image to repaint", hint="use diffcli inpaint INIT_IMAGE MASK")
    if facts.task != "txt2img":
        raise UsageError(f"inpaint needs a text-to-image model; this is a {facts.class_name}",
                         hint="use a Stable Diffusion, SDXL, SD3 or Flux model")
    if not facts.inpaint:
        raise UsageError(f"inpaint: diffusers has no working inpainting pipeline for {facts.class_name}",
                         hint="use an SD, SDXL, SD3 or Flux model")
    if preset.padding_mask_crop is not None and facts.channels != 3:
        raise UsageError(f"--padding-mask-crop: diffusers' crop path makes RGB images; this model makes "
                         f"{facts.channels}-channel ones", hint="inpaint without --padding-mask-crop")
    spec = InpaintSpec(mask_image=preset.mask_image, mask_sha256=inputs.mask_sha256, mask_blur=preset.mask_blur,
                       padding_mask_crop=preset.padding_mask_crop, invert_mask=preset.invert_mask)
    attached = []
    for item in items:
        own = spec
        if spec.padding_mask_crop is not None and mask_notes(spec, item.width, item.height) is not None:
            own = dataclasses.replace(spec, padding_mask_crop=None)  # an empty or full mask has no region to crop
        attached.append(dataclasses.replace(item, inpaint=own))
    return attached


def attach_init_image(preset: Any, facts: ModelFacts, inputs: Inputs, items: list[Item]) -> list[Item]:
    """img2img's refusals, then the init image's sha256 on each item."""
    if not preset.init_image:
        return items
    if facts.task == "txt2img" and not facts.img2img:
        raise UsageError(f"img2img: diffusers has no image-to-image pipeline for {facts.class_name}",
                         hint="use txt2img with this model, or an SD, SDXL, SD3, Flux or Chroma model")
    if facts.task == "unconditional" and facts.class_name.startswith("LDM"):
        raise UsageError(f"img2img on a latent unconditional model ({facts.class_name}) is not supported",
                         hint="use a pixel-space unconditional model (DDPM) or a text-to-image model")
    return [dataclasses.replace(item, init_sha256=inputs.init_sha256) for item in items]


def attach_hires(preset: Any, facts: ModelFacts, items: list[Item]) -> list[Item]:
    """The second pass of each item, refused when it cannot run."""
    if not preset.hires:
        return items
    if facts.task != "txt2img":
        raise UsageError("--hires: needs a text-to-image model (it runs an img2img pass)")
    if preset.init_image:
        raise UsageError("--hires: txt2img only (img2img and inpaint start from an image already)",
                         hint="run txt2img --hires, or img2img on an upscaled image")
    if not facts.img2img:
        raise UsageError(f"--hires: diffusers has no image-to-image pipeline for {facts.class_name}")
    if preset.hires_upscaler == "latent" and facts.family not in ("sd", "sdxl"):
        raise UsageError(f"--hires-upscaler latent: UNet models (SD, SDXL) only, not {facts.class_name}",
                         hint="use --hires-upscaler lanczos")
    return [dataclasses.replace(item, hires=hires_spec(preset, facts.size_multiple, item.width, item.height,
                                                       item.steps, facts.max_side)) for item in items]


def mask_warnings(items: list[Item]) -> list[str]:
    """One warning per mask that repaints nothing or everything (the run goes on)."""
    seen, warnings = set(), []
    for item in items:
        if item.inpaint is None:
            continue
        key = (item.inpaint.mask_image, item.inpaint.invert_mask, item.width, item.height)
        note = None if key in seen else mask_notes(item.inpaint, item.width, item.height)
        seen.add(key)
        if note and note not in warnings:
            warnings.append(note)
    return warnings


def attach_control(preset: Any, facts: ModelFacts, inputs: Any, items: list[Item]) -> list[Item]:
    """ControlNet's refusal of a model without text (exit 2), then the spec (the control images' sha256 from
    `inputs`, plan/attach.py) on each item."""
    if not preset.controlnet:
        return items
    if facts.task != "txt2img":
        raise UsageError(f"--controlnet needs a text-to-image model; this is a {facts.class_name}")
    spec = ControlSpec(models=tuple(preset.controlnet), images=tuple(preset.control_image),
                       sha256=tuple(inputs.control_sha256),
                       module=preset.control, start=preset.control_start, end=preset.control_end)
    return [dataclasses.replace(item, control=spec) for item in items]
