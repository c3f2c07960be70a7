"""Pipeline: a Preset → a loaded diffusers pipeline on the right device, dtype and scheduler.

Loading goes through `DiffusionPipeline.from_pretrained`, so hub ids and local folders
resolve exactly as diffusers resolves them; the checks around it turn diffusers' many
failure modes into one-line `ModelError`s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcli.errors import ModelError, PresetError
from diffcli.plan.presets import Preset, looks_like_path
from diffcli.plan.text import escape_control
from diffcli.run.hub import check_hub_id, fetch_model_index, hub_error
from diffcli.run.model_files import (WEIGHT_SUFFIXES, check_component_configs, check_index,  # noqa: F401
                                     is_offline, read_json)

UNCONDITIONAL_COMPONENTS = {"unet", "scheduler"}


@dataclass
class LoadedPipeline:
    """A pipeline ready to sample, plus what was resolved on the way."""

    pipe: Any
    task: str
    device: Any
    dtype: Any
    model_ref: str
    class_name: str


def quiet_libraries() -> None:
    """Keep transformers/diffusers chatter (warnings, loading bars) off stderr unless debugging."""
    if os.environ.get("DIFFCLI_DEBUG", "") in ("", "0"):
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def apply_offline(offline: bool) -> None:
    """Set HF_HUB_OFFLINE before huggingface_hub is imported (it reads it at import)."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"


