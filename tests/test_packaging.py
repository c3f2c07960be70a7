"""A regular (non-editable) install ships the presets and the built-in models."""

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_wheel_ships_presets_and_models_and_they_resolve(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), "-q"], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("diffcli-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "diffcli/presets/digits.yaml" in names and "diffcli/presets/ddpm-church-256.yaml" in names
    assert "diffcli/presets/digits-trace.yaml" in names  # denoise-trace's default
    assert "diffcli/models/digits/unet/diffusion_pytorch_model.safetensors" in names
    assert "diffcli/models/digits-text/tokenizer/tokenizer.json" in names
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    code = ("import os, diffcli; from diffcli.plan.presets import resolve; p = resolve('digits', None).preset; "
            "t = resolve('digits-trace', None).preset; "
            "print(diffcli.__file__.startswith(os.environ['SITE']), os.path.isfile(os.path.join(p.model, 'model_index.json')), "
            "t.model == p.model, t.steps)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                         env={"PYTHONPATH": str(site), "SITE": str(site), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "1000"]
