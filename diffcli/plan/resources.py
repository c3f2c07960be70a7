"""Where the shipped presets and built-in models live, installed or in a source checkout."""

from __future__ import annotations

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
    """Folder of the built-in offline models (`digits`, `digits-text`)."""
    return _shipped_dir("models")
