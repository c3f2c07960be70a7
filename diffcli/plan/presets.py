"""Presets: YAML files layered into one validated, frozen `Preset`.

Precedence, highest first: flags > `--set key=value` > user preset file > shipped preset
(named by the user file's `extends:` or the command's default) > built-in defaults.
Imports neither torch nor diffusers, so listing and showing presets is instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from diffcli.errors import PresetError
from diffcli.plan.resources import shipped_presets_dir

TASKS = ("unconditional", "txt2img")
DEVICES_HELP = "auto | cpu | cuda | cuda:N | mps"
DTYPES = ("auto", "float32", "float16", "bfloat16")
SHOW_KINDS = ("x_t", "x0", "both")
ANIMATIONS = ("gif", "webp", "none")
FRAME_DECODES = ("preview", "vae")
CPU_OFFLOADS = ("none", "model", "sequential")
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class Preset:
    """A fully resolved, validated preset. Field docs double as `diffcli presets keys`."""

    model: str = ""
    name: str | None = None
    description: str | None = None
    task: str | None = None
    revision: str | None = None
    variant: str | None = None
    scheduler: str | None = None
    scheduler_options: dict = field(default_factory=dict)
    steps: int | None = None
    guidance_scale: float | None = None
    width: int | None = None
    height: int | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int = 0
    num_images: int = 1
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "auto"
    every: int | None = None
    show: str = "x_t"
    frame_decode: str = "preview"
    animation: str = "gif"
    frame_duration: int = 120
    output: str = "outputs"
    allow_pickle: bool = False
    offline: bool = False
    threads: int | None = None
    safety_checker: bool | None = None
    channels_last: bool = False
    compile: str = "none"
    attention_backend: str | None = None
    cpu_offload: str = "none"
    vae_tiling: bool = False
    vae_slicing: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of every key (the resolved YAML)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Preset":
        """A copy with some keys changed and re-validated."""
        merged = {**self.to_dict(), **changes}
        return build_preset(merged, source="(override)")


KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Preset))
FILE_ONLY_KEYS = ("extends",)

_INT_MIN: dict[str, int] = {
    "steps": 1, "num_images": 1, "batch_size": 1, "every": 1, "width": 8, "height": 8,
    "seed": 0, "frame_duration": 1, "threads": 1,
}
_FLOAT_MIN: dict[str, float] = {"guidance_scale": 0.0}
_CHOICES: dict[str, tuple[str, ...]] = {
    "task": TASKS, "dtype": DTYPES, "show": SHOW_KINDS, "animation": ANIMATIONS,
    "frame_decode": FRAME_DECODES, "cpu_offload": CPU_OFFLOADS, "compile": COMPILE_MODES,
}
_SEED_MAX = 2**63 - 1


def _expected_type(key: str) -> type:
    annotation = str(Preset.__dataclass_fields__[key].type)
    for name, typ in (("bool", bool), ("int", int), ("float", float), ("dict", dict), ("str", str)):
        if annotation.startswith(name):
            return typ
    raise AssertionError(f"unhandled annotation for {key}: {annotation}")


def _nullable(key: str) -> bool:
    return "None" in str(Preset.__dataclass_fields__[key].type)


def _check_value(key: str, value: Any) -> Any:
    """Return the value coerced to the key's type, or raise ValueError with what was expected."""
    if value is None:
        if _nullable(key):
            return None
        raise ValueError(f"expected a {_expected_type(key).__name__}, got null")
    typ = _expected_type(key)
    if typ is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        low = _INT_MIN.get(key)
        if low is not None and value < low:
            raise ValueError(f"expected an integer >= {low}, got {value}")
        if key == "seed" and value > _SEED_MAX:
            raise ValueError(f"expected a seed below 2**63, got {value}")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {value}")
        low_f = _FLOAT_MIN.get(key)
        if low_f is not None and value < low_f:
            raise ValueError(f"expected a number >= {low_f:g}, got {value:g}")
    elif typ is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"expected a mapping of option names to values, got {value!r}")
    elif typ is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        if "\x00" in value:
            raise ValueError("expected a string without NUL characters")
        choices = _CHOICES.get(key)
        if choices and value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        if key == "device":
            _check_device(value)
        if key == "scheduler":
            from diffcli.plan.schedulers import check_scheduler_name

            check_scheduler_name(value)
    return value


def _check_device(value: str) -> None:
    base, _, index = value.partition(":")
    if base not in ("auto", "cpu", "cuda", "mps") or (index and (base != "cuda" or not index.isdigit())):
        raise ValueError(f"expected {DEVICES_HELP}, got {value!r}")


