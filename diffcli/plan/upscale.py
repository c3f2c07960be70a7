"""upscale, planned: the source image's size decides the output's; every refusal comes before loading. No torch.

The rule (help and docs/editing.md say the same): the source image is untrusted and read with the init
image's bounds (plan/init_image.py: a regular file of at most 64 MiB, PNG/JPEG/WebP/BMP, at most 8192 x 8192
pixels from the header, decoded once, hashed), turned upright by its EXIF orientation and converted to RGB, but
never resized: each side must be a multiple of what the upscaler takes unchanged (`input_multiple`, from the
model's configs: diffusers would otherwise crop the image or fail), and each output side is the source's times
the model's scale (x2 or x4), at most MAX_SIDE. The VAE decodes in tiles (diffusers' `vae.enable_tiling()`)
when an output side is above TILE_ABOVE pixels, unless `vae_tiling` says otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.init_image import decode, read_bytes, sha256_hex
from diffcli.plan.keys import MAX_SIDE, TILE_ABOVE, flag_label
from diffcli.plan.text import escape_control

WHAT = "image"        # how messages name the source image (the command's IMAGE argument)
# Keys with no meaning for an upscaler (its size comes from the image, its prompt goes to one CLIP).
NOT_FOR_UPSCALE = ("init_image", "mask_image", "hires", "loras", "every", "width", "height",
                   "max_sequence_length", "controlnet")
SIZE_KEYS = ("width", "height")


@dataclass(frozen=True)
class UpscaleFacts:
    """What an upscaler's configs say, read before any weights load."""

    scale: int                          # output side / source side
    input_multiple: int                 # source sides must be multiples of this
    noise_level: int | None = None      # the pipeline's default noise_level (None: it takes none)
    max_noise_level: int = 0            # the highest noise_level the model takes
    schedulers: tuple[str, ...] = ()    # the scheduler names its loop can run (empty: any)

    @property
    def name(self) -> str:
        return f"x{self.scale} upscaler"


@dataclass(frozen=True)
class UpscaleSpec:
    """How one item upscales: the source (by its sha256) and size, the noise level and the VAE tiling."""

    image: str
    sha256: str
    scale: int
    source_width: int
    source_height: int
    noise_level: int | None   # x4: noise added to the source (None: the pipeline takes none)
    vae_tiling: bool

    @property
    def source_name(self) -> str:
        """The source file's name without its suffix (output names start from it)."""
        return Path(self.image).stem


@dataclass(frozen=True)
class Source:
    """The source image as read before planning: its sha256 and upright size."""

    sha256: str
    width: int
    height: int


def check_source(path: str) -> Source:
    """Read and decode the source image once (before any model loads): bounded like the init image."""
    data = read_bytes(path, WHAT)
    image = decode(data, escape_control(path), WHAT)
    return Source(sha256_hex(data), image.size[0], image.size[1])


def load_source(spec: UpscaleSpec) -> Any:
    """The source as the pipeline gets it (RGB, its own size); refused if the file changed since planning."""
    data = read_bytes(spec.image, WHAT)
    if spec.sha256 and sha256_hex(data) != spec.sha256:
        raise UsageError(f"{WHAT}: {escape_control(spec.image)} changed while the run was starting")
    image = decode(data, escape_control(spec.image), WHAT).convert("RGB")
    if image.size != (spec.source_width, spec.source_height):
        raise UsageError(f"{WHAT}: {escape_control(spec.image)} changed while the run was starting")
    return image


