"""ControlNet: the models checked from their configs before anything loads, loaded with the pipeline, and the
family's ControlNet pipelines made once with `from_pipe(pipe, controlnet=...)` on the loaded modules.

A ControlNet is a hub id or a local folder, resolved exactly as diffusers' `from_pretrained` resolves it, under
the main model's rules: safetensors unless pickle is allowed, its `config.json` read bounded and checked (a
folder is untrusted), its class the family's ControlNet class, and the config keys the denoiser shares with it
(cross_attention_dim, addition_embed_type, ...) equal to the loaded model's. Several ControlNets run as
diffusers' multi-ControlNet (a list).
"""

from __future__ import annotations

import inspect
import weakref
from pathlib import Path
from typing import Any

from diffcli.errors import ModelError, UsageError
from diffcli.plan.items import Item, ModelFacts
from diffcli.plan.text import escape_control, one_line

KINDS = {"txt2img": "text-to-image", "img2img": "image-to-image", "inpaint": "inpainting"}
_LOADED: "weakref.WeakKeyDictionary[Any, list[Any]]" = weakref.WeakKeyDictionary()
_MADE: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def kind_of(preset: Any) -> str:
    """txt2img, img2img or inpaint: which ControlNet pipeline a run needs."""
    return "inpaint" if preset.mask_image else ("img2img" if preset.init_image else "txt2img")


def check_controlnets(preset: Any, facts: ModelFacts) -> None:
    """Before any weights load: the family has a ControlNet pipeline for the run (exit 2), and each ControlNet's
    config is readable, of the family's class and fits the model (exit 3)."""
    from diffcli.families.registry import family_named
    from diffcli.plan.control import check_control

    check_control(preset)  # the settings alone first (exit 2)
    if not preset.controlnet:
        return

    if facts.task != "txt2img":
        raise UsageError(f"--controlnet needs a text-to-image model; this is a {facts.class_name}")
    nets, kind = family_named(facts.family).controlnet, kind_of(preset)
    if nets is None or getattr(nets, kind) is None:
        raise UsageError(f"--controlnet: diffusers has no ControlNet {KINDS[kind]} pipeline for {facts.class_name}",
                         hint="ControlNets run on SD 1.x/2.x, SDXL and Flux (txt2img, img2img, inpaint) and SD3 "
                              "(txt2img)")
    from diffcli.run.model_files import is_offline

    offline = is_offline(preset)
    denoiser = _denoiser_config(preset, offline)
    for model in preset.controlnet:
        config, shown = controlnet_config(model, preset.allow_pickle, offline)
        found = config.get("_class_name")
        if found != nets.model:
            raise ModelError(f"ControlNet {shown}: config.json names {one_line(repr(found), 60)}, not "
                             f"{nets.model} (what {facts.class_name} takes)")
        differ = [key for key in nets.matching if config.get(key) != denoiser.get(key)]
        if differ:
            pairs = "; ".join(f"{key} {one_line(repr(config.get(key)), 40)} vs the model's "
                              f"{one_line(repr(denoiser.get(key)), 40)}" for key in differ)
            raise ModelError(f"ControlNet {shown} does not fit {facts.name}: {' / '.join(differ)} differ ({pairs})",
                             hint="use a ControlNet made for this model's base (SD 1.x, SD 2.x, SDXL, ...)")


def controlnet_config(model: str, allow_pickle: bool, offline: bool) -> tuple[dict[str, Any], str]:
    """A ControlNet's `config.json` (local folder or hub), read bounded, size-checked; and its shown name.
    A local folder must hold weights, safetensors unless pickle is allowed."""
    from diffcli.plan.presets import looks_like_path
    from diffcli.run.hub import check_hub_id, fetch_file
    from diffcli.run.model_files import check_sizes, read_json

    shown = escape_control(model)
    local = Path(model).expanduser()
    if local.exists() or looks_like_path(model):
        if not local.is_dir():
            raise ModelError(f"ControlNet folder not found: {shown}", hint="a local folder or a hub id like owner/name")
        path = local / "config.json"
        if not path.is_file():
            raise ModelError(f"ControlNet {shown}: no config.json (not a diffusers ControlNet folder)")
        _check_weights(local, shown, allow_pickle)
    else:
        check_hub_id(model)
        path = fetch_file(model, "config.json", None, offline)
    config = read_json(path, "config.json")
    if not isinstance(config, dict):
        raise ModelError(f"ControlNet {shown}: config.json is not a JSON object")
    check_sizes(config, path)
    return config, shown


def _check_weights(folder: Path, shown: str, allow_pickle: bool) -> None:
    from diffcli.run.model_files import WEIGHT_SUFFIXES

    kinds = {WEIGHT_SUFFIXES[p.suffix] for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()}
    if not kinds:
        raise ModelError(f"ControlNet {shown}: no weights file (.safetensors)")
    if kinds == {"pickle"} and not allow_pickle:
        raise ModelError(f"ControlNet {shown}: only pickle weights (.bin/.pt), which can run code when loaded",
                         hint="if you trust this model, opt in with --allow-pickle or `allow_pickle: true`")


