"""The key table: every preset key once — type, default, bounds, choices, flag and help.

Preset validation, `diffcli presets keys`, the command-line options and the docs all read
this table, so a key's rules live in one place. No torch here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

SEED_MAX = 2**63 - 1
MAX_SIDE = 4096  # pixels per side; larger requests are refused before anything is allocated
TILE_ABOVE = 1024  # upscale: pixels per output side above which the VAE decodes in tiles (vae_tiling: null)
TASKS = ("unconditional", "txt2img")
DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICE_PATTERN = re.compile(r"(auto|cpu|mps|cuda(:[0-9]{1,2})?)", re.ASCII)
DEVICES_HELP = "auto | cpu | cuda | cuda:N | mps"

# Keys that decide trust or resources: replay never takes them from an image's metadata.
TRUST_KEYS = frozenset({"allow_pickle", "offline", "output", "threads", "device", "dtype", "cpu_offload", "compile",
                        "attention_backend", "channels_last", "vae_tiling", "vae_slicing", "batch_size",
                        "backend"})
# Keys a prompts-file line (or a --vary axis) may set per image.
PER_IMAGE_KEYS = ("negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "num_images", "strength",
                  "lora_weight", "control_scale")


@dataclass(frozen=True)
class Key:
    """One preset key. `default` applies unless `task_defaults` names the task."""

    name: str
    type: type
    default: Any
    help: str
    nullable: bool = False
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    flag: str | None = None
    short: str | None = None
    task_defaults: dict[str, Any] = field(default_factory=dict)

    def default_for(self, task: str | None) -> Any:
        """The default value for a task (`None`: the task-independent default)."""
        return self.task_defaults.get(task or "", self.default)

    def describe(self) -> str:
        """What values the key takes, for help texts and `presets keys`."""
        if self.choices:
            return " | ".join(self.choices)
        if self.type is bool:
            return "true | false"
        if self.type in (int, float) and (self.low is not None or self.high is not None):
            show = (lambda v: str(int(v))) if self.type is int else (lambda v: f"{v:g}")
            low = "" if self.low is None else f"{show(self.low)} <= "
            high = "" if self.high is None else f" <= {show(self.high)}"
            return f"{low}{self.type.__name__}{high}"
        return {dict: "mapping", str: "text", list: "list"}.get(self.type, self.type.__name__)


def _k(name: str, typ: type, default: Any, help: str, **kw: Any) -> Key:
    return Key(name, typ, default, help, **kw)


KEY_TABLE: tuple[Key, ...] = (
    _k("model", str, "", "Hub id, local pipeline folder or single-file checkpoint (.safetensors; relative paths "
       "resolve against the preset file).", flag="--model", short="-m"),
    _k("config", str, None, "Single-file checkpoints: a local diffusers folder (model_index.json, component configs, "
       "tokenizers) to take the configs from (default: the shipped configs of the detected architecture).",
       nullable=True, flag="--config"),
    _k("name", str, None, "The preset's name.", nullable=True),
    _k("description", str, None, "One line shown by `diffcli presets`.", nullable=True),
    _k("task", str, None, "unconditional | txt2img (default: read from the model).", nullable=True, choices=TASKS),
    _k("revision", str, None, "Hub revision (branch, tag or commit).", nullable=True),
    _k("variant", str, None, "Weights variant, e.g. fp16.", nullable=True),
    _k("scheduler", str, None, "Scheduler short name (`diffcli schedulers`); default: the model's own.",
       nullable=True, flag="--scheduler"),
    _k("scheduler_options", dict, {}, "Extra scheduler constructor arguments."),
    _k("steps", int, None, "Denoising steps.", nullable=True, low=1, high=10000, flag="--steps",
       task_defaults={"unconditional": 1000, "txt2img": 50}),
    _k("guidance_scale", float, None, "Classifier-free guidance scale.", nullable=True, low=0, high=100,
       flag="--guidance-scale", short="-g", task_defaults={"txt2img": 7.5, "unconditional": 0.0}),
    _k("width", int, None, "Image width (default: the model's).", nullable=True, low=8, high=MAX_SIDE,
       flag="--width"),
    _k("height", int, None, "Image height (default: the model's).", nullable=True, low=8, high=MAX_SIDE,
       flag="--height"),
    _k("prompt", str, None, "The prompt.", nullable=True),
    _k("negative_prompt", str, None, "What to steer away from.", nullable=True, flag="--negative-prompt"),
    _k("prompt_syntax", str, "plain", "plain: prompts go to the pipeline as typed (CLIP keeps 75 tokens) | weighted: "
       "A1111 syntax, (word:1.3) weights and long prompts in 75-token chunks (SD 1.x/2.x, SDXL).",
       choices=("plain", "weighted"), flag="--prompt-syntax"),
    _k("max_sequence_length", int, None, "Prompt tokens a T5 encoder reads (Flux, SD3, PixArt, Chroma; default: the "
       "pipeline's own, e.g. 512 for Flux, 256 for SD3, 300 for PixArt).", nullable=True, low=1, high=4096,
       flag="--max-sequence-length"),
    _k("loras", list, (), "LoRAs as PATH_OR_HUB_ID[:WEIGHT] (repeatable flag) or a list of {path, weight, name}; "
       "local paths resolve against the preset file; safetensors unless allow_pickle.", flag="--lora"),
    _k("lora_weight", float, 1.0, "Scales every LoRA's weight (per image: a prompts-file line may set it).",
       low=-10, high=10, flag="--lora-weight"),
    _k("init_image", str, None, "img2img: the image to start from (PNG, JPEG, WebP, BMP); converted to RGB (L for "
       "1-channel models) and, unless it has the run's size, resized to width x height with a centre crop that keeps "
       "its aspect ratio (Lanczos).", nullable=True, flag="--init-image"),
    _k("strength", float, 0.8, "img2img and inpaint: how much of the init image is redrawn, 0 < s <= 1; int(steps * strength) "
       "steps run (near 0: the init image back, 1: from noise seeded by it).", low=0, high=1, flag="--strength"),
    _k("mask_image", str, None, "inpaint: the mask (white = repaint, black = keep; any mode: transparent pixels "
       "count as black); read and fitted to width x height like init_image.", nullable=True, flag="--mask-image"),
    _k("mask_blur", int, 0, "inpaint: Gaussian blur radius in pixels applied to the mask (A1111 uses 4).", low=0,
       high=64, flag="--mask-blur"),
    _k("padding_mask_crop", int, None, "inpaint: redraw only the masked region plus this many pixels around it, "
       "scaled up to width x height, and paste it back (A1111's \"only masked\").", nullable=True, low=0,
       high=MAX_SIDE, flag="--padding-mask-crop"),
    _k("invert_mask", bool, False, "inpaint: repaint the black part of the mask instead.", flag="--invert-mask"),
    _k("hires", float, None, "Hires fix: generate, upscale by this factor (1 < scale <= 4), then redraw at the new "
       "size with an img2img pass on the same model (txt2img).", nullable=True, low=1, high=4, flag="--hires"),
    _k("hires_strength", float, 0.7, "Hires fix: the img2img pass's strength, 0 < s <= 1 (A1111's \"Denoising "
       "strength\").", low=0, high=1, flag="--hires-strength"),
    _k("hires_steps", int, None, "Hires fix: the img2img pass's steps (int(steps * strength) run; default: steps).",
       nullable=True, low=1, high=10000, flag="--hires-steps"),
    _k("hires_upscaler", str, "lanczos", "Hires fix: upscale the image (lanczos) or the latents (latent: bilinear, "
       "UNet models).", choices=("lanczos", "latent"), flag="--hires-upscaler"),
    _k("upscale_image", str, None, "upscale: the image to upscale (PNG, JPEG, WebP, BMP; read like init_image but "
       "never resized: its sides times the model's scale are the output's).", nullable=True),
    _k("noise_level", int, None, "upscale, x4 upscaler: noise added to the image before upscaling, up to the "
       "model's max_noise_level (350): more noise, more invented detail (default: the pipeline's own, 20).",
       nullable=True, low=0, high=1000, flag="--noise-level"),
    _k("controlnet", list, (), "ControlNet: a hub id or local diffusers ControlNet folder (repeatable for several; "
       "safetensors unless allow_pickle; relative paths resolve against the preset file).", flag="--controlnet"),
    _k("control_image", list, (), "ControlNet: the control image, one per --controlnet in the same order (read like "
       "init_image, fitted to width x height).", flag="--control-image"),
    _k("control", str, "none", "ControlNet: preprocess the control images: none (used as they are) | canny (OpenCV "
       "Canny edges, thresholds 100/200; needs the control extra).", choices=("none", "canny"), flag="--control"),
    _k("control_scale", float, 1.0, "ControlNet: how strongly the control image steers (A1111's Weight; per image: a "
       "prompts-file line or --vary may set it).", low=0, high=2, flag="--control-scale"),
    _k("control_start", float, 0.0, "ControlNet: fraction of the steps after which it starts acting.", low=0, high=1,
       flag="--control-start"),
    _k("control_end", float, 1.0, "ControlNet: fraction of the steps after which it stops (above --control-start).",
       low=0, high=1, flag="--control-end"),
    _k("seed", int, 0, "Seed of image 0; image i uses seed + i.", low=0, high=SEED_MAX, flag="--seed"),
    _k("num_images", int, 1, "Images to make (per prompt).", low=1, high=100000, flag="--num-images", short="-n"),
    _k("batch_size", int, 1, "Images per forward pass.", low=1, high=1024, flag="--batch-size", short="-b"),
    _k("device", str, "auto", f"{DEVICES_HELP} (auto: cuda > mps > cpu).", flag="--device"),
    _k("dtype", str, "auto", "auto (float16 on CUDA, float32 elsewhere) | float32 | float16 | bfloat16.",
       choices=DTYPES, flag="--dtype"),
    _k("every", int, None, "Also save every Nth step as a frame.", nullable=True, low=1, high=10000, flag="--every"),
    _k("show", str, "x_t", "Frames show x_t (the noisy sample), x0 (the model's estimate) or both.",
       choices=("x_t", "x0", "both"), flag="--show"),
    _k("frame_decode", str, "preview", "Latent frames: preview (fast linear) | vae (exact decode).",
       choices=("preview", "vae")),
    _k("animation", str, "gif", "Trace animation format.", choices=("gif", "webp", "none"), flag="--animation"),
    _k("frame_duration", int, 120, "Milliseconds per animation frame.", low=10, high=60000,
       flag="--frame-duration"),
    _k("output", str, "", "Output folder (default: a new numbered folder under outputs/<command>/).",
       flag="--output", short="-o"),
    _k("grid", bool, True, "Write a labelled grid of the images when a run makes more than one.", flag="--grid"),
    _k("gallery", bool, False, "Write or update index.html (`diffcli gallery`) in the output folder.",
       flag="--gallery"),
    _k("allow_pickle", bool, False, "Allow pickle (.bin) weights: they can run code when loaded.",
       flag="--allow-pickle"),
    _k("offline", bool, False, "Never touch the network (also HF_HUB_OFFLINE=1).", flag="--offline"),
    _k("threads", int, None, "CPU threads (default: the CPUs other running tasks leave free, shared between local ranks).",
       nullable=True, low=1, high=1024, flag="--threads"),
    _k("safety_checker", bool, None, "Keep (true) or drop (false) a pipeline's safety checker.", nullable=True),
    _k("channels_last", bool, False, "Denoiser in channels_last memory format."),
    _k("compile", str, "none", "torch.compile the denoiser.",
       choices=("none", "default", "reduce-overhead", "max-autotune")),
    _k("attention_backend", str, None, "diffusers attention backend (transformer pipelines).", nullable=True),
    _k("cpu_offload", str, "none", "Offload to CPU between uses (needs an accelerator).",
       choices=("none", "model", "sequential")),
    _k("vae_tiling", bool, None, f"Decode with a tiled VAE (less memory; default: off, except `upscale`, which tiles "
       f"outputs above {TILE_ABOVE} pixels a side).", nullable=True, flag="--vae-tiling"),
    _k("vae_slicing", bool, False, "Decode one image at a time (less memory)."),
    _k("step_cache", int, 1, "Step caching: the expensive part of the denoiser runs on 1 of every N calls (1: off). "
       "UNets: DeepCache (the deep blocks' features are reused); Flux/Chroma transformers: diffusers' TaylorSeer "
       "cache (the attention blocks' outputs are predicted in between).", low=1, high=10, flag="--step-cache"),
    _k("backend", str, "torch", "Denoiser runtime: torch | openvino (CPU; the UNet or transformer converted once "
       "for the run's shapes and cached on disk; computes in the denoiser's dtype: bfloat16 uses the CPU's BF16 "
       "units; needs `pip install -e \".[openvino]\"` in a clone).", choices=("torch", "openvino"),
       flag="--backend"),
)
KEYS: dict[str, Key] = {key.name: key for key in KEY_TABLE}
FILE_ONLY_KEYS = ("extends",)


def check_value(name: str, value: Any) -> Any:
    """The value coerced to the key's type, or ValueError saying what was expected."""
    key = KEYS[name]
    if value is None:
        if key.nullable:
            return None
        raise ValueError(f"expected {key.describe()}, got null")
    if key.type is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_show(value)}")
        return value
    if key.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_show(value)}")
        _check_bounds(key, value, "an integer")
        return value
    if key.type is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {_show(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value}")
        _check_bounds(key, value, "a number")
        return value
    if key.type is list and name == "loras":  # its entries are checked in plan/loras.py
        from diffcli.plan.loras import check_loras

        return check_loras(value)
    if key.type is list:  # controlnet, control_image: paths or hub ids
        return check_paths(value)
    if key.type is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"expected a mapping of option names to values, got {_show(value)}")
        for option, item in value.items():
            _check_finite(item, option)
        return dict(value)
    if not isinstance(value, str):
        raise ValueError(f"expected {'a string' if not key.choices else key.describe()}, got {_show(value)}")
    if "\x00" in value:
        raise ValueError("expected a string without NUL characters")
    if key.choices and value not in key.choices:
        raise ValueError(f"expected one of {', '.join(key.choices)}, got {_show(value)}")
    if name == "device" and not DEVICE_PATTERN.fullmatch(value):
        raise ValueError(f"expected {DEVICES_HELP}, got {_show(value)}")
    if name == "scheduler":
        from diffcli.plan.schedulers import check_scheduler_name

        check_scheduler_name(value)
    return value


