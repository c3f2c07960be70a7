"""Shared fixtures: tiny random pipelines in the standard folder format, built once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("COLUMNS", "120")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_ddpm(tmp_path_factory) -> Path:
    from tests.tiny import build_tiny_unconditional

    return build_tiny_unconditional(tmp_path_factory.mktemp("models") / "tiny-ddpm")


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    from tests.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    from tests.tiny import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sdxl", xl=True)


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own folder, so default outputs never collide."""
    monkeypatch.chdir(tmp_path)


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m diffcli ...` as a real subprocess (source tree first on the path)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "diffcli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, **kwargs)
