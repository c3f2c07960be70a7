"""A loaded pipeline's siblings (image-to-image, inpainting) made once with `from_pipe` on the same modules."""

from __future__ import annotations

import weakref
from typing import Any

from diffcli.errors import ModelError

# kind → (the family field naming the sibling class, diffusers' Auto class, what the error calls it)
KINDS = {"img2img": ("img2img", "AutoPipelineForImage2Image", "image-to-image"),
         "inpaint": ("inpaint", "AutoPipelineForInpainting", "inpainting")}
_MADE: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def sibling_pipeline(pipe: Any, kind: str) -> Any:
    """The family's `kind` pipeline sharing `pipe`'s modules (diffusers' Auto class for unknown families),
    made once per loaded pipeline; its scheduler follows `pipe`'s current one."""
    made = _MADE.setdefault(pipe, {}).get(kind)
    if made is None:
        import diffusers

        from diffcli.families.registry import family_for

        field, auto, what = KINDS[kind]
        sibling = getattr(family_for(type(pipe).__name__), field)
        try:
            made = getattr(diffusers, sibling or auto).from_pipe(pipe)
        except ValueError as err:  # diffusers' "no ... pipeline for X"
            raise ModelError(f"{type(pipe).__name__} has no {what} pipeline in diffusers "
                             f"({str(err).splitlines()[0][:120]})") from None
        if hasattr(made, "set_progress_bar_config"):
            made.set_progress_bar_config(disable=True)
        _MADE[pipe][kind] = made
    made.scheduler = pipe.scheduler
    return made
