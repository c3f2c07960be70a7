"""inpaint: the mask attached to the planned items, and the inpainting pipeline on the loaded modules.

A 9-channel inpainting model (its model_index names an inpainting pipeline) runs as loaded. A plain
text-to-image model runs its family's inpainting pipeline made with `from_pipe` on the same modules
(SD/SDXL: latent masking on a 4-channel UNet, as diffusers does for base models; SD3, Flux: their own
inpainting pipelines); families diffusers has none (or no working one) for are refused before loading.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from diffcli.errors import ModelError, UsageError
from diffcli.plan.items import Item, ModelFacts
from diffcli.plan.mask import InpaintSpec, check_mask, load_mask, mask_notes



def is_inpainting_model(class_name: str) -> bool:
    """True for pipelines whose model is made for inpainting (9-channel UNets and the like)."""
    return "Inpaint" in class_name


def attach_mask(preset: Any, facts: ModelFacts, items: list[Item]) -> list[Item]:
    """inpaint's refusals (exit 2, before loading), then the mask's sha256 and settings on each item."""
    from diffcli.families.registry import family_named

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
    family = family_named(facts.family)
    if family.name != "other" and family.inpaint is None:
        raise UsageError(f"inpaint: diffusers has no working inpainting pipeline for {facts.class_name}",
                         hint="use an SD, SDXL, SD3 or Flux model")
    spec = InpaintSpec(mask_image=preset.mask_image, mask_sha256=check_mask(preset.mask_image),
                       mask_blur=preset.mask_blur, padding_mask_crop=preset.padding_mask_crop,
                       invert_mask=preset.invert_mask)
    attached = []
    for item in items:
        own = spec
        if spec.padding_mask_crop is not None and mask_notes(spec, item.width, item.height) is not None:
            own = dataclasses.replace(spec, padding_mask_crop=None)  # an empty or full mask has no region to crop
        attached.append(dataclasses.replace(item, inpaint=own))
    return attached


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


def inpaint_pipeline(pipe: Any) -> Any:
    """The inpainting pipeline sharing `pipe`'s modules (`pipe` itself for an inpainting model)."""
    if is_inpainting_model(type(pipe).__name__):
        return pipe
    from diffcli.run.siblings import sibling_pipeline

    return sibling_pipeline(pipe, "inpaint")


@contextlib.contextmanager
def model_refusals(pipe: Any) -> Any:
    """diffusers' inpainting pipelines refuse some models only when called (SD3: 16 or 33 latent channels):
    exit 3, one line. The inputs were checked before loading, so a ValueError here is about the model."""
    try:
        yield
    except ValueError as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ModelError(f"{type(pipe).__name__}: diffusers' inpainting pipeline cannot run this model ({first})",
                         hint="use an inpainting model or another family") from None


def inpaint_kwargs(pipe: Any, batch: list[Item]) -> dict[str, Any]:
    """The init images, masks and mask settings of a batch, as the inpainting pipeline takes them."""
    from diffcli.run.img2img import init_images

    first = batch[0]
    spec = first.inpaint
    assert spec is not None
    kwargs: dict[str, Any] = {"image": init_images(pipe, batch), "strength": first.strength,
                              "mask_image": [load_mask(item.inpaint, item.width, item.height) for item in batch]}
    if spec.padding_mask_crop is not None:  # diffusers crops one PIL image (a batch shares it: see batch_key)
        kwargs.update(image=kwargs["image"][0], mask_image=kwargs["mask_image"][0],
                      padding_mask_crop=spec.padding_mask_crop, output_type="pil")  # it pastes PIL images only
    return kwargs
