"""LoRA entries: `--lora PATH_OR_HUB_ID[:WEIGHT]` and the `loras:` preset key, checked and named.

An entry is `{path, weight, name}`: the path is a local file or folder, or a hub id (optionally
`owner/name/FILE.safetensors`); the weight is -10..10 (default 1); the name (default: the file
stem) is what A1111 readers see in `<lora:name:weight>` and is made unique. No torch here.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from pathlib import Path
from typing import Any

MAX_LORAS = 16
WEIGHT_LIMIT = 10.0
MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SPEC = re.compile(r"^(?P<path>.+?):\s*(?P<weight>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$")
# what can only have been meant as a weight: empty, nan, inf, or number-like text after the last colon
_WEIGHTISH = re.compile(r"^(?P<path>.+?):(?P<weight>\s*[+-]?(?:nan|inf|infinity|[\d.]+(?:e[+-]?\d*)?)?\s*)$", re.I)


def parse_spec(text: str) -> dict[str, Any]:
    """`path[:weight]` → an entry; the last `:number` is the weight (so `C:\\x.safetensors` stays a path).

    ValueError for a weight that is not a finite number (`PATH:nan`, `PATH:inf`, `PATH:`), which would
    otherwise be read as part of the path.
    """
    match = _SPEC.match(text.strip())
    if match:
        return {"path": match.group("path"), "weight": float(match.group("weight"))}
    odd = _WEIGHTISH.match(text.strip())
    if odd and not odd.group("path").endswith(("/", "\\")) and len(odd.group("path")) > 1:
        raise ValueError(f"weight: expected a finite number after the last ':', got {odd.group('weight').strip()!r}")
    return {"path": text.strip()}


def default_name(path: str) -> str:
    """The file stem (`styles/ink.safetensors` → `ink`), or a hub id's last part, as a safe adapter name."""
    file = Path(path.rstrip("/\\"))
    stem = file.stem if file.suffix else file.name
    if stem == "pytorch_lora_weights" and file.parent.name:  # diffusers' default file name: its folder says more
        stem = file.parent.name
    return _UNSAFE.sub("_", stem).strip("_")[:MAX_NAME] or "lora"


def check_loras(value: Any) -> tuple[dict[str, Any], ...]:
    """The `loras` key: a list of `{path, weight, name}` mappings or `path[:weight]` strings, checked.

    ValueError says what was wrong. Names are made unique (`ink`, `ink_2`) and adapter-safe.
    """
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of {{path, weight, name}} entries, got {type(value).__name__}")
    if len(value) > MAX_LORAS:
        raise ValueError(f"{len(value)} LoRAs; at most {MAX_LORAS}")
    entries: list[dict[str, Any]] = []
    used: set[str] = set()
    for position, raw in enumerate(value, start=1):
        try:
            spec = parse_spec(raw) if isinstance(raw, str) else raw
        except ValueError as err:
            raise ValueError(f"entry {position}: {err}") from None
        entry = _entry(spec, position)
        name, suffix = entry["name"], 2
        while entry["name"] in used:
            entry["name"] = f"{name[:MAX_NAME - 4]}_{suffix}"
            suffix += 1
        used.add(entry["name"])
        entries.append(entry)
    return tuple(entries)


def _entry(raw: Any, position: int) -> dict[str, Any]:
    where = f"entry {position}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected path[:weight] or a mapping with path, weight, name")
    unknown = sorted(str(k) for k in raw if k not in ("path", "weight", "name"))
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0][:40]!r} (fields: path, weight, name)")
    path = raw.get("path")
    if not isinstance(path, str) or not path.strip() or "\x00" in path or len(path) > 4096:
        raise ValueError(f"{where}: path: expected a non-empty file, folder or hub id")
    weight = raw.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
        raise ValueError(f"{where}: weight: expected a number")
    if not -WEIGHT_LIMIT <= weight <= WEIGHT_LIMIT:
        raise ValueError(f"{where}: weight: expected -{WEIGHT_LIMIT:g}..{WEIGHT_LIMIT:g}, got {weight:g}")
    name = raw.get("name")
    if name is None:
        name = default_name(path)
    elif not isinstance(name, str) or not _UNSAFE.sub("", name) or _UNSAFE.search(name) or len(name) > MAX_NAME:
        raise ValueError(f"{where}: name: expected letters, digits, _ or - (at most {MAX_NAME})")
    return {"path": path.strip(), "weight": float(weight), "name": name}


WEIGHT_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def looks_local(path: str) -> bool:
    """True unless the path reads as a hub id: `owner/name` or `owner/name/FILE` (not a local file name)."""
    if path.startswith((".", "/", "~", "\\")) or (len(path) > 1 and path[1] == ":") or "\\" in path:
        return True
    parts = path.split("/")
    if len(parts) == 1:
        return True
    if len(parts) == 2 and Path(path).suffix.lower() in WEIGHT_FILE_SUFFIXES:
        return True
    return not (len(parts) in (2, 3) and all(parts))


def resolve_lora_path(path: str, base: Path) -> str:
    """A local LoRA path made absolute against `base` (the preset file's folder, or the current one)."""
    if path.startswith("~"):
        return str(Path(path).expanduser())
    if Path(path).is_absolute():
        return path
    candidate = base / path
    if candidate.exists() or looks_local(path):
        return str(candidate.resolve())
    return path


def resolve_entries(loras: Any, base: Path) -> Any:
    """Checked entries with their local paths resolved against `base`."""
    return tuple({**entry, "path": resolve_lora_path(entry["path"], base)} for entry in loras)


def show_weight(weight: float) -> str:
    """A weight as A1111 writes it (`0.8`, `1`)."""
    return f"{round(weight, 4):g}"


def prompt_tags(loras: tuple[tuple[str, float], ...]) -> str:
    """`<lora:name:weight>` for each LoRA, the form A1111 and Civitai read from a prompt."""
    return " ".join(f"<lora:{name}:{show_weight(weight)}>" for name, weight in loras)


@functools.lru_cache(maxsize=64)
def _hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if path.endswith(".safetensors"):  # A1111/kohya: the tensor data after the JSON header
            header = int.from_bytes(handle.read(8), "little")
            handle.seek(8 + header)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def short_hash(path: str) -> str | None:
    """A1111's LoRA short hash (12 hex digits), or None when the file cannot be read."""
    try:
        stat = Path(path).stat()
        return _hash(str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return None