def suggest(name: str, candidates: tuple[str, ...] | list[str]) -> str:
    """`; did you mean 'x'?` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def validate_layer(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Validate one layer's keys and values; errors read `source: key: message`."""
    checked: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise PresetError(f"{source}: {key!r}: keys must be strings")
        if key not in KEYS:
            raise PresetError(
                f"{source}: {key}: unknown key{suggest(key, KEYS + FILE_ONLY_KEYS)}",
                hint="`diffcli presets keys` lists every key",
            )
        try:
            checked[key] = _check_value(key, value)
        except ValueError as err:
            raise PresetError(f"{source}: {key}: {err}") from None
    return checked


def build_preset(data: Mapping[str, Any], source: str) -> Preset:
    """Validate a complete mapping into a frozen Preset."""
    checked = validate_layer(data, source)
    if not checked.get("model"):
        raise PresetError(f"{source}: model: required (a hub id such as google/ddpm-cifar10-32 or a local folder)")
    return Preset(**checked)


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


def locate(name_or_path: str) -> Path:
    """A shipped preset's name or a YAML file's path → the file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix.lower() in (".yaml", ".yml") or os.sep in name_or_path or "/" in name_or_path:
        if not candidate.is_file():
            raise PresetError(f"preset file not found: {name_or_path}")
        return candidate
    shipped = shipped_presets_dir() / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    if candidate.is_file():
        return candidate
    names = shipped_names()
    close = difflib.get_close_matches(name_or_path, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"shipped presets: {', '.join(names)}"
    raise PresetError(f"unknown preset '{name_or_path}'", hint=hint)


def load_file(path: Path) -> PresetFile:
    """Read one preset file with `yaml.safe_load` and validate its keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PresetError(f"{path}: cannot read preset: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise PresetError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PresetError(f"{path}: a preset must be a mapping of keys to values, got {type(data).__name__}")
    data = dict(data)
    extends = data.pop("extends", None)
    if extends is not None and not isinstance(extends, str):
        raise PresetError(f"{path}: extends: expected a preset name or path, got {extends!r}")
    values = validate_layer(data, str(path))
    if isinstance(values.get("model"), str):
        values["model"] = resolve_model_path(values["model"], path.parent)
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
    return model


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` items → mapping; values are read as YAML scalars (`steps=25` is an int)."""
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PresetError(f"--set {item}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if key in ("prompt", "negative_prompt", "model", "revision", "variant", "name", "description") and value is not None:
            value = raw
        values[key] = value
    return validate_layer(values, "--set")


@dataclass(frozen=True)
class Resolved:
    """The resolved preset and where each key's value came from."""

    preset: Preset
    sources: dict[str, str]
    files: list[Path]


def resolve(
    preset: str | None,
    default_preset: str | None,
    sets: list[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    adjust: Callable[[dict[str, Any]], None] | None = None,
) -> Resolved:
    """Layer defaults < shipped/base presets < user file < --set < flags into one Preset."""
    chain: list[PresetFile] = []
    name = preset or (default_preset if not (flags or {}).get("model") else None)
    seen: set[Path] = set()
    while name:
        path = locate(name).resolve()
        if path in seen:
            raise PresetError(f"{path}: extends: cycle through {name}")
        seen.add(path)
        loaded = load_file(path)
        chain.append(loaded)
        name = loaded.extends
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {key: "default" for key in KEYS}
    for layer in reversed(chain):
        for key, value in layer.values.items():
            merged[key] = value
            sources[key] = str(layer.path)
    layers = [("--set", parse_set(sets or [])), ("flag", validate_layer(
        {k: v for k, v in (flags or {}).items() if v is not None}, "flag"))]
    for label, values in layers:
        for key, value in values.items():
            if key == "model" and isinstance(value, str):
                value = resolve_model_path(value, Path.cwd())
            merged[key] = value
            sources[key] = label
    if adjust is not None:
        adjust(merged)
    source = str(chain[0].path) if chain else "preset"
    return Resolved(preset=build_preset(merged, source), sources=sources, files=[c.path for c in chain])


def preset_summary(path: Path) -> tuple[str, str, str]:
    """(name, task, description) of a shipped preset, for `diffcli presets`."""
    loaded = load_file(path)
    values = dict(loaded.values)
    if loaded.extends:
        base = load_file(locate(loaded.extends))
        values = {**base.values, **values}
    return path.stem, values.get("task") or "?", values.get("description") or values.get("model", "")


def to_yaml(preset: Preset) -> str:
    """The resolved preset as YAML (what `diffcli presets show` prints)."""
    return yaml.safe_dump(preset.to_dict(), sort_keys=False, allow_unicode=True)