def resolve_device(name: str) -> Any:
    """`auto` → cuda > mps > cpu; an unavailable explicit device is a preset error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PresetError(f"device: {name}: CUDA is not available on this machine", hint="use device: auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise PresetError(f"device: {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PresetError(f"device: {name}: MPS is not available on this machine")
    return device


def resolve_dtype(name: str, device: Any) -> Any:
    """`auto` → float16 on CUDA, float32 elsewhere (half precision is ~15x slower on these CPUs)."""
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def read_model_index(model: str, preset: Preset, offline: bool) -> dict[str, Any]:
    """The pipeline's `model_index.json`, local or from the hub, read bounded and checked, with clear errors.

    A local folder's component configs are checked too (`check_component_configs`), and its weights
    must be safetensors unless pickle is allowed; nothing is imported or allocated on the way.
    """
    from diffcli.run.single_file import looks_single_file, single_file_index

    local = Path(model).expanduser()
    shown = escape_control(model)
    if looks_single_file(model):  # an original-layout checkpoint: configs from --config or diffcli's own
        return single_file_index(preset)
    if preset.config:
        raise PresetError(f"--config is for single-file checkpoints; {shown} is a pipeline folder or hub id",
                          hint="drop --config")
    if local.exists() or looks_like_path(model):
        if not local.is_dir():
            raise ModelError(f"model folder not found: {shown}", hint="check the path, or give a hub id like owner/name")
        index_path = local / "model_index.json"
        if not index_path.exists():
            raise ModelError(f"{shown}: not a diffusers pipeline folder (no model_index.json)")
        data = check_index(read_json(index_path, "model_index.json"), shown)
        check_component_configs(local, data)
        check_local_weights(local, data, preset.allow_pickle)
        return data
    check_hub_id(model)
    path = fetch_model_index(model, preset.revision, offline)
    return check_index(read_json(path, "model_index.json"), f"'{shown}' (hub)")


def _hub_error(model: str, err: Exception, offline: bool) -> ModelError:
    """A hub failure as one line, chosen by exception type (see `diffcli.run.hub.hub_error`)."""
    return hub_error(model, err, offline)


def check_local_weights(folder: Path, index: dict[str, Any], allow_pickle: bool) -> None:
    """Before loading: each model component has weights, and safetensors unless pickle is allowed."""
    for name, spec in index.items():
        component = folder / name
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or not spec[0]:
            continue
        if not (component / "config.json").is_file():
            continue
        kinds = {WEIGHT_SUFFIXES[p.suffix] for p in component.iterdir() if p.suffix in WEIGHT_SUFFIXES}
        shown = escape_control(str(component))
        if not kinds:
            raise ModelError(f"{shown}: no weights file (.safetensors) in this component folder")
        if kinds == {"pickle"} and not allow_pickle:
            raise ModelError(f"{shown}: only pickle weights (.bin/.pt), which can run code when loaded",
                             hint="if you trust this model, opt in with --allow-pickle or `allow_pickle: true`")


def task_of(index: dict[str, Any]) -> str:
    """`txt2img` for pipelines with a text encoder, `unconditional` for unet+scheduler ones."""
    components = {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0]}
    if any(name.startswith("text_encoder") or name == "transformer" for name in components):
        return "txt2img"
    if "unet" in components and components <= UNCONDITIONAL_COMPONENTS | {"vqvae", "vae"}:
        return "unconditional"
    return "other"


def check_task(index: dict[str, Any], wanted: str, model: str) -> None:
    """Refuse an unconditional model for txt2img and the reverse, before loading weights."""
    actual = task_of(index)
    if actual != wanted:
        cls = index.get("_class_name")
        commands = {"txt2img": "diffcli txt2img", "unconditional": "diffcli unconditional"}
        hint = f"use {commands[actual]}" if actual in commands else None
        article = "an" if wanted[:1] in "aeiou" else "a"
        raise ModelError(f"'{model}' is a {cls} ({actual} model), not {article} {wanted} model", hint=hint)


def load_pipeline(preset: Preset, task: str | None) -> LoadedPipeline:
    """Load, place and configure the pipeline a preset describes."""
    offline = is_offline(preset)
    apply_offline(offline)
    quiet_libraries()
    index = read_model_index(preset.model, preset, offline)
    actual_task = task_of(index)
    if task is not None:
        check_task(index, task, preset.model)
    device = resolve_device(preset.device)
    dtype = resolve_dtype(preset.dtype, device)
    pipe = _from_pretrained(preset, index, dtype, offline, actual_task)
    if preset.cpu_offload == "none":  # CPU offload places the modules itself
        pipe.to(device)
    pipe.scheduler = _scheduler_for(pipe, preset)
    from diffcli.run.levers import apply_levers
    from diffcli.run.loras import apply_loras

    apply_loras(pipe, preset.loras, preset.allow_pickle, offline)  # before compile and offload hooks
    if preset.controlnet:
        from diffcli.run.controlnet import load_controlnets

        load_controlnets(pipe, preset, device, dtype, offline)

    apply_levers(pipe, preset, device)
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)
    return LoadedPipeline(pipe, actual_task, device, dtype, preset.model, index["_class_name"])


def _scheduler_for(pipe: Any, preset: Preset) -> Any:
    from diffcli.run.schedulers import build_scheduler

    return build_scheduler(preset.scheduler, pipe.scheduler, dict(preset.scheduler_options))


def _from_pretrained(preset: Preset, index: dict[str, Any], dtype: Any, offline: bool, task: str) -> Any:
    import diffusers

    from diffcli.run.single_file import load_single_file, looks_single_file

    diffusers.utils.logging.disable_progress_bar()
    if os.environ.get("DIFFCLI_DEBUG", "") in ("", "0"):
        diffusers.utils.logging.set_verbosity(diffusers.utils.logging.CRITICAL)  # we report load errors ourselves
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass
    kwargs: dict[str, Any] = {
        "revision": preset.revision,
        "variant": preset.variant,
        "dtype": dtype,
        "use_safetensors": None if preset.allow_pickle else True,
        "local_files_only": offline,
    }
    if task == "txt2img" and preset.safety_checker is False and "safety_checker" in index:
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    class_name = index.get("_class_name", "")
    from diffcli.families.registry import family_for

    for name in family_for(class_name).optional:  # e.g. SD3 saved without T5: diffusers wants them passed as None
        if isinstance(index.get(name), list) and not any(index[name]):
            kwargs[name] = None
    if not hasattr(diffusers, class_name):
        raise ModelError(f"{preset.model}: unknown pipeline class '{class_name}' (diffusers {diffusers.__version__})",
                         hint="upgrade diffusers, or check model_index.json")
    try:
        import warnings

        with warnings.catch_warnings():
            if os.environ.get("DIFFCLI_DEBUG", "") in ("", "0"):
                warnings.simplefilter("ignore")  # huggingface_hub deprecation warnings: one line means one line
            if looks_single_file(preset.model):
                pipe = load_single_file(preset, index, dtype)
            else:
                pipe = diffusers.DiffusionPipeline.from_pretrained(preset.model, **kwargs)
    except Exception as err:  # noqa: BLE001 - map every loader failure to one message
        raise _load_error(preset, err, offline) from None
    return pipe


def _load_error(preset: Preset, err: Exception, offline: bool) -> ModelError:
    """A loader failure as one line: hub errors and corrupt safetensors by type; diffusers' own
    missing-safetensors refusal (a plain OSError) by its text, the one case with no type of its own."""
    from safetensors import SafetensorError

    model = escape_control(preset.model)
    text = str(err)
    first = escape_control(text.strip().splitlines()[0])[:200] if text.strip() else type(err).__name__
    if isinstance(err, OSError) and not preset.allow_pickle and "necessary `safetensors` weights" in text:
        return ModelError(
            f"{model}: no safetensors weights (only pickle .bin files, which can run code when loaded)",
            hint="if you trust this model, opt in with --allow-pickle or `allow_pickle: true`",
        )
    if isinstance(err, SafetensorError) or any(isinstance(e, SafetensorError) for e in _chain(err)):
        return ModelError(f"{model}: corrupt or truncated weights: {first}")
    if isinstance(err, OSError) and not Path(preset.model).expanduser().exists():
        return _hub_error(preset.model, err, offline)
    return ModelError(f"{model}: cannot load pipeline: {first}")


def _chain(err: BaseException) -> list[BaseException]:
    causes, current = [], err.__cause__ or err.__context__
    while current is not None and len(causes) < 16:
        causes.append(current)
        current = current.__cause__ or current.__context__
    return causes
