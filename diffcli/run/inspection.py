"""`diffcli inspect`: what a pipeline is made of.

TARGET is read as: a `.yaml`/`.yml` path → preset file; an existing folder or a path-like value
(`./x`, `/x`, `~/x`, `a/b/c`) → local pipeline folder; `owner/name` → hub id; a bare name → shipped
preset, else a preset file of that name in the current folder, else an unknown preset (exit 2, with
the closest shipped names) — a bare name is never sent to the hub.
The pipeline is loaded on the CPU in float32 unless `--set device=...` / `--set dtype=...` ask otherwise.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from diffcli.plan.presets import PresetError, looks_like_path, resolve, shipped_names, shipped_presets_dir
from diffcli.plan.text import escape_control


def target_kind(target: str) -> str:
    """`preset` or `model` for an inspect TARGET (see the module docstring); PresetError for unknown names."""
    if Path(target).suffix.lower() in (".yaml", ".yml"):
        return "preset"
    if Path(target).suffix.lower() in (".safetensors", ".ckpt", ".pt", ".pth", ".bin"):
        return "model"  # a single-file checkpoint
    if Path(target).expanduser().is_dir() or looks_like_path(target) or "/" in target:
        return "model"
    if (shipped_presets_dir() / f"{target}.yaml").is_file() or Path(target).is_file():
        return "preset"
    names = shipped_names()
    close = difflib.get_close_matches(target, names, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]}?" if close else f"shipped presets: {', '.join(names)}"
    raise PresetError(f"unknown preset or model '{escape_control(target)}'; {hint}",
                      hint="hub ids look like owner/name; local folders must exist")


def _preset_for(target: str, sets: list[str], offline: bool, allow_pickle: bool) -> Any:
    flags = {"offline": True if offline else None, "allow_pickle": True if allow_pickle else None}
    if target_kind(target) == "preset":
        resolved = resolve(target, None, sets, flags)
    else:
        resolved = resolve(None, None, sets, {**flags, "model": target})
    placement = {key: value for key, value in (("device", "cpu"), ("dtype", "float32"))
                 if resolved.sources.get(key) != "--set"}
    return resolved.preset.replace(**placement) if placement else resolved.preset


def _component_info(name: str, component: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"name": name, "class": type(component).__name__}
    if component is None:
        info["class"] = None
        return info
    if hasattr(component, "parameters") and callable(component.parameters):
        params = list(component.parameters())
        info["parameters"] = sum(p.numel() for p in params)
        if params:
            info["dtype"] = str(params[0].dtype).replace("torch.", "")
            info["device"] = str(params[0].device)
    config = getattr(component, "config", None)
    if config is not None:
        info["config"] = json.loads(json.dumps(dict(config) if not hasattr(config, "to_dict") else config.to_dict(),
                                               default=str))
    if hasattr(component, "vocab_size") and not hasattr(component, "parameters"):
        info["vocab_size"] = component.vocab_size
    return info


def inspect_target(target: str, sets: list[str], offline: bool = False, allow_pickle: bool = False) -> dict[str, Any]:
    """Load the pipeline a preset/folder/hub id names (CPU, float32 unless `--set` says) and describe it."""
    from diffcli.run.levers import denoiser_of
    from diffcli.run.pipelines import load_pipeline
    from diffcli.families.registry import family_for
    from diffcli.plan.schedulers import name_for
    from diffcli.run.schedulers import compatible_for

    preset = _preset_for(target, sets, offline, allow_pickle)
    loaded = load_pipeline(preset, None)
    pipe = loaded.pipe
    components = [_component_info(name, comp) for name, comp in pipe.components.items()]
    denoiser = denoiser_of(pipe)
    sample: dict[str, Any] = {}
    if denoiser is not None:
        sample = {"sample_size": denoiser.config.get("sample_size"), "in_channels": denoiser.config.get("in_channels")}
    info = {
        "target": target,
        "model": preset.model,
        "pipeline": loaded.class_name,
        "task": loaded.task,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "components": components,
        "total_parameters": sum(c.get("parameters", 0) for c in components),
        "sample": sample,
        "scheduler": {"class": type(pipe.scheduler).__name__, "name": name_for(pipe.scheduler),
                      "config": json.loads(json.dumps(dict(pipe.scheduler.config), default=str)),
                      "compatible": compatible_for(pipe.scheduler, family_for(loaded.class_name))},
    }
    info["family"] = family_info(loaded.class_name, pipe)
    from diffcli.run.single_file import describe, looks_single_file

    if looks_single_file(preset.model):
        info["single_file"] = describe(preset)
    return info


SHIFT_KEYS = ("shift", "flow_shift", "use_dynamic_shifting", "base_shift", "max_shift", "base_image_seq_len",
              "max_image_seq_len", "time_shift_type", "use_flow_sigmas", "prediction_type")


def family_info(class_name: str, pipe: Any) -> dict[str, Any]:
    """The family adapter's view: denoiser, text encoders, flow matching and shift, the defaults that apply."""
    from diffcli.families.registry import family_for
    from diffcli.plan.schedulers import is_flow
    from diffcli.run.signatures import signature_of

    family = family_for(class_name)
    defaults = signature_of(type(pipe)).call_defaults if family.name != "ddpm" else {}
    config = dict(pipe.scheduler.config)
    flow = family.flow or is_flow(pipe.scheduler)
    return {
        "name": family.name, "denoiser": family.denoiser, "text_encoders": family.text_encoders or None,
        "objective": "flow matching (x0 = x_t - sigma * v)" if flow else config.get("prediction_type", "epsilon"),
        "latents": "packed 2x2 patches" if family.packed else "(B, C, h, w)",
        "weighted_prompts": family.weighted_prompts, "img2img": family.img2img,
        "resolution_binning": family.binning,
        "defaults": {key: value for key, value in defaults.items() if key in ("num_inference_steps", "guidance_scale",
                                                                              "max_sequence_length")},
        "shift": {key: config[key] for key in SHIFT_KEYS if key in config} if flow else {},
    }


