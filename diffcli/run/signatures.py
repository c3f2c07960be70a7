"""What a diffusers pipeline class says about itself: that it exists, the components its `__init__` takes, and
its `__call__` defaults. Read by importing diffusers once per diffusers version, then kept in a small JSON cache,
so planning a run (a no-op `--skip-existing` resume, an error found by planning) imports neither torch nor
diffusers. diffusers keeps no such record itself, hence this cache.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffcli.plan.resources import FACTS, cache_folder

CALL_DEFAULTS = ("num_inference_steps", "guidance_scale", "max_sequence_length", "height", "width", "noise_level")
FORMAT = 2  # 2: noise_level (the x4 upscaler's)
MAX_CACHE_BYTES = 1 << 20
MAX_CLASSES = 512
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(frozen=True)
class PipelineSignature:
    """A pipeline class's components and call defaults."""

    name: str
    components: tuple[str, ...] = ()                           # its __init__'s module arguments
    call_defaults: dict[str, Any] = field(default_factory=dict)  # steps, guidance, max_sequence_length, size


def pipeline_signature(class_name: str) -> PipelineSignature | None:
    """The signature of diffusers' `class_name` (None: diffusers has no such pipeline class)."""
    path = _cache_path()
    cached = _read(path)
    entry = cached.get(class_name)
    if isinstance(entry, dict) and (found := _valid(class_name, entry)) is not None:
        return found
    import diffusers

    cls = getattr(diffusers, class_name, None) if _NAME.fullmatch(class_name) else None
    if not isinstance(cls, type):
        return None
    signature = signature_of(cls)
    if len(cached) < MAX_CLASSES:
        cached[class_name] = {"components": list(signature.components), "call_defaults": signature.call_defaults}
        _write(path, cached)
    return signature


def signature_of(cls: type) -> PipelineSignature:
    """Read from the class itself (a loaded pipeline's type, or one just imported)."""
    components: tuple[str, ...] = ()
    if hasattr(cls, "_get_signature_keys"):
        expected, _ = cls._get_signature_keys(cls)
        components = tuple(sorted(expected))
    parameters = inspect.signature(cls.__call__).parameters if hasattr(cls, "__call__") else {}
    defaults = {}
    for name in CALL_DEFAULTS:
        default = parameters[name].default if name in parameters else inspect.Parameter.empty
        if _number(default):
            defaults[name] = default
    return PipelineSignature(cls.__name__, components, defaults)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e6


def _valid(class_name: str, entry: dict[str, Any]) -> PipelineSignature | None:
    """A cache entry, type-checked (the cache is a file diffcli did not just write): else None (read again)."""
    components, defaults = entry.get("components"), entry.get("call_defaults")
    if not isinstance(components, list) or len(components) > 64:
        return None
    if not all(isinstance(name, str) and _NAME.fullmatch(name) for name in components):
        return None
    if not isinstance(defaults, dict) or not all(key in CALL_DEFAULTS and _number(value)
                                                  for key, value in defaults.items()):
        return None
    return PipelineSignature(class_name, tuple(components), dict(defaults))


def _cache_path() -> Path:
    try:
        version = importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    safe = re.sub(r"[^A-Za-z0-9.+-]", "_", version)[:64]
    return cache_folder(FACTS) / f"pipelines-diffusers-{safe}-v{FORMAT}.json"


def _read(path: Path) -> dict[str, Any]:
    """The cache's classes; {} when it is missing, not a regular file, too large or not what we wrote."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return {}
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read(MAX_CACHE_BYTES + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    if len(raw) > MAX_CACHE_BYTES:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    classes = data.get("classes") if isinstance(data, dict) and data.get("format") == FORMAT else None
    return dict(classes) if isinstance(classes, dict) else {}


def _write(path: Path, classes: dict[str, Any]) -> None:
    """Replace the cache atomically; a cache that cannot be written is only slower next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".pipelines-", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"format": FORMAT, "classes": classes}, out, sort_keys=True)
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)  # type: ignore[possibly-undefined]
        except (OSError, NameError):
            pass
