"""Hostile model folders: `model_index.json` and component configs are read bounded and checked
before diffusers sees them, so a crafted folder fails with one line (exit 3) instead of importing a
module, recursing, or allocating a tensor of absurd size."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from diffcli.errors import ModelError
from diffcli.plan.text import escape_control, json_nesting_ok, one_line, read_text_file

MAX_JSON_BYTES = 1 << 20  # real model_index.json / config.json files are a few KiB
MAX_JSON_DEPTH = 32
LIBRARIES = ("diffusers", "transformers", "onnxruntime.training")  # what diffusers itself loads from
CONFIG_FILES = ("config.json", "scheduler_config.json")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Size-like config values above these are refused (the largest real pipelines stay far below).
_EXACT_LIMITS = {
    "sample_size": 8192, "num_train_timesteps": 100_000, "vocab_size": 1 << 20,
    "max_position_embeddings": 1 << 20, "intermediate_size": 1 << 18, "d_ff": 1 << 18, "ffn_dim": 1 << 18,
}
_SUFFIX_LIMITS = ((("channels", "_dim", "hidden_size", "d_model"), 1 << 16),
                  (("layers", "layers_per_block", "heads"), 4096))


def read_json(path: Path, what: str) -> Any:
    """A JSON file of at most 1 MiB, nested at most 32 deep, from a regular file; ModelError otherwise."""
    text = read_text_file(path, MAX_JSON_BYTES, what, error=ModelError)
    shown = escape_control(str(path))
    if not json_nesting_ok(text, MAX_JSON_DEPTH):
        raise ModelError(f"{shown}: corrupt {what}: nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ModelError(f"{shown}: corrupt {what}: {one_line(str(err), 120)}") from None


def _is_pipeline_module(library: str) -> bool:
    """True for a diffusers pipelines subpackage (`stable_diffusion`), found without importing diffusers."""
    spec = importlib.util.find_spec("diffusers")
    roots = list(spec.submodule_search_locations or []) if spec else []
    return bool(_NAME.fullmatch(library)) and any((Path(root) / "pipelines" / library).is_dir() for root in roots)


def check_index(index: Any, where: str) -> dict[str, Any]:
    """`model_index.json` names a pipeline class and components from diffusers/transformers only."""
    if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
        raise ModelError(f"{where}: corrupt model_index.json: no _class_name")
    if not _NAME.fullmatch(index["_class_name"]) or "Pipeline" not in index["_class_name"]:
        raise ModelError(f"{where}: model_index.json: _class_name {one_line(repr(index['_class_name']), 80)} "
                         "is not a pipeline class name")
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec == [None, None]:
            continue  # other values are pipeline settings (requires_safety_checker: false)
        if not _NAME.fullmatch(name):
            raise ModelError(f"{where}: model_index.json: component {one_line(repr(name), 80)} is not a plain name")
        library, cls = spec if len(spec) == 2 else (None, None)
        if not (isinstance(library, str) and isinstance(cls, str) and _NAME.fullmatch(cls)):
            raise ModelError(f"{where}: model_index.json: {name}: expected [library, ClassName], "
                             f"got {one_line(repr(spec), 80)}")
        if library not in LIBRARIES and not _is_pipeline_module(library):
            raise ModelError(f"{where}: model_index.json: {name}: library {one_line(repr(library), 60)} is not "
                             "diffusers, transformers or a diffusers pipeline module; diffcli imports nothing else")
    return index


def limit_for(key: str) -> int | None:
    """The largest value diffcli accepts for a size-like config key, or None for other keys."""
    if key in _EXACT_LIMITS:
        return _EXACT_LIMITS[key]
    for suffixes, limit in _SUFFIX_LIMITS:
        if key.endswith(suffixes):
            return limit
    return None


def _oversized(config: Any, depth: int = 0) -> tuple[str, Any, int] | None:
    """The first (key, value, limit) whose value exceeds its limit, searching nested configs."""
    if not isinstance(config, dict) or depth > 4:
        return None
    for key, value in config.items():
        limit = limit_for(key) if isinstance(key, str) else None
        if limit is not None and any(number > limit for number in _numbers(value)):
            return key, value, limit
        found = _oversized(value, depth + 1)
        if found:
            return found
    return None


def _numbers(value: Any, depth: int = 0) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, list) and depth < 3:
        return [n for item in value for n in _numbers(item, depth + 1)]
    return []


def check_component_configs(folder: Path, index: dict[str, Any]) -> None:
    """Each component's config.json / scheduler_config.json is readable JSON asking for sane sizes."""
    for name, spec in index.items():
        if name.startswith("_") or not (isinstance(spec, list) and len(spec) == 2 and spec[0]):
            continue
        for filename in CONFIG_FILES:
            path = folder / name / filename
            if not path.exists() and not path.is_symlink():
                continue
            check_sizes(read_json(path, filename), path)


def check_sizes(config: Any, path: Path) -> None:
    """Refuse a config (read from `path`) asking for a size-like value above diffcli's limits."""
    found = _oversized(config)
    if found:
        key, value, limit = found
        raise ModelError(f"{escape_control(str(path))}: config asks for {key} {one_line(repr(value), 60)}, "
                         f"more than diffcli allows ({limit:,})")


WEIGHT_SUFFIXES = {".safetensors": "safe", ".bin": "pickle", ".pt": "pickle", ".pth": "pickle", ".ckpt": "pickle"}


def is_offline(preset: Any) -> bool:
    """`--offline`/`offline: true`, or HF_HUB_OFFLINE set in the environment."""
    import os

    return preset.offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
