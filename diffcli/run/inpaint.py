"""inpaint: the inpainting pipeline on the loaded modules, and what it is called with.

A 9-channel inpainting model (its model_index names an inpainting pipeline) runs as loaded. A plain
text-to-image model runs its family's inpainting pipeline made with `from_pipe` on the same modules
(SD/SDXL: latent masking on a 4-channel UNet, as diffusers does for base models; SD3, Flux: their own
inpainting pipelines); families diffusers has none (or no working one) for are refused by planning
(plan/attach.py).
"""

from __future__ import annotations

import contextlib
from typing import Any

from diffcli.errors import ModelError
from diffcli.plan.items import Item
from diffcli.plan.attach import is_inpainting_model
from diffcli.plan.mask import load_mask


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
