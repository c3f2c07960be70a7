"""Reading a replay record from a PNG someone else may have made: untrusted, bounded, validated.

Only the keys that decide the pixels are taken from the image, each checked like a preset
value; trust and resource keys (pickle, network, output, threads, device, ...) come from the
user's own flags alone, and names derive from the resolved item, never from the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcli.errors import UsageError
from diffcli.plan.items import MAX_ITEMS
from diffcli.plan.keys import KEYS, TRUST_KEYS
from diffcli.plan.text import escape_control

DIFFCLI_KEY = "diffcli"  # the PNG text chunk holding the replay record
MAX_PNG_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 8192 * 8192
MAX_TEXT = 256 * 1024
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")  # the models `config` applies to
REPLAYED_KEYS = ("model", "revision", "variant", "task", "scheduler", "scheduler_options", "safety_checker", "seed",
                 "upscale_image", "noise_level",
                 "steps", "width", "height", "prompt", "negative_prompt", "guidance_scale", "init_image", "strength",
                 "config", "loras", "prompt_syntax", "step_cache", "max_sequence_length", "mask_image", "mask_blur",
                 "padding_mask_crop", "invert_mask", "hires", "hires_steps", "hires_strength", "hires_upscaler",
                 "controlnet", "control_image", "control", "control_scale", "control_start", "control_end")
MAX_CELL_KEYS = 8


@dataclass(frozen=True)
class ReplayRecord:
    """What an image says about how it was made (validated)."""

    task: str
    values: dict[str, Any]
    index: int
    prompt_index: int
    init_sha256: str = ""  # img2img: the init image's recorded hash
    cell: tuple[tuple[str, str], ...] = ()  # a --vary cell: (key, JSON value) pairs
    mask_sha256: str = ""  # inpaint: the mask's recorded hash
    upscale_sha256: str = ""  # upscale: the source image's recorded hash
    control_sha256: tuple[str, ...] = ()  # ControlNet: each control image's recorded hash

    @property
    def command(self) -> str:
        """The command that made the image: upscale, inpaint, img2img, else the task (txt2img, unconditional)."""
        for command, sha in (("upscale", self.upscale_sha256), ("inpaint", self.mask_sha256),
                             ("img2img", self.init_sha256)):
            if sha:
                return command
        return self.task


def read_record(image: Path) -> ReplayRecord:
    """The validated replay record of a diffcli PNG; exit 2 for anything else."""
    from PIL import Image, UnidentifiedImageError

    shown = escape_control(str(image))
    try:
        if not image.is_file():
            raise UsageError(f"image not found (or not a file): {shown}")
        if image.stat().st_size > MAX_PNG_BYTES:
            raise UsageError(f"{shown}: larger than {MAX_PNG_BYTES // 2**20} MB, not read")
        with Image.open(image) as handle:
            if handle.format != "PNG":
                raise UsageError(f"{shown}: not a PNG")
            if handle.size[0] * handle.size[1] > MAX_PIXELS:
                raise UsageError(f"{shown}: {handle.size[0]}x{handle.size[1]} pixels, more than diffcli reads")
            text = handle.info.get(DIFFCLI_KEY)
    except UsageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise UsageError(f"{shown}: not a readable PNG ({escape_control(type(err).__name__)})") from None
    if not text:
        raise UsageError(f"{shown}: no diffcli metadata in this image, so it cannot be replayed",
                         hint="only PNGs written by diffcli carry it")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise UsageError(f"{shown}: diffcli metadata is too large or not text")
    try:
        record = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise UsageError(f"{shown}: corrupt diffcli metadata (not JSON)") from None
    return validate_record(record, shown)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def validate_record(record: Any, shown: str) -> ReplayRecord:
    """Keep the pixel-deciding keys; check each like a preset value (bounds included)."""
    from diffcli.plan.presets import validate_layer

    if not isinstance(record, dict) or not isinstance(record.get("preset"), dict):
        raise UsageError(f"{shown}: corrupt diffcli metadata (no preset)")
    task = record.get("task")
    if task not in ("txt2img", "unconditional"):
        raise UsageError(f"{shown}: diffcli metadata: task: expected txt2img or unconditional")
    stored = record["preset"]
    values = {key: stored[key] for key in REPLAYED_KEYS if key in stored and stored[key] is not None}
    assert not TRUST_KEYS & set(values), "trust keys are never replayed"
    values = validate_layer(values, f"{shown} (diffcli metadata)")
    if not values.get("model"):
        raise UsageError(f"{shown}: diffcli metadata names no model")
    if values.get("config") and Path(str(values["model"])).suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise UsageError(f"{shown}: diffcli metadata: config is only for single-file checkpoints, and its model "
                         "is not one")
    index = _count(record.get("index", 0), "index", shown)
    prompt_index = _count(record.get("prompt_index", 0), "prompt_index", shown)
    values["task"] = task
    init_sha256 = _init_sha256(record, shown) if "init_image" in values else ""
    mask_sha256 = _init_sha256(record, shown, "mask_image") if "mask_image" in values else ""
    upscale_sha256 = _init_sha256(record, shown, "upscale_image") if "upscale_image" in values else ""
    if upscale_sha256:  # tiled pixels differ, and tiling only lowers memory: replay keeps it
        tiling = record["preset"].get("vae_tiling")
        if tiling is not None and not isinstance(tiling, bool):
            raise UsageError(f"{shown}: diffcli metadata: vae_tiling: expected true or false")
        if tiling:
            values["vae_tiling"] = True
    return ReplayRecord(task=task, values=values, index=index, prompt_index=prompt_index, init_sha256=init_sha256,
                        cell=_cell(record.get("cell", []), values, shown), mask_sha256=mask_sha256,
                        upscale_sha256=upscale_sha256,
                        control_sha256=_control_sha256(record, values, shown))


def _cell(cell: Any, values: dict[str, Any], shown: str) -> tuple[tuple[str, str], ...]:
    """A --vary cell's (key, JSON value) pairs; each must name a replayed key and agree with its value."""
    from diffcli.plan.vary import VARY_KEYS

    bad = UsageError(f"{shown}: diffcli metadata: cell: expected up to {MAX_CELL_KEYS} [key, JSON value] pairs "
                     "that agree with the recorded settings")
    if not isinstance(cell, list) or len(cell) > MAX_CELL_KEYS:
        raise bad
    pairs = []
    for pair in cell:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and len(p) <= 512 for p in pair)):
            raise bad
        key, text = pair
        base = key.split(".", 1)[0]
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise bad from None
        if base not in VARY_KEYS + ("scheduler_options",):
            raise bad
        recorded = values.get(base) if base != "scheduler_options" else (values.get(base) or {}).get(key[len(base) + 1:])
        if base in values and base != "seed" and recorded != value:  # seed: a cell's first; lora_weight: folded in
            raise bad
        pairs.append((key, text))
    return tuple(pairs)


