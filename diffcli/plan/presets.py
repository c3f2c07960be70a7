"""Presets: YAML files layered into one validated, frozen `Preset`.

Precedence, highest first: flags > `--set key=value` > user preset file > shipped preset
(named by the user file's `extends:` or the command's default) > built-in defaults.
Imports neither torch nor diffusers, so listing and showing presets is instant.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from diffcli.errors import PresetError
from diffcli.plan.keys import KEYS
from diffcli.plan.preset import Preset, build_preset, validate_layer
from diffcli.plan.resources import shipped_presets_dir
from diffcli.plan import safe_yaml
from diffcli.plan.text import escape_control, one_line, read_text_file



# ---------------------------------------------------------------- files and layers


@dataclass(frozen=True)
class PresetFile:
    """One YAML file, loaded and validated (without its `extends` base)."""

    path: Path
    values: dict[str, Any]
    extends: str | None


def shipped_names() -> list[str]:
    """Names of the presets that ship with diffcli."""
    return sorted(p.stem for p in shipped_presets_dir().glob("*.yaml"))


MAX_PRESET_BYTES = 1 << 20  # a preset is a few dozen lines


def locate(name_or_path: str, base: Path | None = None) -> Path:
    """A shipped preset's name or a YAML file's path → the file.

    `base` is the folder relative paths start from: the folder of the file that says `extends:`,
    or the current folder (None) for `--preset`. A value with a `/` or a `.yaml`/`.yml` suffix is a
    path; a bare name is a shipped preset first, then a file of that name in `base`.
    """
    shown = escape_control(name_or_path)
    candidate = Path(name_or_path).expanduser()
    if not candidate.is_absolute() and base is not None:
        candidate = base / candidate
    if candidate.suffix.lower() in (".yaml", ".yml") or os.sep in name_or_path or "/" in name_or_path:
        if not candidate.is_file():
            where = f" (relative to {escape_control(str(base))})" if base is not None and not Path(
                name_or_path).expanduser().is_absolute() else ""
            raise PresetError(f"preset file not found: {shown}{where}")
        return candidate
    shipped = shipped_presets_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    if candidate.is_file():
        return candidate
    names = shipped_names()
    close = difflib.get_close_matches(name_or_path, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"shipped presets: {', '.join(names)}"
    raise PresetError(f"unknown preset '{shown}'", hint=hint)


def load_file(path: Path) -> PresetFile:
    """Read one preset file (a regular file up to 1 MiB) with the bounded safe loader; validate its keys."""
    shown = escape_control(str(path))
    text = read_text_file(path, MAX_PRESET_BYTES, "preset file")
    try:
        data = safe_yaml.load(text)
    except yaml.YAMLError as err:
        kind = "refused YAML" if isinstance(err, safe_yaml.YAMLRefused) else "malformed YAML"
        raise PresetError(f"{shown}: {kind}{safe_yaml.describe_error(err)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PresetError(f"{shown}: a preset must be a mapping of keys to values, got {type(data).__name__}")
    data = dict(data)
    extends = data.pop("extends", None)
    if extends is not None and (not isinstance(extends, str) or not extends.strip() or "\x00" in extends):
        raise PresetError(f"{shown}: extends: expected a preset name or path, got {one_line(repr(extends), 80)}")
    values = validate_layer(data, shown)
    if isinstance(values.get("model"), str):
        values["model"] = resolve_model_path(values["model"], path.parent)
    if values.get("loras"):
        from diffcli.plan.loras import resolve_entries

        values["loras"] = resolve_entries(values["loras"], path.parent)
    for key in PATH_KEYS:
        if isinstance(values.get(key), str):
            values[key] = resolve_local_path(values[key], path.parent)
    values.update(resolve_controls(values, path.parent))
    return PresetFile(path=path, values=values, extends=extends)


def looks_like_path(model: str) -> bool:
    """True for values that can only be a local path (never a hub id)."""
    return model.startswith((".", "/", "~", "\\")) or model.count("/") > 1 or (len(model) > 1 and model[1] == ":")


def resolve_model_path(model: str, base: Path) -> str:
    """Relative local paths in a preset resolve against the preset file's folder."""
    if model.startswith("~"):
        return str(Path(model).expanduser())
    if Path(model).is_absolute():
        return model
    candidate = base / model
    if looks_like_path(model) or candidate.exists():
        return str(candidate.resolve())
    from diffcli.plan.resources import builtin_model

    builtin = builtin_model(model)  # `digits-text`: a built-in model, never a hub id
    return str(builtin) if builtin is not None else model


