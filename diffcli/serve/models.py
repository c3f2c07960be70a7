"""Request bodies as pydantic models (strict types: `"5"` is not 5), and the fields diffcli cannot honour.

Unknown and unsupported fields are kept (`extra="allow"`) so `refuse_unsupported` can name them: a
field diffcli cannot honour is refused when it asks for something, and ignored at its default (real
clients send every field).
"""

from __future__ import annotations

from typing import Any, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from diffcli.serve.errors import RequestError

EMPTY = (None, "", [], {}, False)


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class OpenAIImageRequest(Strict):
    """`POST /v1/images/generations`: OpenAI's fields, plus diffcli's seed, steps, negative_prompt,
    guidance_scale and scheduler."""

    prompt: str
    model: Optional[str] = None
    n: Optional[int] = None
    size: Optional[str] = None
    response_format: Optional[Literal["b64_json", "url"]] = None
    output_format: Optional[Literal["png", "webp", "jpeg"]] = None
    output_compression: Optional[int] = None
    user: Optional[str] = None
    seed: Optional[int] = None
    steps: Optional[int] = None
    negative_prompt: Optional[str] = None
    guidance_scale: Optional[float] = None
    scheduler: Optional[str] = None


class OpenAIEditRequest(OpenAIImageRequest):
    """`POST /v1/images/edits` (form fields, read as the form's text): generations' fields plus diffcli's
    strength, mask_blur and padding_mask_crop; the image and the mask come as files."""

    strength: Optional[float] = None
    mask_blur: Optional[int] = None
    padding_mask_crop: Optional[int] = None


OPENAI_DEFAULTS: dict[str, tuple[Any, ...]] = {  # OpenAI fields diffcli cannot honour: the values it accepts
    "quality": (None, "auto", "standard"),
    "style": (None,),
    "background": (None, "auto", "opaque"),
    "moderation": (None, "auto", "low"),
    "stream": (None, False),
    "partial_images": (None, 0),
}
EDIT_DEFAULTS: dict[str, tuple[Any, ...]] = {**OPENAI_DEFAULTS, "input_fidelity": (None, "low")}


class A1111Txt2Img(Strict):
    """`POST /sdapi/v1/txt2img`: A1111's names; a missing field takes the server's default."""

    prompt: str = ""
    negative_prompt: Optional[str] = None
    seed: Optional[int] = -1
    steps: Optional[int] = None
    cfg_scale: Optional[float] = None
    width: Optional[int] = None
    height: Optional[int] = None
    sampler_name: Optional[str] = None
    sampler_index: Optional[str] = None
    scheduler: Optional[str] = None
    batch_size: Optional[int] = 1
    n_iter: Optional[int] = 1
    send_images: Optional[bool] = True
    force_task_id: Optional[str] = None


class A1111Img2Img(A1111Txt2Img):
    """`POST /sdapi/v1/img2img`: txt2img's fields plus one base64 init image and the strength, and for
    inpainting a base64 mask and its settings."""

    init_images: List[str]
    denoising_strength: Optional[float] = None
    resize_mode: Optional[int] = 0
    mask: Optional[str] = None
    mask_blur: Optional[int] = None
    mask_blur_x: Optional[int] = None
    mask_blur_y: Optional[int] = None
    inpainting_mask_invert: Optional[Union[bool, int]] = None
    inpaint_full_res: Optional[Union[bool, int]] = None
    inpaint_full_res_padding: Optional[int] = None
    inpainting_fill: Optional[int] = None


A1111_IGNORED = frozenset({  # no effect on the pixels diffcli makes (or, on txt2img, meaningless without a mask)
    "do_not_save_samples", "do_not_save_grid", "comments", "disable_extra_networks", "include_init_images",
    "override_settings_restore_afterwards", "subseed", "firstphase_width", "firstphase_height", "hr_scale",
    "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name",
    "hr_scheduler", "hr_prompt", "hr_negative_prompt", "hr_cfg", "hr_distilled_cfg", "hr_additional_modules",
    "mask_blur", "mask_blur_x", "mask_blur_y", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
    "inpainting_mask_invert", "mask_round", "user",
})
A1111_DEFAULTS: dict[str, tuple[Any, ...]] = {  # A1111 fields diffcli cannot honour: the values it accepts
    "enable_hr": (None, False), "restore_faces": (None, False), "tiling": (None, False),
    "subseed_strength": (None, 0), "seed_resize_from_h": (None, -1, 0), "seed_resize_from_w": (None, -1, 0),
    "script_name": (None, ""), "script_args": (None, []), "alwayson_scripts": (None, {}),
    "override_settings": (None, {}), "refiner_checkpoint": (None, ""), "refiner_switch_at": (None, 0),
    "mask": (None, ""), "latent_mask": (None, ""), "image_cfg_scale": (None,), "initial_noise_multiplier": (None, 1),
    "eta": (None,), "s_churn": (None, 0), "s_tmax": (None, 0), "s_tmin": (None, 0), "s_noise": (None, 1),
    "s_min_uncond": (None, 0), "styles": (None, []), "save_images": (None, False), "infotext": (None, ""),
    "firstpass_image": (None, ""), "distilled_cfg_scale": (None,), "denoising_strength": None,
}


def parse(model: type[Strict], body: Any, strict: bool = True) -> Any:
    """The body as `model`, or a RequestError naming the first bad field; `strict=False` for form fields
    (text: "5" is read as 5 where a number is expected)."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(body, strict=strict)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"]
        if first["type"] == "missing":
            message = "required"
        raise RequestError(f"{field}: {message}" if field else message, param=field) from None


def refuse_unsupported(request: Strict, defaults: dict[str, tuple[Any, ...] | None],
                       ignored: frozenset[str] = frozenset()) -> None:
    """A 4xx naming the first field diffcli cannot honour that asks for something (unknown fields included)."""
    for name, value in (request.model_extra or {}).items():
        if name in ignored:
            continue
        accepted = defaults.get(name, EMPTY) if name in defaults else EMPTY
        if accepted is None:  # a field of the other route (txt2img's denoising_strength): ignored here
            continue
        if not any(value == ok and type(value) is not bool or value is ok for ok in accepted):
            known = "not supported by diffcli" if name in defaults else "unknown field"
            raise RequestError(f"{name}: {known} (send it at its default, or leave it out)", param=name,
                               code="unsupported_field")