def _control_sha256(record: dict[str, Any], values: dict[str, Any], shown: str) -> tuple[str, ...]:
    """One recorded sha256 per control image (none without ControlNets)."""
    paths, infos = values.get("control_image") or (), record.get("control_image")
    if not paths:
        return ()
    if not isinstance(infos, list) or len(infos) != len(paths):
        raise UsageError(f"{shown}: diffcli metadata: control_image: expected one sha256 per control image")
    return tuple(_init_sha256({"control_image": info}, shown, "control_image") for info in infos)


def _init_sha256(record: dict[str, Any], shown: str, key: str = "init_image") -> str:
    info = record.get(key)
    sha = info.get("sha256") if isinstance(info, dict) else None
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise UsageError(f"{shown}: diffcli metadata: {key}: expected a sha256 (64 hex digits)")
    return sha


def check_init_image(record: ReplayRecord, user_sets: dict[str, Any]) -> None:
    """An img2img record's init image (an inpaint record's mask, a ControlNet record's control images) is used
    from its recorded path only if its sha256 still matches."""
    from diffcli.plan.init_image import read_bytes, sha256_hex

    controls = tuple(zip(record.values.get("control_image") or (), record.control_sha256))
    for key, what, path, sha in (("init_image", "init image", record.values.get("init_image"), record.init_sha256),
                                 ("mask_image", "mask", record.values.get("mask_image"), record.mask_sha256),
                                 ("upscale_image", "source image", record.values.get("upscale_image"),
                                  record.upscale_sha256),
                                 *(("control_image", "control image", path, sha) for path, sha in controls)):
        if not path or key in user_sets:
            continue
        shown = escape_control(str(path))
        hint = f"give the {what} with --set {key}=PATH"
        try:
            data = read_bytes(str(path), what)
        except UsageError as err:
            raise UsageError(f"{err.message}; replay needs the {what} this one was made from", hint=hint) from None
        if sha256_hex(data) != sha:
            raise UsageError(f"{what} {shown} has changed since this image was made (its sha256 differs from the "
                             "metadata's)", hint=hint)


def _count(value: Any, name: str, shown: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_ITEMS:
        raise UsageError(f"{shown}: diffcli metadata: {name}: expected an integer 0..{MAX_ITEMS - 1}")
    return value


def replay_layers(record: ReplayRecord, user_sets: dict[str, Any], user_flags: dict[str, Any]) -> dict[str, Any]:
    """Record < --set < flags; the defaults of every other key stay the built-in ones."""
    merged = {key: KEYS[key].default for key in KEYS if KEYS[key].type is not dict}
    merged.update(record.values)
    if record.upscale_sha256:  # an upscale's size is the source's times the scale: the record's is not read
        merged["width"] = merged["height"] = None
    merged.update(user_sets)
    merged.update(user_flags)
    merged["num_images"] = 1
    merged["grid"] = False  # one image (a --vary cell too): no grid
    from diffcli.plan.resources import builtin_model

    if isinstance(merged.get("model"), str) and "model" not in user_sets and "model" not in user_flags:
        recorded = merged["model"]
        builtin = builtin_model(recorded)  # recorded by name: this install's copy
        gone = Path(recorded)
        if builtin is None and gone.is_absolute() and gone.parent.name == "models" and not gone.exists():
            builtin = builtin_model(gone.name)  # an older record: another install's path to a built-in model
        merged["model"] = str(builtin) if builtin is not None else recorded
    return merged


def existing_record(image: Path) -> ReplayRecord | None:
    """An existing image's replay record, or None when it carries no readable diffcli metadata."""
    try:
        return read_record(Path(image))
    except UsageError:
        return None


def settings_differ(item: Any, record: ReplayRecord) -> str | None:
    """What an existing image's record says differently from `item` (None when it is that item)."""
    values = record.values
    wanted = {"seed": item.seed, "steps": item.steps, "width": item.width, "height": item.height}
    if item.task == "txt2img":
        wanted.update(prompt=item.prompt, negative_prompt=item.negative_prompt or None,
                      guidance_scale=item.guidance_scale)
    if item.scheduler:
        wanted["scheduler"] = item.scheduler
    for key, value in wanted.items():
        recorded = values.get(key)
        if key == "negative_prompt":
            recorded = recorded or None
        if recorded != value:
            return (f"was made with {key} {escape_control(json.dumps(recorded))[:60]}, "
                    f"not {escape_control(json.dumps(value))[:60]}")
    if item.cell and record.cell and record.cell != item.cell:
        return "is another --vary cell"
    return None
