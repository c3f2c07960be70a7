"""OpenAI's `POST /v1/images/edits`: one image, an optional mask and a prompt, as multipart/form-data.

With a mask (OpenAI's: fully transparent pixels mark the edit; see openai_mask.py) or an image with
fully transparent pixels, the request is `diffcli inpaint IMAGE MASK PROMPT` on the served model;
otherwise the whole image is redrawn with the prompt (`diffcli img2img IMAGE PROMPT`). Both at
`strength` (the server's default unless set). The answer is the generations route's.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from diffcli.serve.errors import RequestError
from diffcli.serve.models import EDIT_DEFAULTS, OpenAIEditRequest, parse
from diffcli.serve.openai_api import answer, wanted_of
from diffcli.serve.openai_mask import edit_mask
from diffcli.serve.service import service_of
from diffcli.serve.uploads import Form, read_form

router = APIRouter()
FILES = frozenset({"image", "image[]", "mask"})
INTEGER = re.compile(r"-?[0-9]{1,20}")


def form_values(form: Form) -> dict[str, Any]:
    """The text fields as the request model reads them: its own fields as text (read as numbers where it
    wants numbers), any other field as the JSON value it spells (`false` → False, `0` → 0) so fields
    diffcli cannot honour are accepted at their defaults, as on the JSON routes."""
    values: dict[str, Any] = {}
    for name, text in form.fields.items():
        if name in ("image", "mask"):
            raise RequestError(f"{name}: expected a file upload (multipart/form-data), not text", param=name)
        if name in OpenAIEditRequest.model_fields or not (text in ("true", "false") or INTEGER.fullmatch(text)):
            values[name] = text
        else:
            values[name] = text == "true" if text in ("true", "false") else int(text)
    return values


def one_image(form: Form) -> bytes:
    """The one image file (`image`, or a single `image[]`); none or several is a 400 naming `image`."""
    images = form.files.get("image", []) + form.files.get("image[]", [])
    if not images:
        raise RequestError("image: required (one image file)", param="image")
    if len(images) > 1:
        raise RequestError(f"image: {len(images)} images; diffcli edits one image per request", param="image")
    return images[0]


@router.post("/v1/images/edits")
async def edits(request: Request) -> dict[str, Any]:
    """Inpaint (a mask, or the image's transparency) or redraw the image; the generations route's answer."""
    service = service_of(request)
    form = await read_form(request, FILES)
    body = parse(OpenAIEditRequest, form_values(form), strict=False)
    wanted = wanted_of(body, service, EDIT_DEFAULTS)
    wanted.values.update(strength=("strength", body.strength), mask_blur=("mask_blur", body.mask_blur),
                         padding_mask_crop=("padding_mask_crop", body.padding_mask_crop))
    image = one_image(form)
    mask = await run_in_threadpool(edit_mask, image, form.files.get("mask"))
    wanted.init_image = ("image", image)
    if mask is not None:  # from the mask, or else from the image's own transparency
        wanted.mask = ("mask" if form.files.get("mask") else "image", mask)
    return await answer(request, body, wanted)