def _check_bounds(key: Key, value: float, what: str) -> None:
    if key.low is not None and value < key.low:
        raise ValueError(f"expected {what} >= {key.low:g}, got {value}")
    if key.high is not None and value > key.high:
        raise ValueError(f"expected {what} <= {key.high:g}, got {value}")
    if key.name in ("hires", "hires_strength") and value <= (key.low or 0):  # open below: 1 < scale, 0 < strength
        raise ValueError(f"expected {what} > {key.low:g}, got {value}")


def _check_finite(value: Any, where: str, depth: int = 0) -> None:
    """NaN and infinity are refused anywhere inside an option value (they are not JSON)."""
    if depth > 8:
        raise ValueError(f"{where}: nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value}")
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(item, where, depth + 1)
    if isinstance(value, dict):
        for item in value.values():
            _check_finite(item, where, depth + 1)


def _show(value: Any, limit: int = 60) -> str:
    """A short, escaped rendering of a user value for a message."""
    from diffcli.plan.text import escape_control

    text = repr(value)
    return escape_control(text if len(text) <= limit else text[:limit] + "...")


def flag_label(name: str) -> str:
    """How the user names a key on the command line: its flag, else `--set name`."""
    key = KEYS.get(name)
    return key.flag if key is not None and key.flag else f"--set {name}"


MAX_CONTROLNETS = 4


def check_paths(value: Any) -> tuple[str, ...]:
    """The `controlnet` and `control_image` keys: one path or hub id, or a list of at most 4; ValueError if not."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a path or a list of paths, got {type(value).__name__}")
    if len(value) > MAX_CONTROLNETS:
        raise ValueError(f"{len(value)} entries; at most {MAX_CONTROLNETS}")
    for entry in value:
        if not isinstance(entry, str) or not entry.strip() or "\x00" in entry or len(entry) > 4096:
            raise ValueError("expected non-empty paths or hub ids")
    return tuple(entry.strip() for entry in value)