def attach_upscale(preset: Any, facts: Any, source: Source | None, items: list[Any]) -> list[Any]:
    """upscale's refusals (exit 2), then each item's output size and `UpscaleSpec`.

    An upscaler model runs only from a source image (`upscale_image`), and a source image only with an
    upscaler model; the model's class decides which upscaler (`facts.upscale`, from families/upscale.py).
    """
    upscaler: UpscaleFacts | None = getattr(facts, "upscale", None)
    if not preset.upscale_image:
        if upscaler is not None:
            raise UsageError(f"this is an {upscaler.name} ({facts.class_name}): it needs an image to upscale",
                             hint="use diffcli upscale IMAGE [\"prompt\"]")
        if preset.noise_level is not None or any(key == "noise_level" for key, _ in (items[0].cell if items else ())):
            raise UsageError("noise_level: for diffcli upscale with the x4 upscaler only")
        return items
    if upscaler is None:
        kind = {"txt2img": "text-to-image", "unconditional": "unconditional"}.get(facts.task, facts.task)
        raise UsageError(f"upscale: {escape_control(facts.name)} is a {facts.class_name} ({kind} model), "
                         "not an upscaler",
                         hint="use stabilityai/stable-diffusion-x4-upscaler or stabilityai/sd-x2-latent-upscaler")
    assert source is not None, "the source image is read before planning"
    width, height = _output_size(upscaler, source)
    _refuse_keys(preset, items, (width, height))
    tiling = preset.vae_tiling if preset.vae_tiling is not None else max(width, height) > TILE_ABOVE
    attached = []
    for item in items:
        if upscaler.schedulers and item.scheduler and item.scheduler not in upscaler.schedulers:
            raise UsageError(f"--scheduler {item.scheduler}: the {upscaler.name}'s loop needs "
                             f"{' or '.join(upscaler.schedulers)} (it preconditions with Euler sigmas)")
        spec = UpscaleSpec(image=preset.upscale_image, sha256=source.sha256, scale=upscaler.scale,
                           source_width=source.width, source_height=source.height,
                           noise_level=_noise_level(upscaler, item.cell_values().get("noise_level",
                                                                                     preset.noise_level)),
                           vae_tiling=tiling)
        attached.append(dataclasses.replace(item, width=width, height=height, upscale=spec))
    return attached


def _refuse_keys(preset: Any, items: list[Any], size: tuple[int, int]) -> None:
    """Settings an upscaler has no use for are refused, not ignored (a width or height equal to the output's, as a
    replay record has them, is no setting)."""
    for key in NOT_FOR_UPSCALE:
        value = getattr(preset, key, None)
        if value and not (key in SIZE_KEYS and value == size[SIZE_KEYS.index(key)]):
            reason = f"the output is the image's size times the scale, {size[0]}x{size[1]}" if key in SIZE_KEYS \
                else "not for upscalers"
            raise UsageError(f"upscale: {flag_label(key)} does not apply ({reason})")
    varied = {key for key, _ in (items[0].cell if items else ())}
    if varied & set(SIZE_KEYS):
        raise UsageError("--vary width/height: an upscale's size is the image's times the scale")
    if preset.prompt_syntax == "weighted":
        raise UsageError("upscale: --prompt-syntax weighted is not for upscalers (prompts go as typed)")
    if preset.backend != "torch" or preset.step_cache > 1:
        raise UsageError("upscale: --backend openvino and --step-cache are for text-to-image UNets, not upscalers")


def _output_size(upscaler: UpscaleFacts, source: Source) -> tuple[int, int]:
    """The source's sides times the scale; refused when a side is not one the upscaler takes or too large."""
    multiple, scale = upscaler.input_multiple, upscaler.scale
    if source.width % multiple or source.height % multiple:
        fit = [max(multiple, side // multiple * multiple) for side in (source.width, source.height)]
        raise UsageError(f"{WHAT}: {source.width}x{source.height}: the {upscaler.name} takes sides that are "
                         f"multiples of {multiple} (diffusers would crop or fail on the rest)",
                         hint=f"crop or resize it to {fit[0]}x{fit[1]}")
    width, height = source.width * scale, source.height * scale
    if max(width, height) > MAX_SIDE:
        raise UsageError(f"upscale: {source.width}x{source.height} becomes {width}x{height}, more than {MAX_SIDE} "
                         "pixels a side", hint=f"use an image of at most {MAX_SIDE // scale} pixels a side")
    return width, height


def _noise_level(upscaler: UpscaleFacts, value: int | None) -> int | None:
    """The item's noise level: the flag's (or its --vary cell's), else the pipeline's own; checked."""
    if upscaler.noise_level is None:
        if value is not None:
            raise UsageError(f"--noise-level: the {upscaler.name} takes none (the x4 upscaler noises its source)")
        return None
    level = upscaler.noise_level if value is None else value
    if level > upscaler.max_noise_level:
        raise UsageError(f"--noise-level {level}: more than this model takes ({upscaler.max_noise_level})")
    return level