# always local paths: relative ones resolve like `model`
PATH_KEYS = ("init_image", "mask_image", "upscale_image", "config")


def resolve_controls(values: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """`controlnet` entries resolved like `model`, `control_image` entries like the other local paths."""
    resolved: dict[str, Any] = {}
    if values.get("controlnet"):
        resolved["controlnet"] = tuple(resolve_model_path(entry, base) for entry in values["controlnet"])
    if values.get("control_image"):
        resolved["control_image"] = tuple(resolve_local_path(entry, base) for entry in values["control_image"])
    return resolved


def resolve_local_path(value: str, base: Path) -> str:
    """A local file or folder path: `~` expanded, relative paths against `base`, made absolute."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).absolute())


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` items → mapping; values are read as YAML scalars (`steps=25` is an int)."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PresetError(f"--set {one_line(item, 80)}: expected key=value")
        raw_string = key in ("prompt", "negative_prompt", "model", "revision", "variant", "name", "description",
                             "init_image", "mask_image", "upscale_image", "config") or (key in ("controlnet", "control_image")
                                                                       and not raw.strip().startswith("["))
        try:
            value = safe_yaml.load(raw) if raw.strip() else None
        except safe_yaml.YAMLRefused as err:  # aliases, deep nesting: refused, not read as a string
            if not raw_string:
                raise PresetError(f"--set {one_line(key, 40)}: {one_line(err.problem, 120)}") from None
            value = raw
        except yaml.YAMLError:
            value = raw
        if raw_string and value is not None:
            value = raw
        values[key] = value
    return validate_layer(values, "--set")


@dataclass(frozen=True)
class Resolved:
    """The resolved preset, where each key's value came from, and the default preset used (if any)."""

    preset: Any
    sources: dict[str, str]
    default_used: str | None = None


def resolve(
    preset: str | None,
    default_preset: str | None,
    sets: list[str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Resolved:
    """Layer defaults < shipped/base presets < user file < --set < flags into one Preset.

    The command's default preset applies only when neither --preset nor a model (by flag or
    by `--set model=`) is given: `--set model=X` and `--model X` resolve the same way.
    """
    set_values = parse_set(sets or [])
    flag_values = validate_layer({k: v for k, v in (flags or {}).items() if v is not None}, "flag", label_flags=True)
    default_used = default_preset if not preset and "model" not in set_values and "model" not in flag_values else None
    chain: list[PresetFile] = []
    name = preset or default_used
    seen: set[Path] = set()
    base: Path | None = None  # --preset is relative to the current folder, `extends:` to its own file
    while name:
        path = locate(name, base).resolve()
        if path in seen:
            raise PresetError(f"{escape_control(str(path))}: extends: cycle through {escape_control(name)}")
        seen.add(path)
        loaded = load_file(path)
        chain.append(loaded)
        name, base = loaded.extends, path.parent
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {key: "default" for key in KEYS}
    for layer in reversed(chain):
        for key, value in layer.values.items():
            merged[key] = value
            sources[key] = str(layer.path)
    for label, values in (("--set", set_values), ("flag", flag_values)):
        for key, value in values.items():
            if key == "loras" and value:
                from diffcli.plan.loras import resolve_entries

                value = resolve_entries(value, Path.cwd())
            if key == "model" and isinstance(value, str):
                value = resolve_model_path(value, Path.cwd())
            elif key in PATH_KEYS and isinstance(value, str):
                value = resolve_local_path(value, Path.cwd())
            value = resolve_controls({key: value}, Path.cwd()).get(key, value)
            merged[key] = value
            sources[key] = label
    source = str(chain[0].path) if chain else "preset"
    return Resolved(preset=build_preset(merged, source), sources=sources, default_used=default_used)


def preset_summary(path: Path) -> tuple[str, str, str]:
    """(name, task, description) of a shipped preset, for `diffcli presets`."""
    loaded = load_file(path)
    values = dict(loaded.values)
    if loaded.extends:
        base = load_file(locate(loaded.extends, path.parent))
        values = {**base.values, **values}
    return path.stem, values.get("task") or "?", values.get("description") or values.get("model", "")


def to_yaml(preset: Preset) -> str:
    """The resolved preset as YAML (what `diffcli presets show` prints)."""
    return yaml.safe_dump(preset.to_dict(), sort_keys=False, allow_unicode=True)
