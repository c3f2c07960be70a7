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
if os.environ.get("PYTEST_XDIST_WORKER"):  # one torch thread per test worker: workers share the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parent.parent


def require_dev_extra(module: str):
    """Import a module of the dev extra. Missing: a skip on a developer's machine, a failure in CI (CI=true),
    so a broken install can never pass the suite by skipping whole modules."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            raise
        pytest.skip(f"{module} is not installed (pip install -e \".[dev]\")", allow_module_level=True)


def cached_model(name: str, build) -> Path:
    """A tiny pipeline built once per builder code and library versions, shared by every test process.

    Kept under DIFFCLI_TEST_CACHE (default: ~/.cache/diffcli-tests); the key hashes the builder modules and
    the diffusers/transformers/torch versions, so a change to a builder rebuilds it. Built into a temporary
    folder and renamed into place, so parallel workers never see half a pipeline. Tests must not modify it.
    """
    import hashlib
    import shutil
    import tempfile

    import diffusers
    import torch
    import transformers

    digest = hashlib.sha256()
    for module in ("tiny.py", "tiny_families.py"):
        digest.update((REPO / "tests" / module).read_bytes())
    digest.update(f"{diffusers.__version__} {transformers.__version__} {torch.__version__}".encode())
    root = Path(os.environ.get("DIFFCLI_TEST_CACHE") or Path.home() / ".cache" / "diffcli-tests")
    folder = root / f"{name}-{digest.hexdigest()[:16]}"
    if (folder / "model_index.json").is_file() or (folder / "config.json").is_file():  # a pipeline or one model
        return folder
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
    build(scratch / name)
    try:
        os.replace(scratch / name, folder)
    except OSError:  # another worker won the race: use its copy
        pass
    shutil.rmtree(scratch, ignore_errors=True)
    return folder


def pytest_collection_modifyitems(items: list) -> None:
    """The slow tests first (stable order otherwise): pytest-xdist hands work out in collection order, so
    the long ones start early and the short ones fill in at the end, and the workers finish together."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tiny_ddpm() -> Path:
    from tests.tiny import build_tiny_unconditional

    return cached_model("tiny-ddpm", build_tiny_unconditional)


@pytest.fixture(scope="session")
def tiny_sd() -> Path:
    from tests.tiny import build_tiny_sd

    return cached_model("tiny-sd", build_tiny_sd)


@pytest.fixture(scope="session")
def tiny_sd_inpaint() -> Path:
    """A tiny StableDiffusionInpaintPipeline with a 9-channel UNet."""
    from tests.tiny import build_tiny_sd

    return cached_model("tiny-sd-inpaint", lambda folder: build_tiny_sd(folder, inpaint=True))


@pytest.fixture(scope="session")
def tiny_sdxl() -> Path:
    from tests.tiny import build_tiny_sd

    return cached_model("tiny-sdxl", lambda folder: build_tiny_sd(folder, xl=True))


@pytest.fixture(scope="session")
def tiny_controlnet() -> Path:
    """A tiny ControlNetModel fitting tiny_sd (tests/tiny.py)."""
    from tests.tiny import build_tiny_controlnet

    return cached_model("tiny-controlnet", build_tiny_controlnet)


@pytest.fixture(scope="session")
def tiny_family():
    """`tiny_family(name)`: the cached tiny pipeline of a transformer family (tests/tiny_families.py)."""
    from tests.tiny_families import BUILDERS

    return lambda name: cached_model(f"tiny-{name}", BUILDERS[name])


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own folder, so default outputs never collide."""
    monkeypatch.chdir(tmp_path)


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, fresh: bool = False,
            **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m diffcli ...` as a child process in the current folder: forked from the worker's pre-imported
    server (tests/forkserver.py: its own process, exit status and streams, minus seconds of imports), or a new
    interpreter when the call passes process options, sets variables read at start-up, or asks for `fresh`."""
    from tests.forkserver import needs_fresh_interpreter

    if not fresh and not kwargs and not needs_fresh_interpreter(env or {}):
        from tests.hostile_runner import _fork_server, child_env

        server = _fork_server()
        if server is not None:
            return server.run(list(args), Path.cwd(), child_env(**(env or {})), timeout)
    full_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "diffcli", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, **kwargs)
