"""What a model is, read from its configs before any weights load: task, default size, scheduler.

Local folders and hub ids are read the same way (diffusers' `load_config`), so the checks that
need the model — task mismatch, sizes, step counts the scheduler can make — fail in a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffcli.errors import ModelError
from diffcli.plan.items import ModelFacts
from diffcli.plan.keys import MAX_SIDE

COMMANDS = {"txt2img": "diffcli txt2img", "unconditional": "diffcli unconditional"}


def model_name(model: str) -> str:
    """What metadata records as the model that ran: a hub id as is, a local folder by its name."""
    path = Path(model)
    return path.name if path.is_absolute() or path.exists() else model


def _config(model: str, subfolder: str, file_name: str, preset: Any, offline: bool) -> dict[str, Any]:
    """One component config, local or from the hub (bounded reading, no retry loops)."""
    from diffcli.plan.text import escape_control
    from diffcli.run.hub import fetch_file
    from diffcli.run.model_files import read_json

    local = Path(model).expanduser()
    path = (local / subfolder / file_name if local.is_dir()
            else fetch_file(model, file_name, preset.revision, offline, subfolder=subfolder))
    data = read_json(path, f"{subfolder}/{file_name}")
    if not isinstance(data, dict):
        raise ModelError(f"{escape_control(str(path))}: config is not a JSON object")
    return data


def _config_root(preset: Any) -> str:
    """Where the component configs are: the model itself, or a single-file checkpoint's config folder."""
    from diffcli.run.single_file import detect, looks_single_file

    return str(detect(preset).config) if looks_single_file(preset.model) else preset.model


def _int(config: dict[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def probe_model(preset: Any, wanted: str | None) -> ModelFacts:
    """The model's facts (its scheduler config included); refuses a model of the wrong task before loading."""
    from diffcli.run.pipelines import (apply_offline, check_task, is_offline, quiet_libraries, read_model_index,
                                        task_of)

    offline = is_offline(preset)
    apply_offline(offline)
    quiet_libraries()
    index = read_model_index(preset.model, preset, offline)
    root = _config_root(preset)
    task = task_of(index)
    class_name = str(index.get("_class_name", "?"))
    if wanted is not None:
        check_task(index, wanted, preset.model)
    if task not in COMMANDS:
        raise ModelError(f"'{preset.model}' is a {class_name}, which diffcli cannot run")
    from diffcli.run.signatures import pipeline_signature

    signature = pipeline_signature(class_name)
    if signature is None:
        import importlib.metadata

        raise ModelError(f"{preset.model}: unknown pipeline class '{class_name}' "
                         f"(diffusers {importlib.metadata.version('diffusers')})",
                         hint="upgrade diffusers, or check model_index.json")
    from diffcli.families.registry import family_for

    family = family_for(class_name)
    components = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v and v[0]}
    _check_components(index, preset.model, signature, family.optional)
    denoiser_name = "unet" if "unet" in components else "transformer"
    denoiser = _config(root, denoiser_name, "config.json", preset, offline)
    if preset.backend == "openvino":  # a family OpenVINO cannot convert: refused before any weights load
        from diffcli.plan.text import escape_control

        family.check_openvino(escape_control(str(denoiser.get("_class_name", denoiser_name))), denoiser)
    decoder_name = "vae" if "vae" in components else ("vqvae" if "vqvae" in components else None)
    factor, image_config = 1, denoiser
    if decoder_name is not None:
        decoder = image_config = _config(root, decoder_name, "config.json", preset, offline)
        channels = decoder.get("block_out_channels") or decoder.get("encoder_block_out_channels") or [0]
        factor = 2 ** (len(channels) - 1) if isinstance(channels, list) and 0 < len(channels) <= 8 else 8
    factor = family.vae_factor or factor
    if task == "txt2img":
        side = family.default_side(signature.call_defaults, denoiser, factor)
    else:
        side = _int(denoiser, "sample_size", 64) * factor
    if not 1 <= side <= MAX_SIDE:
        raise ModelError(f"'{preset.model}': {denoiser_name} config asks for {side}-pixel images, "
                         f"more than diffcli allows ({MAX_SIDE})")
    scheduler = _config(root, "scheduler", "scheduler_config.json", preset, offline)
    defaults = {}
    if task == "txt2img":
        sibling = family.inpaint if preset.mask_image else family.img2img
        image = pipeline_signature(sibling) if preset.init_image and sibling else None
        call = (image or signature).call_defaults  # img2img and inpaint: their own pipeline's
        defaults = {ours: call[theirs] for ours, theirs in (("steps", "num_inference_steps"),
                                                            ("guidance_scale", "guidance_scale")) if theirs in call}
        if "max_sequence_length" in call:
            defaults["max_sequence_length"] = call["max_sequence_length"]
    from diffcli.families.upscale import upscale_facts

    upscale = upscale_facts(family, index, denoiser, factor, signature.call_defaults)  # None: not an upscaler
    facts = ModelFacts(task=task, class_name=class_name, width=side, height=side,
                       size_multiple=family.size_multiple(denoiser, factor) if task == "txt2img" else 1,
                       fixed_size=task == "unconditional", name=model_name(preset.model), family=family.name,
                       defaults=defaults, weighted_prompts=family.weighted_prompts,
                       img2img=family.name == "other" or family.img2img is not None,
                       inpaint=family.name == "other" or family.inpaint is not None, scheduler_config=scheduler,
                       channels=_int(image_config, "in_channels", 3),
                       max_side=family.max_side(denoiser, factor) if task == "txt2img" else None,
                       upscale=upscale)
    return facts


def _check_components(index: dict[str, Any], model: str, signature: Any, optional: tuple[str, ...]) -> None:
    """Refuse, before loading, a pipeline without a text encoder or tokenizer its class needs
    (absent or null in model_index.json); the family's optional ones (SD3's T5) may be null."""
    from diffcli.plan.text import escape_control

    needed = [name for name in signature.components
              if name.startswith(("text_encoder", "tokenizer")) and name not in optional]
    missing = [name for name in needed if not (isinstance(index.get(name), list) and any(index[name]))]
    if missing:
        raise ModelError(f"{escape_control(model)}: this {signature.name} has no {', '.join(sorted(missing))} "
                         "(absent or null in model_index.json)", hint="use a complete pipeline folder")