def _denoiser_config(preset: Any, offline: bool) -> dict[str, Any]:
    """The main model's UNet or transformer config (what a ControlNet must fit)."""
    from diffcli.run.hub import fetch_file
    from diffcli.run.model_files import read_json
    from diffcli.run.single_file import detect, looks_single_file

    root = str(detect(preset).config) if looks_single_file(preset.model) else preset.model
    local = Path(root).expanduser()
    for name in ("unet", "transformer"):
        if local.is_dir():
            path = local / name / "config.json"
            if not path.is_file():
                continue
        else:
            try:
                path = fetch_file(root, "config.json", preset.revision, offline, subfolder=name)
            except ModelError:
                continue
        config = read_json(path, f"{name}/config.json")
        return config if isinstance(config, dict) else {}
    return {}


def load_controlnets(pipe: Any, preset: Any, device: Any, dtype: Any, offline: bool) -> None:
    """Load the preset's ControlNets (the family's class, `from_pretrained` as diffusers resolves it) for `pipe`."""
    import warnings

    import diffusers

    from diffcli.families.registry import family_for

    nets = family_for(type(pipe).__name__).controlnet
    if nets is None:
        raise UsageError(f"--controlnet: {type(pipe).__name__} has no ControlNet pipelines")
    loaded = []
    for model in preset.controlnet:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = getattr(diffusers, nets.model).from_pretrained(
                    model, dtype=dtype, use_safetensors=None if preset.allow_pickle else True,
                    local_files_only=offline)
        except Exception as err:  # noqa: BLE001 - every loader failure is one line
            raise _load_error(model, err, preset.allow_pickle, offline) from None
        _check_finite(net, model)
        loaded.append(net.to(device))
    _LOADED[pipe] = loaded
    _MADE.pop(pipe, None)


def _check_finite(net: Any, model: str) -> None:
    """ModelError (exit 3) when a ControlNet holds NaN or infinite weights (they would blacken every image)."""
    import torch

    for name, tensor in net.named_parameters():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelError(f"ControlNet {escape_control(model)} holds NaN or infinite values "
                             f"({escape_control(name)[:120]})", hint="the file is damaged; use another copy")


def _load_error(model: str, err: Exception, allow_pickle: bool, offline: bool) -> ModelError:
    from diffcli.run.hub import hub_error

    text = str(err)
    folder = Path(model).expanduser()
    has_safetensors = folder.is_dir() and any(folder.glob("*.safetensors"))  # a damaged file is not a pickle one
    if isinstance(err, OSError) and not allow_pickle and "safetensors" in text and not has_safetensors:
        return ModelError(f"ControlNet {escape_control(model)}: no safetensors weights (only pickle .bin files, "
                          "which can run code when loaded)",
                          hint="if you trust this model, opt in with --allow-pickle or `allow_pickle: true`")
    if isinstance(err, OSError) and not Path(model).expanduser().exists():
        return hub_error(model, err, offline, "config.json")
    first = escape_control(text.strip().splitlines()[0])[:200] if text.strip() else type(err).__name__
    return ModelError(f"ControlNet {escape_control(model)}: cannot load: {first}")


def control_pipeline(pipe: Any, kind: str) -> Any:
    """The family's ControlNet pipeline for `kind` on `pipe`'s modules and the loaded ControlNets, made once;
    its scheduler follows `pipe`'s current one."""
    made = _MADE.setdefault(pipe, {}).get(kind)
    if made is None:
        import diffusers

        from diffcli.families.registry import family_for

        nets = family_for(type(pipe).__name__).controlnet
        loaded = _LOADED.get(pipe)
        if nets is None or getattr(nets, kind) is None or not loaded:
            raise UsageError(f"--controlnet: no ControlNet {KINDS[kind]} pipeline for {type(pipe).__name__}")
        made = getattr(diffusers, getattr(nets, kind)).from_pipe(pipe, controlnet=loaded if len(loaded) > 1
                                                                  else loaded[0])
        made.set_progress_bar_config(disable=True)
        vae = getattr(pipe, "vae", None)
        if kind == "img2img" and vae is not None and getattr(vae.config, "in_channels", 3) == 1:
            # diffusers' ControlNet img2img converts init images to RGB; a greyscale VAE takes them as loaded
            processor = made.image_processor
            made.image_processor = type(processor)(**{**processor.config, "do_convert_rgb": False})
        _MADE[pipe][kind] = made
    made.scheduler = pipe.scheduler
    return made


def with_control(default: Any, pipe: Any, kind: str, kwargs: dict[str, Any],
                 batch: list[Item]) -> tuple[Any, dict[str, Any]]:
    """(pipeline, call arguments): `default` and `kwargs` as they are, or with ControlNets the ControlNet
    pipeline and the control images, scale and guidance window added."""
    first = batch[0]
    spec = first.control
    if spec is None:
        return default, kwargs
    from diffcli.plan.control import load_control_image

    target = control_pipeline(pipe, kind)
    images = [load_control_image(path, sha, spec.module, first.width, first.height)
              for path, sha in zip(spec.images, spec.sha256)]
    many = len(images) > 1
    name = "control_image" if "control_image" in inspect.signature(target.__call__).parameters else "image"
    scale = float(first.control_scale if first.control_scale is not None else 1.0)
    return target, {**kwargs, name: images if many else images[0],
                    "controlnet_conditioning_scale": [scale] * len(images) if many else scale,
                    "control_guidance_start": [spec.start] * len(images) if many else spec.start,
                    "control_guidance_end": [spec.end] * len(images) if many else spec.end}
