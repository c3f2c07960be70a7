"""Where the shipped presets and built-in models live, installed or in a source checkout."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def _shipped_dir(name: str) -> Path:
    """`diffcli/<name>` in an installed wheel (mapped from the top-level folder), else `<repo>/<name>`."""
    installed = _PACKAGE_DIR / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / name


def shipped_presets_dir() -> Path:
    """Folder of the shipped YAML presets."""
    return _shipped_dir("presets")


def shipped_configs_dir() -> Path:
    """Folder of the configs for single-file checkpoints (configs/README.md)."""
    return _shipped_dir("configs")


def builtin_models_dir() -> Path:
    """Folder of the built-in offline models (`digits`, `digits-text`, `digits-flow`, `digits-control`)."""
    return _shipped_dir("models")


def builtin_model(name: str) -> Path | None:
    """The folder of a built-in model named `name` (a bare name such as `digits-text`), else None."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 64:
        return None
    folder = builtin_models_dir() / name
    return folder if (folder / "model_index.json").is_file() else None


def builtin_names() -> list[str]:
    """The names of the built-in models this install ships (pipelines and the ControlNet), sorted."""
    try:
        return sorted(folder.name for folder in builtin_models_dir().iterdir()
                      if (folder / "model_index.json").is_file() or (folder / "config.json").is_file())
    except OSError:
        return []


def builtin_name(model: str) -> str | None:
    """The name of the built-in model a path points to (what metadata records, so replay works on any
    install), else None."""
    try:
        path = Path(model).resolve()
    except (OSError, ValueError):
        return None
    return path.name if path.parent == builtin_models_dir().resolve() and builtin_model(path.name) else None


OPENVINO = ("DIFFCLI_OPENVINO_CACHE", "openvino")
COMPILE = ("DIFFCLI_COMPILE_CACHE", "inductor")
FACTS = ("DIFFCLI_FACTS_CACHE", "facts")  # what pipeline classes say about themselves (run/signatures.py)


def cache_folder(which: tuple[str, str]) -> Path:
    """A cache folder: $DIFFCLI_<X>_CACHE, else $HF_HOME/diffcli/<name>, else ~/.cache/diffcli/<name> (not created)."""
    variable, name = which
    explicit = os.environ.get(variable, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    hf_home = os.environ.get("HF_HOME", "").strip()
    if hf_home:
        return Path(hf_home).expanduser() / "diffcli" / name
    return Path.home() / ".cache" / "diffcli" / name