def _human(count: int | None) -> str:
    if count is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)


def render(info: dict[str, Any]) -> None:
    """Rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{info['pipeline']}[/bold]  ({info['task']})  model: {info['model']}", highlight=False)
    console.print(f"device: {info['device']}  dtype: {info['dtype']}  "
                  f"parameters: {_human(info['total_parameters'])} ({info['total_parameters']:,})", highlight=False)
    if info.get("single_file"):
        found = info["single_file"]
        console.print(f"single file: {found['architecture']} (diffusers' {found['model_type']}), "
                      f"configs: {found['config']}", highlight=False, markup=False)
    if info["sample"]:
        console.print(f"sample size: {info['sample']['sample_size']}  channels: {info['sample']['in_channels']}",
                      highlight=False)
    family = info.get("family") or {}
    if family:
        defaults = ", ".join(f"{k} {v}" for k, v in family["defaults"].items()) or "-"
        console.print(f"family: {family['name']}  denoiser: {family['denoiser']}  objective: {family['objective']}  "
                      f"latents: {family['latents']}", highlight=False, markup=False)
        if family["text_encoders"]:
            console.print(f"text encoders: {family['text_encoders']}", highlight=False, markup=False)
        console.print(f"pipeline defaults (used when neither flag nor preset sets them): {defaults}",
                      highlight=False, markup=False)
        if family["shift"]:
            console.print("timestep shift: " + ", ".join(f"{k}={v}" for k, v in family["shift"].items()),
                          highlight=False, markup=False)
    table = Table(title="components")
    for column in ("name", "class", "parameters", "dtype", "device"):
        table.add_column(column)
    for comp in info["components"]:
        table.add_row(comp["name"], str(comp["class"]), _human(comp.get("parameters")),
                      comp.get("dtype", "-"), comp.get("device", "-"))
    console.print(table)
    sched = Table(title=f"scheduler: {info['scheduler']['class']}")
    sched.add_column("key")
    sched.add_column("value")
    for key, value in info["scheduler"]["config"].items():
        if not key.startswith("_"):
            sched.add_row(key, json.dumps(value))
    console.print(sched)
    console.print("compatible schedulers: " + ", ".join(info["scheduler"]["compatible"]), highlight=False)
